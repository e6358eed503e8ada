//! The JSON the API answers, built from the project, the state store and the scheduler.
//!
//! Everything a caller may not see is filtered here or before; every stored error passes the
//! project's `Redactor` on the way out.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use weft_mesh::{Product, Project};
use weft_state::{
    RunRecord, RunStatus, StateResult, StateStore, StoredState, StreamKey, StreamRun,
};

use crate::control::{ProductRef, ProductStatus, Scheduling};

/// A domain and the names of its products.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainView {
    pub name: String,
    /// Who answers for the domain (`domain.yaml`).
    pub owners: Vec<String>,
    pub description: String,
    pub contact: Option<String>,
    pub products: Vec<String>,
}

/// Freshness at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Every stream succeeded since the last scheduled time (or the product has no schedule
    /// and every stream succeeded once).
    Fresh,
    /// A scheduled time passed without a success since.
    Late,
    /// The latest run of a stream failed, or the scheduler marked the product unhealthy.
    Failing,
    /// No stream has succeeded yet.
    Never,
}

/// A product as the list shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductView {
    pub domain: String,
    pub product: String,
    pub owner: String,
    pub description: String,
    /// The scheduler's view; `last_error` falls back to a stream's latest error.
    #[serde(flatten)]
    pub scheduling: Scheduling,
    pub freshness: Freshness,
    /// When every stream had last succeeded (the oldest of the streams' last successes).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success: Option<DateTime<Utc>>,
    /// Seconds since `last_success`.
    pub freshness_seconds: Option<f64>,
    pub streams: Vec<String>,
}

/// A product with its streams' schemas and checkpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductDetail {
    #[serde(flatten)]
    pub product: ProductView,
    pub stream_details: Vec<StreamView>,
}

/// One stream: its configuration, checkpoint and latest run.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamView {
    pub name: String,
    /// `full_refresh`, `incremental` or `cdc`.
    pub mode: String,
    /// `overwrite`, `append` or `append_dedup`.
    pub write: String,
    pub cursor: Option<String>,
    pub primary_key: Option<Vec<String>>,
    /// The columns selected in the product file (absent: all of the source's).
    pub columns: Option<Vec<String>>,
    /// The last recorded checkpoint (opaque JSON), if any.
    #[schema(value_type = Option<Object>)]
    pub checkpoint: Option<serde_json::Value>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub checkpoint_updated_at: Option<DateTime<Utc>>,
    pub last_run: Option<StreamRunView>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success: Option<DateTime<Utc>>,
}

/// How one stream of a run went.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamRunView {
    pub stream: String,
    pub run_id: String,
    /// `running`, `succeeded`, `failed`, `cancelled` or `interrupted`.
    pub status: String,
    pub rows: u64,
    pub bytes: u64,
    pub duration_seconds: f64,
    pub error: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: DateTime<Utc>,
    #[schema(value_type = String, format = DateTime)]
    pub ended_at: DateTime<Utc>,
}

/// One run of a product, with that product's streams.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub run_id: String,
    /// `running`, `succeeded`, `failed`, `cancelled`, `interrupted`, `skipped`, or `pending`
    /// (accepted by the daemon, waiting for a slot of its concurrency limit or the lock).
    pub status: String,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: DateTime<Utc>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    /// Rows and bytes of this product's streams in the run.
    pub rows: u64,
    pub bytes: u64,
    pub error: Option<String>,
    pub streams: Vec<StreamRunView>,
}

/// A page of a product's run history, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunsPage {
    pub runs: Vec<RunView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<String>,
}

/// What `/ready` says.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// The error of the last rejected configuration reload, if the running one is older.
    pub config_error: Option<String>,
}

/// What `/health` says.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

fn key(product: &Product, stream: &weft_core::StreamName) -> StreamKey {
    StreamKey {
        domain: product.domain.clone(),
        product: product.name.clone(),
        stream: stream.clone(),
    }
}

pub(crate) fn stream_run_view(project: &Project, run: &StreamRun, run_id: &str) -> StreamRunView {
    StreamRunView {
        stream: run.key.stream.to_string(),
        run_id: run_id.to_string(),
        status: run.status.as_str().to_string(),
        rows: run.rows,
        bytes: run.bytes,
        duration_seconds: seconds(run.started_at, run.ended_at),
        error: run.error.as_deref().map(|e| project.secrets.redact(e)),
        started_at: run.started_at,
        ended_at: run.ended_at,
    }
}

/// A run as seen from one product: only that product's streams.
pub(crate) fn run_view(project: &Project, product: &ProductRef, run: &RunRecord) -> RunView {
    let streams: Vec<StreamRunView> = run
        .streams
        .iter()
        .filter(|s| {
            s.key.domain.as_str() == product.domain && s.key.product.as_str() == product.product
        })
        .map(|s| stream_run_view(project, s, &run.run_id))
        .collect();
    // A run of several products carries their error texts too; show the run's error only if
    // this product failed in it or the run is this product's alone.
    let own_failure = streams.iter().any(|s| s.error.is_some());
    let alone = run.streams.len() == streams.len();
    RunView {
        run_id: run.run_id.clone(),
        status: run.status.as_str().to_string(),
        started_at: run.started_at,
        ended_at: run.ended_at,
        duration_seconds: run.ended_at.map(|e| seconds(run.started_at, e)),
        rows: streams.iter().map(|s| s.rows).sum(),
        bytes: streams.iter().map(|s| s.bytes).sum(),
        error: if own_failure || alone {
            run.error.as_deref().map(|e| project.secrets.redact(e))
        } else {
            None
        },
        streams,
    }
}

/// What the store knows of a product's streams, gathered once per request.
struct History {
    streams: Vec<(StreamView, Option<RunStatus>)>,
}

fn history(project: &Project, product: &Product, store: &dyn StateStore) -> StateResult<History> {
    let mut streams = Vec::with_capacity(product.streams.len());
    for s in &product.streams {
        let k = key(product, &s.name);
        let h = store.stream_history(&k)?;
        let state: Option<StoredState> = store.get_state(&k)?;
        let last_status = h.last_run.as_ref().map(|(r, _)| r.status);
        streams.push((
            StreamView {
                name: s.name.to_string(),
                mode: s.mode.to_string(),
                write: s.write.to_string(),
                cursor: s.cursor.clone(),
                primary_key: s.primary_key.clone(),
                columns: s.columns.clone(),
                checkpoint: state
                    .as_ref()
                    .map(|st| serde_json::to_value(&st.checkpoint).unwrap_or_default()),
                checkpoint_updated_at: state.as_ref().map(|st| st.updated_at),
                last_run: h
                    .last_run
                    .as_ref()
                    .map(|(r, id)| stream_run_view(project, r, id)),
                last_success: h.last_success,
            },
            last_status,
        ));
    }
    Ok(History { streams })
}

/// The freshness verdict of a product from its streams and the scheduler's view.
pub(crate) fn freshness(
    product: &Product,
    status: Option<&ProductStatus>,
    last_statuses: &[Option<RunStatus>],
    last_success: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Freshness {
    let failed = last_statuses
        .iter()
        .any(|s| matches!(s, Some(RunStatus::Failed | RunStatus::Interrupted)));
    if failed || status.is_some_and(|s| !s.scheduling.healthy) {
        return Freshness::Failing;
    }
    let Some(success) = last_success else {
        return Freshness::Never;
    };
    // Late once a second scheduled time passed since the success: the first one's run may
    // still be going.
    let late = product
        .schedule
        .as_ref()
        .and_then(|s| s.next_after(success).and_then(|t| s.next_after(t)))
        .is_some_and(|due| due < now);
    if late {
        Freshness::Late
    } else {
        Freshness::Fresh
    }
}

/// A product's list entry and its streams' details.
pub(crate) fn product_detail(
    project: &Project,
    product: &Product,
    status: Option<&ProductStatus>,
    store: &dyn StateStore,
    now: DateTime<Utc>,
) -> StateResult<ProductDetail> {
    let h = history(project, product, store)?;
    let mut last_statuses: Vec<Option<RunStatus>> = h.streams.iter().map(|(_, s)| *s).collect();
    // A run can fail before any stream starts (the source is unreachable): the product's own
    // latest run counts too (skipped triggers say nothing of the data).
    let latest_run = store
        .product_runs(product.domain.as_str(), product.name.as_str(), None, 5)?
        .into_iter()
        .find(|r| r.status != RunStatus::Skipped && r.status != RunStatus::Running);
    last_statuses.push(latest_run.as_ref().map(|r| r.status));
    // The product is as fresh as its stalest stream; a stream never synced makes it `never`.
    let last_success = if h.streams.iter().all(|(v, _)| v.last_success.is_some()) {
        h.streams.iter().filter_map(|(v, _)| v.last_success).min()
    } else {
        None
    };
    let verdict = freshness(product, status, &last_statuses, last_success, now);
    let mut scheduling = status.map_or_else(|| Scheduling::idle(product), |s| s.scheduling.clone());
    scheduling.last_error = scheduling
        .last_error
        .map(|e| project.secrets.redact(&e))
        .or_else(|| {
            h.streams
                .iter()
                .filter_map(|(v, _)| v.last_run.as_ref())
                .filter(|r| r.status != "succeeded")
                .find_map(|r| r.error.clone())
        });
    let view = ProductView {
        domain: product.domain.to_string(),
        product: product.name.to_string(),
        owner: product.owner.clone(),
        description: product.description.clone(),
        scheduling,
        freshness: verdict,
        last_success,
        freshness_seconds: last_success.map(|t| seconds(t, now)),
        streams: product.streams.iter().map(|s| s.name.to_string()).collect(),
    };
    Ok(ProductDetail {
        product: view,
        stream_details: h.streams.into_iter().map(|(v, _)| v).collect(),
    })
}
