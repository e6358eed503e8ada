//! Sample → Parquet lake throughput, against writing the same batches with the parquet crate's
//! `ArrowWriter` directly, measured in the same run.
//!
//! `cargo bench --bench sample_to_parquet` (rows: `WEFT_BENCH_ROWS`, default 10,000,000).
//! Prints rows/s of both, weft's peak RSS, and the ratio weft / reference (weft's own overhead:
//! goal ≤ 1.20). Both paths generate the rows with the same sample generator; the reference then
//! encodes them on one thread with the same compression, weft runs its whole engine (mappers,
//! checkpoints, commits, manifest) through the real binary.

use std::fs::File;
use std::process::Command;
use std::time::Instant;

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use weft_source_sample::{expected_rows, SampleConfig};

fn peak_rss_of_children_mib() -> f64 {
    // SAFETY: getrusage only writes into the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0 // KiB on Linux
}

fn main() {
    let rows: u64 = std::env::var("WEFT_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
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
    std::fs::create_dir_all(project.join("domains/bench")).expect("mkdir");
    std::fs::write(
        project.join("domains/bench/domain.yaml"),
        weft_testkit::minimal_domain_yaml("bench"),
    )
    .expect("domain.yaml");
    std::fs::write(
        project.join("weft.yaml"),
        "version: 1\ndefaults:\n  destination:\n    connector: parquet\n    config: { path: lake }\n  commit_interval: 10s\n",
    )
    .expect("weft.yaml");
    std::fs::write(
        project.join("domains/bench/sample.yaml"),
        format!(
            "product: sample\ndomain: bench\nowner: bench@example.com\ndescription: benchmark\nsource:\n  connector: sample\n  config: {{ scale: {rows} }}\nstreams:\n  - name: orders\n    mode: full_refresh\n    write: overwrite\n"
        ),
    )
    .expect("product");
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["--project"])
        .arg(&project)
        .args(["sync", "run", "bench/sample/orders", "--no-progress"])
        .output()
        .expect("run weft");
    let weft = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "weft failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rss = peak_rss_of_children_mib();

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
