//! The streaming transport: changes arrive on a replication connection
//! (`replication=database`, `START_REPLICATION SLOT … LOGICAL <lsn> (proto_version '1',
//! publication_names …, binary 'true')`), through the `pgwire-replication` client, which
//! handles the connection, authentication (SCRAM-SHA-256, MD5, cleartext), keepalives and
//! standby status updates.
//!
//! The status updates report write = flush = apply = the last position the engine acked
//! ([`super::ack`] publishes it, this read hands it to the client), never more: the server's
//! `confirmed_flush_lsn` follows the acks, and nothing the destination has not committed is
//! ever released. They are sent on every keepalive that asks for a reply, within
//! [`STATUS_INTERVAL`] of an ack, and at least every [`IDLE_WAKEUP`] on an idle connection.
//!
//! The client forwards pgoutput Begin and Commit as boundary events (decoded): they are
//! turned back into the protocol's bytes so [`Reader`] sees the same message stream as with
//! the polling transport. Every other message is the server's bytes.
//!
//! Checkpoints: after a commit when the connection goes quiet ([`QUIET`]) or at least every
//! [`CHECKPOINT_EVERY`] while changes keep coming, and on keepalives between transactions at
//! the keepalive's WAL position (the server sends a keepalive at its sent position when it
//! has caught up: everything ending at or before it was sent), so acks move the slot while
//! the watched table is idle and the server is busy. A read without `follow` stops on the
//! first Begin, Commit or keepalive at or past its catch-up position (the WAL flush position
//! once everything committed before the read started is flushed: `setup::catch_up_lsn`).

use std::time::{Duration, Instant};

use pgwire_replication::{
    Lsn as WireLsn, PgWireError, ReplicationClient, ReplicationConfig, ReplicationEvent,
};
use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;
use weft_core::{ConnectorError, Result, SourceMessage};

use super::lsn::Lsn;
use super::reader::Reader;
use super::{checkpoint, emit, handle, reset_command, send, setup, Stop};
use crate::connect::connect;
use crate::read::ReadCtx;
use crate::state::CdcState;

/// How soon an ack reaches the server (the client sends a raised position once this passed
/// since its last status update).
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Status updates on an idle connection, and how long the client blocks on a silent one.
const IDLE_WAKEUP: Duration = Duration::from_secs(10);
/// A checkpoint after this long without a message (between transactions).
const QUIET: Duration = Duration::from_millis(100);
/// A checkpoint at least this often while changes keep coming.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// How long a start waits for the slot to be released (by the previous read of this
/// pipeline, whose walsender may still be exiting) before saying it is in use.
const START_ATTEMPTS: u32 = 50;
const START_RETRY: Duration = Duration::from_millis(100);

/// Streams changes until everything committed before the read's start is yielded (or, when
/// following, until the read is dropped).
pub(super) async fn stream_changes(
    ctx: &ReadCtx,
    state: CdcState,
    reader: &mut Reader,
    follow: bool,
    acked: &mut watch::Receiver<u64>,
    out: &mpsc::Sender<Result<SourceMessage>>,
) -> Result<(), Stop> {
    let meta = connect(&ctx.config).await?;
    let target = if follow {
        None
    } else {
        Some(setup::catch_up_lsn(&meta, &ctx.stream).await?)
    };
    if target.is_some_and(|t| reader.position >= t.0) {
        // Nothing can be newer than what the checkpoint already covers.
        send(out, checkpoint(&state)).await?;
        return Ok(());
    }
    let confirmed = *acked.borrow_and_update();
    let mut client = start(ctx, &state, reader, confirmed).await?;
    let mut pump = Pump {
        ctx,
        meta: &meta,
        state,
        last_cp: reader.position,
        last_cp_at: Instant::now(),
        out,
    };
    let result = pump.run(&mut client, reader, target, acked).await;
    // Close the connection and wait for the server to release the slot, so an ack or the
    // next read right after this one finds it free.
    let _ = client.shutdown().await;
    drop(client);
    released(&meta, &pump.state.slot).await;
    result
}

/// Opens the replication connection and waits until the server started streaming.
async fn start(
    ctx: &ReadCtx,
    state: &CdcState,
    reader: &Reader,
    confirmed: u64,
) -> Result<ReplicationClient> {
    let c = &ctx.config;
    let mut cfg = ReplicationConfig::new(
        c.host.clone(),
        c.user.clone(),
        c.password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default(),
        c.database.clone(),
        state.slot.clone(),
        state.publication.clone(),
    )
    .with_port(c.port)
    // The server skips transactions committed before it (as the reader would).
    .with_start_lsn(WireLsn::from_u64(state.lsn.0))
    // Feedback starts at the slot's confirmed position, not the start position: only acks
    // move it.
    .with_ack_lsn(WireLsn::from_u64(confirmed))
    .with_binary(true)
    .with_status_interval(STATUS_INTERVAL)
    .with_wakeup_interval(IDLE_WAKEUP);
    cfg.application_name = Some("weft".into());
    let mut attempts = 0;
    loop {
        let mut client =
            tokio::time::timeout(c.connect_timeout, ReplicationClient::connect(cfg.clone()))
                .await
                .map_err(|_| ConnectorError::Other(crate::connect::connect_timeout_error(c)))?
                .map_err(|e| stream_error(ctx, state, reader, &e))?;
        match client.wait_started().await {
            Ok(()) => return Ok(client),
            Err(PgWireError::Server(m)) if in_use(&m) && attempts < START_ATTEMPTS => {
                attempts += 1;
                tokio::time::sleep(START_RETRY).await;
            }
            Err(e) => return Err(stream_error(ctx, state, reader, &e)),
        }
    }
}

fn in_use(message: &str) -> bool {
    message.contains("is active for PID") || message.contains("SQLSTATE 55006")
}

/// Waits (briefly) until no session holds the slot.
async fn released(meta: &Client, slot: &str) {
    for _ in 0..100 {
        match setup::slot(meta, slot).await {
            Ok(Some(info)) if info.active => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => return,
        }
    }
}

struct Pump<'a> {
    ctx: &'a ReadCtx,
    meta: &'a Client,
    state: CdcState,
    last_cp: u64,
    last_cp_at: Instant,
    out: &'a mpsc::Sender<Result<SourceMessage>>,
}

impl Pump<'_> {
    async fn run(
        &mut self,
        client: &mut ReplicationClient,
        reader: &mut Reader,
        target: Option<Lsn>,
        acked: &mut watch::Receiver<u64>,
    ) -> Result<(), Stop> {
        let mut acks_open = true;
        loop {
            let next = tokio::select! {
                biased;
                _ = self.out.closed() => return Err(Stop::Gone),
                changed = acked.changed(), if acks_open => {
                    match changed {
                        // Acked: the destination committed through it. The client reports
                        // it as written, flushed and applied.
                        Ok(()) => client.update_applied_lsn(WireLsn::from_u64(*acked.borrow_and_update())),
                        Err(_) => acks_open = false,
                    }
                    continue;
                }
                next = tokio::time::timeout(QUIET, client.recv()) => next,
            };
            let event = match next {
                Err(_quiet) => {
                    if !reader.in_transaction() {
                        self.checkpoint(reader).await?;
                    }
                    continue;
                }
                Ok(Ok(Some(event))) => event,
                Ok(Ok(None)) => {
                    return Err(
                        lost(self.ctx, reader, "the server ended the replication stream").into(),
                    )
                }
                Ok(Err(e)) => return Err(stream_error(self.ctx, &self.state, reader, &e).into()),
            };
            match event {
                ReplicationEvent::Begin {
                    final_lsn,
                    xid,
                    commit_time_micros,
                } => {
                    if let Some(t) = target {
                        if final_lsn.as_u64() >= t.0 && !reader.in_transaction() {
                            // This transaction ends past the target, and every one ending
                            // before it came first.
                            reader.position = reader.position.max(t.0);
                            return self.finish(reader).await;
                        }
                    }
                    let data = begin_message(final_lsn.as_u64(), commit_time_micros, xid);
                    handle(self.ctx, self.meta, reader, &data, self.out).await?;
                }
                ReplicationEvent::XLogData { data, .. } => {
                    handle(self.ctx, self.meta, reader, &data, self.out).await?;
                }
                ReplicationEvent::Commit {
                    lsn,
                    end_lsn,
                    commit_time_micros,
                } => {
                    let data = commit_message(lsn.as_u64(), end_lsn.as_u64(), commit_time_micros);
                    handle(self.ctx, self.meta, reader, &data, self.out).await?;
                    if target.is_some_and(|t| end_lsn.as_u64() >= t.0) {
                        return self.finish(reader).await;
                    }
                    if self.last_cp_at.elapsed() >= CHECKPOINT_EVERY {
                        self.checkpoint(reader).await?;
                    }
                }
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    if reader.in_transaction() {
                        continue;
                    }
                    // Between transactions, the server has sent everything ending at or
                    // before its keepalive position.
                    reader.position = reader.position.max(wal_end.as_u64());
                    if target.is_some_and(|t| wal_end.as_u64() >= t.0) {
                        return self.finish(reader).await;
                    }
                    self.checkpoint(reader).await?;
                }
                ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
            }
        }
    }

    /// Yields the rows held back, then a checkpoint if the position moved. Only between
    /// transactions. Returns whether a checkpoint was sent.
    async fn checkpoint(&mut self, reader: &mut Reader) -> Result<bool, Stop> {
        emit(reader.builder.take(true), self.ctx, self.out).await?;
        if reader.position <= self.last_cp {
            return Ok(false);
        }
        self.state.lsn = Lsn(reader.position);
        self.state.columns = reader.column_names();
        send(self.out, checkpoint(&self.state)).await?;
        self.last_cp = reader.position;
        self.last_cp_at = Instant::now();
        Ok(true)
    }

    /// The end of a read without `follow`: always a checkpoint last.
    async fn finish(&mut self, reader: &mut Reader) -> Result<(), Stop> {
        if !self.checkpoint(reader).await? {
            send(self.out, checkpoint(&self.state)).await?;
        }
        Ok(())
    }
}

/// pgoutput's Begin: final (commit) LSN, commit time, xid.
fn begin_message(final_lsn: u64, micros: i64, xid: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(21);
    b.push(b'B');
    b.extend_from_slice(&final_lsn.to_be_bytes());
    b.extend_from_slice(&micros.to_be_bytes());
    b.extend_from_slice(&xid.to_be_bytes());
    b
}

/// pgoutput's Commit: flags, commit LSN, end LSN, commit time.
fn commit_message(lsn: u64, end_lsn: u64, micros: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(26);
    b.push(b'C');
    b.push(0);
    b.extend_from_slice(&lsn.to_be_bytes());
    b.extend_from_slice(&end_lsn.to_be_bytes());
    b.extend_from_slice(&micros.to_be_bytes());
    b
}

fn lost(ctx: &ReadCtx, reader: &Reader, why: &str) -> ConnectorError {
    ConnectorError::Other(format!(
        "stream `{}`: the replication connection to {}:{} was lost ({why}); nothing past the \
         last whole transaction was yielded (position {}): run the sync again, it resumes \
         from the last checkpoint",
        ctx.stream,
        ctx.config.host,
        ctx.config.port,
        Lsn(reader.position)
    ))
}

fn stream_error(
    ctx: &ReadCtx,
    state: &CdcState,
    reader: &Reader,
    e: &PgWireError,
) -> ConnectorError {
    let stream = &ctx.stream;
    let slot = &state.slot;
    match e {
        PgWireError::Server(m) => {
            let gone = |why: &str| {
                ConnectorError::Other(format!(
                    "stream `{stream}`: the replication slot {slot} was {why}; changes since \
                     position {} are lost to it; run `{}` to take a new snapshot",
                    Lsn(reader.position),
                    reset_command(&reader.pipeline)
                ))
            };
            if m.contains("does not exist") && m.contains("slot") {
                gone("dropped")
            } else if m.contains("can no longer get changes")
                || m.contains("invalidated")
                || m.contains("has already been removed")
            {
                gone("invalidated (the server removed WAL it still needed; see max_slot_wal_keep_size)")
            } else if in_use(m) {
                ConnectorError::Other(format!(
                    "stream `{stream}`: replication slot {slot} is in use by another session (a \
                     sync of this pipeline still running?): {m}"
                ))
            } else if m.contains("publication") && m.contains("does not exist") {
                ConnectorError::Other(format!(
                    "stream `{stream}`: {m}; run `{}` to take a new snapshot",
                    reset_command(&reader.pipeline)
                ))
            } else if m.contains("SQLSTATE 57P01") || m.contains("terminating") {
                lost(ctx, reader, m)
            } else {
                ConnectorError::Other(format!(
                    "stream `{stream}`: replicating from slot {slot} on {}:{}: {m}",
                    ctx.config.host, ctx.config.port
                ))
            }
        }
        PgWireError::Auth(m) => ConnectorError::Other(format!(
            "stream `{stream}`: the replication connection to {}:{} as user `{}` was refused: \
             {m}; check `user` and `password`, and that pg_hba.conf allows replication \
             connections to database `{}`",
            ctx.config.host, ctx.config.port, ctx.config.user, ctx.config.database
        )),
        other => lost(ctx, reader, &other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::pgoutput::{decode, Message};
    use super::*;

    #[test]
    fn boundaries_round_trip_through_the_decoder() {
        match decode(&begin_message(0x10, 7, 42)).unwrap() {
            Message::Begin {
                final_lsn,
                commit_micros,
                xid,
            } => {
                // The client passes the server's time (microseconds since 2000-01-01)
                // through; the decoder turns it into Unix time.
                assert_eq!(
                    (final_lsn, commit_micros, xid),
                    (0x10, 946_684_800_000_007, 42)
                )
            }
            other => panic!("{other:?}"),
        }
        match decode(&commit_message(0x10, 0x20, 7)).unwrap() {
            Message::Commit { end_lsn, .. } => assert_eq!(end_lsn, 0x20),
            other => panic!("{other:?}"),
        }
    }
}
