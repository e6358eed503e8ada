//! "Open a writer for a stream": [`TestStream`] names one product stream (its
//! [`StreamTarget`]) and configures it (its [`ConfiguredStream`]) the way the engine would, so
//! that a destination's tests, and the destination suite itself, open writers without spelling
//! out both structs each time.
//!
//! ```
//! use std::sync::Arc;
//! use weft_conformance::TestStream;
//! use weft_core::arrow_schema::{DataType, Field, Schema};
//! use weft_core::{SyncMode, WriteMode};
//!
//! let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
//! let stream = TestStream::new("sales", "shop", "orders")
//!     .schema(schema)
//!     .write(WriteMode::AppendDedup)
//!     .sync(SyncMode::Incremental)
//!     .key(["id"])
//!     .cursor("id");
//! assert_eq!(stream.target().stream.as_str(), "orders");
//! assert_eq!(stream.configured().primary_key, vec!["id".to_string()]);
//! // In an async test: `let writer = stream.open(destination.as_ref()).await?;`
//! ```

use weft_core::arrow_schema::SchemaRef;
use weft_core::{
    ConfiguredStream, Destination, DomainName, ProductName, StreamDescriptor, StreamName,
    StreamTarget, StreamWriter, SyncMode, WriteMode,
};

/// One product stream as a test writes it: `domain/product/stream`, its schema, how it is read
/// and written. Defaults: no columns, full refresh, append, no key, no cursor, run id `run-1`.
#[derive(Debug, Clone)]
pub struct TestStream {
    domain: String,
    product: String,
    stream: String,
    schema: SchemaRef,
    sync: SyncMode,
    write: WriteMode,
    key: Vec<String>,
    cursor: Option<String>,
    run_id: String,
    pipeline_id: Option<String>,
    follow: bool,
}

impl TestStream {
    /// The stream `domain/product/stream`. The names must be valid weft names (a test's own
    /// constants), so an invalid one panics naming it.
    pub fn new(domain: &str, product: &str, stream: &str) -> Self {
        Self {
            domain: domain.into(),
            product: product.into(),
            stream: stream.into(),
            schema: std::sync::Arc::new(weft_core::arrow_schema::Schema::empty()),
            sync: SyncMode::FullRefresh,
            write: WriteMode::Append,
            key: Vec::new(),
            cursor: None,
            run_id: "run-1".into(),
            pipeline_id: None,
            follow: false,
        }
    }

    /// How it is written (default append).
    pub fn write(mut self, mode: WriteMode) -> Self {
        self.write = mode;
        self
    }

    /// How it is read (default full refresh); the descriptor supports this mode only.
    pub fn sync(mut self, mode: SyncMode) -> Self {
        self.sync = mode;
        self
    }

    /// The primary key columns (default none), on both the descriptor and the configuration.
    pub fn key<S: ToString>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.key = columns.into_iter().map(|c| c.to_string()).collect();
        self
    }

    /// The cursor column (default none).
    pub fn cursor(mut self, column: impl Into<String>) -> Self {
        self.cursor = Some(column.into());
        self
    }

    /// The run id of the target (default `run-1`).
    pub fn run(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = run_id.into();
        self
    }

    /// The pipeline id (default `domain.product.stream`).
    pub fn pipeline(mut self, id: impl Into<String>) -> Self {
        self.pipeline_id = Some(id.into());
        self
    }

    /// A CDC stream followed without end (default `false`).
    pub fn follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// The columns writers are opened with (default none).
    pub fn schema(mut self, schema: SchemaRef) -> Self {
        self.schema = schema;
        self
    }

    /// Where the stream is written.
    pub fn target(&self) -> StreamTarget {
        StreamTarget {
            domain: DomainName::new(&self.domain)
                .unwrap_or_else(|e| panic!("test domain `{}`: {e}", self.domain)),
            product: ProductName::new(&self.product)
                .unwrap_or_else(|e| panic!("test product `{}`: {e}", self.product)),
            stream: self.stream_name(),
            run_id: self.run_id.clone(),
            metadata: Default::default(),
        }
    }

    /// The stream as the engine configures it for the destination.
    pub fn configured(&self) -> ConfiguredStream {
        ConfiguredStream {
            descriptor: StreamDescriptor {
                name: self.stream_name(),
                schema: self.schema.clone(),
                primary_key: self.key.clone(),
                cursor_candidates: self.cursor.iter().cloned().collect(),
                source_defined_cursor: None,
                supported_sync_modes: vec![self.sync],
                row_estimate: None,
            },
            sync_mode: self.sync,
            write_mode: self.write,
            cursor_field: self.cursor.clone(),
            primary_key: self.key.clone(),
            pipeline_id: self
                .pipeline_id
                .clone()
                .unwrap_or_else(|| format!("{}.{}.{}", self.domain, self.product, self.stream)),
            follow: self.follow,
        }
    }

    /// Opens a writer for the stream on `destination`.
    pub async fn open(
        &self,
        destination: &dyn Destination,
    ) -> weft_core::Result<Box<dyn StreamWriter>> {
        destination
            .open(&self.target(), &self.configured(), self.schema.clone())
            .await
    }

    fn stream_name(&self) -> StreamName {
        StreamName::new(&self.stream)
            .unwrap_or_else(|e| panic!("test stream `{}`: {e}", self.stream))
    }
}
