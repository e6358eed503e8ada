//! PostgreSQL CDC end to end with the real `weft` binary, on a private cluster with
//! `wal_level=logical`.
//!
//! - A randomized workload (concurrent writers: inserts, updates that leave a large TOASTed
//!   column untouched, updates of it, primary-key updates, deletes, rollbacks, failing
//!   transactions; then an added column and a truncate) runs while `weft sync run` is
//!   SIGKILLed at random points and restarted (some runs with `--follow`). One project feeds the same table to three product
//!   stores at once, each through its own slot: PostgreSQL current state, PostgreSQL changelog,
//!   and the Parquet lake's current state. After catch-up, both current states equal the source
//!   exactly (every column, the large one by SHA-256), and the changelog holds every change once
//!   (no duplicate position/ordinal) and replays to the source's keys.
//! - An idle watched table under unrelated write traffic: the slot keeps up, so it does not pin
//!   WAL.
//! - A following run's idle commit never takes rows written after its checkpoint (held there
//!   with a pausepoint), so a kill then never makes the next run write them twice.

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use weft_testkit::pg::{ClusterOptions, PrivateCluster};
use weft_testkit::readers::dump;
use weft_testkit::rng::Rng;
use weft_testkit::{Outcome, TestProject};

const BIN: &str = env!("CARGO_BIN_EXE_weft");

fn project() -> TestProject {
    TestProject::new(
        BIN,
        "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n  commit_interval: 150ms\n",
    )
}

fn weft(p: &TestProject, cluster: &PrivateCluster, args: &[&str]) -> Command {
    let mut cmd = p.weft(args);
    cmd.env("PG_PASSWORD", cluster.password());
    cmd
}

fn run(p: &TestProject, cluster: &PrivateCluster, args: &[&str]) -> Outcome {
    Outcome(weft(p, cluster, args).output().expect("run weft"))
}

/// Runs a SQL script through psql against the cluster, not stopping at errors (a failing
/// statement aborts its transaction, as in an application).
fn psql_script(cluster: &PrivateCluster, database: &str, script: String) -> Child {
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-h", &cluster.host])
        .args([
            "-p",
            &cluster.port.to_string(),
            "-U",
            &cluster.user,
            "-d",
            database,
        ])
        .args(["-v", "ON_ERROR_STOP=0", "-f", "-"])
        .env("PGPASSWORD", cluster.password())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("psql");
    let mut stdin = child.stdin.take().unwrap();
    thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(script.as_bytes());
    });
    child
}

/// SQL for a value big and random enough to be TOASTed out of line (12.8 kB of hex that
/// compression cannot bring under the 2 kB threshold).
fn big_value(rng: &mut Rng) -> String {
    format!(
        "(SELECT string_agg(md5('{}' || x), '') FROM generate_series(1, 400) x)",
        rng.next(u64::MAX)
    )
}

/// One writer's transactions. Writer `w` of `writers` owns ids ≡ w (mod writers), so
/// writers rarely conflict, while their transactions interleave in the WAL.
fn writer_script(rng: &mut Rng, w: u64, writers: u64, txns: usize, with_note: bool) -> String {
    let mut own: Vec<u64> = (0..2000u64).filter(|i| i % writers == w).collect();
    let mut next_id = 1_000_000 + w;
    let mut s = String::new();
    for t in 0..txns {
        s.push_str("BEGIN;\n");
        for _ in 0..1 + rng.next(6) {
            let pick = |rng: &mut Rng, own: &Vec<u64>| own[rng.next(own.len() as u64) as usize];
            match rng.next(10) {
                0..=2 => {
                    let note = if with_note {
                        format!(", note = 'n{t}'")
                    } else {
                        String::new()
                    };
                    s.push_str(&format!(
                        "INSERT INTO items (id, k, body, big) VALUES ({next_id}, {}, 'b{t}', {}) ON CONFLICT (id) DO UPDATE SET k = excluded.k{note};\n",
                        rng.next(1000),
                        big_value(rng)
                    ));
                    own.push(next_id);
                    next_id += writers;
                }
                // Leaves the TOASTed column untouched: pgoutput sends it as unchanged.
                3..=5 => s.push_str(&format!(
                    "UPDATE items SET k = k + 1, body = 'u{t}'{} WHERE id = {};\n",
                    if with_note { ", note = 'u'" } else { "" },
                    pick(rng, &own)
                )),
                6 => s.push_str(&format!(
                    "UPDATE items SET big = {} WHERE id = {};\n",
                    big_value(rng),
                    pick(rng, &own)
                )),
                7 => {
                    let old = pick(rng, &own);
                    s.push_str(&format!(
                        "UPDATE items SET id = {next_id} WHERE id = {old};\n"
                    ));
                    own.retain(|&i| i != old);
                    own.push(next_id);
                    next_id += writers;
                }
                8 => {
                    let id = pick(rng, &own);
                    s.push_str(&format!("DELETE FROM items WHERE id = {id};\n"));
                }
                _ => s.push_str("SELECT pg_sleep(0.005);\n"),
            }
        }
        // Spread the workload over the kill loop's runs.
        s.push_str("SELECT pg_sleep(0.02);\n");
        s.push_str(match rng.next(8) {
            0 => "ROLLBACK;\n",
            _ => "COMMIT;\n",
        });
    }
    s
}

/// Starts `weft sync run` (now and then with `--follow`) over and over, SIGKILLing most runs
/// at a random point, until
/// `done` says the workload is over. Returns how many runs were killed.
fn sync_under_kills(
    p: &TestProject,
    cluster: &PrivateCluster,
    rng: &mut Rng,
    mut done: impl FnMut() -> bool,
) -> usize {
    let mut kills = 0;
    loop {
        let finished = done();
        // Every third run follows (streams until killed) instead of catching up and stopping.
        let args: &[&str] = if rng.next(3) == 0 {
            &["sync", "run", "--no-progress", "--follow"]
        } else {
            &["sync", "run", "--no-progress"]
        };
        let mut child = weft(p, cluster, args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let delay = Duration::from_millis(150 + rng.next(2500));
        let start = Instant::now();
        while start.elapsed() < delay && child.try_wait().unwrap().is_none() {
            thread::sleep(Duration::from_millis(10));
        }
        match child.try_wait().unwrap() {
            Some(status) => {
                let out = child.wait_with_output().unwrap();
                if !status.success() {
                    let manifest = std::fs::read_to_string(
                        p.stream_dir("shop", "lake", "public.items")
                            .join("_weft/manifest.json"),
                    )
                    .unwrap_or_default();
                    let state = run(p, cluster, &["sync", "status", "--format", "json"]).stdout();
                    panic!(
                        "a sync run failed: {}\nlake manifest: {manifest}\nstatus: {state}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
        }
        if finished {
            return kills;
        }
    }
}

/// `id|k|body|sha256(big)|note` of every row, by id, as PostgreSQL prints them.
fn source_lines(cluster: &PrivateCluster, database: &str, table: &str) -> Vec<String> {
    let out = cluster.sql(
        database,
        &format!(
            "SELECT id || '|' || coalesce(k::text, 'NULL') || '|' || coalesce(body, 'NULL') || '|' || coalesce(encode(sha256(big::bytea), 'hex'), 'NULL') || '|' || coalesce(note, 'NULL') FROM {table} ORDER BY id"
        ),
    );
    out.lines().map(str::to_string).collect()
}

fn lake_lines(batch: &RecordBatch) -> Vec<String> {
    let text = |name: &str, i: usize| -> String {
        match batch.column_by_name(name) {
            None => "NULL".into(),
            Some(c) => {
                weft_testkit::pgtext::pg_text(c.as_ref(), i).unwrap_or_else(|| "NULL".into())
            }
        }
    };
    let ids = batch
        .column_by_name("id")
        .expect("id column")
        .as_primitive::<Int64Type>();
    let mut rows: Vec<(i64, String)> = (0..batch.num_rows())
        .map(|i| {
            let big = batch
                .column_by_name("big")
                .and_then(|c| c.as_string_opt::<i32>().map(|s| (s, c.is_null(i))))
                .map(|(s, null)| {
                    if null {
                        "NULL".to_string()
                    } else {
                        sha256_hex(s.value(i))
                    }
                })
                .unwrap_or_else(|| "NULL".into());
            (
                ids.value(i),
                format!(
                    "{}|{}|{}|{}|{}",
                    ids.value(i),
                    text("k", i),
                    text("body", i),
                    big,
                    text("note", i)
                ),
            )
        })
        .collect();
    rows.sort_by_key(|(id, _)| *id);
    rows.into_iter().map(|(_, l)| l).collect()
}

/// The SHA-256 of a text value, as PostgreSQL's `encode(sha256(v::bytea), 'hex')` prints it.
fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn product_yaml(name: &str, source: &str, destination: Option<&str>, write: &str) -> String {
    let destination = destination
        .map(|d| format!("destination:\n  connector: postgres\n  config: {d}\n"))
        .unwrap_or_default();
    format!(
        "product: {name}\ndomain: shop\nowner: test@example.com\ndescription: cdc e2e\nsource:\n  connector: postgres\n  config: {source}\n{destination}streams:\n  - name: public.items\n    mode: cdc\n    write: {write}\n"
    )
}

#[test]
fn randomized_workload_under_sigkills_reaches_the_source_state_exactly() {
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    let mut rng = Rng::new("cdc_randomized_workload");
    cluster.sql("postgres", "CREATE DATABASE shop");
    cluster.sql("postgres", "CREATE DATABASE sink");
    cluster.sql(
        "shop",
        // REPLICA IDENTITY FULL: a primary-key update that leaves `big` untouched carries its
        // value in the old row (with DEFAULT the source stops the stream, tested in the crate).
        "CREATE TABLE items (id int8 PRIMARY KEY, k int4, body text, big text);
         ALTER TABLE items REPLICA IDENTITY FULL;
         INSERT INTO items SELECT g, g % 100, 'seed' || g,
           (SELECT string_agg(md5(g || '-' || x), '') FROM generate_series(1, 400) x)
           FROM generate_series(0, 1999) g;",
    );
    let src = cluster.pg_config("shop");
    let sink = cluster.pg_config("sink");
    let p = project();
    p.product(
        "shop",
        "current",
        &product_yaml("current", &src, Some(&sink), "append_dedup"),
    );
    p.product(
        "shop",
        "changes",
        &product_yaml("changes", &src, Some(&sink), "append"),
    );
    p.product(
        "shop",
        "lake",
        &product_yaml("lake", &src, None, "append_dedup"),
    );

    let writers = 3u64;
    let mut kills = 0;
    for half in 0..2 {
        let with_note = half == 1;
        if with_note {
            // Between the halves: a column is added, and the table is truncated and refilled.
            cluster.sql(
                "shop",
                "ALTER TABLE items ADD COLUMN note text;
                 TRUNCATE items;
                 INSERT INTO items SELECT g, g % 7, 'again' || g,
                   (SELECT string_agg(md5(g || '+' || x), '') FROM generate_series(1, 400) x), 'n'
                   FROM generate_series(0, 1999) g;",
            );
        }
        let mut children: Vec<Child> = (0..writers)
            .map(|w| {
                let script = writer_script(&mut rng, w, writers, 400, with_note);
                psql_script(&cluster, "shop", script)
            })
            .collect();
        kills += sync_under_kills(&p, &cluster, &mut rng, || {
            children.iter_mut().all(|c| c.try_wait().unwrap().is_some())
        });
    }
    eprintln!("{kills} sync runs killed");
    assert!(kills >= 2, "no run was killed: the test proved nothing");

    // Catch up: the last complete run reads to the WAL position current at its start.
    let out = run(&p, &cluster, &["sync", "run", "--no-progress"]);
    out.expect_code(0);

    let expected = source_lines(&cluster, "shop", "items");
    assert!(expected.len() > 1500, "{} rows", expected.len());
    let toast = cluster.sql(
        "shop",
        "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'items'",
    );
    assert!(
        toast.trim().parse::<u64>().unwrap() > 8 << 20,
        "the large values are not TOASTed out of line ({toast} bytes of TOAST)"
    );
    let current = source_lines(&cluster, "sink", "shop.\"current__public.items\"");
    assert_eq!(
        current.len(),
        expected.len(),
        "PostgreSQL current state row count"
    );
    assert!(
        current == expected,
        "PostgreSQL current state differs from the source"
    );

    let lake = lake_lines(&p.read_stream("shop", "lake", "public.items"));
    assert_eq!(lake.len(), expected.len(), "lake current state row count");
    for (l, e) in lake.iter().zip(&expected) {
        assert_eq!(l, e, "lake current state differs from the source");
    }

    // The changelog: every change once, and replaying it by key gives the source's keys.
    let dupes = cluster.sql(
        "sink",
        "SELECT count(*) FROM (SELECT _weft_position, _weft_ordinal FROM shop.\"changes__public.items\"
           GROUP BY 1, 2 HAVING count(*) > 1) d",
    );
    assert_eq!(dupes.trim(), "0", "changes applied twice in the changelog");
    let replayed = cluster.sql(
        "sink",
        "WITH cut AS (SELECT _weft_position AS p, _weft_ordinal AS o FROM shop.\"changes__public.items\"
                      WHERE _weft_op = 'truncate' ORDER BY 1 DESC, 2 DESC LIMIT 1),
              after AS (SELECT c.* FROM shop.\"changes__public.items\" c
                         WHERE NOT EXISTS (SELECT 1 FROM cut WHERE (c._weft_position, c._weft_ordinal) <= (cut.p, cut.o))),
              last AS (SELECT DISTINCT ON (id) id, _weft_op FROM after
                        ORDER BY id, _weft_position DESC, _weft_ordinal DESC)
         SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM last WHERE _weft_op <> 'delete'",
    );
    let ids = cluster.sql(
        "shop",
        "SELECT string_agg(id::text, ',' ORDER BY id) FROM items",
    );
    assert!(
        replayed.trim() == ids.trim(),
        "replaying the changelog does not give the source's keys"
    );

    // Idempotent: another run changes nothing.
    run(&p, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
    assert!(source_lines(&cluster, "sink", "shop.\"current__public.items\"") == expected);

    // Status shows the slots' lag; reset drops them.
    let status = run(&p, &cluster, &["sync", "status", "--format", "json"]);
    status.expect_code(0);
    let rows: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    let lag = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["stream"] == "shop/current/public.items")
        .unwrap()["lag_bytes"]
        .as_u64();
    assert!(lag.is_some(), "no lag for a cdc stream: {rows}");
    run(&p, &cluster, &["sync", "reset", "shop", "--yes"]).expect_code(0);
    let slots = cluster.sql("postgres", "SELECT count(*) FROM pg_replication_slots");
    assert_eq!(slots.trim(), "0", "reset left replication slots behind");
    let publications = cluster.sql("shop", "SELECT count(*) FROM pg_publication");
    assert_eq!(publications.trim(), "0", "reset left publications behind");
    // After a reset the next run snapshots again and reaches the same state.
    run(&p, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
    assert!(source_lines(&cluster, "sink", "shop.\"current__public.items\"") == expected);
}

#[test]
fn an_idle_watched_table_does_not_pin_wal_under_unrelated_traffic() {
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    cluster.sql("postgres", "CREATE DATABASE shop");
    cluster.sql(
        "shop",
        "CREATE TABLE items (id int8 PRIMARY KEY, k int4, body text, big text);
         INSERT INTO items VALUES (1, 1, 'x', 'y');
         CREATE TABLE busy (id bigserial PRIMARY KEY, pad text);",
    );
    let p = project();
    p.product(
        "shop",
        "current",
        &product_yaml("current", &cluster.pg_config("shop"), None, "append_dedup"),
    );
    run(&p, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
    let retained = || -> (u64, u64) {
        let out = cluster.sql(
            "postgres",
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8 FROM pg_replication_slots",
        );
        let mut parts = out.trim().split('|').map(|v| v.parse::<u64>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    };
    let mut worst = 0;
    let burst = 16 << 20;
    for round in 0..4 {
        // About 16 MiB of WAL in a table the product does not watch.
        cluster.sql(
            "shop",
            "INSERT INTO busy (pad) SELECT repeat(md5(g::text), 4) FROM generate_series(1, 100000) g;",
        );
        // Running-transaction records (written by checkpoints and every 15 s by the
        // background writer) are where a slot's restart point can move.
        cluster.sql("shop", "CHECKPOINT");
        run(&p, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
        let (restart, confirmed) = retained();
        eprintln!("round {round}: retained {restart} B, unconfirmed {confirmed} B");
        assert!(
            confirmed < 1 << 20,
            "round {round}: the slot's confirmed position is {confirmed} bytes behind although the watched table is idle"
        );
        worst = worst.max(restart);
    }
    assert!(
        worst < 2 * burst,
        "the slot retains {worst} bytes of WAL: it grows with unrelated traffic"
    );
    let batch = p.read_stream("shop", "current", "public.items");
    assert_eq!(batch.num_rows(), 1);
}

#[test]
fn cdc_on_a_server_without_logical_wal_and_in_overwrite_mode_fail_clearly() {
    let db = weft_testkit::pg::PgTestDb::create("cdc_bad");
    db.sql("CREATE TABLE items (id int8 PRIMARY KEY, k int4, body text, big text)");
    let wal_level = db.sql("SHOW wal_level");
    let config = db.pg_config();
    let p = project();
    p.product(
        "shop",
        "current",
        &product_yaml("current", &config, None, "append_dedup"),
    );
    let other = project();
    other.product(
        "shop",
        "whole",
        &product_yaml("whole", &config, None, "overwrite"),
    );

    // Refused when the project loads, with the place in the product file.
    let out = other.run(["sync", "run", "--no-progress", "shop/whole"]);
    out.expect_code(2);
    assert!(
        out.stderr()
            .contains("domains/shop/whole.yaml:11:12: streams[0].write: cdc streams cannot use write mode overwrite"),
        "{}",
        out.stderr()
    );

    if wal_level.trim() != "logical" {
        let out = p.run(["sync", "run", "--no-progress", "shop/current"]);
        out.expect_code(1);
        assert!(
            out.stderr().contains("wal_level=logical"),
            "{}",
            out.stderr()
        );
        assert!(!out.stderr().contains("panicked"), "{}", out.stderr());
    }
}

/// The private cluster runs with synchronous_commit=off: a commit can return before its WAL
/// is flushed (a run flushes it before catching up: `changes_committed_right_before_a_run_are_in_it`).
/// These tests commit synchronously.
fn synchronous_commits(cluster: &PrivateCluster) {
    cluster.sql("postgres", "ALTER SYSTEM SET synchronous_commit = on");
    cluster.sql("postgres", "SELECT pg_reload_conf()");
}

/// Issue #15 item 1: PostgreSQL does not log the existing rows of a column added with a
/// DEFAULT. The PostgreSQL current state fills them from the catalog's stored default; the
/// changelog keeps NULL for changes from before the column; a volatile default (a rewrite
/// that is not logged) stops the stream with the way out.
#[test]
fn a_column_added_with_a_default_reaches_the_rows_already_synced() {
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    synchronous_commits(&cluster);
    cluster.sql("postgres", "CREATE DATABASE shop");
    cluster.sql("postgres", "CREATE DATABASE sink");
    cluster.sql(
        "shop",
        "CREATE TABLE items (id int8 PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a');",
    );
    let src = cluster.pg_config("shop");
    let sink = cluster.pg_config("sink");
    let p = project();
    p.product(
        "shop",
        "current",
        &product_yaml("current", &src, Some(&sink), "append_dedup"),
    );
    p.product(
        "shop",
        "changes",
        &product_yaml("changes", &src, Some(&sink), "append"),
    );
    // The same current state and changelog in the lake.
    p.product(
        "shop",
        "lake",
        &product_yaml("lake", &src, None, "append_dedup"),
    );
    p.product(
        "shop",
        "lake_changes",
        &product_yaml("lake_changes", &src, None, "append"),
    );
    // The lake as DuckDB and pyarrow read it (README's way), as `id|v|extra` rows.
    let lake = |product: &str| {
        let rows = dump(&p.stream_dir("shop", product, "public.items"), "id");
        let cell = |c: Option<String>| c.unwrap_or_else(|| "NULL".into());
        let (ids, vs, extras) = (rows.column("id"), rows.column("v"), rows.column("extra"));
        ids.into_iter()
            .zip(vs)
            .zip(extras)
            .map(|((id, v), extra)| format!("{}|{}|{}", cell(id), cell(v), cell(extra)))
            .collect::<Vec<_>>()
            .join(",")
    };
    run(&p, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);

    cluster.sql(
        "shop",
        "ALTER TABLE items ADD COLUMN extra text DEFAULT 'd';
         INSERT INTO items VALUES (2, 'b');",
    );
    run(&p, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
    let current =
        "SELECT string_agg(concat_ws('|', id, v, coalesce(extra, 'NULL')), ',' ORDER BY id)";
    assert_eq!(
        cluster.sql("shop", &format!("{current} FROM items")).trim(),
        "1|a|d,2|b|d"
    );
    assert_eq!(
        cluster
            .sql(
                "sink",
                &format!("{current} FROM shop.\"current__public.items\"")
            )
            .trim(),
        "1|a|d,2|b|d"
    );
    // The lake's current state too (the row synced before the column was in a file without
    // it); its changelog keeps what was sent.
    assert_eq!(lake("lake"), "1|a|d,2|b|d");
    assert_eq!(lake("lake_changes"), "1|a|NULL,2|b|d");
    // Later rows carry exactly what the source sends (the fill is no default of the table).
    cluster.sql(
        "shop",
        "INSERT INTO items VALUES (3, 'c', NULL); UPDATE items SET extra = 'e' WHERE id = 1;",
    );
    run(&p, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
    assert_eq!(
        cluster
            .sql(
                "sink",
                &format!("{current} FROM shop.\"current__public.items\"")
            )
            .trim(),
        "1|a|e,2|b|d,3|c|NULL"
    );
    assert_eq!(lake("lake"), "1|a|e,2|b|d,3|c|NULL");
    assert_eq!(
        cluster
            .sql(
                "sink",
                "SELECT string_agg(concat_ws('|', _weft_op, id, coalesce(extra, 'NULL')), ',' \
                 ORDER BY _weft_position, _weft_ordinal) FROM shop.\"changes__public.items\""
            )
            .trim(),
        "insert|1|NULL,insert|2|d,insert|3|NULL,update|1|e"
    );

    // A volatile default rewrites the table without logging it: the stream stops and says
    // how to start over.
    cluster.sql(
        "shop",
        "ALTER TABLE items ADD COLUMN r float8 DEFAULT random(); INSERT INTO items VALUES (4, 'x');",
    );
    let out = run(
        &p,
        &cluster,
        &["sync", "run", "--no-progress", "shop/current"],
    );
    out.expect_code(1);
    assert!(
        out.stderr()
            .contains("column `r` was added with a default PostgreSQL computed row by row")
            && out
                .stderr()
                .contains("weft sync reset shop/current/public.items"),
        "{}",
        out.stderr()
    );
    run(
        &p,
        &cluster,
        &["sync", "reset", "shop/current/public.items", "--yes"],
    )
    .expect_code(0);
    run(
        &p,
        &cluster,
        &["sync", "run", "--no-progress", "shop/current"],
    )
    .expect_code(0);
    let with_r =
        "SELECT string_agg(concat_ws('|', id, v, coalesce(extra, 'NULL'), r), ',' ORDER BY id)";
    assert_eq!(
        cluster
            .sql(
                "sink",
                &format!("{with_r} FROM shop.\"current__public.items\"")
            )
            .trim(),
        cluster.sql("shop", &format!("{with_r} FROM items")).trim()
    );
}

/// Issue #15 item 5: two projects with the same domain, product and stream names read one
/// table through slots of their own: each destination gets every change.
#[test]
fn two_projects_with_the_same_names_never_share_a_slot() {
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    synchronous_commits(&cluster);
    cluster.sql("postgres", "CREATE DATABASE shop");
    cluster.sql("postgres", "CREATE DATABASE sink_a");
    cluster.sql("postgres", "CREATE DATABASE sink_b");
    cluster.sql(
        "shop",
        "CREATE TABLE items (id int8 PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a');",
    );
    let src = cluster.pg_config("shop");
    let sink = |db: &str| cluster.pg_config(db);
    let (a, b) = (project(), project());
    a.product(
        "shop",
        "current",
        &product_yaml("current", &src, Some(&sink("sink_a")), "append_dedup"),
    );
    b.product(
        "shop",
        "current",
        &product_yaml("current", &src, Some(&sink("sink_b")), "append_dedup"),
    );
    let table = "shop.\"current__public.items\"";
    let rows = |db: &str| {
        cluster
            .sql(
                db,
                &format!("SELECT string_agg(id || v, ',' ORDER BY id) FROM {table}"),
            )
            .trim()
            .to_string()
    };
    run(&a, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
    run(&b, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
    cluster.sql(
        "shop",
        "INSERT INTO items VALUES (2, 'b'); UPDATE items SET v = 'z' WHERE id = 1;",
    );
    run(&b, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
    cluster.sql("shop", "INSERT INTO items VALUES (3, 'c');");
    run(&a, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
    run(&b, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
    assert_eq!(rows("sink_a"), "1z,2b,3c");
    assert_eq!(rows("sink_b"), "1z,2b,3c");
    let slots = cluster.sql(
        "postgres",
        "SELECT count(*), count(DISTINCT slot_name) FROM pg_replication_slots WHERE slot_name \
         LIKE 'weft_shop_current_public_items_%'",
    );
    assert_eq!(slots.trim(), "2|2");
    // Each slot's publication names the pipeline (project included) that reads it.
    let owners = cluster.sql(
        "shop",
        "SELECT count(DISTINCT obj_description(oid, 'pg_publication')) FROM pg_publication \
         WHERE obj_description(oid, 'pg_publication') LIKE 'weft:shop.current.public.items@%'",
    );
    assert_eq!(owners.trim(), "2");
    // Resetting one project's stream leaves the other's slot alone.
    run(
        &a,
        &cluster,
        &["sync", "reset", "shop/current/public.items", "--yes"],
    )
    .expect_code(0);
    let left = cluster.sql("postgres", "SELECT count(*) FROM pg_replication_slots");
    assert_eq!(left.trim(), "1");
    cluster.sql("shop", "INSERT INTO items VALUES (4, 'd');");
    run(&b, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
    assert_eq!(rows("sink_b"), "1z,2b,3c,4d");
}

/// Changes committed right before a run are in that run, with the private cluster's own
/// `synchronous_commit=off` (a commit returns before its WAL is flushed, and decoding reads
/// flushed WAL only): the catch-up position is taken once the WAL is flushed. Before, the run
/// stopped at the flush position taken at its start and yielded none of them (they came one
/// run late). Snapshot run, then rounds of updates, inserts and deletes committed right before
/// the next run; after every run the lake's and the PostgreSQL store's current states equal
/// the source row by row and the changelog replays to its keys, through both transports.
#[test]
fn changes_committed_right_before_a_run_are_in_it() {
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    assert_eq!(cluster.sql("postgres", "SHOW synchronous_commit"), "off");
    cluster.sql("postgres", "CREATE DATABASE shop");
    cluster.sql("postgres", "CREATE DATABASE sink");
    cluster.sql(
        "shop",
        "CREATE TABLE items (id int8 PRIMARY KEY, k int4, body text, big text, note text);
         INSERT INTO items SELECT g, 0, 'seed' || g FROM generate_series(1, 20000) g;",
    );
    let src = cluster.pg_config("shop");
    let poll = format!(
        "{}, replication: {{ transport: poll }} }}",
        src.trim_end_matches('}').trim_end()
    );
    let sink = cluster.pg_config("sink");
    let p = TestProject::new(
        BIN,
        "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n  commit_interval: 50ms\n",
    );
    p.product(
        "shop",
        "lake",
        &product_yaml("lake", &src, None, "append_dedup"),
    );
    p.product(
        "shop",
        "current",
        &product_yaml("current", &poll, Some(&sink), "append_dedup"),
    );
    p.product(
        "shop",
        "changes",
        &product_yaml("changes", &src, Some(&sink), "append"),
    );
    let replayed = "WITH last AS (SELECT DISTINCT ON (id) id, _weft_op FROM shop.\"changes__public.items\"
                      ORDER BY id, _weft_position DESC, _weft_ordinal DESC)
                    SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM last WHERE _weft_op <> 'delete'";
    let ids = "SELECT string_agg(id::text, ',' ORDER BY id) FROM items";
    for round in 0..4u64 {
        if round > 0 {
            // Three transactions right before the run, as an application commits them.
            let base = 100_000 + round * 1000;
            for sql in [
                format!("UPDATE items SET k = k + 1 WHERE id % 37 = {round}"),
                format!("INSERT INTO items SELECT g, 0, 'new' FROM generate_series({base}, {base} + 999) g"),
                format!("DELETE FROM items WHERE id % 50 = {round}"),
            ] {
                cluster.sql("shop", &sql);
            }
        }
        run(&p, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
        let source = source_lines(&cluster, "shop", "items");
        let lake = lake_lines(&p.read_stream("shop", "lake", "public.items"));
        let store = source_lines(&cluster, "sink", "shop.\"current__public.items\"");
        for (what, got) in [("lake", &lake), ("PostgreSQL store", &store)] {
            if got != &source {
                let a: std::collections::BTreeSet<&String> = got.iter().collect();
                let b: std::collections::BTreeSet<&String> = source.iter().collect();
                let only_dest: Vec<_> = a.difference(&b).take(5).collect();
                let only_source: Vec<_> = b.difference(&a).take(5).collect();
                panic!(
                    "round {round}: the {what}'s current state ({} rows) differs from the source \
                     ({} rows)\nonly there: {only_dest:?}\nonly in the source: {only_source:?}",
                    got.len(),
                    source.len()
                );
            }
        }
        assert!(
            cluster.sql("sink", replayed) == cluster.sql("shop", ids),
            "round {round}: replaying the changelog does not give the source's keys"
        );
    }
}

/// #15 item 9: a `--follow` run confirms what it applied while the server is idle. The
/// engine committed a checkpoint only when the next message arrived, so after a burst the
/// last checkpoint waited (and the slot stayed tens of MB behind) until unrelated WAL made
/// the source say something again.
#[test]
fn a_following_run_confirms_a_burst_promptly_while_the_server_is_idle() {
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    cluster.sql("postgres", "CREATE DATABASE shop");
    cluster.sql(
        "shop",
        "CREATE TABLE items (id int8 PRIMARY KEY, k int4, body text, big text);
         INSERT INTO items VALUES (1, 1, 'x', 'y');
         CREATE TABLE busy (id bigserial PRIMARY KEY, pad text);",
    );
    let p = TestProject::new(
        BIN,
        "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n  commit_interval: 1s\n",
    );
    p.product(
        "shop",
        "current",
        &product_yaml("current", &cluster.pg_config("shop"), None, "append_dedup"),
    );
    run(&p, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
    let mut cmd = weft(&p, &cluster, &["sync", "run", "--no-progress", "--follow"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut follow = cmd.spawn().expect("weft --follow");
    // How far the slot's confirmed position is behind the server's WAL position, and behind
    // the end of the burst (negative once the burst is confirmed).
    let lag = || -> (i64, i64) {
        let out = cluster.sql(
            "postgres",
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8, \
             pg_wal_lsn_diff((SELECT lsn FROM burst_end), confirmed_flush_lsn)::int8 \
             FROM pg_replication_slots",
        );
        let (a, b) = out.trim().split_once('|').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    // A burst of about 40 MB of WAL in the watched table (20 transactions), then silence.
    cluster.sql(
        "shop",
        "DO $$ BEGIN FOR b IN 0..19 LOOP
           INSERT INTO items SELECT 10 + b * 1000 + i, i, 'burst',
             (SELECT string_agg(md5(random()::text || i || j), '') FROM generate_series(1, 60) j)
           FROM generate_series(1, 1000) i;
           COMMIT;
         END LOOP; END $$",
    );
    cluster.sql(
        "postgres",
        "CREATE TABLE burst_end AS SELECT pg_current_wal_lsn() AS lsn",
    );
    let started = std::time::Instant::now();
    let mut last = lag();
    while (last.0 >= 16 << 20 || last.1 > 0) && started.elapsed() < Duration::from_secs(20) {
        thread::sleep(Duration::from_millis(100));
        last = lag();
    }
    let waited = started.elapsed();
    let burst_ok = last.0 < 16 << 20 && last.1 <= 0;
    // Then unrelated write noise (about 2 MB every 100 ms for 3 s, in a table the product does
    // not watch): the confirmed position keeps up with it.
    let mut peak = 0;
    if burst_ok {
        let noise = Instant::now();
        while noise.elapsed() < Duration::from_secs(3) {
            cluster.sql(
                "shop",
                "INSERT INTO busy (pad) SELECT (SELECT string_agg(md5(random()::text || g || j), '') \
                 FROM generate_series(1, 32) j) FROM generate_series(1, 1000) g",
            );
            peak = peak.max(lag().0);
            thread::sleep(Duration::from_millis(100));
        }
    }
    let quiet = Instant::now();
    let mut after_noise = lag().0;
    while burst_ok && after_noise >= 16 << 20 && quiet.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(100));
        after_noise = lag().0;
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        burst_ok,
        "{waited:?} after a burst, with the server idle, the slot's confirmed position is {} bytes \
         behind the server and {} behind the burst's end",
        last.0,
        last.1
    );
    eprintln!(
        "confirmed lag {} B after {waited:?}; under noise at most {peak} B",
        last.0
    );
    assert!(
        peak < 64 << 20,
        "under unrelated writes the slot's confirmed position fell {peak} bytes behind"
    );
    assert!(
        after_noise < 16 << 20,
        "5 s after the unrelated writes stopped the slot's confirmed position is {after_noise} bytes behind"
    );
    // Everything confirmed was committed to the lake first.
    let batch = p.read_stream("shop", "current", "public.items");
    assert_eq!(batch.num_rows(), 20_001);
}

/// A `--follow` run with more CDC streams than `max_concurrent_streams`: a following stream
/// never ends, so the streams after the first few used to wait for a permit forever and
/// never saw a change. Every following stream runs, whatever the limit.
#[test]
fn a_following_run_streams_every_cdc_stream_beyond_the_concurrency_limit() {
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    cluster.sql("postgres", "CREATE DATABASE shop");
    cluster.sql(
        "shop",
        "CREATE TABLE a (id int8 PRIMARY KEY, v text); INSERT INTO a VALUES (1, 'a1');
         CREATE TABLE b (id int8 PRIMARY KEY, v text); INSERT INTO b VALUES (1, 'b1');",
    );
    let p = TestProject::new(
        BIN,
        "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n  commit_interval: 150ms\n  max_concurrent_streams: 1\n",
    );
    p.product(
        "shop",
        "pair",
        &format!(
            "product: pair\ndomain: shop\nowner: test@example.com\ndescription: two cdc streams\nsource:\n  connector: postgres\n  config: {}\nstreams:\n  - name: public.a\n    mode: cdc\n    write: append\n  - name: public.b\n    mode: cdc\n    write: append\n",
            cluster.pg_config("shop")
        ),
    );
    // Catching up ends, so the limit only orders the two streams.
    run(&p, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
    let mut cmd = weft(&p, &cluster, &["sync", "run", "--no-progress", "--follow"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut follow = cmd.spawn().expect("weft --follow");
    cluster.sql(
        "shop",
        "INSERT INTO a VALUES (2, 'a2'); INSERT INTO b VALUES (2, 'b2');",
    );
    let started = Instant::now();
    let counts = || {
        (
            p.id_counts("shop", "pair", "public.a").1,
            p.id_counts("shop", "pair", "public.b").1,
        )
    };
    let mut seen = counts();
    while seen != (2, 2) && started.elapsed() < Duration::from_secs(60) {
        thread::sleep(Duration::from_millis(200));
        seen = counts();
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(
        seen,
        (2, 2),
        "distinct ids in the lake of streams a and b after a following run saw one insert each"
    );
}

/// A following run commits a checkpoint on its own when the source goes quiet (so an idle
/// server's slot confirms what was applied). That commit may only take a checkpoint nothing was
/// written after: changes handed on past it belong to the next checkpoint. Seen in CI: the
/// idle commit committed a transaction's first batches with the checkpoint before them, and
/// after a kill the resumed run wrote them again (327 changes twice in the changelog).
///
/// Deterministic: a pausepoint holds the read right after the first batch of a large
/// transaction was handed on, before its checkpoint, for longer than `commit_interval`.
#[test]
fn a_following_run_never_commits_changes_past_its_checkpoint() {
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    cluster.sql("postgres", "CREATE DATABASE shop");
    cluster.sql("postgres", "CREATE DATABASE sink");
    cluster.sql(
        "shop",
        "CREATE TABLE items (id int8 PRIMARY KEY, k int4, body text, big text);
         INSERT INTO items SELECT g, g, 'seed', 'x' FROM generate_series(1, 10) g;",
    );
    // Batches of 10 rows: the large transaction's rows are handed on in parts at its commit,
    // and its checkpoint follows once the connection is quiet.
    let src = format!(
        "{{ host: \"{}\", port: {}, user: {}, password: \"${{PG_PASSWORD}}\", database: shop, batch_size: 10 }}",
        cluster.host, cluster.port, cluster.user
    );
    let sink = format!(
        "{{ host: \"{}\", port: {}, user: {}, password: \"${{PG_PASSWORD}}\", database: sink }}",
        cluster.host, cluster.port, cluster.user
    );
    let p = TestProject::new(
        BIN,
        "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n  commit_interval: 5s\n",
    );
    p.env("PG_PASSWORD", cluster.password());
    p.product(
        "shop",
        "changes",
        &product_yaml("changes", &src, Some(&sink), "append"),
    );
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let count = |filter: &str| -> u64 {
        cluster
            .sql(
                "sink",
                &format!("SELECT count(*) FROM shop.\"changes__public.items\" WHERE {filter}"),
            )
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(count("true"), 10);

    // Hit 1: the first small transaction; 2: the second; 3: the large one's first part.
    let (mut follow, release) = p.spawn_paused(
        "changes_handed_on@3",
        ["sync", "run", "--no-progress", "--follow"],
    );
    let started = Instant::now();
    while cluster
        .sql(
            "postgres",
            "SELECT count(*) FROM pg_replication_slots WHERE active",
        )
        .trim()
        != "1"
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the following run never started streaming"
        );
        thread::sleep(Duration::from_millis(50));
    }
    cluster.sql("shop", "INSERT INTO items VALUES (11, 11, 'one', 'x')");
    while count("true") < 11 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the first change was never committed"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // Right after that commit: a small transaction (its checkpoint is then pending, its idle
    // commit due `commit_interval` after the last one), then a large one within that time.
    let committed = Instant::now();
    cluster.sql("shop", "INSERT INTO items VALUES (12, 12, 'two', 'x')");
    thread::sleep(Duration::from_millis(600));
    cluster.sql(
        "shop",
        "INSERT INTO items SELECT g, g, 'large', 'x' FROM generate_series(100, 150) g",
    );
    follow.wait_for_line(
        "pausepoint `changes_handed_on` reached",
        Duration::from_secs(60),
    );
    // Past the idle commit's time, with the large transaction's checkpoint held back.
    thread::sleep(Duration::from_secs(7).saturating_sub(committed.elapsed()));
    let early = count("id >= 100");
    follow.signal(libc::SIGKILL);
    let _ = follow.finish(Duration::from_secs(30));
    assert_eq!(
        early, 0,
        "changes handed on after the pending checkpoint were committed with it"
    );

    std::fs::write(&release, "").unwrap();
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    assert_eq!(count("true"), 10 + 2 + 51, "every change, once");
    let dupes = cluster.sql(
        "sink",
        "SELECT count(*) FROM (SELECT _weft_position, _weft_ordinal FROM shop.\"changes__public.items\"
           GROUP BY 1, 2 HAVING count(*) > 1) d",
    );
    assert_eq!(dupes.trim(), "0", "changes applied twice in the changelog");
}
