//! The sync contract every weft connector and the engine share.
//!
//! A [`Source`] reads one configured stream as an async stream of [`SourceMessage`]s: Arrow
//! record batches interleaved with [`Checkpoint`]s. A [`Destination`] opens a [`StreamWriter`]
//! per stream, writes batches and makes them durable with [`StreamWriter::commit`]. The engine
//! (in `weft-engine`) records a checkpoint only after the destination committed it, and only
//! then acknowledges it to the source ([`Source::ack`]).
//!
//! Connector crates depend on this crate only: never on each other, never on the engine.

pub mod catalog;
pub mod checkpoint;
pub mod config;
pub mod connector;
pub mod destination;
pub mod error;
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
