//! Column types by the names SQL-minded people use (`timestamptz`, `decimal(12,2)`, `text`),
//! for everything weft shows people: `weft connector discover`, mapper and planning errors.
//! Arrow's own names (`Timestamp(µs, "UTC")`, `Decimal128(12, 2)`) stay in JSON output as
//! `arrow_type`, for tools.

use arrow_schema::{DataType, TimeUnit};

/// A column type as SQL-minded people name it (`timestamptz`, `decimal(12,2)`, `text`).
pub fn sql_type(data_type: &DataType) -> String {
    let precision = |unit: &TimeUnit| match unit {
        TimeUnit::Second => "(0)",
        TimeUnit::Millisecond => "(3)",
        TimeUnit::Microsecond => "",
        TimeUnit::Nanosecond => "(9)",
    };
    match data_type {
        DataType::Null => "null".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::UInt8 => "tinyint unsigned".into(),
        DataType::UInt16 => "smallint unsigned".into(),
        DataType::UInt32 => "integer unsigned".into(),
        DataType::UInt64 => "bigint unsigned".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".into(),
        DataType::FixedSizeBinary(n) => format!("binary({n})"),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Time32(unit) | DataType::Time64(unit) => format!("time{}", precision(unit)),
        DataType::Timestamp(unit, None) => format!("timestamp{}", precision(unit)),
        DataType::Timestamp(unit, Some(_)) => format!("timestamptz{}", precision(unit)),
        DataType::Duration(_) | DataType::Interval(_) => "interval".into(),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => format!("{}[]", sql_type(f.data_type())),
        DataType::Struct(fields) => format!(
            "struct({})",
            fields
                .iter()
                .map(|f| format!("{} {}", f.name(), sql_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "map({}, {})",
                sql_type(kv[0].data_type()),
                sql_type(kv[1].data_type())
            ),
            _ => "map".into(),
        },
        DataType::Dictionary(_, value) => sql_type(value),
        DataType::RunEndEncoded(_, value) => sql_type(value.data_type()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::Field;
    use std::sync::Arc;

    #[test]
    fn sql_names_for_the_usual_types() {
        let cases = [
            (
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
                "timestamptz",
            ),
            (
                DataType::Timestamp(TimeUnit::Millisecond, None),
                "timestamp(3)",
            ),
            (DataType::Decimal128(12, 2), "decimal(12,2)"),
            (DataType::Utf8, "text"),
            (DataType::Int64, "bigint"),
            (
                DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                "integer[]",
            ),
        ];
        for (data_type, expected) in cases {
            assert_eq!(sql_type(&data_type), expected, "{data_type}");
        }
    }
}
