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

/// Validates `config` against the spec, naming every offending field.
///
/// The keywords connector specs use are checked: `type`, `required`, `enum`/`const`,
/// `minimum`/`maximum`, `minLength`/`maxLength`, `pattern`, `properties`, `items`, and
/// `oneOf`/`anyOf` (one branch must fit). A full JSON Schema crate (`jsonschema`) was tried
/// first: it changes the features of `ahash` under arrow, rebuilding the whole workspace.
pub fn validate(schema: &Value, config: &Value) -> Result<(), ManifestSourceError> {
    let mut problems = Vec::new();
    check(schema, config, "", &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ManifestSourceError::Config(problems.join("; ")))
    }
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "(the root)".into()
    } else {
        format!("`{path}`")
    }
}

fn type_fits(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn check(schema: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    let Some(s) = schema.as_object() else { return };
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| type_fits(t, v)) {
        out.push(format!(
            "{} does not satisfy the spec's `type` (expected {})",
            at(path),
            types.join(" or ")
        ));
        return;
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(branches) = s.get(key).and_then(Value::as_array) {
            let fits = branches.iter().any(|b| {
                let mut errs = Vec::new();
                check(b, v, path, &mut errs);
                errs.is_empty()
            });
            if !fits {
                out.push(format!(
                    "{} fits none of the spec's `{key}` options",
                    at(path)
                ));
            }
        }
    }
    if let Some(options) = s.get("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            let names: Vec<String> = options.iter().map(|o| o.to_string()).collect();
            out.push(format!(
                "{} is not one of the spec's `enum` values ({})",
                at(path),
                names.join(", ")
            ));
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            out.push(format!("{} does not satisfy the spec's `const`", at(path)));
        }
    }
    if let Some(n) = v.as_f64() {
        if s.get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            out.push(format!(
                "{} does not satisfy the spec's `minimum`",
                at(path)
            ));
        }
        if s.get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            out.push(format!(
                "{} does not satisfy the spec's `maximum`",
                at(path)
            ));
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
        {
            out.push(format!(
                "{} does not satisfy the spec's `minLength`",
                at(path)
            ));
        }
        if s.get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len > m)
        {
            out.push(format!(
                "{} does not satisfy the spec's `maxLength`",
                at(path)
            ));
        }
        if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
            if regex::Regex::new(pattern).is_ok_and(|re| !re.is_match(text)) {
                out.push(format!(
                    "{} does not match the spec's `pattern` {pattern}",
                    at(path)
                ));
            }
        }
    }
    if let Some(obj) = v.as_object() {
        for name in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !obj.contains_key(name) {
                out.push(format!(
                    "{} lacks `{name}`, which the manifest's spec requires",
                    at(path)
                ));
            }
        }
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                if let Some(child) = obj.get(name) {
                    let p = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    check(prop, child, &p, out);
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            check(items, item, &format!("{path}[{i}]"), out);
        }
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
        assert!(validate(&spec, &json!({"api_key": "k", "start": "s"})).is_ok());
    }
}
