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

use std::path::Path;
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{Field, Schema, SchemaRef};
use weft_core::{ConnectorError, Result};

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

/// The columns of `batch` (read from a file written with an older schema) in `schema`'s
/// order, by name: cast where the file predates a widening, null where it predates a column.
pub(crate) fn conform(batch: &RecordBatch, schema: &Schema) -> Result<Vec<ArrayRef>> {
    schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => Ok(cast(c, f.data_type())?),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
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
        let columns = conform(&file, &stored).unwrap();
        assert_eq!(columns[0].as_primitive::<Int64Type>().value(0), 1);
        assert_eq!(columns[1].as_primitive::<Int64Type>().value(0), 7);
        assert!(columns[2].is_null(0));
    }
}
