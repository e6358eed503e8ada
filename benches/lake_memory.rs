//! Peak memory of one run writing many lake streams at once, against its memory limits (issue
//! #15 items 7 and 10): the engine's run-wide `max_bytes_in_flight` (default 128 MiB) and the
//! lake's `memory_budget_bytes` for row groups (default 256 MiB), with both effectively off as
//! the reference measured in the same run.
//!
//! `cargo bench --bench lake_memory` (streams: `WEFT_BENCH_STREAMS`, default `1,10,50`; rows
//! per stream: `WEFT_BENCH_ROWS`, default 300,000). Each case is one project with that many
//! products, each with the sample source's `orders` stream (overwrite into the lake), all
//! running at once (`max_concurrent_streams` = the number of streams) with a commit interval
//! longer than the run, so no commit seals a file before `finish` and each stream's writer
//! keeps its row group growing: the case where memory grows with the number of streams. The
//! run is measured twice through the real binary: with the defaults and with both limits at
//! 64 GiB (off), printing weft's peak RSS for both, the engine's own peak of bytes in flight
//! (the run report's `in_flight`), and the ratio peak RSS / 512 MiB (the goal: below 1 and the
//! same for 10 and 50 streams). `WEFT_BENCH_LAKE_BUDGET_MIB` and `WEFT_BENCH_IN_FLIGHT_MIB` set
//! the two limits of the first run (defaults 256 and 128).

mod common;

use std::path::Path;

use common::{env_list, env_or, weft, weft_yaml, write_project};

const MIB: u64 = 1024 * 1024;
/// The lake's default row-group budget.
const BUDGET: u64 = 256 * MIB;
/// The engine's default bytes in flight.
const IN_FLIGHT: u64 = 128 * MIB;
/// The goal for a run's peak RSS.
const GOAL: u64 = 512 * MIB;
const OFF: u64 = 64 * 1024 * MIB;

/// A project of `streams` products writing the sample's orders into one lake with the lake's
/// `budget` and the engine's `in_flight` limit.
fn project(dir: &Path, streams: usize, rows: u64, (budget, in_flight): (u64, u64)) {
    let products: Vec<(String, String)> = (0..streams)
        .map(|i| {
            (
                format!("s{i}"),
                format!("source:\n  connector: sample\n  config: {{ scale: {rows}, seed: {i} }}\nstreams:\n  - name: orders\n    mode: full_refresh\n    write: overwrite\n"),
            )
        })
        .collect();
    write_project(
        dir,
        &weft_yaml(
            &format!("    connector: parquet\n    config: {{ path: lake, memory_budget_bytes: {budget} }}\n"),
            &format!("  commit_interval: 1h\n  max_concurrent_streams: {streams}\n  max_bytes_in_flight: {in_flight}\n"),
        ),
        &products,
    );
}

/// One measured run: (seconds, peak RSS MiB, the engine's peak bytes in flight in MiB).
fn run(dir: &Path) -> (f64, f64, f64) {
    let cmd = weft(dir, &["sync", "run", "--no-progress", "--format", "json"]);
    let (secs, rss) = weft_testkit::measure::run_measured(cmd, dir);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stdout.txt")).expect("stdout"))
            .expect("a JSON run report");
    let peak = report["in_flight"]["peak_bytes"].as_u64().unwrap_or(0);
    (secs, rss, peak as f64 / MIB as f64)
}

fn main() {
    let rows: u64 = env_or("WEFT_BENCH_ROWS", 300_000);
    let cases: Vec<usize> = env_list("WEFT_BENCH_STREAMS", "1,10,50");
    println!(
        "lake streams written at once, {rows} sample orders each, max_bytes_in_flight {} MiB, lake budget {} MiB",
        IN_FLIGHT / MIB,
        BUDGET / MIB
    );
    let mut summary = Vec::new();
    for streams in cases {
        let tmp = tempfile::tempdir().expect("temp dir");
        let with = tmp.path().join("budget");
        let limits = (
            env_or("WEFT_BENCH_LAKE_BUDGET_MIB", BUDGET / MIB) * MIB,
            env_or("WEFT_BENCH_IN_FLIGHT_MIB", IN_FLIGHT / MIB) * MIB,
        );
        project(&with, streams, rows, limits);
        let (secs, rss, peak) = run(&with);
        let without = tmp.path().join("off");
        project(&without, streams, rows, (OFF, OFF));
        let (off_secs, off_rss, off_peak) = run(&without);
        let ratio = rss / (GOAL / MIB) as f64;
        println!("{streams} streams:");
        println!("  limits on:  {secs:>8.2} s  peak RSS {rss:>8.1} MiB  in flight {peak:>7.1} MiB");
        println!(
            "  limits off: {off_secs:>8.2} s  peak RSS {off_rss:>8.1} MiB  in flight {off_peak:>7.1} MiB"
        );
        println!(
            "  ratio peak RSS / 512 MiB: {ratio:.3}  (off: {:.3})",
            off_rss / (GOAL / MIB) as f64
        );
        summary.push((streams, rss, off_rss, ratio));
    }
    println!("summary");
    for (streams, rss, off_rss, ratio) in summary {
        println!(
            "  {streams:>3} streams: peak RSS {rss:.1} MiB with the limits (ratio to 512 MiB {ratio:.3}), {off_rss:.1} MiB without"
        );
    }
}
