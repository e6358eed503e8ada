//! The values the state store keeps: stream keys, stored checkpoints, runs.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use weft_core::{Checkpoint, DomainName, ProductName, StreamName};

/// Identifies one stream of one product of one domain. Displays as `domain/product/stream`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamKey {
    pub domain: DomainName,
    pub product: ProductName,
    pub stream: StreamName,
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.domain, self.product, self.stream)
    }
}

/// A stream's last recorded checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredState {
    pub checkpoint: Checkpoint,
    /// Grows by one with every write; the compare-and-set token.
    pub generation: i64,
    pub updated_at: DateTime<Utc>,
    /// The run that recorded it.
    pub run_id: String,
}

/// How a run or a stream of a run ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// The process died while the run was running.
    Interrupted,
    /// A trigger that came while the product was running (single-flight): recorded, not run.
    Skipped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Skipped => "skipped",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            "interrupted" => RunStatus::Interrupted,
            "skipped" => RunStatus::Skipped,
            _ => return None,
        })
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one product of one domain. Displays as `domain/product`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProductKey {
    pub domain: DomainName,
    pub product: ProductName,
}

impl fmt::Display for ProductKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.product)
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `weft sync run`.
    #[default]
    Manual,
    /// The daemon, at a scheduled time.
    Schedule,
    /// The daemon, once on start for scheduled times missed while it was down.
    Misfire,
    /// The daemon, retrying a failed run.
    Retry,
    /// Asked of the daemon (HTTP API or a queued trigger).
    Api,
    /// The daemon, (re)starting a continuous follower.
    Follow,
    /// `weft state set`: a stream's position was set by hand (the run reads nothing).
    StateSet,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
            Trigger::Misfire => "misfire",
            Trigger::Retry => "retry",
            Trigger::Api => "api",
            Trigger::Follow => "follow",
            Trigger::StateSet => "state_set",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "manual" => Trigger::Manual,
            "schedule" => Trigger::Schedule,
            "misfire" => Trigger::Misfire,
            "retry" => Trigger::Retry,
            "api" => Trigger::Api,
            "follow" => Trigger::Follow,
            "state_set" => Trigger::StateSet,
            _ => return None,
        })
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The start of a run.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RunStart {
    pub run_id: String,
    /// The selectors given on the command line (empty: everything).
    pub selectors: Vec<String>,
    pub started_at: DateTime<Utc>,
    /// The products the run covers (their locks are held while it runs).
    pub products: Vec<ProductKey>,
    pub trigger: Trigger,
    /// When the run was due, for scheduled runs (start minus this is the scheduler's lag).
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// The latest run (of any status, skipped ones too) of one product.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProductLastRun {
    pub product: ProductKey,
    pub run_id: String,
    pub status: RunStatus,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// How one stream of a run went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamRun {
    pub key: StreamKey,
    pub status: RunStatus,
    pub rows: u64,
    /// Bytes the destination wrote (0 when it does not count them).
    pub bytes: u64,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
}

/// One run of the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub selectors: Vec<String>,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    /// `None` while running (or if the process died; see [`RunStatus::Interrupted`]).
    pub ended_at: Option<DateTime<Utc>>,
    pub rows: u64,
    /// Bytes the destinations wrote (0 when they do not count them).
    pub bytes: u64,
    pub error: Option<String>,
    /// Streams in the order they finished.
    pub streams: Vec<StreamRun>,
    pub trigger: Trigger,
    pub scheduled_at: Option<DateTime<Utc>>,
    /// The products the run covered (empty for runs recorded before weft kept them).
    pub products: Vec<ProductKey>,
}

/// Whom an API token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Sees and does everything.
    Admin,
    /// Sees and triggers one domain's products.
    Domain(DomainName),
}

impl TokenScope {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(TokenScope::Admin),
            _ => text
                .strip_prefix("domain:")
                .and_then(|d| DomainName::new(d).ok())
                .map(TokenScope::Domain),
        }
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenScope::Admin => f.write_str("admin"),
            TokenScope::Domain(d) => write!(f, "domain:{d}"),
        }
    }
}

/// A token to record: only its SHA-256 hash is stored, never the token.
#[derive(Debug, Clone, PartialEq)]
pub struct NewToken {
    pub id: String,
    pub name: String,
    pub scope: TokenScope,
    /// Lower-case hex SHA-256 of the token text.
    pub hash: String,
    pub created_at: DateTime<Utc>,
}

/// A recorded API token (without its hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub scope: TokenScope,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What the history says of one stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamHistory {
    /// Its latest finished run, with the run id.
    pub last_run: Option<(StreamRun, String)>,
    /// When a run of it last succeeded.
    pub last_success: Option<DateTime<Utc>>,
}
