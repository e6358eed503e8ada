//! `#/` references and `$ref`, resolved as the CDK's `ManifestReferenceResolver` does.
//!
//! * a string that starts with `#/` is replaced by the (resolved) value at that path;
//! * a mapping with `$ref` is the referenced mapping with its sibling keys merged over it
//!   (siblings win; a shallow merge, as Python's `ref | siblings`);
//! * a path segment is tried as the whole remaining path first (keys may hold `/`), then
//!   split at the first `/`; list elements are addressed by index;
//! * a reference reached again while it is being resolved is a cycle, and an error.

use serde_json::{Map, Value};

use super::ManifestError;

const REF: &str = "$ref";

/// Resolves every reference in `manifest`, looking them up in the manifest as written.
pub fn resolve(manifest: &Value) -> Result<Value, ManifestError> {
    let mut visiting = Vec::new();
    evaluate(manifest, manifest, &mut visiting)
}

fn evaluate(
    node: &Value,
    root: &Value,
    visiting: &mut Vec<String>,
) -> Result<Value, ManifestError> {
    match node {
        Value::Object(map) => {
            let mut own = Map::new();
            for (k, v) in map {
                if k != REF {
                    own.insert(k.clone(), evaluate(v, root, visiting)?);
                }
            }
            let Some(reference) = map.get(REF) else {
                return Ok(Value::Object(own));
            };
            match evaluate(reference, root, visiting)? {
                Value::Object(mut referenced) => {
                    referenced.extend(own);
                    Ok(Value::Object(referenced))
                }
                // The CDK returns a non-mapping reference as it is, dropping the siblings.
                other => Ok(other),
            }
        }
        Value::Array(items) => items
            .iter()
            .map(|v| evaluate(v, root, visiting))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::String(s) if s.starts_with("#/") => {
            if visiting.contains(s) {
                return Err(ManifestError::CircularReference(s.clone()));
            }
            visiting.push(s.clone());
            let target =
                lookup(&s[2..], root).ok_or_else(|| ManifestError::UnknownReference(s.clone()))?;
            let resolved = evaluate(target, root, visiting);
            visiting.pop();
            resolved
        }
        other => Ok(other.clone()),
    }
}

fn lookup<'a>(path: &str, node: &'a Value) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(node);
    }
    if let Some(found) = child(node, path) {
        return Some(found);
    }
    // Keys may hold `/`: try every split of the path into an existing key and the rest.
    path.match_indices('/').find_map(|(i, _)| {
        let (head, tail) = (&path[..i], &path[i + 1..]);
        lookup(tail, child(node, head)?)
    })
}

fn child<'a>(node: &'a Value, key: &str) -> Option<&'a Value> {
    match node {
        Value::Object(map) => map.get(key),
        Value::Array(items) => items.get(key.parse::<usize>().ok()?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_references_and_ref_with_sibling_overrides() {
        let m = json!({
            "definitions": {
                "base": {"type": "HttpRequester", "url_base": "https://a", "http_method": "GET"},
                "req": {"$ref": "#/definitions/base", "http_method": "POST"},
                "url": "#/definitions/base/url_base",
                "a/b": {"x": 1},
                "list": [10, 20]
            },
            "r": "#/definitions/req",
            "slash": "#/definitions/a/b/x",
            "idx": "#/definitions/list/1",
            "u": "#/definitions/url"
        });
        let r = resolve(&m).unwrap();
        assert_eq!(
            r["r"],
            json!({"type": "HttpRequester", "url_base": "https://a", "http_method": "POST"})
        );
        assert_eq!(r["slash"], json!(1));
        assert_eq!(r["idx"], json!(20));
        assert_eq!(r["u"], json!("https://a"));
    }

    #[test]
    fn cycles_and_unknown_references_are_errors() {
        let m = json!({"a": "#/b", "b": {"$ref": "#/a"}});
        assert!(
            matches!(resolve(&m), Err(ManifestError::CircularReference(r)) if r == "#/a" || r == "#/b")
        );
        let m = json!({"a": "#/nope/x"});
        assert_eq!(
            resolve(&m).unwrap_err().to_string(),
            "the manifest refers to `#/nope/x`, which it does not define"
        );
    }
}
