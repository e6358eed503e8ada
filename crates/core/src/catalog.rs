//! What a source offers ([`Catalog`], [`StreamDescriptor`]) and what a product asks of it
//! ([`ConfiguredStream`]).

use arrow_schema::SchemaRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::StreamName;

/// How a stream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Read every row on every run.
    FullRefresh,
    /// Read the rows whose cursor moved past the last checkpoint.
    Incremental,
    /// Read changes (inserts, updates, deletes) from a change log.
    Cdc,
}

/// How a stream is written to its product store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Replace the product table atomically when the run completes.
    Overwrite,
    /// Add the rows read.
    Append,
    /// Add the rows read and keep the latest row per primary key.
    AppendDedup,
}

impl std::fmt::Display for SyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncMode::FullRefresh => "full_refresh",
            SyncMode::Incremental => "incremental",
            SyncMode::Cdc => "cdc",
        })
    }
}

impl std::fmt::Display for WriteMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteMode::Overwrite => "overwrite",
            WriteMode::Append => "append",
            WriteMode::AppendDedup => "append_dedup",
        })
    }
}

/// One stream a source offers.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDescriptor {
    /// The stream's name, unique in its catalog.
    pub name: StreamName,
    /// The Arrow schema every batch of the stream has.
    pub schema: SchemaRef,
    /// Columns that identify a row, if the source knows them.
    pub primary_key: Vec<String>,
    /// Columns usable as an incremental cursor, best first.
    pub cursor_candidates: Vec<String>,
    /// The cursor the source itself uses for incremental reads, when it decides (Airbyte's
    /// `source_defined_cursor`); a product may then leave `cursor` out.
    pub source_defined_cursor: Option<String>,
    /// How the stream can be read.
    pub supported_sync_modes: Vec<SyncMode>,
    /// Estimated number of rows, when cheap to know.
    pub row_estimate: Option<u64>,
}

/// Everything a source offers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// The streams, in the source's order.
    pub streams: Vec<StreamDescriptor>,
}

impl Catalog {
    /// The stream called `name`, if offered.
    pub fn stream(&self, name: &str) -> Option<&StreamDescriptor> {
        self.streams.iter().find(|s| s.name.as_str() == name)
    }

    /// The catalog as JSON, with Arrow schemas in their serde form (for `weft connector discover`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.streams
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "name": s.name,
                        "fields": s.schema.fields().iter().map(|f| serde_json::json!({
                            "name": f.name(),
                            "type": f.data_type().to_string(),
                            "nullable": f.is_nullable(),
                        })).collect::<Vec<_>>(),
                        "primary_key": s.primary_key,
                        "cursor_candidates": s.cursor_candidates,
                        "source_defined_cursor": s.source_defined_cursor,
                        "supported_sync_modes": s.supported_sync_modes,
                        "row_estimate": s.row_estimate,
                    })
                })
                .collect(),
        )
    }
}

/// A stream as a product configured it: the descriptor plus how to read and write it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfiguredStream {
    /// The stream as discovered.
    pub descriptor: StreamDescriptor,
    /// How the product reads it.
    pub sync_mode: SyncMode,
    /// How the product's store writes it.
    pub write_mode: WriteMode,
    /// The cursor column, required for incremental reads.
    pub cursor_field: Option<String>,
    /// The key columns, required for `append_dedup`.
    pub primary_key: Vec<String>,
    /// A stable identifier of the product stream this read feeds:
    /// `domain.product.stream@<project id>` (the engine's project id; tests may leave the
    /// `@…` part out). Sources name server-side resources after it (a replication slot, a
    /// publication), so two products, or two projects, reading the same table never share
    /// them.
    pub pipeline_id: String,
    /// CDC only: keep reading changes until the read is dropped, instead of stopping at the
    /// log position that was current when the read started.
    pub follow: bool,
}

impl ConfiguredStream {
    /// The stream's name.
    pub fn name(&self) -> &StreamName {
        &self.descriptor.name
    }

    /// The `domain.product.stream` part of [`ConfiguredStream::pipeline_id`].
    pub fn pipeline_name(&self) -> &str {
        pipeline_name(&self.pipeline_id)
    }
}

/// The `domain.product.stream` part of a pipeline id (without the `@<project id>`).
pub fn pipeline_name(pipeline_id: &str) -> &str {
    pipeline_id
        .split_once('@')
        .map_or(pipeline_id, |(name, _)| name)
}
