//! Airbyte faker → Parquet lake, against the faker writing the same records to /dev/null,
//! measured in the same run.
//!
//! `cargo bench --bench airbyte` (records: `WEFT_BENCH_ROWS`, default 1,000,000, of the faker's
//! `users` stream; rounds: `WEFT_BENCH_ROUNDS`, default 1). Installs `airbyte-source-faker==7.2.1`
//! through weft into `target/weft-test-venvs` and discovers its catalog first (not timed, as
//! for a scheduled sync whose catalog is cached; the discover time, what a sync pays when its
//! catalog cache is cold, is printed), then per round times the connector alone (`read` to
//! /dev/null) and `weft sync run` of the same stream, and prints the ratios (weft's overhead:
//! goal ≤ 1.10).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{env_or, weft_yaml, write_project, LAKE};

fn main() {
    let rows: u64 = env_or("WEFT_BENCH_ROWS", 1_000_000);
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/weft-test-venvs");
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("project");
    let faker = serde_json::json!({"count": rows, "seed": 1, "records_per_slice": 10000, "always_updated": true, "parallelism": 1});
    write_project(
        &project,
        &weft_yaml(LAKE, "  commit_interval: 10s\n"),
        &[(
            "fake".into(),
            format!("source:\n  connector: airbyte\n  config:\n    package: airbyte-source-faker==7.2.1\n    config: {faker}\nstreams:\n  - name: users\n    mode: full_refresh\n    write: overwrite\n"),
        )],
    );
    let weft = |args: &[&str]| {
        let out = common::weft(&project, args)
            .env("WEFT_CONNECTOR_CACHE", &cache)
            .output()
            .expect("run weft");
        assert!(
            out.status.success(),
            "weft {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Installs the package (untimed) and checks the connector runs.
    weft(&["connector", "check", "bench/fake"]);
    let start = Instant::now();
    weft(&["connector", "discover", "bench/fake"]);
    let discover = start.elapsed().as_secs_f64();
    let exe = std::fs::read_dir(&cache)
        .expect("venv cache")
        .flatten()
        .map(|e| e.path().join("bin/source-faker"))
        .find(|p| p.exists() && p.to_string_lossy().contains("airbyte-source-faker-__7.2.1"))
        .expect("source-faker installed");
    println!("airbyte faker → parquet, users stream, {rows} records");

    // Reference: the connector alone, its output thrown away.
    let config = dir.path().join("config.json");
    std::fs::write(&config, faker.to_string()).expect("config");
    let catalog = dir.path().join("catalog.json");
    std::fs::write(
        &catalog,
        serde_json::json!({"streams": [{"stream": {"name": "users", "json_schema": {}, "supported_sync_modes": ["full_refresh"]}, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}]}).to_string(),
    )
    .expect("catalog");
    let rounds: usize = env_or("WEFT_BENCH_ROUNDS", 1);
    let rate = |secs: f64| rows as f64 / secs;
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let cpu = children_cpu();
        let start = Instant::now();
        let status = Command::new(&exe)
            .args(["read", "--config"])
            .arg(&config)
            .arg("--catalog")
            .arg(&catalog)
            .stdout(Stdio::null())
            .status()
            .expect("run the faker");
        let reference = start.elapsed().as_secs_f64();
        assert!(status.success());
        let reference_cpu = children_cpu() - cpu;

        let cpu = children_cpu();
        let start = Instant::now();
        weft(&["sync", "run", "bench/fake/users", "--no-progress"]);
        let synced = start.elapsed().as_secs_f64();
        let synced_cpu = children_cpu() - cpu;

        println!("round {round}");
        println!(
            "  faker read > /dev/null: {reference:>8.2} s  {:>10.0} records/s",
            rate(reference)
        );
        println!(
            "  weft sync run:          {synced:>8.2} s  {:>10.0} records/s",
            rate(synced)
        );
        println!("  ratio weft / faker alone: {:.3}", synced / reference);
        // On a shared machine wall time swings with others' load; CPU time much less.
        println!(
            "  CPU (user+sys): faker {reference_cpu:.2} s, weft sync incl. the faker {synced_cpu:.2} s: weft's own {:.2} s",
            synced_cpu - reference_cpu
        );
        ratios.push(synced / reference);
    }
    let min = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().cloned().fold(0.0, f64::max);
    println!("ratio over {rounds} round(s): {min:.3} – {max:.3}  (goal ≤ 1.10)");
    println!("weft connector discover (paid by a sync with a cold catalog cache): {discover:.2} s");
}

/// User+sys CPU seconds of all waited-for child processes so far (their children included).
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
