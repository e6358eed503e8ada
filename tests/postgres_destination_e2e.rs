//! End to end: the real `weft` binary syncing the sample source (2M orders) into PostgreSQL in
//! each write mode, SIGKILLed at random points and rerun, then the table compared row by row
//! with `weft_source_sample::expected_rows`: no loss, no duplicates, readers never see half.
//! Password authentication on a private cluster: a wrong password refused by `check` and
//! `sync run` with a message that never holds a password; the right one from `${PG_PASSWORD}`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    Date32Type, Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use weft_source_sample::{expected_rows, SampleConfig};
use weft_testkit::pg::{ClusterOptions, PgTestDb, PrivateCluster};
use weft_testkit::rng::Rng;
use weft_testkit::TestProject;

const BIN: &str = env!("CARGO_BIN_EXE_weft");
const SCALE: u64 = 2_000_000;
const CHANGES: u64 = 5_000;
const TABLE: &str = "sales.shop__orders";

fn project(db: &PgTestDb) -> TestProject {
    TestProject::new(
        BIN,
        &format!(
            "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: postgres\n    config:\n      host: {}\n      port: {}\n      user: {}\n      database: {}\n  commit_interval: 100ms\n",
            db.host, db.port, db.user, db.name
        ),
    )
}

fn product(scale: u64, changes: u64, mode: &str, write: &str) -> String {
    let cursor = if mode == "incremental" {
        "\n    cursor: updated_at"
    } else {
        ""
    };
    format!(
        "product: shop\ndomain: sales\nowner: test@example.com\ndescription: crash test\nsource:\n  connector: sample\n  config: {{ scale: {scale}, changes_per_run: {changes}, batch_size: 20000 }}\nstreams:\n  - name: orders\n    mode: {mode}\n    write: {write}\n    primary_key: [id]{cursor}\n"
    )
}

/// The sample version the published checkpoint says is completely read, if any.
fn completed_version(db: &PgTestDb) -> Option<u64> {
    let out = db.sql(
        "SELECT checkpoint::text FROM sales._weft_checkpoints WHERE table_name = 'shop__orders'",
    );
    let cp: serde_json::Value = serde_json::from_str(out.lines().last()?).ok()?;
    (cp["complete"] == true).then(|| cp["version"].as_u64().unwrap())
}

fn control_exists(db: &PgTestDb) -> bool {
    db.sql("SELECT to_regclass('sales._weft_checkpoints') IS NOT NULL") == "t"
}

/// [`TestProject::sync_with_kills`] until the product table holds `target` version completely.
fn run_with_kills(
    p: &TestProject,
    db: &PgTestDb,
    rng: &mut Rng,
    kills: usize,
    target: u64,
    between: impl FnMut(),
) -> usize {
    let done = || control_exists(db) && completed_version(db) == Some(target);
    p.sync_with_kills(rng, kills, 200..2700, done, between)
}

/// COPY's text escaping of a value.
fn escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c => out.push(c),
        }
    }
}

/// The rows as the table dump below prints them, sorted by id (ids are unique in `batches`).
fn expected_lines(batches: &[RecordBatch]) -> Vec<(i64, String)> {
    let mut lines = Vec::new();
    for b in batches {
        let col = |name: &str| b.column_by_name(name).unwrap();
        let id = col("id").as_primitive::<Int64Type>();
        let customer = col("customer_id").as_primitive::<Int64Type>();
        let status = col("status").as_string::<i32>();
        let amount = col("amount").as_primitive::<Decimal128Type>();
        let quantity = col("quantity").as_primitive::<Int32Type>();
        let ordered = col("ordered_on").as_primitive::<Date32Type>();
        let note = col("note").as_string::<i32>();
        let updated = col("updated_at").as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            let mut line = format!("{}\t{}\t", id.value(i), customer.value(i));
            escape(status.value(i), &mut line);
            let a = amount.value(i);
            let sign = if a < 0 { "-" } else { "" };
            line.push_str(&format!(
                "\t{sign}{}.{:02}\t{}\t{}\t",
                a.unsigned_abs() / 100,
                a.unsigned_abs() % 100,
                quantity.value(i),
                ordered.value(i)
            ));
            if note.is_null(i) {
                line.push_str("\\N");
            } else {
                escape(note.value(i), &mut line);
            }
            line.push_str(&format!("\t{}", updated.value(i)));
            lines.push((id.value(i), line));
        }
    }
    lines.sort_unstable_by_key(|(id, _)| *id);
    lines
}

/// The table, dumped by PostgreSQL itself in COPY text format, sorted by id.
fn table_lines(db: &PgTestDb) -> String {
    db.sql(&format!(
        "COPY (SELECT id, customer_id, status, amount, quantity, ordered_on - date '1970-01-01', \
         note, (extract(epoch FROM updated_at) * 1000000)::bigint FROM {TABLE} ORDER BY id, \
         updated_at) TO STDOUT"
    ))
}

/// Same rows, same values, nothing missing, nothing twice.
fn assert_table_is(db: &PgTestDb, version: u64, scale: u64, changes: u64) {
    let config = SampleConfig::new(scale).with_changes_per_run(changes);
    let batches: Vec<RecordBatch> = expected_rows(&config, "orders", version).collect();
    let want = expected_lines(&batches);
    let have = table_lines(db);
    let mut count = 0;
    for (i, line) in have.lines().enumerate() {
        let Some((_, expected)) = want.get(i) else {
            panic!(
                "the table has more rows than the source's {}: {line}",
                want.len()
            );
        };
        assert_eq!(line, expected, "row {i} (sorted by id) differs");
        count += 1;
    }
    assert_eq!(count, want.len(), "the table lacks rows");
}

fn rows_in_table(db: &PgTestDb) -> u64 {
    db.sql(&format!("SELECT count(*) FROM {TABLE}"))
        .parse()
        .unwrap()
}

#[test]
fn overwrite_survives_kills_and_readers_never_see_half() {
    let mut rng = Rng::new("pg overwrite");
    let db = PgTestDb::create("e2e_pg_overwrite");
    let p = project(&db);
    p.product(
        "sales",
        "shop",
        &product(SCALE, CHANGES, "full_refresh", "overwrite"),
    );
    let killed = run_with_kills(&p, &db, &mut rng, 3, 0, || {});
    eprintln!("version 0: killed {killed} times");
    assert_table_is(&db, 0, SCALE, CHANGES);

    // Version 1: while it is interrupted, readers see exactly the published version 0.
    let config = SampleConfig::new(SCALE).with_changes_per_run(CHANGES);
    let v0_rows: u64 = expected_rows(&config, "orders", 0)
        .map(|b| b.num_rows() as u64)
        .sum();
    run_with_kills(&p, &db, &mut rng, 3, 1, || {
        if completed_version(&db) == Some(0) {
            assert_eq!(
                rows_in_table(&db),
                v0_rows,
                "readers saw a half-written overwrite"
            );
        }
    });
    assert_table_is(&db, 1, SCALE, CHANGES);
    assert_eq!(
        db.sql("SELECT to_regclass('sales.shop__orders__weft_next') IS NULL"),
        "t"
    );
}

#[test]
fn full_refresh_append_resumes_into_exactly_one_copy() {
    let mut rng = Rng::new("pg append");
    let db = PgTestDb::create("e2e_pg_append");
    let p = project(&db);
    p.product(
        "sales",
        "shop",
        &product(SCALE, 0, "full_refresh", "append"),
    );
    let killed = run_with_kills(&p, &db, &mut rng, 4, 0, || {});
    eprintln!("killed {killed} times");
    assert_table_is(&db, 0, SCALE, 0);
}

#[test]
fn incremental_dedup_survives_kills_and_crashes_between_commit_and_record() {
    let mut rng = Rng::new("pg dedup");
    let db = PgTestDb::create("e2e_pg_dedup");
    let p = project(&db);
    p.product(
        "sales",
        "shop",
        &product(SCALE, CHANGES, "incremental", "append_dedup"),
    );
    // Crash right after PostgreSQL's third commit, before the state store hears of it.
    let out = p
        .weft(["sync", "run", "--no-progress"])
        .env("WEFT_FAILPOINT", "after_destination_commit:3")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the failpoint must abort weft");
    run_with_kills(&p, &db, &mut rng, 3, 0, || {});
    assert_table_is(&db, 0, SCALE, CHANGES);

    // Version 1: updated and new rows, settled to one row per id.
    run_with_kills(&p, &db, &mut rng, 2, 1, || {});
    assert_table_is(&db, 1, SCALE, CHANGES);
    assert_eq!(
        db.sql(&format!(
            "SELECT count(*) = count(DISTINCT id) FROM {TABLE}"
        )),
        "t"
    );
}

/// Whether `table` (schema-qualified, quoted as needed) exists.
fn table_exists(db: &PgTestDb, table: &str) -> bool {
    db.sql(&format!("SELECT to_regclass('{table}') IS NOT NULL")) == "t"
}

#[test]
fn first_dedup_load_survives_kills_mid_load_and_settles_exactly() {
    let db = PgTestDb::create("e2e_pg_dedup_first");
    let p = project(&db);
    p.product(
        "sales",
        "shop",
        &product(SCALE, CHANGES, "incremental", "append_dedup"),
    );
    let next = "sales.shop__orders__weft_next";
    let pending = || {
        control_exists(&db)
            && db.sql(
                "SELECT count(*) FROM sales._weft_checkpoints WHERE pending_checkpoint IS NOT \
                 NULL",
            ) == "1"
    };
    // SIGKILL twice once a commit of the first load is durable (the load is under way),
    // each time after one more commit than before.
    for kill in 0..2 {
        let before = if pending() {
            db.sql(&format!("SELECT count(*) FROM {next}"))
                .parse::<u64>()
                .unwrap()
        } else {
            0
        };
        let mut child = p
            .weft(["sync", "run", "--no-progress"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        loop {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the first load ended before kill {kill}; make the table larger"
            );
            let grown = pending()
                && db
                    .sql(&format!("SELECT count(*) FROM {next}"))
                    .parse::<u64>()
                    .unwrap()
                    > before;
            if grown {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "no commit of the first load became durable"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Readers see no product table while the first load is unfinished.
        assert!(!table_exists(&db, TABLE), "a half first load was visible");
        assert!(table_exists(&db, next));
    }
    let out = p.run(["sync", "run", "--no-progress"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr());
    assert_eq!(completed_version(&db), Some(0));
    assert_table_is(&db, 0, SCALE, CHANGES);
    assert!(!table_exists(&db, next));
    assert_eq!(
        db.sql(
            "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM \
             information_schema.columns WHERE table_schema = 'sales' AND table_name = \
             'shop__orders'"
        ),
        "id,customer_id,status,amount,quantity,ordered_on,note,updated_at,_weft_synced_at,_weft_run_id"
    );
    assert_eq!(
        db.sql(
            "SELECT indexdef LIKE '%UNIQUE%(id)' FROM pg_indexes WHERE schemaname = 'sales' AND \
             tablename = 'shop__orders'"
        ),
        "t"
    );
    // The next version merges into the settled table.
    let out = p.run(["sync", "run", "--no-progress"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr());
    assert_table_is(&db, 1, SCALE, CHANGES);
}

#[test]
fn check_and_bad_config_name_the_problem() {
    let db = PgTestDb::create("e2e_pg_check");
    let p = project(&db);
    p.product("sales", "shop", &product(1000, 0, "full_refresh", "append"));
    let out = p.run(["connector", "check", "sales/shop", "--destination"]);
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout(), out.stderr());

    // An unknown field is refused before anything runs, naming it.
    p.file(
        "weft.yaml",
        &format!(
            "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: postgres\n    config:\n      host: {}\n      user: {}\n      database: {}\n      pasword: hunter2\n",
            db.host, db.user, db.name
        ),
    );
    let out = p.run(["sync", "run", "--no-progress"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr());
    assert!(
        out.stderr().contains("unknown field `pasword`"),
        "{}",
        out.stderr()
    );
    assert!(!out.stderr().contains("hunter2"), "{}", out.stderr());
}

#[test]
fn every_sample_stream_lands_side_by_side_with_its_types() {
    let db = PgTestDb::create("e2e_pg_streams");
    let p = project(&db);
    p.product(
        "sales",
        "shop",
        "product: shop\ndomain: sales\nowner: o@example.com\ndescription: d\nsource:\n  connector: sample\n  config: { scale: 20000 }\nstreams:\n  - name: customers\n  - name: orders\n  - name: products\n",
    );
    let out = p.run(["sync", "run", "--no-progress"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr());
    for (stream, rows) in [("customers", 2000), ("orders", 20000), ("products", 200)] {
        assert_eq!(
            db.sql(&format!("SELECT count(*) FROM sales.\"shop__{stream}\"")),
            rows.to_string(),
            "{stream}"
        );
    }
    assert_table_is(&db, 0, 20000, 0);
    assert_eq!(
        db.sql(
            "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_schema = 'sales' AND table_name = \
             'shop__products'"
        ),
        "id bigint, sku text, name text, category text, price numeric, in_stock boolean, \
         updated_at timestamp with time zone, _weft_synced_at timestamp with time zone, \
         _weft_run_id text"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM sales._weft_checkpoints WHERE checkpoint IS NOT NULL"),
        "3"
    );
}

#[test]
fn password_auth_on_a_private_cluster() {
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    let right = cluster.password().to_string();
    let wrong = "Wr0ng-pass-Zq9";
    let p = TestProject::new(
        BIN,
        &format!(
            "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: postgres\n    config:\n      host: {}\n      port: {}\n      user: {}\n      password: ${{PG_PASSWORD}}\n      database: postgres\n",
            cluster.host, cluster.port, cluster.user
        ),
    );
    p.product("sales", "shop", &product(1000, 0, "full_refresh", "append"));
    let with = |password: &str, args: &[&str]| {
        weft_testkit::Outcome(p.weft(args).env("PG_PASSWORD", password).output().unwrap())
    };
    let rejected = format!(
        "PostgreSQL at {}:{} rejected the password of user `{}`; check `password`",
        cluster.host, cluster.port, cluster.user
    );
    for args in [
        &["connector", "check", "sales/shop", "--destination"][..],
        &["sync", "run", "--no-progress"][..],
    ] {
        with(wrong, args).expect_refusal(1, &rejected, &[wrong, right.as_str()]);
    }
    assert_eq!(
        cluster.sql(
            "postgres",
            "SELECT to_regclass('sales.shop__orders') IS NULL"
        ),
        "t"
    );

    with(
        &right,
        &["connector", "check", "sales/shop", "--destination"],
    )
    .expect_code(0);
    let out = with(&right, &["sync", "run", "--no-progress"]);
    out.expect_code(0);
    assert!(!format!("{}{}", out.stdout(), out.stderr()).contains(&right));
    assert_eq!(
        cluster.sql(
            "postgres",
            "SELECT count(*), count(DISTINCT id) FROM sales.shop__orders"
        ),
        "1000|1000"
    );
}
