//! The file formats: `weft.yaml` ([`ProjectFile`]) and product files ([`ProductFile`]), as
//! written by users. Doc comments become descriptions in the generated JSON Schemas.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use weft_core::{SyncMode, WriteMode};

/// `weft.yaml`: project-wide settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    /// Version of this file's format; must be 1.
    #[schemars(with = "u32")]
    pub version: Spanned<u32>,
    /// Where weft keeps checkpoints and run history.
    #[serde(default)]
    pub state: StateSection,
    /// Defaults for every product of the project.
    #[serde(default)]
    pub defaults: DefaultsSection,
    /// How `weft daemon` runs the products.
    #[serde(default)]
    pub daemon: DaemonSection,
}

/// How `weft daemon` runs the products (every field has a default).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// How many products run at once; further due products wait for a free slot.
    #[serde(default = "default_max_concurrent_runs")]
    #[schemars(with = "usize")]
    pub max_concurrent_runs: Spanned<usize>,
    /// How many times a failed run is retried (with exponential backoff and jitter) before
    /// the product is marked unhealthy until its next scheduled run; products may override.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The wait before the first retry (humantime); each further retry waits about twice as
    /// long, with jitter.
    #[serde(with = "humantime_serde", default = "default_retry_backoff")]
    #[schemars(with = "String")]
    pub retry_backoff: Duration,
    /// The longest wait between retries (humantime).
    #[serde(with = "humantime_serde", default = "default_retry_backoff_max")]
    #[schemars(with = "String")]
    pub retry_backoff_max: Duration,
    /// What a product whose scheduled time passed while the daemon was down does on start;
    /// products may override.
    #[serde(default)]
    pub misfire: Misfire,
    /// What a trigger does while its product is running; products may override.
    #[serde(default)]
    pub overlap: Overlap,
    /// On SIGTERM/Ctrl-C, how long running products may go on to reach their commits before
    /// they are cancelled (humantime).
    #[serde(with = "humantime_serde", default = "default_shutdown_timeout")]
    #[schemars(with = "String")]
    pub shutdown_timeout: Duration,
    /// How often the daemon asks CDC sources how far behind their log each stream is (the
    /// `weft_cdc_lag_bytes` metric; humantime). Also asked after each run of a CDC product.
    #[serde(with = "humantime_serde", default = "default_cdc_lag_interval")]
    #[schemars(with = "String")]
    pub cdc_lag_interval: Duration,
}

impl Default for DaemonSection {
    fn default() -> Self {
        Self {
            max_concurrent_runs: default_max_concurrent_runs(),
            retries: default_retries(),
            retry_backoff: default_retry_backoff(),
            retry_backoff_max: default_retry_backoff_max(),
            misfire: Misfire::default(),
            overlap: Overlap::default(),
            shutdown_timeout: default_shutdown_timeout(),
            cdc_lag_interval: default_cdc_lag_interval(),
        }
    }
}

fn default_max_concurrent_runs() -> Spanned<usize> {
    unspanned(4)
}
fn default_retries() -> u32 {
    3
}
fn default_retry_backoff() -> Duration {
    Duration::from_secs(5)
}
fn default_retry_backoff_max() -> Duration {
    Duration::from_secs(300)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_cdc_lag_interval() -> Duration {
    Duration::from_secs(15)
}

/// What the daemon does on start for a product whose scheduled time passed while it was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Run once now, however many times were missed.
    #[default]
    RunOnce,
    /// Wait for the next scheduled time.
    Skip,
}

/// What a trigger (scheduled or manual) does while its product is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Recorded in the run history as `skipped`, naming the run in flight.
    #[default]
    Skip,
    /// Runs once the current run ends (at most one waits; later ones are skipped).
    Queue,
}

/// Where weft keeps checkpoints and run history.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// The SQLite file, relative to the project folder (or absolute).
    #[serde(default = "default_state_path")]
    pub path: String,
}

impl Default for StateSection {
    fn default() -> Self {
        Self {
            path: default_state_path(),
        }
    }
}

fn default_state_path() -> String {
    ".weft/state.db".to_string()
}

/// Defaults for every product of the project.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSection {
    /// The product store used by products that name no `destination`.
    #[serde(default)]
    pub destination: Option<ConnectorRef>,
    /// How often the engine commits during a stream (humantime: `10s`, `1m`).
    #[serde(with = "humantime_serde", default = "default_commit_interval")]
    #[schemars(with = "String")]
    pub commit_interval: Duration,
    /// How many streams run at once.
    #[serde(default = "default_max_concurrent_streams")]
    #[schemars(with = "usize")]
    pub max_concurrent_streams: Spanned<usize>,
    /// Batches buffered between source and destination, per stream.
    #[serde(default = "default_channel_capacity")]
    #[schemars(with = "usize")]
    pub channel_capacity: Spanned<usize>,
    /// The time zone of every product's cron `schedule` (an IANA name such as
    /// `Europe/Berlin`); UTC when absent.
    #[serde(default)]
    pub timezone: Option<String>,
}

impl Default for DefaultsSection {
    fn default() -> Self {
        Self {
            timezone: None,
            destination: None,
            commit_interval: default_commit_interval(),
            max_concurrent_streams: default_max_concurrent_streams(),
            channel_capacity: default_channel_capacity(),
        }
    }
}

fn default_commit_interval() -> Duration {
    Duration::from_secs(10)
}

fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

fn default_max_concurrent_streams() -> Spanned<usize> {
    unspanned(4)
}

fn default_channel_capacity() -> Spanned<usize> {
    unspanned(8)
}

/// A connector and its config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorRef {
    /// The connector's name, as listed by `weft connector list`.
    pub connector: String,
    /// The connector's config: a mapping checked by the connector (`weft connector spec NAME`).
    /// String values may use `${VAR}`, `${VAR:-default}` and `${file:PATH}`.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// A data product file: `domains/<domain>/<product>.yaml`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductFile {
    /// The product's name; must equal the file name without `.yaml`.
    #[schemars(with = "String")]
    pub product: Spanned<String>,
    /// The owning domain; must equal the name of the folder holding the file.
    #[schemars(with = "String")]
    pub domain: Spanned<String>,
    /// Who answers for this product (an email or a team handle).
    pub owner: String,
    /// What the product holds, for its consumers.
    #[serde(default)]
    pub description: String,
    /// Where the data comes from: a connector, or another product (`source: { product:
    /// finance/revenue }`) that grants this product's domain its streams.
    pub source: SourceSpec,
    /// The streams to sync.
    #[schemars(with = "Vec<StreamFile>")]
    pub streams: Spanned<Vec<Spanned<StreamFile>>>,
    /// The domain's product store; `defaults.destination` of weft.yaml when absent.
    #[serde(default)]
    pub destination: Option<ConnectorRef>,
    /// A cron expression for `weft daemon`: five fields (`0 * * * *`), six with seconds
    /// first (`*/10 * * * * *`), or a macro (`@hourly`).
    #[serde(default)]
    pub schedule: Option<String>,
    // --- product contracts (contracts engineer) ---
    /// How a sync treats a source schema that differs from the locked contract
    /// (`<product>.contract.yaml`, written by `weft product contract`).
    #[serde(default)]
    pub contract: Option<ContractPolicy>,
    // --- end product contracts ---
    // --- sharing between domains (sharing engineer) ---
    /// What this product shares with other domains: only the producer's file holds grants.
    #[serde(default)]
    #[schemars(with = "Vec<GrantFile>")]
    pub grants: Vec<Spanned<GrantFile>>,
    // --- end sharing ---

    // --- governance (#9): classification, tags, freshness SLA ---
    /// How sensitive the product is: one of `governance.yaml`'s `classifications`
    /// (`public`, `internal`, `confidential`, `restricted` by default).
    #[serde(default)]
    pub classification: Option<String>,
    /// Free-form labels (`revenue`, `pii`) that governance rules may require or act on.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The freshness SLA: the longest the data may go without a successful sync (humantime:
    /// `24h`, `30m`).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub freshness: Option<Duration>,
    // --- end governance ---
    /// An interval for `weft daemon` instead of a cron `schedule` (humantime: `30s`, `15m`).
    #[serde(default)]
    pub every: Option<String>,
    /// The time zone of `schedule` (IANA name, `Europe/Berlin`); weft.yaml's
    /// `defaults.timezone` (or UTC) when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    /// On daemon start, when a scheduled run was missed: `run_once` or `skip`; weft.yaml's
    /// `daemon.misfire` when absent.
    #[serde(default)]
    pub misfire: Option<Misfire>,
    /// A trigger during a run: `skip` (recorded) or `queue`; weft.yaml's `daemon.overlap` when
    /// absent.
    #[serde(default)]
    pub overlap: Option<Overlap>,
    /// How many times the daemon retries a failed run; weft.yaml's `daemon.retries` when absent.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Run as a long-lived follower under `weft daemon` (CDC streams keep streaming, as
    /// `sync run --follow`), restarted with backoff when it fails; needs no schedule.
    #[serde(default)]
    pub continuous: bool,
}

/// `domains/<domain>/domain.yaml`: declares a domain.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainFile {
    /// The domain's name; must equal the name of the folder holding the file.
    #[schemars(with = "String")]
    pub domain: Spanned<String>,
    /// Who answers for the domain (emails or team handles); at least one.
    #[schemars(with = "Vec<String>")]
    pub owners: Spanned<Vec<String>>,
    /// What the domain owns, for the rest of the organisation.
    pub description: String,
    /// Where to reach the domain's team (a chat channel, a mailing list).
    #[serde(default)]
    pub contact: Option<String>,
    /// The domain's default product store, for its products that name no `destination`
    /// (weft.yaml's `defaults.destination` when absent).
    #[serde(default)]
    pub destination: Option<ConnectorRef>,
    /// Domain-level governance rules, in `governance.yaml`'s rule format: they add to the
    /// central rules and may never weaken them.
    #[serde(default)]
    #[schemars(with = "Vec<serde_json::Value>")]
    pub rules: Vec<Spanned<serde_json::Value>>,
}

/// Per-column metadata of a stream (`fields: { email: { tags: [pii] } }`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldMeta {
    /// What the column holds, for the product's consumers.
    #[serde(default)]
    pub description: Option<String>,
    /// Classification tags (`pii`, `financial`) that governance rules act on.
    #[serde(default)]
    pub tags: Vec<String>,
}

// --- product contracts (contracts engineer) ---
/// A product's contract policy: `contract: { on_change: evolve }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractPolicy {
    /// What a sync does when the source gained columns the locked contract does not have;
    /// breaking changes (a dropped, renamed or narrowed column, a changed key) always stop the
    /// stream.
    #[serde(default)]
    pub on_change: OnChange,
}

/// What a sync does with additive differences from the locked contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnChange {
    /// New columns and new streams are written and reported as drift to re-lock.
    #[default]
    Evolve,
    /// Any difference from the contract stops the stream.
    Freeze,
    /// New columns are left out of the data.
    DiscardValue,
    /// Rows carrying a value in a new column are left out, and so is the column.
    DiscardRow,
}

impl OnChange {
    pub fn as_str(self) -> &'static str {
        match self {
            OnChange::Evolve => "evolve",
            OnChange::Freeze => "freeze",
            OnChange::DiscardValue => "discard_value",
            OnChange::DiscardRow => "discard_row",
        }
    }
}

impl std::fmt::Display for OnChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// --- end product contracts ---
// --- sharing between domains (sharing engineer) ---

/// A product's source: a connector and its config, or another product.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// The connector's name, as listed by `weft connector list`.
    #[serde(default)]
    pub connector: Option<String>,
    /// The connector's config: a mapping checked by the connector (`weft connector spec NAME`).
    /// String values may use `${VAR}`, `${VAR:-default}` and `${file:PATH}`.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// Another product, `domain/product`, read from its product store through the grant it
    /// gives this product's domain; instead of `connector`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub product: Option<Spanned<String>>,
}

/// A grant of some of a product's streams to another domain.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantFile {
    /// The consumer domain (declared under `domains/`).
    #[schemars(with = "String")]
    pub to: Spanned<String>,
    /// The streams granted, each with the columns, rows and transformations that go with it.
    #[schemars(with = "Vec<GrantStreamFile>")]
    pub streams: Spanned<Vec<Spanned<GrantStreamFile>>>,
}

/// One granted stream.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantStreamFile {
    /// The stream of this product.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// The columns the consumer may read (all when absent), after `transform`.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Only the rows matching this condition are shared (the `filter` mapper's semantics).
    #[serde(default)]
    pub filter: Option<GrantFilter>,
    /// Transformations forced on the way, in order: `hash`, `mask` or `drop` mappers.
    #[serde(default)]
    #[schemars(with = "Vec<Mapper>")]
    pub transform: Vec<Spanned<Mapper>>,
}

/// A row condition of a grant: the `filter` mapper's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantFilter {
    /// The column to test.
    pub column: String,
    /// The comparison.
    pub op: FilterOp,
    /// The value compared with; required except for `is_null` and `is_not_null`.
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

// --- end sharing ---

/// One stream of a product.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamFile {
    /// The stream's name in the source (`weft connector discover` lists them).
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// How the stream is read; `full_refresh` when absent.
    #[serde(default)]
    #[schemars(with = "Option<SyncMode>")]
    pub mode: Option<Spanned<SyncMode>>,
    /// How the stream is written: `overwrite` for full refresh, `append_dedup` for incremental
    /// when absent.
    #[serde(default)]
    #[schemars(with = "Option<WriteMode>")]
    pub write: Option<Spanned<WriteMode>>,
    /// The column whose growth marks new or changed rows; required for incremental reads.
    #[serde(default)]
    pub cursor: Option<String>,
    /// The columns identifying a row; required for `append_dedup`.
    #[serde(default)]
    pub primary_key: Option<Vec<String>>,
    /// The columns to read (all when absent).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Transformations applied in order to every batch before it is written.
    #[serde(default)]
    #[schemars(with = "Vec<Mapper>")]
    pub mappers: Vec<Spanned<Mapper>>,
    // --- stream metadata (contracts engineer) ---
    /// What one row of the stream is, for consumers.
    #[serde(default)]
    pub description: Option<String>,
    // --- end stream metadata ---
    /// Per-column metadata: description and tags, by column name.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldMeta>,
}

/// A transformation of a stream's batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Mapper {
    /// Keep only these columns, in this order.
    Select(Vec<String>),
    /// Remove these columns.
    Drop(Vec<String>),
    /// Rename a column.
    Rename {
        /// The current name.
        from: String,
        /// The new name.
        to: String,
    },
    /// Replace a column's values with a salted SHA-256 hash (hex).
    Hash {
        /// The column to hash.
        column: String,
        /// A secret salt; use `${VAR}` to keep it out of the file.
        #[serde(default)]
        salt: Option<String>,
    },
    /// Replace all but the last characters of a column's values.
    Mask {
        /// The column to mask.
        column: String,
        /// How many trailing characters stay visible.
        #[serde(default)]
        keep_last: usize,
        /// The character shown instead of the hidden ones.
        #[serde(default = "default_mask_char")]
        mask_char: char,
    },
    /// Replace a column's values with AES-256-GCM ciphertext (base64 of nonce + ciphertext)
    /// under the project's `keys.encrypt` of governance.yaml; `weft policy decrypt` reverses it.
    Encrypt {
        /// The column to encrypt.
        column: String,
    },
    /// Replace a column's values with the keyed HMAC-SHA-256 (hex) under the project's
    /// `keys.hash`: forced by governance rules, never written in product files.
    #[serde(skip_deserializing)]
    #[schemars(skip)]
    KeyedHash {
        /// The column to hash.
        column: String,
    },
    /// Keep only the rows matching a condition.
    Filter {
        /// The column to test.
        column: String,
        /// The comparison.
        op: FilterOp,
        /// The value compared with; required except for `is_null` and `is_not_null`.
        #[serde(default)]
        value: Option<serde_json::Value>,
    },
}

fn default_mask_char() -> char {
    '*'
}

/// A comparison of a [`Mapper::Filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    IsNull,
    IsNotNull,
}

impl FilterOp {
    /// Whether the comparison needs a `value`.
    pub fn needs_value(self) -> bool {
        !matches!(self, FilterOp::IsNull | FilterOp::IsNotNull)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FilterOp::Eq => "eq",
            FilterOp::Ne => "ne",
            FilterOp::Lt => "lt",
            FilterOp::Le => "le",
            FilterOp::Gt => "gt",
            FilterOp::Ge => "ge",
            FilterOp::IsNull => "is_null",
            FilterOp::IsNotNull => "is_not_null",
        }
    }
}

impl std::fmt::Display for FilterOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
