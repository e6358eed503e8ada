//! Redaction of the connector config's secrets from everything weft prints.
//!
//! Every string value in the connector's config counts as a secret (API keys hide in fields
//! with any name), except very short ones, which would shred ordinary text.

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
        secrets.retain(|s| s.chars().count() >= MIN_SECRET_LEN);
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Self {
            secrets: Arc::new(secrets),
        }
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
    fn masks_json_escaped_forms() {
        let r = Redactor::from_config(&serde_json::json!({"password": "pa\"ss"}));
        assert_eq!(
            r.redact(r#"{"password": "pa\"ss"}"#),
            r#"{"password": "***"}"#
        );
    }
}
