//! [`PgWriter`]: the [`StreamWriter`] of one stream, on its own connection.
//!
//! A commit's data flows into an open binary COPY as batches arrive, inside the commit's
//! transaction (opened by the first write after a commit); `commit` ends the COPY, merges
//! (append_dedup), records the checkpoint in the control table and commits, all in that one
//! transaction. Nothing is held in memory beyond the batch being encoded.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures::SinkExt;
use tokio_postgres::{Client, CopyInSink};
use weft_core::arrow_array::RecordBatch;
use weft_core::arrow_schema::SchemaRef;
use weft_core::{Checkpoint, ConnectorError, Result, StreamTarget, StreamWriter, WriteMode};

use crate::connect::db_message;
use crate::encode::{encode_batch, Metadata, HEADER, TRAILER};
use crate::naming::quote;
use crate::table::{quoted_list, Layout, RUN_ID, STAGING_TABLE, SYNCED_AT};

/// Encoded bytes are handed to the connection in chunks of about this size.
const FLUSH_BYTES: usize = 1 << 20;

/// Writes one stream into PostgreSQL. See the module docs.
pub struct PgWriter {
    client: Client,
    layout: Layout,
    schema: SchemaRef,
    target: StreamTarget,
    copy_sql: String,
    /// Whether COPY rows carry the metadata columns (append, overwrite) or the merge adds them.
    copy_metadata: bool,
    /// Set while a transaction is open: the values of the commit's metadata columns.
    transaction: Option<Metadata>,
    copy: Option<Pin<Box<CopyInSink<Bytes>>>>,
    buf: BytesMut,
    committed: Option<Checkpoint>,
    /// A statement failed inside the open transaction: it is aborted on the server, so the
    /// writer refuses to go on until `abort`.
    poisoned: bool,
    finished: bool,
}

impl PgWriter {
    pub(crate) fn new(
        client: Client,
        layout: Layout,
        schema: SchemaRef,
        target: StreamTarget,
        committed: Option<Checkpoint>,
    ) -> Self {
        let names = &layout.names;
        let (into, copy_metadata) = match layout.mode {
            WriteMode::Overwrite => (names.qualified_next(), layout.metadata),
            WriteMode::Append => (names.qualified(), layout.metadata),
            WriteMode::AppendDedup => (format!("pg_temp.{}", quote(STAGING_TABLE)), false),
        };
        let mut columns: Vec<String> = layout.columns.iter().map(|(n, _)| n.clone()).collect();
        if copy_metadata {
            columns.extend([SYNCED_AT.to_string(), RUN_ID.to_string()]);
        }
        let copy_sql = format!(
            "COPY {into} ({}) FROM STDIN (FORMAT binary)",
            quoted_list(&columns)
        );
        Self {
            client,
            layout,
            schema,
            target,
            copy_sql,
            copy_metadata,
            transaction: None,
            copy: None,
            buf: BytesMut::with_capacity(FLUSH_BYTES * 2),
            committed,
            poisoned: false,
            finished: false,
        }
    }

    fn label(&self) -> &str {
        &self.layout.label
    }

    fn usable(&self) -> Result<()> {
        if self.finished {
            return Err(ConnectorError::Other(format!(
                "{}: the writer already finished; open the stream again to write more",
                self.label()
            )));
        }
        if self.poisoned {
            return Err(ConnectorError::Other(format!(
                "{}: an earlier statement failed; abort and resume from the last committed \
                 checkpoint",
                self.label()
            )));
        }
        Ok(())
    }

    fn sql_error(&self, what: &str, e: tokio_postgres::Error) -> ConnectorError {
        ConnectorError::Other(format!("{}: {what}: {}", self.label(), db_message(&e)))
    }

    /// Opens the commit's transaction if none is open.
    async fn begin(&mut self) -> Result<()> {
        if self.transaction.is_none() {
            self.client
                .batch_execute("BEGIN")
                .await
                .map_err(|e| self.sql_error("starting a transaction", e))?;
            self.transaction = Some(Metadata::now(&self.target.run_id));
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let chunk = self.buf.split().freeze();
        let Some(copy) = self.copy.as_mut() else {
            return Ok(());
        };
        if let Err(e) = copy.send(chunk).await {
            return Err(self.sql_error("copying rows", e));
        }
        Ok(())
    }

    async fn write_inner(&mut self, batch: RecordBatch) -> Result<()> {
        self.begin().await?;
        if self.copy.is_none() {
            let sink = self
                .client
                .copy_in::<_, Bytes>(self.copy_sql.as_str())
                .await
                .map_err(|e| self.sql_error("starting COPY", e))?;
            self.copy = Some(Box::pin(sink));
            self.buf.put_slice(HEADER);
        }
        let metadata = if self.copy_metadata {
            self.transaction.as_ref()
        } else {
            None
        };
        encode_batch(&batch, metadata, &mut self.buf)
            .map_err(|why| ConnectorError::Schema(format!("{}: {why}", self.layout.label)))?;
        if self.buf.len() >= FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Ends the open COPY, if any: the rows are in the transaction, not yet committed.
    async fn end_copy(&mut self) -> Result<()> {
        if self.copy.is_none() {
            return Ok(());
        }
        self.buf.put_slice(TRAILER);
        self.flush().await?;
        let mut copy = self.copy.take().expect("checked above");
        copy.as_mut()
            .finish()
            .await
            .map_err(|e| self.sql_error("finishing COPY", e))?;
        Ok(())
    }

    /// Settles the staged rows into the table: the latest row per key wins (by cursor, then
    /// by arrival), and never replaces a row with a newer cursor.
    async fn merge(&mut self) -> Result<()> {
        let layout = &self.layout;
        let table = layout.names.qualified();
        let key = quoted_list(&layout.key);
        let mut columns: Vec<String> = layout.columns.iter().map(|(n, _)| quote(n)).collect();
        let mut values = columns.clone();
        if layout.metadata {
            columns.extend([quote(SYNCED_AT), quote(RUN_ID)]);
            values.extend(["$1::text::timestamptz".into(), "$2::text".into()]);
        }
        let mut order = key.clone();
        if let Some(cursor) = &layout.cursor {
            order.push_str(&format!(", {} DESC NULLS LAST", quote(cursor)));
        }
        order.push_str(", _weft_ord DESC");
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| !layout.key.iter().any(|k| &quote(k) == *c))
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let on_conflict = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            let guard = match &layout.cursor {
                Some(cursor) => {
                    let c = quote(cursor);
                    format!(" WHERE t.{c} IS NULL OR excluded.{c} >= t.{c}")
                }
                None => String::new(),
            };
            format!("DO UPDATE SET {}{guard}", updates.join(", "))
        };
        let sql = format!(
            "INSERT INTO {table} AS t ({}) SELECT DISTINCT ON ({key}) {} FROM pg_temp.{} ORDER \
             BY {order} ON CONFLICT ({key}) {on_conflict}",
            columns.join(", "),
            values.join(", "),
            quote(STAGING_TABLE),
        );
        let result = match (&self.transaction, layout.metadata) {
            (Some(meta), true) => {
                let synced_at = meta.synced_at_text();
                self.client
                    .execute(sql.as_str(), &[&synced_at, &meta.run_id])
                    .await
            }
            _ => self.client.execute(sql.as_str(), &[]).await,
        };
        result.map_err(|e| self.sql_error("merging the staged rows by key", e))?;
        Ok(())
    }

    /// Records `checkpoint` in the control table: as the published checkpoint, or as the
    /// pending one of an overwrite generation.
    async fn record(&mut self, checkpoint: &Checkpoint, pending: bool) -> Result<()> {
        let (published, pending_cp) = if pending {
            ("NULL", "$5::text::jsonb")
        } else {
            ("$5::text::jsonb", "NULL")
        };
        let update = if pending {
            "pending_checkpoint = excluded.pending_checkpoint"
        } else {
            "checkpoint = excluded.checkpoint, pending_checkpoint = NULL"
        };
        let sql = format!(
            "INSERT INTO {} AS c (table_name, domain, product, stream, write_mode, checkpoint, \
             pending_checkpoint, run_id, committed_at) VALUES ($1, $7, $2, $3, $4, {published}, \
             {pending_cp}, $6, now()) ON CONFLICT (table_name) DO UPDATE SET domain = \
             excluded.domain, product = excluded.product, stream = excluded.stream, write_mode \
             = excluded.write_mode, {update}, run_id = excluded.run_id, committed_at = \
             excluded.committed_at",
            self.layout.names.control()
        );
        let position = checkpoint.position().to_string();
        let mode = self.layout.mode.to_string();
        self.client
            .execute(
                sql.as_str(),
                &[
                    &self.layout.names.table,
                    &self.target.product.as_str(),
                    &self.target.stream.as_str(),
                    &mode,
                    &position,
                    &self.target.run_id,
                    &self.target.domain.as_str(),
                ],
            )
            .await
            .map_err(|e| self.sql_error("recording the checkpoint", e))?;
        Ok(())
    }

    /// Replaces the product table with the next one (inside the open transaction).
    async fn swap(&mut self) -> Result<()> {
        let names = &self.layout.names;
        let sql = format!(
            "DROP TABLE IF EXISTS {}; ALTER TABLE {} RENAME TO {}",
            names.qualified(),
            names.qualified_next(),
            quote(&names.table)
        );
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|e| self.sql_error("swapping in the new table", e))
    }

    /// One transaction: the rest of the COPY, the merge or swap, the checkpoint.
    async fn commit_with(&mut self, checkpoint: &Checkpoint, finish: bool) -> Result<()> {
        self.usable()?;
        let result = async {
            self.begin().await?;
            self.end_copy().await?;
            let overwrite = self.layout.mode == WriteMode::Overwrite;
            if self.layout.mode == WriteMode::AppendDedup {
                self.merge().await?;
            }
            if overwrite && finish {
                self.swap().await?;
            }
            self.record(checkpoint, overwrite && !finish).await?;
            self.client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| self.sql_error("committing", e))?;
            self.transaction = None;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                self.committed = Some(checkpoint.clone());
                self.finished = finish;
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
impl StreamWriter for PgWriter {
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
        let batch_schema = batch.schema();
        if !std::sync::Arc::ptr_eq(&batch_schema, &self.schema)
            && batch_schema.fields() != self.schema.fields()
        {
            return Err(ConnectorError::Schema(format!(
                "{}: a batch does not match the schema the stream was opened with (opened with \
                 {:?}, got {:?})",
                self.label(),
                self.schema
                    .fields()
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>(),
                batch_schema
                    .fields()
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
            )));
        }
        let result = self.write_inner(batch).await;
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.commit_with(checkpoint, false).await
    }

    async fn finish(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.commit_with(checkpoint, true).await
    }

    async fn abort(&mut self) -> Result<()> {
        // Dropping the sink without finishing it makes the server abort the COPY.
        self.copy = None;
        self.buf.clear();
        if self.transaction.take().is_some() {
            self.client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| self.sql_error("rolling back", e))?;
        }
        self.poisoned = false;
        Ok(())
    }
}
