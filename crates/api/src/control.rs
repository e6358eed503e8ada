//! [`Control`]: what the HTTP layer needs from whatever runs the products (the daemon).
//!
//! The API never runs a sync itself: it reads the project and the state store, and asks the
//! scheduler, through this trait, to trigger, pause or resume. The daemon implements it.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the HTTP layer needs from whatever runs the products (the daemon).
#[async_trait::async_trait]
pub trait Control: Send + Sync + 'static {
    /// The project as currently loaded (products, domains, schedules, owners, …).
    fn project(&self) -> Arc<weft_mesh::Project>;
    /// The scheduler's view of each product now.
    fn statuses(&self) -> Vec<ProductStatus>;
    /// Starts a run of a product (all its streams, or one) unless one is running or the
    /// product is paused ([`ControlError::Paused`]).
    async fn trigger(
        &self,
        product: &ProductRef,
        stream: Option<&str>,
    ) -> Result<Triggered, ControlError>;
    /// Stops scheduling a product (a run in flight finishes).
    async fn pause(&self, product: &ProductRef) -> Result<(), ControlError>;
    /// Schedules a paused product again.
    async fn resume(&self, product: &ProductRef) -> Result<(), ControlError>;
    /// The error of the last rejected configuration reload, if the running one is older.
    fn config_error(&self) -> Option<String>;
    /// The log lines kept of a run (bounded, redacted), if this process ran it and still
    /// keeps them; `None` otherwise.
    fn run_logs(&self, _run_id: &str) -> Option<RunLogs> {
        None
    }
}

/// The log lines of one run that the daemon keeps (the first ones and the latest ones, up to
/// a bound), secrets redacted.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RunLogs {
    pub run_id: String,
    pub lines: Vec<LogLine>,
    /// Lines left out between the first and the latest kept ones (the bound).
    pub dropped: u64,
}

/// One log line of a run.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LogLine {
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// The stream the line is about, if any.
    pub stream: Option<String>,
    /// The message and its fields, as the daemon's text log shows them.
    pub message: String,
}

/// Names one product of one domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct ProductRef {
    pub domain: String,
    pub product: String,
}

impl ProductRef {
    pub fn new(domain: impl Into<String>, product: impl Into<String>) -> Self {
        Self {
            domain: domain.into(),
            product: product.into(),
        }
    }
}

impl fmt::Display for ProductRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.product)
    }
}

/// The scheduler's view of one product.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProductStatus {
    pub product: ProductRef,
    #[serde(flatten)]
    pub scheduling: Scheduling,
}

/// What the scheduler knows of a product now: the part of [`ProductStatus`] that the product
/// views of the API carry too.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Scheduling {
    /// The schedule as written in the product file.
    pub schedule: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_run: Option<DateTime<Utc>>,
    pub paused: bool,
    /// False after repeated failures.
    pub healthy: bool,
    /// The id of the run in flight.
    pub running: Option<String>,
    /// When the run in flight was accepted.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub running_since: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    /// The last failure's message, redacted.
    pub last_error: Option<String>,
}

impl Scheduling {
    /// A product the scheduler has not run or steered: its schedule, healthy, idle.
    pub fn idle(product: &weft_mesh::Product) -> Self {
        Self {
            schedule: product.schedule.as_ref().map(|s| s.as_str().to_string()),
            next_run: None,
            paused: false,
            healthy: true,
            running: None,
            running_since: None,
            consecutive_failures: 0,
            last_error: None,
        }
    }
}

/// What a trigger did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Triggered {
    Started { run_id: String },
    AlreadyRunning { run_id: String },
}

/// Why the scheduler refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no such product")]
    UnknownProduct,
    /// The product has no stream of that name.
    #[error("no such stream")]
    UnknownStream,
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// The product's schedule is paused: resume it to run it.
    #[error("the product is paused")]
    Paused,
    /// Anything else, already worded for the user and redacted.
    #[error("{0}")]
    Other(String),
}
