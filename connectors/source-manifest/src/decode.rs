//! Records (JSON objects) into Arrow batches of the stream's schema.
//!
//! The schema comes from the stream's JSON Schema by weft-core's rule
//! ([`weft_core::json_schema`], shared with the Airbyte source). Each value is checked against
//! its column's type first; one that does not fit (text in an integer column, an unreadable
//! timestamp) is written as NULL and listed in the row's `_airbyte_meta`, as Airbyte's
//! destinations do. Fields the schema does not declare go to `_airbyte_extra`.

use std::collections::HashMap;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use chrono::NaiveDate;
use serde_json::{Map, Value};
use weft_core::json_schema::{is_json_text, EXTRA_COLUMN, META_COLUMN};

use crate::interpolate::datetime;

#[derive(Debug, Clone, Copy)]
enum Col {
    Int,
    Float,
    Bool,
    Text,
    Timestamp,
    Date,
    Json,
    Extra,
    Meta,
}

/// Builds batches of one stream's schema.
pub struct BatchBuilder {
    schema: SchemaRef,
    /// The schema arrow-json decodes: zoned timestamps without their zone (arrow-json parses
    /// only offset zones without chrono-tz); the zone is put back on the decoded columns.
    decode_schema: SchemaRef,
    columns: HashMap<String, Col>,
    rows: Vec<Value>,
    nulled: u64,
}

impl BatchBuilder {
    pub fn new(schema: SchemaRef) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let col = if f.name() == EXTRA_COLUMN {
                    Col::Extra
                } else if f.name() == META_COLUMN {
                    Col::Meta
                } else if is_json_text(f) {
                    Col::Json
                } else {
                    match f.data_type() {
                        DataType::Int64 => Col::Int,
                        DataType::Float64 => Col::Float,
                        DataType::Boolean => Col::Bool,
                        DataType::Timestamp(TimeUnit::Microsecond, _) => Col::Timestamp,
                        DataType::Date32 => Col::Date,
                        _ => Col::Text,
                    }
                };
                (f.name().clone(), col)
            })
            .collect();
        let decode_schema = std::sync::Arc::new(arrow_schema::Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Timestamp(unit, Some(_)) => f
                        .as_ref()
                        .clone()
                        .with_data_type(DataType::Timestamp(*unit, None)),
                    _ => f.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        ));
        Self {
            schema,
            decode_schema,
            columns,
            rows: Vec::new(),
            nulled: 0,
        }
    }

    /// Records pushed since the last batch was taken.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no record waits for the next batch.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Values written as NULL since the last call.
    pub fn take_nulled(&mut self) -> u64 {
        std::mem::take(&mut self.nulled)
    }

    /// Adds a record (a JSON object; anything else is one value of `_airbyte_extra`).
    pub fn push(&mut self, record: Value) {
        let Value::Object(record) = record else {
            let mut row = Map::new();
            row.insert(
                EXTRA_COLUMN.into(),
                Value::String(serde_json::json!({"_value": record}).to_string()),
            );
            self.rows.push(Value::Object(row));
            return;
        };
        let mut row = Map::new();
        let mut extra = Map::new();
        let mut changes = Vec::new();
        for (name, value) in record {
            let Some(col) = self.columns.get(&name).copied() else {
                extra.insert(name, value);
                continue;
            };
            if value.is_null() {
                continue;
            }
            let converted = match col {
                Col::Int => match &value {
                    Value::Number(n) if n.is_i64() || n.is_u64() => n.as_i64().map(Value::from),
                    Value::Number(n) => n
                        .as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                        .map(|f| Value::from(f as i64)),
                    _ => None,
                },
                Col::Float => value.is_number().then_some(value.clone()),
                Col::Bool => value.is_boolean().then_some(value.clone()),
                Col::Text => Some(match &value {
                    Value::String(_) => value.clone(),
                    Value::Number(n) => Value::String(n.to_string()),
                    Value::Bool(b) => Value::String(b.to_string()),
                    other => Value::String(other.to_string()),
                }),
                Col::Timestamp => value
                    .as_str()
                    .and_then(datetime::parse_any)
                    .map(|dt| Value::from(dt.timestamp_micros())),
                Col::Date => value
                    .as_str()
                    .and_then(|s| {
                        NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d").ok()
                    })
                    .map(|d| {
                        Value::from(
                            (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days(),
                        )
                    }),
                Col::Json => Some(Value::String(value.to_string())),
                Col::Extra | Col::Meta => {
                    extra.insert(name, value);
                    continue;
                }
            };
            match converted {
                Some(v) => {
                    row.insert(name, v);
                }
                None => {
                    self.nulled += 1;
                    changes.push(serde_json::json!({"field": name, "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}));
                }
            }
        }
        if !extra.is_empty() {
            row.insert(
                EXTRA_COLUMN.into(),
                Value::String(Value::Object(extra).to_string()),
            );
        }
        if !changes.is_empty() {
            row.insert(
                META_COLUMN.into(),
                Value::String(serde_json::json!({"changes": changes}).to_string()),
            );
        }
        self.rows.push(Value::Object(row));
    }

    /// The rows added since the last call, as one batch.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, String> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        let mut decoder = arrow_json::ReaderBuilder::new(self.decode_schema.clone())
            .with_batch_size(self.rows.len())
            .build_decoder()
            .map_err(|e| e.to_string())?;
        decoder.serialize(&self.rows).map_err(|e| e.to_string())?;
        self.rows.clear();
        let Some(batch) = decoder.flush().map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(col, field)| match field.data_type() {
                DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) => std::sync::Arc::new(
                    col.as_any()
                        .downcast_ref::<arrow_array::TimestampMicrosecondArray>()
                        .expect("decoded as microsecond timestamps")
                        .clone()
                        .with_timezone(tz.clone()),
                )
                    as arrow_array::ArrayRef,
                _ => col.clone(),
            })
            .collect();
        RecordBatch::try_new(self.schema.clone(), columns)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    use serde_json::json;

    #[test]
    fn typed_columns_extra_fields_and_nulled_values() {
        let schema = weft_core::json_schema::arrow_schema(&json!({"properties": {
            "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
            "tags": {"type": "array"}, "name": {"type": ["null", "string"]}
        }}));
        let mut b = BatchBuilder::new(schema);
        b.push(
            json!({"id": 1, "at": "2024-01-01T00:00:01Z", "tags": ["a"], "name": "x", "more": 5}),
        );
        b.push(json!({"id": "oops", "at": "not a time", "name": 7}));
        let batch = b.finish().unwrap().unwrap();
        assert_eq!(b.take_nulled(), 2);
        let col = |n: &str| batch.column(batch.schema().index_of(n).unwrap()).clone();
        assert_eq!(col("id").as_primitive::<Int64Type>().value(0), 1);
        assert!(col("id").is_null(1));
        assert_eq!(
            col("at")
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            1_704_067_201_000_000
        );
        assert_eq!(col("tags").as_string::<i32>().value(0), "[\"a\"]");
        assert_eq!(col("name").as_string::<i32>().value(1), "7");
        assert_eq!(
            col(EXTRA_COLUMN).as_string::<i32>().value(0),
            "{\"more\":5}"
        );
        assert!(col(META_COLUMN)
            .as_string::<i32>()
            .value(1)
            .contains("\"field\":\"id\""));
    }
}
