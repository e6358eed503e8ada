//! Driving the manifest source the way the engine does: build from a product's config, discover,
//! read a stream and collect its rows (as JSON, via arrow-json) and checkpoints.

#![allow(dead_code)]

use futures::StreamExt;
use serde_json::Value;
use weft_core::{
    Checkpoint, ConfiguredStream, ConnectorContext, Source, SourceFactory, SourceMessage, SyncMode,
    WriteMode,
};
use weft_source_manifest::ManifestSourceFactory;

pub struct Built {
    pub dir: tempfile::TempDir,
    pub source: Box<dyn Source>,
}

/// Writes `manifest` into a fresh project folder and builds the source with `config`.
pub fn build(manifest: &str, config: Value) -> Result<Built, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("connectors")).unwrap();
    std::fs::write(dir.path().join("connectors/api.yaml"), manifest).unwrap();
    let ctx = ConnectorContext {
        project_dir: dir.path().to_path_buf(),
    };
    let source = ManifestSourceFactory
        .build(
            &serde_json::json!({"manifest": "connectors/api.yaml", "config": config}),
            &ctx,
        )
        .map_err(|e| e.to_string())?;
    Ok(Built { dir, source })
}

#[derive(Debug)]
pub struct Read {
    pub rows: Vec<Value>,
    pub checkpoints: Vec<Value>,
    /// Rows before each checkpoint.
    pub rows_at_checkpoint: Vec<usize>,
}

pub async fn configured(source: &dyn Source, stream: &str, mode: SyncMode) -> ConfiguredStream {
    let catalog = source.discover().await.unwrap();
    let descriptor = catalog
        .stream(stream)
        .unwrap_or_else(|| panic!("no stream {stream}"))
        .clone();
    ConfiguredStream {
        primary_key: descriptor.primary_key.clone(),
        cursor_field: descriptor.source_defined_cursor.clone(),
        descriptor,
        sync_mode: mode,
        write_mode: WriteMode::Append,
        pipeline_id: format!("d.p.{stream}"),
        follow: false,
    }
}

pub async fn try_read(
    source: &dyn Source,
    stream: &str,
    mode: SyncMode,
    state: Option<Value>,
) -> Result<Read, String> {
    let cs = configured(source, stream, mode).await;
    let state = state.map(Checkpoint::new);
    let mut messages = source
        .read(&cs, state.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let mut read = Read {
        rows: Vec::new(),
        checkpoints: Vec::new(),
        rows_at_checkpoint: Vec::new(),
    };
    while let Some(m) = messages.next().await {
        match m.map_err(|e| e.to_string())? {
            SourceMessage::Records(batch) => {
                let batch = without_zones(batch);
                let mut w = arrow_json::ArrayWriter::new(Vec::new());
                w.write(&batch).unwrap();
                w.finish().unwrap();
                let text = String::from_utf8(w.into_inner()).unwrap();
                if let Ok(Value::Array(rows)) = serde_json::from_str::<Value>(&text) {
                    read.rows.extend(rows);
                }
            }
            SourceMessage::Checkpoint(c) => {
                read.checkpoints.push(c.position().clone());
                read.rows_at_checkpoint.push(read.rows.len());
            }
            _ => {}
        }
    }
    Ok(read)
}

pub async fn read(source: &dyn Source, stream: &str, mode: SyncMode, state: Option<Value>) -> Read {
    try_read(source, stream, mode, state).await.unwrap()
}

/// The values of `field` across rows.
pub fn column(rows: &[Value], field: &str) -> Vec<Value> {
    rows.iter()
        .map(|r| r.get(field).cloned().unwrap_or(Value::Null))
        .collect()
}

/// The batch with its zoned timestamps made naive (still UTC): arrow-json writes only offset
/// zones without chrono-tz.
fn without_zones(
    batch: weft_core::arrow_array::RecordBatch,
) -> weft_core::arrow_array::RecordBatch {
    use std::sync::Arc;
    use weft_core::arrow_array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray};
    use weft_core::arrow_schema::{DataType, Field, Schema};
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(u, Some(_)) => f
                .as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(*u, None)),
            _ => f.as_ref().clone(),
        })
        .collect();
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(
            |c| match c.as_any().downcast_ref::<TimestampMicrosecondArray>() {
                Some(t) if t.timezone().is_some() => {
                    Arc::new(t.clone().with_timezone_opt(None::<String>)) as ArrayRef
                }
                _ => c.clone(),
            },
        )
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}
