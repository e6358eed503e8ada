//! One stream's run, and the checkpoint protocol at its heart:
//!
//! 1. batches flow source → mappers → bounded channel → destination writer;
//! 2. at a checkpoint (at most every `commit_interval`), the writer commits: it returns only
//!    once everything before the checkpoint is durable (and, for destinations that can, the
//!    checkpoint is stored with the data in the same atomic step);
//! 3. only then is the checkpoint recorded in the state store, with a compare-and-set on its
//!    generation;
//! 4. only then is the source told (`ack`).
//!
//! On start the destination's own checkpoint wins over the state store's. A failure or a
//! cancellation aborts the writer: nothing since the last commit becomes visible.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use weft_core::{
    ChangeBatch, Checkpoint, ConfiguredStream, Destination, Source, SourceMessage, StreamTarget,
    StreamWriter,
};
use weft_state::{StateStore, StreamKey};

use crate::inflight::{InFlight, Permit, IDLE};
use crate::mappers::MapperChain;
use crate::progress::{Phase, StreamProgress};

/// Everything needed to run one stream.
pub(crate) struct StreamJob {
    pub key: StreamKey,
    pub run_id: String,
    /// The stream as the source reads it.
    pub source_stream: ConfiguredStream,
    /// The stream as the destination writes it (names after mappers).
    pub destination_stream: ConfiguredStream,
    pub mappers: MapperChain,
    /// Read from the start whatever the checkpoints say (`--full-refresh` of a stream whose
    /// destination settles rows by key).
    pub from_scratch: bool,
    /// Read nothing: commit this checkpoint as the stream's new position (`weft state set`).
    pub set_to: Option<Checkpoint>,
    pub source: Arc<dyn Source>,
    pub destination: Arc<dyn Destination>,
    pub state: Arc<dyn StateStore>,
    pub commit_interval: Duration,
    pub channel_capacity: usize,
    /// The run's bytes in flight, shared by its streams (see [`crate::inflight`]).
    pub in_flight: Arc<InFlight>,
    pub progress: Arc<StreamProgress>,
    /// What the destination records with the data.
    pub metadata: weft_core::ProductMetadata,
    /// Checks a schema the source changes to mid-stream (source schema before, after, and the
    /// mapped schema after) like planning checked the first: the locked contract and the
    /// governance rules. `Err` stops the stream before anything of the new shape is written.
    pub schema_check: SchemaCheck,
}

/// See [`StreamJob::schema_check`].
pub(crate) type SchemaCheck =
    Arc<dyn Fn(&SchemaRef, &SchemaRef, &SchemaRef) -> Result<(), String> + Send + Sync>;

/// Why a stream stopped early.
#[derive(Debug)]
pub(crate) enum StreamStop {
    Failed(String),
    Cancelled,
}

enum Item {
    /// A batch and the permits for its bytes, held until the destination took it.
    Batch(RecordBatch, Permit),
    Changes(Box<ChangeBatch>, Permit),
    /// Later batches have this (mapped) schema.
    SchemaChange(SchemaRef),
    Checkpoint(Checkpoint),
}

impl StreamJob {
    fn fail(&self, what: &str, err: impl std::fmt::Display) -> StreamStop {
        StreamStop::Failed(format!("{what}: {err}"))
    }

    pub(crate) async fn run(self, cancel: CancellationToken) -> Result<(), StreamStop> {
        let target = StreamTarget {
            domain: self.key.domain.clone(),
            product: self.key.product.clone(),
            stream: self.key.stream.clone(),
            run_id: self.run_id.clone(),
            metadata: self.metadata.clone(),
        };
        let mut writer = self
            .destination
            .open(
                &target,
                &self.destination_stream,
                self.mappers.output_schema().clone(),
            )
            .await
            .map_err(|e| self.fail("destination", e))?;

        let (resume, mut generation) = self.resume_point(writer.as_ref())?;
        // The position as JSON, as `weft sync status` shows it (not Rust's debug form).
        let resume_at = resume
            .as_ref()
            .map_or_else(|| "none".to_string(), |c| c.position().to_string());
        debug!(stream = %self.key, resume = %resume_at, "starting");

        let messages = match &self.set_to {
            Some(checkpoint) => {
                info!(stream = %self.key, from = %resume_at, to = %checkpoint.position(), "setting the stream's position (nothing is read)");
                futures::stream::iter([Ok::<_, weft_core::ConnectorError>(
                    SourceMessage::Checkpoint(checkpoint.clone()),
                )])
                .boxed()
            }
            None => self
                .source
                .read(&self.source_stream, resume.as_ref())
                .await
                .map_err(|e| self.fail("source", e))?,
        };
        self.progress.set_phase(Phase::Reading);

        let (tx, mut rx) = mpsc::channel::<Result<Item, StreamStop>>(self.channel_capacity.max(1));
        let reader = tokio::spawn(read_and_map(
            messages,
            self.mappers.clone(),
            (
                self.source_stream.descriptor.schema.clone(),
                self.schema_check.clone(),
            ),
            (self.progress.clone(), self.in_flight.clone()),
            self.source_stream.follow,
            tx,
        ));

        let result = self
            .write_loop(&mut rx, writer.as_mut(), &mut generation, &cancel)
            .await;
        drop(rx);
        reader.abort();
        if result.is_err() {
            if let Err(e) = writer.abort().await {
                warn!(stream = %self.key, "could not clean up after the failure: {e}");
            }
        }
        result
    }

    /// The checkpoint to resume from and the state store generation to compare-and-set.
    fn resume_point(
        &self,
        writer: &dyn StreamWriter,
    ) -> Result<(Option<Checkpoint>, Option<i64>), StreamStop> {
        let stored = self
            .state
            .get_state(&self.key)
            .map_err(|e| self.fail("state store", e))?;
        let generation = stored.as_ref().map(|s| s.generation);
        if self.from_scratch {
            info!(stream = %self.key, "full refresh: reading from the start");
            return Ok((None, generation));
        }
        match (writer.committed_checkpoint(), stored) {
            (Some(dest), Some(stored)) if dest != stored.checkpoint => {
                info!(stream = %self.key, "the destination committed past the state store (a crash between the two); resuming from the destination's checkpoint");
                Ok((Some(dest), generation))
            }
            (Some(dest), _) => Ok((Some(dest), generation)),
            (None, Some(_)) if writer.stores_checkpoints() => {
                warn!(stream = %self.key, "the destination holds no data for this stream although the state store has a checkpoint; reading from the start");
                Ok((None, generation))
            }
            (None, stored) => Ok((stored.map(|s| s.checkpoint), generation)),
        }
    }

    async fn write_loop(
        &self,
        rx: &mut mpsc::Receiver<Result<Item, StreamStop>>,
        writer: &mut dyn StreamWriter,
        generation: &mut Option<i64>,
        cancel: &CancellationToken,
    ) -> Result<(), StreamStop> {
        // The latest checkpoint not yet committed, and whether its commit is due. A due commit
        // waits for the next message: if the stream ends instead, the checkpoint is the final
        // one and goes to `finish`, so a final checkpoint never becomes durable without the
        // publication that goes with it (overwrite swaps, dedup settles).
        let mut pending: Option<Checkpoint> = None;
        // Whether anything reached the writer after the pending checkpoint: those rows belong
        // to the next checkpoint, so the pending one may then only be committed before the
        // next item is written (the `due` path), never on its own.
        let mut written_past_pending = false;
        let mut due = false;
        let mut last_committed: Option<Checkpoint> = None;
        let mut last_commit = Instant::now();
        // Rows handed to the writer, and those the pending checkpoint covers.
        let mut rows_written = 0u64;
        let mut pending_rows = 0u64;
        loop {
            // A following read has no end: when the source goes quiet after a checkpoint (an
            // idle server), the checkpoint is committed once `commit_interval` has passed, so
            // what was applied is acked and the slot confirms it, instead of waiting for the
            // next message (which may take as long as unrelated WAL takes to appear).
            let idle_commit = match &pending {
                Some(_) if self.source_stream.follow && !written_past_pending => {
                    Some(self.commit_interval.saturating_sub(last_commit.elapsed()))
                }
                _ => None,
            };
            let item = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(StreamStop::Cancelled),
                item = rx.recv() => item,
                _ = tokio::time::sleep(idle_commit.unwrap_or_default()), if idle_commit.is_some() => {
                    if let Some(checkpoint) = pending.take() {
                        self.commit(writer, &checkpoint, generation, false).await?;
                        self.progress.set_committed_rows(pending_rows);
                        last_commit = Instant::now();
                        last_committed = Some(checkpoint);
                    }
                    due = false;
                    continue;
                }
            };
            if item.is_some() && due {
                if let Some(checkpoint) = pending.take() {
                    self.commit(writer, &checkpoint, generation, false).await?;
                    self.progress.set_committed_rows(pending_rows);
                    crate::failpoint::pause("after_commit").await;
                    last_commit = Instant::now();
                    last_committed = Some(checkpoint);
                }
                due = false;
            }
            if matches!(
                item,
                Some(Ok(Item::Batch(..)
                    | Item::Changes(..)
                    | Item::SchemaChange(_)))
            ) {
                written_past_pending = pending.is_some();
            }
            match item {
                None => break,
                Some(Err(stop)) => return Err(stop),
                // The permits go back once `write` returned: the destination consumed the
                // batch (what it keeps is in its own bounded buffers).
                Some(Ok(Item::Batch(batch, permit))) => {
                    rows_written += batch.num_rows() as u64;
                    writer
                        .write(batch)
                        .await
                        .map_err(|e| self.fail("destination", e))?;
                    drop(permit);
                }
                Some(Ok(Item::Changes(changes, permit))) => {
                    rows_written += changes.len() as u64;
                    writer
                        .write_changes(*changes)
                        .await
                        .map_err(|e| self.fail("destination", e))?;
                    drop(permit);
                }
                Some(Ok(Item::SchemaChange(schema))) => {
                    info!(stream = %self.key, "the source's schema changed; evolving the product table");
                    writer
                        .schema_change(schema)
                        .await
                        .map_err(|e| self.fail("destination", e))?;
                }
                Some(Ok(Item::Checkpoint(checkpoint))) => {
                    due = last_commit.elapsed() >= self.commit_interval;
                    pending = Some(checkpoint);
                    written_past_pending = false;
                    pending_rows = rows_written;
                }
            }
        }
        if cancel.is_cancelled() {
            return Err(StreamStop::Cancelled);
        }
        self.progress.set_phase(Phase::Finishing);
        info!(stream = %self.key, rows = rows_written, "read complete; finishing (final commit and publication)");
        crate::failpoint::pause("finishing").await;
        // The final commit publishes (overwrite swaps, dedup settles) even when the last
        // checkpoint was already committed.
        let Some(last) = pending.or(last_committed) else {
            return Err(StreamStop::Failed(
                "source: the read ended without a final checkpoint (a connector bug); nothing was published".into(),
            ));
        };
        self.commit(writer, &last, generation, true).await?;
        self.progress.set_committed_rows(rows_written);
        Ok(())
    }

    /// Commit → record → ack, in that order and only in that order.
    async fn commit(
        &self,
        writer: &mut dyn StreamWriter,
        checkpoint: &Checkpoint,
        generation: &mut Option<i64>,
        finish: bool,
    ) -> Result<(), StreamStop> {
        let committed = if finish {
            writer.finish(checkpoint).await
        } else {
            writer.commit(checkpoint).await
        };
        committed.map_err(|e| self.fail("destination commit", e))?;
        self.progress.set_bytes_written(writer.bytes_written());
        crate::failpoint::hit("after_destination_commit");
        // SQLite fsyncs on every record: keep it off the async runtime's workers.
        let (state, key, run_id, cp, expected) = (
            self.state.clone(),
            self.key.clone(),
            self.run_id.clone(),
            checkpoint.clone(),
            *generation,
        );
        let new_generation =
            tokio::task::spawn_blocking(move || state.put_state(&key, &cp, &run_id, expected))
                .await
                .map_err(|e| self.fail("state store", e))?
                .map_err(|e| self.fail("state store", e))?;
        *generation = Some(new_generation);
        self.progress.committed();
        self.source
            .ack(&self.source_stream, checkpoint)
            .await
            .map_err(|e| self.fail("source ack", e))?;
        Ok(())
    }
}

/// Pulls the source, applies the mappers and hands batches on through the bounded channel,
/// each with the run's permits for its bytes (see [`crate::inflight`] for the protocol).
async fn read_and_map(
    mut messages: weft_core::MessageStream,
    mut mappers: MapperChain,
    (mut source_schema, check): (SchemaRef, SchemaCheck),
    (progress, pool): (Arc<StreamProgress>, Arc<InFlight>),
    follow: bool,
    tx: mpsc::Sender<Result<Item, StreamStop>>,
) {
    // What this stream's last batch took: reserved before asking the source for the next.
    let mut estimate = 0u64;
    loop {
        let reserved = match estimate {
            0 => None,
            bytes => match pool.reserve(bytes).await {
                Some(permit) => Some(permit),
                None => break,
            },
        };
        let (message, reserved) = next_message(&mut messages, reserved, follow).await;
        let Some(message) = message else { break };
        let item = match message {
            Ok(SourceMessage::Records(batch)) => {
                let rows = batch.num_rows() as u64;
                match mappers.apply(batch) {
                    Ok(mapped) => {
                        let bytes = mapped.get_array_memory_size() as u64;
                        progress.add(rows, bytes);
                        estimate = bytes;
                        match pool.settle(reserved, bytes).await {
                            Some(permit) => Ok(Item::Batch(mapped, permit)),
                            None => break,
                        }
                    }
                    Err(e) => Err(StreamStop::Failed(format!("mappers: {e}"))),
                }
            }
            Ok(SourceMessage::Checkpoint(cp)) => Ok(Item::Checkpoint(cp)),
            Ok(SourceMessage::Estimate { rows }) => {
                progress.set_estimate(rows);
                continue;
            }
            Ok(SourceMessage::OffSchema { values }) => {
                progress.add_off_schema(values);
                continue;
            }
            Ok(SourceMessage::SchemaChange(schema)) => {
                // Mappers are recompiled; the destination learns the new output schema.
                let recompiled = MapperChain::recompile(&mappers, &schema).map_err(|e| {
                    format!("source: the stream's schema changed mid-read and the mappers no longer apply: {e}")
                });
                let checked = recompiled.and_then(|next| {
                    check(&source_schema, &schema, next.output_schema())
                        .map(|()| next)
                        .map_err(|e| format!("source: the stream's schema changed mid-read: {e}"))
                });
                source_schema = schema.clone();
                match checked {
                    Ok(next) if next.output_schema() == mappers.output_schema() => {
                        mappers = next;
                        continue;
                    }
                    Ok(next) => {
                        let output = next.output_schema().clone();
                        mappers = next;
                        Ok(Item::SchemaChange(output))
                    }
                    Err(e) => Err(StreamStop::Failed(e)),
                }
            }
            Ok(SourceMessage::Changes(changes)) => {
                let rows = changes.len() as u64;
                match changes.validate() {
                    Err(e) => Err(StreamStop::Failed(format!("source: {e} (a connector bug)"))),
                    Ok(()) => match mappers.apply_changes(*changes) {
                        Ok(mapped) => {
                            let bytes = mapped.rows.get_array_memory_size() as u64;
                            progress.add(rows, bytes);
                            estimate = bytes;
                            match pool.settle(reserved, bytes).await {
                                Some(permit) => Ok(Item::Changes(Box::new(mapped), permit)),
                                None => break,
                            }
                        }
                        Err(e) => Err(StreamStop::Failed(format!("mappers: {e}"))),
                    },
                }
            }
            Err(e) => Err(StreamStop::Failed(format!("source: {e}"))),
        };
        let stop = item.is_err();
        let changes = matches!(item, Ok(Item::Changes(..)));
        if tx.send(item).await.is_err() || stop {
            break;
        }
        if changes {
            crate::failpoint::pause("changes_handed_on").await;
        }
    }
}

/// The source's next message, waited for with `reserved` held. A following stream's source
/// quiet for [`IDLE`] gets the reservation given back: it may stay idle for good, and must not
/// keep busy streams waiting. A bounded read keeps it while its source works (under load a
/// batch can take longer than that to make, and a batch made after the reservation went back
/// is held uncounted until permits are free again: 50 streams held ~250 MiB that way).
async fn next_message(
    messages: &mut weft_core::MessageStream,
    reserved: Option<Permit>,
    follow: bool,
) -> (Option<weft_core::Result<SourceMessage>>, Option<Permit>) {
    let Some(permit) = reserved else {
        return (messages.next().await, None);
    };
    if !follow {
        return (messages.next().await, Some(permit));
    }
    let mut next = messages.next();
    tokio::select! {
        message = &mut next => (message, Some(permit)),
        _ = tokio::time::sleep(IDLE) => {
            drop(permit);
            (next.await, None)
        }
    }
}
