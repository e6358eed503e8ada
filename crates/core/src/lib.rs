//! The sync contract every weft connector and the engine share.
//!
//! A [`Source`] reads one configured stream as an async stream of [`SourceMessage`]s: Arrow
//! record batches interleaved with [`Checkpoint`]s. A [`Destination`] opens a [`StreamWriter`]
//! per stream, writes batches and makes them durable with [`StreamWriter::commit`]. The engine
//! (in `weft-engine`) records a checkpoint only after the destination committed it, and only
//! then acknowledges it to the source ([`Source::ack`]).
//!
//! Connector crates depend on this crate only: never on each other, never on the engine.
//! `docs/connectors.md` explains the contract; `weft connector new NAME --kind source` writes a
//! crate that follows it, and `weft-conformance` checks one against it.
//!
//! # Example: a whole source
//!
//! A typed config (its JSON Schema is the spec), a factory the binary registers, and a source
//! whose read yields a batch, then the checkpoint covering it:
//!
//! ```
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use futures::StreamExt;
//! use weft_core::arrow_array::{Int64Array, RecordBatch};
//! use weft_core::arrow_schema::{DataType, Field, Schema, SchemaRef};
//! use weft_core::*;
//!
//! /// Config of the `numbers` source.
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct NumbersConfig {
//!     /// How many numbers.
//!     count: i64,
//! }
//!
//! struct NumbersFactory;
//!
//! impl SourceFactory for NumbersFactory {
//!     fn name(&self) -> &'static str { "numbers" }
//!     fn description(&self) -> &'static str { "the numbers 1..=count" }
//!     fn spec(&self) -> serde_json::Value { spec_of::<NumbersConfig>() }
//!     fn build(&self, config: &serde_json::Value, _: &ConnectorContext) -> Result<Box<dyn Source>> {
//!         let config: NumbersConfig = parse_config(config)?;
//!         Ok(Box::new(Numbers { count: config.count }))
//!     }
//! }
//!
//! struct Numbers { count: i64 }
//!
//! fn schema() -> SchemaRef {
//!     Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]))
//! }
//!
//! #[async_trait]
//! impl Source for Numbers {
//!     async fn check(&self) -> Result<()> { Ok(()) }
//!
//!     async fn discover(&self) -> Result<Catalog> {
//!         Ok(Catalog { streams: vec![StreamDescriptor {
//!             name: StreamName::new("numbers").unwrap(),
//!             schema: schema(),
//!             primary_key: vec!["n".into()],
//!             cursor_candidates: vec!["n".into()],
//!             source_defined_cursor: None,
//!             supported_sync_modes: vec![SyncMode::FullRefresh, SyncMode::Incremental],
//!             row_estimate: Some(self.count as u64),
//!         }] })
//!     }
//!
//!     async fn read(&self, _: &ConfiguredStream, state: Option<&Checkpoint>) -> Result<MessageStream> {
//!         // Resume right after the last number a checkpoint covered.
//!         let after: i64 = state.map(|cp| cp.decode()).transpose()
//!             .map_err(|e| ConnectorError::Other(e.to_string()))?.unwrap_or(0);
//!         let batch = RecordBatch::try_new(schema(), vec![
//!             Arc::new(Int64Array::from_iter_values(after + 1..=self.count)),
//!         ])?;
//!         let messages = vec![
//!             Ok(SourceMessage::Records(batch)),
//!             Ok(SourceMessage::Checkpoint(Checkpoint::encode(&self.count))),
//!         ];
//!         Ok(futures::stream::iter(messages).boxed())
//!     }
//! }
//!
//! let source = NumbersFactory.build(&serde_json::json!({ "count": 3 }), &ConnectorContext {
//!     project_dir: ".".into(),
//! }).unwrap();
//! let err = NumbersFactory.build(&serde_json::json!({ "cuont": 3 }), &ConnectorContext {
//!     project_dir: ".".into(),
//! }).err().unwrap();
//! assert!(err.to_string().contains("unknown field `cuont`"));
//! # let _ = source;
//! ```
#![warn(missing_docs)]

pub mod catalog;
pub mod checkpoint;
pub mod config;
pub mod connector;
pub mod destination;
pub mod error;
pub mod json_schema;
pub mod message;
pub mod metadata;
pub mod names;
pub mod position;
pub mod source;
pub mod sql_type;
pub mod values;

pub use catalog::{Catalog, ConfiguredStream, StreamDescriptor, SyncMode, WriteMode};
pub use checkpoint::Checkpoint;
pub use config::{parse_config, spec_of};
pub use connector::{ConnectorContext, ConnectorKind, DestinationFactory, SourceFactory};
pub use destination::{Destination, StreamTarget, StreamWriter};
pub use error::{ConnectorError, Result};
pub use message::{change_columns, ChangeBatch, ChangeOp, MessageStream, SourceMessage};
pub use metadata::{ColumnMetadata, ProductMetadata};
pub use names::{DomainName, InvalidName, ProductName, StreamName};
pub use position::{CursorValue, KeyValue, Position};
pub use source::Source;
pub use sql_type::sql_type;

/// Re-exported so connector crates build batches with the exact Arrow version weft uses.
pub use arrow_array;
pub use arrow_schema;
