//! PostgreSQL benchmarks, each printing weft against a reference measured in the same run.
//!
//! `cargo bench --bench postgres` (rows: `WEFT_BENCH_ROWS`, default 5,000,000), against the
//! server of `weft_testkit::pg` (`WEFT_TEST_PG_*`).
//!
//! * [`pg_to_parquet`]: the time of `COPY … TO STDOUT (FORMAT binary)` of the table into
//!   /dev/null with psql (the fastest a client can pull the table) against weft's
//!   PostgreSQL → Parquet sync through the real binary; their ratio (goal ≤ 1.3) and weft's
//!   peak RSS (goal < 256 MiB, flat in the row count).
//! * [`pg_to_pg`]: weft's sample → PostgreSQL sync against psql piping the same table's
//!   binary COPY out and into a copy of it.

use std::process::{Command, Stdio};
use std::time::Instant;

use weft_testkit::pg::PgTestDb;

fn peak_rss_of_children_mib() -> f64 {
    // SAFETY: getrusage only writes into the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0 // KiB on Linux
}

/// The benchmark table: `rows` generated rows of the usual shapes.
pub fn create_bench_table(db: &PgTestDb, rows: u64) {
    db.sql(&format!(
        "CREATE TABLE bench (
           id bigint PRIMARY KEY, qty int NOT NULL, status text NOT NULL, amount numeric(12,2),
           currency char(3), note text, created_at timestamptz NOT NULL, updated_at timestamptz,
           active bool, attrs jsonb);
         INSERT INTO bench SELECT g, (g % 1000)::int, (ARRAY['new','paid','shipped','done'])[1 + g % 4],
           (g % 100000) / 100.0, (ARRAY['EUR','USD','GBP'])[1 + g % 3],
           CASE WHEN g % 5 = 0 THEN NULL ELSE left(repeat(md5(g::text), 3), (g % 80)::int) END,
           '2024-01-01'::timestamptz + g * interval '1 second', '2024-06-01'::timestamptz + g * interval '1 second',
           g % 2 = 0, jsonb_build_object('k', g % 10, 'tag', 'x' || (g % 7))
         FROM generate_series(1, {rows}::int8) g;"
    ));
    db.sql("VACUUM ANALYZE bench");
}

/// psql's binary COPY of `table` into /dev/null: seconds.
pub fn copy_to_dev_null(db: &PgTestDb, table: &str) -> f64 {
    let start = Instant::now();
    let status = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-h",
            &db.host,
            "-p",
            &db.port.to_string(),
            "-U",
            &db.user,
            "-d",
            &db.name,
        ])
        .args([
            "-c",
            &format!("\\copy {table} TO '/dev/null' (FORMAT binary)"),
        ])
        .stdout(Stdio::null())
        .status()
        .expect("psql");
    assert!(status.success(), "psql COPY failed");
    start.elapsed().as_secs_f64()
}

/// PostgreSQL → Parquet lake through the real binary, against psql's COPY.
pub fn pg_to_parquet(db: &PgTestDb, rows: u64) {
    let reference = copy_to_dev_null(db, "bench");
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("domains/bench")).expect("mkdir");
    std::fs::write(
        project.join("weft.yaml"),
        "version: 1\ndefaults:\n  destination:\n    connector: parquet\n    config: { path: lake }\n  commit_interval: 10s\n",
    )
    .expect("weft.yaml");
    std::fs::write(
        project.join("domains/bench/pg.yaml"),
        format!(
            "product: pg\ndomain: bench\nowner: bench@example.com\ndescription: benchmark\nsource:\n  connector: postgres\n  config: {{ host: \"{}\", port: {}, user: {}, database: {} }}\nstreams:\n  - name: public.bench\n    mode: full_refresh\n    write: overwrite\n",
            db.host, db.port, db.user, db.name
        ),
    )
    .expect("product");
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("--project")
        .arg(&project)
        .args(["sync", "run", "--no-progress"])
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
    println!("postgres → parquet, {rows} rows");
    println!(
        "psql COPY binary > /dev/null: {reference:>8.2} s  {:>12.0} rows/s",
        rate(reference)
    );
    println!(
        "weft sync run:                {weft:>8.2} s  {:>12.0} rows/s",
        rate(weft)
    );
    println!("weft peak RSS:                {rss:>8.1} MiB  (goal < 256)");
    println!(
        "ratio weft / COPY:            {:.3}  (goal ≤ 1.30)",
        weft / reference
    );
}

/// Sample source → PostgreSQL through the real binary (2M orders unless
/// `WEFT_BENCH_PG_DEST_ROWS`), against psql piping the same table's binary COPY into a copy of
/// it (`COPY … TO STDOUT (FORMAT binary) | COPY … FROM STDIN (FORMAT binary)`), in the same run.
pub fn pg_to_pg(db: &PgTestDb, rows: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("domains/sales")).expect("mkdir");
    std::fs::write(
        project.join("weft.yaml"),
        format!(
            "version: 1\ndefaults:\n  destination:\n    connector: postgres\n    config: {{ host: \"{}\", port: {}, user: {}, database: {} }}\n  commit_interval: 10s\n",
            db.host, db.port, db.user, db.name
        ),
    )
    .expect("weft.yaml");
    std::fs::write(
        project.join("domains/sales/shop.yaml"),
        format!(
            "product: shop\ndomain: sales\nowner: bench@example.com\ndescription: benchmark\nsource:\n  connector: sample\n  config: {{ scale: {rows}, changes_per_run: 0 }}\nstreams:\n  - name: orders\n    mode: full_refresh\n    write: overwrite\n"
        ),
    )
    .expect("product");
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("--project")
        .arg(&project)
        .args(["sync", "run", "--no-progress"])
        .output()
        .expect("run weft");
    let weft = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "weft failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    db.sql("CREATE TABLE sales.pipe_copy (LIKE sales.shop__orders)");
    let psql = |sql: &str| {
        let mut cmd = Command::new("psql");
        cmd.args(["-X", "-q", "-h", &db.host, "-p", &db.port.to_string()])
            .args(["-U", &db.user, "-d", &db.name, "-c", sql]);
        cmd
    };
    let start = Instant::now();
    let mut dump = psql("COPY sales.shop__orders TO STDOUT (FORMAT binary)")
        .stdout(Stdio::piped())
        .spawn()
        .expect("psql");
    let load = psql("COPY sales.pipe_copy FROM STDIN (FORMAT binary)")
        .stdin(Stdio::from(dump.stdout.take().expect("piped stdout")))
        .stdout(Stdio::null())
        .status()
        .expect("psql");
    assert!(
        dump.wait().expect("psql").success() && load.success(),
        "psql pipe failed"
    );
    let reference = start.elapsed().as_secs_f64();

    let rate = |secs: f64| rows as f64 / secs;
    println!("sample → postgres, {rows} orders");
    println!(
        "psql COPY binary | COPY binary: {reference:>8.2} s  {:>12.0} rows/s",
        rate(reference)
    );
    println!(
        "weft sync run:                  {weft:>8.2} s  {:>12.0} rows/s",
        rate(weft)
    );
    println!("ratio weft / pipe:              {:.3}", weft / reference);
}

fn main() {
    let rows: u64 = std::env::var("WEFT_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let db = PgTestDb::create("bench_pg");
    create_bench_table(&db, rows);
    pg_to_parquet(&db, rows);

    let dest_rows: u64 = std::env::var("WEFT_BENCH_PG_DEST_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let dest_db = PgTestDb::create("bench_pg_dest");
    pg_to_pg(&dest_db, dest_rows);
}
