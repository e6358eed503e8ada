//! The [`Source`] trait.

use async_trait::async_trait;

use crate::catalog::{Catalog, ConfiguredStream};
use crate::checkpoint::Checkpoint;
use crate::error::ConnectorError;
use crate::error::Result;
use crate::message::MessageStream;
use crate::position::Position;

/// A configured source: built by a [`crate::SourceFactory`] from a validated config.
#[async_trait]
pub trait Source: Send + Sync {
    /// Checks that the source can be reached and read with this config.
    async fn check(&self) -> Result<()>;

    /// Lists the streams the source offers.
    async fn discover(&self) -> Result<Catalog>;

    /// Reads one stream, resuming right after `state` when given.
    ///
    /// The stream yields record batches and, now and then, checkpoints; the last message of a
    /// complete read is a checkpoint covering everything. It must yield batches that match the
    /// descriptor's schema (or announce a [`crate::SourceMessage::SchemaChange`] first).
    async fn read(
        &self,
        stream: &ConfiguredStream,
        state: Option<&Checkpoint>,
    ) -> Result<MessageStream>;

    /// Everything up to `checkpoint` is durable in the destination and recorded in the state
    /// store. Sources holding server-side positions (replication slots) advance them here, and
    /// never earlier.
    async fn ack(&self, _stream: &ConfiguredStream, _checkpoint: &Checkpoint) -> Result<()> {
        Ok(())
    }

    /// How far the stream's server-side position (a replication slot) is behind the source's
    /// log, in bytes, or `None` when the source keeps no such position for it.
    async fn lag_bytes(&self, _stream: &ConfiguredStream) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Forgets the stream: drops the server-side resources its reads hold (a replication slot
    /// and publication), so the next read starts from scratch. Called by `weft sync reset`.
    async fn reset(&self, _stream: &ConfiguredStream) -> Result<()> {
        Ok(())
    }

    /// The checkpoint in human terms (`weft state show`): the cursor and its tie-breaker, a
    /// log position, a full refresh's progress. The default shows its JSON.
    fn describe_position(&self, checkpoint: &Checkpoint) -> Position {
        Position::Opaque {
            checkpoint: checkpoint.position().clone(),
        }
    }

    /// A checkpoint from which the next read of `stream` reads every row whose cursor is at or
    /// after `value` (`weft state set --cursor`; a backfill from a date). `value` is validated
    /// against the stream's cursor column type (see [`crate::CursorValue::parse`]), with an
    /// error naming the stream and the column. The default refuses.
    fn position_from_cursor(&self, stream: &ConfiguredStream, value: &str) -> Result<Checkpoint> {
        let _ = value;
        Err(ConnectorError::Unsupported(format!(
            "this source cannot set the cursor of stream `{}`",
            stream.name()
        )))
    }

    /// A checkpoint from the state JSON the source itself keeps (`weft state set --state-json`,
    /// for sources such as Airbyte connectors whose state is their own). The default refuses.
    fn position_from_state(
        &self,
        stream: &ConfiguredStream,
        state: &serde_json::Value,
    ) -> Result<Checkpoint> {
        let _ = state;
        Err(ConnectorError::Unsupported(format!(
            "this source keeps no state of its own for stream `{}`; set its cursor with --cursor",
            stream.name()
        )))
    }
}
