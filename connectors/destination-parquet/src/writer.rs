//! [`LakeWriter`]: the async [`StreamWriter`] of one stream. Encoding runs on the encoder's
//! thread; commits, publishing and compaction run on tokio's blocking pool.

use arrow::array::RecordBatch;
use async_trait::async_trait;
use weft_core::arrow_schema::SchemaRef;
use weft_core::{ChangeBatch, Checkpoint, ConnectorError, Result, StreamWriter};

use crate::encoder::Encoder;
use crate::manifest::{column_differences, columns_of};
use crate::table::Table;

/// Writes one stream of a Parquet lake. See the crate docs for the commit protocol.
pub struct LakeWriter {
    label: String,
    schema: SchemaRef,
    /// `None` only while a blocking step runs (or after one panicked).
    table: Option<Table>,
    encoder: Encoder,
    committed: Option<Checkpoint>,
    /// A commit failed after the encoder handed its files out: those rows are not in the
    /// table, so the writer refuses to go on (and silently skip them) until `abort`.
    poisoned: bool,
    finished: bool,
    /// Some columns are stored in another type (see `storable`): batches are converted.
    converts: bool,
    /// A CDC stream: the storage schema of the stream's columns (`schema` is then the change
    /// file schema, see `changes`).
    changes: Option<SchemaRef>,
    /// Bytes of the Parquet files committed so far (new files and compactions' rewrites).
    bytes_written: u64,
}

impl LakeWriter {
    pub(crate) fn new(table: Table, encoder: Encoder, committed: Option<Checkpoint>) -> Self {
        Self {
            label: table.label.clone(),
            schema: table.schema.clone(),
            table: Some(table),
            encoder,
            committed,
            poisoned: false,
            finished: false,
            converts: false,
            changes: None,
            bytes_written: 0,
        }
    }

    pub(crate) fn converting(mut self, converts: bool) -> Self {
        self.converts = converts;
        self
    }

    pub(crate) fn with_changes(mut self, data: Option<SchemaRef>) -> Self {
        self.changes = data;
        self
    }

    fn usable(&self) -> Result<()> {
        if self.finished {
            return Err(ConnectorError::Other(format!(
                "{}: the writer already finished; open the stream again to write more",
                self.label
            )));
        }
        if self.poisoned {
            return Err(ConnectorError::Other(format!(
                "{}: an earlier commit failed; abort and resume from the last committed \
                 checkpoint",
                self.label
            )));
        }
        Ok(())
    }

    /// Runs `step` on the blocking pool with the table.
    async fn blocking<R: Send + 'static>(
        &mut self,
        step: impl FnOnce(&mut Table) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let mut table = self.table.take().ok_or_else(|| {
            ConnectorError::Other(format!(
                "{}: the writer is broken by an earlier failure; open the stream again",
                self.label
            ))
        })?;
        let (table, result) = tokio::task::spawn_blocking(move || {
            let result = step(&mut table);
            (table, result)
        })
        .await
        .map_err(|e| ConnectorError::Other(format!("{}: a lake task failed: {e}", self.label)))?;
        self.table = Some(table);
        result
    }

    async fn commit_inner(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.usable()?;
        let staged = self.encoder.seal().await?;
        let new_bytes = staged_bytes(&staged);
        let cp = checkpoint.clone();
        let result = self
            .blocking(move |t| {
                if t.publishes_at_commit() {
                    t.commit_and_publish(staged, &cp).map(Some)
                } else {
                    t.commit(staged, &cp).map(|()| None)
                }
            })
            .await;
        let result = match result {
            Ok(Some((dir, compaction))) => {
                self.bytes_written += new_bytes + log_compaction(&self.label, compaction);
                self.encoder.set_dir(dir).await
            }
            Ok(None) => {
                self.bytes_written += new_bytes;
                Ok(())
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.committed = Some(checkpoint.clone());
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }
}

#[async_trait]
impl StreamWriter for LakeWriter {
    fn committed_checkpoint(&self) -> Option<Checkpoint> {
        self.committed.clone()
    }

    fn stores_checkpoints(&self) -> bool {
        true
    }

    fn bytes_written(&self) -> Option<u64> {
        Some(self.bytes_written)
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.usable()?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.changes.is_some() {
            return Err(ConnectorError::Other(format!(
                "{}: the stream is read with CDC, so its rows must arrive as change batches \
                 (the snapshot as inserts), not as plain rows (a connector bug)",
                self.label
            )));
        }
        let batch = if self.converts {
            crate::storable::to_storage(batch, &self.schema)?
        } else {
            batch
        };
        let batch_schema = batch.schema();
        let batch = match crate::evolution::relax(&batch, &self.schema) {
            // Columns the lake stores nullable (after an evolution) arriving as not null.
            Some(relaxed) if batch_schema.fields() != self.schema.fields() => relaxed,
            _ => batch,
        };
        let batch_schema = batch.schema();
        if !std::sync::Arc::ptr_eq(&batch_schema, &self.schema)
            && batch_schema.fields() != self.schema.fields()
        {
            let diff = column_differences(&columns_of(&self.schema), &columns_of(&batch_schema));
            if !diff.is_empty() {
                return Err(ConnectorError::Schema(format!(
                    "{}: a batch does not match the schema the stream was opened with: {}",
                    self.label,
                    diff.join("; ")
                )));
            }
        }
        self.encoder.write(batch).await
    }

    async fn write_changes(&mut self, changes: ChangeBatch) -> Result<()> {
        self.usable()?;
        let Some(data) = &self.changes else {
            return Err(ConnectorError::Unsupported(format!(
                "{}: change batches (CDC) are only written to streams read in sync mode `cdc`",
                self.label
            )));
        };
        if changes.is_empty() {
            return Ok(());
        }
        let batch = crate::changes::file_batch(&self.label, &changes, data, &self.schema)?;
        self.encoder.write(batch).await
    }

    async fn schema_change(&mut self, schema: SchemaRef) -> Result<()> {
        self.usable()?;
        if self.changes.is_none() {
            return Err(ConnectorError::Unsupported(format!(
                "{}: the lake evolves the schema mid-stream only for streams read in sync mode \
                 `cdc`; run the stream again to pick up the new schema",
                self.label
            )));
        }
        let (data, converts) = crate::storable::storage_schema(&self.label, &schema);
        let file = crate::changes::file_schema(&self.label, &data)?;
        if file.fields() == self.schema.fields() {
            return Ok(());
        }
        let next = file.clone();
        self.blocking(move |t| t.schema_change(next)).await?;
        if let Err(e) = self.encoder.set_schema(file.clone()).await {
            self.poisoned = true;
            return Err(e);
        }
        self.schema = file;
        self.changes = Some(data);
        self.converts = converts;
        Ok(())
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.commit_inner(checkpoint).await
    }

    async fn finish(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.usable()?;
        let staged = self.encoder.seal().await?;
        let new_bytes = staged_bytes(&staged);
        let cp = checkpoint.clone();
        match self.blocking(move |t| t.finish(staged, &cp)).await {
            Ok(compaction) => {
                self.bytes_written += new_bytes + log_compaction(&self.label, compaction);
                self.committed = Some(checkpoint.clone());
                self.finished = true;
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }

    async fn abort(&mut self) -> Result<()> {
        self.encoder.discard().await?;
        self.blocking(|t| t.discard_uncommitted()).await?;
        self.poisoned = false;
        Ok(())
    }
}

fn staged_bytes(staged: &[crate::encoder::StagedFile]) -> u64 {
    staged.iter().map(|f| f.bytes).sum()
}

/// Logs what a compaction did; returns the bytes it wrote.
fn log_compaction(label: &str, compaction: Option<crate::dedup::Compaction>) -> u64 {
    let Some(stats) = compaction else {
        return 0;
    };
    tracing::info!(
        stream = %label,
        rows_before = stats.rows_before,
        rows_after = stats.rows_after,
        files_rewritten = stats.files_rewritten,
        row_groups_scanned = stats.row_groups_scanned,
        row_groups_skipped = stats.row_groups_skipped,
        row_groups_copied = stats.row_groups_copied,
        row_groups_encoded = stats.row_groups_encoded,
        bytes_written = stats.bytes_written,
        "compacted to the latest row per key"
    );
    stats.bytes_written
}
