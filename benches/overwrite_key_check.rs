//! The cost of the primary-key backstop of `overwrite` (issue 14, item 2): a full refresh of a
//! stream with a primary key publishes one row per key, checked over the whole new table at
//! the publish. Measured against the same overwrite without a key (no check), in the same run,
//! into the Parquet lake and into weft's PostgreSQL store.
//!
//! `cargo bench --bench overwrite_key_check` (rows: `WEFT_BENCH_ROWS`, default 1,000,000;
//! runs per case: `WEFT_BENCH_REPEAT`, default 2, the fastest counts). The sample source's
//! `orders` (unique ids, so the check finds nothing to drop: the cost every run pays).

mod common;

use std::path::Path;

use common::{env_or, pg_store, sync_measured, weft_yaml, write_project, LAKE};
use weft_testkit::pg::PgTestDb;

/// A project writing the sample's orders in full refresh + overwrite into `destination`,
/// keyed by `id` or (`primary_key: []`) without a key.
fn project(dir: &Path, destination: &str, rows: u64, keyed: bool) {
    let key = if keyed { "[id]" } else { "[]" };
    write_project(
        dir,
        &weft_yaml(destination, "  commit_interval: 10s\n"),
        &[(
            "sample".into(),
            format!("source:\n  connector: sample\n  config: {{ scale: {rows} }}\nstreams:\n  - name: orders\n    mode: full_refresh\n    write: overwrite\n    primary_key: {key}\n"),
        )],
    );
}

/// The fastest of `repeat` full refreshes: (seconds, peak RSS MiB).
fn overwrite(dir: &Path, repeat: usize) -> (f64, f64) {
    (0..repeat)
        .map(|_| {
            let measured = sync_measured(dir);
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
        ("lake", LAKE.to_string()),
        ("postgres store", pg_store(&db)),
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
