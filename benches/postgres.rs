//! PostgreSQL benchmarks, each printing weft against a reference measured in the same run.
//!
//! `cargo bench --bench postgres` (rows: `WEFT_BENCH_ROWS`, default 5,000,000, then
//! `WEFT_BENCH_ROWS2`, default twice that, 0 to skip), against the server of
//! `weft_testkit::pg` (`WEFT_TEST_PG_*`).
//!
//! * [`pg_to_parquet`]: the time of `COPY … TO STDOUT (FORMAT binary)` of the table into
//!   /dev/null with psql (the fastest a client can pull the table) against weft's
//!   PostgreSQL → Parquet sync through the real binary; their ratio (goal ≤ 1.3) and weft's
//!   peak RSS (goal < 256 MiB, flat in the row count). Run at both sizes (the table grows in
//!   between), so one run shows whether memory stays flat.
//! * [`pg_to_pg`]: weft's PostgreSQL → PostgreSQL sync of the same table into a second
//!   database, against psql piping the table's binary COPY between the two databases (goal
//!   ≤ 1.1), with weft's peak RSS.
//! * [`pg_to_pg`] again with the stream read incrementally into `append_dedup` (the first
//!   load into a new product table, issue #15 item 7b: goal close to overwrite's ratio),
//!   then, for the cost it replaces, the same load merged batch by batch into the existing
//!   (emptied) table, with its ratio to the same pipe.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use common::{env_or, pg_store, sync_measured, weft_yaml, write_project, LAKE};
use weft_testkit::pg::PgTestDb;

/// The benchmark table, empty.
pub fn create_bench_table(db: &PgTestDb) {
    db.sql(
        "CREATE TABLE bench (
           id bigint PRIMARY KEY, qty int NOT NULL, status text NOT NULL, amount numeric(12,2),
           currency char(3), note text, created_at timestamptz NOT NULL, updated_at timestamptz,
           active bool, attrs jsonb)",
    );
}

/// Adds generated rows `from..=to` of the usual shapes to the benchmark table.
pub fn insert_bench_rows(db: &PgTestDb, from: u64, to: u64) {
    db.sql(&format!(
        "INSERT INTO bench SELECT g, (g % 1000)::int, (ARRAY['new','paid','shipped','done'])[1 + g % 4],
           (g % 100000) / 100.0, (ARRAY['EUR','USD','GBP'])[1 + g % 3],
           CASE WHEN g % 5 = 0 THEN NULL ELSE left(repeat(md5(g::text), 3), (g % 80)::int) END,
           '2024-01-01'::timestamptz + g * interval '1 second', '2024-06-01'::timestamptz + g * interval '1 second',
           g % 2 = 0, jsonb_build_object('k', g % 10, 'tag', 'x' || (g % 7))
         FROM generate_series({from}::int8, {to}::int8) g;"
    ));
    db.sql("VACUUM ANALYZE bench");
}

/// psql's binary COPY of `table` into /dev/null: seconds.
pub fn copy_to_dev_null(db: &PgTestDb, table: &str) -> f64 {
    let start = Instant::now();
    let status = db
        .psql_command()
        .arg("-q")
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

/// PostgreSQL → Parquet lake through the real binary, against psql's COPY: the ratio weft /
/// COPY and weft's peak RSS in MiB.
pub fn pg_to_parquet(db: &PgTestDb, rows: u64) -> (f64, f64) {
    let reference = copy_to_dev_null(db, "bench");
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("project");
    write_project(
        &project,
        &weft_yaml(LAKE, "  commit_interval: 10s\n"),
        &[pg_product(db, PgWrite::Overwrite)],
    );
    let (weft, rss) = sync_measured(&project);
    println!("postgres → parquet, {rows} rows");
    print_against(
        rows,
        ("psql COPY binary > /dev/null", reference),
        (weft, rss),
        "ratio weft / COPY",
        "1.30",
    );
    (weft / reference, rss)
}

/// Prints a case's lines: the reference's and weft's time and rows/s, weft's peak RSS, and
/// the ratio weft / reference against its `goal`.
fn print_against(
    rows: u64,
    (label, reference): (&str, f64),
    (weft, rss): (f64, f64),
    ratio: &str,
    goal: &str,
) {
    let rate = |secs: f64| rows as f64 / secs;
    let line = |label: &str| format!("{:<32}", format!("{label}:"));
    println!(
        "{}{reference:>8.2} s  {:>12.0} rows/s",
        line(label),
        rate(reference)
    );
    println!(
        "{}{weft:>8.2} s  {:>12.0} rows/s",
        line("weft sync run"),
        rate(weft)
    );
    println!("{}{rss:>8.1} MiB  (goal < 256)", line("weft peak RSS"));
    println!("{}{:.3}  (goal ≤ {goal})", line(ratio), weft / reference);
}

/// How the PostgreSQL → PostgreSQL benchmark reads and writes the stream.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PgWrite {
    /// `full_refresh` into `overwrite`.
    Overwrite,
    /// `incremental` (cursor `updated_at`) into `append_dedup` by `id`: a first load.
    Dedup,
}

impl PgWrite {
    fn stream_yaml(self) -> &'static str {
        match self {
            PgWrite::Overwrite => "    mode: full_refresh\n    write: overwrite\n",
            PgWrite::Dedup => "    mode: incremental\n    cursor: updated_at\n    write: append_dedup\n    primary_key: [id]\n",
        }
    }

    fn label(self) -> &'static str {
        match self {
            PgWrite::Overwrite => "overwrite",
            PgWrite::Dedup => "append_dedup first load",
        }
    }
}

/// psql piping the benchmark table's binary COPY from `db` into an empty copy in `dest`
/// (`COPY … TO STDOUT (FORMAT binary) | COPY … FROM STDIN (FORMAT binary)`): seconds.
pub fn copy_pipe(db: &PgTestDb, dest: &PgTestDb) -> f64 {
    let psql = |on: &PgTestDb, sql: &str| {
        let mut cmd = on.psql_command();
        cmd.args(["-q", "-c", sql]);
        cmd
    };
    create_bench_table(dest);
    let start = Instant::now();
    let mut dump = psql(db, "COPY bench TO STDOUT (FORMAT binary)")
        .stdout(Stdio::piped())
        .spawn()
        .expect("psql");
    let load = psql(dest, "COPY bench FROM STDIN (FORMAT binary)")
        .stdin(Stdio::from(dump.stdout.take().expect("piped stdout")))
        .stdout(Stdio::null())
        .status()
        .expect("psql");
    assert!(
        dump.wait().expect("psql").success() && load.success(),
        "psql pipe failed"
    );
    start.elapsed().as_secs_f64()
}

/// The benchmark product reading `db`'s table as `write` says.
fn pg_product(db: &PgTestDb, write: PgWrite) -> (String, String) {
    (
        "pg".into(),
        format!(
            "source:\n  connector: postgres\n  config: {}\nstreams:\n  - name: public.bench\n{}",
            db.pg_config(),
            write.stream_yaml()
        ),
    )
}

/// The benchmark project syncing `db`'s table into `dest` as `write` says.
fn pg_project(db: &PgTestDb, dest: &PgTestDb, write: PgWrite) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    write_project(
        &dir.path().join("project"),
        &weft_yaml(&pg_store(dest), "  commit_interval: 10s\n"),
        &[pg_product(db, write)],
    );
    dir
}

/// Runs the benchmark project through the real binary: seconds and peak RSS in MiB.
fn run_pg_project(dir: &Path, dest: &PgTestDb, rows: u64) -> (f64, f64) {
    let measured = sync_measured(&dir.join("project"));
    let copied = dest.sql("SELECT count(*), count(DISTINCT id) FROM bench.\"pg__public.bench\"");
    assert_eq!(
        copied,
        format!("{rows}|{rows}"),
        "weft copied every row once"
    );
    measured
}

/// PostgreSQL → PostgreSQL through the real binary: the benchmark table of `db` into a product
/// table of `dest` (a fresh database), written as `write` says, against [`copy_pipe`] in the
/// same run. Returns the ratio weft / pipe and weft's peak RSS in MiB.
pub fn pg_to_pg(db: &PgTestDb, dest: &PgTestDb, rows: u64, write: PgWrite) -> (f64, f64) {
    let reference = copy_pipe(db, dest);
    let dir = pg_project(db, dest, write);
    let (weft, rss) = run_pg_project(dir.path(), dest, rows);

    println!("postgres → postgres ({}), {rows} rows", write.label());
    print_against(
        rows,
        ("psql COPY binary | COPY binary", reference),
        (weft, rss),
        "ratio weft / pipe",
        "1.10",
    );
    (weft / reference, rss)
}

/// What the dedup first load replaced: the same rows merged batch by batch (COPY into a
/// staging table, `INSERT … ON CONFLICT` per commit) into the existing product table, emptied
/// and without a checkpoint (`dest` after [`pg_to_pg`] with [`PgWrite::Dedup`]), against
/// [`copy_pipe`] in the same run. Returns the ratio weft / pipe.
pub fn pg_merge_into_empty(db: &PgTestDb, dest: &PgTestDb, rows: u64) -> f64 {
    dest.sql("DROP TABLE bench; TRUNCATE bench.\"pg__public.bench\"; DELETE FROM bench._weft_checkpoints");
    let reference = copy_pipe(db, dest);
    let dir = pg_project(db, dest, PgWrite::Dedup);
    let (weft, rss) = run_pg_project(dir.path(), dest, rows);
    println!("postgres → postgres (append_dedup merged into an existing empty table), {rows} rows");
    println!("psql COPY binary | COPY binary: {reference:>8.2} s");
    println!("weft sync run:                  {weft:>8.2} s  (peak RSS {rss:.1} MiB)");
    println!("ratio weft / pipe:              {:.3}", weft / reference);
    weft / reference
}

fn main() {
    let rows: u64 = env_or("WEFT_BENCH_ROWS", 5_000_000);
    let rows2: u64 = env_or("WEFT_BENCH_ROWS2", 2 * rows);
    let db = PgTestDb::create("bench_pg");
    create_bench_table(&db);
    insert_bench_rows(&db, 1, rows);
    let mut runs = vec![(rows, pg_to_parquet(&db, rows))];
    let dest = PgTestDb::create("bench_pg_dest");
    let (pg_ratio, pg_rss) = pg_to_pg(&db, &dest, rows, PgWrite::Overwrite);
    drop(dest);
    let dest = PgTestDb::create("bench_pg_dedup");
    let (dedup_ratio, dedup_rss) = pg_to_pg(&db, &dest, rows, PgWrite::Dedup);
    let merge_ratio = pg_merge_into_empty(&db, &dest, rows);
    drop(dest);
    if rows2 > rows {
        // The same table grown: peak RSS must not follow the row count.
        insert_bench_rows(&db, rows + 1, rows2);
        runs.push((rows2, pg_to_parquet(&db, rows2)));
    }
    println!("summary");
    for (n, (ratio, rss)) in &runs {
        println!(
            "  postgres → parquet  {n:>11} rows: ratio weft / COPY {ratio:.3}, weft peak RSS {rss:.1} MiB"
        );
    }
    println!(
        "  postgres → postgres {rows:>11} rows: ratio weft / pipe {pg_ratio:.3}, weft peak RSS {pg_rss:.1} MiB"
    );
    println!(
        "  postgres → postgres {rows:>11} rows, append_dedup first load: ratio weft / pipe {dedup_ratio:.3}, weft peak RSS {dedup_rss:.1} MiB"
    );
    println!(
        "  postgres → postgres {rows:>11} rows, append_dedup merged into an empty table: ratio weft / pipe {merge_ratio:.3}"
    );
}
