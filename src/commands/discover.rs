//! `weft connector discover`: the streams a source offers, as a table per stream (columns,
//! SQL-ish types, key and cursor) or as JSON with `--format json`.

use std::path::PathBuf;
use std::process::ExitCode;

use weft_core::arrow_schema::{DataType, TimeUnit};
use weft_core::Catalog;

use super::connector::{lookup, resolve, Kind};
use crate::cli::{ConnectorTarget, DiscoverTarget, KindArg, OutputFormat};
use crate::exit::Failure;
use crate::registry::registry;

pub async fn run(project: Option<PathBuf>, target: DiscoverTarget) -> Result<ExitCode, Failure> {
    let registry = registry();
    // A bare name that is both a source and a destination means the source here.
    let kind = if target.target.contains('/') {
        None
    } else {
        match lookup(&registry, &target.target, None) {
            Ok((Kind::Destination, name)) => {
                return Err(Failure::config(format!(
                    "`{name}` is a destination; discover lists the streams a source offers"
                )))
            }
            _ => Some(KindArg::Source),
        }
    };
    let resolved = resolve(
        project,
        &ConnectorTarget {
            target: target.target.clone(),
            config: target.config.clone(),
            destination: false,
            kind,
        },
    )?;
    let failed = |e| Failure::failed(format!("{}: discover failed: {e}", resolved.label));
    // An Airbyte connector is asked afresh, which also refreshes its catalog cache.
    #[cfg(feature = "source-airbyte")]
    let catalog = if resolved.connector == "airbyte" {
        Some(
            super::connector::airbyte_source(&resolved)?
                .refresh_catalog()
                .await
                .map_err(failed)?,
        )
    } else {
        None
    };
    #[cfg(not(feature = "source-airbyte"))]
    let catalog = None;
    let catalog = match catalog {
        Some(c) => c,
        None => registry
            .build_source(&resolved.connector, &resolved.config, &resolved.ctx)
            .map_err(Failure::config)?
            .discover()
            .await
            .map_err(failed)?,
    };
    match target.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&catalog_json(&catalog)).expect("JSON")
        ),
        OutputFormat::Table => print_tables(&resolved.label, &catalog),
    }
    Ok(ExitCode::SUCCESS)
}

/// The catalog as JSON: each field's SQL-ish `type` and its exact `arrow_type`.
fn catalog_json(catalog: &Catalog) -> serde_json::Value {
    let mut json = catalog.to_json();
    for (stream, descriptor) in json
        .as_array_mut()
        .into_iter()
        .flatten()
        .zip(&catalog.streams)
    {
        for (field, arrow) in stream["fields"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .zip(descriptor.schema.fields())
        {
            field["type"] = sql_type(arrow.data_type()).into();
            field["arrow_type"] = arrow.data_type().to_string().into();
        }
    }
    json
}

fn print_tables(label: &str, catalog: &Catalog) {
    println!("{label}: {} stream(s)", catalog.streams.len());
    for stream in &catalog.streams {
        let modes: Vec<String> = stream
            .supported_sync_modes
            .iter()
            .map(|m| m.to_string())
            .collect();
        let mut facts = vec![format!("modes {}", modes.join(", "))];
        if !stream.primary_key.is_empty() {
            facts.push(format!("key {}", stream.primary_key.join(", ")));
        }
        if let Some(cursor) = &stream.source_defined_cursor {
            facts.push(format!("cursor {cursor} (source-defined)"));
        } else if !stream.cursor_candidates.is_empty() {
            facts.push(format!(
                "cursor candidates {}",
                stream.cursor_candidates.join(", ")
            ));
        }
        if let Some(rows) = stream.row_estimate {
            facts.push(format!("~{rows} rows"));
        }
        println!("\n{}  ({})", stream.name, facts.join("; "));
        let mut table = crate::output::table(["column", "type", "nullable"]);
        for field in stream.schema.fields() {
            table.add_row([
                field.name().clone(),
                sql_type(field.data_type()),
                if field.is_nullable() { "yes" } else { "no" }.to_string(),
            ]);
        }
        println!("{table}");
    }
}

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
    use std::sync::Arc;
    use weft_core::arrow_schema::Field;

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
