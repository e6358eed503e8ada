//! The manifest's `spec`: the user's connector config validated against its
//! `connection_specification` (JSON Schema), with the spec's defaults filled in first.
//!
//! Messages name the field and the rule it breaks, never the value (configs hold secrets).

use serde_json::Value;

use crate::ManifestSourceError;

/// Fills in `default`s of the spec's properties the config leaves out (nested objects too).
pub fn apply_defaults(schema: &Value, config: &mut Value) {
    let (Some(props), Some(obj)) = (
        schema.get("properties").and_then(Value::as_object),
        config.as_object_mut(),
    ) else {
        return;
    };
    for (name, prop) in props {
        match obj.get_mut(name) {
            None => {
                if let Some(d) = prop.get("default") {
                    obj.insert(name.clone(), d.clone());
                }
            }
            Some(child) if child.is_object() => apply_defaults(prop, child),
            Some(_) => {}
        }
    }
}

/// Validates `config` against the spec (JSON Schema draft 7, as the CDK's `jsonschema` does),
/// naming every offending field and the rule it breaks.
///
/// The messages are weft's own, built from the error's kind and the field's path: the
/// `jsonschema` crate's texts quote the offending value, and a config's values are secrets.
pub fn validate(schema: &Value, config: &Value) -> Result<(), ManifestSourceError> {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .build(schema)
        .map_err(|e| {
            ManifestSourceError::Manifest(format!(
                "its spec's `connection_specification` is not a valid JSON Schema (at `{}`): {}",
                e.schema_path().as_str(),
                e.kind().keyword()
            ))
        })?;
    let problems: Vec<String> = validator
        .iter_errors(config)
        .map(|e| describe(&field_path(e.instance_path().as_str()), e.kind()))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ManifestSourceError::Config(problems.join("; ")))
    }
}

/// A JSON pointer (`/opts/regions/0`) as the field path users write (`opts.regions[0]`).
fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "the config".into()
    } else {
        format!("`{path}`")
    }
}

fn describe(path: &str, kind: &jsonschema::error::ValidationErrorKind) -> String {
    use jsonschema::error::{TypeKind, ValidationErrorKind as K};
    match kind {
        K::Required { property } => format!(
            "{} lacks `{}`, which the manifest's spec requires",
            at(path),
            property.as_str().unwrap_or_default()
        ),
        K::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            format!(
                "{} does not satisfy the spec's `type` (expected {expected})",
                at(path)
            )
        }
        // The allowed values are the spec's, not the user's: safe to show.
        K::Enum { options } => {
            let names: Vec<String> = options
                .as_array()
                .map(|o| o.iter().map(Value::to_string).collect())
                .unwrap_or_default();
            format!(
                "{} is not one of the spec's `enum` values ({})",
                at(path),
                names.join(", ")
            )
        }
        K::Pattern { pattern } => {
            format!("{} does not match the spec's `pattern` {pattern}", at(path))
        }
        K::AdditionalProperties { unexpected } => format!(
            "{} has fields the spec does not allow: {}",
            at(path),
            unexpected
                .iter()
                .map(|u| format!("`{u}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        K::OneOfNotValid { .. } | K::AnyOf { .. } => format!(
            "{} fits none of the spec's `{}` options",
            at(path),
            kind.keyword()
        ),
        K::OneOfMultipleValid { .. } => {
            format!(
                "{} fits more than one of the spec's `oneOf` options",
                at(path)
            )
        }
        other => format!(
            "{} does not satisfy the spec's `{}`",
            at(path),
            other.keyword()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_then_validation_without_values() {
        let spec = json!({"type": "object", "required": ["api_key", "start"], "properties": {
            "api_key": {"type": "string"}, "start": {"type": "string"},
            "page_size": {"type": "integer", "default": 50, "minimum": 1},
            "opts": {"type": "object", "properties": {"region": {"type": "string", "default": "eu"}}}
        }});
        let mut config = json!({"api_key": 12345, "opts": {}});
        apply_defaults(&spec, &mut config);
        assert_eq!(config["page_size"], 50);
        assert_eq!(config["opts"]["region"], "eu");
        let err = validate(&spec, &config).unwrap_err().to_string();
        assert!(
            err.contains("`api_key` does not satisfy the spec's `type`"),
            "{err}"
        );
        assert!(err.contains("lacks `start`"), "{err}");
        assert!(!err.contains("12345"), "{err}");
        let err = validate(
            &spec,
            &json!({"api_key": "sekrit-value", "start": "s", "page_size": 0, "opts": {"region": 5}}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`page_size` does not satisfy the spec's `minimum`"),
            "{err}"
        );
        assert!(
            err.contains("`opts.region` does not satisfy the spec's `type` (expected string)"),
            "{err}"
        );
        assert!(!err.contains("sekrit"), "{err}");
        assert!(validate(&spec, &json!({"api_key": "k", "start": "s"})).is_ok());
    }
}
