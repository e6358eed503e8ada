//! The [`Destination`] and [`StreamWriter`] traits.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;

use crate::catalog::ConfiguredStream;
use crate::checkpoint::Checkpoint;
use crate::error::{ConnectorError, Result};
use crate::message::ChangeBatch;
use crate::metadata::ProductMetadata;
use crate::names::{DomainName, ProductName, StreamName};
use crate::source::Source;

/// Where a stream lands: the product table of one stream of one product of one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTarget {
    /// The domain owning the product.
    pub domain: DomainName,
    /// The data product.
    pub product: ProductName,
    /// The stream of the product.
    pub stream: StreamName,
    /// The run writing, recorded with the data where the destination can.
    pub run_id: String,
    /// What the product says about itself, recorded with the data where the destination can
    /// (Parquet key-value metadata, PostgreSQL comments).
    pub metadata: ProductMetadata,
}

/// A configured destination (a domain's product store).
#[async_trait]
pub trait Destination: Send + Sync {
    /// Checks that the destination can be written with this config.
    async fn check(&self) -> Result<()>;

    /// Prepares one stream for writing in its write mode, with the schema the engine will
    /// write (after mappers). Recovers from an earlier crash: uncommitted leftovers are dropped.
    async fn open(
        &self,
        target: &StreamTarget,
        stream: &ConfiguredStream,
        schema: SchemaRef,
    ) -> Result<Box<dyn StreamWriter>>;

    /// Forgets one stream: drops its product table and the checkpoint stored with it, so the
    /// next run starts from scratch (`weft sync reset`). Destinations that cannot keep the
    /// default, which says so.
    async fn reset(&self, target: &StreamTarget, stream: &ConfiguredStream) -> Result<()> {
        let _ = stream;
        Err(ConnectorError::Unsupported(format!(
            "this destination cannot reset stream `{}`; drop its table by hand",
            target.stream
        )))
    }

    /// This store read back: a [`Source`] of the published streams of one product it holds,
    /// for products that read another product (`source: { product: domain/product }`). Its
    /// checkpoints say which published version was read. `None` when the store cannot be read
    /// back (the default).
    fn product_reader(
        &self,
        domain: &DomainName,
        product: &ProductName,
    ) -> Option<Result<Box<dyn Source>>> {
        let _ = (domain, product);
        None
    }
}

/// Writes one stream. Batches are buffered until [`StreamWriter::commit`] makes them durable.
#[async_trait]
pub trait StreamWriter: Send {
    /// The checkpoint stored together with the data by the last commit, if this destination
    /// stores checkpoints atomically with data. On restart it wins over the state store.
    fn committed_checkpoint(&self) -> Option<Checkpoint>;

    /// Whether this destination stores checkpoints atomically with its data. When it does, an
    /// empty [`StreamWriter::committed_checkpoint`] means "start from scratch" (the product table
    /// was emptied or removed), whatever the state store remembers.
    fn stores_checkpoints(&self) -> bool {
        false
    }

    /// Bytes this writer has made durable in the destination so far, as the destination counts
    /// them (a lake: the Parquet files written, rewrites included; a database: the COPY data
    /// sent), for the run summary's `written`. Read after each commit, so it need only be
    /// up to date then. `None` (the default) when the destination does not count them.
    fn bytes_written(&self) -> Option<u64> {
        None
    }

    /// Buffers or writes a batch; nothing is visible or durable before a commit.
    async fn write(&mut self, batch: RecordBatch) -> Result<()>;

    /// Applies change rows (CDC). Destinations that cannot apply changes keep the default.
    async fn write_changes(&mut self, _changes: ChangeBatch) -> Result<()> {
        Err(ConnectorError::Unsupported(
            "this destination does not apply change batches (CDC)".into(),
        ))
    }

    /// The schema changed mid-stream: later batches have `schema`.
    async fn schema_change(&mut self, schema: SchemaRef) -> Result<()> {
        let _ = schema;
        Err(ConnectorError::Unsupported(
            "this destination does not handle schema changes mid-stream".into(),
        ))
    }

    /// Makes everything written so far durable, together with `checkpoint`, and returns only
    /// then. In overwrite mode the data is durable but not yet visible to readers.
    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<()>;

    /// The stream was read completely: commits with the final checkpoint and publishes
    /// (overwrite swaps the table now; dedup modes settle to one row per key).
    async fn finish(&mut self, checkpoint: &Checkpoint) -> Result<()>;

    /// Drops everything written since the last commit (cancellation, failure).
    async fn abort(&mut self) -> Result<()>;
}
