//! One read of one stream: the checkpoint state, what a state means for the next read, and the
//! blocking generator that makes each message when the reader asks for it.

use serde::{Deserialize, Serialize};
use weft_core::arrow_array::{Array, Int64Array, TimestampMicrosecondArray};
use weft_core::{Checkpoint, ConnectorError, MessageStream, Result, SourceMessage, SyncMode};

use crate::config::SampleConfig;
use crate::model::SampleStream;
use crate::rows::RowWalk;

/// Versions × changes a state may ask for: a full read replays every version's updates.
const MAX_TOTAL_CHANGES: u128 = 10_000_000_000;

/// The sample source's checkpoint state for one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleState {
    /// The version being (or last) read.
    pub version: u64,
    /// Which rows of the version the read covers.
    pub rows: RowsRead,
    /// The last id yielded in this version (0 before the first).
    pub last_id: u64,
    /// Incremental reads: `updated_at` of the last row yielded, µs since the epoch. Together
    /// with `last_id` it is the (cursor, id) position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<i64>,
    /// Whether the version was read to its end.
    pub complete: bool,
    /// The generated data set the position is in; absent in checkpoints written before it
    /// was recorded (those are taken on trust).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataSet>,
}

/// The settings that decide which rows exist: a position means nothing under others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSet {
    pub scale: u64,
    pub seed: u64,
}

impl DataSet {
    fn of(config: &SampleConfig) -> Self {
        Self {
            scale: config.scale,
            seed: config.seed,
        }
    }
}

/// The rows a read of one version yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowsRead {
    /// The whole table at the version (full refresh; the first incremental read).
    All,
    /// Only rows updated or added in the version (later incremental reads).
    Changed,
}

/// What a read will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Generate `rows` of `version` after `after_id`.
    Read {
        version: u64,
        rows: RowsRead,
        after_id: u64,
        cursor: Option<i64>,
    },
    /// Nothing new: yield the given (complete) state again.
    UpToDate(SampleState),
}

pub(crate) fn plan(
    stream: SampleStream,
    config: &SampleConfig,
    mode: SyncMode,
    state: Option<&Checkpoint>,
) -> Result<Plan> {
    let Some(checkpoint) = state else {
        return Ok(Plan::Read {
            version: 0,
            rows: RowsRead::All,
            after_id: 0,
            cursor: None,
        });
    };
    let state: SampleState = checkpoint.decode().map_err(|err| {
        ConnectorError::Other(format!(
            "stream `{}`: the saved state is not a sample-source checkpoint ({err}); \
             reset the stream's state to read it from the start",
            stream.name()
        ))
    })?;
    // A changed scale or seed under an existing checkpoint would read on from a position in
    // other data (a few thousand changed rows instead of millions): stop and say how to go on.
    // A complete full refresh starts over anyway, so it may change them freely.
    if let Some(data) = state.data {
        let now = DataSet::of(config);
        if data != now && (mode == SyncMode::Incremental || !state.complete) {
            return Err(ConnectorError::Other(format!(
                "stream `{}`: the checkpoint was taken with scale {} and seed {}, but the config now says scale {} and seed {}; reading on from it would mix two data sets. Reset the stream (`weft sync reset <domain>/<product>/{}`) to read it afresh with the new settings, or put the old ones back",
                stream.name(),
                data.scale,
                data.seed,
                now.scale,
                now.seed,
                stream.name()
            )));
        }
    }
    let plan = if !state.complete {
        match (mode, state.rows) {
            // A partial change read cannot complete a full table: start the version over.
            (SyncMode::FullRefresh, RowsRead::Changed) => Plan::Read {
                version: state.version,
                rows: RowsRead::All,
                after_id: 0,
                cursor: None,
            },
            (_, rows) => Plan::Read {
                version: state.version,
                rows: if state.version == 0 {
                    RowsRead::All
                } else {
                    rows
                },
                after_id: state.last_id,
                cursor: state.cursor,
            },
        }
    } else if config.changes_per_run > 0 {
        Plan::Read {
            version: state.version.saturating_add(1),
            rows: match mode {
                SyncMode::Incremental => RowsRead::Changed,
                _ => RowsRead::All,
            },
            after_id: 0,
            cursor: None,
        }
    } else if mode == SyncMode::Incremental {
        Plan::UpToDate(state)
    } else {
        Plan::Read {
            version: state.version,
            rows: RowsRead::All,
            after_id: 0,
            cursor: None,
        }
    };
    if let Plan::Read { version, .. } = &plan {
        let total = *version as u128 * config.changes_per_run as u128;
        if total > MAX_TOTAL_CHANGES {
            return Err(ConnectorError::Other(format!(
                "stream `{}`: the saved state asks for version {version}, beyond what the sample \
                 source generates with changes_per_run {}; reset the stream's state",
                stream.name(),
                config.changes_per_run
            )));
        }
    }
    Ok(plan)
}

/// Starts the read: a blocking thread generates each message when the stream is polled for
/// it, never ahead. The engine reads ahead through its own channel, within its run-wide limit
/// on bytes in flight; a source generating ahead on its own would hold batches outside that
/// limit, one set per stream (50 streams held ~12 MiB each that way).
pub(crate) fn start(
    stream: SampleStream,
    config: &SampleConfig,
    mode: SyncMode,
    plan: Plan,
) -> MessageStream {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<SourceMessage>>(1);
    // One token per message asked for.
    let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        // The reader gone (its ask channel closed, or a failed send): stop generating.
        if asked.recv().is_err() {
            return;
        }
        let send = |msg| tx.blocking_send(msg).is_ok() && asked.recv().is_ok();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            generate(stream, &config, mode, plan, send)
        }));
        // A panic must end the read with an error, never as a silently short stream.
        if outcome.is_err() {
            let _ = tx.blocking_send(Err(ConnectorError::Other(format!(
                "stream `{}`: generating sample data failed unexpectedly (a bug in weft)",
                stream.name()
            ))));
        }
    });
    let mut waiting = false;
    Box::pin(futures::stream::poll_fn(move |cx| {
        if !waiting {
            // Full only if a token is already there; closed once the generator ended.
            let _ = ask.try_send(());
            waiting = true;
        }
        let polled = rx.poll_recv(cx);
        if polled.is_ready() {
            waiting = false;
        }
        polled
    }))
}

/// Runs a plan, handing each message to `send` until it returns false. Returns whether the
/// read ran to its end.
pub(crate) fn generate(
    stream: SampleStream,
    config: &SampleConfig,
    mode: SyncMode,
    plan: Plan,
    mut send: impl FnMut(Result<SourceMessage>) -> bool,
) -> bool {
    let (version, rows, after_id, cursor) = match plan {
        Plan::UpToDate(state) => {
            return send(Ok(SourceMessage::Estimate { rows: 0 }))
                && send(Ok(SourceMessage::Checkpoint(Checkpoint::encode(&state))));
        }
        Plan::Read {
            version,
            rows,
            after_id,
            cursor,
        } => (version, rows, after_id, cursor),
    };
    let mut walk = match rows {
        RowsRead::All => RowWalk::table(stream, config, version, after_id),
        RowsRead::Changed => RowWalk::changes(stream, config, version, after_id),
    };
    if !send(Ok(SourceMessage::Estimate {
        rows: walk.remaining(),
    })) {
        return false;
    }
    let incremental = mode == SyncMode::Incremental;
    let mut state = SampleState {
        version,
        rows,
        last_id: after_id,
        cursor: if incremental { cursor } else { None },
        complete: false,
        data: Some(DataSet::of(config)),
    };
    let mut sent_final = false;
    while let Some(batch) = walk.next_batch() {
        let batch = match batch {
            Ok(batch) => batch,
            Err(err) => {
                send(Err(err.into()));
                return false;
            }
        };
        let last = batch.num_rows() - 1;
        let ids = batch.column(0).as_any().downcast_ref::<Int64Array>();
        let updated_at = batch
            .column(batch.num_columns() - 1)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>();
        if let (Some(ids), Some(updated_at)) = (ids, updated_at) {
            state.last_id = ids.value(last) as u64;
            if incremental {
                state.cursor = Some(updated_at.value(last));
            }
        }
        state.complete = walk.remaining() == 0;
        sent_final = state.complete;
        if !send(Ok(SourceMessage::Records(batch)))
            || !send(Ok(SourceMessage::Checkpoint(Checkpoint::encode(&state))))
        {
            return false;
        }
    }
    if !sent_final {
        state.complete = true;
        return send(Ok(SourceMessage::Checkpoint(Checkpoint::encode(&state))));
    }
    true
}
