//! Arrow types the Parquet format (or the parquet crate) cannot store, and the lossless text
//! form they are stored in instead.
//!
//! Today that is `Interval(MonthDayNano)` (PostgreSQL `interval`): Parquet's INTERVAL holds
//! milliseconds only and the parquet crate cannot write it, so such a column is stored as
//! Arrow's exact text form of the value (`14 mons 3 days 4.000000007 secs`: months, days and
//! seconds kept apart, as PostgreSQL keeps them), with a warning naming the column. Every other
//! type is stored as it is.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, IntervalUnit, Schema, SchemaRef};
use weft_core::{ConnectorError, Result};

pub(crate) fn replacement(data_type: &DataType) -> Option<DataType> {
    match data_type {
        DataType::Interval(IntervalUnit::MonthDayNano) => Some(DataType::Utf8),
        _ => None,
    }
}

/// The schema the lake stores for `schema`, and whether any column is converted.
pub(crate) fn storage_schema(label: &str, schema: &SchemaRef) -> (SchemaRef, bool) {
    let mut converted = false;
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match replacement(f.data_type()) {
            Some(to) => {
                tracing::warn!(
                    "{label}: column `{}` of type {} is stored as text in the lake (Parquet cannot hold it exactly)",
                    f.name(),
                    f.data_type()
                );
                converted = true;
                f.as_ref().clone().with_data_type(to)
            }
            None => f.as_ref().clone(),
        })
        .collect();
    (
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        converted,
    )
}

/// Converts a batch to the storage schema.
pub(crate) fn to_storage(batch: RecordBatch, storage: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(storage.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(storage.clone(), columns).map_err(ConnectorError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, IntervalMonthDayNanoArray};
    use arrow::datatypes::IntervalMonthDayNano;

    #[test]
    fn intervals_become_exact_text() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            "iv",
            DataType::Interval(IntervalUnit::MonthDayNano),
            true,
        )]));
        let (storage, converted) = storage_schema("stream `t`", &schema);
        assert!(converted);
        assert_eq!(storage.field(0).data_type(), &DataType::Utf8);
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(IntervalMonthDayNanoArray::from(vec![
                Some(IntervalMonthDayNano::new(14, 3, 4_000_000_007)),
                None,
            ]))],
        )
        .unwrap();
        let stored = to_storage(batch.clone(), &storage).unwrap();
        let text = stored.column(0).as_string::<i32>();
        assert_eq!(text.value(0), "14 mons 3 days 4.000000007 secs");
        assert!(text.is_null(1));
        // The text parses back to the exact value.
        let back = cast(
            stored.column(0),
            &DataType::Interval(IntervalUnit::MonthDayNano),
        )
        .unwrap();
        assert_eq!(back.as_ref(), batch.column(0).as_ref());
    }
}
