//! Full refresh: plan ranges ([`crate::state`]), export one snapshot, read the ranges on
//! `parallelism` connections that all `SET TRANSACTION SNAPSHOT` to it, and merge their batches
//! into one stream with a per-range checkpoint after each batch.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_postgres::Client;
use weft_core::{Checkpoint, ConnectorError, MessageStream, Result, SourceMessage};

use crate::connect::{connect, query_error};
use crate::decode::Position;
use crate::read::{channel, ReadCtx, TaskGuard};
use crate::sql::{quote_ident, quote_literal};
use crate::state::{even_ranges, PgState, RangeState, Split};
use crate::types::Kind;

enum WorkerMsg {
    Batch {
        range: usize,
        batch: arrow_array::RecordBatch,
        last: Option<i64>,
    },
    Done {
        range: usize,
    },
}

/// Starts a full refresh, resuming `state` when it is an unfinished full refresh of the same
/// split.
pub async fn start(ctx: ReadCtx, state: Option<PgState>) -> Result<MessageStream> {
    let coordinator = connect(&ctx.config).await?;
    coordinator
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| query_error("starting the snapshot", &e))?;
    let snapshot: String = coordinator
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(|e| query_error("exporting the snapshot", &e))?
        .get(0);
    let natural = natural_split(&ctx);
    let (split, ranges) = match state {
        Some(PgState::FullRefresh {
            split,
            ranges,
            complete: false,
        }) if split == natural => (split, ranges),
        Some(PgState::FullRefresh {
            complete: false, ..
        }) => {
            return Err(ConnectorError::Other(format!(
                "stream `{}`: the saved checkpoint splits the table differently than its current \
                 shape allows (its primary key changed?); reset the stream's state to read it \
                 from the start",
                ctx.stream
            )))
        }
        _ => {
            let ranges = plan(&ctx, &coordinator, &natural).await?;
            (natural, ranges)
        }
    };
    let (tx, stream) = channel();
    ctx.warn_text_casts();
    tokio::spawn(async move {
        if let Some(rows) = ctx.table.row_estimate {
            let _ = tx.send(Ok(SourceMessage::Estimate { rows })).await;
        }
        let sink = RecordsSink {
            split: split.clone(),
        };
        let result = copy_ranges(&ctx, &snapshot, split, ranges, &tx, sink).await;
        drop(coordinator);
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
        }
    });
    Ok(stream)
}

/// What a range copy yields for its batches: full refresh yields records and full-refresh
/// checkpoints; CDC's initial snapshot yields change rows and CDC checkpoints
/// ([`crate::cdc`]).
pub(crate) trait RangeSink: Send {
    /// The messages for one batch. `ranges` holds every range's progress including this
    /// batch; `checkpoint` says whether a checkpoint may follow it (not for unsplit ranges,
    /// which cannot resume mid-range).
    fn batch(
        &mut self,
        batch: arrow_array::RecordBatch,
        ranges: &[RangeState],
        checkpoint: bool,
    ) -> Result<Vec<SourceMessage>>;
    /// The messages after the last range was read whole.
    fn done(&mut self, ranges: &[RangeState]) -> Vec<SourceMessage>;
}

struct RecordsSink {
    split: Split,
}

impl RecordsSink {
    fn checkpoint(&self, ranges: &[RangeState], complete: bool) -> Checkpoint {
        Checkpoint::encode(&PgState::FullRefresh {
            split: self.split.clone(),
            ranges: ranges.to_vec(),
            complete,
        })
    }
}

impl RangeSink for RecordsSink {
    fn batch(
        &mut self,
        batch: arrow_array::RecordBatch,
        ranges: &[RangeState],
        checkpoint: bool,
    ) -> Result<Vec<SourceMessage>> {
        let mut out = vec![SourceMessage::Records(batch)];
        if checkpoint {
            out.push(SourceMessage::Checkpoint(self.checkpoint(ranges, false)));
        }
        Ok(out)
    }
    fn done(&mut self, ranges: &[RangeState]) -> Vec<SourceMessage> {
        vec![SourceMessage::Checkpoint(self.checkpoint(ranges, true))]
    }
}

/// The split a table's shape allows.
pub(crate) fn natural_split(ctx: &ReadCtx) -> Split {
    let t = &ctx.table;
    if let [key] = t.primary_key.as_slice() {
        if let Some(c) = t.column(key) {
            if matches!(c.kind, Some(Kind::Int2 | Kind::Int4 | Kind::Int8)) {
                return Split::Key {
                    column: key.clone(),
                };
            }
        }
    }
    if matches!(t.relkind, 'r' | 'm') {
        Split::Ctid
    } else {
        Split::None
    }
}

/// Ranges of about `range_rows` rows each.
pub(crate) async fn plan(ctx: &ReadCtx, client: &Client, split: &Split) -> Result<Vec<RangeState>> {
    let want = |estimate: u64| estimate.div_ceil(ctx.config.range_rows).max(1);
    match split {
        Split::None => Ok(vec![RangeState::new(None, None)]),
        Split::Key { column } => {
            let row = client
                .query_one(
                    &format!(
                        "SELECT min({k})::int8, max({k})::int8 FROM {t}",
                        k = quote_ident(column),
                        t = ctx.table_sql()
                    ),
                    &[],
                )
                .await
                .map_err(|e| ctx.read_error(&e))?;
            let (min, max): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
            let (Some(min), Some(max)) = (min, max) else {
                return Ok(vec![RangeState::new(None, None)]);
            };
            let estimate = ctx
                .table
                .row_estimate
                .unwrap_or((max as i128 - min as i128 + 1).min(u64::MAX as i128) as u64);
            Ok(even_ranges(min, max, want(estimate)))
        }
        Split::Ctid => {
            let pages: i64 = client
                .query_one(
                    "SELECT pg_relation_size($1::text::regclass) / current_setting('block_size')::int8",
                    &[&ctx.table_sql()],
                )
                .await
                .map_err(|e| ctx.read_error(&e))?
                .get(0);
            let estimate = ctx.table.row_estimate.unwrap_or(0);
            let n = want(estimate).min(pages.max(1) as u64);
            Ok(even_ranges(0, pages.max(1) - 1, n)
                .into_iter()
                .map(|r| RangeState::new(r.lo.filter(|&b| b > 0), r.hi))
                .collect())
        }
    }
}

/// The query reading one range from where it stopped.
fn range_query(ctx: &ReadCtx, split: &Split, range: &RangeState) -> String {
    let mut conds = Vec::new();
    let select = ctx.select_list();
    let from = ctx.table_sql();
    match split {
        Split::None => format!("SELECT {select} FROM {from}"),
        Split::Key { column } => {
            let k = quote_ident(column);
            if let Some(lo) = range.lo {
                conds.push(format!("{k} >= {lo}"));
            }
            if let Some(hi) = range.hi {
                conds.push(format!("{k} < {hi}"));
            }
            if let Some(after) = range.after {
                conds.push(format!("{k} > {after}"));
            }
            format!(
                "SELECT {select} FROM {from}{} ORDER BY {k}",
                where_clause(&conds)
            )
        }
        Split::Ctid => {
            let tid = |p: i64| quote_literal(&format!("({},{})", p >> 16, p & 0xffff));
            if let Some(lo) = range.lo {
                conds.push(format!("ctid >= {}::tid", tid(lo << 16)));
            }
            if let Some(hi) = range.hi {
                conds.push(format!("ctid < {}::tid", tid(hi << 16)));
            }
            if let Some(after) = range.after {
                conds.push(format!("ctid > {}::tid", tid(after)));
            }
            // A TID range scan, or a seq scan with synchronize_seqscans off: block order.
            format!("SELECT ctid, {select} FROM {from}{}", where_clause(&conds))
        }
    }
}

fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

/// Reads the unfinished `ranges` inside the exported `snapshot` on up to `parallelism`
/// connections, handing each batch to `sink` and yielding what it returns. Returns
/// `Ok(false)` when the reader of `out` went away.
pub(crate) async fn copy_ranges(
    ctx: &ReadCtx,
    snapshot: &str,
    split: Split,
    mut ranges: Vec<RangeState>,
    out: &mpsc::Sender<Result<SourceMessage>>,
    mut sink: impl RangeSink,
) -> Result<bool> {
    let pending: VecDeque<usize> = (0..ranges.len()).filter(|&i| !ranges[i].done).collect();
    let workers = ctx.config.parallelism.min(pending.len());
    let queue = Arc::new(Mutex::new(pending));
    // One slot: each worker blocked on a full channel already holds its next batch, so more
    // slots would only add batches in memory, not keep the readers busier.
    let (wtx, mut wrx) = mpsc::channel::<Result<WorkerMsg>>(1);
    let mut guard = TaskGuard::default();
    for _ in 0..workers {
        let (ctx, split, snapshot, queue, wtx) = (
            ctx.clone(),
            split.clone(),
            snapshot.to_string(),
            queue.clone(),
            wtx.clone(),
        );
        let plan = ranges.clone();
        guard.0.push(tokio::spawn(async move {
            if let Err(e) = worker(&ctx, &split, &snapshot, &plan, &queue, &wtx).await {
                let _ = wtx.send(Err(e)).await;
            }
        }));
    }
    drop(wtx);
    let position_checkpoints = split != Split::None;
    while let Some(msg) = wrx.recv().await {
        match msg? {
            WorkerMsg::Batch { range, batch, last } => {
                ranges[range].after = last.or(ranges[range].after);
                for m in sink.batch(batch, &ranges, position_checkpoints)? {
                    if out.send(Ok(m)).await.is_err() {
                        return Ok(false);
                    }
                }
            }
            WorkerMsg::Done { range } => ranges[range].done = true,
        }
    }
    if let Some(r) = ranges.iter().position(|r| !r.done) {
        return Err(ConnectorError::Other(format!(
            "stream `{}`: range {r} was not read to its end (a reader stopped)",
            ctx.stream
        )));
    }
    for m in sink.done(&ranges) {
        if out.send(Ok(m)).await.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn worker(
    ctx: &ReadCtx,
    split: &Split,
    snapshot: &str,
    ranges: &[RangeState],
    queue: &Mutex<VecDeque<usize>>,
    out: &mpsc::Sender<Result<WorkerMsg>>,
) -> Result<()> {
    let client = connect(&ctx.config).await?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}; \
             SET LOCAL synchronize_seqscans = off",
            quote_literal(snapshot)
        ))
        .await
        .map_err(|e| query_error("joining the read's snapshot", &e))?;
    let position = match split {
        Split::None => Position::None,
        Split::Key { column } => Position::Column(
            ctx.table
                .columns
                .iter()
                .position(|c| &c.name == column)
                .expect("the key column exists (checked when splitting)"),
        ),
        Split::Ctid => Position::LeadingCtid,
    };
    loop {
        let Some(range) = queue.lock().expect("queue lock").pop_front() else {
            return Ok(());
        };
        let query = range_query(ctx, split, &ranges[range]);
        let completed = ctx
            .copy(&client, &query, position, |d| async move {
                out.send(Ok(WorkerMsg::Batch {
                    range,
                    batch: d.batch,
                    last: d.last_position,
                }))
                .await
                .is_ok()
            })
            .await?;
        if !completed || out.send(Ok(WorkerMsg::Done { range })).await.is_err() {
            return Ok(());
        }
    }
}
