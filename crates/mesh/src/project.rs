//! The loaded, validated project: [`Project`], [`Product`], [`StreamConfig`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use weft_core::{DomainName, ProductName, StreamName, SyncMode, WriteMode};

use crate::config::{ConnectorRef, Mapper, Misfire, Overlap};
use crate::error::ProjectError;
use crate::redact::Redactor;
use crate::schedule::Schedule;

/// The project file at the root of a project.
pub const CONFIG_FILE: &str = "weft.yaml";
/// The folder holding `<domain>/<product>.yaml` files.
pub const DOMAINS_DIR: &str = "domains";

/// A loaded and validated project.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project folder (absolute).
    pub root: PathBuf,
    pub settings: ProjectSettings,
    /// Ordered by domain, then product.
    pub products: Vec<Product>,
    /// Every secret substituted into the configs; scrub errors and logs with it.
    pub secrets: Redactor,
    /// Things that are not errors but probably not what was meant (an empty `domains/`
    /// folder, a domain folder without products), for `weft config validate` to show.
    pub warnings: Vec<String>,
}

/// Project-wide settings from `weft.yaml`, defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectSettings {
    /// The state database (absolute).
    pub state_path: PathBuf,
    pub commit_interval: Duration,
    pub max_concurrent_streams: usize,
    pub channel_capacity: usize,
    /// The time zone of cron schedules without their own (`defaults.timezone`, UTC).
    pub timezone: chrono_tz::Tz,
    /// How `weft daemon` runs the products.
    pub daemon: DaemonSettings,
}

/// weft.yaml's `daemon` section, defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaemonSettings {
    pub max_concurrent_runs: usize,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    pub misfire: Misfire,
    pub overlap: Overlap,
    pub shutdown_timeout: Duration,
}

/// How the daemon runs one product, project defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunPolicy {
    pub misfire: Misfire,
    pub overlap: Overlap,
    pub retries: u32,
    /// A long-lived follower rather than scheduled runs.
    pub continuous: bool,
}

/// A data product: one file under `domains/<domain>/`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Product {
    pub domain: DomainName,
    pub name: ProductName,
    pub owner: String,
    pub description: String,
    pub source: ConnectorRef,
    pub streams: Vec<StreamConfig>,
    /// The product store: the product's own, or the project default.
    pub destination: ConnectorRef,
    /// The file naming [`Product::destination`] (absolute): the product file, or `weft.yaml`
    /// for the project default, so errors about it point where it can be fixed.
    pub destination_file: PathBuf,
    /// When the daemon runs the product; checked when the project loads.
    pub schedule: Option<Schedule>,
    /// How the daemon runs it.
    pub policy: RunPolicy,
    /// The product file (absolute).
    pub file: PathBuf,
}

impl Product {
    /// `domain/product`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.domain, self.name)
    }

    pub fn stream(&self, name: &str) -> Option<&StreamConfig> {
        self.streams.iter().find(|s| s.name.as_str() == name)
    }
}

/// One stream of a product, defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamConfig {
    pub name: StreamName,
    pub mode: SyncMode,
    pub write: WriteMode,
    pub cursor: Option<String>,
    pub primary_key: Option<Vec<String>>,
    pub columns: Option<Vec<String>>,
    pub mappers: Vec<Mapper>,
}

impl Project {
    /// The nearest folder at or above `start` holding a `weft.yaml`.
    pub fn find_root(start: &Path) -> Result<PathBuf, ProjectError> {
        let start = std::path::absolute(start).map_err(|source| ProjectError::Io {
            path: start.to_path_buf(),
            source,
        })?;
        start
            .ancestors()
            .find(|dir| dir.join(CONFIG_FILE).is_file())
            .map(Path::to_path_buf)
            .ok_or(ProjectError::NotFound { start })
    }

    /// Loads and validates the project in `root`, reading `${VAR}` from the environment.
    pub fn load(root: &Path) -> Result<Project, ProjectError> {
        crate::load::load(root, &|name| std::env::var(name).ok())
    }

    /// [`Project::load`] with another source of variables (tests, embedding).
    pub fn load_with_env(
        root: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Project, ProjectError> {
        crate::load::load(root, env)
    }

    pub fn product(&self, domain: &str, product: &str) -> Option<&Product> {
        self.products
            .iter()
            .find(|p| p.domain.as_str() == domain && p.name.as_str() == product)
    }

    /// Distinct domains, in order.
    pub fn domains(&self) -> Vec<&DomainName> {
        let mut domains: Vec<&DomainName> = self.products.iter().map(|p| &p.domain).collect();
        domains.dedup();
        domains
    }

    /// A path relative to the project folder when inside it, for messages.
    pub fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }
}
