//! End to end: the real `weft` binary syncing PostgreSQL tables into the Parquet lake. A
//! multi-million-row full refresh SIGKILLed at random points and rerun, then compared with the
//! table row by row; incremental with cursor ties; bad input (wrong password, a table dropped
//! mid-sync, a hostile table name); password authentication on a private cluster (wrong
//! password refused with a clear message that never holds a password, the right one from
//! `${PG_PASSWORD}`).

use std::process::Stdio;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use weft_testkit::pg::{ClusterOptions, PgTestDb, PrivateCluster};
use weft_testkit::{manifest_checkpoint, TestProject};

const BIN: &str = env!("CARGO_BIN_EXE_weft");

fn product(db: &PgTestDb, streams: &str, extra: &str) -> String {
    format!(
        "product: db\ndomain: ops\nowner: test@example.com\ndescription: postgres e2e\nsource:\n  connector: postgres\n  config: {{ host: \"{}\", port: {}, user: {}, database: {}{extra} }}\nstreams:\n{streams}",
        db.host, db.port, db.user, db.name
    )
}

fn seed() -> u64 {
    std::env::var("WEFT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// `id|a|t` lines of the lake, sorted by id.
fn lake_lines(batch: &RecordBatch) -> Vec<(i64, String)> {
    let id = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let a = batch
        .column_by_name("a")
        .unwrap()
        .as_primitive::<Int32Type>();
    let t = batch.column_by_name("t").unwrap().as_string::<i32>();
    let mut rows: Vec<(i64, String)> = (0..batch.num_rows())
        .map(|i| {
            let t = if t.is_null(i) { "NULL" } else { t.value(i) };
            (id.value(i), format!("{}|{}|{}", id.value(i), a.value(i), t))
        })
        .collect();
    rows.sort_by_key(|(id, _)| *id);
    rows
}

#[test]
fn full_refresh_of_millions_of_rows_survives_sigkills() {
    let rows: u64 = std::env::var("WEFT_E2E_PG_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let db = PgTestDb::create("pgsrc_e2e_kill");
    db.sql(&format!(
        "CREATE TABLE big (id int8 PRIMARY KEY, a int4 NOT NULL, t text);
         INSERT INTO big SELECT g, ((g::int8 * 7919) % 100003)::int4, CASE WHEN g % 10 = 0 THEN NULL ELSE md5(g::text) END FROM generate_series(1, {rows}) g;
         ANALYZE big;"
    ));
    let p = TestProject::with_lake(BIN, "200ms");
    p.product(
        "ops",
        "db",
        &product(
            &db,
            "  - name: public.big\n    mode: full_refresh\n    write: overwrite\n",
            ", range_rows: 200000, batch_size: 20000",
        ),
    );
    let seed = seed();
    eprintln!("WEFT_TEST_SEED={seed}");
    let mut rng = seed | 1;
    let mut next = |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    let dir = p.stream_dir("ops", "db", "public.big");
    let mut kills = 0;
    let mut resumed_mid_table = false;
    for _ in 0..4 {
        let mut child = p
            .weft(["sync", "run", "--no-progress"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The first run is killed only once an overwrite generation holds a mid-table
        // checkpoint, so the rerun must resume inside the table; later ones at random.
        let pending_cp = || {
            std::fs::read_to_string(dir.join("_weft/manifest.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .map(|m| m["pending"]["checkpoint"].is_object())
                .unwrap_or(false)
        };
        let start = Instant::now();
        if kills == 0 {
            while !pending_cp() && start.elapsed() < Duration::from_secs(60) {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let extra = if kills == 0 { 0 } else { next(400) };
        let delay = start.elapsed() + Duration::from_millis(extra);
        let mut finished = false;
        while start.elapsed() < delay || kills == 0 && !pending_cp() {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "a run ended on its own with {status}");
                finished = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if finished {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        resumed_mid_table |= pending_cp();
    }
    eprintln!("{kills} kills, a mid-table checkpoint was committed: {resumed_mid_table}");
    assert!(
        kills >= 1,
        "no run was killed: the test proved nothing (seed {seed})"
    );
    assert!(
        resumed_mid_table,
        "no kill landed after a mid-table commit: the test proved nothing (seed {seed})"
    );
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let cp = manifest_checkpoint(&dir).expect("a published checkpoint");
    assert_eq!(cp["complete"], true, "{cp}");

    let lake = lake_lines(&p.read_stream("ops", "db", "public.big"));
    assert_eq!(lake.len() as u64, rows, "row count");
    let table = db.sql("SELECT id || '|' || a || '|' || coalesce(t, 'NULL') FROM big ORDER BY id");
    let mut n = 0;
    for (line, (id, got)) in table.lines().zip(&lake) {
        assert_eq!(
            got, line,
            "row with id {id} differs (or a row is missing/duplicated)"
        );
        n += 1;
    }
    assert_eq!(n as u64, rows);
}

#[test]
fn incremental_with_cursor_ties_and_a_hostile_table_name() {
    let db = PgTestDb::create("pgsrc_e2e_incr");
    db.sql(
        r#"CREATE TABLE "we""ird tab" (id int8 PRIMARY KEY, a int4 NOT NULL, t text, updated_at timestamptz NOT NULL);
           INSERT INTO "we""ird tab" SELECT g, g, 'v' || g, '2024-01-01'::timestamptz + (g / 500) * interval '1 day' FROM generate_series(1, 3000) g;"#,
    );
    let p = TestProject::with_lake(BIN, "1ms");
    p.product(
        "ops",
        "db",
        &product(
            &db,
            "  - name: 'public.we\"ird tab'\n    mode: incremental\n    write: append_dedup\n    cursor: updated_at\n    primary_key: [id]\n",
            ", batch_size: 333",
        ),
    );
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let read = || lake_lines(&p.read_stream("ops", "db", "public.we\"ird tab"));
    assert_eq!(read().len(), 3000);
    // New rows tying with the last cursor, an update, and a brand-new later row.
    db.sql(
        r#"INSERT INTO "we""ird tab" VALUES (3001, 1, 'tie', '2024-01-07'), (3002, 2, 'later', '2024-02-01');
           UPDATE "we""ird tab" SET t = 'changed', updated_at = '2024-03-01' WHERE id = 5;"#,
    );
    let out = p.run(["sync", "run", "--no-progress"]);
    out.expect_code(0);
    let lake = read();
    assert_eq!(lake.len(), 3002);
    let table = db.sql(r#"SELECT id || '|' || a || '|' || t FROM "we""ird tab" ORDER BY id"#);
    for (line, (_, got)) in table.lines().zip(&lake) {
        assert_eq!(got, line);
    }
}

#[test]
fn wrong_password_and_dropped_table_fail_clearly() {
    let db = PgTestDb::create("pgsrc_e2e_bad");
    db.sql("CREATE TABLE keep (id int8 PRIMARY KEY, v text); INSERT INTO keep SELECT g, 'x' FROM generate_series(1, 1000) g;
            CREATE TABLE doomed (id int8 PRIMARY KEY, v text); INSERT INTO doomed SELECT g, 'y' FROM generate_series(1, 1000) g;");
    let p = TestProject::with_lake(BIN, "1ms");
    let streams = "  - name: public.keep\n    mode: full_refresh\n    write: overwrite\n  - name: public.doomed\n    mode: full_refresh\n    write: overwrite\n";

    // Unreachable server: the port named, the password never printed.
    let mut bad = product(&db, streams, ", password: hunter2secret");
    bad = bad.replace(&format!("port: {}", db.port), "port: 1");
    p.product("ops", "db", &bad);
    let out = p.run(["sync", "run", "--no-progress"]);
    out.expect_code(1);
    let all = format!("{}{}", out.stdout(), out.stderr());
    assert!(
        all.contains(&format!("cannot reach PostgreSQL at {}:1", db.host)),
        "{all}"
    );
    assert!(!all.contains("hunter2secret"), "{all}");
    assert!(!all.contains("panicked"), "{all}");

    // A table dropped while the sync waits for it: a clear error, exit 1, nothing committed.
    p.product("ops", "db", &product(&db, streams, ""));
    let locker = std::process::Command::new("psql")
        .args(["-X", "-h", &db.host, "-p", &db.port.to_string(), "-U", &db.user, "-d", &db.name])
        // Holds the lock until weft's session waits for it (or a minute passes), then drops
        // the table: events, not a guess at how long weft takes to get there.
        .args(["-c", "BEGIN; LOCK TABLE doomed IN ACCESS EXCLUSIVE MODE; \
            DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN \
              LOOP PERFORM pg_stat_clear_snapshot(); \
                EXIT WHEN EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'weft' AND wait_event_type = 'Lock') \
                  OR clock_timestamp() > t0 + interval '60 s'; \
                PERFORM pg_sleep(0.01); END LOOP; END $$; \
            DROP TABLE doomed; COMMIT;"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // weft starts once the lock is held.
    let start = std::time::Instant::now();
    while db.sql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'doomed' AND l.mode = 'AccessExclusiveLock' AND l.granted").trim() != "1" {
        assert!(start.elapsed() < Duration::from_secs(60), "the lock was never taken");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = p.run(["sync", "run", "--no-progress"]);
    let _ = locker.wait_with_output();
    out.expect_code(1);
    let all = format!("{}{}", out.stdout(), out.stderr());
    assert!(
        all.contains("stream `public.doomed`: the table no longer exists in PostgreSQL"),
        "{all}"
    );
    assert!(!all.contains("panicked"), "{all}");
    assert!(manifest_checkpoint(&p.stream_dir("ops", "db", "public.doomed")).is_none());
    assert_eq!(p.read_stream("ops", "db", "public.keep").num_rows(), 1000);
}

#[test]
fn password_auth_on_a_private_cluster() {
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    cluster.sql(
        "postgres",
        "CREATE TABLE accounts (id int8 PRIMARY KEY, name text);
         INSERT INTO accounts SELECT g, 'n' || g FROM generate_series(1, 500) g;",
    );
    let right = cluster.password().to_string();
    let wrong = "Wr0ng-pass-Zq9";
    let p = TestProject::with_lake(BIN, "1ms");
    p.product(
        "ops",
        "db",
        &format!(
            "product: db\ndomain: ops\nowner: test@example.com\ndescription: private cluster\nsource:\n  connector: postgres\n  config: {}\nstreams:\n  - name: public.accounts\n",
            cluster.pg_config("postgres")
        ),
    );
    let with = |password: &str, args: &[&str]| {
        weft_testkit::Outcome(p.weft(args).env("PG_PASSWORD", password).output().unwrap())
    };
    let rejected = format!(
        "password authentication failed for user `{}` at {}:{}; check `password` (and `user`) in the source config",
        cluster.user, cluster.host, cluster.port
    );
    for args in [
        &["connector", "check", "ops/db"][..],
        &["sync", "run", "--no-progress"][..],
    ] {
        with(wrong, args).expect_refusal(1, &rejected, &[wrong, right.as_str()]);
    }
    assert!(manifest_checkpoint(&p.stream_dir("ops", "db", "public.accounts")).is_none());

    // The right password, from the environment.
    with(&right, &["connector", "check", "ops/db"]).expect_code(0);
    let out = with(&right, &["sync", "run", "--no-progress"]);
    out.expect_code(0);
    assert!(!format!("{}{}", out.stdout(), out.stderr()).contains(&right));
    let batch = p.read_stream("ops", "db", "public.accounts");
    assert_eq!(batch.num_rows(), 500);
    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(ids.iter().flatten().sum::<i64>(), 500 * 501 / 2);
}

/// `id|a|t|updated_at µs` lines of the lake, sorted by id.
fn event_lines(batch: &RecordBatch) -> Vec<(i64, String)> {
    let mut rows: Vec<(i64, String)> = lake_lines(batch);
    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let at = batch
        .column_by_name("updated_at")
        .unwrap()
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    let mut cursor: Vec<(i64, i64)> = (0..batch.num_rows())
        .map(|i| (ids.value(i), at.value(i)))
        .collect();
    cursor.sort_unstable();
    for ((id, line), (cid, us)) in rows.iter_mut().zip(cursor) {
        assert_eq!(*id, cid);
        line.push_str(&format!("|{us}"));
    }
    rows
}

#[test]
fn incremental_dedup_of_a_million_rows_with_cursor_ties_survives_sigkills() {
    let rows: u64 = std::env::var("WEFT_E2E_PG_INCR_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let db = PgTestDb::create("pgsrc_e2e_incr_kill");
    // 20 rows per cursor value, and cursor order unrelated to id order.
    db.sql(&format!(
        "CREATE TABLE events (id int8 PRIMARY KEY, a int4 NOT NULL, t text, updated_at timestamptz NOT NULL);
         INSERT INTO events SELECT g, (g % 1000)::int4, CASE WHEN g % 7 = 0 THEN NULL ELSE md5(g::text) END,
           '2024-01-01'::timestamptz + ((g::int8 * 7919) % ({rows} / 20)) * interval '1 second'
         FROM generate_series(1, {rows}) g;
         CREATE INDEX ON events (updated_at, id);
         ANALYZE events;"
    ));
    // Commits every 20 ms, so even the smaller second phase commits mid-read.
    let p = TestProject::with_lake(BIN, "20ms");
    p.product(
        "ops",
        "db",
        &product(
            &db,
            "  - name: public.events\n    mode: incremental\n    write: append_dedup\n    cursor: updated_at\n    primary_key: [id]\n",
            ", batch_size: 20000",
        ),
    );
    let seed = seed();
    eprintln!("WEFT_TEST_SEED={seed}");
    let mut rng = seed | 1;
    let mut next = move |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    let dir = p.stream_dir("ops", "db", "public.events");
    let pending_cp = || {
        std::fs::read_to_string(dir.join("_weft/manifest.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map(|m| m["pending"]["checkpoint"].is_object())
            .unwrap_or(false)
    };
    // Up to `kills` SIGKILLs per phase, the first only once a mid-read commit is durable.
    let mut run_with_kills = |phase: &str, kills: usize| {
        let (mut killed, mut after_commit) = (0, false);
        for _ in 0..kills {
            let mut child = p
                .weft(["sync", "run", "--no-progress"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let start = Instant::now();
            if killed == 0 {
                while !pending_cp() && start.elapsed() < Duration::from_secs(60) {
                    if child.try_wait().unwrap().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            // The first kill lands right after the first mid-read commit; later ones at random.
            let extra = if killed == 0 { 0 } else { next(300) };
            let delay = start.elapsed() + Duration::from_millis(extra);
            let mut finished = false;
            while start.elapsed() < delay || killed == 0 && !pending_cp() {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(
                        status.success(),
                        "{phase}: a run ended on its own with {status}"
                    );
                    finished = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if finished {
                break;
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            killed += 1;
            after_commit |= pending_cp();
        }
        eprintln!("{phase}: {killed} kills, one after a mid-read commit: {after_commit}");
        assert!(killed >= 1, "{phase}: no run was killed (seed {seed})");
        assert!(
            after_commit,
            "{phase}: no kill landed after a mid-read commit (seed {seed})"
        );
        p.run(["sync", "run", "--no-progress"]).expect_code(0);
        assert!(!pending_cp(), "{phase}: the last run left a pending commit");
    };
    let compare = |phase: &str| {
        let lake = event_lines(&p.read_stream("ops", "db", "public.events"));
        let table = db.sql(
            "SELECT id || '|' || a || '|' || coalesce(t, 'NULL') || '|' || \
             (extract(epoch FROM updated_at) * 1000000)::int8 FROM events ORDER BY id",
        );
        let mut n = 0;
        for (line, (id, got)) in table.lines().zip(&lake) {
            assert_eq!(
                got, line,
                "{phase}: row with id {id} differs (or a row is missing/duplicated)"
            );
            n += 1;
        }
        assert_eq!(
            n,
            lake.len(),
            "{phase}: the lake has more rows than the table"
        );
        n
    };

    run_with_kills("initial read", 3);
    assert_eq!(compare("initial read") as u64, rows);

    // Updates to later cursors, new rows tying with the last cursor (higher ids), later rows.
    db.sql(&format!(
        "UPDATE events SET a = a + 1, t = 'updated', updated_at = '2030-01-01'::timestamptz + (id % 977) * interval '1 second' WHERE id % 25 = 0;
         INSERT INTO events SELECT {rows} + g, -1, 'tie', (SELECT max(updated_at) FROM events WHERE updated_at < '2030-01-01') FROM generate_series(1, 1000) g;
         INSERT INTO events SELECT {rows} + 1000 + g, g % 5, NULL, '2031-01-01'::timestamptz + (g / 50) * interval '1 second' FROM generate_series(1, {rows} / 5) g;"
    ));
    run_with_kills("changes", 2);
    assert_eq!(compare("changes") as u64, rows + 1000 + rows / 5);
}
