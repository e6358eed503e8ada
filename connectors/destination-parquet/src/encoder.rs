//! Encoding batches into Parquet files, off the async runtime.
//!
//! [`PartWriter`] is the synchronous part: it writes batches into `part-*.parquet` files in one
//! folder, rolls to a new file past `file_bytes`, and seals files (footer + fsync) on demand.
//! [`Encoder`] runs a `PartWriter` on a dedicated thread: encoding and compression are CPU heavy
//! and must not block tokio workers. [`Encoder::write`] returns once its batch is encoded into
//! the open row group: the engine counts a batch as in flight until its destination's `write`
//! returned (weft-engine's `inflight`), and from then on its bytes are the row group's, which
//! the budget counts. The engine's channel before the writer is what lets the next batches be
//! read and mapped while one is encoded.
//!
//! The open file's buffered row group counts against the process's memory budget
//! ([`crate::budget`]): it lives in a [`Slot`] the budget can flush from another writer's
//! thread when the total passes the limit.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::sync::{mpsc, oneshot};
use weft_core::{ConnectorError, Result};

use crate::layout;

/// A data file closed, fsynced and waiting in a staging folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StagedFile {
    pub name: String,
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

struct OpenPart {
    name: String,
    path: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
    /// A flush the budget made failed: the file has a hole and must not be sealed.
    failed: Option<String>,
}

/// A writer's open file, shared with the memory budget.
#[derive(Default)]
struct Slot {
    part: Mutex<Option<OpenPart>>,
    /// The open file's buffered bytes ([`ArrowWriter::memory_size`]) as last reported.
    used: AtomicUsize,
}

impl Slot {
    fn part(&self) -> MutexGuard<'_, Option<OpenPart>> {
        self.part
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl crate::budget::Spill for Slot {
    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_spill(&self) -> Option<usize> {
        let mut guard = self.part.try_lock().ok()?;
        let Some(part) = guard.as_mut() else {
            return Some(0);
        };
        if part.failed.is_some() {
            return None;
        }
        let before = self.used();
        if let Err(e) = part.writer.flush() {
            part.failed = Some(format!(
                "flushing a row group to {}: {e}",
                part.path.display()
            ));
            return None;
        }
        let now = part.writer.memory_size();
        self.used.store(now, Ordering::Relaxed);
        Some(before.saturating_sub(now))
    }
}

/// Writes batches into rolling Parquet files in one folder.
pub(crate) struct PartWriter {
    /// `stream `x`` — prefixes error messages.
    label: String,
    dir: PathBuf,
    schema: SchemaRef,
    props: WriterProperties,
    file_bytes: u64,
    next_seq: u64,
    /// The open file, if any.
    current: Arc<Slot>,
    sealed: Vec<StagedFile>,
}

impl PartWriter {
    pub fn new(
        label: String,
        dir: PathBuf,
        schema: SchemaRef,
        props: WriterProperties,
        file_bytes: u64,
        next_seq: u64,
    ) -> Self {
        let current = Arc::new(Slot::default());
        let member: Arc<dyn crate::budget::Spill> = current.clone();
        crate::budget::budget().register(Arc::downgrade(&member));
        Self {
            label,
            dir,
            schema,
            props,
            file_bytes,
            next_seq,
            current,
            sealed: Vec::new(),
        }
    }

    fn parquet_err(&self, path: &Path, err: parquet::errors::ParquetError) -> ConnectorError {
        ConnectorError::Other(format!("{}: writing {}: {err}", self.label, path.display()))
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let slot = self.current.clone();
        let mut guard = slot.part();
        let part = match &mut *guard {
            Some(part) => part,
            open => {
                let name = layout::part_name(self.next_seq);
                self.next_seq += 1;
                let path = self.dir.join(&name);
                let file = File::create_new(&path)
                    .map_err(|e| ConnectorError::io("creating", &path, e))?;
                let writer = ArrowWriter::try_new(
                    file,
                    crate::product_meta::file_schema(&self.schema, &self.props),
                    Some(self.props.clone()),
                )
                .map_err(|e| {
                    ConnectorError::Other(format!(
                        "{}: writing {}: {e}",
                        self.label,
                        path.display()
                    ))
                })?;
                open.insert(OpenPart {
                    name,
                    path,
                    writer,
                    rows: 0,
                    failed: None,
                })
            }
        };
        if let Some(why) = &part.failed {
            return Err(ConnectorError::Other(format!("{}: {why}", self.label)));
        }
        if let Err(e) = part.writer.write(batch) {
            let path = part.path.clone();
            return Err(self.parquet_err(&path, e));
        }
        part.rows += batch.num_rows() as u64;
        slot.used
            .store(part.writer.memory_size(), Ordering::Relaxed);
        let size = part.writer.bytes_written() + part.writer.in_progress_size();
        drop(guard);
        if size as u64 >= self.file_bytes {
            self.close_current()?;
        }
        crate::budget::budget().settle();
        Ok(())
    }

    /// Writes the footer of the open file and fsyncs it.
    fn close_current(&mut self) -> Result<()> {
        let Some(part) = self.current.part().take() else {
            return Ok(());
        };
        self.current.used.store(0, Ordering::Relaxed);
        if let Some(why) = part.failed {
            return Err(ConnectorError::Other(format!("{}: {why}", self.label)));
        }
        let file = match part.writer.into_inner() {
            Ok(file) => file,
            Err(e) => return Err(self.parquet_err(&part.path, e)),
        };
        file.sync_all()
            .map_err(|e| ConnectorError::io("syncing", &part.path, e))?;
        let bytes = file
            .metadata()
            .map_err(|e| ConnectorError::io("reading", &part.path, e))?
            .len();
        self.sealed.push(StagedFile {
            name: part.name,
            path: part.path,
            rows: part.rows,
            bytes,
        });
        Ok(())
    }

    /// Closes the open file; returns every file finished since the last seal, durable on disk
    /// (the folder entry too).
    pub fn seal(&mut self) -> Result<Vec<StagedFile>> {
        self.close_current()?;
        if !self.sealed.is_empty() {
            layout::fsync_dir(&self.dir)?;
        }
        Ok(std::mem::take(&mut self.sealed))
    }

    /// Later batches have `schema`: the open file is closed (it keeps the old schema and is
    /// handed out by the next seal) and the next file is started with the new one.
    pub fn set_schema(&mut self, schema: SchemaRef) -> Result<()> {
        self.close_current()?;
        self.schema = schema;
        Ok(())
    }

    /// Later files go to `dir` (a new generation); call right after a seal.
    pub fn set_dir(&mut self, dir: PathBuf) -> Result<()> {
        self.close_current()?;
        self.dir = dir;
        Ok(())
    }

    /// Drops every file not handed out by [`PartWriter::seal`] yet.
    pub fn discard(&mut self) -> Result<()> {
        let open = self.current.part().take().map(|p| p.path);
        self.current.used.store(0, Ordering::Relaxed);
        let sealed = self.sealed.drain(..).map(|f| f.path);
        for path in open.into_iter().chain(sealed).collect::<Vec<_>>() {
            layout::remove_file(&path)?;
        }
        Ok(())
    }
}

enum Command {
    /// Answered once the batch is in the row group (or dropped after an earlier failure).
    Batch(RecordBatch, oneshot::Sender<()>),
    Seal(oneshot::Sender<Result<Vec<StagedFile>>>),
    Discard(oneshot::Sender<Result<()>>),
    Schema(SchemaRef, oneshot::Sender<Result<()>>),
    Dir(PathBuf, oneshot::Sender<Result<()>>),
}

/// A [`PartWriter`] on its own thread.
pub(crate) struct Encoder {
    label: String,
    tx: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    /// The first write error, reported by the next `write` instead of waiting for a commit.
    error: Arc<Mutex<Option<ConnectorError>>>,
}

/// Commands queued ahead of the encoder: a writer waits for its batch to be encoded, so there
/// is never more than one batch here.
const QUEUE: usize = 1;

impl Encoder {
    pub fn spawn(writer: PartWriter) -> Result<Self> {
        let label = writer.label.clone();
        let (tx, rx) = mpsc::channel(QUEUE);
        let error = Arc::new(Mutex::new(None));
        let slot = error.clone();
        let thread = std::thread::Builder::new()
            .name("weft-parquet-encoder".into())
            .spawn(move || run(writer, rx, slot))
            .map_err(|e| {
                ConnectorError::Other(format!("{label}: starting the encoder thread: {e}"))
            })?;
        Ok(Self {
            label,
            tx: Some(tx),
            thread: Some(thread),
            error,
        })
    }

    fn gone(&self) -> ConnectorError {
        ConnectorError::Other(format!(
            "{}: the Parquet encoder thread stopped",
            self.label
        ))
    }

    fn take_error(&self) -> Option<ConnectorError> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }

    pub async fn write(&self, batch: RecordBatch) -> Result<()> {
        if let Some(err) = self.take_error() {
            return Err(err);
        }
        let tx = self.tx.as_ref().ok_or_else(|| self.gone())?;
        let (done, encoded) = oneshot::channel();
        tx.send(Command::Batch(batch, done))
            .await
            .map_err(|_| self.gone())?;
        encoded.await.map_err(|_| self.gone())?;
        // A failure encoding this batch is reported now rather than at the commit.
        match self.take_error() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    pub async fn seal(&self) -> Result<Vec<StagedFile>> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or_else(|| self.gone())?;
        tx.send(Command::Seal(reply))
            .await
            .map_err(|_| self.gone())?;
        let result = rx.await.map_err(|_| self.gone())?;
        // A failed batch was already reported through `result`; do not report it twice.
        let _ = self.take_error();
        result
    }

    /// Later batches have `schema` (see [`PartWriter::set_schema`]).
    pub async fn set_schema(&self, schema: SchemaRef) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or_else(|| self.gone())?;
        tx.send(Command::Schema(schema, reply))
            .await
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Later files go to `dir` (see [`PartWriter::set_dir`]).
    pub async fn set_dir(&self, dir: PathBuf) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or_else(|| self.gone())?;
        tx.send(Command::Dir(dir, reply))
            .await
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    pub async fn discard(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or_else(|| self.gone())?;
        tx.send(Command::Discard(reply))
            .await
            .map_err(|_| self.gone())?;
        let _ = self.take_error();
        rx.await.map_err(|_| self.gone())?
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // Closing the channel ends the thread; joining makes sure it creates no file after the
        // writer is gone (a reopened writer's recovery would otherwise race with it).
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    mut writer: PartWriter,
    mut rx: mpsc::Receiver<Command>,
    slot: Arc<Mutex<Option<ConnectorError>>>,
) {
    // After a failed batch, later batches are dropped and the next seal fails: a commit must
    // never make a file with a hole in it durable.
    let mut failed: Option<String> = None;
    while let Some(command) = rx.blocking_recv() {
        match command {
            Command::Batch(batch, done) => {
                if failed.is_none() {
                    if let Err(err) = writer.write(&batch) {
                        failed = Some(err.to_string());
                        if let Ok(mut slot) = slot.lock() {
                            slot.get_or_insert(err);
                        }
                    }
                }
                // The batch is in the row group now (or dropped): its memory is the writer's.
                drop(batch);
                let _ = done.send(());
            }
            Command::Seal(reply) => {
                let result = match &failed {
                    Some(msg) => Err(ConnectorError::Other(format!(
                        "nothing was committed: an earlier write failed ({msg})"
                    ))),
                    None => writer.seal(),
                };
                let _ = reply.send(result);
            }
            Command::Schema(schema, reply) => {
                let _ = reply.send(writer.set_schema(schema));
            }
            Command::Dir(dir, reply) => {
                let _ = reply.send(writer.set_dir(dir));
            }
            Command::Discard(reply) => {
                failed = None;
                let _ = reply.send(writer.discard());
            }
        }
    }
    // The writer is gone without a commit: files left here are uncommitted and are removed by
    // the next open's recovery (or right now, best effort).
    let _ = writer.discard();
}
