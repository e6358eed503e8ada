//! The Parquet lake against the conformance suite; a reader lists the stream folder as any
//! Parquet reader would (`*.parquet`, skipping `_weft`) and reads it with the parquet crate.

use std::path::PathBuf;

use async_trait::async_trait;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use weft_conformance::{DestinationSuite, Evolution, Table, VisibleRows, WriterChild};
use weft_core::{ConnectorContext, StreamTarget};
use weft_destination_parquet::{stream_dir, ParquetLakeFactory};

struct LakeFiles(PathBuf);

#[async_trait]
impl VisibleRows for LakeFiles {
    async fn visible(&self, t: &StreamTarget) -> Result<Option<Table>, String> {
        let dir = stream_dir(&self.0, &t.domain, &t.product, &t.stream);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.map(|e| e.path()).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        files.retain(|p| p.extension().is_some_and(|x| x == "parquet"));
        files.sort();
        let mut batches = Vec::new();
        for path in &files {
            let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.build())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            for batch in reader {
                batches.push(batch.map_err(|e| e.to_string())?);
            }
        }
        // Files written before a column was added lack it: combine by name.
        let mut columns: Vec<String> = Vec::new();
        for b in &batches {
            for f in b.schema().fields() {
                if !columns.contains(f.name()) {
                    columns.push(f.name().clone());
                }
            }
        }
        let mut table = Table::new(columns);
        for b in &batches {
            table.push_batch(b)?;
        }
        Ok(Some(table))
    }
}

#[tokio::test]
async fn the_parquet_lake_conforms() {
    if let Some(child) = WriterChild::from_env() {
        child.run(&ParquetLakeFactory).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let reader = LakeFiles(lake.clone());
    let ctx = ConnectorContext {
        project_dir: dir.path().to_path_buf(),
    };
    DestinationSuite::new(
        &ParquetLakeFactory,
        serde_json::json!({ "path": lake }),
        ctx,
        &reader,
    )
    .evolution(Evolution {
        adds_columns: true,
        refuses_retype: true,
    })
    .run("the_parquet_lake_conforms")
    .await
    .unwrap_or_else(|faults| panic!("{faults}"));
}
