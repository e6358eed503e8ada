//! Loading a manifest: YAML → references resolved → types and `$parameters` propagated →
//! refused if it holds a component weft cannot run → typed [`model`].
//!
//! Modules: [`refs`] (`#/` and `$ref`), [`components`] (default types, `$parameters`),
//! [`support`] (what is refused, with the component's path), [`model`] (the typed components).

use std::path::{Path, PathBuf};

use serde_json::Value;

pub mod components;
pub mod model;
pub mod refs;
pub mod support;

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading the manifest {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the manifest {} is not valid YAML: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
    #[error("the manifest refers to `{0}`, which it does not define")]
    UnknownReference(String),
    #[error("the manifest's reference `{0}` refers to itself (a cycle)")]
    CircularReference(String),
    #[error("{path}: {message}")]
    Unsupported { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// A manifest, pre-processed as the CDK does it, and where it came from.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The folder of the manifest file (schema files are looked up beside it).
    pub dir: PathBuf,
    /// After references, types and parameters: what the components are built from.
    pub resolved: Value,
    pub source: model::DeclarativeSource,
}

impl Manifest {
    /// Reads and pre-processes the manifest file at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: Value = serde_saphyr::from_str(&text).map_err(|e| ManifestError::Yaml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_value(raw, dir)
    }

    /// Pre-processes a parsed manifest; `dir` is where its schema files live.
    pub fn from_value(raw: Value, dir: PathBuf) -> Result<Self, ManifestError> {
        let resolved = components::propagate(refs::resolve(&raw)?);
        support::check(&resolved)?;
        let source = model::DeclarativeSource::parse(&resolved)?;
        Ok(Self {
            dir,
            resolved,
            source,
        })
    }
}
