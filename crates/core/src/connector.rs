//! Connector factories: how the binary's registry builds sources and destinations from config.

use std::path::PathBuf;

use crate::destination::Destination;
use crate::error::Result;
use crate::source::Source;

/// Whether a connector reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    /// Reads streams ([`crate::Source`]).
    Source,
    /// Writes product stores ([`crate::Destination`]).
    Destination,
}

/// What a connector may know about where it runs.
#[derive(Debug, Clone)]
pub struct ConnectorContext {
    /// The project folder: relative paths in configs are relative to it.
    pub project_dir: PathBuf,
}

impl ConnectorContext {
    /// Resolves a path from a config against the project folder.
    pub fn resolve(&self, path: &std::path::Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.project_dir.join(path)
        }
    }
}

/// Builds sources of one kind. One per connector crate, registered by the binary.
pub trait SourceFactory: Send + Sync {
    /// The connector's name in product files (`source: { connector: sample }`).
    fn name(&self) -> &'static str;
    /// One line saying what it reads.
    fn description(&self) -> &'static str;
    /// The JSON Schema of its config, generated from the config type.
    fn spec(&self) -> serde_json::Value;
    /// Validates `config` and builds the source.
    fn build(&self, config: &serde_json::Value, ctx: &ConnectorContext) -> Result<Box<dyn Source>>;
}

/// Builds destinations of one kind. One per connector crate, registered by the binary.
pub trait DestinationFactory: Send + Sync {
    /// The connector's name in product files (`destination: { connector: parquet }`).
    fn name(&self) -> &'static str;
    /// One line saying where it writes.
    fn description(&self) -> &'static str;
    /// The JSON Schema of its config, generated from the config type.
    fn spec(&self) -> serde_json::Value;
    /// Validates `config` and builds the destination.
    fn build(
        &self,
        config: &serde_json::Value,
        ctx: &ConnectorContext,
    ) -> Result<Box<dyn Destination>>;
}
