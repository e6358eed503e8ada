//! What flows from a source to the engine.

use arrow_array::{RecordBatch, UInt64Array, UInt8Array};
use arrow_schema::SchemaRef;
use futures::stream::BoxStream;

use crate::checkpoint::Checkpoint;
use crate::error::ConnectorError;

/// One message of a source's read.
#[derive(Debug, Clone)]
pub enum SourceMessage {
    /// Rows of the stream (snapshot, full refresh or incremental reads).
    Records(RecordBatch),
    /// Change rows from a change log (CDC), carrying operation, position and ordinal.
    Changes(Box<ChangeBatch>),
    /// Everything yielded before this message is covered by the checkpoint.
    Checkpoint(Checkpoint),
    /// From here on batches have this schema (a column was added, a type widened).
    SchemaChange(SchemaRef),
    /// The source's estimate of the rows it will yield in this read, for progress displays.
    Estimate { rows: u64 },
}

/// The kind of a change row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChangeOp {
    Insert = 0,
    Update = 1,
    Delete = 2,
}

/// A batch of change rows: `rows[i]` was changed by `ops[i]` at `positions[i]`; `ordinals[i]`
/// orders changes sharing a position, so destinations can apply them idempotently on replay.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    pub rows: RecordBatch,
    /// [`ChangeOp`] as `u8`.
    pub ops: UInt8Array,
    pub positions: UInt64Array,
    pub ordinals: UInt64Array,
}

/// The async stream a source's read returns.
pub type MessageStream = BoxStream<'static, Result<SourceMessage, ConnectorError>>;
