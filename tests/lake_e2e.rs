//! The lake as other programs see it, with the real `weft` binary writing it.
//!
//! Readers that do what README says (a DuckDB glob over `<stream>/*.parquet`, `pyarrow.dataset`
//! on the stream folder) poll a lake stream in a loop during full refreshes, incremental
//! `append_dedup` runs and CDC current state. They must only ever see a committed version: as
//! many rows as distinct keys (no duplicate during a compaction), and a row count the stream
//! had after one of its runs (no partial publish, no file before its commit).
//!
//! Additive schema evolution: a column added upstream (PostgreSQL `ADD COLUMN`, a CSV with one
//! more column) and a widened type flow into incremental lake streams; DuckDB and pyarrow, read
//! as README shows, see the old rows with NULL in the new column.
//!
//! Two projects writing one lake stream: the second is refused, told who holds it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use weft_testkit::pg::{ClusterOptions, PgTestDb, PrivateCluster};
use weft_testkit::readers::{dump, GlobReaders, Read};
use weft_testkit::{Outcome, TestProject};

const BIN: &str = env!("CARGO_BIN_EXE_weft");
const WAIT: Duration = Duration::from_secs(180);

/// Checks every read against the committed row counts; returns how many reads saw data.
fn assert_only_committed(stream: &str, reads: &[Read], committed: &BTreeSet<u64>) -> usize {
    let mut seen = 0;
    for read in reads {
        match read {
            Read::Seen { reader, rows, keys } => {
                assert_eq!(
                    rows, keys,
                    "{stream}: {reader} saw {rows} rows but {keys} distinct keys (duplicates)"
                );
                assert!(
                    *rows == 0 || committed.contains(rows),
                    "{stream}: {reader} saw {rows} rows, not a committed state ({committed:?})"
                );
                seen += 1;
            }
            Read::Gone { .. } => {}
            Read::Failed { reader, message } => {
                panic!("{stream}: {reader} failed: {message}")
            }
        }
    }
    seen
}

fn sample_product(scale: u64, changes: u64) -> String {
    format!(
        "product: shop\ndomain: sales\nowner: test@example.com\ndescription: readers\nsource:\n  \
         connector: sample\n  config: {{ scale: {scale}, changes_per_run: {changes}, batch_size: 10000 }}\n\
         streams:\n  - name: orders\n    mode: incremental\n    write: append_dedup\n    \
         primary_key: [id]\n    cursor: updated_at\n  - name: customers\n    mode: full_refresh\n    \
         write: overwrite\n    primary_key: [id]\n"
    )
}

#[test]
fn glob_readers_see_only_committed_versions_during_full_and_incremental_runs() {
    // Small files, so a publish moves many of them and a compaction rewrites several.
    let p = TestProject::new(
        BIN,
        "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n      file_bytes: 1000000\n  commit_interval: 50ms\n",
    );
    p.product("sales", "shop", &sample_product(200_000, 3_000));
    let orders = p.stream_dir("sales", "shop", "orders");
    let customers = p.stream_dir("sales", "shop", "customers");
    let order_readers = GlobReaders::start(&orders, "id");
    let customer_readers = GlobReaders::start(&customers, "id");

    let (mut order_counts, mut customer_counts) = (BTreeSet::new(), BTreeSet::new());
    for _run in 0..3 {
        p.run(["sync", "run", "--no-progress"]).expect_code(0);
        let n = p.read_stream("sales", "shop", "orders").num_rows() as u64;
        let c = p.read_stream("sales", "shop", "customers").num_rows() as u64;
        assert!(order_counts.insert(n) && customer_counts.insert(c));
        // The readers caught this state before the next run changes it.
        order_readers.wait_for_rows(n, WAIT);
        customer_readers.wait_for_rows(c, WAIT);
    }
    assert_eq!(order_counts.len(), 3, "every run added orders");

    let seen = assert_only_committed("orders", &order_readers.stop(), &order_counts);
    assert!(seen >= 6, "{seen} reads saw orders");
    let seen = assert_only_committed("customers", &customer_readers.stop(), &customer_counts);
    assert!(seen >= 6, "{seen} reads saw customers");
}

#[test]
fn glob_readers_see_only_committed_versions_of_a_cdc_current_state() {
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    cluster.sql("postgres", "CREATE DATABASE shop");
    cluster.sql(
        "shop",
        "CREATE TABLE items (id int8 PRIMARY KEY, v text);
         INSERT INTO items SELECT g, 'seed' || g FROM generate_series(1, 60000) g;",
    );
    let p = TestProject::new(
        BIN,
        "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n      file_bytes: 300000\n  commit_interval: 50ms\n",
    );
    p.product(
        "shop",
        "items",
        &format!(
            "product: items\ndomain: shop\nowner: test@example.com\ndescription: readers\nsource:\n  \
             connector: postgres\n  config: {}\n\
             streams:\n  - name: public.items\n    mode: cdc\n    write: append_dedup\n",
            cluster.pg_config("shop")
        ),
    );
    let run = || {
        let mut cmd = p.weft(["sync", "run", "--no-progress"]);
        cmd.env("PG_PASSWORD", cluster.password());
        Outcome(cmd.output().expect("run weft")).expect_code(0);
    };
    let dir = p.stream_dir("shop", "items", "public.items");
    let readers = GlobReaders::start(&dir, "id");
    let mut counts = BTreeSet::new();
    let changes: [&[&str]; 3] = [
        // Updates spread over the table, inserts and deletes.
        &[
            "UPDATE items SET v = v || '+' WHERE id % 37 = 0",
            "INSERT INTO items SELECT g, 'new' || g FROM generate_series(60001, 62000) g",
            "DELETE FROM items WHERE id % 50 = 1",
        ],
        &[
            "UPDATE items SET v = v || '*' WHERE id % 41 = 0",
            "DELETE FROM items WHERE id % 50 = 2",
        ],
        &[],
    ];
    for sql in changes {
        run();
        let n = p.read_stream("shop", "items", "public.items").num_rows() as u64;
        counts.insert(n);
        readers.wait_for_rows(n, WAIT);
        for statement in sql {
            cluster.sql("shop", statement);
        }
    }
    // Each run delivered the changes committed right before it: three committed versions.
    assert_eq!(counts.len(), 3, "{counts:?}");
    let seen = assert_only_committed("public.items", &readers.stop(), &counts);
    assert!(seen >= 6, "{seen} reads saw the table");
}

#[test]
fn a_second_project_writing_the_same_lake_stream_is_told_who_holds_it() {
    let lake = tempfile::tempdir().unwrap();
    let yaml = format!(
        "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: {}\n  commit_interval: 200ms\n",
        lake.path().display()
    );
    let product = "product: shop\ndomain: sales\nowner: test@example.com\ndescription: lock\nsource:\n  \
                   connector: sample\n  config: { scale: 50000000 }\nstreams:\n  - name: orders\n    \
                   mode: full_refresh\n    write: overwrite\n";
    let (first, second) = (TestProject::new(BIN, &yaml), TestProject::new(BIN, &yaml));
    first.product("sales", "shop", product);
    second.product("sales", "shop", product);

    let mut holder = first
        .weft(["sync", "run", "--no-progress"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first run holds the stream (it wrote its pid into the lock).
    let lock = lake.path().join("sales/shop/_weft/orders/lock");
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&lock).unwrap_or_default();
        let who: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if who["pid"] == holder.id() {
            break;
        }
        assert!(
            holder.try_wait().unwrap().is_none(),
            "the first run ended before it was seen holding the stream"
        );
        assert!(start.elapsed() < WAIT, "the first run never took the lock");
        std::thread::sleep(Duration::from_millis(5));
    }

    let refused = second.run(["sync", "run", "--no-progress"]);
    let text = format!("{}{}", refused.stdout(), refused.stderr());
    assert_eq!(refused.code(), Some(1), "{text}");
    assert!(
        holder.try_wait().unwrap().is_none(),
        "the first run ended before the second tried: the test proves nothing"
    );
    for needle in [
        "is being written by another weft run".to_string(),
        format!("pid {}", holder.id()),
        format!("project {}", first.path().display()),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in:\n{text}");
    }
    assert!(!text.contains("No such file"), "{text}");

    // A killed holder releases the stream: the second project can now take it (a reset takes
    // the same lock, and is quick).
    holder.kill().unwrap();
    holder.wait().unwrap();
    second
        .run(["sync", "reset", "sales/shop/orders", "--yes"])
        .expect_code(0);
    let dir = lake.path().join("sales/shop/orders");
    assert!(
        std::fs::symlink_metadata(&dir).is_err(),
        "the stream was reset"
    );
    assert!(!lake.path().join("sales/shop/_weft/orders").exists());
}

#[test]
fn a_column_added_upstream_and_a_widened_type_flow_into_incremental_lake_streams() {
    let db = PgTestDb::create("lake_evolution");
    db.sql(
        "CREATE TABLE t (id int8 PRIMARY KEY, n int4 NOT NULL, updated_at timestamptz NOT NULL);
         INSERT INTO t VALUES (1, 10, '2024-01-01'), (2, 20, '2024-01-01');",
    );
    let p = TestProject::with_lake(BIN, "1s");
    let product = |write: &str| {
        format!(
            "product: db_{write}\ndomain: ops\nowner: test@example.com\ndescription: evolution\nsource:\n  \
             connector: postgres\n  config: {}\n\
             streams:\n  - name: public.t\n    mode: incremental\n    write: {write}\n    cursor: updated_at\n",
            db.pg_config()
        )
    };
    p.product("ops", "db_append_dedup", &product("append_dedup"));
    p.product("ops", "db_append", &product("append"));
    // The PostgreSQL product store takes the same evolution (schema `store` of the same db).
    p.product(
        "ops",
        "db_store",
        &format!(
            "{}destination:\n  connector: postgres\n  config: {{ host: \"{}\", port: {}, user: {}, database: {}, schema: store }}\n",
            product("append_dedup").replace("db_append_dedup", "db_store"),
            db.host,
            db.port,
            db.user,
            db.name
        ),
    );
    p.run(["sync", "run", "--no-progress"]).expect_code(0);

    db.sql(
        "ALTER TABLE t ADD COLUMN extra text;
         ALTER TABLE t ALTER COLUMN n TYPE int8;
         UPDATE t SET n = 3000000000, extra = 'x', updated_at = '2024-02-01' WHERE id = 2;
         INSERT INTO t VALUES (3, 30, '2024-02-01', 'y');",
    );
    let second = p.run(["sync", "run", "--no-progress"]);
    second.expect_code(0);

    // The current state: one row per key, the old row with NULL in the new column.
    let current = dump(&p.stream_dir("ops", "db_append_dedup", "public.t"), "id");
    assert_eq!(
        current.column("id"),
        [Some("1"), Some("2"), Some("3")].map(|v| v.map(String::from))
    );
    assert_eq!(
        current.column("n"),
        [Some("10"), Some("3000000000"), Some("30")].map(|v| v.map(String::from))
    );
    assert_eq!(
        current.column("extra"),
        [None, Some("x"), Some("y")].map(|v| v.map(String::from))
    );
    assert_eq!(current.types["n"], "int64");
    assert_eq!(current.types["extra"], "string");

    // The appended history: the first run's rows (written before the change) and the new ones.
    // An id appears once per version of its row: `n` orders them (it only grew).
    let history = dump(&p.stream_dir("ops", "db_append", "public.t"), "id,n");
    assert_eq!(history.duckdb.len(), 4, "{:?}", history.duckdb);
    assert_eq!(
        history.column("extra"),
        [None, None, Some("x"), Some("y")].map(|v| v.map(String::from))
    );
    assert_eq!(
        history.column("n"),
        [Some("10"), Some("20"), Some("3000000000"), Some("30")].map(|v| v.map(String::from))
    );

    let stored = db
        .sql("SELECT id, n, coalesce(extra, 'NULL') FROM store.\"db_store__public.t\" ORDER BY id");
    assert_eq!(stored, "1|10|NULL\n2|3000000000|x\n3|30|y");
    let types = db.sql(
        "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) \
         FROM pg_attribute WHERE attrelid = 'store.\"db_store__public.t\"'::regclass AND attnum > 0 \
         AND NOT attisdropped AND attname IN ('n', 'extra')",
    );
    assert_eq!(types, "n bigint, extra text");

    // A dropped column is refused, naming the column and what to do.
    db.sql("ALTER TABLE t DROP COLUMN extra");
    let refused = p.run(["sync", "run", "--no-progress"]);
    let text = format!("{}{}", refused.stdout(), refused.stderr());
    assert_eq!(refused.code(), Some(1), "{text}");
    assert!(
        text.contains("column `extra` is no longer in the stream"),
        "{text}"
    );
}

/// Issue #15 item 1 between incremental runs: the rows synced before a column was added with
/// a DEFAULT read the default in the lake's current state, as they do in the source; the
/// appended history keeps what was read before the column existed.
#[test]
fn a_column_added_with_a_default_reaches_the_lake_rows_already_synced_between_runs() {
    let db = PgTestDb::create("lake_fill");
    db.sql(
        "CREATE TABLE t (id int8 PRIMARY KEY, v text, updated_at timestamptz NOT NULL);
         INSERT INTO t VALUES (1, 'a', '2024-01-01'), (2, 'b', '2024-01-01');",
    );
    let p = TestProject::with_lake(BIN, "1s");
    let product = |write: &str| {
        format!(
            "product: db_{write}\ndomain: ops\nowner: test@example.com\ndescription: fill\nsource:\n  \
             connector: postgres\n  config: {}\n\
             streams:\n  - name: public.t\n    mode: incremental\n    write: {write}\n    cursor: updated_at\n",
            db.pg_config()
        )
    };
    p.product("ops", "db_append_dedup", &product("append_dedup"));
    p.product("ops", "db_append", &product("append"));
    p.run(["sync", "run", "--no-progress"]).expect_code(0);

    db.sql(
        "ALTER TABLE t ADD COLUMN extra text DEFAULT 'd', ADD COLUMN qty numeric(6,2) DEFAULT 7.5;
         UPDATE t SET v = 'b2', qty = 1, updated_at = '2024-02-01' WHERE id = 2;",
    );
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let rows = |product: &str| {
        // `v` orders the versions of one id in the appended history.
        let rows = dump(&p.stream_dir("ops", product, "public.t"), "id,v");
        let cell = |c: Option<String>| c.unwrap_or_else(|| "NULL".into());
        let columns: Vec<_> = ["id", "v", "extra", "qty"]
            .iter()
            .map(|c| rows.column(c))
            .collect();
        (0..columns[0].len())
            .map(|i| {
                columns
                    .iter()
                    .map(|c| cell(c[i].clone()))
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(
        db.sql("SELECT string_agg(concat_ws('|', id, v, extra, qty), ',' ORDER BY id) FROM t"),
        "1|a|d|7.50,2|b2|d|1.00"
    );
    assert_eq!(rows("db_append_dedup"), "1|a|d|7.50,2|b2|d|1.00");
    assert_eq!(rows("db_append"), "1|a|NULL|NULL,2|b|NULL|NULL,2|b2|d|1.00");
}

#[test]
fn a_new_csv_with_one_more_column_flows_into_the_lake() {
    let p = TestProject::one_product(BIN, "ops",
        "drops",
        "product: drops\ndomain: ops\nowner: ops@example.com\ndescription: csv drops\nsource:\n  \
         connector: files\n  config:\n    streams:\n      - { name: shipments, path: in, glob: \"*.csv\", format: csv }\n\
         streams:\n  - name: shipments\n    mode: incremental\n    write: append\n    cursor: _file_modified_at\n");
    p.file("in/a.csv", "shipment,city\n1,Oslo\n2,Lyon\n");
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    // The next drop has one more column, and not at the end.
    p.file("in/b.csv", "shipment,carrier,city\n3,DHL,Rome\n");
    p.run(["sync", "run", "--no-progress"]).expect_code(0);

    let rows = dump(&p.stream_dir("ops", "drops", "shipments"), "shipment");
    let text = |v: &[Option<&str>]| v.iter().map(|v| v.map(String::from)).collect::<Vec<_>>();
    assert_eq!(
        rows.column("shipment"),
        text(&[Some("1"), Some("2"), Some("3")])
    );
    assert_eq!(
        rows.column("city"),
        text(&[Some("Oslo"), Some("Lyon"), Some("Rome")])
    );
    assert_eq!(rows.column("carrier"), text(&[None, None, Some("DHL")]));
    assert_eq!(
        rows.column("_file"),
        text(&[Some("a.csv"), Some("a.csv"), Some("b.csv")])
    );
}

#[test]
fn a_merge_rewrites_only_the_row_groups_holding_changed_keys_and_readers_see_the_source() {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let db = PgTestDb::create("lake_splice");
    db.sql(
        "CREATE TABLE t (id int8 PRIMARY KEY, v text, n numeric(12,2), updated_at timestamptz NOT NULL);
         INSERT INTO t SELECT i, md5(i::text), i * 1.25, '2024-01-01'
           FROM generate_series(1, 60000) i;",
    );
    // Small batches and row groups, one file: the changed keys below sit in three of many
    // row groups.
    let p = TestProject::new(
        BIN,
        "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n      row_group_bytes: 65536\n  commit_interval: 1h\n",
    );
    p.product(
        "ops",
        "db",
        &format!(
            "product: db\ndomain: ops\nowner: test@example.com\ndescription: splice\nsource:\n  \
             connector: postgres\n  config: {{ host: \"{}\", port: {}, user: {}, database: {}, batch_size: 2000 }}\n\
             streams:\n  - name: public.t\n    mode: incremental\n    write: append_dedup\n    \
             cursor: updated_at\n    primary_key: [id]\n",
            db.host, db.port, db.user, db.name
        ),
    );
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let dir = p.stream_dir("ops", "db", "public.t");
    let groups = |path: &std::path::Path| -> Vec<(i64, i64)> {
        let b =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
        b.metadata()
            .row_groups()
            .iter()
            .map(|g| (g.num_rows(), g.compressed_size()))
            .collect()
    };
    let before = weft_testkit::committed_files(&dir);
    assert_eq!(before.len(), 1, "{before:?}");
    let old = groups(&before[0]);
    assert!(old.len() >= 8, "{} row groups", old.len());

    db.sql(
        "UPDATE t SET v = 'changed', n = -1, updated_at = '2024-02-01' WHERE id IN (2, 30000, 59999);
         INSERT INTO t VALUES (60001, 'new', 0.5, '2024-02-01');",
    );
    p.run(["sync", "run", "--no-progress"]).expect_code(0);

    // DuckDB's glob and pyarrow.dataset, as README shows them, read the source's rows.
    let rows = dump(&dir, "id");
    let cells: Vec<String> = {
        let (ids, vs, ns) = (rows.column("id"), rows.column("v"), rows.column("n"));
        (0..ids.len())
            .map(|i| {
                format!(
                    "{}|{}|{}",
                    ids[i].clone().unwrap(),
                    vs[i].clone().unwrap(),
                    ns[i].clone().unwrap()
                )
            })
            .collect()
    };
    let source = db.sql("SELECT string_agg(concat_ws('|', id, v, n), ',' ORDER BY id) FROM t");
    assert_eq!(cells.len(), 60_001);
    assert_eq!(cells.join(","), source);

    // The old file was replaced by one with the same row groups: the three holding a changed
    // key lost a row, every other one was copied byte for byte (same size).
    let after = weft_testkit::committed_files(&dir);
    let spliced: Vec<_> = after
        .iter()
        .filter(|f| !before.contains(f) && groups(f).len() == old.len())
        .collect();
    assert_eq!(spliced.len(), 1, "{after:?}");
    let new = groups(spliced[0]);
    let changed: Vec<usize> = (0..old.len()).filter(|&g| old[g] != new[g]).collect();
    assert_eq!(changed.len(), 3, "{old:?} -> {new:?}");
    for g in changed {
        assert_eq!(new[g].0, old[g].0 - 1, "row group {g}");
    }
}
