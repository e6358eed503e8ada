//! The lake's shared memory budget (`memory_budget_bytes`) with many streams written at once:
//! buffered row groups are flushed early (several row groups where one would have held every
//! row), and every row still reads back exactly. Its own test binary: the budget is
//! process-wide, so no other test's lake lowers or shares it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use weft_conformance::TestStream;
use weft_core::{
    Checkpoint, ConfiguredStream, ConnectorContext, DestinationFactory, StreamTarget, StreamWriter,
    WriteMode,
};
use weft_destination_parquet::{committed_files, stream_dir, ParquetLakeFactory};

const STREAMS: usize = 8;
const BATCHES: i64 = 16;
const ROWS: i64 = 10_000;

fn test_stream(stream: &str, schema: &SchemaRef) -> TestStream {
    TestStream::new("finance", "revenue", stream)
        .schema(schema.clone())
        .write(WriteMode::Overwrite)
        .pipeline(format!("test.revenue.{stream}"))
}

fn target(stream: &str) -> StreamTarget {
    test_stream(stream, &schema()).target()
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]))
}

fn configured(stream: &str, schema: &SchemaRef) -> ConfiguredStream {
    test_stream(stream, schema).configured()
}

/// A value that compresses badly, so row groups grow as fast as the rows.
fn name(stream: usize, id: i64) -> String {
    let mut x = (id as u64 ^ (stream as u64) << 40).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut s = String::with_capacity(48);
    for _ in 0..3 {
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        s.push_str(&format!("{x:016x}"));
    }
    s
}

fn batch(stream: usize, from: i64) -> RecordBatch {
    let ids: Vec<i64> = (from..from + ROWS).collect();
    let names: Vec<String> = ids.iter().map(|&id| name(stream, id)).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(names)),
        ],
    )
    .unwrap()
}

/// (row groups, rows as (id, name)) of the committed files of `dir`.
fn read_back(files: &[PathBuf]) -> (usize, Vec<(i64, String)>) {
    let mut groups = 0;
    let mut rows = Vec::new();
    for path in files {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        groups += builder.metadata().num_row_groups();
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let names = batch.column(1).as_string::<i32>();
            for i in 0..batch.num_rows() {
                rows.push((ids.value(i), names.value(i).to_string()));
            }
        }
    }
    (groups, rows)
}

fn dir_of(root: &Path, stream: &str) -> PathBuf {
    let t = target(stream);
    stream_dir(root, &t.domain, &t.product, &t.stream)
}

#[tokio::test]
async fn many_streams_share_the_budget_and_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lake");
    let ctx = ConnectorContext {
        project_dir: PathBuf::from("/nonexistent-project"),
    };
    // 4 MiB for 8 streams of ~8 MiB each: far below one 64 MiB row group per stream.
    let lake = ParquetLakeFactory
        .build(
            &json!({ "path": root, "memory_budget_bytes": 4 * 1024 * 1024 }),
            &ctx,
        )
        .unwrap();
    let s = schema();
    let mut writers: Vec<Box<dyn StreamWriter>> = Vec::new();
    for i in 0..STREAMS {
        let stream = format!("s{i}");
        writers.push(
            lake.open(&target(&stream), &configured(&stream, &s), s.clone())
                .await
                .unwrap(),
        );
    }
    // Round robin, so every stream's row group grows at once.
    for b in 0..BATCHES {
        for (i, w) in writers.iter_mut().enumerate() {
            w.write(batch(i, b * ROWS)).await.unwrap();
        }
    }
    for w in &mut writers {
        w.finish(&Checkpoint::new(json!({ "done": true })))
            .await
            .unwrap();
    }
    for i in 0..STREAMS {
        let files = committed_files(&dir_of(&root, &format!("s{i}"))).unwrap();
        let (groups, rows) = read_back(&files);
        let want: Vec<(i64, String)> = (0..BATCHES * ROWS).map(|id| (id, name(i, id))).collect();
        assert_eq!(rows.len(), want.len(), "stream s{i} row count");
        assert!(rows == want, "stream s{i}: the rows read back differ");
        assert!(
            groups >= 4,
            "stream s{i}: {groups} row groups; the budget should have flushed several"
        );
    }
}
