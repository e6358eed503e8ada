//! `weft connector list|spec|check|discover|install|test|new` (a crate's `new` lives in
//! `scaffold`, a manifest's `new` and `test` in `manifest_tool`).
//!
//! Connector names on the command line are unambiguous: a name that is both a source and a
//! destination (`postgres`) must be written `source-postgres` / `destination-postgres` (or
//! given `--kind`); product files need no prefix, their `source:` / `destination:` says it.

use std::path::PathBuf;
use std::process::ExitCode;

use weft_core::ConnectorContext;
use weft_engine::Registry;

use crate::cli::{ConnectorCommand, ConnectorTarget, KindArg, OutputFormat};
use crate::exit::Failure;
use crate::registry::registry;

pub async fn run(project: Option<PathBuf>, cmd: ConnectorCommand) -> Result<ExitCode, Failure> {
    let registry = registry();
    match cmd {
        ConnectorCommand::List { format } => {
            let rows: Vec<(String, String, String)> = registry
                .sources()
                .map(|f| ("source", f.name(), f.description()))
                .chain(
                    registry
                        .destinations()
                        .map(|f| ("destination", f.name(), f.description())),
                )
                .map(|(k, n, d)| (k.to_string(), n.to_string(), d.to_string()))
                .collect();
            // Installed Airbyte connectors: what `package:` can name without a download.
            #[cfg(feature = "source-airbyte")]
            let rows: Vec<_> = rows
                .into_iter()
                .chain(
                    weft_source_airbyte::installed_packages()
                        .into_iter()
                        .map(|i| {
                            (
                                "airbyte package".to_string(),
                                i.requirement.unwrap_or_default(),
                                format!(
                                    "installed, Python {}: {}",
                                    i.python,
                                    i.executable.display()
                                ),
                            )
                        }),
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
                    for (k, n, d) in &rows {
                        table.add_row([k, n, d]);
                    }
                    println!("{table}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ConnectorCommand::Spec { name, .. } if name.contains('/') => {
            let target = ConnectorTarget {
                target: name,
                config: None,
                destination: false,
                kind: None,
            };
            let resolved = resolve(project, &target)?;
            #[cfg(feature = "source-airbyte")]
            if resolved.connector == "airbyte" {
                let source = airbyte_source(&resolved)?;
                let spec = source.connector_spec().await.map_err(|e| {
                    Failure::failed(format!("{}: spec failed: {e}", resolved.label))
                })?;
                println!("{}", serde_json::to_string_pretty(&spec).expect("JSON"));
                return Ok(ExitCode::SUCCESS);
            }
            let spec = registry
                .source(&resolved.connector)
                .map_err(Failure::config)?
                .spec();
            println!("{}", serde_json::to_string_pretty(&spec).expect("JSON"));
            Ok(ExitCode::SUCCESS)
        }
        ConnectorCommand::Spec { name, kind } => {
            let spec = match lookup(&registry, &name, kind)? {
                (Kind::Source, name) => registry.source(name).map_err(Failure::config)?.spec(),
                (Kind::Destination, name) => {
                    registry.destination(name).map_err(Failure::config)?.spec()
                }
            };
            println!("{}", serde_json::to_string_pretty(&spec).expect("JSON"));
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "source-manifest")]
        ConnectorCommand::Test(t) => {
            super::manifest_tool::test(
                &t.manifest,
                t.config.as_deref(),
                t.stream.as_deref(),
                weft_source_manifest::tester::Limits {
                    pages: t.pages,
                    slices: t.slices,
                },
            )
            .await
        }
        #[cfg(feature = "source-manifest")]
        ConnectorCommand::New(n) if n.manifest => {
            let root = match project {
                Some(dir) => dir,
                None => std::env::current_dir()
                    .map_err(|e| Failure::config(format!("cannot read the current folder: {e}")))?,
            };
            super::manifest_tool::new(&root, &n.name)
        }
        #[cfg(not(feature = "source-manifest"))]
        ConnectorCommand::Test(_) => Err(Failure::config(
            "this weft was built without the `source-manifest` feature",
        )),
        #[cfg(not(feature = "source-manifest"))]
        ConnectorCommand::New(n) if n.manifest => Err(Failure::config(
            "this weft was built without the `source-manifest` feature",
        )),
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
        ConnectorCommand::Discover(target) => super::discover::run(project, target).await,
        ConnectorCommand::New(new) => super::scaffold::run(new),
        ConnectorCommand::Install {
            package,
            python,
            force,
        } => install(package, python, force).await,
    }
}

#[cfg(feature = "source-airbyte")]
pub(super) fn airbyte_source(
    resolved: &Resolved,
) -> Result<weft_source_airbyte::AirbyteSource, Failure> {
    let config = weft_core::parse_config(&resolved.config).map_err(Failure::config)?;
    weft_source_airbyte::AirbyteSource::new(config, &resolved.ctx).map_err(Failure::config)
}

#[cfg(feature = "source-airbyte")]
async fn install(
    package: String,
    python: Option<String>,
    force: bool,
) -> Result<ExitCode, Failure> {
    let report = tokio::task::spawn_blocking(move || {
        weft_source_airbyte::install_package(&package, python.as_deref(), force)
    })
    .await
    .map_err(Failure::runtime)?
    .map_err(|e| match e {
        weft_core::ConnectorError::Config { .. } => Failure::config(e),
        e => Failure::failed(e),
    })?;
    let i = &report.installed;
    println!(
        "{}: {}",
        i.requirement.as_deref().unwrap_or_default(),
        if report.reused {
            "already installed"
        } else {
            "installed"
        }
    );
    println!("  virtualenv: {}", report.venv.display());
    println!("  connector:  {}", i.executable.display());
    println!(
        "  python:     {} ({})",
        i.python,
        report.interpreter.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "source-airbyte"))]
async fn install(
    _package: String,
    _python: Option<String>,
    _force: bool,
) -> Result<ExitCode, Failure> {
    Err(Failure::config(
        "this weft was built without the `source-airbyte` feature",
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Source,
    Destination,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Destination => "destination",
        }
    }
}

pub(super) struct Resolved {
    pub kind: Kind,
    pub connector: String,
    pub config: serde_json::Value,
    pub ctx: ConnectorContext,
    pub label: String,
}

/// The kind and registry name a command-line connector name means: `source-X` and
/// `destination-X` say it, `--kind` says it, or the bare name is only one of the two.
pub(super) fn lookup<'n>(
    registry: &Registry,
    name: &'n str,
    kind: Option<KindArg>,
) -> Result<(Kind, &'n str), Failure> {
    let kind = kind.map(|k| match k {
        KindArg::Source => Kind::Source,
        KindArg::Destination => Kind::Destination,
    });
    let (prefixed, bare) = match (
        name.strip_prefix("source-"),
        name.strip_prefix("destination-"),
    ) {
        (Some(bare), _) => (Some(Kind::Source), bare),
        (_, Some(bare)) => (Some(Kind::Destination), bare),
        _ => (None, name),
    };
    if let (Some(p), Some(k)) = (prefixed, kind) {
        if p != k {
            return Err(Failure::config(format!(
                "`{name}` names a {} but --kind says {}; drop one of them",
                p.as_str(),
                k.as_str()
            )));
        }
    }
    let is_source = registry.source(bare).is_ok();
    let is_destination = registry.destination(bare).is_ok();
    let unknown = || {
        let names = |kind: Kind| -> String {
            let list: Vec<&str> = match kind {
                Kind::Source => registry.sources().map(|f| f.name()).collect(),
                Kind::Destination => registry.destinations().map(|f| f.name()).collect(),
            };
            list.join(", ")
        };
        Failure::config(format!(
            "unknown connector `{name}`; sources: {}; destinations: {} (`weft connector list` describes them; a product is named `domain/product`)",
            names(Kind::Source),
            names(Kind::Destination)
        ))
    };
    match prefixed.or(kind) {
        Some(Kind::Source) if is_source => Ok((Kind::Source, bare)),
        Some(Kind::Destination) if is_destination => Ok((Kind::Destination, bare)),
        Some(_) => Err(unknown()),
        None => match (is_source, is_destination) {
            (true, true) => Err(Failure::config(format!(
                "`{name}` is both a source and a destination; say which: `source-{name}` or `destination-{name}` (or add --kind source|destination)"
            ))),
            (true, false) => Ok((Kind::Source, bare)),
            (false, true) => Ok((Kind::Destination, bare)),
            (false, false) => Err(unknown()),
        },
    }
}

/// A connector name with `--config FILE`, or a product of the project.
pub(super) fn resolve(
    project: Option<PathBuf>,
    target: &ConnectorTarget,
) -> Result<Resolved, Failure> {
    if target.target.contains('/') {
        let project = super::load_project(project)?;
        let selector = weft_mesh::Selector::parse(&target.target).map_err(Failure::config)?;
        let selections = project.select(&[selector]).map_err(Failure::config)?;
        let product = selections
            .first()
            .map(|s| s.product)
            .ok_or_else(|| Failure::config(format!("no product matches `{}`", target.target)))?;
        let (kind, r) = if target.destination || target.kind == Some(KindArg::Destination) {
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
    let (kind, name) = lookup(&registry, &target.target, target.kind)?;
    if target.destination {
        return Err(Failure::config(
            "--destination goes with a product `domain/product`; with a connector name use `destination-NAME` or --kind destination",
        ));
    }
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
        connector: name.to_string(),
        config,
        ctx: ConnectorContext { project_dir },
        label: format!("{} connector `{name}`", kind.as_str()),
    })
}
