//! PostgreSQL CDC benchmark, printing weft against `pg_recvlogical` measured in the same run.
//!
//! `cargo bench --bench cdc` on a private cluster with `wal_level=logical` (changes:
//! `WEFT_BENCH_CHANGES`, default 1,000,000; the one-change-per-transaction case uses
//! `WEFT_BENCH_SINGLE_CHANGES`, default the same).
//!
//! For each of "1,000 changes per transaction" and "1 change per transaction":
//! a slot for the reference and weft's slots are created on the empty table, the changes are
//! made (half inserts, half updates of those rows), then
//! * `pg_recvlogical` drains the reference slot (pgoutput, the same publication) to the WAL
//!   position at the end into /dev/null: the fastest a client can receive the changes;
//! * `weft sync run` applies the same changes into a PostgreSQL current-state product and, in a
//!   second product, into the Parquet lake's current state;
//!
//! and it prints changes/s, the ratio weft / pg_recvlogical rate (goal ≥ 0.8) and weft's peak
//! RSS. Then the end-to-end lag at a steady ~5k changes/s: `weft sync run --follow` into
//! PostgreSQL while a writer commits 50-row transactions every 10 ms; each row's lag is the
//! time from its commit (`clock_timestamp()` at insert) until a poller sees it in the product
//! table (server clock for both), p50/p99 (goal p99 < 1 s). `WEFT_BENCH_VERBOSE=1` prints
//! weft's log of the lake runs.
//!
//! Follow-mode memory (issue #15 item 10): `weft sync run --follow` of one product with N CDC
//! streams into the lake's current state (`WEFT_BENCH_FOLLOW_STREAMS`, default `1,9`), while a
//! writer changes every table (`WEFT_BENCH_FOLLOW_ROUNDS` rounds, default 40, of 1,000 inserts
//! and 1,000 updates per table, one transaction per table and round); weft's peak RSS (VmHWM)
//! once the writer is done and the follower had 15 s to catch up, against the lake's memory
//! budget (256 MiB) and the one-stream case of the same run. `WEFT_BENCH_ONLY=follow` runs
//! only this part.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{env_or, weft_yaml, write_project, LAKE};
use weft_testkit::measure::{peak_rss_mib, run_measured};
use weft_testkit::pg::{ClusterOptions, PrivateCluster};

/// The throughput and lag project: `db`'s `bench` table by CDC into a PostgreSQL current
/// state (product `pg`, database `<db>_sink`) and into the lake's (product `lake`).
fn cdc_project(dir: &Path, cluster: &PrivateCluster, db: &str, commit_interval: &str) {
    let products: Vec<(String, String)> = [
        (
            "pg",
            format!(
                "destination:\n  connector: postgres\n  config: {}\n",
                cluster.pg_config(&format!("{db}_sink"))
            ),
        ),
        ("lake", String::new()),
    ]
    .into_iter()
    .map(|(name, destination)| {
        (
            name.to_string(),
            format!(
                "source:\n  connector: postgres\n  config: {}\n{destination}streams:\n  - name: public.bench\n    mode: cdc\n    write: append_dedup\n",
                cluster.pg_config(db)
            ),
        )
    })
    .collect();
    write_project(
        dir,
        &weft_yaml(LAKE, &format!("  commit_interval: {commit_interval}\n")),
        &products,
    );
}

/// `weft --project <dir> ARGS…` with the cluster's password for the products' configs.
fn weft(dir: &Path, cluster: &PrivateCluster, args: &[&str]) -> Command {
    let mut cmd = common::weft(dir, args);
    cmd.env("PG_PASSWORD", cluster.password());
    cmd
}

/// One case: returns (recvlogical rate, weft→pg rate, weft→lake rate, pg RSS, lake RSS).
fn throughput(cluster: &PrivateCluster, db: &str, changes: u64, per_txn: u64) -> [f64; 5] {
    cluster.sql("postgres", &format!("CREATE DATABASE {db}"));
    cluster.sql("postgres", &format!("CREATE DATABASE {db}_sink"));
    // Many small transactions: do not wait for a WAL flush on each commit.
    cluster.sql(
        "postgres",
        &format!("ALTER DATABASE {db} SET synchronous_commit = off"),
    );
    cluster.sql(
        db,
        "CREATE TABLE bench (id int8 PRIMARY KEY, a int4, t text, at timestamptz DEFAULT clock_timestamp());
         CREATE PUBLICATION ref_pub FOR TABLE bench;",
    );
    cluster.sql(
        db,
        &format!("SELECT pg_create_logical_replication_slot('ref_{db}', 'pgoutput')"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("project");
    cdc_project(&project, cluster, db, "5s");
    // The snapshot of the empty table: creates weft's slots before the changes.
    let out = weft(&project, cluster, &["sync", "run", "--no-progress"])
        .output()
        .expect("weft");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rows = changes / 2;
    let started = Instant::now();
    cluster.sql(
        db,
        &format!(
            "DO $$ BEGIN
               FOR i IN 0..{last} LOOP
                 INSERT INTO bench (id, a, t) SELECT g, g % 1000, md5(g::text) FROM generate_series(i * {per_txn}, i * {per_txn} + {per_txn} - 1) g;
                 COMMIT;
               END LOOP;
               FOR i IN 0..{last} LOOP
                 UPDATE bench SET a = a + 1 WHERE id >= i * {per_txn} AND id < i * {per_txn} + {per_txn};
                 COMMIT;
               END LOOP;
             END $$;",
            last = rows / per_txn - 1
        ),
    );
    let end = cluster.sql(db, "SELECT pg_current_wal_lsn()");
    eprintln!(
        "made {changes} changes in {:.1} s, WAL end {end}",
        started.elapsed().as_secs_f64()
    );

    let mut recv = Command::new("pg_recvlogical");
    recv.args(["-h", &cluster.host, "-p", &cluster.port.to_string()])
        .args(["-U", &cluster.user, "-d", db])
        .args([
            "--slot",
            &format!("ref_{db}"),
            "--start",
            "--endpos",
            end.trim(),
        ])
        .args(["-o", "proto_version=1", "-o", "publication_names=ref_pub"])
        .args(["-f", "/dev/null", "--no-loop"])
        .env("PGPASSWORD", cluster.password());
    let (recv_secs, _) = run_measured(recv, dir.path());

    let mut pg = weft(
        &project,
        cluster,
        &["sync", "run", "--no-progress", "bench/pg"],
    );
    pg.stdin(Stdio::null());
    let (pg_secs, pg_rss) = run_measured(pg, dir.path());
    let lake = weft(
        &project,
        cluster,
        &["sync", "run", "--no-progress", "bench/lake"],
    );
    let (lake_secs, lake_rss) = run_measured(lake, dir.path());
    if std::env::var_os("WEFT_BENCH_VERBOSE").is_some() {
        // weft's own log of the lake run (timings of commits and the settling compaction).
        let log = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
        eprintln!("weft → lake log:\n{log}");
    }

    let count = cluster.sql(
        &format!("{db}_sink"),
        "SELECT count(*) || ' ' || sum(a) FROM bench.\"pg__public.bench\"",
    );
    let expected = cluster.sql(db, "SELECT count(*) || ' ' || sum(a) FROM bench");
    assert_eq!(
        count, expected,
        "the PostgreSQL product differs from the source"
    );

    let rate = |secs: f64| changes as f64 / secs;
    [
        rate(recv_secs),
        rate(pg_secs),
        rate(lake_secs),
        pg_rss,
        lake_rss,
    ]
}

/// End-to-end lag at a steady rate into PostgreSQL: (p50, p99, achieved changes/s) in seconds.
fn lag(cluster: &PrivateCluster) -> (f64, f64, f64) {
    let db = "lagdb";
    cluster.sql("postgres", &format!("CREATE DATABASE {db}"));
    cluster.sql("postgres", &format!("CREATE DATABASE {db}_sink"));
    cluster.sql(
        db,
        "CREATE TABLE bench (id int8 PRIMARY KEY, a int4, t text, at timestamptz DEFAULT clock_timestamp());",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("project");
    cdc_project(&project, cluster, db, "100ms");
    let mut follower = weft(
        &project,
        cluster,
        &["sync", "run", "--no-progress", "--follow", "bench/pg"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("weft --follow");
    // Wait for the snapshot (the product table exists).
    let sink = format!("{db}_sink");
    let started = Instant::now();
    while cluster
        .sql(
            &sink,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'pg__public.bench'",
        )
        .trim()
        != "1"
    {
        assert!(started.elapsed() < Duration::from_secs(60), "no snapshot");
        thread::sleep(Duration::from_millis(100));
    }

    let batches = env_or("WEFT_BENCH_LAG_BATCHES", 3000u64);
    let writer = {
        let (host, port, user, password) = (
            cluster.host.clone(),
            cluster.port,
            cluster.user.clone(),
            cluster.password().to_string(),
        );
        thread::spawn(move || {
            let sql = format!(
                "DO $$ BEGIN FOR i IN 0..{} LOOP
                   INSERT INTO bench (id, a, t) SELECT g, 0, 'x' FROM generate_series(i * 50, i * 50 + 49) g;
                   COMMIT;
                   PERFORM pg_sleep(0.01);
                 END LOOP; END $$;",
                batches - 1
            );
            let t0 = Instant::now();
            let out = Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-h",
                    &host,
                    "-p",
                    &port.to_string(),
                    "-U",
                    &user,
                ])
                .args(["-d", db, "-v", "ON_ERROR_STOP=1", "-c", &sql])
                .env("PGPASSWORD", password)
                .output()
                .expect("psql");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            t0.elapsed().as_secs_f64()
        })
    };
    // Poll the product table: the server's clock when each id was first seen.
    let total = batches * 50;
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut last = -1i64;
    let poll_start = Instant::now();
    while last + 1 < total as i64 {
        assert!(
            poll_start.elapsed() < Duration::from_secs(600),
            "the product never caught up"
        );
        let out = cluster.sql(
            &sink,
            "SELECT coalesce(max(id), -1) || '|' || clock_timestamp() FROM bench.\"pg__public.bench\"",
        );
        let (max, at) = out.trim().split_once('|').expect("max|ts");
        let max: i64 = max.parse().expect("max id");
        if max > last {
            seen.push((max, at.to_string()));
            last = max;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let write_secs = writer.join().expect("writer");
    let _ = Command::new("kill")
        .args(["-INT", &follower.id().to_string()])
        .status();
    let _ = follower.wait();

    // Each row's lag: the first poll that saw an id ≥ it, minus its commit time.
    let values = seen
        .iter()
        .map(|(max, at)| format!("({max}, '{at}'::timestamptz)"))
        .collect::<Vec<_>>()
        .join(",");
    cluster.sql(
        db,
        &format!(
            "CREATE TABLE seen (max_id int8, at timestamptz); INSERT INTO seen VALUES {values};"
        ),
    );
    let out = cluster.sql(
        db,
        "WITH l AS (SELECT extract(epoch FROM (SELECT min(s.at) FROM seen s WHERE s.max_id >= b.id) - b.at) AS lag FROM bench b)
         SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) || '|' || percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) FROM l",
    );
    let (p50, p99) = out.trim().split_once('|').expect("p50|p99");
    (
        p50.parse().expect("p50"),
        p99.parse().expect("p99"),
        total as f64 / write_secs,
    )
}

/// Peak RSS (MiB) of a `--follow` run of `streams` CDC streams into the lake while a writer
/// changes every table; also the changes made and the seconds the writer took.
fn follow_memory(cluster: &PrivateCluster, streams: usize, rounds: u64) -> (f64, u64, f64) {
    let db = format!("follow{streams}");
    cluster.sql("postgres", &format!("CREATE DATABASE {db}"));
    cluster.sql(
        "postgres",
        &format!("ALTER DATABASE {db} SET synchronous_commit = off"),
    );
    for i in 0..streams {
        cluster.sql(
            &db,
            &format!("CREATE TABLE t{i} (id int8 PRIMARY KEY, a int4, t text, at timestamptz DEFAULT clock_timestamp())"),
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("project");
    let list: String = (0..streams)
        .map(|i| format!("  - name: public.t{i}\n    mode: cdc\n    write: append_dedup\n"))
        .collect();
    write_project(
        &project,
        // Every stream at once: a follow stream never finishes, so one over the limit would
        // wait forever.
        &weft_yaml(
            LAKE,
            &format!("  commit_interval: 1s\n  max_concurrent_streams: {streams}\n"),
        ),
        &[(
            "follow".into(),
            format!(
                "source:\n  connector: postgres\n  config: {}\nstreams:\n{list}",
                cluster.pg_config(&db)
            ),
        )],
    );
    let mut follower = weft(
        &project,
        cluster,
        &["sync", "run", "--no-progress", "--follow", "bench/follow"],
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.path().join("follow.log")).expect("log"))
    .spawn()
    .expect("weft --follow");
    // The snapshot of the empty tables creates the slot; changes made before it are read by
    // the snapshot instead, so nothing is lost either way.
    thread::sleep(Duration::from_secs(5));
    let started = Instant::now();
    let sql = format!(
        "DO $$ BEGIN
           FOR r IN 0..{last} LOOP
             FOR i IN 0..{tables} LOOP
               EXECUTE format('INSERT INTO t%s (id, a, t) SELECT g, 0, md5(g::text) FROM generate_series(%s, %s) g', i, r * 1000, r * 1000 + 999);
               IF r > 0 THEN
                 EXECUTE format('UPDATE t%s SET a = a + 1 WHERE id >= %s AND id < %s', i, (r - 1) * 1000, r * 1000);
               END IF;
               COMMIT;
             END LOOP;
           END LOOP;
         END $$;",
        last = rounds - 1,
        tables = streams - 1
    );
    cluster.sql(&db, &sql);
    let write_secs = started.elapsed().as_secs_f64();
    thread::sleep(Duration::from_secs(15));
    if let Ok(Some(status)) = follower.try_wait() {
        panic!(
            "weft --follow ended with {status}:\n{}",
            std::fs::read_to_string(dir.path().join("follow.log")).unwrap_or_default()
        );
    }
    let peak_mib = peak_rss_mib(follower.id());
    let _ = Command::new("kill")
        .args(["-INT", &follower.id().to_string()])
        .status();
    let _ = follower.wait();
    // Every table's current state reached the lake: rounds × 1,000 rows per stream.
    for i in 0..streams {
        let stream = project.join(format!("lake/bench/follow/public.t{i}"));
        let rows: i64 = weft_testkit::committed_files(&stream)
            .iter()
            .map(|f| {
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    std::fs::File::open(f).expect("open"),
                )
                .expect("parquet")
                .metadata()
                .file_metadata()
                .num_rows()
            })
            .sum();
        assert_eq!(
            rows,
            rounds as i64 * 1000,
            "stream public.t{i} did not catch up within 15 s of the writer's end"
        );
    }
    let changes = streams as u64 * (rounds * 1000 + (rounds - 1) * 1000);
    (peak_mib, changes, write_secs)
}

fn main() {
    // Room for the follow cases' slots (one per CDC stream) besides the throughput cases'.
    let options = ClusterOptions {
        replication_slots: 24,
        ..ClusterOptions::default()
    };
    let Some(cluster) = PrivateCluster::start(options) else {
        eprintln!("no private PostgreSQL cluster: nothing measured");
        return;
    };
    if std::env::var("WEFT_BENCH_ONLY").as_deref() == Ok("follow") {
        follow_cases(&cluster);
        return;
    }
    let changes = env_or("WEFT_BENCH_CHANGES", 1_000_000u64);
    let single = env_or("WEFT_BENCH_SINGLE_CHANGES", changes);
    let mut summary = Vec::new();
    for (label, db, n, per_txn) in [
        ("1,000 changes per transaction", "bulk", changes, 1000),
        ("1 change per transaction", "single", single, 1),
    ] {
        let [recv, pg, lake, pg_rss, lake_rss] = throughput(&cluster, db, n, per_txn);
        println!("cdc, {n} changes, {label}");
        println!("pg_recvlogical → /dev/null: {recv:>12.0} changes/s");
        println!(
            "weft → PostgreSQL:          {pg:>12.0} changes/s  ratio {:.3} (goal ≥ 0.8)  peak RSS {pg_rss:.1} MiB",
            pg / recv
        );
        println!(
            "weft → Parquet lake:        {lake:>12.0} changes/s  ratio {:.3} (goal ≥ 0.8)  peak RSS {lake_rss:.1} MiB",
            lake / recv
        );
        summary.push(format!(
            "  {label:<32} recvlogical {recv:>9.0}/s  pg {:.3}×  lake {:.3}×  RSS {pg_rss:.0}/{lake_rss:.0} MiB",
            pg / recv,
            lake / recv
        ));
    }
    let (p50, p99, rate) = lag(&cluster);
    println!("lag at {rate:.0} changes/s into PostgreSQL: p50 {p50:.3} s, p99 {p99:.3} s (goal p99 < 1 s)");
    println!("summary");
    for line in summary {
        println!("{line}");
    }
    println!("  lag p50 {p50:.3} s, p99 {p99:.3} s at {rate:.0} changes/s");
    follow_cases(&cluster);
}

/// The follow-mode memory cases, printed against the lake's budget.
fn follow_cases(cluster: &PrivateCluster) {
    let rounds = env_or("WEFT_BENCH_FOLLOW_ROUNDS", 40u64).max(1);
    let cases: Vec<usize> = common::env_list("WEFT_BENCH_FOLLOW_STREAMS", "1,9")
        .into_iter()
        .filter(|&n| n > 0)
        .collect();
    for streams in cases {
        let (rss, changes, secs) = follow_memory(cluster, streams, rounds);
        println!(
            "follow into the lake, {streams} CDC streams, {changes} changes written in {secs:.1} s: peak RSS {rss:.1} MiB, ratio to the 256 MiB budget {:.3}",
            rss / 256.0
        );
    }
}
