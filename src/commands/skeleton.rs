//! Commented YAML skeletons of connector configs, generated from the connectors' JSON Schemas
//! (`weft init --source … --destination …`): required settings are written out with a
//! placeholder or their default, optional ones are commented out with their default, each under
//! its description. Generating from the schema keeps skeletons true as connectors change.

use serde_json::Value;

/// Which side of a product a config is for (secret placeholders and example values differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

/// The YAML lines of a config mapping described by `spec`, indented by `indent` spaces.
pub fn config_lines(spec: &Value, side: Side, indent: usize) -> Vec<String> {
    let mut out = Vec::new();
    object_lines(spec, spec, side, indent, &mut out);
    if out.iter().all(|l| l.trim_start().starts_with('#')) {
        // Nothing required: an explicit empty mapping keeps the file valid.
        out.push(format!("{}{{}}", " ".repeat(indent)));
    }
    out
}

/// `$ref` resolved against the root schema's `$defs`; `Option<T>` (`anyOf [T, null]`) unwrapped.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        if let Some(def) = root.get("$defs").and_then(|d| d.get(name)) {
            return resolve(root, def);
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let non_null: Vec<&Value> = options
                .iter()
                .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            if non_null.len() == 1 {
                return resolve(root, non_null[0]);
            }
        }
    }
    schema
}

fn object_lines(root: &Value, schema: &Value, side: Side, indent: usize, out: &mut Vec<String>) {
    let schema = resolve(root, schema);
    let pad = " ".repeat(indent);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (key, declared) in properties {
        let property = resolve(root, declared);
        let description = declared
            .get("description")
            .or_else(|| property.get("description"))
            .and_then(Value::as_str)
            .map(first_sentence);
        if let Some(description) = description {
            out.push(format!("{pad}# {description}"));
        }
        let is_required = required.contains(&key.as_str());
        let kind = property.get("type").and_then(Value::as_str);
        if is_required && kind == Some("object") && property.get("properties").is_some() {
            out.push(format!("{pad}{key}:"));
            object_lines(root, property, side, indent + 2, out);
        } else if is_required && kind == Some("array") {
            let item = property.get("items").map(|i| resolve(root, i));
            match item {
                Some(item) if item.get("properties").is_some() => {
                    out.push(format!("{pad}{key}:"));
                    out.push(format!("{pad}  -"));
                    object_lines(root, item, side, indent + 4, out);
                }
                _ => out.push(format!("{pad}{key}: []")),
            }
        } else if is_required {
            out.push(format!("{pad}{key}: {}", example(key, property, side)));
        } else {
            out.push(format!("{pad}# {key}: {}", example(key, property, side)));
        }
    }
}

/// The first sentence of a description, on one line (`e.g.` and `i.e.` do not end one).
fn first_sentence(description: &str) -> String {
    let words: Vec<&str> = description.split_whitespace().collect();
    let end = words
        .iter()
        .position(|w| w.ends_with('.') && !matches!(*w, "e.g." | "i.e." | "(e.g." | "(i.e."))
        .map_or(words.len(), |i| i + 1);
    words[..end].join(" ")
}

/// A value to write for `key`: its default, the first allowed value, a secret reference, or a
/// placeholder to replace.
fn example(key: &str, property: &Value, side: Side) -> String {
    let secret = ["password", "secret", "token", "api_key"]
        .iter()
        .any(|s| key.contains(s));
    if secret {
        let prefix = match side {
            Side::Source => "SOURCE",
            Side::Destination => "DESTINATION",
        };
        return format!(
            "\"${{{prefix}_{}}}\"   # from the environment, never inline",
            key.to_ascii_uppercase()
        );
    }
    if let Some(default) = property.get("default").filter(|d| !d.is_null()) {
        return default.to_string();
    }
    if let Some(first) = first_allowed(property) {
        return first.to_string();
    }
    match (key, side, property.get("type").and_then(Value::as_str)) {
        ("host", _, _) => "localhost".into(),
        ("path", Side::Destination, _) => "lake".into(),
        ("path", Side::Source, _) => "data".into(),
        ("glob", _, _) => "\"*.csv\"".into(),
        ("name", _, _) => "my_stream".into(),
        (_, _, Some("integer" | "number")) => "1".into(),
        (_, _, Some("boolean")) => "false".into(),
        (_, _, Some("object")) => "{}".into(),
        (_, _, Some("array")) => "[]".into(),
        _ => "CHANGE_ME".into(),
    }
}

/// The first value an enumeration allows: `enum: [...]`, or `oneOf` of `const`s (documented
/// variants).
fn first_allowed(property: &Value) -> Option<&Value> {
    if let Some(first) = property
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return Some(first);
    }
    ["oneOf", "anyOf"].iter().find_map(|key| {
        property
            .get(*key)
            .and_then(Value::as_array)?
            .iter()
            .find_map(|o| {
                o.get("const")
                    .or_else(|| o.get("enum")?.as_array()?.first())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn required_written_optional_commented_secrets_referenced() {
        let spec = json!({
            "type": "object",
            "required": ["host", "database"],
            "properties": {
                "database": { "type": "string", "description": "The database to read." },
                "host": { "type": "string" },
                "password": { "type": ["string", "null"] },
                "port": { "type": "integer", "default": 5432 },
            }
        });
        let lines = config_lines(&spec, Side::Source, 2);
        assert_eq!(
            lines,
            [
                "  # The database to read.",
                "  database: CHANGE_ME",
                "  host: localhost",
                "  # password: \"${SOURCE_PASSWORD}\"   # from the environment, never inline",
                "  # port: 5432",
            ]
        );
    }

    #[test]
    fn documented_enum_variants_and_abbreviations() {
        let spec = json!({
            "type": "object",
            "required": ["format"],
            "properties": {
                "format": {
                    "description": "The format (e.g. csv). More text.",
                    "oneOf": [{ "const": "csv" }, { "const": "jsonl" }]
                },
                "schema": { "type": ["string", "null"], "default": null },
            }
        });
        let lines = config_lines(&spec, Side::Destination, 0);
        assert_eq!(
            lines,
            [
                "# The format (e.g. csv).",
                "format: \"csv\"",
                "# schema: CHANGE_ME"
            ]
        );
    }
}
