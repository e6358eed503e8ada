//! Records out of a response: `DpathExtractor`, `RecordFilter`, and the transformations
//! (`AddFields`, `RemoveFields`), as the CDK applies them.

use serde_json::{Map, Value};

use crate::interpolate::{Interpolator, Vars};
use crate::manifest::model::{DpathExtractor, RecordFilter, Transformation};
use crate::ManifestSourceError;

/// The records at the extractor's path: a list gives its elements, anything else truthy one
/// record; `*` matches every element of a list or value of a mapping.
pub fn extract(
    extractor: &DpathExtractor,
    body: Value,
    interp: &Interpolator,
    vars: &Vars,
) -> Result<Vec<Value>, ManifestSourceError> {
    let mut v = vars.clone();
    v.insert(
        "parameters".into(),
        Value::Object(extractor.parameters.clone()),
    );
    let path: Vec<String> = extractor
        .field_path
        .iter()
        .map(|p| interp.eval_string(p, &v))
        .collect::<Result<_, _>>()?;
    let extracted = if path.is_empty() {
        body
    } else if path.iter().any(|p| p == "*") {
        let mut out = Vec::new();
        glob(&body, &path, &mut out);
        Value::Array(out)
    } else {
        let mut node = &body;
        let mut found = true;
        for key in &path {
            match step(node, key) {
                Some(next) => node = next,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if found {
            node.clone()
        } else {
            Value::Array(Vec::new())
        }
    };
    Ok(match extracted {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        Value::Object(o) if o.is_empty() => Vec::new(),
        Value::Bool(false) => Vec::new(),
        Value::String(s) if s.is_empty() => Vec::new(),
        other => vec![other],
    })
}

fn step<'a>(node: &'a Value, key: &str) -> Option<&'a Value> {
    match node {
        Value::Object(m) => m.get(key),
        Value::Array(a) => a.get(key.parse::<usize>().ok()?),
        _ => None,
    }
}

fn glob(node: &Value, path: &[String], out: &mut Vec<Value>) {
    let Some((head, rest)) = path.split_first() else {
        out.push(node.clone());
        return;
    };
    if head == "*" {
        match node {
            Value::Object(m) => m.values().for_each(|v| glob(v, rest, out)),
            Value::Array(a) => a.iter().for_each(|v| glob(v, rest, out)),
            _ => {}
        }
    } else if let Some(next) = step(node, head) {
        glob(next, rest, out);
    }
}

/// Whether the record passes the filter's condition.
pub fn keep(
    filter: &RecordFilter,
    record: &Value,
    interp: &Interpolator,
    vars: &Vars,
) -> Result<bool, ManifestSourceError> {
    let mut v = vars.clone();
    v.insert("record".into(), record.clone());
    v.insert(
        "parameters".into(),
        Value::Object(filter.parameters.clone()),
    );
    Ok(interp.eval_bool(&Value::String(filter.condition.clone()), &v)?)
}

/// Applies the stream's transformations to a record, in order.
pub fn transform(
    transformations: &[Transformation],
    record: &mut Value,
    interp: &Interpolator,
    vars: &Vars,
) -> Result<(), ManifestSourceError> {
    for t in transformations {
        match t {
            Transformation::AddFields {
                fields,
                condition,
                parameters,
            } => {
                let mut v = vars.clone();
                v.insert("record".into(), record.clone());
                v.insert("parameters".into(), Value::Object(parameters.clone()));
                if let Some(c) = condition.as_ref().filter(|c| !c.is_empty()) {
                    if !interp.eval_bool(&Value::String(c.clone()), &v)? {
                        continue;
                    }
                }
                for field in fields {
                    let mut fv = v.clone();
                    fv.insert("parameters".into(), Value::Object(field.parameters.clone()));
                    let value = interp.eval(&field.value, &fv, None)?;
                    let value = cast(value, field.value_type.as_deref());
                    let path: Vec<String> = field
                        .path
                        .iter()
                        .map(|p| interp.eval_string(&Value::String(p.clone()), &fv))
                        .collect::<Result<_, _>>()?;
                    set_path(record, &path, value);
                }
            }
            Transformation::RemoveFields {
                field_pointers,
                condition,
            } => {
                for pointer in field_pointers {
                    remove_path(record, pointer, condition.as_deref(), interp, vars)?;
                }
            }
        }
    }
    Ok(())
}

fn cast(value: Value, ty: Option<&str>) -> Value {
    let text = || match &value {
        Value::String(s) => s.clone(),
        v => crate::interpolate::py_str(v),
    };
    match ty {
        Some("string") => Value::String(text()),
        Some("integer") => text()
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(value),
        Some("number") => text()
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(value),
        Some("boolean") => match text().as_str() {
            "True" | "true" => Value::Bool(true),
            "False" | "false" => Value::Bool(false),
            _ => value,
        },
        _ => value,
    }
}

fn set_path(record: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = record;
    for key in parents {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        node = node
            .as_object_mut()
            .expect("made an object above")
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    node.as_object_mut()
        .expect("made an object above")
        .insert(last.clone(), value);
}

fn remove_path(
    node: &mut Value,
    path: &[String],
    condition: Option<&str>,
    interp: &Interpolator,
    vars: &Vars,
) -> Result<(), ManifestSourceError> {
    let Some((head, rest)) = path.split_first() else {
        return Ok(());
    };
    let Value::Object(map) = node else {
        return Ok(());
    };
    let keys: Vec<String> = if head == "*" || head == "**" {
        map.keys().cloned().collect()
    } else {
        vec![head.clone()]
    };
    for key in keys {
        if rest.is_empty() {
            let remove = match (condition.filter(|c| !c.is_empty()), map.get(&key)) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(c), Some(v)) => {
                    let mut cv = vars.clone();
                    cv.insert("property".into(), v.clone());
                    interp.eval_bool(&Value::String(c.to_string()), &cv)?
                }
            };
            if remove {
                map.remove(&key);
            }
        } else if let Some(child) = map.get_mut(&key) {
            remove_path(child, rest, condition, interp, vars)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ext(path: Value) -> DpathExtractor {
        serde_json::from_value(json!({"field_path": path})).unwrap()
    }

    #[test]
    fn dpath_extraction() {
        let i = Interpolator::new();
        let vars = json!({"config": {"key": "data"}})
            .as_object()
            .unwrap()
            .clone();
        let body = json!({"data": [{"a": 1}, {"a": 2}], "one": {"b": 1}, "groups": {"x": {"items": [1]}, "y": {"items": [2]}}});
        assert_eq!(
            extract(&ext(json!(["{{ config.key }}"])), body.clone(), &i, &vars).unwrap(),
            vec![json!({"a": 1}), json!({"a": 2})]
        );
        assert_eq!(
            extract(&ext(json!(["one"])), body.clone(), &i, &vars).unwrap(),
            vec![json!({"b": 1})]
        );
        assert_eq!(
            extract(&ext(json!(["missing"])), body.clone(), &i, &vars).unwrap(),
            Vec::<Value>::new()
        );
        assert_eq!(
            extract(&ext(json!(["data", "*", "a"])), body.clone(), &i, &vars).unwrap(),
            vec![json!(1), json!(2)]
        );
        assert_eq!(
            extract(
                &ext(json!(["groups", "*", "items"])),
                body.clone(),
                &i,
                &vars
            )
            .unwrap(),
            vec![json!([1]), json!([2])]
        );
        assert_eq!(
            extract(&ext(json!([])), json!([{"a": 1}]), &i, &vars).unwrap(),
            vec![json!({"a": 1})]
        );
        assert_eq!(
            extract(&ext(json!(["data", "1"])), body, &i, &vars).unwrap(),
            vec![json!({"a": 2})]
        );
    }

    #[test]
    fn add_and_remove_fields() {
        let i = Interpolator::new();
        let vars = json!({"config": {"region": "eu"}, "stream_slice": {"id": 7}})
            .as_object()
            .unwrap()
            .clone();
        let t: Vec<Transformation> = serde_json::from_value(json!([
            {"type": "AddFields", "fields": [
                {"path": ["region"], "value": "{{ config.region }}"},
                {"path": ["meta", "parent"], "value": "{{ stream_partition.id }}"},
                {"path": ["n"], "value": "{{ record.count }}", "value_type": "string"}
            ]},
            {"type": "RemoveFields", "field_pointers": [["secret"], ["nested", "*"], ["absent"]]},
            {"type": "RemoveFields", "field_pointers": [["*"]], "condition": "{{ property == 'drop-me' }}"}
        ])).unwrap();
        let mut record = json!({"count": 3, "secret": "s", "nested": {"a": 1}, "x": "drop-me"});
        transform(&t, &mut record, &i, &vars).unwrap();
        assert_eq!(
            record,
            json!({"count": 3, "nested": {}, "region": "eu", "meta": {"parent": 7}, "n": "3"})
        );
    }
}
