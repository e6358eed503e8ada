//! The Airbyte protocol as weft reads it: one JSON message per stdout line, parsed leniently
//! (unknown fields and unknown message types are tolerated), plus the catalog and state
//! documents weft hands to connectors.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// One stdout line, with only what weft uses parsed. A RECORD's `data` stays raw bytes.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub record: Option<RawRecord<'a>>,
    #[serde(default)]
    pub state: Option<Value>,
    #[serde(default)]
    pub log: Option<Log>,
    #[serde(default)]
    pub trace: Option<Value>,
    #[serde(default)]
    pub spec: Option<Value>,
    #[serde(default)]
    pub catalog: Option<Value>,
    #[serde(rename = "connectionStatus", default)]
    pub connection_status: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct RawRecord<'a> {
    #[serde(borrow)]
    pub stream: Cow<'a, str>,
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub data: &'a RawValue,
}

#[derive(Debug, Deserialize)]
pub struct Log {
    #[serde(default)]
    pub level: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub stack_trace: Option<String>,
}

/// Parses one stdout line.
pub fn parse_line(line: &[u8]) -> Result<Envelope<'_>, serde_json::Error> {
    serde_json::from_slice(line)
}

/// Airbyte's stream identity: name and optional namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamId {
    pub name: String,
    pub namespace: Option<String>,
}

impl StreamId {
    pub fn of_stream(stream: &Value) -> Option<Self> {
        Some(Self {
            name: stream.get("name")?.as_str()?.to_string(),
            namespace: stream
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    pub fn matches(&self, name: &str, namespace: Option<&str>) -> bool {
        self.name == name && (namespace.is_none() || self.namespace.as_deref() == namespace)
    }
}

/// What a STATE message says, reduced to the body weft keeps for one stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StateFor {
    /// A body for the stream being read: keep it as the latest.
    Ours(Value),
    /// A STREAM state of another stream.
    Other,
}

/// Classifies a STATE message's body for `stream`. Missing `type` means LEGACY. The body is
/// stored without its per-message counters (`sourceStats`, `destinationStats`).
pub fn classify_state(state: &Value, stream: &StreamId) -> Result<StateFor, String> {
    let Some(obj) = state.as_object() else {
        return Err("the STATE message's `state` is not an object".into());
    };
    let mut body = obj.clone();
    body.remove("sourceStats");
    body.remove("destinationStats");
    match obj.get("type").and_then(Value::as_str).unwrap_or("LEGACY") {
        "STREAM" => {
            let descriptor = obj
                .get("stream")
                .and_then(|s| s.get("stream_descriptor"))
                .ok_or("a STREAM state without `stream.stream_descriptor`")?;
            let name = descriptor
                .get("name")
                .and_then(Value::as_str)
                .ok_or("a STREAM state's descriptor has no `name`")?;
            let namespace = descriptor.get("namespace").and_then(Value::as_str);
            if stream.matches(name, namespace) {
                Ok(StateFor::Ours(Value::Object(body)))
            } else {
                Ok(StateFor::Other)
            }
        }
        "GLOBAL" => {
            if obj.get("global").is_none() {
                return Err("a GLOBAL state without `global`".into());
            }
            Ok(StateFor::Ours(Value::Object(body)))
        }
        "LEGACY" => {
            body.insert("type".into(), json!("LEGACY"));
            Ok(StateFor::Ours(Value::Object(body)))
        }
        other => Err(format!("a STATE of unknown type `{other}`")),
    }
}

/// The `--state` file for a saved body: an array of state messages, or for LEGACY state the
/// bare `data` object (as the protocol defines it).
pub fn state_file(body: &Value) -> Value {
    if body.get("type").and_then(Value::as_str) == Some("LEGACY") {
        return body.get("data").cloned().unwrap_or_else(|| json!({}));
    }
    Value::Array(vec![body.clone()])
}

/// The configured catalog for reading one stream.
pub fn configured_catalog(
    stream: &Value,
    incremental: bool,
    cursor_field: Option<&str>,
    destination_sync_mode: &str,
    primary_key: &[String],
) -> Value {
    let source_cursor = stream
        .get("source_defined_cursor")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let default_cursor = stream
        .get("default_cursor_field")
        .cloned()
        .unwrap_or_else(|| json!([]));
    let cursor = match (source_cursor, cursor_field) {
        (true, _) | (false, None) => default_cursor,
        (false, Some(c)) => json!([c]),
    };
    let pk: Vec<Value> = primary_key.iter().map(|k| json!([k])).collect();
    json!({
        "streams": [{
            "stream": stream,
            "sync_mode": if incremental { "incremental" } else { "full_refresh" },
            "cursor_field": if incremental { cursor } else { json!([]) },
            "destination_sync_mode": destination_sync_mode,
            "primary_key": pk,
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> StreamId {
        StreamId {
            name: "users".into(),
            namespace: None,
        }
    }

    #[test]
    fn records_keep_data_raw_and_unknown_fields_are_tolerated() {
        let line = br#"{"type":"RECORD","record":{"stream":"users","data":{"id": 1, "a":[1,2]},"emitted_at":1,"new":true},"extra":{}}"#;
        let env = parse_line(line).unwrap();
        assert_eq!(env.kind.as_deref(), Some("RECORD"));
        let rec = env.record.unwrap();
        assert_eq!(rec.stream, "users");
        assert_eq!(rec.data.get(), r#"{"id": 1, "a":[1,2]}"#);
        let env = parse_line(br#"{"type":"SOMETHING_NEW","whatever":[1]}"#).unwrap();
        assert_eq!(env.kind.as_deref(), Some("SOMETHING_NEW"));
    }

    #[test]
    fn state_kinds() {
        let stream = json!({"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},"stream_state":{"c":1}},"sourceStats":{"recordCount":2.0}});
        assert_eq!(
            classify_state(&stream, &users()).unwrap(),
            StateFor::Ours(
                json!({"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},"stream_state":{"c":1}}})
            )
        );
        let other = json!({"type":"STREAM","stream":{"stream_descriptor":{"name":"x"}}});
        assert_eq!(classify_state(&other, &users()).unwrap(), StateFor::Other);
        let legacy = json!({"data": {"users": {"c": 1}}});
        let StateFor::Ours(body) = classify_state(&legacy, &users()).unwrap() else {
            panic!()
        };
        assert_eq!(state_file(&body), json!({"users": {"c": 1}}));
        let global =
            json!({"type":"GLOBAL","global":{"shared_state":{"lsn":5},"stream_states":[]}});
        let StateFor::Ours(body) = classify_state(&global, &users()).unwrap() else {
            panic!()
        };
        assert_eq!(state_file(&body), json!([global]));
        assert!(classify_state(&json!({"type":"WEIRD"}), &users()).is_err());
    }

    #[test]
    fn configured_catalog_uses_the_source_cursor_when_defined() {
        let stream = json!({"name":"users","json_schema":{},"source_defined_cursor":true,"default_cursor_field":["updated_at"]});
        let cat = configured_catalog(&stream, true, Some("other"), "append", &["id".into()]);
        assert_eq!(cat["streams"][0]["cursor_field"], json!(["updated_at"]));
        assert_eq!(cat["streams"][0]["primary_key"], json!([["id"]]));
        assert_eq!(cat["streams"][0]["sync_mode"], "incremental");
    }
}
