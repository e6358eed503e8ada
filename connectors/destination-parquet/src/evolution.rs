//! Additive schema evolution: what a stream's schema may change against the data the lake
//! already holds, and how older files are read in the newer schema.
//!
//! Accepted (between runs for every write mode, and mid-stream for CDC streams):
//! - an added column, stored nullable: files written before it read as NULL there;
//! - a widened type where every old value fits: `Int8 → Int16 → Int32 → Int64`, the same for
//!   unsigned integers, `Float32 → Float64`;
//! - a column that became nullable (a column the lake holds as nullable stays nullable).
//!
//! Refused, naming the column: a dropped column, any other type change (narrowing, int to
//! text, …). Files are never rewritten for an evolution (that would cost the whole table):
//! published files keep the schema they were written with, the manifest's `fields` is the
//! latest one (a superset of every file's), and readers combine them by name (DuckDB
//! `union_by_name = true`, pyarrow `unify_schemas`, see README). Compactions rewrite the files
//! they touch in the latest schema, reading older files through [`conform`].
//!
//! One exception to "never rewritten": the current state (`append_dedup`) of a column added
//! with a constant `DEFAULT` upstream (field metadata [`weft_core::values::FILL`]). The source
//! reads that value in every row that existed when the column was added, and PostgreSQL logs
//! none of them, so a row the lake holds in a file without the column must read it too, not
//! NULL: a compaction rewrites every file lacking such a column, filling it ([`Fills`]), in the
//! same version switch as the rest of the publish. A changelog (`append`) keeps its files: it
//! records what was sent before the column existed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    make_array, new_null_array, Array, ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray,
    UInt32Array,
};
use arrow::compute::{cast, cast_with_options, take, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use weft_core::{values, ConnectorError, Result};

use crate::manifest::ColumnSpec;

/// Type chains (Arrow's display names) in which a later type holds every value of an earlier.
const WIDENINGS: [&[&str]; 3] = [
    &["Int8", "Int16", "Int32", "Int64"],
    &["UInt8", "UInt16", "UInt32", "UInt64"],
    &["Float16", "Float32", "Float64"],
];

/// Whether a column stored as `old` may be written as `new` from now on.
pub(crate) fn widens(old: &str, new: &str) -> bool {
    old == new
        || WIDENINGS.iter().any(|chain| {
            let at = |t: &str| chain.iter().position(|c| *c == t);
            matches!((at(old), at(new)), (Some(o), Some(n)) if o < n)
        })
}

/// Checks that `new` only evolves `old` additively (see the module docs).
pub(crate) fn check(label: &str, dir: &Path, old: &[ColumnSpec], new: &[ColumnSpec]) -> Result<()> {
    for o in old {
        match new.iter().find(|n| n.name == o.name) {
            None => {
                return Err(ConnectorError::Schema(format!(
                    "{label}: column `{}` is no longer in the stream, but the lake ({}) holds \
                     it; the lake only accepts added columns and widened types: keep the column \
                     (a mapper can fill it with nulls), or write with `overwrite` to replace the \
                     table, or write to a new stream",
                    o.name,
                    dir.display()
                )))
            }
            Some(n) if !widens(&o.data_type, &n.data_type) => {
                return Err(ConnectorError::Schema(format!(
                    "{label}: column `{}` changed type from {} to {}, but the lake ({}) holds it \
                     as {}; the lake only widens types where every stored value fits (Int32 to \
                     Int64, Float32 to Float64): cast it back with a mapper, or write with \
                     `overwrite` to replace the table, or write to a new stream",
                    o.name,
                    o.data_type,
                    n.data_type,
                    dir.display(),
                    o.data_type
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The schema the lake stores from now on for a stream arriving as `schema`: added columns,
/// and columns the lake holds as nullable, are nullable.
pub(crate) fn stored(schema: &Schema, old: &[ColumnSpec]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let nullable = match old.iter().find(|o| o.name == *f.name()) {
                Some(o) => o.nullable || f.is_nullable(),
                None => true,
            };
            f.as_ref().clone().with_nullable(nullable)
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The values rows older than a column read in it, for the columns of a stream's schema that
/// carry one ([`values::FILL`], PostgreSQL's text form), as one-row arrays of the stored type.
///
/// A value the lake cannot convert exactly is kept as its error, returned only when a row
/// actually needs it: a stream whose files all hold the column never fails for it.
#[derive(Debug, Default)]
pub(crate) struct Fills(HashMap<String, std::result::Result<ArrayRef, String>>);

impl Fills {
    /// The fills of `schema`'s fields (the stored schema: storage types, see `storable`).
    pub fn of(label: &str, schema: &Schema) -> Fills {
        Fills(
            schema
                .fields()
                .iter()
                .filter_map(|f| {
                    let text = f.metadata().get(values::FILL)?;
                    Some((f.name().clone(), fill_value(label, f, text)))
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a file of `schema` lacks a column with a fill (its rows must be rewritten).
    pub fn lacked_by(&self, schema: &Schema) -> bool {
        self.0
            .keys()
            .any(|name| schema.field_with_name(name).is_err())
    }

    /// `rows` copies of column `name`'s fill, if it has one.
    pub fn column(&self, name: &str, rows: usize) -> Result<Option<ArrayRef>> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Err(message)) => Err(ConnectorError::Schema(message.clone())),
            Some(Ok(value)) => Ok(Some(take(value, &UInt32Array::from(vec![0; rows]), None)?)),
        }
    }
}

/// Converts PostgreSQL's text form `text` of a default into a one-row array of `field`'s type,
/// exactly or not at all (an error naming the column and the way out).
fn fill_value(label: &str, field: &Field, text: &str) -> std::result::Result<ArrayRef, String> {
    let name = field.name();
    let data_type = field.data_type();
    let refuse = |why: String| {
        format!(
            "{label}: column `{name}` was added upstream with DEFAULT {text:?}, which the rows \
             the lake already holds read in the source, but the lake cannot store it as \
             {data_type} ({why}); run `weft sync reset` for the stream to read the table again \
             with the column, or leave the column out of the stream (`columns:` or a `drop` \
             mapper)"
        )
    };
    // An `interval` is stored as Arrow's text form of the value (`storable`), which is not
    // PostgreSQL's: the default's text would read differently from the column's other rows.
    if field
        .metadata()
        .get(values::PG_TYPE)
        .is_some_and(|t| t.starts_with("interval"))
    {
        return Err(refuse(
            "an interval is stored in Arrow's text form, not PostgreSQL's".into(),
        ));
    }
    let infinity = match text {
        "infinity" => Some(true),
        "-infinity" => Some(false),
        _ => None,
    };
    let value: ArrayRef = match (data_type, infinity) {
        (DataType::Utf8 | DataType::LargeUtf8, _) => {
            cast(&StringArray::from(vec![text]), data_type).map_err(|e| refuse(e.to_string()))?
        }
        // The lake's ±infinity (see `weft_core::values`).
        (DataType::Date32, Some(up)) => Arc::new(Date32Array::from(vec![if up {
            values::DATE_INFINITY
        } else {
            values::DATE_NEG_INFINITY
        }])),
        (DataType::Timestamp(..), Some(up)) => cast(
            &Int64Array::from(vec![if up {
                values::TIMESTAMP_INFINITY
            } else {
                values::TIMESTAMP_NEG_INFINITY
            }]),
            data_type,
        )
        .map_err(|e| refuse(e.to_string()))?,
        (
            DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
            | DataType::Date32
            | DataType::Timestamp(..),
            _,
        ) => {
            // PostgreSQL prints a zone offset as `+00` or `+05:30`; Arrow's parser wants minutes.
            let text = match data_type {
                DataType::Timestamp(_, Some(_)) => with_offset_minutes(text),
                _ => text.to_string(),
            };
            // Not `safe`: a value that does not parse is an error, never a NULL.
            let options = CastOptions {
                safe: false,
                ..Default::default()
            };
            // A zoned timestamp is parsed as UTC (the text's offset applied) and then labelled
            // with the column's zone: Arrow parses into a named zone only with chrono-tz, and
            // the stored instant is the same.
            let parse_as = match data_type {
                DataType::Timestamp(unit, Some(_)) => DataType::Timestamp(*unit, None),
                other => other.clone(),
            };
            let parsed = cast_with_options(&StringArray::from(vec![text]), &parse_as, &options)
                .map_err(|e| refuse(e.to_string()))?;
            if &parse_as == data_type {
                parsed
            } else {
                // The same values (µs since the epoch, UTC), another label.
                let data = parsed
                    .to_data()
                    .into_builder()
                    .data_type(data_type.clone())
                    .build()
                    .map_err(|e| refuse(e.to_string()))?;
                make_array(data)
            }
        }
        _ => return Err(refuse("the lake reads no default of this type".into())),
    };
    if value.is_null(0) {
        return Err(refuse("it does not convert".into()));
    }
    Ok(value)
}

/// `2024-01-01 00:00:00+02` → `2024-01-01 00:00:00+02:00` (an offset of whole hours, as
/// PostgreSQL prints it); anything else as it is.
fn with_offset_minutes(text: &str) -> String {
    let b = text.as_bytes();
    let n = b.len();
    let hours_only = n > 3
        && matches!(b[n - 3], b'+' | b'-')
        && b[n - 2].is_ascii_digit()
        && b[n - 1].is_ascii_digit()
        && b[..n - 3].contains(&b':');
    if hours_only {
        format!("{text}:00")
    } else {
        text.to_string()
    }
}

/// The columns of `batch` (read from a file written with an older schema) in `schema`'s
/// order, by name: cast where the file predates a widening; where it predates a column, the
/// column's fill if it has one (`append_dedup` passes [`Fills`], see the module docs), else
/// null.
pub(crate) fn conform(
    batch: &RecordBatch,
    schema: &Schema,
    fills: &Fills,
) -> Result<Vec<ArrayRef>> {
    schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => Ok(cast(c, f.data_type())?),
            None => match fills.column(f.name(), batch.num_rows())? {
                Some(filled) => Ok(filled),
                None => Ok(new_null_array(f.data_type(), batch.num_rows())),
            },
        })
        .collect()
}

/// `batch` in `schema` when they differ only where the lake is more permissive (nullable
/// where the batch is not); `None` otherwise.
pub(crate) fn relax(batch: &RecordBatch, schema: &SchemaRef) -> Option<RecordBatch> {
    let have = batch.schema();
    let fits = have.fields().len() == schema.fields().len()
        && have.fields().iter().zip(schema.fields()).all(|(h, s)| {
            h.name() == s.name()
                && h.data_type() == s.data_type()
                && (s.is_nullable() || !h.is_nullable())
        });
    if !fits {
        return None;
    }
    RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, nullable: bool) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            data_type: ty.into(),
            nullable,
        }
    }

    #[test]
    fn only_widenings_that_keep_every_value_are_accepted() {
        for (old, new) in [
            ("Int32", "Int64"),
            ("Int8", "Int64"),
            ("Float32", "Float64"),
            ("UInt16", "UInt32"),
            ("Utf8", "Utf8"),
        ] {
            assert!(widens(old, new), "{old} -> {new}");
        }
        for (old, new) in [
            ("Int64", "Int32"),
            ("Int32", "Float64"),
            ("Int32", "Utf8"),
            ("UInt32", "Int64"),
            ("Float64", "Float32"),
        ] {
            assert!(!widens(old, new), "{old} -> {new}");
        }
    }

    #[test]
    fn dropped_and_retyped_columns_are_named() {
        let dir = Path::new("/lake/s/p/orders");
        let old = [col("id", "Int64", false), col("n", "Int32", true)];
        let added = [
            col("id", "Int64", false),
            col("n", "Int64", true),
            col("extra", "Utf8", false),
        ];
        check("stream `orders`", dir, &old, &added).unwrap();
        let err = check("stream `orders`", dir, &old, &[col("id", "Int64", false)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("column `n` is no longer in the stream"),
            "{err}"
        );
        let err = check(
            "stream `orders`",
            dir,
            &old,
            &[col("id", "Int64", false), col("n", "Utf8", true)],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("column `n` changed type from Int32 to Utf8"),
            "{err}"
        );
    }

    #[test]
    fn added_columns_are_stored_nullable_and_old_files_conform() {
        use arrow::array::{Array, AsArray, Int32Array, Int64Array};
        use arrow::datatypes::{DataType, Int64Type};
        let new = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("n", DataType::Int64, false),
            Field::new("extra", DataType::Utf8, false),
        ]);
        let old = [col("id", "Int64", false), col("n", "Int32", true)];
        let stored = stored(&new, &old);
        let nullable: Vec<bool> = stored.fields().iter().map(|f| f.is_nullable()).collect();
        assert_eq!(nullable, [false, true, true]);

        let file = RecordBatch::try_from_iter(vec![
            ("n", Arc::new(Int32Array::from(vec![7])) as ArrayRef),
            ("id", Arc::new(Int64Array::from(vec![1]))),
        ])
        .unwrap();
        let columns = conform(&file, &stored, &Fills::default()).unwrap();
        assert_eq!(columns[0].as_primitive::<Int64Type>().value(0), 1);
        assert_eq!(columns[1].as_primitive::<Int64Type>().value(0), 7);
        assert!(columns[2].is_null(0));
    }

    #[test]
    fn fills_are_postgresql_text_converted_exactly_or_refused_naming_the_column() {
        use arrow::datatypes::TimeUnit;
        use arrow::util::display::array_value_to_string;
        let field = |name: &str, ty: DataType, fill: &str| {
            Field::new(name, ty, true).with_metadata(HashMap::from([(
                values::FILL.to_string(),
                fill.to_string(),
            )]))
        };
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            field("t", DataType::Utf8, "d"),
            field("b", DataType::Boolean, "t"),
            field("n", DataType::Decimal128(12, 2), "1.50"),
            field(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                "2024-05-01 12:00:00+02",
            ),
            field("d", DataType::Date32, "infinity"),
            field("f", DataType::Float64, "NaN"),
            field("bytes", DataType::Binary, "\\x01"),
            field("i", DataType::Int32, "x"),
        ]);
        let fills = Fills::of("stream `items`", &schema);
        let text = |name: &str| {
            let column = fills.column(name, 2).unwrap().unwrap();
            assert_eq!(column.len(), 2);
            array_value_to_string(&column, 1).unwrap()
        };
        assert_eq!(text("t"), "d");
        assert_eq!(text("b"), "true");
        assert_eq!(text("n"), "1.50");
        let ts = fills.column("ts", 1).unwrap().unwrap();
        let micros = chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
            .unwrap()
            .timestamp_micros();
        assert_eq!(ts.data_type(), schema.field(4).data_type());
        assert_eq!(
            ts.as_any()
                .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
                .unwrap()
                .value(0),
            micros
        );
        assert_eq!(
            fills
                .column("d", 1)
                .unwrap()
                .unwrap()
                .as_any()
                .downcast_ref::<Date32Array>()
                .unwrap()
                .value(0),
            values::DATE_INFINITY
        );
        assert_eq!(text("f"), "NaN");
        assert!(fills.column("id", 1).unwrap().is_none());
        for name in ["bytes", "i"] {
            let err = fills.column(name, 1).unwrap_err().to_string();
            assert!(
                err.contains(&format!(
                    "stream `items`: column `{name}` was added upstream with DEFAULT"
                )) && err.contains("weft sync reset"),
                "{err}"
            );
        }
        // A file without the filled columns reads them filled, and only then may fail.
        let ok = Schema::new(schema.fields()[..4].to_vec());
        let file = RecordBatch::try_from_iter(vec![(
            "id",
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
        )])
        .unwrap();
        let columns = conform(&file, &ok, &Fills::of("stream `items`", &ok)).unwrap();
        assert_eq!(array_value_to_string(&columns[1], 0).unwrap(), "d");
        assert!(Fills::of("s", &ok).lacked_by(&file.schema()));
        assert!(!Fills::of("s", &ok).lacked_by(&ok));
    }
}
