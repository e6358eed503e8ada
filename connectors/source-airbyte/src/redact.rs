//! Redaction of the connector config's secrets from everything weft prints.
//!
//! Once the connector's spec is known, the secrets are the values its spec marks
//! `airbyte_secret` (at any depth, `oneOf` branches included) and the values under keys that
//! look secret (`password`, `token`, `api_key`…, in case a spec forgets the mark). Before that,
//! every string value counts (API keys hide in fields with any name). Very short values are
//! never masked: masking `a` or `10` everywhere would shred ordinary text. Values from `${VAR}`
//! and `${file:…}` are masked by the project's own redactor, everywhere.

use std::sync::Arc;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Strings this short are not redacted: masking `a` or `10` everywhere helps nobody.
const MIN_SECRET_LEN: usize = 4;

/// The secrets of one connector config; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is masked whole.
    secrets: Arc<Vec<String>>,
}

impl Redactor {
    /// Collects every string value of `config`, at any depth.
    pub fn from_config(config: &serde_json::Value) -> Self {
        let mut secrets = Vec::new();
        collect(config, &mut secrets);
        Self::from_values(secrets)
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
            // Connectors often echo configs back JSON-escaped.
            let escaped = serde_json::to_string(secret).unwrap_or_default();
            let escaped = &escaped[1..escaped.len().saturating_sub(1).max(1)];
            if escaped != secret && out.contains(escaped) {
                out = out.replace(escaped, MASK);
            }
        }
        out
    }
}

impl Redactor {
    /// The secrets of `config` by its connector's `spec` (the SPEC message's `spec` object).
    pub fn from_spec(config: &serde_json::Value, spec: &serde_json::Value) -> Self {
        let schema = spec
            .get("connectionSpecification")
            .unwrap_or(&serde_json::Value::Null);
        let mut secrets = Vec::new();
        collect_marked(config, schema, &mut secrets);
        Self::from_values(secrets)
    }

    fn from_values(mut secrets: Vec<String>) -> Self {
        secrets.retain(|s| s.chars().count() >= MIN_SECRET_LEN);
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Self {
            secrets: Arc::new(secrets),
        }
    }
}

/// Whether a config key looks like it holds a secret, whatever the spec says.
fn secret_looking(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "private",
        "authorization",
        "cookie",
    ]
    .iter()
    .any(|w| key.contains(w))
        || key.ends_with("key")
}

/// The property schemas `schema` gives `key`: its own `properties` and those of its
/// `oneOf`/`anyOf`/`allOf` branches.
fn property_schemas<'a>(
    schema: &'a serde_json::Value,
    key: &str,
    out: &mut Vec<&'a serde_json::Value>,
) {
    if let Some(prop) = schema.get("properties").and_then(|p| p.get(key)) {
        out.push(prop);
    }
    for branches in ["oneOf", "anyOf", "allOf"] {
        for branch in schema
            .get(branches)
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
        {
            property_schemas(branch, key, out);
        }
    }
}

fn collect_marked(value: &serde_json::Value, schema: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                let mut props = Vec::new();
                property_schemas(schema, key, &mut props);
                let marked = props.iter().any(|p| {
                    p.get("airbyte_secret")
                        .and_then(serde_json::Value::as_bool)
                        .unwrap_or(false)
                });
                // A secret-looking name marks a value, not a container: `credentials` holds
                // a client id and an auth type next to its secret.
                let leaf = !(v.is_object() || v.is_array());
                if marked || (leaf && secret_looking(key)) {
                    collect(v, out);
                } else if props.is_empty() {
                    collect_marked(v, &serde_json::Value::Null, out);
                } else {
                    for p in props {
                        collect_marked(v, p, out);
                    }
                }
            }
        }
        serde_json::Value::Array(items) => {
            let item_schema = schema.get("items").unwrap_or(&serde_json::Value::Null);
            items
                .iter()
                .for_each(|v| collect_marked(v, item_schema, out));
        }
        _ => {}
    }
}

fn collect(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_string_at_any_depth_longest_first() {
        let r = Redactor::from_config(&serde_json::json!({
            "api_key": "sk-12345",
            "nested": {"list": ["sk-12345-extra", "ab"]},
            "count": 10
        }));
        assert_eq!(
            r.redact("key sk-12345-extra and sk-12345, ab stays"),
            "key *** and ***, ab stays"
        );
    }

    #[test]
    fn with_a_spec_only_marked_and_secret_looking_values_are_masked() {
        let spec = serde_json::json!({"connectionSpecification": {"properties": {
            "host": {"type": "string"},
            "filetype": {"type": "string"},
            "credentials": {"oneOf": [
                {"properties": {"auth_type": {"const": "Client"}, "client_id": {"type": "string"},
                                "refresh": {"type": "string", "airbyte_secret": true}}}
            ]},
            "streams": {"type": "array", "items": {"properties": {
                "name": {"type": "string"}, "sig": {"type": "string", "airbyte_secret": true}}}},
            "api_key": {"type": "string"}
        }}});
        let config = serde_json::json!({
            "host": "db.internal", "filetype": "avro",
            "credentials": {"auth_type": "Client", "client_id": "my-client", "refresh": "rt-98765"},
            "streams": [{"name": "orders", "sig": "sig-4242"}],
            "api_key": "sk-unmarked"
        });
        let r = Redactor::from_spec(&config, &spec);
        assert_eq!(
            r.redact("host=db.internal filetype=avro client=my-client orders rt-98765 sig-4242 sk-unmarked"),
            "host=db.internal filetype=avro client=my-client orders *** *** ***"
        );
        // Without a spec, every string counts.
        let all = Redactor::from_config(&config);
        assert_eq!(all.redact("host=db.internal avro"), "host=*** ***");
    }

    #[test]
    fn masks_json_escaped_forms() {
        let r = Redactor::from_config(&serde_json::json!({"password": "pa\"ss"}));
        assert_eq!(
            r.redact(r#"{"password": "pa\"ss"}"#),
            r#"{"password": "***"}"#
        );
    }
}
