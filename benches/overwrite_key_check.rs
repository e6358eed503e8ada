//! The cost of the primary-key backstop of `overwrite` (issue 14, item 2): a full refresh of a
//! stream with a primary key publishes one row per key, checked over the whole new table at
//! the publish. Measured against the same overwrite without a key (no check), in the same run,
//! into the Parquet lake and into weft's PostgreSQL store.
//!
//! `cargo bench --bench overwrite_key_check` (rows: `WEFT_BENCH_ROWS`, default 1,000,000;
//! runs per case: `WEFT_BENCH_REPEAT`, default 2, the fastest counts). The sample source's
//! `orders` (unique ids, so the check finds nothing to drop: the cost every run pays).

use std::path::Path;
use std::process::Command;

use weft_testkit::measure::run_measured;
use weft_testkit::pg::PgTestDb;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A project writing the sample's orders in full refresh + overwrite into `destination`,
/// keyed by `id` or (`primary_key: []`) without a key.
fn project(dir: &Path, destination: &str, rows: u64, keyed: bool) {
    std::fs::create_dir_all(dir.join("domains/bench")).expect("mkdir");
    std::fs::write(
        dir.join("domains/bench/domain.yaml"),
        weft_testkit::minimal_domain_yaml("bench"),
    )
    .expect("domain.yaml");
    std::fs::write(
        dir.join("weft.yaml"),
        format!(
            "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n{destination}  commit_interval: 10s\n"
        ),
    )
    .expect("weft.yaml");
    let key = if keyed { "[id]" } else { "[]" };
    std::fs::write(
        dir.join("domains/bench/sample.yaml"),
        format!(
            "product: sample\ndomain: bench\nowner: bench@example.com\ndescription: benchmark\nsource:\n  connector: sample\n  config: {{ scale: {rows} }}\nstreams:\n  - name: orders\n    mode: full_refresh\n    write: overwrite\n    primary_key: {key}\n"
        ),
    )
    .expect("product");
}

/// The fastest of `repeat` full refreshes: (seconds, peak RSS MiB).
fn overwrite(dir: &Path, repeat: usize) -> (f64, f64) {
    (0..repeat)
        .map(|_| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
            cmd.arg("--project")
                .arg(dir)
                .args(["sync", "run", "--no-progress"]);
            let measured = run_measured(cmd, dir);
            let stdout = std::fs::read_to_string(dir.join("stdout.txt")).unwrap_or_default();
            assert!(stdout.contains("succeeded"), "the run failed:\n{stdout}");
            measured
        })
        .fold((f64::MAX, 0.0), |(t, m), (t2, m2)| (t.min(t2), m.max(m2)))
}

fn main() {
    let rows: u64 = env_or("WEFT_BENCH_ROWS", 1_000_000);
    let repeat: usize = env_or("WEFT_BENCH_REPEAT", 2);
    println!("full refresh + overwrite of the sample's orders, {rows} rows, fastest of {repeat}");
    let tmp = tempfile::tempdir().expect("temp dir");
    let db = PgTestDb::create("bench_keycheck");
    let stores = [
        ("lake", "    connector: parquet\n    config: { path: lake }\n".to_string()),
        (
            "postgres store",
            format!(
                "    connector: postgres\n    config: {{ host: \"{}\", port: {}, user: {}, database: {} }}\n",
                db.host, db.port, db.user, db.name
            ),
        ),
    ];
    for (i, (store, destination)) in stores.iter().enumerate() {
        let plain_dir = tmp.path().join(format!("{i}-plain"));
        let keyed_dir = tmp.path().join(format!("{i}-keyed"));
        project(&plain_dir, destination, rows, false);
        // The PostgreSQL store's two projects write different tables: another product name.
        project(
            &keyed_dir,
            &destination.replace("database:", "schema: keyed, database:"),
            rows,
            true,
        );
        let plain = overwrite(&plain_dir, repeat);
        let keyed = overwrite(&keyed_dir, repeat);
        println!(
            "  {store:<15} without key {:>7.2} s {:>6.1} MiB   with the key check {:>7.2} s {:>6.1} MiB   ratio {:.3}",
            plain.0,
            plain.1,
            keyed.0,
            keyed.1,
            keyed.0 / plain.0
        );
    }
}
