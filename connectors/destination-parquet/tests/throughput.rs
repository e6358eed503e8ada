//! Lake writer throughput against `ArrowWriter` writing the same batches straight to a file.
//! Ignored by default (timing); run with
//! `cargo test -p weft-destination-parquet --release --test throughput -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::json;
use weft_conformance::TestStream;
use weft_core::{Checkpoint, ConnectorContext, DestinationFactory};
use weft_destination_parquet::ParquetLakeFactory;

fn batches(schema: &SchemaRef, n: usize, rows: usize) -> Vec<RecordBatch> {
    (0..n)
        .map(|b| {
            let base = (b * rows) as i64;
            let ids: Vec<i64> = (base..base + rows as i64).collect();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(Float64Array::from_iter_values(
                        ids.iter().map(|i| *i as f64 * 1.5),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        ids.iter().map(|i| format!("customer-{}", i % 5000)),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        ids.iter().map(|i| i * 7919 % 100_003),
                    )),
                ],
            )
            .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing; run explicitly"]
async fn lake_is_close_to_a_bare_arrow_writer() {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("customer", DataType::Utf8, false),
        Field::new("score", DataType::Int64, false),
    ]));
    let data = batches(&schema, 64, 32 * 1024);
    for round in 0..3 {
        let tmp = tempfile::tempdir().unwrap();

        let start = Instant::now();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
            .build();
        let file = std::fs::File::create(tmp.path().join("bare.parquet")).unwrap();
        let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
        for b in &data {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        let bare = start.elapsed();

        let ctx = ConnectorContext {
            project_dir: tmp.path().to_path_buf(),
        };
        let dest = ParquetLakeFactory
            .build(&json!({"path": "lake"}), &ctx)
            .unwrap();
        let stream = TestStream::new("d", "p", "s")
            .schema(schema.clone())
            .run("bench")
            .pipeline("test.product.stream");
        let start = Instant::now();
        let mut w = stream.open(dest.as_ref()).await.unwrap();
        for b in &data {
            w.write(b.clone()).await.unwrap();
        }
        w.finish(&Checkpoint::new(json!(1))).await.unwrap();
        let lake = start.elapsed();
        println!(
            "round {round}: bare ArrowWriter {bare:?}, lake {lake:?}, ratio {:.2}",
            lake.as_secs_f64() / bare.as_secs_f64()
        );
    }
}
