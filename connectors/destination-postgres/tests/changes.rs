//! CDC change application of the `postgres` destination against a real PostgreSQL server (a
//! fresh database per test): the current state by key (`append_dedup`), the changelog
//! (`append`), truncates, unchanged TOASTed values, abort and replay, schema changes
//! mid-stream, and a rough throughput measurement.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use weft_conformance::TestStream;
use weft_core::arrow_array::*;
use weft_core::arrow_schema::{DataType, Field, Schema, SchemaRef};
use weft_core::{
    ChangeBatch, ChangeOp, Checkpoint, ConfiguredStream, Destination, DestinationFactory,
    StreamTarget, StreamWriter, SyncMode, WriteMode,
};
use weft_destination_postgres::PostgresDestinationFactory;
use weft_testkit::pg::PgTestDb;

use ChangeOp::{Delete as D, Insert as I, Truncate as T, Update as U};

fn destination(db: &PgTestDb) -> Box<dyn Destination> {
    let ctx = weft_core::ConnectorContext {
        project_dir: std::env::temp_dir(),
    };
    let config = db.config_json();
    PostgresDestinationFactory.build(&config, &ctx).unwrap()
}

fn target(stream: &str) -> StreamTarget {
    TestStream::new("sales", "shop", stream).target()
}

fn cdc_stream(name: &str, schema: &SchemaRef, write: WriteMode, key: &[&str]) -> ConfiguredStream {
    TestStream::new("sales", "shop", name)
        .schema(schema.clone())
        .sync(SyncMode::Cdc)
        .write(write)
        .key(key)
        .configured()
}

async fn try_open(
    dest: &dyn Destination,
    stream: &str,
    schema: &SchemaRef,
    write: WriteMode,
    key: &[&str],
) -> weft_core::Result<Box<dyn StreamWriter>> {
    dest.open(
        &target(stream),
        &cdc_stream(stream, schema, write, key),
        schema.clone(),
    )
    .await
}

async fn open(
    dest: &dyn Destination,
    stream: &str,
    schema: &SchemaRef,
    write: WriteMode,
    key: &[&str],
) -> Box<dyn StreamWriter> {
    try_open(dest, stream, schema, write, key).await.unwrap()
}

fn cp(n: u64) -> Checkpoint {
    Checkpoint::new(json!({ "lsn": n }))
}

/// `id bigint` (the key), `name text`, `body text` (large values, possibly unchanged).
fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("body", DataType::Utf8, true),
    ]))
}

/// One change: operation, position, ordinal, the row (`None`: all null, as in a truncate),
/// the columns whose value is unchanged (null in the row).
type Change<'a> = (ChangeOp, u64, u64, Option<Vec<Value>>, &'a [&'a str]);

/// Commit time of a change at `position` (µs since the epoch): 2024-01-01T00:00:00Z plus
/// `position % 100000` seconds.
fn commit_micros(position: u64) -> i64 {
    1_704_067_200_000_000 + (position % 100_000) as i64 * 1_000_000
}

/// A change batch of `schema` from `changes`; values are JSON (numbers for integer columns,
/// strings for text, null). Cells of unchanged columns are null whatever is given.
fn batch(schema: &SchemaRef, changes: &[Change]) -> ChangeBatch {
    let n = changes.len();
    let cell = |row: usize, col: usize| -> Value {
        let (_, _, _, values, unchanged) = &changes[row];
        let name = schema.field(col).name();
        if unchanged.contains(&name.as_str()) {
            return Value::Null;
        }
        values
            .as_ref()
            .map(|v| v[col].clone())
            .unwrap_or(Value::Null)
    };
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(c, field)| -> ArrayRef {
            match field.data_type() {
                DataType::Int64 => Arc::new(Int64Array::from(
                    (0..n).map(|r| cell(r, c).as_i64()).collect::<Vec<_>>(),
                )),
                DataType::Int32 => Arc::new(Int32Array::from(
                    (0..n)
                        .map(|r| cell(r, c).as_i64().map(|v| v as i32))
                        .collect::<Vec<_>>(),
                )),
                DataType::Utf8 => Arc::new(StringArray::from(
                    (0..n)
                        .map(|r| cell(r, c).as_str().map(String::from))
                        .collect::<Vec<_>>(),
                )),
                other => panic!("no test values for {other}"),
            }
        })
        .collect();
    let mut unchanged = BTreeMap::new();
    for field in schema.fields() {
        let flags: Vec<bool> = changes
            .iter()
            .map(|(_, _, _, _, u)| u.contains(&field.name().as_str()))
            .collect();
        if flags.iter().any(|f| *f) {
            unchanged.insert(field.name().clone(), BooleanArray::from(flags));
        }
    }
    let out = ChangeBatch {
        rows: RecordBatch::try_new(schema.clone(), columns).unwrap(),
        ops: UInt8Array::from_iter_values(changes.iter().map(|c| c.0 as u8)),
        positions: UInt64Array::from_iter_values(changes.iter().map(|c| c.1)),
        ordinals: UInt64Array::from_iter_values(changes.iter().map(|c| c.2)),
        commit_micros: Int64Array::from_iter_values(changes.iter().map(|c| commit_micros(c.1))),
        unchanged,
    };
    out.validate().unwrap();
    out
}

/// A row of the (id, name, body) schema.
fn row(id: i64, name: &str, body: &str) -> Option<Vec<Value>> {
    Some(vec![json!(id), json!(name), json!(body)])
}

/// A delete's row: only the key is set.
fn key(id: i64) -> Option<Vec<Value>> {
    Some(vec![json!(id), Value::Null, Value::Null])
}

/// `columns` of every row of `table`, ordered by `order`, as JSON arrays (text for bodies
/// longer than 40 characters is shown as `<len N of 'c'>` to keep assertions readable).
fn rows(db: &PgTestDb, table: &str, columns: &[&str], order: &str) -> Vec<Value> {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| {
            format!(
                "CASE WHEN length(\"{c}\"::text) > 40 THEN format('<len %s of %s>', \
                 length(\"{c}\"::text), left(\"{c}\"::text, 1)) ELSE \"{c}\"::text END"
            )
        })
        .collect();
    let out = db.sql(&format!(
        "SET TIME ZONE 'UTC'; SELECT coalesce(json_agg(json_build_array({}) ORDER BY {order}), \
         '[]') FROM {table}",
        cols.join(", ")
    ));
    let text = out.lines().last().unwrap_or_default();
    let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:.300}"));
    value.as_array().unwrap().clone()
}

/// `(id, name, body)` of `sales.shop__<stream>`, by id.
fn state(db: &PgTestDb, stream: &str) -> Vec<Value> {
    rows(
        db,
        &format!("sales.shop__{stream}"),
        &["id", "name", "body"],
        "id",
    )
}

fn expect(rows: &[(i64, &str, &str)]) -> Vec<Value> {
    rows.iter()
        .map(|(id, name, body)| json!([id.to_string(), name, body]))
        .collect()
}

#[tokio::test]
async fn snapshot_inserts_then_updates_and_deletes_by_key() {
    let db = PgTestDb::create("pgcdc_basic");
    let dest = destination(&db);
    let s = schema();
    let mut w = open(dest.as_ref(), "items", &s, WriteMode::AppendDedup, &["id"]).await;
    // The initial snapshot arrives as inserts.
    w.write_changes(batch(
        &s,
        &[
            (I, 0, 0, row(1, "one", "b1"), &[]),
            (I, 0, 1, row(2, "two", "b2"), &[]),
            (I, 0, 2, row(3, "three", "b3"), &[]),
        ],
    ))
    .await
    .unwrap();
    w.commit(&cp(1)).await.unwrap();
    assert_eq!(
        state(&db, "items"),
        expect(&[(1, "one", "b1"), (2, "two", "b2"), (3, "three", "b3")])
    );
    w.write_changes(batch(
        &s,
        &[
            (U, 100, 0, row(2, "TWO", "B2"), &[]),
            (D, 100, 1, key(3), &[]),
            (I, 200, 0, row(4, "four", "b4"), &[]),
            // Deleting a key the table never had is a no-op.
            (D, 200, 1, key(99), &[]),
        ],
    ))
    .await
    .unwrap();
    w.finish(&cp(2)).await.unwrap();
    assert_eq!(
        state(&db, "items"),
        expect(&[(1, "one", "b1"), (2, "TWO", "B2"), (4, "four", "b4")])
    );
    // The table: the stream's columns, the last applied position, the metadata columns.
    assert_eq!(
        rows(
            &db,
            "sales.shop__items",
            &["id", "_weft_position", "_weft_run_id"],
            "id"
        ),
        vec![
            json!(["1", "0", "run-1"]),
            json!(["2", "100", "run-1"]),
            json!(["4", "200", "run-1"])
        ]
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM sales.shop__items WHERE _weft_synced_at IS NULL"),
        "0"
    );
    assert_eq!(
        db.sql(
            "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || CASE WHEN \
             attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = 'sales.shop__items'::regclass AND attnum > 0"
        ),
        "id bigint not null, name text, body text, _weft_position bigint, _weft_synced_at \
         timestamp with time zone, _weft_run_id text"
    );
    let reopened = open(dest.as_ref(), "items", &s, WriteMode::AppendDedup, &["id"]).await;
    assert_eq!(reopened.committed_checkpoint(), Some(cp(2)));
}

#[tokio::test]
async fn key_changes_and_repeated_changes_of_one_key_in_a_batch() {
    let db = PgTestDb::create("pgcdc_keys");
    let dest = destination(&db);
    // A composite key: (region, id).
    let s: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, true),
        Field::new("id", DataType::Int32, true),
        Field::new("qty", DataType::Int64, true),
    ]));
    let r = |region: &str, id: i64, qty: i64| Some(vec![json!(region), json!(id), json!(qty)]);
    let k = |region: &str, id: i64| Some(vec![json!(region), json!(id), Value::Null]);
    let mut w = open(
        dest.as_ref(),
        "stock",
        &s,
        WriteMode::AppendDedup,
        &["region", "id"],
    )
    .await;
    w.write_changes(batch(
        &s,
        &[
            (I, 0, 0, r("eu", 1, 10), &[]),
            (I, 0, 1, r("eu", 2, 20), &[]),
            (I, 0, 2, r("us", 1, 30), &[]),
        ],
    ))
    .await
    .unwrap();
    w.commit(&cp(1)).await.unwrap();
    w.write_changes(batch(
        &s,
        &[
            // A primary-key change: ("eu", 1) becomes ("eu", 5).
            (D, 10, 0, k("eu", 1), &[]),
            (I, 10, 1, r("eu", 5, 11), &[]),
            // Insert, update, delete of one key in one batch: gone.
            (I, 11, 0, r("ap", 7, 1), &[]),
            (U, 12, 0, r("ap", 7, 2), &[]),
            (D, 13, 0, k("ap", 7), &[]),
            // Delete then re-insert of a key in one batch: the new row.
            (D, 14, 0, k("us", 1), &[]),
            (I, 15, 0, r("us", 1, 31), &[]),
            // Several updates of one key: the last one.
            (U, 16, 0, r("eu", 2, 21), &[]),
            (U, 16, 1, r("eu", 2, 22), &[]),
            (U, 17, 0, r("eu", 2, 23), &[]),
        ],
    ))
    .await
    .unwrap();
    w.commit(&cp(2)).await.unwrap();
    assert_eq!(
        rows(
            &db,
            "sales.shop__stock",
            &["region", "id", "qty", "_weft_position"],
            "region, id"
        ),
        vec![
            json!(["eu", "2", "23", "17"]),
            json!(["eu", "5", "11", "10"]),
            json!(["us", "1", "31", "15"]),
        ]
    );
}

#[tokio::test]
async fn a_truncate_deletes_what_came_before_and_keeps_what_follows() {
    let db = PgTestDb::create("pgcdc_truncate");
    let dest = destination(&db);
    let s = schema();
    let mut w = open(dest.as_ref(), "items", &s, WriteMode::AppendDedup, &["id"]).await;
    w.write_changes(batch(
        &s,
        &[
            (I, 0, 0, row(1, "one", "b1"), &[]),
            (I, 0, 1, row(2, "two", "b2"), &[]),
        ],
    ))
    .await
    .unwrap();
    w.commit(&cp(1)).await.unwrap();
    w.write_changes(batch(
        &s,
        &[
            (I, 10, 0, row(3, "three", "b3"), &[]),
            (U, 11, 0, row(1, "ONE", "B1"), &[]),
            (T, 12, 0, None, &[]),
            (I, 13, 0, row(4, "four", "b4"), &[]),
            (I, 13, 1, row(2, "two again", "b2'"), &[]),
            (T, 14, 0, None, &[]),
            (T, 15, 0, None, &[]),
            (I, 16, 0, row(5, "five", "b5"), &[]),
            (U, 16, 1, row(5, "FIVE", "B5"), &[]),
            (I, 16, 2, row(6, "six", "b6"), &[]),
            (D, 16, 3, key(6), &[]),
        ],
    ))
    .await
    .unwrap();
    // Readers still see the committed state while the truncate is uncommitted.
    assert_eq!(
        state(&db, "items"),
        expect(&[(1, "one", "b1"), (2, "two", "b2")])
    );
    w.commit(&cp(2)).await.unwrap();
    assert_eq!(state(&db, "items"), expect(&[(5, "FIVE", "B5")]));
    // A truncate as the last change leaves the table empty.
    w.write_changes(batch(
        &s,
        &[
            (I, 20, 0, row(7, "seven", "b7"), &[]),
            (T, 21, 0, None, &[]),
        ],
    ))
    .await
    .unwrap();
    w.finish(&cp(3)).await.unwrap();
    assert_eq!(state(&db, "items"), Vec::<Value>::new());
}

#[tokio::test]
async fn unchanged_values_keep_the_stored_or_the_latest_sent_value() {
    let db = PgTestDb::create("pgcdc_toast");
    let dest = destination(&db);
    let s = schema();
    let big = |c: &str| c.repeat(100_000);
    let mut w = open(dest.as_ref(), "docs", &s, WriteMode::AppendDedup, &["id"]).await;
    w.write_changes(batch(
        &s,
        &[
            (I, 0, 0, row(1, "one", &big("a")), &[]),
            (I, 0, 1, row(2, "two", &big("b")), &[]),
        ],
    ))
    .await
    .unwrap();
    w.commit(&cp(1)).await.unwrap();
    let body = &["body"][..];
    w.write_changes(batch(
        &s,
        &[
            // Stored in the table by an earlier commit: kept.
            (U, 10, 0, row(1, "one v2", ""), body),
            // Set by an earlier change of the same batch: that value, even across unchanged
            // updates in between.
            (I, 11, 0, row(3, "three", &big("c")), &[]),
            (U, 12, 0, row(3, "three v2", ""), body),
            (U, 13, 0, row(3, "three v3", ""), body),
            // An update in the batch sets a new value, a later one leaves it unchanged.
            (U, 14, 0, row(2, "two v2", &big("d")), &[]),
            (U, 15, 0, row(2, "two v3", ""), body),
            // An earlier change set it to null: null is the value to keep.
            (
                I,
                16,
                0,
                Some(vec![json!(4), json!("four"), Value::Null]),
                &[],
            ),
            (U, 17, 0, row(4, "four v2", ""), body),
            // Unchanged but nowhere to take it from (the row was never seen): null.
            (U, 18, 0, row(5, "five", ""), body),
            // Unchanged name and body together: the name from the earlier change of the
            // batch, the body from the table.
            (U, 19, 0, row(1, "", ""), &["name", "body"]),
        ],
    ))
    .await
    .unwrap();
    w.commit(&cp(2)).await.unwrap();
    let expected = vec![
        json!(["1", "one v2", "<len 100000 of a>"]),
        json!(["2", "two v3", "<len 100000 of d>"]),
        json!(["3", "three v3", "<len 100000 of c>"]),
        json!(["4", "four v2", null]),
        json!(["5", "five", null]),
    ];
    assert_eq!(state(&db, "docs"), expected);
    // Stored values stay across a later commit's unchanged update, too.
    w.write_changes(batch(&s, &[(U, 30, 0, row(3, "three v4", ""), body)]))
        .await
        .unwrap();
    w.finish(&cp(3)).await.unwrap();
    assert_eq!(
        state(&db, "docs")[2],
        json!(["3", "three v4", "<len 100000 of c>"])
    );
}

#[tokio::test]
async fn abort_drops_uncommitted_changes_and_replay_gives_the_same_table() {
    let db = PgTestDb::create("pgcdc_abort");
    let dest = destination(&db);
    let s = schema();
    let mut w = open(dest.as_ref(), "items", &s, WriteMode::AppendDedup, &["id"]).await;
    let snapshot = batch(
        &s,
        &[
            (I, 0, 0, row(1, "one", "b1"), &[]),
            (I, 0, 1, row(2, "two", "b2"), &[]),
            (I, 0, 2, row(3, "three", "b3"), &[]),
        ],
    );
    w.write_changes(snapshot.clone()).await.unwrap();
    w.commit(&cp(1)).await.unwrap();
    let changes = batch(
        &s,
        &[
            (U, 10, 0, row(1, "ONE", ""), &["body"]),
            (D, 10, 1, key(2), &[]),
            (I, 11, 0, row(4, "four", "b4"), &[]),
            (T, 12, 0, None, &[]),
            (I, 13, 0, row(5, "five", "b5"), &[]),
            (I, 13, 1, row(1, "one again", "b1'"), &[]),
            (U, 14, 0, row(1, "one again v2", ""), &["body"]),
        ],
    );
    w.write_changes(changes.clone()).await.unwrap();
    w.abort().await.unwrap();
    let committed = expect(&[(1, "one", "b1"), (2, "two", "b2"), (3, "three", "b3")]);
    assert_eq!(state(&db, "items"), committed);
    assert_eq!(w.committed_checkpoint(), Some(cp(1)));

    // After the abort the same writer goes on from the last commit.
    w.write_changes(changes.clone()).await.unwrap();
    w.commit(&cp(2)).await.unwrap();
    let after = expect(&[(1, "one again v2", "b1'"), (5, "five", "b5")]);
    assert_eq!(state(&db, "items"), after);

    // A crash after the commit: the next run opens, resumes from the stored checkpoint and
    // replays what the source resends: the table does not change.
    drop(w);
    let mut w = open(dest.as_ref(), "items", &s, WriteMode::AppendDedup, &["id"]).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(2)));
    w.write_changes(changes).await.unwrap();
    w.finish(&cp(2)).await.unwrap();
    assert_eq!(state(&db, "items"), after);

    // A writer dropped with uncommitted changes (a crash before commit) leaves nothing.
    let mut w = open(dest.as_ref(), "items", &s, WriteMode::AppendDedup, &["id"]).await;
    w.write_changes(batch(&s, &[(T, 20, 0, None, &[])]))
        .await
        .unwrap();
    drop(w);
    let w = open(dest.as_ref(), "items", &s, WriteMode::AppendDedup, &["id"]).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(2)));
    assert_eq!(state(&db, "items"), after);
}

#[tokio::test]
async fn the_changelog_appends_every_change_with_its_metadata() {
    let db = PgTestDb::create("pgcdc_log");
    let dest = destination(&db);
    let s = schema();
    let mut w = open(dest.as_ref(), "items", &s, WriteMode::Append, &["id"]).await;
    w.write_changes(batch(
        &s,
        &[
            (I, 0, 0, row(1, "one", "b1"), &[]),
            (I, 0, 1, row(2, "two", "b2"), &[]),
        ],
    ))
    .await
    .unwrap();
    w.commit(&cp(1)).await.unwrap();
    // Positions are LSNs: large u64 values stay exact.
    let lsn = 0x16_B374_D848u64;
    w.write_changes(batch(
        &s,
        &[
            (U, lsn, 0, row(1, "ONE", ""), &["body"]),
            (D, lsn, 1, key(2), &[]),
            (T, lsn + 1, 0, None, &[]),
            (I, lsn + 2, 0, row(3, "three", "b3"), &[]),
        ],
    ))
    .await
    .unwrap();
    // Not visible before the commit.
    assert_eq!(db.sql("SELECT count(*) FROM sales.shop__items"), "2");
    w.finish(&cp(2)).await.unwrap();
    let log = rows(
        &db,
        "sales.shop__items",
        &[
            "id",
            "name",
            "body",
            "_weft_op",
            "_weft_position",
            "_weft_ordinal",
            "_weft_commit_ts",
            "_weft_run_id",
        ],
        "_weft_position, _weft_ordinal",
    );
    let p = |n: u64| (lsn + n).to_string();
    assert_eq!(
        log,
        vec![
            json!([
                "1",
                "one",
                "b1",
                "insert",
                "0",
                "0",
                "2024-01-01 00:00:00+00",
                "run-1"
            ]),
            json!([
                "2",
                "two",
                "b2",
                "insert",
                "0",
                "1",
                "2024-01-01 00:00:00+00",
                "run-1"
            ]),
            // The unchanged body is null in the changelog.
            json!([
                "1",
                "ONE",
                null,
                "update",
                p(0),
                "0",
                "2024-01-01 16:35:20+00",
                "run-1"
            ]),
            json!([
                "2",
                null,
                null,
                "delete",
                p(0),
                "1",
                "2024-01-01 16:35:20+00",
                "run-1"
            ]),
            json!([
                null,
                null,
                null,
                "truncate",
                p(1),
                "0",
                "2024-01-01 16:35:21+00",
                "run-1"
            ]),
            json!([
                "3",
                "three",
                "b3",
                "insert",
                p(2),
                "0",
                "2024-01-01 16:35:22+00",
                "run-1"
            ]),
        ]
    );
    assert_eq!(
        db.sql(
            "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER \
             BY attnum) FROM pg_attribute WHERE attrelid = 'sales.shop__items'::regclass AND \
             attnum > 0"
        ),
        "id bigint, name text, body text, _weft_op text, _weft_position bigint, _weft_ordinal \
         bigint, _weft_commit_ts timestamp with time zone, _weft_synced_at timestamp with time \
         zone, _weft_run_id text"
    );
    let reopened = open(dest.as_ref(), "items", &s, WriteMode::Append, &["id"]).await;
    assert_eq!(reopened.committed_checkpoint(), Some(cp(2)));
}

fn with_extra() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("body", DataType::Utf8, true),
        Field::new("qty", DataType::Int32, true),
    ]))
}

#[tokio::test]
async fn a_schema_change_adds_the_column_and_later_rows_fill_it() {
    let db = PgTestDb::create("pgcdc_evolve");
    let dest = destination(&db);
    let s = schema();
    let s2 = with_extra();
    let r2 =
        |id: i64, name: &str, qty: i64| Some(vec![json!(id), json!(name), json!("b"), json!(qty)]);
    for (stream, mode) in [
        ("state", WriteMode::AppendDedup),
        ("log", WriteMode::Append),
    ] {
        let mut w = open(dest.as_ref(), stream, &s, mode, &["id"]).await;
        w.write_changes(batch(
            &s,
            &[
                (I, 0, 0, row(1, "one", "b"), &[]),
                (I, 0, 1, row(2, "two", "b"), &[]),
            ],
        ))
        .await
        .unwrap();
        w.commit(&cp(1)).await.unwrap();
        w.write_changes(batch(&s, &[(U, 5, 0, row(1, "ONE", "b"), &[])]))
            .await
            .unwrap();
        // Mid-commit: the rows sent before the change go in with the old columns.
        w.schema_change(s2.clone()).await.unwrap();
        w.write_changes(batch(
            &s2,
            &[
                (U, 10, 0, r2(2, "TWO", 22), &[]),
                (I, 11, 0, r2(3, "three", 33), &[]),
            ],
        ))
        .await
        .unwrap();
        // A batch in the old shape is refused now.
        let err = w
            .write_changes(batch(&s, &[(I, 12, 0, row(9, "x", "b"), &[])]))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("does not match the schema"), "{err}");
        w.abort().await.unwrap();
        // The abort rolled the column back with the changes; the writer expects the old
        // shape again.
        assert_eq!(
            db.sql(&format!(
                "SELECT count(*) FROM pg_attribute WHERE attrelid = \
                 'sales.shop__{stream}'::regclass AND attname = 'qty'"
            )),
            "0"
        );
        w.write_changes(batch(&s, &[(U, 5, 0, row(1, "ONE", "b"), &[])]))
            .await
            .unwrap();
        w.schema_change(s2.clone()).await.unwrap();
        w.write_changes(batch(
            &s2,
            &[
                (U, 10, 0, r2(2, "TWO", 22), &[]),
                (I, 11, 0, r2(3, "three", 33), &[]),
            ],
        ))
        .await
        .unwrap();
        w.finish(&cp(2)).await.unwrap();
        let table = format!("sales.shop__{stream}");
        let got = rows(
            &db,
            &table,
            &["id", "name", "qty"],
            "_weft_position, id, name",
        );
        let expected = match mode {
            WriteMode::AppendDedup => vec![
                json!(["1", "ONE", null]),
                json!(["2", "TWO", "22"]),
                json!(["3", "three", "33"]),
            ],
            _ => vec![
                json!(["1", "one", null]),
                json!(["2", "two", null]),
                json!(["1", "ONE", null]),
                json!(["2", "TWO", "22"]),
                json!(["3", "three", "33"]),
            ],
        };
        assert_eq!(got, expected, "{stream}");
        // The next run opens with the new schema.
        let w = open(dest.as_ref(), stream, &s2, mode, &["id"]).await;
        assert_eq!(w.committed_checkpoint(), Some(cp(2)));
    }
}

#[tokio::test]
async fn plain_streams_follow_a_schema_change_mid_stream_too() {
    let db = PgTestDb::create("pgcdc_plain_evolve");
    let dest = destination(&db);
    let s = schema();
    let s2 = with_extra();
    let records = |schema: &SchemaRef, rows: &[Change]| batch(schema, rows).rows;
    for mode in [
        WriteMode::AppendDedup,
        WriteMode::Append,
        WriteMode::Overwrite,
    ] {
        let name = format!("plain_{mode}");
        let mut stream = cdc_stream(&name, &s, mode, &["id"]);
        stream.sync_mode = SyncMode::FullRefresh;
        let mut w = dest.open(&target(&name), &stream, s.clone()).await.unwrap();
        // The CDC entry point is refused for plain streams.
        let err = w
            .write_changes(batch(&s, &[(I, 0, 0, row(1, "x", "b"), &[])]))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("need a CDC stream"), "{err}");
        w.write(records(
            &s,
            &[
                (I, 0, 0, row(1, "one", "b"), &[]),
                (I, 0, 0, row(2, "two", "b"), &[]),
            ],
        ))
        .await
        .unwrap();
        w.schema_change(s2.clone()).await.unwrap();
        w.write(records(
            &s2,
            &[(
                I,
                0,
                0,
                Some(vec![json!(2), json!("TWO"), json!("b"), json!(22)]),
                &[],
            )],
        ))
        .await
        .unwrap();
        w.finish(&cp(1)).await.unwrap();
        let got = rows(
            &db,
            &format!("sales.\"shop__{name}\""),
            &["id", "name", "qty"],
            "id, qty NULLS FIRST",
        );
        // Append keeps every row; append_dedup one per key, and so does an overwrite of a
        // stream with a primary key (the last row per key is published).
        let expected = match mode {
            WriteMode::Append => vec![
                json!(["1", "one", null]),
                json!(["2", "two", null]),
                json!(["2", "TWO", "22"]),
            ],
            _ => vec![json!(["1", "one", null]), json!(["2", "TWO", "22"])],
        };
        assert_eq!(got, expected, "{mode}");
    }
}

#[tokio::test]
async fn an_incompatible_schema_change_stops_the_stream_naming_the_fix() {
    let db = PgTestDb::create("pgcdc_refuse");
    let dest = destination(&db);
    let s = schema();
    let mut w = open(dest.as_ref(), "items", &s, WriteMode::AppendDedup, &["id"]).await;
    w.write_changes(batch(&s, &[(I, 0, 0, row(1, "one", "b"), &[])]))
        .await
        .unwrap();
    w.commit(&cp(1)).await.unwrap();
    w.write_changes(batch(&s, &[(U, 5, 0, row(1, "ONE", "b"), &[])]))
        .await
        .unwrap();
    // `name` turns from text into bigint: refused.
    let narrowed: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Int64, true),
        Field::new("body", DataType::Utf8, true),
    ]));
    let err = w.schema_change(narrowed).await.err().unwrap().to_string();
    assert_eq!(
        err,
        "table \"sales\".\"shop__items\": column \"name\" is text but the stream now sends \
         bigint; weft only adds columns and widens types (smallint → integer → bigint, real → \
         double precision, more numeric digits, varchar → text). Cast the column with a mapper, \
         alter the table yourself (ALTER TABLE \"sales\".\"shop__items\" ALTER COLUMN \"name\" \
         TYPE bigint USING \"name\"::bigint, if every value converts), or drop it so the next \
         run recreates it"
    );
    // The writer stops until aborted; nothing of the commit became visible.
    let err = w
        .write_changes(batch(&s, &[(U, 6, 0, row(1, "x", "b"), &[])]))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("abort and resume"), "{err}");
    w.abort().await.unwrap();
    assert_eq!(state(&db, "items"), expect(&[(1, "one", "b")]));

    // A dropped column is refused, naming the statement that accepts it.
    let dropped: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let err = w.schema_change(dropped).await.err().unwrap().to_string();
    assert!(
        err.contains("no longer sends column \"body\"")
            && err.contains("ALTER TABLE \"sales\".\"shop__items\" DROP COLUMN \"body\""),
        "{err}"
    );
    w.abort().await.unwrap();

    // Added columns and widened types are applied mid-stream.
    let s2 = with_extra();
    w.schema_change(s2.clone()).await.unwrap();
    let wider: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("body", DataType::Utf8, true),
        Field::new("qty", DataType::Int64, true),
    ]));
    w.schema_change(wider.clone()).await.unwrap();
    w.write_changes(batch(
        &wider,
        &[(
            U,
            7,
            0,
            Some(vec![
                json!(1),
                json!("ONE"),
                json!("b"),
                json!(5_000_000_000i64),
            ]),
            &[],
        )],
    ))
    .await
    .unwrap();
    w.finish(&cp(2)).await.unwrap();
    assert_eq!(
        rows(&db, "sales.shop__items", &["id", "name", "qty"], "id"),
        vec![json!(["1", "ONE", "5000000000"])]
    );
    assert_eq!(
        db.sql(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = \
             'sales.shop__items'::regclass AND attname = 'qty'"
        ),
        "bigint"
    );
}

#[tokio::test]
async fn cdc_streams_refuse_what_does_not_apply() {
    let db = PgTestDb::create("pgcdc_refusals");
    let dest = destination(&db);
    let s = schema();
    let err = try_open(dest.as_ref(), "items", &s, WriteMode::Overwrite, &["id"])
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("cannot be written in `overwrite` mode"),
        "{err}"
    );
    let err = try_open(dest.as_ref(), "items", &s, WriteMode::AppendDedup, &[])
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("needs a `primary_key`"), "{err}");
    let clash: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("_weft_op", DataType::Utf8, true),
    ]));
    let err = try_open(dest.as_ref(), "items", &clash, WriteMode::Append, &["id"])
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("\"_weft_op\" is a name weft uses"), "{err}");

    let mut w = open(dest.as_ref(), "items", &s, WriteMode::AppendDedup, &["id"]).await;
    let records = batch(&s, &[(I, 0, 0, row(1, "one", "b"), &[])]).rows;
    let err = w.write(records).await.err().unwrap().to_string();
    assert!(err.contains("takes change batches"), "{err}");
}

#[tokio::test]
async fn hostile_names_are_quoted_in_change_application() {
    let db = PgTestDb::create("pgcdc_names");
    let dest = destination(&db);
    let s: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("Order \"Id\"", DataType::Int64, true),
        Field::new("select", DataType::Utf8, true),
        Field::new("l", DataType::Utf8, true),
    ]));
    let key = ["Order \"Id\""];
    for mode in [WriteMode::AppendDedup, WriteMode::Append] {
        let stream = format!("public.Odd \"{mode}\"");
        let mut w = open(dest.as_ref(), &stream, &s, mode, &key).await;
        w.write_changes(batch(
            &s,
            &[
                (I, 0, 0, row(1, "a", "it's \\ big"), &[]),
                (U, 1, 0, row(1, "b", ""), &["l"]),
                (I, 2, 0, row(2, "c", "d"), &[]),
                (D, 3, 0, Some(vec![json!(2), Value::Null, Value::Null]), &[]),
            ],
        ))
        .await
        .unwrap();
        w.finish(&cp(1)).await.unwrap();
        let table = format!("sales.\"shop__{}\"", stream.replace('"', "\"\""));
        let got = rows(
            &db,
            &table,
            &["Order \"\"Id\"\"", "select", "l"],
            "_weft_position",
        );
        let expected = match mode {
            WriteMode::AppendDedup => vec![json!(["1", "b", "it's \\ big"])],
            _ => vec![
                json!(["1", "a", "it's \\ big"]),
                json!(["1", "b", null]),
                json!(["2", "c", "d"]),
                json!(["2", null, null]),
            ],
        };
        assert_eq!(got, expected, "{mode}");
    }
}

/// Not an assertion: prints how fast change batches apply (run with `--nocapture`).
#[tokio::test]
async fn throughput_of_applying_changes() {
    let db = PgTestDb::create("pgcdc_speed");
    let dest = destination(&db);
    let s: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("qty", DataType::Int64, true),
        Field::new("note", DataType::Utf8, true),
    ]));
    const TOTAL: i64 = 200_000;
    const BATCH: i64 = 10_000;
    let make = |lo: i64, op: ChangeOp, version: i64, unchanged_note: bool| {
        let ids = lo..lo + BATCH;
        let n = BATCH as usize;
        let mut unchanged = BTreeMap::new();
        if unchanged_note {
            unchanged.insert("note".to_string(), BooleanArray::from(vec![true; n]));
        }
        let note: ArrayRef = if unchanged_note {
            Arc::new(StringArray::new_null(n))
        } else {
            Arc::new(StringArray::from_iter_values(
                ids.clone()
                    .map(|i| format!("a note about row {i} of some length")),
            ))
        };
        ChangeBatch {
            rows: RecordBatch::try_new(
                s.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(ids.clone())),
                    Arc::new(StringArray::from_iter_values(
                        ids.clone().map(|i| format!("name {i} v{version}")),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        ids.clone().map(|i| i * version),
                    )),
                    note,
                ],
            )
            .unwrap(),
            ops: UInt8Array::from(vec![op as u8; n]),
            positions: UInt64Array::from_iter_values(
                ids.clone().map(|i| (version * TOTAL + i) as u64),
            ),
            ordinals: UInt64Array::from(vec![0; n]),
            commit_micros: Int64Array::from(vec![commit_micros(0); n]),
            unchanged,
        }
    };
    let mut w = open(dest.as_ref(), "speed", &s, WriteMode::AppendDedup, &["id"]).await;
    let mut report = Vec::new();
    for (what, op, version, unchanged) in [
        ("insert-heavy (new keys)", I, 1, false),
        ("update-heavy (every key, full rows)", U, 2, false),
        ("update-heavy (every key, unchanged note)", U, 3, true),
    ] {
        let batches: Vec<ChangeBatch> = (0..TOTAL / BATCH)
            .map(|b| make(b * BATCH, op, version, unchanged))
            .collect();
        let secs = timed(w.as_mut(), batches, version as u64 * 100).await;
        report.push(format!(
            "{what}: {TOTAL} changes in {secs:.2} s = {:.0} changes/s",
            TOTAL as f64 / secs
        ));
    }
    assert_eq!(
        db.sql(
            "SELECT count(*), sum(qty), count(*) FILTER (WHERE note LIKE 'a note about row %') \
             FROM sales.shop__speed"
        ),
        format!("{TOTAL}|{}|{TOTAL}", (0..TOTAL).map(|i| i * 3).sum::<i64>())
    );
    let deletes: Vec<ChangeBatch> = (0..TOTAL / BATCH)
        .map(|b| make(b * BATCH, D, 4, false))
        .collect();
    let secs = timed(w.as_mut(), deletes, 400).await;
    report.push(format!(
        "delete-heavy (every key): {TOTAL} changes in {secs:.2} s = {:.0} changes/s",
        TOTAL as f64 / secs
    ));
    assert_eq!(db.sql("SELECT count(*) FROM sales.shop__speed"), "0");
    // The changelog of the same insert-heavy load.
    let mut log = open(dest.as_ref(), "speed_log", &s, WriteMode::Append, &["id"]).await;
    let inserts: Vec<ChangeBatch> = (0..TOTAL / BATCH)
        .map(|b| make(b * BATCH, I, 1, false))
        .collect();
    let secs = timed(log.as_mut(), inserts, 500).await;
    report.push(format!(
        "changelog (append): {TOTAL} changes in {secs:.2} s = {:.0} changes/s",
        TOTAL as f64 / secs
    ));
    assert_eq!(
        db.sql("SELECT count(*) FROM sales.shop__speed_log"),
        TOTAL.to_string()
    );
    for line in report {
        println!("{line}");
    }
}

/// Writes `batches`, committing every 5 (50k changes, as the engine's commit interval
/// would) and at the end; returns the seconds it took.
async fn timed(w: &mut dyn StreamWriter, batches: Vec<ChangeBatch>, cp_base: u64) -> f64 {
    let started = Instant::now();
    for (i, b) in batches.into_iter().enumerate() {
        w.write_changes(b).await.unwrap();
        if i % 5 == 4 {
            w.commit(&cp(cp_base + i as u64)).await.unwrap();
        }
    }
    w.commit(&cp(cp_base + 99)).await.unwrap();
    started.elapsed().as_secs_f64()
}
