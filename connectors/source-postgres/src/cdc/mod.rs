//! Change data capture from PostgreSQL logical replication (`pgoutput`, protocol 1, binary
//! values).
//!
//! * `setup`: server checks, the stream's publication and replication slot (named after the
//!   pipeline id), and the errors that say what to run.
//! * `snapshot`: the initial copy and its handover to the slot (no gap, no overlap).
//! * How change bytes arrive (`replication.transport`): `stream`, a replication connection
//!   (`START_REPLICATION`) whose standby status updates report the last acked position, the
//!   default; or `poll`, bounded windows of `pg_logical_slot_peek_binary_changes` over
//!   plain SQL. Either way the slot only moves on `ack`, and the same reader and builder
//!   turn the bytes into change rows.
//! * `pgoutput`: the message decoder; `reader`: transactions → change rows (skips,
//!   key changes, schema changes); `changes`: change rows → Arrow `ChangeBatch`es.
//! * [`lsn`]: WAL positions.
//!
//! Positions: a change row's position is its transaction's commit end LSN; a checkpoint's
//! `lsn` P means every transaction ending at or before P was yielded. A read without
//! `follow` stops at the WAL flush position once everything committed before it started is
//! flushed (logical decoding reads flushed WAL only; `setup::catch_up_lsn` flushes commits
//! made with `synchronous_commit=off` first, so they are in this read, not the next), and
//! always ends with a checkpoint at least there, so an idle table never pins WAL of a busy
//! server.
//!
//! Acks: `ack` advances the slot (never past the engine's ack) and wakes the read. A
//! streaming read holds the slot and reports the position in its status updates; the slot
//! is advanced with `pg_replication_slot_advance` when no read holds it. A polling read
//! waits briefly for the ack before polling again; without it the next poll decodes the
//! unacked transactions again and skips them, so progress never depends on ack timing.
//!
//! Change rows use the stream's schema with every column nullable: delete rows carry only
//! the key and truncate rows nothing, whatever the table's NOT NULL constraints.
//!
//! Limitations: tables with columns weft reads through a text cast cannot be read (the
//! values arrive in binary send format, which weft decodes only for its binary types);
//! PostgreSQL 14 or later; a transaction is held in memory until its commit arrives; with
//! REPLICA IDENTITY DEFAULT, an update that changes a row's primary key and leaves a TOASTed
//! value untouched stops the read (PostgreSQL logs neither the value nor the old row, so it
//! cannot be carried to the new key; the error says to set REPLICA IDENTITY FULL, with which
//! weft fills such values in from the old row, and reset). No TLS on the replication
//! connection either (like every connection of this source).

pub mod lsn;

mod changes;
mod pgoutput;
mod poll;
mod reader;
mod setup;
mod snapshot;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_schema::{Field, Schema, SchemaRef};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use weft_core::{
    Checkpoint, ConfiguredStream, ConnectorError, MessageStream, Result, SourceMessage, SyncMode,
};

use self::changes::{ChangeBuilder, Out};
use self::lsn::Lsn;
use self::reader::{ColumnType, Event, Reader};
use crate::config::{PostgresConfig, Transport};
use crate::connect::{connect, query_error};
use crate::discover;
use crate::full_refresh::{copy_ranges, natural_split, plan};
use crate::read::{channel, ReadCtx};
use crate::state::{CdcPhase, CdcState, PgState};
use crate::types::Kind;

pub use self::setup::resource_name;

/// Acked positions per pipeline id: [`ack`] publishes, the pipeline's read waits on it
/// before polling again (a poll before the ack would decode the same window again).
pub type AckMap = Arc<Mutex<HashMap<String, watch::Sender<u64>>>>;

/// How long a read waits for the ack of the checkpoint it just yielded before polling again
/// anyway (the engine acks only when its commit interval elapsed; reading on must never
/// depend on it).
const ACK_WAIT: Duration = Duration::from_millis(500);

/// The `weft sync reset` command for a pipeline id `domain.product.stream`.
fn reset_command(pipeline_id: &str) -> String {
    format!(
        "weft sync reset {}",
        weft_core::catalog::pipeline_name(pipeline_id).replacen('.', "/", 2)
    )
}

/// The read's view of the acked position, starting at the slot's confirmed position.
fn subscribe(acks: &AckMap, pipeline: &str, confirmed: u64) -> watch::Receiver<u64> {
    let mut map = acks.lock().expect("ack map lock");
    let tx = map
        .entry(pipeline.to_string())
        .or_insert_with(|| watch::channel(confirmed).0);
    tx.send_replace(confirmed);
    tx.subscribe()
}

/// Why a read's task stops.
enum Stop {
    /// The engine dropped the read.
    Gone,
    Failed(ConnectorError),
}

impl From<ConnectorError> for Stop {
    fn from(e: ConnectorError) -> Self {
        Stop::Failed(e)
    }
}

async fn send(out: &mpsc::Sender<Result<SourceMessage>>, m: SourceMessage) -> Result<(), Stop> {
    out.send(Ok(m)).await.map_err(|_| Stop::Gone)
}

fn checkpoint(state: &CdcState) -> SourceMessage {
    SourceMessage::Checkpoint(Checkpoint::encode(&PgState::Cdc(state.clone())))
}

/// The stream's schema with every column nullable.
fn nullable(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<Field>>(),
    ))
}

/// Starts a CDC read: checks and sets up the server side, then copies (first read) and
/// streams in a task.
pub async fn start(
    ctx: ReadCtx,
    stream: &ConfiguredStream,
    state: Option<CdcState>,
    acks: &AckMap,
) -> Result<MessageStream> {
    let name = ctx.stream.clone();
    let pipeline = stream.pipeline_id.clone();
    let resource = resource_name(&pipeline);
    let client = connect(&ctx.config).await?;
    setup::check(&client, &ctx).await?;
    let lost = |slot: &str, why: &str, at: Lsn| {
        ConnectorError::Other(format!(
            "stream `{name}`: the replication slot {slot} was {why}; changes since position \
             {at} are lost to it; run `{}` to take a new snapshot",
            reset_command(&pipeline)
        ))
    };
    let (state, exported, confirmed) = match state {
        None => {
            let reset = reset_command(&pipeline);
            setup::check_owner(&client, &name, &resource, &pipeline, &reset).await?;
            setup::ensure_publication(&client, &ctx, &resource, true, &reset).await?;
            setup::claim(&client, &resource, &pipeline).await?;
            // A slot without state is a leftover of a read that never committed: start over.
            let consistent = setup::create_slot(&client, &name, &resource).await?;
            let exported = snapshot::export(&ctx.config).await?;
            let split = natural_split(&ctx);
            let ranges = plan(&ctx, &exported.client, &split).await?;
            let state = CdcState {
                slot: resource.clone(),
                publication: resource.clone(),
                phase: CdcPhase::Snapshot,
                consistent_lsn: consistent,
                snapshot: exported.xids.clone(),
                split: Some(split),
                ranges,
                snapshot_rows: 0,
                lsn: consistent,
                columns: column_names(&ctx),
            };
            (state, Some(exported), consistent)
        }
        Some(mut state) => {
            check_columns_added_since(&ctx, &state, &reset_command(&pipeline))?;
            state.columns = column_names(&ctx);
            // A checkpoint from before slots were named per project keeps its slot; the first
            // read claims it, and another project's checkpoint naming it is refused.
            let legacy = state.slot != resource && state.slot == setup::legacy_name(&pipeline);
            if state.slot != resource && !legacy {
                return Err(ConnectorError::Other(format!(
                    "stream `{name}`: the saved checkpoint reads replication slot {} but this \
                     pipeline's slot is {resource} (was the product renamed?); run `{}`",
                    state.slot,
                    reset_command(&pipeline)
                )));
            }
            let reset = reset_command(&pipeline);
            setup::check_owner(&client, &name, &state.publication, &pipeline, &reset).await?;
            setup::ensure_publication(&client, &ctx, &state.publication, false, &reset).await?;
            if legacy {
                setup::claim(&client, &state.publication, &pipeline).await?;
            }
            let Some(info) = settled_slot(&client, &state.slot).await? else {
                return Err(lost(&state.slot, "dropped", state.lsn));
            };
            if info.wal_status.as_deref() == Some("lost") {
                return Err(lost(
                    &state.slot,
                    "invalidated (the server removed WAL it still needed; see \
                     max_slot_wal_keep_size)",
                    state.lsn,
                ));
            }
            if info.plugin.as_deref() != Some("pgoutput")
                || info.database.as_deref() != Some(ctx.config.database.as_str())
            {
                return Err(lost(
                    &state.slot,
                    "replaced by a slot of another plugin or database",
                    state.lsn,
                ));
            }
            if info.confirmed_flush.is_some_and(|c| c > state.lsn) {
                return Err(lost(
                    &state.slot,
                    "advanced past the saved checkpoint by something other than this pipeline",
                    state.lsn,
                ));
            }
            if info.active {
                setup::release_slot(&client, &name, &state.slot).await?;
            }
            let exported = match state.phase {
                CdcPhase::Snapshot => Some(snapshot::export(&ctx.config).await?),
                CdcPhase::Stream => None,
            };
            let confirmed = info.confirmed_flush.unwrap_or_default();
            (state, exported, confirmed)
        }
    };
    let columns = column_types(&client, &ctx).await?;
    drop(client);
    let acked = subscribe(acks, &pipeline, confirmed.0);
    let schema = nullable(&ctx.schema);
    let key: Vec<usize> = ctx
        .table
        .primary_key
        .iter()
        .filter_map(|k| ctx.table.columns.iter().position(|c| &c.name == k))
        .collect();
    let builder = ChangeBuilder::new(
        schema.clone(),
        ctx.kinds.clone(),
        ctx.config.batch_size,
        ctx.config.batch_bytes,
    );
    let reader = Reader::new(
        name.clone(),
        pipeline.clone(),
        (ctx.table.schema.clone(), ctx.table.name.clone()),
        builder,
        columns,
        key,
        Some(state.snapshot.clone()),
        state.lsn.0,
    );
    let follow = stream.follow;
    let (tx, out) = channel();
    tokio::spawn(async move {
        let result = run(ctx, state, exported, schema, reader, follow, acked, &tx).await;
        if let Err(Stop::Failed(e)) = result {
            let _ = tx.send(Err(e)).await;
        }
    });
    Ok(out)
}

/// The slot, after waiting a few seconds for a session holding it to let go (the previous
/// read of this pipeline may still be closing its connection).
async fn settled_slot(client: &Client, name: &str) -> Result<Option<setup::SlotInfo>> {
    for _ in 0..50 {
        match setup::slot(client, name).await? {
            Some(info) if info.active => tokio::time::sleep(Duration::from_millis(100)).await,
            other => return Ok(other),
        }
    }
    setup::slot(client, name).await
}

/// The type of each column as pgoutput describes it (domains are not resolved there).
async fn column_types(client: &Client, ctx: &ReadCtx) -> Result<Vec<ColumnType>> {
    let rows = client
        .query(
            "SELECT attname::text, atttypid::int8, atttypmod FROM pg_attribute
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
             ORDER BY attnum",
            &[&ctx.table_sql()],
        )
        .await
        .map_err(|e| ctx.read_error(&e))?;
    let columns: Vec<ColumnType> = rows
        .iter()
        .map(|r| ColumnType {
            name: r.get(0),
            type_oid: r.get::<_, i64>(1) as u32,
            typmod: r.get(2),
        })
        .collect();
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let expected: Vec<&str> = ctx.table.columns.iter().map(|c| c.name.as_str()).collect();
    if names != expected {
        return Err(ConnectorError::Schema(format!(
            "stream `{}`: the table's columns changed while the read started; rerun the sync",
            ctx.stream
        )));
    }
    Ok(columns)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    ctx: ReadCtx,
    mut state: CdcState,
    exported: Option<snapshot::Exported>,
    schema: SchemaRef,
    mut reader: Reader,
    follow: bool,
    mut acked: watch::Receiver<u64>,
    out: &mpsc::Sender<Result<SourceMessage>>,
) -> Result<(), Stop> {
    if let Some(exported) = exported {
        if let Some(rows) = ctx.table.row_estimate {
            send(out, SourceMessage::Estimate { rows }).await?;
        }
        let split = state.split.clone().ok_or_else(|| {
            ConnectorError::Other("a snapshot checkpoint without its split".into())
        })?;
        let sink = snapshot::SnapshotSink {
            state: state.clone(),
            schema,
            micros: exported.micros,
        };
        let ranges = state.ranges.clone();
        if !copy_ranges(&ctx, &exported.id, split, ranges, out, sink).await? {
            return Err(Stop::Gone);
        }
        drop(exported);
        state = snapshot::stream_phase(state);
    }
    match ctx.config.replication.transport {
        Transport::Poll => poll_changes(&ctx, state, &mut reader, follow, &mut acked, out).await,
        Transport::Stream => {
            stream::stream_changes(&ctx, state, &mut reader, follow, &mut acked, out).await
        }
    }
}

/// Polls windows until everything committed before the read's start is yielded (or, when
/// following, until the read is dropped).
async fn poll_changes(
    ctx: &ReadCtx,
    mut state: CdcState,
    reader: &mut Reader,
    follow: bool,
    acked: &mut watch::Receiver<u64>,
    out: &mpsc::Sender<Result<SourceMessage>>,
) -> Result<(), Stop> {
    let peeker = connect(&ctx.config).await?;
    let meta = connect(&ctx.config).await?;
    let target = if follow {
        None
    } else {
        Some(setup::catch_up_lsn(&meta, &ctx.stream).await?)
    };
    let base = ctx.config.replication.poll_changes as usize;
    let idle = Duration::from_millis(ctx.config.replication.idle_poll_ms);
    // Output rows between the slot's confirmed position and ours: every poll decodes them
    // again, so the window must be that much larger to reach anything new.
    let mut backlog = 0usize;
    let mut last_cp = state.lsn.0;
    loop {
        if *acked.borrow() >= last_cp {
            backlog = 0;
        }
        let upto = match target {
            Some(t) => t,
            None => setup::current_lsn(&meta).await?,
        };
        let nchanges = (base + backlog).min(i32::MAX as usize);
        let rows = window(
            ctx,
            &state,
            &peeker,
            &meta,
            reader,
            upto,
            nchanges as i32,
            out,
        )
        .await?;
        let full = rows >= nchanges;
        if !full {
            // Everything committed before `upto` has been decoded: nothing can end at or
            // before it that we have not seen.
            reader.position = reader.position.max(upto.0);
        }
        let mut sent = false;
        if reader.position > last_cp {
            state.lsn = Lsn(reader.position);
            state.columns = reader.column_names();
            send(out, checkpoint(&state)).await?;
            last_cp = reader.position;
            sent = true;
        }
        if full || sent {
            backlog += rows;
        }
        if !full && target.is_some() {
            if !sent {
                send(out, checkpoint(&state)).await?;
            }
            return Ok(());
        }
        if sent {
            let _ = tokio::time::timeout(ACK_WAIT, acked.wait_for(|v| *v >= last_cp)).await;
        } else if !full {
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = out.closed() => return Err(Stop::Gone),
            }
        }
    }
}

/// Reads one window into `reader`, yielding complete batches as transactions commit.
/// Returns how many messages the window had.
#[allow(clippy::too_many_arguments)]
async fn window(
    ctx: &ReadCtx,
    state: &CdcState,
    peeker: &Client,
    meta: &Client,
    reader: &mut Reader,
    upto: Lsn,
    nchanges: i32,
    out: &mpsc::Sender<Result<SourceMessage>>,
) -> Result<usize, Stop> {
    let mut attempts = 0;
    'retry: loop {
        let mut rows =
            match poll::peek(peeker, &state.slot, &state.publication, upto, nchanges).await {
                Ok(rows) => rows,
                Err(e) if poll::slot_busy(&e) && attempts < poll::BUSY_ATTEMPTS => {
                    attempts += 1;
                    tokio::time::sleep(poll::BUSY_RETRY).await;
                    continue 'retry;
                }
                Err(e) => return Err(peek_error(ctx, state, reader, &e).into()),
            };
        let mut n = 0usize;
        while let Some(row) = rows.next().await {
            let row = match row {
                Ok(row) => row,
                Err(e) if n == 0 && poll::slot_busy(&e) && attempts < poll::BUSY_ATTEMPTS => {
                    attempts += 1;
                    tokio::time::sleep(poll::BUSY_RETRY).await;
                    continue 'retry;
                }
                Err(e) => return Err(peek_error(ctx, state, reader, &e).into()),
            };
            n += 1;
            let data: &[u8] = row.try_get(0).map_err(|e| {
                ConnectorError::Other(format!("stream `{}`: reading change data: {e}", ctx.stream))
            })?;
            handle(ctx, meta, reader, data, out).await?;
        }
        if reader.in_transaction() {
            return Err(ConnectorError::Other(format!(
                "stream `{}`: a poll of the replication slot ended inside a transaction",
                ctx.stream
            ))
            .into());
        }
        emit(reader.builder.take(true), ctx, out).await?;
        return Ok(n);
    }
}

/// Feeds one pgoutput message to `reader`; a commit yields the batches that are full.
async fn handle(
    ctx: &ReadCtx,
    meta: &Client,
    reader: &mut Reader,
    data: &[u8],
    out: &mpsc::Sender<Result<SourceMessage>>,
) -> Result<(), Stop> {
    loop {
        match reader.handle(data).map_err(ConnectorError::Schema)? {
            Event::None => return Ok(()),
            Event::Committed => {
                emit(reader.builder.take(false), ctx, out).await?;
                return Ok(());
            }
            Event::NeedColumns(names) => {
                let reset = reset_command(&reader.pipeline);
                let added = added_columns(meta, ctx, &names, &reset).await?;
                let schema = reader.add_columns(added).map_err(ConnectorError::Schema)?;
                tracing::info!(
                    "stream `{}`: columns {} were added; the schema now has {} columns",
                    ctx.stream,
                    names.join(", "),
                    schema.fields().len()
                );
            }
        }
    }
}

async fn emit(
    outs: std::result::Result<Vec<Out>, String>,
    ctx: &ReadCtx,
    out: &mpsc::Sender<Result<SourceMessage>>,
) -> Result<(), Stop> {
    let outs = outs.map_err(|e| ConnectorError::Other(format!("stream `{}`: {e}", ctx.stream)))?;
    for o in outs {
        let m = match o {
            Out::Changes(c) => SourceMessage::Changes(c),
            Out::Schema(s) => SourceMessage::SchemaChange(s),
        };
        send(out, m).await?;
    }
    Ok(())
}

fn column_names(ctx: &ReadCtx) -> Vec<String> {
    ctx.table.columns.iter().map(|c| c.name.clone()).collect()
}

/// A column added while no read ran is in the table (and the destination adds it, filling
/// existing rows from a constant default: `PgColumn::fill`); one whose default PostgreSQL
/// computed row by row in an unlogged rewrite cannot be made exact, so the stream stops.
fn check_columns_added_since(ctx: &ReadCtx, state: &CdcState, reset: &str) -> Result<()> {
    if state.columns.is_empty() {
        return Ok(());
    }
    match ctx
        .table
        .columns
        .iter()
        .find(|c| c.default_rewrote_rows && !state.columns.contains(&c.name))
    {
        Some(c) => Err(rewritten_default(&ctx.stream, &c.name, reset)),
        None => Ok(()),
    }
}

fn rewritten_default(stream: &str, column: &str, reset: &str) -> ConnectorError {
    ConnectorError::Other(format!(
        "stream `{stream}`: column `{column}` was added with a default PostgreSQL computed row by \
         row (a volatile DEFAULT rewrites the table without logging the rows), or it got its \
         default later or the table was rewritten since; the values the existing rows hold \
         cannot be read from the log. Run `{reset}` to take a new snapshot"
    ))
}

/// The Arrow field and decoder of columns added to the table mid-stream (from the catalog).
/// The field carries the value the rows already there read for it, if not NULL
/// ([`PgColumn::fill`](crate::discover::PgColumn::fill)): PostgreSQL does not log them.
async fn added_columns(
    client: &Client,
    ctx: &ReadCtx,
    names: &[String],
    reset: &str,
) -> Result<Vec<(Field, Kind)>> {
    // The server can send a transaction before other sessions see it committed (its commit
    // record is flushed, and decoded, before the committing backend leaves the proc array): a
    // column missing from the catalog right away is looked up again for a moment before it
    // counts as dropped.
    let mut attempts = 0;
    let table = loop {
        let tables = discover::tables(
            client,
            std::slice::from_ref(&ctx.table.schema),
            Some((&ctx.table.schema, &ctx.table.name)),
        )
        .await?;
        let table = tables.into_iter().next().ok_or_else(|| {
            ConnectorError::Other(format!(
                "stream `{}`: the table no longer exists (dropped or renamed during the sync?)",
                ctx.stream
            ))
        })?;
        attempts += 1;
        if attempts >= 20 || names.iter().all(|n| table.column(n).is_some()) {
            break table;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    names
        .iter()
        .map(|name| {
            let c = table.column(name).ok_or_else(|| {
                ConnectorError::Schema(format!(
                    "stream `{}`: column `{name}` was added and dropped again while the stream \
                     was behind; weft cannot read its values",
                    ctx.stream
                ))
            })?;
            let kind = c.kind.clone().filter(|_| c.cast.is_none()).ok_or_else(|| {
                ConnectorError::Unsupported(format!(
                    "stream `{}`: the added column `{name}` has type {}, which CDC cannot decode \
                     (weft reads it through a text cast)",
                    ctx.stream, c.sql_type
                ))
            })?;
            if c.default_rewrote_rows {
                return Err(rewritten_default(&ctx.stream, name, reset));
            }
            Ok((c.field().with_nullable(true), kind))
        })
        .collect()
}

fn peek_error(
    ctx: &ReadCtx,
    state: &CdcState,
    reader: &Reader,
    e: &tokio_postgres::Error,
) -> ConnectorError {
    let message = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    let why = if e.code() == Some(&SqlState::UNDEFINED_OBJECT) && message.contains("slot") {
        Some("dropped")
    } else if message.contains("can no longer get changes") || message.contains("invalidated") {
        Some("invalidated (the server removed WAL it still needed; see max_slot_wal_keep_size)")
    } else {
        None
    };
    if e.is_closed() || e.code() == Some(&SqlState::ADMIN_SHUTDOWN) {
        return ConnectorError::Other(format!(
            "stream `{}`: the connection to {}:{} reading replication slot {} was lost ({e}); \
             nothing past the last whole transaction was yielded (position {}): run the sync \
             again, it resumes from the last checkpoint",
            ctx.stream,
            ctx.config.host,
            ctx.config.port,
            state.slot,
            Lsn(reader.position)
        ));
    }
    match why {
        Some(why) => ConnectorError::Other(format!(
            "stream `{}`: the replication slot {} was {why}; changes since position {} are lost \
             to it; run `{}` to take a new snapshot",
            ctx.stream,
            state.slot,
            Lsn(reader.position),
            reset_command(&reader.pipeline)
        )),
        None => query_error(
            &format!(
                "stream `{}`: reading replication slot {}",
                ctx.stream, state.slot
            ),
            e,
        ),
    }
}

/// The CDC state a checkpoint holds, if it is one.
fn cdc_state(stream: &ConfiguredStream, cp: &Checkpoint) -> Result<Option<CdcState>> {
    if stream.sync_mode != SyncMode::Cdc {
        return Ok(None);
    }
    match cp.decode::<PgState>() {
        Ok(PgState::Cdc(s)) => Ok(Some(s)),
        Ok(_) => Ok(None),
        Err(e) => Err(ConnectorError::Other(format!(
            "stream `{}`: the checkpoint is not a postgres-source checkpoint ({e})",
            stream.name()
        ))),
    }
}

/// Publishes an acked position to the pipeline's read; returns whether a read is there.
fn publish(acks: &AckMap, pipeline: &str, lsn: Lsn) -> bool {
    let map = acks.lock().expect("ack map lock");
    let Some(tx) = map.get(pipeline) else {
        return false;
    };
    tx.send_if_modified(|v| {
        let moved = *v < lsn.0;
        *v = (*v).max(lsn.0);
        moved
    });
    tx.receiver_count() > 0
}

/// Advances the stream's slot to the acked checkpoint (never backwards, never past the WAL
/// flushed), and wakes the stream's read. With the streaming transport a running read holds
/// the slot: it reports the position in its standby status updates (the server's
/// `confirmed_flush_lsn` follows within a second or so); once its connection is closed, the
/// slot is advanced here.
pub async fn ack(
    config: &PostgresConfig,
    acks: &AckMap,
    stream: &ConfiguredStream,
    cp: &Checkpoint,
) -> Result<()> {
    let Some(state) = cdc_state(stream, cp)? else {
        return Ok(());
    };
    if state.phase == CdcPhase::Snapshot {
        // Snapshot checkpoints sit at the consistent point, where the slot already is.
        return Ok(());
    }
    let streaming = config.replication.transport == Transport::Stream
        && publish(acks, &stream.pipeline_id, state.lsn);
    let client = connect(config).await?;
    let name = stream.name().as_str();
    let mut attempts = 0;
    loop {
        let Some(info) = setup::slot(&client, &state.slot).await? else {
            return Err(ConnectorError::Other(format!(
                "stream `{name}`: the replication slot {} was dropped; changes since position \
                 {} are lost to it; run `{}` to take a new snapshot",
                state.slot,
                state.lsn,
                reset_command(&stream.pipeline_id)
            )));
        };
        if info.confirmed_flush.is_some_and(|c| c >= state.lsn) {
            break;
        }
        if streaming && info.active {
            // The read's replication connection feeds it back.
            break;
        }
        let result = client
            .execute(
                "SELECT pg_replication_slot_advance($1::text::name,
                        LEAST($2::text::pg_lsn, pg_current_wal_flush_lsn()))",
                &[&state.slot, &state.lsn.to_string()],
            )
            .await;
        match result {
            Ok(_) => break,
            Err(e) if poll::slot_busy(&e) && attempts < poll::BUSY_ATTEMPTS => {
                attempts += 1;
                tokio::time::sleep(poll::BUSY_RETRY).await;
            }
            Err(e) => {
                return Err(query_error(
                    &format!("stream `{name}`: advancing replication slot {}", state.slot),
                    &e,
                ))
            }
        }
    }
    publish(acks, &stream.pipeline_id, state.lsn);
    Ok(())
}

/// The names of the stream's slot and publication: its own, and the one from before weft
/// named them per project when its publication is marked as this pipeline's.
async fn own_resources(client: &Client, stream: &ConfiguredStream) -> Result<Vec<String>> {
    let mut names = vec![resource_name(&stream.pipeline_id)];
    let legacy = setup::legacy_name(&stream.pipeline_id);
    if legacy != names[0]
        && setup::owner(client, &legacy).await?.as_deref() == Some(stream.pipeline_id.as_str())
    {
        names.push(legacy);
    }
    Ok(names)
}

/// Bytes the stream's slot is behind the server's WAL.
pub async fn lag_bytes(config: &PostgresConfig, stream: &ConfiguredStream) -> Result<Option<u64>> {
    if stream.sync_mode != SyncMode::Cdc {
        return Ok(None);
    }
    let client = connect(config).await?;
    let row = client
        .query_opt(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8
             FROM pg_replication_slots WHERE slot_name = ANY($1) ORDER BY slot_name = $2 DESC LIMIT 1",
            &[
                &own_resources(&client, stream).await?,
                &resource_name(&stream.pipeline_id),
            ],
        )
        .await
        .map_err(|e| query_error("reading the replication slot's lag", &e))?;
    Ok(row
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .map(|b| b.max(0) as u64))
}

/// Drops the stream's slot and publication (also one from before weft named them per project,
/// once this pipeline claimed it). Done whatever the stream's sync mode is now: a slot left
/// from when it was read by CDC would pin WAL forever.
pub async fn reset(config: &PostgresConfig, stream: &ConfiguredStream) -> Result<()> {
    let client = connect(config).await?;
    for name in own_resources(&client, stream).await? {
        setup::drop_slot(&client, stream.name().as_str(), &name).await?;
        setup::drop_publication(&client, &name).await?;
    }
    Ok(())
}
