//! The loaded, validated project: [`Project`], [`Product`], [`StreamConfig`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use weft_core::{DomainName, ProductName, StreamName, SyncMode, WriteMode};

use crate::config::{ConnectorRef, ContractPolicy, FieldMeta, Mapper, Misfire, Overlap};
use crate::contract::Contract;
use crate::error::ProjectError;
use crate::redact::Redactor;
use crate::schedule::Schedule;

/// The project file at the root of a project.
pub const CONFIG_FILE: &str = "weft.yaml";
/// The folder holding `<domain>/<product>.yaml` files.
pub const DOMAINS_DIR: &str = "domains";
/// The file declaring a domain, in its folder: `domains/<domain>/domain.yaml`.
pub const DOMAIN_FILE: &str = "domain.yaml";

/// A loaded and validated project.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project folder (absolute).
    pub root: PathBuf,
    pub settings: ProjectSettings,
    /// The declared domains (`domains/<domain>/domain.yaml`), by name.
    pub domains: Vec<Domain>,
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
    /// `defaults.max_bytes_in_flight`: see the engine's `inflight` module.
    pub max_bytes_in_flight: u64,
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
    pub cdc_lag_interval: Duration,
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

/// A declared domain: `domains/<domain>/domain.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Domain {
    pub name: DomainName,
    pub owners: Vec<String>,
    pub description: String,
    pub contact: Option<String>,
    /// The domain's default product store for its products that name none.
    pub destination: Option<ConnectorRef>,
    /// Domain-level governance rules, unparsed: `weft-governance` reads them in the central
    /// policy's rule format.
    pub rules: Vec<RawRule>,
    /// The `domain.yaml` file (absolute).
    pub file: PathBuf,
}

/// One entry of a domain's `rules:` as written, with its line for messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RawRule {
    pub line: Option<u64>,
    pub value: serde_json::Value,
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.name.fmt(f)
    }
}

// So `product.domain == domain` reads naturally wherever domains are listed.
impl PartialEq<Domain> for DomainName {
    fn eq(&self, other: &Domain) -> bool {
        *self == other.name
    }
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
    /// The product store: the product's own, its domain's default, or the project default.
    pub destination: ConnectorRef,
    /// The file naming [`Product::destination`] (absolute): the product file, the domain's
    /// `domain.yaml` or `weft.yaml`, so errors about it point where it can be fixed.
    pub destination_file: PathBuf,
    /// When the daemon runs the product; checked when the project loads.
    pub schedule: Option<Schedule>,
    /// How the daemon runs it.
    pub policy: RunPolicy,
    /// The product file (absolute).
    pub file: PathBuf,
    // --- product contracts (contracts engineer) ---
    /// The product's contract policy (defaults: `on_change: evolve`).
    pub contract: ContractPolicy,
    /// The locked contract file, `<product>.contract.yaml` next to the product file
    /// (absolute), whether or not it exists yet.
    pub contract_file: PathBuf,
    /// The locked contract, when the file exists.
    pub locked_contract: Option<Contract>,
    // --- end product contracts ---
    // --- sharing between domains (sharing engineer) ---
    /// The product this one reads (`source: { product: d/p }`); `source` then names the
    /// pseudo-connector [`crate::PRODUCT_SOURCE`].
    pub upstream: Option<crate::sharing::Upstream>,
    /// What this product shares with other domains.
    pub grants: Vec<crate::sharing::Grant>,
    // --- end sharing ---

    // --- governance (#9) ---
    /// One of the policy's classification levels, as written (checked by `weft-governance`).
    pub classification: Option<String>,
    pub tags: Vec<String>,
    /// The freshness SLA.
    pub freshness: Option<Duration>,
    // --- end governance ---
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
    // --- stream metadata (contracts engineer) ---
    pub description: Option<String>,
    // --- end stream metadata ---
    /// Per-column metadata (description, tags) by column name.
    pub fields: BTreeMap<String, FieldMeta>,
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

    /// The declared domains, by name (including those without products yet).
    pub fn domains(&self) -> &[Domain] {
        &self.domains
    }

    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.name.as_str() == name)
    }

    /// A path relative to the project folder when inside it, for messages.
    pub fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }
}
