//! Connector configs checked without connecting: every product's source and destination are
//! built through their factories (which parse the typed config, so unknown fields and wrong
//! types are named) and errors point at the file that names the connector — the product file,
//! or `weft.yaml` for the project's default destination.
//!
//! `weft config validate` reports every problem at once; [`crate::prepare`] stops at the first.

use std::fmt;
use std::path::{Path, PathBuf};

use weft_core::{ConnectorContext, ConnectorError, Destination, Source};
use weft_mesh::{Product, Project};

use crate::error::EngineError;
use crate::registry::Registry;

/// One problem with a connector in the project files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file to fix, relative to the project folder.
    pub file: PathBuf,
    /// A field path such as `source.config.scale` or `defaults.destination.connector`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.field,
            self.message
        )
    }
}

/// Which side of a product a connector is on.
#[derive(Debug, Clone, Copy)]
enum Side {
    Source,
    Destination,
}

/// Where a product's connector is configured: the file and the field prefix in it.
fn origin(project: &Project, product: &Product, side: Side) -> (PathBuf, &'static str) {
    let relative = |p: &Path| project.relative(p).to_path_buf();
    match side {
        Side::Source => (relative(&product.file), "source"),
        Side::Destination if product.destination_file == product.file => {
            (relative(&product.file), "destination")
        }
        Side::Destination => (relative(&product.destination_file), "defaults.destination"),
    }
}

fn problem(project: &Project, product: &Product, side: Side, error: EngineError) -> ConfigProblem {
    let (file, prefix) = origin(project, product, side);
    let spec = match side {
        Side::Source => format!("source-{}", product.source.connector),
        Side::Destination => format!("destination-{}", product.destination.connector),
    };
    let (field, message) = match error {
        EngineError::UnknownConnector { kind, name, known } => (
            format!("{prefix}.connector"),
            format!("unknown {kind} connector `{name}`; available: {known} (`weft connector list` describes them)"),
        ),
        EngineError::Connector {
            source: ConnectorError::Config { field, message },
            ..
        } => (
            if field.is_empty() {
                format!("{prefix}.config")
            } else {
                format!("{prefix}.config.{field}")
            },
            format!("{message} (`weft connector spec {spec}` lists the settings)"),
        ),
        EngineError::Connector { source, .. } => (format!("{prefix}.config"), source.to_string()),
        other => (prefix.to_string(), other.to_string()),
    };
    ConfigProblem {
        file,
        field,
        message,
    }
}

/// A product's connectors, built.
pub(crate) type Connectors = (Box<dyn Source>, Box<dyn Destination>);

/// Builds a product's source and destination (no connection is made).
pub(crate) fn build_product(
    project: &Project,
    product: &Product,
    registry: &Registry,
) -> Result<Connectors, Vec<ConfigProblem>> {
    let ctx = ConnectorContext {
        project_dir: project.root.clone(),
    };
    let source = build_source(project, product, registry, &ctx);
    let destination = registry
        .build_destination(
            &product.destination.connector,
            &product.destination.config,
            &ctx,
        )
        .map_err(|e| problem(project, product, Side::Destination, e));
    match (source, destination) {
        (Ok(s), Ok(d)) => Ok((s, d)),
        (s, d) => Err(s.err().into_iter().chain(d.err()).collect()),
    }
}

/// A product's source, built: its connector, or for a product reading another product
/// (`source: { product: ... }`) the upstream's product store read back, once the consumer's
/// access through its grant is checked.
pub fn build_source(
    project: &Project,
    product: &Product,
    registry: &Registry,
    ctx: &ConnectorContext,
) -> Result<Box<dyn Source>, ConfigProblem> {
    let Some(access) = weft_mesh::access(project, product).map_err(|d| ConfigProblem {
        file: d.file,
        field: d.field,
        message: d.message,
    })?
    else {
        return registry
            .build_source(&product.source.connector, &product.source.config, ctx)
            .map_err(|e| problem(project, product, Side::Source, e));
    };
    let upstream = access.upstream;
    let store = registry
        .build_destination(
            &upstream.destination.connector,
            &upstream.destination.config,
            ctx,
        )
        .map_err(|e| problem(project, upstream, Side::Destination, e))?;
    match store.product_reader(&upstream.domain, &upstream.name) {
        Some(reader) => reader.map_err(|e| ConfigProblem {
            file: project.relative(&product.file).to_path_buf(),
            field: "source.product".into(),
            message: format!("cannot read product `{}`: {e}", upstream.label()),
        }),
        None => Err(ConfigProblem {
            file: project.relative(&product.file).to_path_buf(),
            field: "source.product".into(),
            message: format!(
                "product `{}` is kept in a `{}` store, which weft cannot read back as a source (the parquet and postgres stores can)",
                upstream.label(),
                upstream.destination.connector
            ),
        }),
    }
}

/// A product's streams as they run: for a product reading another product, each with its
/// grant's filter, transformations and columns in front of its own mappers.
pub fn effective_streams(
    project: &Project,
    product: &Product,
) -> Result<Vec<weft_mesh::StreamConfig>, ConfigProblem> {
    let access = weft_mesh::access(project, product).map_err(|d| ConfigProblem {
        file: d.file,
        field: d.field,
        message: d.message,
    })?;
    let Some(access) = access else {
        return Ok(product.streams.clone());
    };
    // The upstream's streams as they run: a cursor or key it inherits comes along too. The
    // lineage is acyclic (checked at load), so this ends.
    let upstream_streams = effective_streams(project, access.upstream)
        .unwrap_or_else(|_| access.upstream.streams.clone());
    Ok(product
        .streams
        .iter()
        .map(|s| {
            let upstream = upstream_streams
                .iter()
                .find(|u| u.name == s.name)
                .expect("access checked the stream exists");
            let granted = access.grant.and_then(|g| g.stream(s.name.as_str()));
            weft_mesh::granted_stream(upstream, granted, s)
        })
        .collect())
}

/// Every connector problem of the project, each once (a bad default destination is reported
/// against `weft.yaml` once, not once per product using it).
pub fn check_connectors(project: &Project, registry: &Registry) -> Vec<ConfigProblem> {
    let mut problems: Vec<ConfigProblem> = Vec::new();
    for product in &project.products {
        let found = build_product(project, product, registry)
            .err()
            .into_iter()
            .flatten()
            .chain(effective_streams(project, product).err());
        {
            for p in found {
                if !problems.contains(&p) {
                    problems.push(p);
                }
            }
        }
    }
    problems
}
