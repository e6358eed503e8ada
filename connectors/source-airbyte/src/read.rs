//! Reading one stream: `read` with a one-stream configured catalog and its saved state, RECORD
//! lines decoded into batches, each STATE turned into a checkpoint after the records before it,
//! and a final checkpoint only when the connector finished cleanly.
//!
//! A full refresh the connector cannot resume ([`ReadJob::checkpoint_mid_read`] false) yields
//! no checkpoint before its final one: nothing is committed mid-read, so a killed run leaves no
//! pending generation to resume, and the next run reads the stream again from scratch rather
//! than publishing the rows before the kill twice (or with a gap).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_core::arrow_schema::SchemaRef;
use weft_core::{Checkpoint, ConnectorError, Result, SourceMessage};

use crate::decode::RecordDecoder;
use crate::process::{Flow, Inputs};
use crate::protocol::{classify_state, configured_catalog, state_file, StateFor, StreamId};
use crate::session::Connector;

/// The weft checkpoint of an Airbyte stream: the latest Airbyte state body for it (a STREAM,
/// GLOBAL or LEGACY state message, without its counters), and whether the read completed.
/// A completed full refresh keeps `state` null unless the connector sent one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AirbyteCheckpoint {
    pub state: Option<Value>,
    pub complete: bool,
}

/// Everything one read needs, moved onto its blocking thread.
pub struct ReadJob {
    pub connector: Connector,
    pub stream: StreamId,
    /// The weft stream name, for messages.
    pub weft_name: String,
    pub raw_stream: Value,
    pub schema: SchemaRef,
    pub incremental: bool,
    /// Whether STATE messages become checkpoints as they come (incremental reads, resumable
    /// full refreshes) or only the final one does.
    pub checkpoint_mid_read: bool,
    pub off_schema: crate::config::OffSchema,
    pub cursor_field: Option<String>,
    pub destination_sync_mode: &'static str,
    pub primary_key: Vec<String>,
    /// The state body to resume from.
    pub state: Option<Value>,
    pub batch_size: usize,
    /// The cache entry the stream's catalog came from: a failed read drops it, in case the
    /// failure is a catalog gone stale (a changed column type).
    pub catalog_cache: Option<crate::catalog_cache::CatalogCache>,
}

impl ReadJob {
    /// Runs the read, handing messages to `send` (false: the reader went away).
    pub fn run(
        self,
        send: &mut dyn FnMut(Result<SourceMessage>) -> bool,
        abandoned: Box<dyn Fn() -> bool + Send>,
    ) {
        if let Err(e) = self.run_inner(send, abandoned) {
            if let Some(cache) = &self.catalog_cache {
                cache.forget();
            }
            send(Err(e));
        }
    }

    fn run_inner(
        &self,
        send: &mut dyn FnMut(Result<SourceMessage>) -> bool,
        abandoned: Box<dyn Fn() -> bool + Send>,
    ) -> Result<()> {
        let inputs = Inputs::new()?;
        let config = inputs.write("config.json", &self.connector.config)?;
        let catalog = inputs.write(
            "catalog.json",
            &configured_catalog(
                &self.raw_stream,
                self.incremental,
                self.cursor_field.as_deref(),
                self.destination_sync_mode,
                &self.primary_key,
            ),
        )?;
        let mut args = vec![
            "read".into(),
            "--config".into(),
            config.into_os_string(),
            "--catalog".into(),
            catalog.into_os_string(),
        ];
        if let Some(state) = &self.state {
            args.push("--state".into());
            args.push(
                inputs
                    .write("state.json", &state_file(state))?
                    .into_os_string(),
            );
        }
        let mut decoder = RecordDecoder::new(self.schema.clone(), self.batch_size, self.off_schema)
            .map_err(|e| self.error(format!("cannot decode its records: {e}")))?;
        let mut last_state = self.state.clone();
        let mut incomplete = false;
        let mut consumer_gone = false;
        let mut warned_other_stream = false;
        let (outcome, mut diag) = self.connector.exchange(args, abandoned, |n, message, diag| {
            let flush = |decoder: &mut RecordDecoder,
                         diag: &mut crate::session::Diagnostics,
                         send: &mut dyn FnMut(Result<SourceMessage>) -> bool|
             -> Option<bool> {
                match decoder.finish() {
                    Ok(Some(batch)) => {
                        let nulled = decoder.take_nulled();
                        Some(
                            send(Ok(SourceMessage::Records(batch)))
                                && (nulled == 0
                                    || send(Ok(SourceMessage::OffSchema { values: nulled }))),
                        )
                    }
                    Ok(None) => Some(true),
                    Err(e) => {
                        diag.fatal = Some(format!(
                            "stdout line {}: a record does not fit the stream's schema: {}",
                            e.line, e.message
                        ));
                        None
                    }
                }
            };
            match message.kind.as_deref() {
                Some("RECORD") => {
                    let Some(record) = message.record else {
                        diag.fatal = Some(format!("stdout line {n}: a RECORD without `record`"));
                        return Flow::Stop;
                    };
                    if !self.stream.matches(&record.stream, record.namespace.as_deref()) {
                        if !warned_other_stream {
                            tracing::warn!(stream = %self.weft_name, "the connector sent records of stream `{}`, which was not asked for; they are ignored", record.stream);
                            warned_other_stream = true;
                        }
                        return Flow::Continue;
                    }
                    if let Err(e) = decoder.push(record.data, n) {
                        diag.fatal = Some(format!("stdout line {}: {}", e.line, e.message));
                        return Flow::Stop;
                    }
                    if decoder.is_full() {
                        match flush(&mut decoder, diag, send) {
                            Some(true) => {}
                            Some(false) => {
                                consumer_gone = true;
                                return Flow::Stop;
                            }
                            None => return Flow::Stop,
                        }
                    }
                    Flow::Continue
                }
                Some("STATE") | None if message.state.is_some() => {
                    let state = message.state.as_ref().expect("checked");
                    match classify_state(state, &self.stream) {
                        Ok(StateFor::Ours(body)) => {
                            match flush(&mut decoder, diag, send) {
                                Some(true) => {}
                                Some(false) => {
                                    consumer_gone = true;
                                    return Flow::Stop;
                                }
                                None => return Flow::Stop,
                            }
                            if !self.checkpoint_mid_read {
                                last_state = Some(body);
                                return Flow::Continue;
                            }
                            let checkpoint = Checkpoint::encode(&AirbyteCheckpoint {
                                state: Some(body.clone()),
                                complete: false,
                            });
                            last_state = Some(body);
                            if !send(Ok(SourceMessage::Checkpoint(checkpoint))) {
                                consumer_gone = true;
                                return Flow::Stop;
                            }
                            Flow::Continue
                        }
                        Ok(StateFor::Other) => Flow::Continue,
                        Err(e) => {
                            diag.fatal = Some(format!("stdout line {n}: {e}"));
                            Flow::Stop
                        }
                    }
                }
                Some("TRACE") => {
                    let trace = message.trace.unwrap_or(Value::Null);
                    match trace.get("type").and_then(Value::as_str) {
                        Some("ESTIMATE") => {
                            let estimate = trace.get("estimate").unwrap_or(&Value::Null);
                            let ours = estimate.get("name").and_then(Value::as_str)
                                == Some(self.stream.name.as_str());
                            if let (true, Some(rows)) =
                                (ours, estimate.get("row_estimate").and_then(Value::as_u64))
                            {
                                if !send(Ok(SourceMessage::Estimate { rows })) {
                                    consumer_gone = true;
                                    return Flow::Stop;
                                }
                            }
                        }
                        Some("STREAM_STATUS") => {
                            let status = trace.get("stream_status").unwrap_or(&Value::Null);
                            let name = status
                                .pointer("/stream_descriptor/name")
                                .and_then(Value::as_str);
                            if name == Some(self.stream.name.as_str())
                                && status.get("status").and_then(Value::as_str)
                                    == Some("INCOMPLETE")
                            {
                                incomplete = true;
                            }
                        }
                        _ => {}
                    }
                    Flow::Continue
                }
                other => {
                    tracing::debug!(stream = %self.weft_name, "ignoring a {} message at stdout line {n}", other.unwrap_or("untyped"));
                    Flow::Continue
                }
            }
        })?;
        if consumer_gone {
            return Ok(());
        }
        let what = format!("read of stream `{}`", self.weft_name);
        self.connector.verdict(&what, &outcome, &diag)?;
        if incomplete {
            diag.fatal = Some("it reported the stream INCOMPLETE".into());
            return self.connector.verdict(&what, &outcome, &diag);
        }
        match decoder.finish() {
            Ok(Some(batch)) => {
                let nulled = decoder.take_nulled();
                if !send(Ok(SourceMessage::Records(batch)))
                    || (nulled > 0 && !send(Ok(SourceMessage::OffSchema { values: nulled })))
                {
                    return Ok(());
                }
            }
            Ok(None) => {}
            Err(e) => {
                return Err(self.error(format!(
                    "stdout line {}: a record does not fit the stream's schema: {}",
                    e.line, e.message
                )))
            }
        }
        send(Ok(SourceMessage::Checkpoint(Checkpoint::encode(
            &AirbyteCheckpoint {
                state: last_state,
                complete: true,
            },
        ))));
        Ok(())
    }

    fn error(&self, message: String) -> ConnectorError {
        ConnectorError::Other(format!(
            "Airbyte connector `{}` read of stream `{}`: {message}",
            self.connector.program.label(),
            self.weft_name
        ))
    }
}
