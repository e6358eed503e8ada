//! Incremental `append_dedup` merges into the Parquet lake, against weft's own PostgreSQL
//! product store merging the same changes, measured in the same run.
//!
//! `cargo bench --bench lake_merge` (table rows: `WEFT_BENCH_ROWS`, default 5,000,000; changed
//! rows per case: `WEFT_BENCH_CHANGES`, default `2000,500000`). For each case, the sample
//! source's `orders` stream is loaded once into each store (not measured), then one
//! incremental run brings the case's changes (the sample source updates that many existing
//! orders and adds as many new ones) and is measured: wall time and weft's peak RSS, and the
//! ratio lake / PostgreSQL store (goal < 1). Sling, the outside reference of issue #15, is not
//! installed on this machine, so it is not measured here. The lake's compaction log line (files
//! rewritten, row groups copied and encoded again) is printed with each lake run.
//!
//! `WEFT_BENCH_REFERENCE=0` skips the PostgreSQL store (for the memory case: a first load of
//! 10M keys, `WEFT_BENCH_ROWS=10000000 WEFT_BENCH_CHANGES=2000`).

mod common;

use std::path::Path;

use common::{env_list, env_or, pg_store, sync_measured, weft_yaml, write_project, LAKE};
use weft_testkit::pg::PgTestDb;

/// A project syncing the sample's orders (`append_dedup` by id) into `destination`.
fn project(dir: &Path, destination: &str, rows: u64, changes: u64) {
    write_project(
        dir,
        &weft_yaml(destination, "  commit_interval: 10s\n"),
        &[(
            "sample".into(),
            format!("source:\n  connector: sample\n  config: {{ scale: {rows}, changes_per_run: {changes} }}\nstreams:\n  - name: orders\n    mode: incremental\n    write: append_dedup\n    cursor: updated_at\n    primary_key: [id]\n"),
        )],
    );
}

/// Loads the stream (first run), then measures the incremental run: (seconds, peak RSS MiB).
fn merge(dir: &Path) -> ((f64, f64), (f64, f64)) {
    let first = sync_measured(dir);
    print_compaction(dir, "first load");
    let second = sync_measured(dir);
    print_compaction(dir, "merge");
    (first, second)
}

/// Prints the compaction line of the last run's log (a lake run).
fn print_compaction(dir: &Path, run: &str) {
    let log = std::fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default();
    for line in log
        .lines()
        .filter(|l| l.contains("compacted to the latest row per key"))
    {
        let fields: Vec<&str> = line
            .split_whitespace()
            .filter(|w| {
                [
                    "files_rewritten=",
                    "row_groups_",
                    "rows_before=",
                    "rows_after=",
                ]
                .iter()
                .any(|p| w.starts_with(p))
            })
            .collect();
        println!("  lake {run} compaction: {}", fields.join(" "));
    }
}

fn main() {
    let rows: u64 = env_or("WEFT_BENCH_ROWS", 5_000_000);
    let cases: Vec<u64> = env_list("WEFT_BENCH_CHANGES", "2000,500000");
    println!("append_dedup merges of the sample's orders, {rows} rows (Sling: not installed)");
    for changes in cases {
        let tmp = tempfile::tempdir().expect("temp dir");
        let lake_dir = tmp.path().join("lake-project");
        project(&lake_dir, LAKE, rows, changes);
        let (lake_load, lake) = merge(&lake_dir);
        if std::env::var("WEFT_BENCH_REFERENCE").as_deref() == Ok("0") {
            println!("{changes} changed rows (+{changes} new) in {rows}, lake only:");
            println!(
                "  first load: {:>8.2} s {:>7.1} MiB   merge: {:>8.2} s {:>7.1} MiB",
                lake_load.0, lake_load.1, lake.0, lake.1
            );
            continue;
        }

        let db = PgTestDb::create("bench_merge");
        let pg_dir = tmp.path().join("pg-project");
        project(&pg_dir, &pg_store(&db), rows, changes);
        let (pg_load, pg) = merge(&pg_dir);

        println!("{changes} changed rows (+{changes} new) in {rows}:");
        println!(
            "  first load:  lake {:>8.2} s {:>7.1} MiB   postgres store {:>8.2} s {:>7.1} MiB",
            lake_load.0, lake_load.1, pg_load.0, pg_load.1
        );
        println!(
            "  merge:       lake {:>8.2} s {:>7.1} MiB   postgres store {:>8.2} s {:>7.1} MiB",
            lake.0, lake.1, pg.0, pg.1
        );
        println!(
            "  ratio lake / postgres store merge: {:.3}  (goal < 1; 2,000 changes < 5 s)",
            lake.0 / pg.0
        );
    }
}
