//! End to end with the real `weft` binary: `weft state show` and `weft state set --cursor`
//! on a PostgreSQL source read incrementally, into the Parquet lake (append_dedup) and into
//! the PostgreSQL store (append). After a sync, the source's rows are changed *without*
//! touching their cursor, the cursor is set back to a date, and the next sync must re-read
//! exactly the rows at or after that date: the lake then holds the new values for those rows
//! and the old ones before, one row per key; the append table holds those rows twice. Both
//! destinations store checkpoints themselves (which win on restart), so this also proves the
//! set position reached them. Bad input: a value of the wrong type, an unknown stream, a
//! full-refresh stream, a product held by a running sync, no `--yes` off a terminal. And the
//! run summary's `bytes_written` equals the Parquet bytes the run put on disk.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, Int64Type};
use weft_testkit::pg::PgTestDb;
use weft_testkit::{committed_files, TestProject};

const BIN: &str = env!("CARGO_BIN_EXE_weft");
const STREAM: &str = "ops/db/public.orders";
const LIMIT: Duration = Duration::from_secs(300);

/// 100 orders, ten per day from 2024-01-01 to 2024-01-10, five of each day sharing one
/// timestamp (cursor ties) and five an hour later; `amount` = id. Plus a `lookup` table.
fn seed(db: &PgTestDb) {
    db.sql(
        "CREATE TABLE orders (id int8 PRIMARY KEY, amount int4 NOT NULL, updated_at timestamptz NOT NULL);
         INSERT INTO orders SELECT g, g, timestamptz '2024-01-01 08:00:00+00'
             + ((g - 1) / 10) * interval '1 day' + (((g - 1) % 10) / 5) * interval '1 hour'
           FROM generate_series(1, 100) g;
         CREATE TABLE lookup (id int4 PRIMARY KEY, name text);
         INSERT INTO lookup VALUES (1, 'a');",
    );
}

fn product(db: &PgTestDb, write: &str) -> String {
    format!(
        "product: db\ndomain: ops\nowner: test@example.com\ndescription: state e2e\nsource:\n  connector: postgres\n  config: {{ host: \"{}\", port: {}, user: {}, database: {}, batch_size: 7 }}\nstreams:\n  - name: public.orders\n    mode: incremental\n    cursor: updated_at\n    write: {write}\n  - name: public.lookup\n    mode: full_refresh\n    write: overwrite\n",
        db.host, db.port, db.user, db.name
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Rows the run read from `stream`, from `sync run --format json`.
fn rows_read(report: &serde_json::Value, stream: &str) -> u64 {
    report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == stream)
        .unwrap_or_else(|| panic!("no {stream} in {report}"))["rows"]
        .as_u64()
        .unwrap()
}

fn sync(p: &TestProject, selector: &str) -> serde_json::Value {
    let out = p.run_within(
        LIMIT,
        ["sync", "run", "--no-progress", "--format", "json", selector],
    );
    out.expect_code(0);
    json(&out.stdout())
}

fn show_json(p: &TestProject) -> serde_json::Value {
    let out = p.run_within(LIMIT, ["state", "show", STREAM, "--format", "json"]);
    out.expect_code(0);
    json(&out.stdout())[0].clone()
}

/// id → amount of the lake's rows; panics on a duplicated id.
fn lake_amounts(p: &TestProject) -> BTreeMap<i64, i32> {
    let batch = p.read_stream("ops", "db", "public.orders");
    let id = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let amount = batch
        .column_by_name("amount")
        .unwrap()
        .as_primitive::<Int32Type>();
    let mut out = BTreeMap::new();
    for i in 0..batch.num_rows() {
        assert!(!id.is_null(i));
        let previous = out.insert(id.value(i), amount.value(i));
        assert!(previous.is_none(), "id {} twice in the lake", id.value(i));
    }
    out
}

#[test]
fn state_set_cursor_rereads_exactly_the_rows_from_that_date_into_the_lake() {
    let db = PgTestDb::create("state_lake");
    seed(&db);
    let p = TestProject::with_lake(BIN, "1ms");
    p.product("ops", "db", &product(&db, "append_dedup"));

    let first = sync(&p, "ops/db");
    assert_eq!(rows_read(&first, STREAM), 100);

    // The position in human terms: the last row's cursor and key.
    let shown = p.run_within(LIMIT, ["state", "show", "ops/db"]);
    shown.expect_code(0);
    let text = shown.stdout();
    assert!(
        text.contains("cursor updated_at = 2024-01-10 09:00:00.000000+00, key id = 100"),
        "{text}"
    );
    assert!(text.contains("ops/db/public.lookup"), "{text}");
    assert!(text.contains("complete"), "{text}");
    let position = &show_json(&p)["position"];
    assert_eq!(position["kind"], "cursor");
    assert_eq!(position["field"], "updated_at");
    assert_eq!(position["value"], "2024-01-10 09:00:00.000000+00");
    assert_eq!(position["key"][0]["column"], "id");
    assert_eq!(position["key"][0]["value"], "100");

    // Changes the cursor does not see: only a re-read picks them up.
    db.sql("UPDATE orders SET amount = amount + 1000");
    let nothing_new = sync(&p, STREAM);
    assert_eq!(rows_read(&nothing_new, STREAM), 0);

    // Backfill from a date: every row whose cursor is on or after 2024-01-05.
    let set = p.run_within(
        LIMIT,
        [
            "state",
            "set",
            STREAM,
            "--cursor",
            "2024-01-05",
            "--yes",
            "--format",
            "json",
        ],
    );
    set.expect_code(0);
    let set_json = json(&set.stdout());
    assert_eq!(set_json["position"]["kind"], "cursor");
    assert_eq!(
        set_json["position"]["value"],
        "2024-01-05 00:00:00.000000+00"
    );
    assert_eq!(set_json["position"]["from_value"], true);
    let text = p.run_within(LIMIT, ["state", "show", STREAM]).stdout();
    assert!(
        text.contains("the next run reads rows with updated_at >= 2024-01-05 00:00:00.000000+00"),
        "{text}"
    );
    // The lake's own checkpoint (which wins on restart) says so too.
    let manifest = weft_testkit::manifest_checkpoint(&p.stream_dir("ops", "db", "public.orders"))
        .expect("a checkpoint in the manifest");
    assert_eq!(
        manifest["from"], "2024-01-05 00:00:00.000000+00",
        "{manifest}"
    );
    // Setting changed no data.
    assert_eq!(lake_amounts(&p).values().filter(|&&a| a > 1000).count(), 0);

    // Recorded in the history.
    let history = p.run_within(LIMIT, ["sync", "history", "--format", "json"]);
    history.expect_code(0);
    let runs = json(&history.stdout());
    let run = &runs[0];
    assert_eq!(run["trigger"], "state_set", "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["rows"], 0, "{run}");
    assert_eq!(
        run["selectors"][0],
        format!("state set {STREAM} --cursor 2024-01-05")
    );
    assert_eq!(run["run_id"], set_json["run_id"]);

    let reread = sync(&p, STREAM);
    assert_eq!(
        rows_read(&reread, STREAM),
        60,
        "days 5 to 10, ten rows each"
    );
    let amounts = lake_amounts(&p);
    assert_eq!(amounts.len(), 100);
    for (id, amount) in &amounts {
        let expected = if *id > 40 {
            *id as i32 + 1000
        } else {
            *id as i32
        };
        assert_eq!(*amount, expected, "id {id}");
    }
    // The rows from the date on now equal the source, row by row.
    let source: BTreeMap<i64, i32> = db
        .sql("SELECT id, amount FROM orders WHERE updated_at >= '2024-01-05' ORDER BY id")
        .lines()
        .map(|l| {
            let (id, amount) = l.split_once('|').unwrap();
            (id.parse().unwrap(), amount.parse().unwrap())
        })
        .collect();
    assert_eq!(source.len(), 60);
    for (id, amount) in &source {
        assert_eq!(amounts.get(id), Some(amount), "id {id}");
    }
    // And the stream is back to reading after its last row.
    let position = &show_json(&p)["position"];
    assert_eq!(position["value"], "2024-01-10 09:00:00.000000+00");
    assert_eq!(position["from_value"], false);
    assert_eq!(rows_read(&sync(&p, STREAM), STREAM), 0);
}

#[test]
fn state_set_cursor_into_an_append_table_reads_those_rows_again() {
    let db = PgTestDb::create("state_pg");
    seed(&db);
    let p = TestProject::new(
        BIN,
        &format!(
            "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: postgres\n    config:\n      host: {}\n      port: {}\n      user: {}\n      database: {}\n      schema: landing\n  commit_interval: 1ms\n",
            db.host, db.port, db.user, db.name
        ),
    );
    p.product("ops", "db", &product(&db, "append"));
    let first = sync(&p, STREAM);
    assert_eq!(rows_read(&first, STREAM), 100);
    let written = first["streams"][0]["bytes_written"].as_u64().unwrap();
    assert!(written > 100 * 8, "COPY bytes sent: {written}");
    let table = "landing.\"db__public.orders\"";
    assert_eq!(db.sql(&format!("SELECT count(*) FROM {table}")), "100");

    // A timestamp with its own offset: 2024-01-08 02:00+02 is midnight UTC.
    let set = p.run_within(
        LIMIT,
        [
            "state",
            "set",
            STREAM,
            "--cursor",
            "2024-01-08T02:00:00+02:00",
            "--yes",
        ],
    );
    set.expect_code(0);
    let text = set.stdout();
    assert!(
        text.contains("updated_at >= 2024-01-08 00:00:00.000000+00"),
        "{text}"
    );
    assert!(text.contains("appended again"), "{text}");
    let stored = db.sql(
        "SELECT checkpoint->>'from' FROM landing._weft_checkpoints WHERE table_name = 'db__public.orders'",
    );
    assert_eq!(stored, "2024-01-08 00:00:00.000000+00");

    let reread = sync(&p, STREAM);
    assert_eq!(rows_read(&reread, STREAM), 30);
    // The rows from the date appear twice, the others once: as `append` documents.
    let counts = db.sql(&format!(
        "SELECT count(*) FILTER (WHERE n = 1), count(*) FILTER (WHERE n = 2), count(*) FILTER (WHERE n > 2)
           FROM (SELECT id, count(*) n FROM {table} GROUP BY id) c"
    ));
    assert_eq!(counts, "70|30|0");
    let twice = db.sql(&format!(
        "SELECT min(id), max(id) FROM (SELECT id FROM {table} GROUP BY id HAVING count(*) = 2) c"
    ));
    assert_eq!(twice, "71|100");
    // Exactly the source's rows, each once or twice.
    let missing = db.sql(&format!(
        "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.id = o.id AND t.amount = o.amount AND t.updated_at = o.updated_at)"
    ));
    assert_eq!(missing, "0");
}

#[test]
fn state_set_refuses_bad_input_with_the_reason() {
    let db = PgTestDb::create("state_bad");
    seed(&db);
    let p = TestProject::with_lake(BIN, "1ms");
    p.product("ops", "db", &product(&db, "append_dedup"));
    sync(&p, "ops/db");
    let before = show_json(&p)["checkpoint"].clone();

    let set = |args: &[&str]| {
        let mut all = vec!["state", "set"];
        all.extend_from_slice(args);
        p.run_within(LIMIT, all)
    };

    // A value that is not a timestamp: the stream and the column are named, nothing changed.
    let out = set(&[STREAM, "--cursor", "yesterday", "--yes"]);
    out.expect_code(1);
    let err = out.stderr();
    assert!(err.contains("stream `public.orders`"), "{err}");
    assert!(err.contains("cursor column `updated_at`"), "{err}");
    assert!(err.contains("a timestamp with time zone"), "{err}");
    assert!(err.contains("2024-01-31"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(show_json(&p)["checkpoint"], before);

    // An unknown stream.
    let out = set(&["ops/db/public.nope", "--cursor", "2024-01-01", "--yes"]);
    out.expect_code(2);
    assert!(out.stderr().contains("public.nope"), "{}", out.stderr());

    // A full refresh stream has no cursor.
    let out = set(&["ops/db/public.lookup", "--cursor", "2024-01-01", "--yes"]);
    out.expect_code(2);
    let err = out.stderr();
    assert!(err.contains("domains/ops/db.yaml"), "{err}");
    assert!(err.contains("`public.lookup`"), "{err}");
    assert!(err.contains("full_refresh"), "{err}");

    // A product, not a stream.
    let out = set(&["ops/db", "--cursor", "2024-01-01", "--yes"]);
    out.expect_code(2);
    assert!(
        out.stderr().contains("domain/product/stream"),
        "{}",
        out.stderr()
    );

    // Off a terminal without --yes.
    let out = set(&[STREAM, "--cursor", "2024-01-01"]);
    out.expect_code(2);
    assert!(out.stderr().contains("--yes"), "{}", out.stderr());
    assert_eq!(show_json(&p)["checkpoint"], before);

    // While a sync holds the product.
    let (mut run, release) = p.spawn_paused("finishing", ["sync", "run", "--no-progress", STREAM]);
    run.wait_for_line("pausepoint `finishing` reached", LIMIT);
    let out = set(&[STREAM, "--cursor", "2024-01-01", "--yes"]);
    std::fs::write(&release, "").unwrap();
    out.expect_code(1);
    let err = out.stderr();
    assert!(
        err.contains("product ops/db is being run by `weft sync run`"),
        "{err}"
    );
    run.finish(LIMIT).expect_code(0);
    assert_eq!(show_json(&p)["checkpoint"], before);
}

#[test]
fn bytes_written_are_the_parquet_bytes_the_run_put_on_disk() {
    let p = TestProject::with_lake(BIN, "1ms");
    p.product(
        "ops",
        "gen",
        "product: gen\ndomain: ops\nowner: test@example.com\ndescription: bytes\nsource:\n  connector: sample\n  config: { scale: 20000, batch_size: 1000 }\nstreams:\n  - name: orders\n    mode: full_refresh\n    write: overwrite\n",
    );
    let out = p.run_within(LIMIT, ["sync", "run", "--no-progress", "--format", "json"]);
    out.expect_code(0);
    let report = json(&out.stdout());
    let stream = &report["streams"][0];
    let files = committed_files(&p.stream_dir("ops", "gen", "orders"));
    assert!(!files.is_empty());
    let on_disk: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert_eq!(stream["bytes_written"].as_u64(), Some(on_disk), "{stream}");
    assert!(stream["arrow_bytes"].as_u64().unwrap() > 0);
    // The table says so, labelled.
    let out = p.run_within(LIMIT, ["sync", "run", "--no-progress"]);
    out.expect_code(0);
    // The summary's last line wraps between words at 80 columns.
    let text = out
        .stdout()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(text.contains(" written ("), "{text}");
    assert!(text.contains("in memory as Arrow)"), "{text}");
}
