//! What every read shares: the table being read, its SELECT list, running one binary COPY into
//! a [`CopyDecoder`], and the bounded channel the engine pulls.

use std::sync::Arc;

use arrow_schema::SchemaRef;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use weft_core::{ConnectorError, MessageStream, Result, SourceMessage};

use crate::config::PostgresConfig;
use crate::connect::read_error;
use crate::decode::{CopyDecoder, Decoded, Position};
use crate::discover::PgTable;
use crate::sql::qualified;
use crate::types::Kind;

/// One stream's table, ready to be read.
#[derive(Debug, Clone)]
pub struct ReadCtx {
    pub config: Arc<PostgresConfig>,
    pub stream: String,
    pub table: PgTable,
    pub schema: SchemaRef,
    pub kinds: Vec<Kind>,
}

impl ReadCtx {
    pub fn new(config: Arc<PostgresConfig>, table: PgTable) -> Self {
        Self {
            config,
            stream: table.stream_name(),
            schema: table.arrow_schema(),
            kinds: table.columns.iter().map(|c| c.read_kind()).collect(),
            table,
        }
    }

    pub fn table_sql(&self) -> String {
        qualified(&self.table.schema, &self.table.name)
    }

    /// The SELECT list: each column as is, through its cast, or cast to text when weft has no
    /// binary decoder.
    pub fn select_list(&self) -> String {
        self.table
            .columns
            .iter()
            .map(|c| c.select_expr())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Warns once per read about columns read as text.
    pub fn warn_text_casts(&self) {
        for c in self.table.columns.iter().filter(|c| c.kind.is_none()) {
            tracing::warn!(
                "stream `{}`: column `{}` ({}) has no binary decoder in weft; it is read as its text form",
                self.stream,
                c.name,
                c.sql_type
            );
        }
    }

    pub fn decoder(&self, position: Position) -> CopyDecoder {
        CopyDecoder::new(
            self.schema.clone(),
            &self.kinds,
            position,
            self.config.batch_size,
            self.config.batch_bytes,
        )
    }

    pub fn read_error(&self, e: &tokio_postgres::Error) -> ConnectorError {
        read_error(
            &self.stream,
            &self.table.schema,
            &self.table.name,
            &self.config.user,
            e,
        )
    }

    fn decode_error(&self, e: String) -> ConnectorError {
        ConnectorError::Schema(format!("stream `{}`: {e}", self.stream))
    }

    /// Runs `COPY (query) TO STDOUT (FORMAT binary)`, handing each batch to `emit`; stops
    /// early (returning `Ok(false)`) when `emit` does.
    pub async fn copy<F, Fut>(
        &self,
        client: &Client,
        query: &str,
        position: Position,
        mut emit: F,
    ) -> Result<bool>
    where
        F: FnMut(Decoded) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let sql = format!("COPY ({query}) TO STDOUT (FORMAT binary)");
        tracing::debug!(stream = %self.stream, "{sql}");
        let mut decoder = self.decoder(position);
        let stream = client
            .copy_out(sql.as_str())
            .await
            .map_err(|e| self.read_error(&e))?;
        futures::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.read_error(&e))?;
            decoder.feed(&chunk).map_err(|e| self.decode_error(e))?;
            for decoded in std::mem::take(&mut decoder.ready) {
                if !emit(decoded).await {
                    return Ok(false);
                }
            }
        }
        decoder.finish().map_err(|e| self.decode_error(e))?;
        for decoded in std::mem::take(&mut decoder.ready) {
            if !emit(decoded).await {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The engine's side of a read: a small bounded channel turned into a [`MessageStream`].
pub fn channel() -> (mpsc::Sender<Result<SourceMessage>>, MessageStream) {
    let (tx, rx) = mpsc::channel::<Result<SourceMessage>>(2);
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    (tx, stream.boxed())
}

/// Aborts spawned tasks when dropped (the read was dropped or failed).
#[derive(Default)]
pub struct TaskGuard(pub Vec<tokio::task::JoinHandle<()>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
