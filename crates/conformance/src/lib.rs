//! The connector conformance suite: holds any weft [`Source`](weft_core::Source) or
//! [`Destination`](weft_core::Destination) to the sync contract of `weft-core`.
//!
//! Connector crates use it from their own tests (a dev-dependency):
//!
//! - [`SourceSuite`] checks a source against its test fixture: the spec is valid JSON Schema and
//!   accepts the connector's own configs; a bad config fails naming the field; `discover` is
//!   deterministic with keys and cursors in the schemas; a read from scratch, then from **every**
//!   checkpoint it emitted, yields exactly the rows after that checkpoint; a read dropped at any
//!   message leaves the last acknowledged checkpoint good; `ack` is idempotent; batches match the
//!   declared schema; a fixture holding a value the connector cannot decode (given with
//!   [`SourceSuite::undecodable`]) fails its read with the stream and the column named.
//! - [`DestinationSuite`] checks a destination, running its writer in a child process that is
//!   killed with SIGKILL: `commit` is durable before it returns and nothing uncommitted shows;
//!   `finish` publishes atomically; `abort` leaves nothing visible; replaying the last committed
//!   batch after a crash creates no duplicates; the stored checkpoint is the last committed one;
//!   schema evolution behaves as the destination declares ([`Evolution`]).
//!
//! Every fault is a [`Fault`] naming the check, the stream and what was seen against what the
//! contract wants; a run returns all of them as [`Faults`].
//!
//! Modules: [`source`] (the source suite), [`destination`] (the destination suite and its
//! writer child), [`spec`] (spec and config checks), [`table`] (rows as text, for comparing
//! what a source yields or a reader sees), [`stream`] ([`TestStream`]: a product stream to
//! open writers for, shared by the suite and destination tests).

pub mod destination;
pub mod source;
pub mod spec;
pub mod stream;
pub mod table;

pub use destination::{DestinationSuite, Evolution, VisibleRows, WriterChild};
pub use source::{SourceReport, SourceSuite};
pub use stream::TestStream;
pub use table::Table;

/// One way a connector breaks the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[{check}] {message}")]
pub struct Fault {
    /// The check that failed (`read_resume`, `commit_durable`, …).
    pub check: &'static str,
    /// What was seen against what the contract wants, naming the stream, column or checkpoint.
    pub message: String,
}

impl Fault {
    /// A fault found by `check`.
    pub fn new(check: &'static str, message: impl Into<String>) -> Self {
        Self {
            check,
            message: message.into(),
        }
    }
}

/// Every fault a suite run found (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} conformance fault(s) in connector `{connector}`:\n{}", faults.len(), faults.iter().map(|f| format!("  - {f}")).collect::<Vec<_>>().join("\n"))]
pub struct Faults {
    /// The connector's registered name.
    pub connector: String,
    /// The faults, in the order the checks ran.
    pub faults: Vec<Fault>,
}

impl Faults {
    /// Whether a fault of `check` was found.
    pub fn has(&self, check: &str) -> bool {
        self.faults.iter().any(|f| f.check == check)
    }
}

/// Whether an error message names `name` (a column, a stream), quoted as `x`, "x" or 'x'.
pub(crate) fn names(message: &str, name: &str) -> bool {
    ['`', '"', '\'']
        .iter()
        .any(|q| message.contains(&format!("{q}{name}{q}")))
}
