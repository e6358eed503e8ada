//! The `postgres` destination against a real PostgreSQL server (a fresh database per test):
//! every supported type round-trips, append across commits, overwrite atomicity and resume,
//! dedup by multi-column keys with cursor ties, schema evolution, hostile names, `check`.

use std::sync::Arc;

use weft_conformance::TestStream;
use weft_core::arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder};
use weft_core::arrow_array::types::IntervalMonthDayNano;
use weft_core::arrow_array::*;
use weft_core::arrow_schema::{DataType, Field, Schema, SchemaRef};
use weft_core::{
    Checkpoint, ConfiguredStream, Destination, DestinationFactory, StreamTarget, StreamWriter,
    WriteMode,
};
use weft_destination_postgres::{PostgresDestination, PostgresDestinationFactory};
use weft_testkit::pg::PgTestDb;

fn config(db: &PgTestDb) -> serde_json::Value {
    db.config_json()
}

fn destination(db: &PgTestDb) -> Box<dyn Destination> {
    let ctx = weft_core::ConnectorContext {
        project_dir: std::env::temp_dir(),
    };
    PostgresDestinationFactory.build(&config(db), &ctx).unwrap()
}

fn target(domain: &str, product: &str, stream: &str) -> StreamTarget {
    TestStream::new(domain, product, stream).target()
}

/// The stream as configured for a full refresh written with `write`.
fn stream(
    name: &str,
    schema: &SchemaRef,
    write: WriteMode,
    key: &[&str],
    cursor: Option<&str>,
) -> ConfiguredStream {
    let s = TestStream::new("test", "product", name)
        .schema(schema.clone())
        .write(write)
        .key(key)
        .pipeline("test.product.stream");
    match cursor {
        Some(c) => s.cursor(c),
        None => s,
    }
    .configured()
}

async fn open(
    dest: &dyn Destination,
    t: &StreamTarget,
    schema: &SchemaRef,
    write: WriteMode,
    key: &[&str],
    cursor: Option<&str>,
) -> Box<dyn StreamWriter> {
    dest.open(
        t,
        &stream(t.stream.as_str(), schema, write, key, cursor),
        schema.clone(),
    )
    .await
    .unwrap()
}

fn cp(n: u64) -> Checkpoint {
    Checkpoint::new(serde_json::json!({ "n": n }))
}

/// One column of a table as text (NULL as JSON null), ordered by `order`, in UTC.
fn column_text(db: &PgTestDb, table: &str, column: &str, order: &str) -> Vec<Option<String>> {
    let out = db.sql(&format!(
        "SET TIME ZONE 'UTC'; SELECT coalesce(json_agg(\"{column}\"::text ORDER BY {order}), \
         '[]') FROM {table}"
    ));
    // psql prints the SET's tag first; the JSON is one line.
    let json = out.lines().last().unwrap_or_default();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {:.300}", json))
}

fn some(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

fn ids_batch(schema: &SchemaRef, ids: std::ops::Range<i64>) -> RecordBatch {
    let names: Vec<String> = ids.clone().map(|i| format!("row {i}")).collect();
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(StringArray::from(names)),
        ],
    )
    .unwrap()
}

fn id_name_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

#[tokio::test]
async fn every_supported_type_round_trips() {
    let db = PgTestDb::create("pgdest_types");
    let utc = Some(Arc::<str>::from("UTC"));
    let list_i64 = {
        let mut b = ListBuilder::new(Int64Builder::new());
        b.append_value([Some(1), None, Some(3)]);
        b.append_value(Vec::<Option<i64>>::new());
        b.append_null();
        b.finish()
    };
    let list_str = {
        let mut b = ListBuilder::new(StringBuilder::new());
        b.append_value([Some("a b"), Some("é\"q"), None]);
        b.append_value(Vec::<Option<&str>>::new());
        b.append_null();
        b.finish()
    };
    let big_text = "ü".repeat(600_000); // 1.2 MB
    let big_bytes: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3]))),
        (
            "i8",
            Arc::new(Int8Array::from(vec![Some(-128), None, Some(127)])),
        ),
        (
            "i16",
            Arc::new(Int16Array::from(vec![Some(i16::MIN), None, Some(i16::MAX)])),
        ),
        (
            "i32",
            Arc::new(Int32Array::from(vec![Some(i32::MIN), None, Some(i32::MAX)])),
        ),
        (
            "i64",
            Arc::new(Int64Array::from(vec![Some(i64::MIN), None, Some(i64::MAX)])),
        ),
        (
            "u8",
            Arc::new(UInt8Array::from(vec![Some(0), None, Some(u8::MAX)])),
        ),
        (
            "u16",
            Arc::new(UInt16Array::from(vec![Some(0), None, Some(u16::MAX)])),
        ),
        (
            "u32",
            Arc::new(UInt32Array::from(vec![Some(0), None, Some(u32::MAX)])),
        ),
        (
            "u64",
            Arc::new(UInt64Array::from(vec![Some(0), None, Some(u64::MAX)])),
        ),
        (
            "f32",
            Arc::new(Float32Array::from(vec![
                Some(1.5),
                None,
                Some(f32::NEG_INFINITY),
            ])),
        ),
        (
            "f64",
            Arc::new(Float64Array::from(vec![
                Some(std::f64::consts::PI),
                Some(f64::NAN),
                Some(-1e300),
            ])),
        ),
        (
            "dec",
            Arc::new(
                Decimal128Array::from(vec![
                    Some(12_345_678_901_234_567_890_123_456_780_123_456_789i128),
                    Some(-1),
                    Some(0),
                ])
                .with_precision_and_scale(38, 10)
                .unwrap(),
            ),
        ),
        (
            "dec_int",
            Arc::new(
                Decimal128Array::from(vec![
                    Some(10i128.pow(38) - 1),
                    None,
                    Some(-(10i128.pow(38) - 1)),
                ])
                .with_precision_and_scale(38, 0)
                .unwrap(),
            ),
        ),
        (
            "text",
            Arc::new(StringArray::from(vec![
                Some("héllo 🌍 \"q\" 'single' \\ back\nnew\ttab"),
                Some(""),
                None,
            ])),
        ),
        (
            "large_text",
            Arc::new(LargeStringArray::from(vec![
                Some(big_text.as_str()),
                None,
                Some("x"),
            ])),
        ),
        (
            "bin",
            Arc::new(BinaryArray::from(vec![
                Some(&[0u8, 1, 255][..]),
                Some(&[][..]),
                None,
            ])),
        ),
        (
            "large_bin",
            Arc::new(LargeBinaryArray::from(vec![
                Some(big_bytes.as_slice()),
                None,
                Some(&[7u8][..]),
            ])),
        ),
        (
            "flag",
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
        ),
        (
            "day",
            Arc::new(Date32Array::from(vec![
                Some(0),
                Some(-719_162),
                Some(2_932_896),
            ])),
        ),
        (
            "ts_tz",
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(0),
                    Some(-62_135_596_800_000_000),
                    Some(253_402_300_799_999_999),
                ])
                .with_timezone_opt(utc.clone()),
            ),
        ),
        (
            "ts_ns",
            Arc::new(TimestampNanosecondArray::from(vec![
                Some(1_500_000_000_123_456_789),
                Some(-1),
                None,
            ])),
        ),
        (
            "t",
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(0),
                Some(86_399_999_999),
                None,
            ])),
        ),
        (
            "iv",
            Arc::new(IntervalMonthDayNanoArray::from(vec![
                Some(IntervalMonthDayNano::new(1, 2, 3_000_000_000)),
                Some(IntervalMonthDayNano::new(-14, 0, -1_000)),
                None,
            ])),
        ),
        (
            "dur",
            Arc::new(DurationMicrosecondArray::from(vec![
                Some(90_000_000),
                None,
                Some(-1),
            ])),
        ),
        (
            "uid",
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    vec![
                        Some((0u8..16).collect::<Vec<_>>()),
                        None,
                        Some(vec![255u8; 16]),
                    ]
                    .into_iter(),
                    16,
                )
                .unwrap(),
            ),
        ),
        ("nums", Arc::new(list_i64)),
        ("words", Arc::new(list_str)),
    ];
    let schema: SchemaRef = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.iter().map(|(_, a)| a.clone()).collect(),
    )
    .unwrap();

    let dest = destination(&db);
    let t = target("sales", "shop", "types");
    let mut w = open(dest.as_ref(), &t, &schema, WriteMode::Append, &[], None).await;
    w.write(batch).await.unwrap();
    w.finish(&cp(1)).await.unwrap();

    let table = "sales.shop__types";
    let col = |c: &str| column_text(&db, table, c, "id");
    let n = |v: &[Option<&str>]| v.iter().map(|s| s.map(String::from)).collect::<Vec<_>>();
    assert_eq!(col("i8"), n(&[Some("-128"), None, Some("127")]));
    assert_eq!(col("i16"), n(&[Some("-32768"), None, Some("32767")]));
    assert_eq!(
        col("i32"),
        n(&[Some("-2147483648"), None, Some("2147483647")])
    );
    assert_eq!(
        col("i64"),
        n(&[
            Some("-9223372036854775808"),
            None,
            Some("9223372036854775807")
        ])
    );
    assert_eq!(col("u8"), n(&[Some("0"), None, Some("255")]));
    assert_eq!(col("u16"), n(&[Some("0"), None, Some("65535")]));
    assert_eq!(col("u32"), n(&[Some("0"), None, Some("4294967295")]));
    assert_eq!(
        col("u64"),
        n(&[Some("0"), None, Some("18446744073709551615")])
    );
    assert_eq!(col("f32"), n(&[Some("1.5"), None, Some("-Infinity")]));
    assert_eq!(
        col("f64"),
        n(&[Some("3.141592653589793"), Some("NaN"), Some("-1e+300")])
    );
    assert_eq!(
        col("dec"),
        n(&[
            Some("1234567890123456789012345678.0123456789"),
            Some("-0.0000000001"),
            Some("0.0000000000")
        ])
    );
    let nines = "9".repeat(38);
    assert_eq!(
        col("dec_int"),
        n(&[Some(&nines), None, Some(&format!("-{nines}"))])
    );
    assert_eq!(
        col("text"),
        n(&[
            Some("héllo 🌍 \"q\" 'single' \\ back\nnew\ttab"),
            Some(""),
            None
        ])
    );
    assert_eq!(col("large_text"), n(&[Some(&big_text), None, Some("x")]));
    assert_eq!(col("bin"), n(&[Some("\\x0001ff"), Some("\\x"), None]));
    let hex: String = big_bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        col("large_bin"),
        n(&[Some(&format!("\\x{hex}")), None, Some("\\x07")])
    );
    assert_eq!(col("flag"), n(&[Some("true"), None, Some("false")]));
    assert_eq!(
        col("day"),
        n(&[Some("1970-01-01"), Some("0001-01-01"), Some("9999-12-31")])
    );
    assert_eq!(
        col("ts_tz"),
        n(&[
            Some("1970-01-01 00:00:00+00"),
            Some("0001-01-01 00:00:00+00"),
            Some("9999-12-31 23:59:59.999999+00")
        ])
    );
    assert_eq!(
        col("ts_ns"),
        n(&[
            Some("2017-07-14 02:40:00.123456"),
            Some("1969-12-31 23:59:59.999999"),
            None
        ])
    );
    assert_eq!(
        col("t"),
        n(&[Some("00:00:00"), Some("23:59:59.999999"), None])
    );
    assert_eq!(
        col("iv"),
        n(&[
            Some("1 mon 2 days 00:00:03"),
            Some("-1 years -2 mons -00:00:00.000001"),
            None
        ])
    );
    assert_eq!(
        col("dur"),
        n(&[Some("00:01:30"), None, Some("-00:00:00.000001")])
    );
    assert_eq!(
        col("uid"),
        n(&[
            Some("00010203-0405-0607-0809-0a0b0c0d0e0f"),
            None,
            Some("ffffffff-ffff-ffff-ffff-ffffffffffff")
        ])
    );
    assert_eq!(col("nums"), n(&[Some("{1,NULL,3}"), Some("{}"), None]));
    assert_eq!(
        col("words"),
        n(&[Some("{\"a b\",\"é\\\"q\",NULL}"), Some("{}"), None])
    );

    // The declared types, as a user's \d would show them.
    let types = db.sql(
        "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) \
         FROM information_schema.columns WHERE table_schema = 'sales' AND table_name = 'shop__types'",
    );
    assert!(types.starts_with("id bigint, i8 smallint, i16 smallint, i32 integer, i64 bigint, u8 smallint, u16 integer, u32 bigint, u64 numeric, f32 real, f64 double precision, dec numeric"), "{types}");
    assert!(types.ends_with("uid uuid, nums ARRAY, words ARRAY, _weft_synced_at timestamp with time zone, _weft_run_id text"), "{types}");
    assert_eq!(
        db.sql("SELECT DISTINCT _weft_run_id FROM sales.shop__types"),
        "run-1"
    );
    assert_eq!(
        db.sql(
            "SELECT checkpoint::text FROM sales._weft_checkpoints WHERE table_name = 'shop__types'"
        ),
        "{\"n\": 1}"
    );
}

#[tokio::test]
async fn unsupported_types_are_refused_naming_the_column() {
    let db = PgTestDb::create("pgdest_unsupported");
    let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
        "half",
        DataType::Float16,
        true,
    )]));
    let dest = destination(&db);
    let t = target("sales", "shop", "odd");
    let err = dest
        .open(
            &t,
            &stream("odd", &schema, WriteMode::Append, &[], None),
            schema.clone(),
        )
        .await
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "stream `odd` (table \"sales\".\"shop__odd\"): column \"half\" has Arrow type Float16 which \
         PostgreSQL cannot store: no PostgreSQL type is mapped for it; cast or drop the column \
         with a mapper"
    );
}

#[tokio::test]
async fn append_commits_add_rows_and_abort_drops_the_uncommitted() {
    let db = PgTestDb::create("pgdest_append");
    let schema = id_name_schema();
    let dest = destination(&db);
    let t = target("sales", "shop", "orders");
    let mut w = open(dest.as_ref(), &t, &schema, WriteMode::Append, &[], None).await;
    assert_eq!(w.committed_checkpoint(), None);
    assert!(w.stores_checkpoints());
    w.write(ids_batch(&schema, 0..1000)).await.unwrap();
    w.write(ids_batch(&schema, 1000..1500)).await.unwrap();
    // Nothing is visible before the commit.
    assert_eq!(db.sql("SELECT count(*) FROM sales.shop__orders"), "0");
    w.commit(&cp(1)).await.unwrap();
    assert_eq!(db.sql("SELECT count(*) FROM sales.shop__orders"), "1500");
    w.write(ids_batch(&schema, 1500..2000)).await.unwrap();
    w.commit(&cp(2)).await.unwrap();
    w.write(ids_batch(&schema, 2000..3000)).await.unwrap();
    w.abort().await.unwrap();
    assert_eq!(
        db.sql("SELECT count(*), count(DISTINCT id), max(id) FROM sales.shop__orders"),
        "2000|2000|1999"
    );
    // After an abort the writer goes on from the last commit.
    w.write(ids_batch(&schema, 2000..2100)).await.unwrap();
    w.commit(&cp(3)).await.unwrap();
    // A crash (the writer dropped mid-commit) loses exactly the uncommitted rows.
    w.write(ids_batch(&schema, 2100..2200)).await.unwrap();
    drop(w);

    let w = open(dest.as_ref(), &t, &schema, WriteMode::Append, &[], None).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(3)));
    assert_eq!(
        db.sql("SELECT count(*), max(id) FROM sales.shop__orders"),
        "2100|2099"
    );
    assert_eq!(
        column_text(&db, "sales.shop__orders", "name", "id")[2099],
        Some("row 2099".into())
    );
}

#[tokio::test]
async fn overwrite_swaps_atomically_and_resumes_after_a_crash() {
    let db = PgTestDb::create("pgdest_overwrite");
    let schema = id_name_schema();
    let dest = destination(&db);
    let t = target("sales", "shop", "orders");
    let mut w = open(dest.as_ref(), &t, &schema, WriteMode::Overwrite, &[], None).await;
    w.write(ids_batch(&schema, 0..100)).await.unwrap();
    w.finish(&cp(1)).await.unwrap();
    assert_eq!(db.sql("SELECT count(*) FROM sales.shop__orders"), "100");

    // A new generation: committed twice, then the process dies mid-commit.
    let mut w = open(dest.as_ref(), &t, &schema, WriteMode::Overwrite, &[], None).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(1)));
    w.write(ids_batch(&schema, 1000..1500)).await.unwrap();
    w.commit(&cp(2)).await.unwrap();
    w.write(ids_batch(&schema, 1500..2000)).await.unwrap();
    w.commit(&cp(3)).await.unwrap();
    w.write(ids_batch(&schema, 2000..2500)).await.unwrap();
    // Readers still see exactly the old table.
    assert_eq!(
        db.sql("SELECT count(*), min(id), max(id) FROM sales.shop__orders"),
        "100|0|99"
    );
    drop(w);
    assert_eq!(
        db.sql("SELECT count(*), min(id), max(id) FROM sales.shop__orders"),
        "100|0|99"
    );
    assert_eq!(
        db.sql("SELECT checkpoint::text, pending_checkpoint::text FROM sales._weft_checkpoints"),
        "{\"n\": 1}|{\"n\": 3}"
    );

    // Reopening resumes the generation from its pending checkpoint.
    let mut w = open(dest.as_ref(), &t, &schema, WriteMode::Overwrite, &[], None).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(3)));
    assert_eq!(
        db.sql("SELECT count(*) FROM sales.\"shop__orders__weft_next\""),
        "1000"
    );
    w.write(ids_batch(&schema, 2000..3000)).await.unwrap();
    w.finish(&cp(4)).await.unwrap();
    assert_eq!(
        db.sql("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM sales.shop__orders"),
        "2000|2000|1000|2999"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('sales.shop__orders__weft_next') IS NULL"),
        "t"
    );
    assert_eq!(
        db.sql("SELECT checkpoint::text, pending_checkpoint IS NULL FROM sales._weft_checkpoints"),
        "{\"n\": 4}|t"
    );

    // A generation aborted before any commit leaves the table as it was, and no next table.
    let next_exists = || db.sql("SELECT to_regclass('sales.shop__orders__weft_next') IS NOT NULL");
    let mut w = open(dest.as_ref(), &t, &schema, WriteMode::Overwrite, &[], None).await;
    assert_eq!(next_exists(), "t");
    w.write(ids_batch(&schema, 0..10)).await.unwrap();
    w.abort().await.unwrap();
    drop(w);
    assert_eq!(db.sql("SELECT count(*) FROM sales.shop__orders"), "2000");
    assert_eq!(next_exists(), "f");

    // One that committed some of its rows keeps them for the next run to resume, even aborted.
    let mut w = open(dest.as_ref(), &t, &schema, WriteMode::Overwrite, &[], None).await;
    w.write(ids_batch(&schema, 0..10)).await.unwrap();
    w.commit(&cp(5)).await.unwrap();
    w.write(ids_batch(&schema, 10..20)).await.unwrap();
    w.abort().await.unwrap();
    drop(w);
    assert_eq!(next_exists(), "t");
    let w = open(dest.as_ref(), &t, &schema, WriteMode::Overwrite, &[], None).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(5)));
    assert_eq!(
        db.sql("SELECT count(*) FROM sales.\"shop__orders__weft_next\""),
        "10"
    );
}

#[tokio::test]
async fn append_dedup_keeps_the_latest_cursor_per_composite_key() {
    let db = PgTestDb::create("pgdest_dedup");
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, false),
        Field::new("id", DataType::Int32, false),
        Field::new("version", DataType::Int64, true),
        Field::new("value", DataType::Utf8, true),
    ]));
    let rows = |r: &[(&str, i32, i64, &str)]| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(r.iter().map(|x| x.0))),
                Arc::new(Int32Array::from_iter_values(r.iter().map(|x| x.1))),
                Arc::new(Int64Array::from_iter_values(r.iter().map(|x| x.2))),
                Arc::new(StringArray::from_iter_values(r.iter().map(|x| x.3))),
            ],
        )
        .unwrap()
    };
    let dest = destination(&db);
    let t = target("sales", "shop", "accounts");
    let mut w = open(
        dest.as_ref(),
        &t,
        &schema,
        WriteMode::AppendDedup,
        &["region", "id"],
        Some("version"),
    )
    .await;
    w.write(rows(&[
        ("eu", 1, 1, "a1"),
        ("eu", 1, 3, "a3"),
        ("us", 1, 1, "b1"),
    ]))
    .await
    .unwrap();
    // A tie on the cursor inside one commit: the later arrival wins.
    w.write(rows(&[("eu", 2, 5, "first"), ("eu", 2, 5, "second")]))
        .await
        .unwrap();
    w.commit(&cp(1)).await.unwrap();
    // Across commits: an older cursor never wins, a tie goes to the later arrival.
    w.write(rows(&[
        ("eu", 1, 2, "older"),
        ("us", 1, 1, "tie"),
        ("us", 2, 9, "new"),
    ]))
    .await
    .unwrap();
    w.finish(&cp(2)).await.unwrap();

    let table = "sales.shop__accounts";
    let order = "region, id";
    assert_eq!(
        column_text(&db, table, "value", order),
        some(&["a3", "second", "tie", "new"])
    );
    assert_eq!(
        column_text(&db, table, "version", order),
        some(&["3", "5", "1", "9"])
    );

    // Reopening finds the key's unique index instead of adding another one.
    let w = open(
        dest.as_ref(),
        &t,
        &schema,
        WriteMode::AppendDedup,
        &["id", "region"],
        Some("version"),
    )
    .await;
    assert_eq!(w.committed_checkpoint(), Some(cp(2)));
    drop(w);
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_indexes WHERE schemaname = 'sales' AND tablename = 'shop__accounts'"),
        "1"
    );
    // A table that lost its index (or was filled by `append`) gets one.
    let index = db.sql("SELECT indexname FROM pg_indexes WHERE tablename = 'shop__accounts'");
    db.sql(&format!("DROP INDEX sales.\"{index}\""));
    drop(
        open(
            dest.as_ref(),
            &t,
            &schema,
            WriteMode::AppendDedup,
            &["region", "id"],
            Some("version"),
        )
        .await,
    );
    assert_eq!(
        db.sql("SELECT indexdef LIKE '%UNIQUE%(region, id)' FROM pg_indexes WHERE tablename = 'shop__accounts'"),
        "t"
    );

    // Without a cursor the later arrival wins.
    let t2 = target("sales", "shop", "latest");
    let mut w = open(
        dest.as_ref(),
        &t2,
        &schema,
        WriteMode::AppendDedup,
        &["region", "id"],
        None,
    )
    .await;
    w.write(rows(&[("eu", 1, 9, "x"), ("eu", 1, 1, "y")]))
        .await
        .unwrap();
    w.commit(&cp(1)).await.unwrap();
    w.write(rows(&[("eu", 1, 0, "z")])).await.unwrap();
    w.finish(&cp(2)).await.unwrap();
    assert_eq!(
        column_text(&db, "sales.shop__latest", "value", order),
        some(&["z"])
    );

    // Dedup without a key is refused up front.
    let err = dest
        .open(
            &t2,
            &stream("latest", &schema, WriteMode::AppendDedup, &[], None),
            schema.clone(),
        )
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("needs a `primary_key`"), "{err}");
}

#[tokio::test]
async fn append_dedup_first_load_copies_into_the_next_table_and_settles_at_finish() {
    let db = PgTestDb::create("pgdest_dedup_first");
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("version", DataType::Int64, true),
        Field::new("value", DataType::Utf8, true),
    ]));
    let rows = |r: &[(i64, Option<i64>, &str)]| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(r.iter().map(|x| x.0))),
                Arc::new(Int64Array::from_iter(r.iter().map(|x| x.1))),
                Arc::new(StringArray::from_iter_values(r.iter().map(|x| x.2))),
            ],
        )
        .unwrap()
    };
    let dest = destination(&db);
    let t = target("sales", "shop", "first");
    let table = "sales.shop__first";
    let next = "sales.shop__first__weft_next";
    let exists = |name: &str| db.sql(&format!("SELECT to_regclass('{name}') IS NOT NULL"));
    // A first load aborted before any commit leaves no table at all.
    let mut w = open(
        dest.as_ref(),
        &t,
        &schema,
        WriteMode::AppendDedup,
        &["id"],
        Some("version"),
    )
    .await;
    assert_eq!((exists(table), exists(next)), ("f".into(), "t".into()));
    w.write(rows(&[(1, Some(1), "lost")])).await.unwrap();
    w.abort().await.unwrap();
    drop(w);
    assert_eq!((exists(table), exists(next)), ("f".into(), "f".into()));

    // Committed rows wait in the next table, invisible to readers, their checkpoint pending.
    let mut w = open(
        dest.as_ref(),
        &t,
        &schema,
        WriteMode::AppendDedup,
        &["id"],
        Some("version"),
    )
    .await;
    w.write(rows(&[
        (1, Some(1), "a1"),
        (2, Some(5), "b5"),
        (3, None, "c-null"),
        (4, Some(1), "d1"),
    ]))
    .await
    .unwrap();
    w.commit(&cp(1)).await.unwrap();
    w.write(rows(&[(5, Some(1), "uncommitted")])).await.unwrap();
    assert_eq!(exists(table), "f");
    // The process dies mid-commit: the open transaction rolls back.
    drop(w);
    assert_eq!(exists(table), "f");
    assert_eq!(
        db.sql("SELECT checkpoint IS NULL, pending_checkpoint::text FROM sales._weft_checkpoints"),
        "t|{\"n\": 1}"
    );

    // The rerun resumes from the pending checkpoint and re-reads some rows: older cursors
    // lose, a cursor tie goes to the later arrival, a NULL cursor loses to any value.
    let mut w = open(
        dest.as_ref(),
        &t,
        &schema,
        WriteMode::AppendDedup,
        &["id"],
        Some("version"),
    )
    .await;
    assert_eq!(w.committed_checkpoint(), Some(cp(1)));
    assert_eq!(db.sql(&format!("SELECT count(*) FROM {next}")), "4");
    w.write(rows(&[
        (1, Some(0), "a0-older"),
        (2, Some(5), "b5-tie"),
        (3, Some(2), "c2"),
        (4, None, "d-null"),
    ]))
    .await
    .unwrap();
    w.commit(&cp(2)).await.unwrap();
    w.write(rows(&[(6, Some(1), "f1"), (6, Some(1), "f1-later")]))
        .await
        .unwrap();
    assert_eq!(exists(table), "f");
    w.finish(&cp(3)).await.unwrap();

    let order = "id";
    assert_eq!(
        column_text(&db, table, "value", order),
        some(&["a1", "b5-tie", "c2", "d1", "f1-later"])
    );
    assert_eq!(exists(next), "f");
    assert_eq!(
        db.sql("SELECT checkpoint::text, pending_checkpoint IS NULL FROM sales._weft_checkpoints"),
        "{\"n\": 3}|t"
    );
    // The key's unique index is there, the arrival order is not.
    assert_eq!(
        db.sql(
            "SELECT indexdef LIKE '%UNIQUE%(id)' FROM pg_indexes WHERE tablename = 'shop__first'"
        ),
        "t"
    );
    assert_eq!(
        column_text(
            &db,
            "information_schema.columns WHERE table_name = 'shop__first'",
            "column_name",
            "ordinal_position"
        ),
        some(&["id", "version", "value", "_weft_synced_at", "_weft_run_id"])
    );

    // The next run merges into the table by key.
    let mut w = open(
        dest.as_ref(),
        &t,
        &schema,
        WriteMode::AppendDedup,
        &["id"],
        Some("version"),
    )
    .await;
    assert_eq!(w.committed_checkpoint(), Some(cp(3)));
    w.write(rows(&[(1, Some(7), "a7"), (7, Some(1), "g1")]))
        .await
        .unwrap();
    w.finish(&cp(4)).await.unwrap();
    assert_eq!(
        column_text(&db, table, "value", order),
        some(&["a7", "b5-tie", "c2", "d1", "f1-later", "g1"])
    );
}

#[tokio::test]
async fn tables_evolve_by_adding_and_widening_and_refuse_narrowing() {
    let db = PgTestDb::create("pgdest_evolve");
    let dest = destination(&db);
    let t = target("sales", "shop", "items");
    let v1: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("price", DataType::Decimal128(10, 2), true),
        Field::new("ratio", DataType::Float32, true),
        Field::new("label", DataType::Utf8, true),
    ]));
    let mut w = open(dest.as_ref(), &t, &v1, WriteMode::Append, &[], None).await;
    let b1 = RecordBatch::try_new(
        v1.clone(),
        vec![
            Arc::new(Int32Array::from(vec![1])),
            Arc::new(
                Decimal128Array::from(vec![12345])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(Float32Array::from(vec![0.5])),
            Arc::new(StringArray::from(vec!["one"])),
        ],
    )
    .unwrap();
    w.write(b1).await.unwrap();
    w.finish(&cp(1)).await.unwrap();
    db.sql("ALTER TABLE sales.shop__items ALTER COLUMN label TYPE varchar(10)");

    let v2: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("price", DataType::Decimal128(14, 4), true),
        Field::new("ratio", DataType::Float64, true),
        Field::new("label", DataType::Utf8, true),
        Field::new("in_stock", DataType::Boolean, true),
    ]));
    let mut w = open(dest.as_ref(), &t, &v2, WriteMode::Append, &[], None).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(1)));
    let b2 = RecordBatch::try_new(
        v2.clone(),
        vec![
            Arc::new(Int64Array::from(vec![5_000_000_000])),
            Arc::new(
                Decimal128Array::from(vec![-12_345_678])
                    .with_precision_and_scale(14, 4)
                    .unwrap(),
            ),
            Arc::new(Float64Array::from(vec![0.1])),
            Arc::new(StringArray::from(vec!["a label longer than ten"])),
            Arc::new(BooleanArray::from(vec![true])),
        ],
    )
    .unwrap();
    w.write(b2).await.unwrap();
    w.finish(&cp(2)).await.unwrap();
    let types = db.sql(
        "SELECT string_agg(column_name || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY ordinal_position) \
         FROM information_schema.columns c JOIN pg_attribute a ON a.attrelid = 'sales.shop__items'::regclass \
         AND a.attname = c.column_name WHERE table_schema = 'sales' AND table_name = 'shop__items'",
    );
    assert_eq!(
        types,
        "id bigint, price numeric(14,4), ratio double precision, label text, _weft_synced_at \
         timestamp with time zone, _weft_run_id text, in_stock boolean"
    );
    let t_ = "sales.shop__items";
    assert_eq!(
        column_text(&db, t_, "price", "id"),
        some(&["123.4500", "-1234.5678"])
    );
    assert_eq!(
        column_text(&db, t_, "in_stock", "id"),
        vec![None, Some("true".into())]
    );

    // Narrowing is refused, naming the table, the column and both types.
    let v3: SchemaRef = Arc::new(Schema::new(vec![Field::new("id", DataType::Int16, false)]));
    let err = dest
        .open(
            &t,
            &stream("items", &v3, WriteMode::Append, &[], None),
            v3.clone(),
        )
        .await
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "table \"sales\".\"shop__items\": column \"id\" is bigint but the stream now sends \
         smallint; weft only adds columns and widens types (smallint → integer → bigint, real → \
         double precision, more numeric digits, varchar → text). Cast the column with a mapper, \
         alter the table yourself (ALTER TABLE \"sales\".\"shop__items\" ALTER COLUMN \"id\" \
         TYPE smallint USING \"id\"::smallint, if every value converts), or drop it so the next \
         run recreates it"
    );
    let v4: SchemaRef = Arc::new(Schema::new(vec![Field::new(
        "label",
        DataType::Int64,
        true,
    )]));
    let err = dest
        .open(
            &t,
            &stream("items", &v4, WriteMode::Append, &[], None),
            v4.clone(),
        )
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("column \"label\" is text but the stream now sends bigint"),
        "{err}"
    );
}

#[tokio::test]
async fn hostile_names_are_quoted_everywhere() {
    let db = PgTestDb::create("pgdest_names");
    let dest = destination(&db);
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("Select", DataType::Int64, false),
        Field::new("weird \"col\"", DataType::Utf8, true),
        Field::new("ünï côdé", DataType::Int32, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(Int32Array::from(vec![10, 20])),
        ],
    )
    .unwrap();
    let t = target("Sales \"EU\"", "My Shop.v2", "order; DROP TABLE x");
    for mode in [WriteMode::AppendDedup, WriteMode::Overwrite] {
        let mut w = open(
            dest.as_ref(),
            &t,
            &schema,
            mode,
            &["Select", "weird \"col\""],
            Some("ünï côdé"),
        )
        .await;
        w.write(batch.clone()).await.unwrap();
        w.finish(&cp(1)).await.unwrap();
    }
    let table = "\"Sales \"\"EU\"\"\".\"My Shop.v2__order; DROP TABLE x\"";
    assert_eq!(
        column_text(&db, table, "weird \"\"col\"\"", "1"),
        some(&["a", "b"])
    );
    assert_eq!(
        column_text(&db, table, "ünï côdé", "1"),
        some(&["10", "20"])
    );

    // A name too long for PostgreSQL lands in a hashed table name within 63 bytes.
    let long = "ß".repeat(40);
    let t = target("sales", "shop", &long);
    let mut w = open(dest.as_ref(), &t, &schema, WriteMode::Overwrite, &[], None).await;
    w.write(batch.clone()).await.unwrap();
    w.finish(&cp(1)).await.unwrap();
    let name = db.sql("SELECT table_name FROM sales._weft_checkpoints");
    assert!(name.starts_with("shop__ßß") && name.len() <= 52, "{name}");
    assert_eq!(
        db.sql(&format!("SELECT count(*) FROM sales.\"{name}\"")),
        "2"
    );

    // A column name over 63 bytes is refused, not silently truncated by the server.
    let wide: SchemaRef = Arc::new(Schema::new(vec![Field::new(
        "c".repeat(64),
        DataType::Int64,
        true,
    )]));
    let err = dest
        .open(
            &t,
            &stream(&long, &wide, WriteMode::Append, &[], None),
            wide.clone(),
        )
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("PostgreSQL identifiers hold at most 63 bytes"),
        "{err}"
    );
}

#[tokio::test]
async fn check_names_what_is_wrong() {
    let db = PgTestDb::create("pgdest_check");
    let dest = destination(&db);
    dest.check().await.unwrap();

    let with = |patch: serde_json::Value| {
        let mut cfg = config(&db);
        for (k, v) in patch.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        let cfg: weft_destination_postgres::PgConfig = weft_core::parse_config(&cfg).unwrap();
        PostgresDestination::new(cfg).unwrap()
    };
    let err = with(serde_json::json!({"port": 1}))
        .check()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot reach PostgreSQL at 127.0.0.1:1: "),
        "{err}"
    );
    let err = with(serde_json::json!({"database": "no_such_db_weft"}))
        .check()
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "database `no_such_db_weft` does not exist on PostgreSQL at {}:{}; create it (CREATE \
             DATABASE \"no_such_db_weft\") or fix `database`",
            db.host, db.port
        )
    );

    // A user without CREATE is told the GRANT to run; the password never shows.
    let role = format!("{}_ro", db.name);
    db.sql(&format!("CREATE ROLE \"{role}\" LOGIN"));
    let err = with(serde_json::json!({"user": role, "password": "hunter2"}))
        .check()
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "user `{role}` may not create the domains' schemas in {}:{}/{}; run: GRANT CREATE ON \
             DATABASE \"{}\" TO \"{role}\"; (or set `schema` to a schema the user may create \
             tables in)",
            db.host, db.port, db.name, db.name
        )
    );
    db.sql("CREATE SCHEMA locked");
    let err = with(serde_json::json!({"user": role, "schema": "locked"}))
        .check()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("run: GRANT USAGE, CREATE ON SCHEMA \"locked\" TO"),
        "{err}"
    );
    db.sql(&format!(
        "GRANT USAGE, CREATE ON SCHEMA locked TO \"{role}\""
    ));
    with(serde_json::json!({"user": role, "schema": "locked"}))
        .check()
        .await
        .unwrap();
    db.sql(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""));
}

#[tokio::test]
async fn values_postgresql_refuses_stop_the_stream_naming_the_column() {
    let db = PgTestDb::create("pgdest_badvalues");
    let dest = destination(&db);
    let schema = id_name_schema();
    let t = target("sales", "shop", "orders");
    let mut w = open(dest.as_ref(), &t, &schema, WriteMode::Append, &[], None).await;
    w.write(ids_batch(&schema, 0..10)).await.unwrap();
    w.commit(&cp(1)).await.unwrap();
    let bad = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![10])),
            Arc::new(StringArray::from(vec!["nul \0 byte"])),
        ],
    )
    .unwrap();
    w.write(bad).await.unwrap();
    let err = w.commit(&cp(2)).await.unwrap_err().to_string();
    assert!(
        err.starts_with("stream `orders` (table \"sales\".\"shop__orders\"): finishing COPY: invalid byte sequence for encoding \"UTF8\": 0x00"),
        "{err}"
    );
    assert!(err.contains("column name"), "{err}");
    // The writer refuses to go on until aborted, then resumes from the last commit.
    assert!(w.write(ids_batch(&schema, 10..20)).await.is_err());
    w.abort().await.unwrap();
    w.write(ids_batch(&schema, 10..20)).await.unwrap();
    w.finish(&cp(3)).await.unwrap();
    assert_eq!(
        db.sql("SELECT count(*), max(id) FROM sales.shop__orders"),
        "20|19"
    );

    // A timestamp beyond PostgreSQL's range is refused, not wrapped.
    let ts: SchemaRef = Arc::new(Schema::new(vec![Field::new(
        "at",
        DataType::Timestamp(weft_core::arrow_schema::TimeUnit::Second, None),
        true,
    )]));
    let t = target("sales", "shop", "times");
    let mut w = open(dest.as_ref(), &t, &ts, WriteMode::Append, &[], None).await;
    let far = RecordBatch::try_new(
        ts.clone(),
        vec![Arc::new(TimestampSecondArray::from(vec![i64::MAX / 2]))],
    )
    .unwrap();
    let err = w.write(far).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "stream `times` (table \"sales\".\"shop__times\"): column \"at\": the value in row 0 of a batch is outside PostgreSQL's timestamp range"
    );
}

#[tokio::test]
async fn a_shared_schema_never_mixes_two_domains_in_one_table() {
    let db = PgTestDb::create("pgdest_shared");
    let mut cfg = config(&db);
    cfg["schema"] = "mesh".into();
    cfg["metadata_columns"] = false.into();
    let ctx = weft_core::ConnectorContext {
        project_dir: std::env::temp_dir(),
    };
    let dest = PostgresDestinationFactory.build(&cfg, &ctx).unwrap();
    let schema = id_name_schema();
    let sales = target("sales", "shop", "orders");
    let mut w = open(dest.as_ref(), &sales, &schema, WriteMode::Append, &[], None).await;
    w.write(ids_batch(&schema, 0..5)).await.unwrap();
    w.finish(&cp(1)).await.unwrap();
    assert_eq!(
        db.sql("SELECT count(*) FROM mesh.shop__orders"),
        "5",
        "the configured schema holds the table"
    );
    assert_eq!(
        db.sql("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'shop__orders'"),
        "id,name",
        "no metadata columns when they are off"
    );
    let finance = target("finance", "shop", "orders");
    let err = dest
        .open(
            &finance,
            &stream("orders", &schema, WriteMode::Append, &[], None),
            schema.clone(),
        )
        .await
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "stream `orders` (table \"mesh\".\"shop__orders\"): the table already holds stream \
         `orders` of product `shop` in domain `sales`; give each domain its own schema (leave \
         `schema` unset) or rename the product"
    );
}

#[tokio::test]
async fn a_column_the_stream_no_longer_sends_stops_it_before_any_write() {
    let db = PgTestDb::create("pgdest_gone_col");
    let dest = destination(&db);
    let t = target("sales", "shop", "people");
    let v1 = id_name_schema();
    for mode in [WriteMode::AppendDedup, WriteMode::Append] {
        let mut w = open(dest.as_ref(), &t, &v1, mode, &["id"], None).await;
        w.write(ids_batch(&v1, 1..4)).await.unwrap();
        w.finish(&cp(1)).await.unwrap();

        // Renamed: the fix names both columns.
        let renamed: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("full_name", DataType::Utf8, true),
        ]));
        let err = dest
            .open(
                &t,
                &stream("people", &renamed, mode, &["id"], None),
                renamed.clone(),
            )
            .await
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "stream `people` (table \"sales\".\"shop__people\"): the stream no longer sends \
             column \"name\" of the table (renamed or dropped in the source?); weft never drops \
             or renames columns. the stream now sends column \"full_name\" instead: if it was \
             renamed, run ALTER TABLE \"sales\".\"shop__people\" RENAME COLUMN \"name\" TO \
             \"full_name\"; otherwise drop the column (ALTER TABLE \"sales\".\"shop__people\" \
             DROP COLUMN \"name\"), or drop the table so the next run recreates it",
            "{mode:?}"
        );
        // Dropped: no rename to suggest.
        let dropped: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let err = dest
            .open(
                &t,
                &stream("people", &dropped, mode, &["id"], None),
                dropped.clone(),
            )
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("weft never drops or renames columns. otherwise drop the column"),
            "{err}"
        );
        // Nothing changed: same columns, same rows, same checkpoint.
        assert_eq!(
            db.sql(
                "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE \
                 attrelid = 'sales.shop__people'::regclass AND attnum > 0 AND NOT attisdropped"
            ),
            "id,name,_weft_synced_at,_weft_run_id"
        );
        assert_eq!(
            column_text(&db, "sales.shop__people", "name", "id"),
            some(&["row 1", "row 2", "row 3"])
        );
        let w = open(dest.as_ref(), &t, &v1, mode, &["id"], None).await;
        assert_eq!(w.committed_checkpoint(), Some(cp(1)));
        db.sql("DROP TABLE sales.shop__people");
    }
}

/// Issue #14 item 9: JSON text from any source (marked `weft.airbyte.json`) is `jsonb`; a
/// table made before keeps its `text` column.
#[tokio::test]
async fn json_text_columns_are_jsonb() {
    let db = PgTestDb::create("pgdest_jsonb");
    let json = |name: &str| {
        Field::new(name, DataType::Utf8, true).with_metadata(std::collections::HashMap::from([(
            weft_core::values::JSON_TEXT.to_string(),
            "true".to_string(),
        )]))
    };
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        json("doc"),
    ]));
    let dest = destination(&db);
    let t = target("mkt", "leads", "users");
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![
                Some(r#"{"a": {"b": [1, 2]}, "s": "☃"}"#),
                Some("[]"),
                None,
            ])),
        ],
    )
    .unwrap();
    let mut w = open(dest.as_ref(), &t, &schema, WriteMode::Append, &[], None).await;
    w.write(batch.clone()).await.unwrap();
    w.finish(&cp(1)).await.unwrap();
    assert_eq!(
        db.sql(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = \
             'mkt.leads__users'::regclass AND attname = 'doc'"
        ),
        "jsonb"
    );
    assert_eq!(
        db.sql("SELECT doc->'a'->'b'->>1, doc->>'s', jsonb_typeof(doc) FROM mkt.leads__users WHERE id = 1"),
        "2|☃|object"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM mkt.leads__users WHERE doc IS NULL"),
        "1"
    );

    // A table created with text keeps it, and the stream goes on writing text.
    db.sql("CREATE TABLE mkt.leads__old (id bigint, doc text, _weft_synced_at timestamptz, _weft_run_id text)");
    let old = target("mkt", "leads", "old");
    let mut w = open(dest.as_ref(), &old, &schema, WriteMode::Append, &[], None).await;
    w.write(batch).await.unwrap();
    w.finish(&cp(1)).await.unwrap();
    assert_eq!(
        db.sql("SELECT format_type(atttypid, atttypmod), (SELECT doc FROM mkt.leads__old WHERE id = 2) FROM pg_attribute WHERE attrelid = 'mkt.leads__old'::regclass AND attname = 'doc'"),
        "text|[]"
    );
}
