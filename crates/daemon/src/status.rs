//! What the daemon tells about its products, and how a trigger ends: the shapes the HTTP
//! layer's `Control` trait speaks (agreed with its owner; see `weft-api`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use weft_state::ProductKey;

/// `domain` + `product`, as an API names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductRef {
    pub domain: String,
    pub product: String,
}

impl From<&ProductKey> for ProductRef {
    fn from(key: &ProductKey) -> Self {
        Self {
            domain: key.domain.to_string(),
            product: key.product.to_string(),
        }
    }
}

/// The scheduler's view of one product.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProductStatus {
    pub product: ProductRef,
    /// As written: the cron expression or `every 15m`.
    pub schedule: Option<String>,
    pub next_run: Option<DateTime<Utc>>,
    pub paused: bool,
    /// False once a run failed after all its retries; true again after a success.
    pub healthy: bool,
    /// The run in flight.
    pub running: Option<String>,
    pub consecutive_failures: u32,
    /// Redacted.
    pub last_error: Option<String>,
}

/// How a trigger ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Triggered {
    Started {
        run_id: String,
    },
    /// The product was running: the trigger is recorded as skipped (or queued).
    AlreadyRunning {
        run_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no such product")]
    UnknownProduct,
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Other(String),
}
