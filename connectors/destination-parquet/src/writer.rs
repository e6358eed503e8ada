//! [`LakeWriter`]: the async [`StreamWriter`] of one stream. Encoding runs on the encoder's
//! thread; commits, publishing and compaction run on tokio's blocking pool.

use arrow::array::RecordBatch;
use async_trait::async_trait;
use weft_core::arrow_schema::SchemaRef;
use weft_core::{Checkpoint, ConnectorError, Result, StreamWriter};

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
        }
    }

    pub(crate) fn converting(mut self, converts: bool) -> Self {
        self.converts = converts;
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
        let cp = checkpoint.clone();
        match self.blocking(move |t| t.commit(staged, &cp)).await {
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

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.usable()?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = if self.converts {
            crate::storable::to_storage(batch, &self.schema)?
        } else {
            batch
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

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.commit_inner(checkpoint).await
    }

    async fn finish(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.usable()?;
        let staged = self.encoder.seal().await?;
        let cp = checkpoint.clone();
        match self.blocking(move |t| t.finish(staged, &cp)).await {
            Ok(compaction) => {
                if let Some(stats) = compaction {
                    tracing::info!(
                        stream = %self.label,
                        rows_before = stats.rows_before,
                        rows_after = stats.rows_after,
                        files_rewritten = stats.files_rewritten,
                        "compacted to the latest row per key"
                    );
                }
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
