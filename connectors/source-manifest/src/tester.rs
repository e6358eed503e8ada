//! A manifest's test run, as the Connector Builder's test panel shows it: `weft connector test`.
//!
//! [`run`] reads one stream with limits (pages per slice, slices) and reports, in order, every
//! request sent (secrets redacted), each page's records, the state after each slice, and the
//! fields whose values do not fit the stream's schema. Nothing is written anywhere.
//!
//! Redaction: the values of the config's secret fields (`airbyte_secret: true` in the spec, or
//! named like a secret: `*password*`, `*secret*`, `*token*`, `*key*`) are replaced by `****`
//! wherever they appear in a URL, header or body, and the values of credential headers
//! (`Authorization`, `Cookie`, names holding `key`, `token`, `secret`) are hidden whole — a
//! Basic header or an OAuth access token holds no config value verbatim.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::request::{Body, Request};
use crate::{read, ManifestSource, ManifestSourceError};

/// What a test run shows, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A request, redacted, and the status it was answered with.
    Request {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Option<String>,
        status: u16,
    },
    /// One page's records (after selection, filter and transformations).
    Page {
        slice: usize,
        page: usize,
        records: Vec<Value>,
    },
    /// A slice read to its end (or to the page limit), and the state a sync would checkpoint.
    SliceDone {
        slice: usize,
        partition: Value,
        state: Value,
        truncated: bool,
    },
    /// A field of the records that the stream's schema does not declare or types differently.
    Mismatch { field: String, problem: String },
}

/// How much of a stream a test run reads.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Pages per slice.
    pub pages: usize,
    /// Slices.
    pub slices: usize,
}

impl Default for Limits {
    /// The Connector Builder's defaults: 5 pages, 5 slices.
    fn default() -> Self {
        Self {
            pages: 5,
            slices: 5,
        }
    }
}

/// Hides secrets in what is shown.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

const MASK: &str = "****";

fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "token", "key", "credential", "auth"]
        .iter()
        .any(|w| n.contains(w))
}

impl Redactor {
    /// The secrets of `config`, by `spec` (may be `Null`) and by field names.
    pub fn new(spec: &Value, config: &Value) -> Self {
        let mut names = BTreeSet::new();
        secret_fields(spec, &mut names);
        let mut secrets = BTreeSet::new();
        secret_values(config, &names, false, &mut secrets);
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 3).collect();
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    /// `text` with every secret (as is, and URL-encoded) masked.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), MASK);
            let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
            if encoded != *s {
                out = out.replace(encoded.as_str(), MASK);
            }
        }
        out
    }

    /// A header as shown: credential headers hidden whole.
    pub fn header(&self, name: &str, value: &str) -> String {
        let n = name.to_ascii_lowercase();
        if n == "authorization" || n == "proxy-authorization" || n == "cookie" || secret_name(&n) {
            match value.split_once(' ') {
                // Keep the scheme (`Bearer`, `Basic`): it says which authenticator ran.
                Some((scheme, _)) if !scheme.is_empty() && scheme.len() < 16 => {
                    format!("{scheme} {MASK}")
                }
                _ => MASK.to_string(),
            }
        } else {
            self.text(value)
        }
    }
}

fn secret_fields(spec: &Value, out: &mut BTreeSet<String>) {
    match spec {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                for (name, prop) in props {
                    if prop.get("airbyte_secret") == Some(&Value::Bool(true)) {
                        out.insert(name.clone());
                    }
                }
            }
            m.values().for_each(|v| secret_fields(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| secret_fields(v, out)),
        _ => {}
    }
}

fn secret_values(v: &Value, names: &BTreeSet<String>, secret: bool, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) if secret => {
            out.insert(s.clone());
        }
        Value::Number(n) if secret => {
            out.insert(n.to_string());
        }
        Value::Object(m) => {
            for (k, child) in m {
                let secret = secret || names.contains(k) || secret_name(k);
                secret_values(child, names, secret, out);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|c| secret_values(c, names, secret, out)),
        _ => {}
    }
}

fn shown(request: &Request, status: u16, redactor: &Redactor) -> Event {
    let body = match &request.body {
        Body::None => None,
        Body::Json(v) => Some(v.to_string()),
        Body::Form(pairs) => Some(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish(),
        ),
        Body::Text(t) => Some(t.clone()),
    };
    Event::Request {
        method: request.method.to_string(),
        url: redactor.text(request.url.as_str()),
        headers: request
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), redactor.header(k, v)))
            .collect(),
        body: body.map(|b| redactor.text(&b)),
        status,
    }
}

/// The stream names of a manifest, in order (for `--stream` errors and the default).
pub fn stream_names(source: &ManifestSource) -> Vec<String> {
    source
        .manifest
        .source
        .streams
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

/// Reads `stream` (default: the manifest's first) of the manifest at `path` with `config`
/// within `limits`, calling `on` with each [`Event`].
pub async fn run(
    path: &Path,
    config: Value,
    stream: Option<&str>,
    limits: Limits,
    mut on: impl FnMut(Event),
) -> Result<(), ManifestSourceError> {
    let exchanges: Arc<Mutex<Vec<(Request, u16)>>> = Arc::default();
    let log = exchanges.clone();
    let observer: crate::client::Observer = Arc::new(move |req, resp| {
        log.lock()
            .expect("exchange log")
            .push((req.clone(), resp.status));
    });
    let source = ManifestSource::open_observed(path, config, Some(observer))?;
    let spec = source
        .connection_specification()
        .cloned()
        .unwrap_or(Value::Null);
    let redactor = Redactor::new(&spec, &source.shared.config);
    let flush = |on: &mut dyn FnMut(Event)| {
        for (req, status) in exchanges.lock().expect("exchange log").drain(..) {
            on(shown(&req, status, &redactor));
        }
    };
    let names = stream_names(&source);
    let name = match stream {
        Some(s) => s.to_string(),
        None => names
            .first()
            .cloned()
            .ok_or_else(|| ManifestSourceError::Manifest("it declares no stream".into()))?,
    };
    let model = source
        .manifest
        .source
        .streams
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            ManifestSourceError::Manifest(format!(
                "it has no stream `{name}` (its streams: {})",
                names.join(", ")
            ))
        })?;
    let schema = crate::json_schema(&source.manifest, &source.shared, model)?;
    let reader = read::StreamReader::new(&source.shared, model)?;
    let cursor = reader.cursor()?;
    let slices = reader.slices(cursor.as_ref(), None).await;
    flush(&mut on);
    let slices = slices?;
    let mut latest = None;
    let mut mismatches = BTreeMap::new();
    for (i, slice) in slices.iter().enumerate().take(limits.slices) {
        let mut pages = reader.pages(slice)?;
        let mut page = 0;
        let mut truncated = false;
        loop {
            if page >= limits.pages {
                truncated = true;
                break;
            }
            let next = pages.next().await;
            flush(&mut on);
            let Some(records) = next? else { break };
            page += 1;
            for record in &records {
                if let Some(c) = &cursor {
                    if let Some(v) = c.record_value(record) {
                        latest =
                            Some(latest.map_or(v, |l: chrono::DateTime<chrono::Utc>| l.max(v)));
                    }
                }
                check_record(&schema, record, &mut mismatches);
            }
            on(Event::Page {
                slice: i,
                page,
                records,
            });
        }
        let state = match &cursor {
            Some(c) => read::cursor_state(c, latest),
            None => serde_json::json!({"slices_done": i + 1, "of": slices.len()}),
        };
        on(Event::SliceDone {
            slice: i,
            partition: slice.var(),
            state,
            truncated,
        });
    }
    for (field, problem) in mismatches {
        on(Event::Mismatch { field, problem });
    }
    Ok(())
}

/// The JSON type names a value has (`integer` is also a `number`).
fn json_types(v: &Value) -> &'static [&'static str] {
    match v {
        Value::Null => &["null"],
        Value::Bool(_) => &["boolean"],
        Value::Number(n) if n.is_i64() || n.is_u64() => &["integer", "number"],
        Value::Number(_) => &["number"],
        Value::String(_) => &["string"],
        Value::Array(_) => &["array"],
        Value::Object(_) => &["object"],
    }
}

fn check_record(schema: &Value, record: &Value, out: &mut BTreeMap<String, String>) {
    let Some(record) = record.as_object() else {
        return;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    for (field, value) in record {
        if out.contains_key(field) {
            continue;
        }
        let Some(prop) = props.and_then(|p| p.get(field)) else {
            if props.is_some() {
                out.insert(
                    field.clone(),
                    "not declared in the stream's schema (lands in `_airbyte_extra`)".into(),
                );
            }
            continue;
        };
        let declared: Vec<&str> = match prop.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => continue,
        };
        if value.is_null() && !declared.contains(&"null") {
            continue; // Every column is nullable in weft; the CDK does not object either.
        }
        if !json_types(value).iter().any(|t| declared.contains(t)) {
            out.insert(
                field.clone(),
                format!(
                    "declared {} but a record has {}",
                    declared.join(" or "),
                    json_types(value)[0]
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_by_spec_and_by_name() {
        let spec = json!({"properties": {"api_key": {"type": "string", "airbyte_secret": true},
            "creds": {"oneOf": [{"properties": {"pw": {"airbyte_secret": true}}}]}}});
        let config = json!({"api_key": "abc123", "creds": {"pw": "p@ss word"},
            "client_secret": "shh-1", "region": "eu"});
        let r = Redactor::new(&spec, &config);
        assert_eq!(
            r.text("http://x/?k=abc123&pw=p%40ss+word&s=shh-1&region=eu"),
            "http://x/?k=****&pw=****&s=****&region=eu"
        );
        assert_eq!(
            r.header("Authorization", "Basic dXNlcjpwdw=="),
            "Basic ****"
        );
        assert_eq!(r.header("X-Api-Key", "anything"), "****");
        assert_eq!(r.header("Accept", "application/json"), "application/json");
    }

    #[test]
    fn mismatches_name_the_field() {
        let schema =
            json!({"properties": {"id": {"type": "integer"}, "n": {"type": ["null", "string"]}}});
        let mut out = BTreeMap::new();
        check_record(
            &schema,
            &json!({"id": "7", "n": null, "extra": 1}),
            &mut out,
        );
        assert_eq!(out["id"], "declared integer but a record has string");
        assert!(out["extra"].contains("not declared"));
        assert!(!out.contains_key("n"));
    }
}
