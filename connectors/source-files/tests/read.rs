//! The files source on real temp files, through the public `Source` API.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use futures::StreamExt;
use weft_core::{
    Checkpoint, ConfiguredStream, ConnectorContext, Source, SourceFactory, SourceMessage, SyncMode,
    WriteMode,
};
use weft_source_files::{FilesSourceFactory, FilesState};

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn build(dir: &Path, stream: serde_json::Value) -> Box<dyn Source> {
    let ctx = ConnectorContext {
        project_dir: dir.to_path_buf(),
    };
    FilesSourceFactory
        .build(&serde_json::json!({ "streams": [stream] }), &ctx)
        .unwrap()
}

async fn configured(src: &dyn Source, mode: SyncMode) -> ConfiguredStream {
    let descriptor = src.discover().await.unwrap().streams.remove(0);
    ConfiguredStream {
        primary_key: descriptor.primary_key.clone(),
        cursor_field: Some("_file_modified_at".into()),
        descriptor,
        sync_mode: mode,
        write_mode: WriteMode::Append,
        pipeline_id: "test.product.stream".into(),
        follow: false,
    }
}

async fn read(
    src: &dyn Source,
    stream: &ConfiguredStream,
    state: Option<&Checkpoint>,
) -> Result<Vec<SourceMessage>, String> {
    let mut messages = src.read(stream, state).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(msg) = messages.next().await {
        out.push(msg.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

fn batches(messages: &[SourceMessage]) -> Vec<RecordBatch> {
    messages
        .iter()
        .filter_map(|m| match m {
            SourceMessage::Records(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn checkpoints(messages: &[SourceMessage]) -> Vec<Checkpoint> {
    messages
        .iter()
        .filter_map(|m| match m {
            SourceMessage::Checkpoint(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// (`_file`, `_line`) of every row.
fn keys(batches: &[RecordBatch]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for b in batches {
        let file = b
            .column_by_name("_file")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let line = b
            .column_by_name("_line")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        for i in 0..b.num_rows() {
            out.push((file.value(i).to_string(), line.value(i)));
        }
    }
    out
}

fn csv_stream() -> serde_json::Value {
    serde_json::json!({
        "name": "orders", "path": "data", "glob": "orders/*.csv", "format": "csv",
        "batch_size": 2
    })
}

#[tokio::test]
async fn csv_schema_is_inferred_with_metadata_columns() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "data/orders/a.csv",
        "id,amount,city\n1,2.5,Oslo\n2,3,Rome\n",
    );
    write(
        dir.path(),
        "data/orders/b.csv",
        "id,amount,city\n3,4.25,Lima\n",
    );
    write(dir.path(), "data/orders/skip.txt", "not matched\n");
    let src = build(dir.path(), csv_stream());
    src.check().await.unwrap();
    let stream = configured(src.as_ref(), SyncMode::FullRefresh).await;
    let schema = &stream.descriptor.schema;
    let types: Vec<(String, DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    assert_eq!(
        types[..3].iter().map(|t| t.1.clone()).collect::<Vec<_>>(),
        [DataType::Int64, DataType::Float64, DataType::Utf8]
    );
    assert_eq!(
        types.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
        [
            "id",
            "amount",
            "city",
            "_file",
            "_line",
            "_file_modified_at"
        ]
    );
    assert_eq!(stream.descriptor.primary_key, ["_file", "_line"]);

    let messages = read(src.as_ref(), &stream, None).await.unwrap();
    let got = batches(&messages);
    assert_eq!(
        keys(&got),
        [
            ("orders/a.csv".to_string(), 1),
            ("orders/a.csv".to_string(), 2),
            ("orders/b.csv".to_string(), 1)
        ]
    );
    let amounts: Vec<f64> = got
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Float64Type>().values().to_vec())
        .collect();
    assert_eq!(amounts, [2.5, 3.0, 4.25]);
    let last: FilesState = checkpoints(&messages).last().unwrap().decode().unwrap();
    assert!(last.complete);
    assert_eq!(last.done.len(), 2);
}

#[tokio::test]
async fn jsonl_inference_and_overrides() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "data/events.jsonl",
        "{\"id\": 1, \"day\": \"2024-03-01\", \"price\": \"12.50\"}\n\n{\"id\": 2, \"day\": \"2024-03-02\", \"price\": \"3.10\"}\n",
    );
    let src = build(
        dir.path(),
        serde_json::json!({
            "name": "events", "path": "data", "glob": "*.jsonl", "format": "jsonl",
            "schema_overrides": {"day": "date32", "price": "decimal(10,2)"}
        }),
    );
    let stream = configured(src.as_ref(), SyncMode::FullRefresh).await;
    let schema = stream.descriptor.schema.clone();
    assert_eq!(
        schema.field_with_name("id").unwrap().data_type(),
        &DataType::Int64
    );
    assert_eq!(
        schema.field_with_name("day").unwrap().data_type(),
        &DataType::Date32
    );
    assert_eq!(
        schema.field_with_name("price").unwrap().data_type(),
        &DataType::Decimal128(10, 2)
    );
    let got = batches(&read(src.as_ref(), &stream, None).await.unwrap());
    assert_eq!(got.len(), 1);
    let price = got[0].column_by_name("price").unwrap();
    let price = price.as_primitive::<arrow_array::types::Decimal128Type>();
    assert_eq!(price.values().to_vec(), [1250, 310]);
    assert_eq!(
        keys(&got),
        [
            ("events.jsonl".to_string(), 1),
            ("events.jsonl".to_string(), 2)
        ]
    );
}

#[tokio::test]
async fn an_override_of_an_unknown_column_names_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data/orders/a.csv", "id\n1\n");
    let mut cfg = csv_stream();
    cfg["schema_overrides"] = serde_json::json!({"amount": "int64"});
    let src = build(dir.path(), cfg);
    let err = src.discover().await.unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid config at `streams.orders.schema_overrides.amount`: stream `orders` has no \
         column `amount`; its columns are: id"
    );
}

#[tokio::test]
async fn a_bad_value_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "data/orders/a.csv",
        "id,amount\n1,2\n2,3\n3,4\n4,oops\n5,6\n",
    );
    let mut cfg = csv_stream();
    cfg["schema_overrides"] = serde_json::json!({"amount": "int64"});
    let src = build(dir.path(), cfg);
    let stream = configured(src.as_ref(), SyncMode::FullRefresh).await;
    let err = read(src.as_ref(), &stream, None).await.unwrap_err();
    assert!(
        err.starts_with("stream `orders`: orders/a.csv data line 4, column `amount`: "),
        "{err}"
    );
    assert!(err.contains("add a `schema_overrides` entry"), "{err}");

    // The same for JSON Lines, whatever the column order.
    write(
        dir.path(),
        "data/e.jsonl",
        "{\"a\": 1, \"b\": 2}\n{\"b\": \"x\", \"a\": 2}\n",
    );
    let src = build(
        dir.path(),
        serde_json::json!({"name": "e", "path": "data", "glob": "e.jsonl", "format": "jsonl",
            "infer_rows": 1}),
    );
    let stream = configured(src.as_ref(), SyncMode::FullRefresh).await;
    let err = read(src.as_ref(), &stream, None).await.unwrap_err();
    assert!(
        err.starts_with("stream `e`: e.jsonl data line 2, column `b`: "),
        "{err}"
    );
}

#[tokio::test]
async fn incremental_reads_only_new_and_modified_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data/orders/a.csv", "id\n1\n2\n");
    write(dir.path(), "data/orders/b.csv", "id\n3\n");
    let src = build(dir.path(), csv_stream());
    let stream = configured(src.as_ref(), SyncMode::Incremental).await;
    let first = read(src.as_ref(), &stream, None).await.unwrap();
    assert_eq!(keys(&batches(&first)).len(), 3);
    let state = checkpoints(&first).pop().unwrap();

    // Nothing changed: nothing read, a complete checkpoint all the same.
    let again = read(src.as_ref(), &stream, Some(&state)).await.unwrap();
    assert!(batches(&again).is_empty());
    assert!(
        checkpoints(&again)
            .pop()
            .unwrap()
            .decode::<FilesState>()
            .unwrap()
            .complete
    );

    // b.csv grows (new size), c.csv is new; a.csv untouched.
    write(dir.path(), "data/orders/b.csv", "id\n3\n4\n");
    write(dir.path(), "data/orders/c.csv", "id\n5\n");
    let third = read(src.as_ref(), &stream, Some(&state)).await.unwrap();
    assert_eq!(
        keys(&batches(&third)),
        [
            ("orders/b.csv".to_string(), 1),
            ("orders/b.csv".to_string(), 2),
            ("orders/c.csv".to_string(), 1)
        ]
    );
}

#[tokio::test]
async fn resuming_mid_file_yields_exactly_the_remaining_lines() {
    let dir = tempfile::tempdir().unwrap();
    let body: String = (1..=7).map(|i| format!("{i},x{i}\n")).collect();
    write(dir.path(), "data/orders/a.csv", &format!("id,v\n{body}"));
    write(dir.path(), "data/orders/b.csv", "id,v\n8,y\n");
    let src = build(dir.path(), csv_stream());
    let stream = configured(src.as_ref(), SyncMode::Incremental).await;
    let whole = read(src.as_ref(), &stream, None).await.unwrap();
    let cps = checkpoints(&whole);
    // After the second batch of a.csv (rows 1..=4).
    let mid: FilesState = cps[1].decode().unwrap();
    assert_eq!(mid.current.as_ref().unwrap().rows, 4);
    let resumed = read(src.as_ref(), &stream, Some(&cps[1])).await.unwrap();
    let rest = keys(&batches(&resumed));
    assert_eq!(rest.first().unwrap(), &("orders/a.csv".to_string(), 5));
    let mut stitched = keys(&batches(&whole)[..2]);
    stitched.extend(rest);
    assert_eq!(stitched, keys(&batches(&whole)));
    assert_eq!(
        batches(&resumed)[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0),
        5
    );

    // JSON Lines resume too, skipping blank lines consistently.
    write(
        dir.path(),
        "j/x.jsonl",
        "{\"id\":1}\n\n{\"id\":2}\n{\"id\":3}\n",
    );
    let src = build(
        dir.path(),
        serde_json::json!({"name": "j", "path": "j", "glob": "*.jsonl", "format": "jsonl",
            "batch_size": 1}),
    );
    let stream = configured(src.as_ref(), SyncMode::Incremental).await;
    let whole = read(src.as_ref(), &stream, None).await.unwrap();
    let resumed = read(src.as_ref(), &stream, Some(&checkpoints(&whole)[0]))
        .await
        .unwrap();
    let ids: Vec<i64> = batches(&resumed)
        .iter()
        .map(|b| b.column(0).as_primitive::<Int64Type>().value(0))
        .collect();
    assert_eq!(ids, [2, 3]);
    assert_eq!(
        keys(&batches(&resumed)),
        [("x.jsonl".to_string(), 2), ("x.jsonl".to_string(), 3)]
    );
}

#[tokio::test]
async fn no_files_is_fine_for_incremental_but_check_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let src = build(dir.path(), csv_stream());
    let err = src.check().await.unwrap_err().to_string();
    assert!(
        err.starts_with("stream `orders`: no files match `orders/*.csv` under "),
        "{err}"
    );
    let stream = configured(src.as_ref(), SyncMode::Incremental).await;
    let messages = read(src.as_ref(), &stream, None).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert!(
        checkpoints(&messages)[0]
            .decode::<FilesState>()
            .unwrap()
            .complete
    );
}

#[tokio::test]
async fn a_missing_folder_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = build(dir.path(), csv_stream());
    let err = src.discover().await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "reading folder {}",
            dir.path().join("data").display()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn csv_files_are_matched_by_header_so_a_new_column_flows_in() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data/orders/a.csv", "id,city\n1,Oslo\n");
    // One more column, and the columns in another order.
    write(
        dir.path(),
        "data/orders/b.csv",
        "city,carrier,id\nRome,DHL,2\n",
    );
    let src = build(dir.path(), csv_stream());
    let stream = configured(src.as_ref(), SyncMode::FullRefresh).await;
    let names: Vec<String> = stream
        .descriptor
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names[..3], ["id", "city", "carrier"]);
    assert!(stream.descriptor.schema.field(2).is_nullable());

    let got = batches(&read(src.as_ref(), &stream, None).await.unwrap());
    let mut rows = Vec::new();
    for b in &got {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let cities = b.column(1).as_string::<i32>();
        let carriers = b.column(2).as_string::<i32>();
        for i in 0..b.num_rows() {
            rows.push((
                ids.value(i),
                cities.value(i).to_string(),
                carriers.is_valid(i).then(|| carriers.value(i).to_string()),
            ));
        }
    }
    assert_eq!(
        rows,
        [
            (1, "Oslo".to_string(), None),
            (2, "Rome".to_string(), Some("DHL".to_string()))
        ]
    );
}
