//! RECORD `data` objects into Arrow batches.
//!
//! Typed columns are decoded by arrow-json straight from the bytes the connector printed (no
//! row type in between). JSON-text columns (objects, arrays, mixed types) and fields the schema
//! does not declare are picked out in one scan of each record's keys: the former keep their
//! JSON text, the latter go to `_airbyte_extra` as one JSON object per row.
//!
//! A value that does not fit its column's type (an empty string for a timestamp, text for an
//! integer) fails the batch's decode. The batch is then decoded record by record to find the
//! offending fields: with [`OffSchema::Null`] they are set to null and listed in the row's
//! `_airbyte_meta`, otherwise the error names the stdout line and the field.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::OffSchema;
use crate::schema::{is_json_text, EXTRA_COLUMN, META_COLUMN, UTC};

/// A record that could not be decoded, and the stdout line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub line: u64,
    pub message: String,
}

enum Column {
    Typed(usize),
    Json(usize),
    Extra,
    Meta,
}

/// Accumulates records of one stream and turns them into batches of its schema.
pub struct RecordDecoder {
    schema: SchemaRef,
    typed: SchemaRef,
    batch_size: usize,
    decoder: Option<arrow_json::reader::Decoder>,
    layout: Vec<Column>,
    json_index: HashMap<String, usize>,
    typed_names: HashSet<String>,
    json_builders: Vec<StringBuilder>,
    extra: StringBuilder,
    /// The typed part: the records' `data` bytes, one per line, decoded at `finish`.
    buf: Vec<u8>,
    /// Where each buffered record starts in `buf`, and its stdout line.
    starts: Vec<(usize, u64)>,
    off_schema: OffSchema,
    /// Per buffered row, its `_airbyte_meta` (set only when a value was nulled).
    meta: Vec<Option<String>>,
    /// Values nulled since the last [`RecordDecoder::take_nulled`].
    nulled: u64,
}

impl RecordDecoder {
    pub fn new(
        schema: SchemaRef,
        batch_size: usize,
        off_schema: OffSchema,
    ) -> Result<Self, String> {
        let mut typed_fields = Vec::new();
        let mut layout = Vec::new();
        let mut json_index = HashMap::new();
        let mut typed_names = HashSet::new();
        for field in schema.fields() {
            if field.name() == EXTRA_COLUMN {
                layout.push(Column::Extra);
            } else if field.name() == META_COLUMN {
                layout.push(Column::Meta);
            } else if is_json_text(field) {
                layout.push(Column::Json(json_index.len()));
                json_index.insert(field.name().clone(), json_index.len());
            } else {
                layout.push(Column::Typed(typed_fields.len()));
                typed_names.insert(field.name().clone());
                typed_fields.push(Arc::new(decodable(field)));
            }
        }
        let typed = Arc::new(Schema::new(typed_fields));
        let mut this = Self {
            json_builders: (0..json_index.len())
                .map(|_| StringBuilder::new())
                .collect(),
            schema,
            typed,
            batch_size,
            decoder: None,
            layout,
            json_index,
            typed_names,
            extra: StringBuilder::new(),
            buf: Vec::new(),
            starts: Vec::new(),
            off_schema,
            meta: Vec::new(),
            nulled: 0,
        };
        this.decoder = Some(this.new_decoder(batch_size)?);
        Ok(this)
    }

    fn new_decoder(&self, batch_size: usize) -> Result<arrow_json::reader::Decoder, String> {
        decoder_for(self.typed.clone(), batch_size)
    }

    /// How many values were written as NULL since the last call.
    pub fn take_nulled(&mut self) -> u64 {
        std::mem::take(&mut self.nulled)
    }
}

fn decoder_for(
    schema: SchemaRef,
    batch_size: usize,
) -> Result<arrow_json::reader::Decoder, String> {
    arrow_json::ReaderBuilder::new(schema)
        // Fields outside the typed part are handled by the key scan, not dropped.
        .with_strict_mode(false)
        // A string column takes numbers and booleans as their text.
        .with_coerce_primitive(true)
        .with_batch_size(batch_size)
        .build_decoder()
        .map_err(|e| e.to_string())
}

impl RecordDecoder {
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_full(&self) -> bool {
        self.len() >= self.batch_size
    }

    /// Adds one record's `data`, printed on stdout line `line`.
    pub fn push(&mut self, data: &RawValue, line: u64) -> Result<(), DecodeError> {
        let mut slots: Vec<Option<&RawValue>> = vec![None; self.json_builders.len()];
        let mut extras: Vec<(Cow<'_, str>, &RawValue)> = Vec::new();
        let mut de = serde_json::Deserializer::from_str(data.get());
        Scan {
            json_index: &self.json_index,
            typed_names: &self.typed_names,
            slots: &mut slots,
            extras: &mut extras,
        }
        .deserialize(&mut de)
        .map_err(|e| DecodeError {
            line,
            message: format!("the record's `data` is not a JSON object ({e})"),
        })?;
        for (builder, slot) in self.json_builders.iter_mut().zip(slots) {
            match slot {
                Some(raw) if raw.get() != "null" => builder.append_value(raw.get()),
                _ => builder.append_null(),
            }
        }
        if extras.is_empty() {
            self.extra.append_null();
        } else {
            let mut text = String::from("{");
            for (i, (key, value)) in extras.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&serde_json::to_string(key.as_ref()).expect("a string serialises"));
                text.push(':');
                text.push_str(value.get());
            }
            text.push('}');
            self.extra.append_value(text);
        }
        self.starts.push((self.buf.len(), line));
        self.buf.extend_from_slice(data.get().as_bytes());
        self.buf.push(b'\n');
        self.meta.push(None);
        Ok(())
    }

    /// The buffered records as one batch (None when there are none).
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, DecodeError> {
        if self.starts.is_empty() {
            return Ok(None);
        }
        let rows = self.starts.len();
        let typed = self.decode_typed(rows);
        let first_line = self.starts[0].1;
        self.buf.clear();
        self.starts.clear();
        let meta = std::mem::take(&mut self.meta);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.layout.len());
        let mut json: Vec<ArrayRef> = self
            .json_builders
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let extra: ArrayRef = Arc::new(self.extra.finish());
        let typed = typed?;
        for column in &self.layout {
            columns.push(match column {
                Column::Typed(i) => relabel(&typed[*i], self.schema.field(columns.len())),
                Column::Json(i) => std::mem::replace(&mut json[*i], extra.slice(0, 0)),
                Column::Extra => extra.clone(),
                Column::Meta => {
                    let mut builder = StringBuilder::with_capacity(rows, 0);
                    for m in &meta {
                        builder.append_option(m.as_deref());
                    }
                    Arc::new(builder.finish()) as ArrayRef
                }
            });
        }
        RecordBatch::try_new(self.schema.clone(), columns)
            .map(Some)
            .map_err(|e| DecodeError {
                line: first_line,
                message: e.to_string(),
            })
    }

    fn decode_typed(&mut self, rows: usize) -> Result<Vec<ArrayRef>, DecodeError> {
        if self.typed.fields().is_empty() {
            return Ok(Vec::new());
        }
        let decoder = self.decoder.as_mut().expect("a decoder");
        let attempt = decoder.decode(&self.buf).and_then(|consumed| {
            debug_assert_eq!(consumed, self.buf.len());
            decoder.flush()
        });
        match attempt {
            Ok(Some(batch)) if batch.num_rows() == rows => Ok(batch.columns().to_vec()),
            Ok(other) => Err(DecodeError {
                line: self.starts[0].1,
                message: format!(
                    "decoded {} rows from {rows} records (a bug in weft)",
                    other.map_or(0, |b| b.num_rows())
                ),
            }),
            Err(err) => {
                // The decoder is unusable after an error.
                self.decoder = self.new_decoder(self.batch_size).ok();
                if self.off_schema == OffSchema::Null && self.null_off_schema_values() {
                    return self.decode_typed_again(rows, err.to_string());
                }
                Err(self.diagnose(err.to_string()))
            }
        }
    }

    /// The second attempt, after off-schema values were nulled.
    fn decode_typed_again(
        &mut self,
        rows: usize,
        first_error: String,
    ) -> Result<Vec<ArrayRef>, DecodeError> {
        let decoder = self.decoder.as_mut().expect("a decoder");
        let attempt = decoder.decode(&self.buf).and_then(|_| decoder.flush());
        match attempt {
            Ok(Some(batch)) if batch.num_rows() == rows => Ok(batch.columns().to_vec()),
            _ => {
                self.decoder = self.new_decoder(self.batch_size).ok();
                Err(self.diagnose(first_error))
            }
        }
    }

    /// The typed fields of one record's `data` that fail to decode, with arrow-json's error.
    fn bad_fields(&self, data: &[u8]) -> Vec<(String, String)> {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(data)
        else {
            return Vec::new();
        };
        let mut bad = Vec::new();
        for field in self.typed.fields() {
            let Some(value) = map.get(field.name()).filter(|v| !v.is_null()) else {
                continue;
            };
            let single = Arc::new(Schema::new(vec![field.clone()]));
            let Ok(mut decoder) = decoder_for(single, 1) else {
                continue;
            };
            let one = serde_json::json!({ field.name().as_str(): value }).to_string();
            if let Err(e) = decoder.decode(one.as_bytes()).and_then(|_| decoder.flush()) {
                bad.push((field.name().clone(), e.to_string()));
            }
        }
        bad
    }

    /// Rewrites the buffered records whose typed values do not fit with those values set to
    /// null, noting each in the row's meta; false when no such value was found (the batch
    /// fails for another reason).
    fn null_off_schema_values(&mut self) -> bool {
        let mut buf = Vec::with_capacity(self.buf.len());
        let mut starts = Vec::with_capacity(self.starts.len());
        let mut changed = false;
        for (i, &(start, line)) in self.starts.iter().enumerate() {
            let end = self.starts.get(i + 1).map_or(self.buf.len(), |s| s.0);
            let record = &self.buf[start..end];
            let data = record.strip_suffix(b"\n").unwrap_or(record);
            starts.push((buf.len(), line));
            let bad = self.bad_fields(data);
            let fixed = (!bad.is_empty())
                .then(|| serde_json::from_slice::<serde_json::Value>(data).ok())
                .flatten();
            let Some(mut value) = fixed else {
                buf.extend_from_slice(record);
                continue;
            };
            let mut changes = Vec::new();
            for (name, why) in &bad {
                value[name.as_str()] = serde_json::Value::Null;
                tracing::warn!(
                    "stdout line {line}: field `{name}` does not fit its column's type ({why}); \
                     written as NULL and recorded in `{META_COLUMN}`"
                );
                changes.push(serde_json::json!({
                    "field": name,
                    "change": "NULLED",
                    "reason": "DESTINATION_TYPECAST_ERROR",
                }));
            }
            self.nulled += bad.len() as u64;
            self.meta[i] = Some(serde_json::json!({ "changes": changes }).to_string());
            buf.extend_from_slice(value.to_string().as_bytes());
            buf.push(b'\n');
            changed = true;
        }
        if changed {
            self.buf = buf;
            self.starts = starts;
        }
        changed
    }

    /// Decodes the buffered records one at a time to name the first bad one.
    fn diagnose(&self, fallback: String) -> DecodeError {
        for (i, &(start, line)) in self.starts.iter().enumerate() {
            let end = self.starts.get(i + 1).map_or(self.buf.len(), |s| s.0);
            let Ok(mut single) = self.new_decoder(1) else {
                break;
            };
            let result = single
                .decode(&self.buf[start..end])
                .and_then(|_| single.flush());
            if let Err(e) = result {
                let record = &self.buf[start..end];
                let bad = self.bad_fields(record.strip_suffix(b"\n").unwrap_or(record));
                let message = match bad.first() {
                    Some((name, why)) => format!(
                        "field `{name}`: {why} (set the source's `off_schema: null` to write \
                         such values as NULL, recorded in `{META_COLUMN}`)"
                    ),
                    None => e.to_string(),
                };
                return DecodeError { line, message };
            }
        }
        DecodeError {
            line: self.starts[0].1,
            message: fallback,
        }
    }
}

/// arrow-json knows offsets, not zone names: zoned timestamps decode as `+00:00` and are
/// relabelled (the instants are the same).
fn decodable(field: &Field) -> Field {
    match field.data_type() {
        DataType::Timestamp(unit, Some(tz)) if tz.as_ref() == UTC => field
            .clone()
            .with_data_type(DataType::Timestamp(*unit, Some("+00:00".into()))),
        _ => field.clone(),
    }
}

fn relabel(array: &ArrayRef, field: &Field) -> ArrayRef {
    match field.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == UTC => Arc::new(
            array
                .as_primitive::<TimestampMicrosecondType>()
                .clone()
                .with_timezone(UTC),
        ),
        _ => array.clone(),
    }
}

/// One pass over a record's keys: JSON-text values and undeclared fields are collected,
/// typed values skipped (arrow-json reads them).
struct Scan<'s, 'de> {
    json_index: &'s HashMap<String, usize>,
    typed_names: &'s HashSet<String>,
    slots: &'s mut Vec<Option<&'de RawValue>>,
    extras: &'s mut Vec<(Cow<'de, str>, &'de RawValue)>,
}

impl<'de> DeserializeSeed<'de> for Scan<'_, 'de> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if let Some(&i) = self.json_index.get(key.as_ref()) {
                self.slots[i] = Some(map.next_value::<&'de RawValue>()?);
            } else if self.typed_names.contains(key.as_ref()) {
                map.next_value::<IgnoredAny>()?;
            } else {
                let value = map.next_value::<&'de RawValue>()?;
                self.extras.push((key, value));
            }
        }
        Ok(())
    }
}

/// A key borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    use arrow_array::Array;
    use serde_json::json;

    fn decoder(batch_size: usize) -> RecordDecoder {
        let schema = crate::schema::arrow_schema(&json!({"properties": {
            "id": {"type": "integer"},
            "name": {"type": ["null", "string"]},
            "at": {"type": "string", "format": "date-time"},
            "address": {"type": "object"},
        }}));
        RecordDecoder::new(schema, batch_size, OffSchema::Fail).unwrap()
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    #[test]
    fn typed_json_text_and_extra_columns() {
        let mut d = decoder(10);
        d.push(&raw(r#"{"id": 1, "name": "a", "at": "2024-01-02T03:04:05+01:00", "address": {"city": "X"}, "surprise": [1, 2]}"#), 7).unwrap();
        d.push(&raw(r#"{"id": 2, "name": 12, "address": null}"#), 8)
            .unwrap();
        let batch = d.finish().unwrap().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let ids = batch
            .column_by_name("id")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(ids.values(), &[1, 2]);
        let names = batch.column_by_name("name").unwrap().as_string::<i32>();
        assert_eq!((names.value(0), names.value(1)), ("a", "12"));
        let at = batch
            .column_by_name("at")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(at.value(0), 1_704_161_045_000_000);
        assert!(at.is_null(1));
        let address = batch.column_by_name("address").unwrap().as_string::<i32>();
        assert_eq!(address.value(0), r#"{"city": "X"}"#);
        assert!(address.is_null(1));
        let extra = batch
            .column_by_name("_airbyte_extra")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(extra.value(0), r#"{"surprise":[1, 2]}"#);
        assert!(extra.is_null(1));
        assert!(d.finish().unwrap().is_none());
    }

    #[test]
    fn a_bad_value_names_its_line_and_the_decoder_recovers() {
        let mut d = decoder(10);
        d.push(&raw(r#"{"id": 1}"#), 3).unwrap();
        d.push(&raw(r#"{"id": "not a number"}"#), 4).unwrap();
        let err = d.finish().unwrap_err();
        assert_eq!(err.line, 4, "{err:?}");
        assert!(err.message.contains("not a number"), "{err:?}");
        d.push(&raw(r#"{"id": 5}"#), 9).unwrap();
        assert_eq!(d.finish().unwrap().unwrap().num_rows(), 1);
    }

    #[test]
    fn off_schema_values_become_null_and_are_recorded_per_row() {
        let schema = crate::schema::arrow_schema(&json!({"properties": {
            "id": {"type": "integer"},
            "at": {"type": "string", "format": "date-time"},
        }}));
        let mut d = RecordDecoder::new(schema, 10, OffSchema::Null).unwrap();
        d.push(&raw(r#"{"id": 1, "at": "2024-01-02T03:04:05Z"}"#), 3)
            .unwrap();
        d.push(&raw(r#"{"id": "seven", "at": ""}"#), 4).unwrap();
        d.push(&raw(r#"{"id": 3, "at": ""}"#), 5).unwrap();
        let batch = d.finish().unwrap().unwrap();
        let ids = batch
            .column_by_name("id")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(
            (0..3)
                .map(|i| ids.is_valid(i).then(|| ids.value(i)))
                .collect::<Vec<_>>(),
            [Some(1), None, Some(3)]
        );
        let at = batch.column_by_name("at").unwrap();
        assert_eq!(
            (at.is_null(0), at.is_null(1), at.is_null(2)),
            (false, true, true)
        );
        let meta = batch
            .column_by_name(META_COLUMN)
            .unwrap()
            .as_string::<i32>();
        assert!(meta.is_null(0));
        let row1: serde_json::Value = serde_json::from_str(meta.value(1)).unwrap();
        assert_eq!(
            row1,
            // In column order (serde_json sorts the schema's properties).
            json!({"changes": [
                {"field": "at", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"},
                {"field": "id", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}
            ]})
        );
        let row2: serde_json::Value = serde_json::from_str(meta.value(2)).unwrap();
        assert_eq!(row2["changes"][0]["field"], "at");
        assert_eq!(d.take_nulled(), 3);
        assert_eq!(d.take_nulled(), 0);
        // The next batch is clean again.
        d.push(&raw(r#"{"id": 4}"#), 6).unwrap();
        let batch = d.finish().unwrap().unwrap();
        assert!(batch.column_by_name(META_COLUMN).unwrap().is_null(0));
    }

    #[test]
    fn data_must_be_an_object() {
        let mut d = decoder(10);
        let err = d.push(&raw("[1]"), 2).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err
            .message
            .starts_with("the record's `data` is not a JSON object"));
    }
}
