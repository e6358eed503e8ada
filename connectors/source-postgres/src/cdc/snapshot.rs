//! The initial copy of a CDC stream, handed over to the slot with no gap and no overlap.
//!
//! 1. The slot is created first: its consistent point C. Every transaction committing after
//!    C will be decoded from it.
//! 2. Then a REPEATABLE READ transaction exports snapshot S (taken after C) and records S's
//!    horizon (`pg_current_snapshot()`: xmin, xmax, in-progress xids). The table is copied
//!    inside S by the full refresh's parallel range readers, which all `SET TRANSACTION
//!    SNAPSHOT` to it. Snapshot rows are change rows: inserts at position C.
//! 3. Streaming then skips every decoded transaction S saw committed (their effects are in
//!    the copy) and applies the rest. A transaction committed between C and S is both decoded
//!    and visible in S: skipped. One running at S commits later and is not visible: applied.
//!
//! A crash mid-copy resumes the unfinished ranges in a *new* snapshot but keeps filtering
//! with the first one: changes between the two snapshots are replayed over rows copied after
//! the restart. A current-state destination converges (every change carries the full row
//! and is applied in order); a changelog may then list changes already reflected in rows
//! copied after the restart.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use tokio_postgres::Client;
use weft_core::{Checkpoint, ConnectorError, Result, SourceMessage};

use super::changes::snapshot_batch;
use crate::config::PostgresConfig;
use crate::connect::{connect, query_error};
use crate::full_refresh::RangeSink;
use crate::state::{CdcPhase, CdcState, PgState, RangeState, SnapshotXids};

/// An exported snapshot, valid while `client`'s transaction is open.
pub struct Exported {
    pub client: Client,
    pub id: String,
    pub xids: SnapshotXids,
    /// The snapshot's time (its transaction's start), µs since the Unix epoch.
    pub micros: i64,
}

pub async fn export(config: &PostgresConfig) -> Result<Exported> {
    let client = connect(config).await?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| query_error("starting the snapshot", &e))?;
    let row = client
        .query_one(
            "SELECT pg_export_snapshot(), pg_snapshot_xmin(s)::text::int8,
                    pg_snapshot_xmax(s)::text::int8,
                    ARRAY(SELECT x::text::int8 FROM pg_snapshot_xip(s) x ORDER BY 1),
                    (extract(epoch FROM now()) * 1000000)::int8
             FROM pg_current_snapshot() s",
            &[],
        )
        .await
        .map_err(|e| query_error("exporting the snapshot", &e))?;
    let xip: Vec<i64> = row.get(3);
    Ok(Exported {
        id: row.get(0),
        xids: SnapshotXids {
            xmin: row.get::<_, i64>(1) as u64,
            xmax: row.get::<_, i64>(2) as u64,
            xip: xip.into_iter().map(|x| x as u64).collect(),
        },
        micros: row.get(4),
        client,
    })
}

/// Turns copied batches into snapshot change rows and CDC checkpoints.
pub struct SnapshotSink {
    pub state: CdcState,
    /// The stream's schema with every column nullable (see [`super`]).
    pub schema: SchemaRef,
    pub micros: i64,
}

impl SnapshotSink {
    fn checkpoint(&self) -> SourceMessage {
        SourceMessage::Checkpoint(Checkpoint::encode(&PgState::Cdc(self.state.clone())))
    }
}

impl RangeSink for SnapshotSink {
    fn batch(
        &mut self,
        batch: RecordBatch,
        ranges: &[RangeState],
        checkpoint: bool,
    ) -> Result<Vec<SourceMessage>> {
        let rows = RecordBatch::try_new(Arc::clone(&self.schema), batch.columns().to_vec())
            .map_err(ConnectorError::Arrow)?;
        let n = rows.num_rows() as u64;
        let changes = snapshot_batch(
            rows,
            self.state.consistent_lsn.0,
            self.state.snapshot_rows,
            self.micros,
        );
        self.state.snapshot_rows += n;
        self.state.ranges = ranges.to_vec();
        let mut out = vec![SourceMessage::Changes(Box::new(changes))];
        if checkpoint {
            out.push(self.checkpoint());
        }
        Ok(out)
    }

    fn done(&mut self, _ranges: &[RangeState]) -> Vec<SourceMessage> {
        self.state = stream_phase(self.state.clone());
        vec![self.checkpoint()]
    }
}

/// The state once the copy is complete: streaming from the consistent point.
pub fn stream_phase(mut state: CdcState) -> CdcState {
    state.phase = CdcPhase::Stream;
    state.split = None;
    state.ranges = Vec::new();
    state.snapshot_rows = 0;
    state.lsn = state.lsn.max(state.consistent_lsn);
    state
}
