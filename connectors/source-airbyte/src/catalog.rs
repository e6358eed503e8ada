//! The connector's catalog as weft streams: names, schemas, keys, cursors and sync modes.

use std::collections::BTreeMap;

use serde_json::Value;
use weft_core::{ConnectorError, Result, StreamDescriptor, StreamName, SyncMode};

use crate::config::StreamOverride;
use crate::protocol::StreamId;
use crate::schema::arrow_schema;

/// One connector stream and what weft makes of it.
#[derive(Debug, Clone)]
pub struct DiscoveredStream {
    pub descriptor: StreamDescriptor,
    pub id: StreamId,
    /// The AirbyteStream as the connector described it, for the configured catalog.
    pub raw: Value,
    /// Whether an interrupted full refresh may resume from the connector's last state.
    pub resumable_full_refresh: bool,
}

/// Maps every stream of a connector catalog.
pub fn map_catalog(
    streams: &[Value],
    overrides: &BTreeMap<String, StreamOverride>,
) -> Result<Vec<DiscoveredStream>> {
    let mut out: Vec<DiscoveredStream> = Vec::new();
    for raw in streams {
        let id = StreamId::of_stream(raw).ok_or_else(|| {
            ConnectorError::Schema("the connector's CATALOG has a stream without a `name`".into())
        })?;
        let name = weft_name(&id.name, overrides)?;
        if let Some(clash) = out.iter().find(|s| s.descriptor.name == name) {
            return Err(ConnectorError::config(
                format!("streams.{}", id.name),
                format!(
                    "connector streams `{}` and `{}` both become weft stream `{name}`; give one \
                     of them another name with `streams: {{\"{}\": {{name: …}}}}`",
                    clash.id.name, id.name, id.name
                ),
            ));
        }
        let json_schema = raw.get("json_schema").cloned().unwrap_or(Value::Null);
        out.push(DiscoveredStream {
            descriptor: StreamDescriptor {
                name,
                schema: arrow_schema(&json_schema),
                primary_key: primary_key(raw),
                cursor_candidates: cursor_candidates(raw),
                source_defined_cursor: source_defined_cursor(raw),
                supported_sync_modes: sync_modes(raw),
                row_estimate: None,
            },
            resumable_full_refresh: overrides
                .get(&id.name)
                .and_then(|o| o.resumable)
                .unwrap_or_else(|| resumable_full_refresh(raw)),
            id,
            raw: raw.clone(),
        });
    }
    for key in overrides.keys() {
        if !streams
            .iter()
            .any(|s| s.get("name").and_then(Value::as_str) == Some(key))
        {
            return Err(ConnectorError::config(
                format!("streams.{key}"),
                format!(
                    "the connector has no stream `{key}`; run `weft connector discover` to list \
                     its streams"
                ),
            ));
        }
    }
    Ok(out)
}

/// The weft name of a connector stream: its override, its own name when valid, else the name
/// with path separators and control characters replaced by `_` (and a leading `_` or `.`
/// prefixed with `stream`).
fn weft_name(name: &str, overrides: &BTreeMap<String, StreamOverride>) -> Result<StreamName> {
    if let Some(rename) = overrides.get(name).and_then(|o| o.name.clone()) {
        return Ok(rename);
    }
    if let Ok(valid) = StreamName::new(name) {
        return Ok(valid);
    }
    let mut mapped: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if mapped.starts_with(['_', '.']) {
        mapped.insert_str(0, "stream");
    }
    let mapped = StreamName::new(mapped).map_err(|e| {
        ConnectorError::config(
            format!("streams.{name}"),
            format!(
                "the connector's stream `{name}` has no valid weft name ({e}); name it with \
                 `streams: {{\"{name}\": {{name: …}}}}`"
            ),
        )
    })?;
    tracing::info!("connector stream `{name}` is weft stream `{mapped}`");
    Ok(mapped)
}

/// Whether the connector can continue an interrupted full refresh from its last state: only a
/// stream it marks `is_resumable` that cannot read incrementally (a real resumable full refresh,
/// with a page or offset as its synthetic cursor). **Decision:** the state of a stream that
/// reads incrementally is an incremental cursor, and given back in full refresh it does not
/// continue the interrupted read (source-faker then sends nothing, or starts over at id 1),
/// so weft restarts such a full refresh from scratch, as for streams without the mark.
fn resumable_full_refresh(raw: &Value) -> bool {
    let marked = raw
        .get("is_resumable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    marked && !sync_modes(raw).contains(&SyncMode::Incremental)
}

/// Top-level key fields; a nested key path cannot name a column, so such a key is dropped.
fn primary_key(raw: &Value) -> Vec<String> {
    let Some(paths) = raw
        .get("source_defined_primary_key")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for path in paths {
        match path.as_array().map(Vec::as_slice) {
            Some([Value::String(field)]) => keys.push(field.clone()),
            _ => return Vec::new(),
        }
    }
    keys
}

fn cursor_candidates(raw: &Value) -> Vec<String> {
    match raw
        .get("default_cursor_field")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        Some([Value::String(field)]) => vec![field.clone()],
        _ => Vec::new(),
    }
}

/// The connector's own cursor, when it says it decides (`source_defined_cursor: true`).
fn source_defined_cursor(raw: &Value) -> Option<String> {
    let decides = raw
        .get("source_defined_cursor")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    decides
        .then(|| cursor_candidates(raw).into_iter().next())
        .flatten()
}

fn sync_modes(raw: &Value) -> Vec<SyncMode> {
    let modes: Vec<SyncMode> = raw
        .get("supported_sync_modes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| match m.as_str() {
            Some("full_refresh") => Some(SyncMode::FullRefresh),
            Some("incremental") => Some(SyncMode::Incremental),
            _ => None,
        })
        .collect();
    if modes.is_empty() {
        vec![SyncMode::FullRefresh]
    } else {
        modes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_keys_cursors_modes_and_names() {
        let streams = vec![
            json!({"name": "users", "json_schema": {"properties": {"id": {"type": "integer"}}},
                   "supported_sync_modes": ["full_refresh", "incremental"],
                   "source_defined_cursor": true, "default_cursor_field": ["updated_at"],
                   "source_defined_primary_key": [["id"]]}),
            json!({"name": "reports/daily", "json_schema": {}}),
            json!({"name": "_meta", "json_schema": {}}),
        ];
        let got = map_catalog(&streams, &BTreeMap::new()).unwrap();
        let users = &got[0].descriptor;
        assert_eq!(users.primary_key, ["id"]);
        assert_eq!(users.cursor_candidates, ["updated_at"]);
        assert_eq!(
            users.supported_sync_modes,
            [SyncMode::FullRefresh, SyncMode::Incremental]
        );
        assert_eq!(got[1].descriptor.name.as_str(), "reports_daily");
        assert_eq!(
            got[1].descriptor.supported_sync_modes,
            [SyncMode::FullRefresh]
        );
        assert_eq!(got[2].descriptor.name.as_str(), "stream_meta");
        assert!(!got[0].resumable_full_refresh);
    }

    #[test]
    fn only_marked_full_refresh_only_streams_resume_a_full_refresh() {
        let streams = vec![
            json!({"name": "pages", "is_resumable": true, "supported_sync_modes": ["full_refresh"]}),
            json!({"name": "users", "is_resumable": true, "supported_sync_modes": ["full_refresh", "incremental"]}),
            json!({"name": "plain", "supported_sync_modes": ["full_refresh"]}),
        ];
        let got = map_catalog(&streams, &BTreeMap::new()).unwrap();
        let resumable: Vec<bool> = got.iter().map(|s| s.resumable_full_refresh).collect();
        assert_eq!(resumable, [true, false, false]);
        let overrides = BTreeMap::from([(
            "users".to_string(),
            StreamOverride {
                name: None,
                resumable: Some(true),
            },
        )]);
        assert!(map_catalog(&streams, &overrides).unwrap()[1].resumable_full_refresh);
    }

    #[test]
    fn clashes_and_unknown_overrides_are_config_errors() {
        let streams = vec![json!({"name": "a/b"}), json!({"name": "a_b"})];
        let err = map_catalog(&streams, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("both become weft stream `a_b`"), "{err}");
        let overrides = BTreeMap::from([(
            "a/b".to_string(),
            StreamOverride {
                name: Some(StreamName::new("ab").unwrap()),
                resumable: None,
            },
        )]);
        assert_eq!(
            map_catalog(&streams, &overrides).unwrap()[0]
                .descriptor
                .name
                .as_str(),
            "ab"
        );
        let overrides = BTreeMap::from([(
            "nope".to_string(),
            StreamOverride {
                name: None,
                resumable: None,
            },
        )]);
        let err = map_catalog(&streams[1..], &overrides)
            .unwrap_err()
            .to_string();
        assert!(err.contains("the connector has no stream `nope`"), "{err}");
    }
}
