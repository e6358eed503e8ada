//! Peak memory of one run writing many lake streams at once, against the lake's shared memory
//! budget (issue #15 item 10), with the budget effectively off as the reference measured in
//! the same run.
//!
//! `cargo bench --bench lake_memory` (streams: `WEFT_BENCH_STREAMS`, default `1,10,50`; rows
//! per stream: `WEFT_BENCH_ROWS`, default 300,000). Each case is one project with that many
//! products, each with the sample source's `orders` stream (overwrite into the lake), all
//! running at once (`max_concurrent_streams` = the number of streams) with a commit interval
//! longer than the run, so no commit seals a file before `finish` and each stream's writer
//! keeps its row group growing: the case where memory grows with the number of streams. The
//! run is measured twice through the real binary: with the default budget
//! (`memory_budget_bytes` 256 MiB) and with a budget of 64 GiB (off), printing weft's peak RSS
//! for both and the ratio peak RSS / budget.

mod common;

use std::path::Path;

use common::{env_list, env_or, sync_measured, weft_yaml, write_project};

const MIB: u64 = 1024 * 1024;
const BUDGET: u64 = 256 * MIB;
const OFF: u64 = 64 * 1024 * MIB;

/// A project of `streams` products writing the sample's orders into one lake with `budget`.
fn project(dir: &Path, streams: usize, rows: u64, budget: u64) {
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
            &format!("  commit_interval: 1h\n  max_concurrent_streams: {streams}\n"),
        ),
        &products,
    );
}

fn main() {
    let rows: u64 = env_or("WEFT_BENCH_ROWS", 300_000);
    let cases: Vec<usize> = env_list("WEFT_BENCH_STREAMS", "1,10,50");
    println!(
        "lake streams written at once, {rows} sample orders each, budget {} MiB",
        BUDGET / MIB
    );
    let mut summary = Vec::new();
    for streams in cases {
        let tmp = tempfile::tempdir().expect("temp dir");
        let with = tmp.path().join("budget");
        project(&with, streams, rows, BUDGET);
        let (secs, rss) = sync_measured(&with);
        let without = tmp.path().join("off");
        project(&without, streams, rows, OFF);
        let (off_secs, off_rss) = sync_measured(&without);
        let ratio = rss / (BUDGET / MIB) as f64;
        println!("{streams} streams:");
        println!("  budget 256 MiB: {secs:>8.2} s  peak RSS {rss:>8.1} MiB");
        println!("  budget off:     {off_secs:>8.2} s  peak RSS {off_rss:>8.1} MiB");
        println!(
            "  ratio peak RSS / budget: {ratio:.3}  (off: {:.3})",
            off_rss / (BUDGET / MIB) as f64
        );
        summary.push((streams, rss, off_rss, ratio));
    }
    println!("summary");
    for (streams, rss, off_rss, ratio) in summary {
        println!(
            "  {streams:>3} streams: peak RSS {rss:.1} MiB with the budget (ratio to it {ratio:.3}), {off_rss:.1} MiB without"
        );
    }
}
