//! `weft connector list|spec|check|discover`.

use std::path::PathBuf;
use std::process::ExitCode;

use weft_core::ConnectorContext;

use crate::cli::{ConnectorCommand, ConnectorTarget, OutputFormat};
use crate::exit::Failure;
use crate::registry::registry;

pub async fn run(project: Option<PathBuf>, cmd: ConnectorCommand) -> Result<ExitCode, Failure> {
    let registry = registry();
    match cmd {
        ConnectorCommand::List { format } => {
            let rows: Vec<(&str, &str, &str)> = registry
                .sources()
                .map(|f| ("source", f.name(), f.description()))
                .chain(
                    registry
                        .destinations()
                        .map(|f| ("destination", f.name(), f.description())),
                )
                .collect();
            match format {
                OutputFormat::Json => {
                    let json: Vec<_> = rows
                        .iter()
                        .map(
                            |(k, n, d)| serde_json::json!({"kind": k, "name": n, "description": d}),
                        )
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&json).expect("JSON"));
                }
                OutputFormat::Table => {
                    let mut table = crate::output::table(["kind", "name", "description"]);
                    for (k, n, d) in rows {
                        table.add_row([k, n, d]);
                    }
                    println!("{table}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ConnectorCommand::Spec { name } => {
            let spec = match registry.source(&name) {
                Ok(f) => f.spec(),
                Err(_) => registry.destination(&name).map_err(Failure::config)?.spec(),
            };
            println!("{}", serde_json::to_string_pretty(&spec).expect("JSON"));
            Ok(ExitCode::SUCCESS)
        }
        ConnectorCommand::Check(target) => {
            let resolved = resolve(project, &target)?;
            let outcome = match resolved.kind {
                Kind::Source => {
                    let source = registry
                        .build_source(&resolved.connector, &resolved.config, &resolved.ctx)
                        .map_err(Failure::config)?;
                    source.check().await
                }
                Kind::Destination => {
                    let destination = registry
                        .build_destination(&resolved.connector, &resolved.config, &resolved.ctx)
                        .map_err(Failure::config)?;
                    destination.check().await
                }
            };
            match outcome {
                Ok(()) => {
                    println!("{}: check succeeded", resolved.label);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(Failure::failed(format!(
                    "{}: check failed: {e}",
                    resolved.label
                ))),
            }
        }
        ConnectorCommand::Discover(target) => {
            let resolved = resolve(project, &target)?;
            if resolved.kind == Kind::Destination {
                return Err(Failure::config("discover works on sources only"));
            }
            let source = registry
                .build_source(&resolved.connector, &resolved.config, &resolved.ctx)
                .map_err(Failure::config)?;
            let catalog = source.discover().await.map_err(|e| {
                Failure::failed(format!("{}: discover failed: {e}", resolved.label))
            })?;
            println!(
                "{}",
                serde_json::to_string_pretty(&catalog.to_json()).expect("JSON")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Source,
    Destination,
}

struct Resolved {
    kind: Kind,
    connector: String,
    config: serde_json::Value,
    ctx: ConnectorContext,
    label: String,
}

/// A connector name with `--config FILE`, or a product of the project.
fn resolve(project: Option<PathBuf>, target: &ConnectorTarget) -> Result<Resolved, Failure> {
    if target.target.contains('/') {
        let project = super::load_project(project)?;
        let selector = weft_mesh::Selector::parse(&target.target).map_err(Failure::config)?;
        let selections = project.select(&[selector]).map_err(Failure::config)?;
        let product = selections
            .first()
            .map(|s| s.product)
            .ok_or_else(|| Failure::config(format!("no product matches `{}`", target.target)))?;
        let (kind, r) = if target.destination {
            (Kind::Destination, &product.destination)
        } else {
            (Kind::Source, &product.source)
        };
        return Ok(Resolved {
            kind,
            connector: r.connector.clone(),
            config: r.config.clone(),
            ctx: ConnectorContext {
                project_dir: project.root.clone(),
            },
            label: format!(
                "{}/{} {} `{}`",
                product.domain,
                product.name,
                if kind == Kind::Source {
                    "source"
                } else {
                    "destination"
                },
                r.connector
            ),
        });
    }
    let registry = registry();
    let kind = if registry.source(&target.target).is_ok() {
        Kind::Source
    } else {
        registry.destination(&target.target).map_err(|_| {
            Failure::config(format!(
                "unknown connector `{}`; see `weft connector list`, or name a product as `domain/product`",
                target.target
            ))
        })?;
        Kind::Destination
    };
    let config = match &target.config {
        None => serde_json::json!({}),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::config(format!("cannot read {}: {e}", path.display())))?;
            serde_saphyr::from_str::<serde_json::Value>(&text).map_err(|e| {
                Failure::config(format!("{}: not valid JSON or YAML: {e}", path.display()))
            })?
        }
    };
    let project_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    Ok(Resolved {
        kind,
        connector: target.target.clone(),
        config,
        ctx: ConnectorContext { project_dir },
        label: format!("connector `{}`", target.target),
    })
}
