//! From a JSON Schema of records (an Airbyte stream's, a declarative manifest's) to an Arrow
//! schema, shared by the sources that receive JSON records.
//!
//! The rule, per top-level property (every column is nullable: Airbyte records may omit any
//! field):
//!
//! | JSON Schema | Arrow |
//! | --- | --- |
//! | `integer` (or `number` with `airbyte_type: integer`) | Int64 |
//! | `number` | Float64 |
//! | `boolean` | Boolean |
//! | `string` with `format: date` | Date32 |
//! | `string` with `format: date-time` | Timestamp µs, UTC (no zone with `airbyte_type: timestamp_without_timezone`) |
//! | other `string` | Utf8 |
//! | `object`, `array`, no type, `$ref`, or a mix involving them | Utf8 holding the JSON text |
//!
//! Type arrays (`["null", "string"]`) and `anyOf`/`oneOf` drop `null` and take the widest
//! type: integer and number give Float64; scalars mixed with strings give Utf8 (numbers and
//! booleans as text); anything else gives JSON text. JSON-text columns carry the field metadata
//! [`JSON_TEXT`]. Fields a record has but the schema lacks land in [`EXTRA_COLUMN`] as a JSON
//! object, so nothing is dropped. [`META_COLUMN`] comes last: per row, the values weft could not
//! fit their column's type and wrote as NULL (null when there were none).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

/// The column holding a record's fields that its stream's schema does not declare.
pub const EXTRA_COLUMN: &str = "_airbyte_extra";
/// The column recording, per row, the values written as NULL because they did not fit their
/// column's type, as Airbyte's destinations record them: `{"changes": [{"field": …, "change":
/// "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}]}`; null when the row has none.
pub const META_COLUMN: &str = "_airbyte_meta";
/// The zone of zoned timestamps, as elsewhere in weft.
pub const UTC: &str = "UTC";
/// Field metadata key marking a Utf8 column that holds JSON text.
pub use crate::values::JSON_TEXT;

/// What one property becomes.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Type(DataType),
    JsonText,
}

/// The Arrow schema of a stream: its declared properties in order, then [`EXTRA_COLUMN`] and
/// [`META_COLUMN`].
pub fn arrow_schema(json_schema: &Value) -> SchemaRef {
    let mut fields = Vec::new();
    if let Some(props) = json_schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            if name == EXTRA_COLUMN || name == META_COLUMN {
                continue;
            }
            fields.push(match kind_of(prop) {
                Kind::Type(ty) => Field::new(name, ty, true),
                Kind::JsonText => json_text_field(name),
            });
        }
    }
    fields.push(json_text_field(EXTRA_COLUMN));
    fields.push(json_text_field(META_COLUMN));
    Arc::new(Schema::new(fields))
}

fn json_text_field(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
        .with_metadata(HashMap::from([(JSON_TEXT.to_string(), "true".to_string())]))
}

/// Whether a column holds JSON text (objects, arrays, mixed types) rather than typed values.
pub fn is_json_text(field: &Field) -> bool {
    field.metadata().get(JSON_TEXT).is_some_and(|v| v == "true")
}

fn kind_of(prop: &Value) -> Kind {
    let Some(obj) = prop.as_object() else {
        return Kind::JsonText;
    };
    let branches = obj
        .get("anyOf")
        .or_else(|| obj.get("oneOf"))
        .and_then(Value::as_array);
    if let Some(branches) = branches {
        let kinds: Vec<Kind> = branches
            .iter()
            .filter(|b| !is_null_only(b))
            .map(kind_of)
            .collect();
        return widest(kinds);
    }
    let types: Vec<&str> = match obj.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return Kind::JsonText,
    };
    let kinds: Vec<Kind> = types
        .into_iter()
        .filter(|t| *t != "null")
        .map(|t| scalar_kind(t, obj))
        .collect();
    widest(kinds)
}

fn is_null_only(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

fn scalar_kind(ty: &str, obj: &serde_json::Map<String, Value>) -> Kind {
    let airbyte_type = obj.get("airbyte_type").and_then(Value::as_str);
    let format = obj.get("format").and_then(Value::as_str);
    Kind::Type(match ty {
        "integer" => DataType::Int64,
        "number" if airbyte_type == Some("integer") => DataType::Int64,
        "number" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "string" => match (format, airbyte_type) {
            (_, Some("timestamp_without_timezone")) => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            (Some("date-time"), _) | (_, Some("timestamp_with_timezone")) => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
            }
            (Some("date"), _) | (_, Some("date")) => DataType::Date32,
            _ => DataType::Utf8,
        },
        _ => return Kind::JsonText,
    })
}

/// The one kind that holds every branch's values.
fn widest(kinds: Vec<Kind>) -> Kind {
    let mut kinds = kinds.into_iter();
    let Some(first) = kinds.next() else {
        // Only `null`, or nothing at all: keep whatever comes as JSON text.
        return Kind::JsonText;
    };
    kinds.fold(first, |acc, next| match (acc, next) {
        (a, b) if a == b => a,
        (Kind::JsonText, _) | (_, Kind::JsonText) => Kind::JsonText,
        (Kind::Type(a), Kind::Type(b)) => {
            let numeric = |t: &DataType| matches!(t, DataType::Int64 | DataType::Float64);
            if numeric(&a) && numeric(&b) {
                Kind::Type(DataType::Float64)
            } else if a == DataType::Utf8 || b == DataType::Utf8 {
                // Numbers, booleans, dates and timestamps all read as their text.
                Kind::Type(DataType::Utf8)
            } else {
                Kind::JsonText
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn types(schema: &Value) -> Vec<(String, String, bool)> {
        arrow_schema(schema)
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().to_string(), is_json_text(f)))
            .collect()
    }

    #[test]
    fn maps_the_documented_rule() {
        let schema = json!({"type": "object", "properties": {
            "id": {"type": "integer"},
            "price": {"type": "number"},
            "big": {"type": "number", "airbyte_type": "integer"},
            "ok": {"type": ["null", "boolean"]},
            "name": {"type": "string"},
            "day": {"type": "string", "format": "date"},
            "at": {"type": ["null", "string"], "format": "date-time", "airbyte_type": "timestamp_with_timezone"},
            "local": {"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"},
            "address": {"type": "object", "properties": {"city": {"type": "string"}}},
            "tags": {"type": "array", "items": {"type": "string"}},
            "anything": {},
            "num": {"anyOf": [{"type": "integer"}, {"type": "number"}, {"type": "null"}]},
            "text": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
            "mixed": {"type": ["string", "object"]},
        }});
        let got = types(&schema);
        // serde_json keeps object keys sorted, so columns come in name order.
        let mut expect = vec![
            ("id", "Int64", false),
            ("price", "Float64", false),
            ("big", "Int64", false),
            ("ok", "Boolean", false),
            ("name", "Utf8", false),
            ("day", "Date32", false),
            ("at", "Timestamp(µs, \"UTC\")", false),
            ("local", "Timestamp(µs)", false),
            ("address", "Utf8", true),
            ("tags", "Utf8", true),
            ("anything", "Utf8", true),
            ("num", "Float64", false),
            ("text", "Utf8", false),
            ("mixed", "Utf8", true),
        ];
        expect.sort_by_key(|e| e.0);
        expect.push((EXTRA_COLUMN, "Utf8", true));
        expect.push((META_COLUMN, "Utf8", true));
        assert_eq!(got.len(), expect.len());
        for ((n, t, j), (en, et, ej)) in got.iter().zip(expect) {
            assert_eq!((n.as_str(), j), (en, &ej), "{n}");
            assert_eq!(t, et, "type of {n}");
        }
        assert!(arrow_schema(&schema)
            .fields()
            .iter()
            .all(|f| f.is_nullable()));
    }

    #[test]
    fn a_schema_without_properties_has_only_the_extra_and_meta_columns() {
        assert_eq!(
            types(&json!({"type": "object"})),
            [
                (EXTRA_COLUMN.to_string(), "Utf8".to_string(), true),
                (META_COLUMN.to_string(), "Utf8".to_string(), true)
            ]
        );
    }
}
