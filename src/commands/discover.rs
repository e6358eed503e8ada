//! `weft connector discover`: the streams a source offers, as a table per stream (columns,
//! SQL-ish types, key and cursor) or as JSON with `--format json`.

use std::path::PathBuf;
use std::process::ExitCode;

use weft_core::{sql_type, Catalog};

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
