//! Sample → Parquet lake throughput, against writing the same batches with the parquet crate's
//! `ArrowWriter` directly, measured in the same run.
//!
//! `cargo bench --bench sample_to_parquet` (rows: `WEFT_BENCH_ROWS`, default 10,000,000).
//! Prints rows/s of both, weft's peak RSS, and the ratio weft / reference (weft's own overhead:
//! goal ≤ 1.20). Both paths generate the rows with the same sample generator; the reference then
//! encodes them on one thread with the same compression, weft runs its whole engine (mappers,
//! checkpoints, commits, manifest) through the real binary.

mod common;

use std::fs::File;
use std::time::Instant;

use common::{env_or, weft, weft_yaml, write_project, LAKE};

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use weft_source_sample::{expected_rows, SampleConfig};

fn main() {
    let rows: u64 = env_or("WEFT_BENCH_ROWS", 10_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    println!("sample → parquet, orders stream, {rows} rows");

    // Reference: the same batches, written straight with ArrowWriter.
    let config = SampleConfig::new(rows);
    let start = Instant::now();
    let mut batches = expected_rows(&config, "orders", 0).peekable();
    let schema = batches.peek().expect("at least one batch").schema();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("level 3")))
        .build();
    let file = File::create(dir.path().join("reference.parquet")).expect("create");
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).expect("writer");
    let mut written = 0u64;
    for batch in batches {
        written += batch.num_rows() as u64;
        writer.write(&batch).expect("write");
    }
    writer.close().expect("close");
    let reference = start.elapsed().as_secs_f64();
    assert_eq!(written, rows);

    // weft: the real binary on a project syncing the same stream into the lake.
    let project = dir.path().join("project");
    write_project(
        &project,
        &weft_yaml(LAKE, "  commit_interval: 10s\n"),
        &[(
            "sample".into(),
            format!("source:\n  connector: sample\n  config: {{ scale: {rows} }}\nstreams:\n  - name: orders\n    mode: full_refresh\n    write: overwrite\n"),
        )],
    );
    let (weft, rss) = weft_testkit::measure::run_measured(
        weft(
            &project,
            &["sync", "run", "bench/sample/orders", "--no-progress"],
        ),
        dir.path(),
    );

    let rate = |secs: f64| rows as f64 / secs;
    println!(
        "reference ArrowWriter: {reference:>8.2} s  {:>12.0} rows/s",
        rate(reference)
    );
    println!(
        "weft sync run:         {weft:>8.2} s  {:>12.0} rows/s",
        rate(weft)
    );
    println!("weft peak RSS:         {rss:>8.1} MiB");
    println!(
        "ratio weft / reference: {:.3}  (goal ≤ 1.20)",
        weft / reference
    );
}
