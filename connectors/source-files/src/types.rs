//! Type names of `schema_overrides`, and the column types weft settles on.

use arrow_schema::{DataType, TimeUnit};

/// The timestamp type of the files source: µs, UTC.
pub(crate) fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Parses a type name such as `int64` or `decimal(12,2)`.
pub fn parse_type(name: &str) -> Result<DataType, String> {
    let lower = name.trim().to_ascii_lowercase();
    let ty = match lower.as_str() {
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "float64" | "double" => DataType::Float64,
        "utf8" | "string" => DataType::Utf8,
        "bool" | "boolean" => DataType::Boolean,
        "date32" | "date" => DataType::Date32,
        "timestamp" => timestamp_type(),
        other => match other
            .strip_prefix("decimal(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|args| args.split_once(','))
        {
            Some((p, s)) => {
                let p: u8 = p.trim().parse().map_err(|_| bad_decimal(name))?;
                let s: i8 = s.trim().parse().map_err(|_| bad_decimal(name))?;
                if p == 0 || p > 38 || s < 0 || s as u8 > p {
                    return Err(bad_decimal(name));
                }
                DataType::Decimal128(p, s)
            }
            None => {
                return Err(format!(
                    "unknown type `{name}`; use int32, int64, float64, utf8, bool, date32, \
                     timestamp or decimal(p,s)"
                ))
            }
        },
    };
    Ok(ty)
}

fn bad_decimal(name: &str) -> String {
    format!("invalid type `{name}`; write decimal(p,s) with 1 ≤ p ≤ 38 and 0 ≤ s ≤ p")
}

/// Inferred types weft normalises: timestamps of any unit become µs UTC.
pub(crate) fn normalise(ty: &DataType) -> DataType {
    match ty {
        DataType::Timestamp(_, _) => timestamp_type(),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_names() {
        assert_eq!(parse_type("int64"), Ok(DataType::Int64));
        assert_eq!(
            parse_type("Decimal(12, 2)"),
            Ok(DataType::Decimal128(12, 2))
        );
        assert_eq!(parse_type("timestamp"), Ok(timestamp_type()));
        assert_eq!(
            parse_type("decimal(2,5)").unwrap_err(),
            "invalid type `decimal(2,5)`; write decimal(p,s) with 1 ≤ p ≤ 38 and 0 ≤ s ≤ p"
        );
        assert!(parse_type("varchar")
            .unwrap_err()
            .starts_with("unknown type `varchar`"));
    }
}
