//! The `sample` source: deterministic generated data for demos, tests and benchmarks.
//!
//! Three streams, `customers`, `orders` and `products`, sized by [`SampleConfig::scale`]. Every
//! value is a pure function of (seed, stream, id, version in which the row last changed), so
//! tests can compute the expected table independently with [`expected_rows`].
//!
//! With `changes_per_run > 0`, each read after a completed one moves to the next *version*:
//! it updates that many existing rows and adds as many new ones, all stamped with the same
//! `updated_at` (many cursor ties), so incremental syncs have work to do.
//!
//! Modules: [`config`] (the config), [`model`] (streams, schemas, ids per version), `generate`
//! (row values into Arrow), `rows` (walking a version in id order), [`read`] (states, plans,
//! the blocking generator).

use async_trait::async_trait;
use weft_core::arrow_array::RecordBatch;
use weft_core::arrow_schema::SchemaRef;
use weft_core::{
    parse_config, spec_of, Catalog, Checkpoint, ConfiguredStream, ConnectorContext, ConnectorError,
    MessageStream, Result, Source, SourceFactory, StreamDescriptor, StreamName, SyncMode,
};

pub mod config;
mod generate;
pub mod model;
pub mod read;
mod rows;

pub use config::{SampleConfig, MAX_SCALE};
pub use model::SampleStream;
pub use read::{RowsRead, SampleState};

/// The cursor column of every sample stream.
pub const CURSOR_FIELD: &str = "updated_at";

/// The Arrow schema of a sample stream.
///
/// # Panics
/// If `stream` is not `customers`, `orders` or `products` (a test helper; the source itself
/// reports unknown streams as errors).
pub fn stream_schema(stream: &str) -> SchemaRef {
    known(stream).schema()
}

/// The full table of `stream` at `version`, in id order, in batches of `config.batch_size`:
/// what a full refresh of that version yields.
///
/// # Panics
/// If `stream` is not a sample stream, or generation fails (it cannot with valid schemas).
pub fn expected_rows(
    config: &SampleConfig,
    stream: &str,
    version: u64,
) -> impl Iterator<Item = RecordBatch> {
    rows::RowWalk::table(known(stream), config, version, 0)
        .map(|batch| batch.expect("sample batches match their schema"))
}

/// The rows of `stream` updated or added in `version ≥ 1`, in id order: what an incremental
/// read of that version yields.
///
/// # Panics
/// As [`expected_rows`].
pub fn expected_changes(
    config: &SampleConfig,
    stream: &str,
    version: u64,
) -> impl Iterator<Item = RecordBatch> {
    rows::RowWalk::changes(known(stream), config, version, 0)
        .map(|batch| batch.expect("sample batches match their schema"))
}

fn known(stream: &str) -> SampleStream {
    SampleStream::from_name(stream).unwrap_or_else(|| {
        panic!("`{stream}` is not a sample stream (customers, orders, products)")
    })
}

/// Builds [`SampleSource`]s; registered as `sample`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SampleSourceFactory;

impl SourceFactory for SampleSourceFactory {
    fn name(&self) -> &'static str {
        "sample"
    }

    fn description(&self) -> &'static str {
        "deterministic generated customers, orders and products, for demos, tests and benchmarks"
    }

    fn spec(&self) -> serde_json::Value {
        spec_of::<SampleConfig>()
    }

    fn build(
        &self,
        config: &serde_json::Value,
        _ctx: &ConnectorContext,
    ) -> Result<Box<dyn Source>> {
        let config: SampleConfig = parse_config(config)?;
        Ok(Box::new(SampleSource::new(config)?))
    }
}

/// The sample source.
#[derive(Debug, Clone)]
pub struct SampleSource {
    config: SampleConfig,
}

impl SampleSource {
    pub fn new(config: SampleConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    pub fn config(&self) -> &SampleConfig {
        &self.config
    }

    /// The catalog, without async.
    pub fn catalog(&self) -> Catalog {
        Catalog {
            streams: SampleStream::ALL
                .into_iter()
                .map(|stream| StreamDescriptor {
                    name: StreamName::new(stream.name()).expect("sample stream names are valid"),
                    schema: stream.schema(),
                    primary_key: vec!["id".into()],
                    cursor_candidates: vec![CURSOR_FIELD.into()],
                    source_defined_cursor: None,
                    supported_sync_modes: vec![SyncMode::FullRefresh, SyncMode::Incremental],
                    row_estimate: Some(stream.base_rows(&self.config)),
                })
                .collect(),
        }
    }
}

#[async_trait]
impl Source for SampleSource {
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    async fn discover(&self) -> Result<Catalog> {
        Ok(self.catalog())
    }

    async fn read(
        &self,
        stream: &ConfiguredStream,
        state: Option<&Checkpoint>,
    ) -> Result<MessageStream> {
        let name = stream.name().as_str();
        let sample = SampleStream::from_name(name)
            .ok_or_else(|| ConnectorError::StreamNotFound(name.to_string()))?;
        match stream.sync_mode {
            SyncMode::FullRefresh => {}
            SyncMode::Incremental => match stream.cursor_field.as_deref() {
                None | Some(CURSOR_FIELD) => {}
                Some(other) => {
                    return Err(ConnectorError::config(
                        "cursor_field",
                        format!(
                            "stream `{name}` can only be read incrementally by `{CURSOR_FIELD}`, \
                             not `{other}`; set `cursor_field: {CURSOR_FIELD}`"
                        ),
                    ))
                }
            },
            SyncMode::Cdc => {
                return Err(ConnectorError::Unsupported(format!(
                    "stream `{name}`: the sample source reads full_refresh or incremental, not cdc"
                )))
            }
        }
        let plan = read::plan(sample, &self.config, stream.sync_mode, state)?;
        Ok(read::start(sample, &self.config, stream.sync_mode, plan))
    }
    fn describe_position(&self, checkpoint: &Checkpoint) -> weft_core::Position {
        let Ok(state) = checkpoint.decode::<read::SampleState>() else {
            return weft_core::Position::Opaque {
                checkpoint: checkpoint.position().clone(),
            };
        };
        match state.cursor {
            // Incremental: the (updated_at, id) of the last row read.
            Some(micros) => weft_core::Position::Cursor {
                field: CURSOR_FIELD.into(),
                value: Some(weft_core::CursorValue::Timestamp { micros, utc: true }.to_text()),
                key: vec![weft_core::KeyValue {
                    column: "id".into(),
                    value: state.last_id.to_string(),
                }],
                from_value: false,
            },
            None => weft_core::Position::Progress {
                complete: state.complete,
            },
        }
    }

    fn position_from_cursor(&self, stream: &ConfiguredStream, value: &str) -> Result<Checkpoint> {
        // Validated all the same, so a wrong value gets the usual error first.
        weft_core::CursorValue::parse(stream, value)?;
        Err(ConnectorError::Unsupported(format!(
            "stream `{}`: the sample source generates versions of its data in id order and \
             cannot read from a cursor value; re-read it with `weft sync run --full-refresh` \
             (append_dedup) or `weft sync reset`",
            stream.name()
        )))
    }
}
