//! What flows from a source to the engine.

use std::collections::BTreeMap;

use arrow_array::{Array, BooleanArray, Int64Array, RecordBatch, UInt64Array, UInt8Array};
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
    Estimate {
        /// Rows expected.
        rows: u64,
    },
    /// Since the last such message, `values` values did not fit the stream's schema and the
    /// source wrote them as NULL, recording each in its row; counted in the run summary.
    OffSchema {
        /// Values written as NULL.
        values: u64,
    },
}

/// The kind of a change row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChangeOp {
    /// A new row (also every row of a CDC stream's initial snapshot).
    Insert = 0,
    /// The row's new image; the key is unchanged (a key change is a delete then an insert).
    Update = 1,
    /// The row with this key is gone; only the key columns are guaranteed to be set.
    Delete = 2,
    /// Every row of the stream changed before this position is gone; the row's columns are null.
    Truncate = 3,
}

impl ChangeOp {
    /// The operation of a code (`ChangeOp as u8`), if it is one.
    pub fn from_u8(op: u8) -> Option<ChangeOp> {
        match op {
            0 => Some(ChangeOp::Insert),
            1 => Some(ChangeOp::Update),
            2 => Some(ChangeOp::Delete),
            3 => Some(ChangeOp::Truncate),
            _ => None,
        }
    }

    /// The name destinations write in their changelog's operation column.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Insert => "insert",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
            ChangeOp::Truncate => "truncate",
        }
    }
}

/// Column names destinations use for change metadata, so every product store agrees.
pub mod change_columns {
    /// The operation, as [`super::ChangeOp::as_str`].
    pub const OP: &str = "_weft_op";
    /// The change's position in the source's log (a PostgreSQL commit LSN as an integer).
    pub const POSITION: &str = "_weft_position";
    /// Orders changes sharing a position.
    pub const ORDINAL: &str = "_weft_ordinal";
    /// When the source committed the change (UTC).
    pub const COMMIT_TS: &str = "_weft_commit_ts";
}

/// A batch of change rows, in the order they must be applied: `rows[i]` was changed by
/// `ops[i]` at `positions[i]`; `ordinals[i]` orders changes sharing a position, so destinations
/// can apply them idempotently on replay.
///
/// `rows` has the stream's schema with every field nullable (a delete carries only the key, a
/// truncate nothing). Values the source did not resend because they did not
/// change (PostgreSQL's unchanged TOASTed values) are null in `rows` and flagged in
/// `unchanged`: a destination keeps the value it already holds for those cells.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// The changed rows, in the stream's schema with every field nullable.
    pub rows: RecordBatch,
    /// [`ChangeOp`] as `u8`.
    pub ops: UInt8Array,
    /// Each change's position in the source's log (a commit LSN).
    pub positions: UInt64Array,
    /// Orders the changes sharing a position.
    pub ordinals: UInt64Array,
    /// Commit time of each change, microseconds since the Unix epoch (UTC).
    pub commit_micros: Int64Array,
    /// Per column name (only columns with at least one flagged cell): `true` where the value
    /// did not change and is not in `rows`.
    pub unchanged: BTreeMap<String, BooleanArray>,
}

impl ChangeBatch {
    /// How many change rows.
    pub fn len(&self) -> usize {
        self.rows.num_rows()
    }

    /// Whether there are no change rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The operation of row `i` (unknown codes read as inserts; [`ChangeBatch::validate`]
    /// rejects them).
    pub fn op(&self, i: usize) -> ChangeOp {
        ChangeOp::from_u8(self.ops.value(i)).unwrap_or(ChangeOp::Insert)
    }

    /// Whether the value of `column` in row `i` is unchanged (not in `rows`).
    pub fn is_unchanged(&self, column: &str, i: usize) -> bool {
        self.unchanged
            .get(column)
            .is_some_and(|mask| mask.is_valid(i) && mask.value(i))
    }

    /// Checks that every array has one entry per row and every op code is known.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.len();
        let lens = [
            ("ops", self.ops.len()),
            ("positions", self.positions.len()),
            ("ordinals", self.ordinals.len()),
            ("commit_micros", self.commit_micros.len()),
        ];
        for (what, len) in lens {
            if len != n {
                return Err(format!("change batch has {n} rows but {len} {what}"));
            }
        }
        for (column, mask) in &self.unchanged {
            if mask.len() != n {
                return Err(format!(
                    "change batch has {n} rows but {} unchanged flags for column {column:?}",
                    mask.len()
                ));
            }
            if self.rows.schema().index_of(column).is_err() {
                return Err(format!(
                    "change batch flags unchanged values of column {column:?}, which it does not have"
                ));
            }
        }
        if let Some(bad) = self
            .ops
            .values()
            .iter()
            .find(|op| ChangeOp::from_u8(**op).is_none())
        {
            return Err(format!("change batch has an unknown operation code {bad}"));
        }
        Ok(())
    }
}

/// The async stream a source's read returns.
pub type MessageStream = BoxStream<'static, Result<SourceMessage, ConnectorError>>;
