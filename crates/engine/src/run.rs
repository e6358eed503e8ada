//! One sync run over a selection of products: build connectors, plan streams, run them
//! concurrently (bounded), and record the run in the state store's history.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};
use weft_core::{Destination, Source};
use weft_mesh::{Project, Selection};
use weft_state::{ProductKey, RunStart, RunStatus, StateStore, StreamKey, StreamRun, Trigger};

use crate::contract::{enforce, Enforced};
use crate::error::EngineError;
use crate::inflight::{InFlight, InFlightReport};
use crate::plan::{plan_stream, PlanScope};
use crate::progress::{Phase, StreamProgress};
use crate::registry::Registry;
use crate::stream::{StreamJob, StreamStop};

/// Knobs of a run (from `weft.yaml`'s defaults).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Commit at most this often during a stream (and always at its end).
    pub commit_interval: Duration,
    pub max_concurrent_streams: usize,
    /// Batches buffered between source and destination, per stream.
    pub channel_capacity: usize,
    /// Bytes of batches in flight across all streams of the run (see [`crate::inflight`]).
    pub max_bytes_in_flight: u64,
    /// CDC streams keep streaming until the run is cancelled, instead of catching up to the
    /// log position current at start and stopping.
    pub follow: bool,
    /// Incremental streams that dedup by key read from the start, ignoring their checkpoints
    /// (`sync run --full-refresh`); see [`full_refresh_refusal`] for the streams it refuses.
    pub full_refresh: bool,
    /// What started the run (recorded in the history).
    pub trigger: Trigger,
    /// When a scheduled run was due.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Streams whose position is set instead of read (`weft state set`): see [`SetPosition`].
    pub set_positions: Vec<(StreamKey, SetPosition)>,
}

/// A position `weft state set` gives a stream. **Decision:** it is applied by a run that reads
/// nothing: the stream's writer opens, commits the new checkpoint as a run that read no row
/// would (`finish`), and the state store records it with its compare-and-set. So the
/// destination's checkpoint (which wins on restart) and the state store's agree, the change is
/// crash-safe like any commit, and it is in `sync history` (trigger `state_set`).
#[derive(Debug, Clone, PartialEq)]
pub enum SetPosition {
    /// Read every row whose cursor is at or after this value next ([`Source::position_from_cursor`]).
    Cursor(String),
    /// The source's own state JSON ([`Source::position_from_state`]).
    State(serde_json::Value),
}

impl RunOptions {
    pub fn from_project(project: &Project) -> Self {
        Self {
            commit_interval: project.settings.commit_interval,
            max_concurrent_streams: project.settings.max_concurrent_streams.max(1),
            channel_capacity: project.settings.channel_capacity.max(1),
            max_bytes_in_flight: project.settings.max_bytes_in_flight,
            follow: false,
            full_refresh: false,
            trigger: Trigger::Manual,
            scheduled_at: None,
            set_positions: Vec::new(),
        }
    }
}

struct ProductRun {
    product: weft_mesh::Product,
    key: ProductKey,
    label: String,
    /// The product this one reads (`domain/product`), when it reads one.
    upstream: Option<String>,
    file: String,
    source: Arc<dyn Source>,
    destination: Arc<dyn Destination>,
    streams: Vec<(weft_mesh::StreamConfig, StreamKey, Arc<StreamProgress>)>,
}

/// A run whose connectors are built and whose configs are valid, ready to execute.
pub struct PreparedRun {
    run_id: String,
    /// See [`crate::admin::project_id`].
    project_id: String,
    selectors: Vec<String>,
    /// For messages naming project files.
    project: Project,
    products: Vec<ProductRun>,
    /// Indexes into `products`: each wave only reads products of earlier waves.
    waves: Vec<Vec<usize>>,
    state: Arc<dyn StateStore>,
    options: RunOptions,
    /// The project's policy and the project it governs, for the forced transformations.
    governance: crate::governance::Governance,
}

/// How one stream ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamReport {
    /// `domain/product/stream`.
    pub stream: String,
    pub status: RunStatus,
    /// Rows read from the source (and handed to the destination).
    pub rows: u64,
    /// Rows the destination made durable. For a succeeded stream, all of them, published;
    /// for a failed or cancelled one, those up to its last commit: visible at once with
    /// `append` (and CDC changelogs), kept staged for the next run to resume with `overwrite`
    /// and `append_dedup`.
    pub committed_rows: u64,
    /// The stream's write mode (`overwrite`, `append`, `append_dedup`).
    pub write: String,
    /// Values that did not fit the stream's schema and were written as NULL.
    pub off_schema_values: u64,
    /// Bytes the destination made durable (a lake: the Parquet files the run wrote; the
    /// PostgreSQL store: the COPY data sent), `None` when the destination does not count them.
    pub bytes_written: Option<u64>,
    /// Size of the rows read as Arrow data in memory (not what the destination wrote, which
    /// compresses).
    pub arrow_bytes: u64,
    /// Total seconds: reading, then finishing.
    pub seconds: f64,
    /// Seconds reading (rows/s is measured over these).
    pub read_seconds: f64,
    /// Seconds finishing: the final commit and the publication (overwrite swap, dedup
    /// settling).
    pub publish_seconds: f64,
    pub commits: u64,
    pub error: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub status: RunStatus,
    pub streams: Vec<StreamReport>,
    /// Bytes of batches in flight across the run's streams: the limit and the peak.
    pub in_flight: InFlightReport,
}

impl RunReport {
    pub fn rows(&self) -> u64 {
        self.streams.iter().map(|s| s.rows).sum()
    }
    /// Arrow bytes read (see [`StreamReport::arrow_bytes`]).
    pub fn arrow_bytes(&self) -> u64 {
        self.streams.iter().map(|s| s.arrow_bytes).sum()
    }
    /// Bytes written by destinations that count them; `None` when none does.
    pub fn bytes_written(&self) -> Option<u64> {
        self.streams
            .iter()
            .filter_map(|s| s.bytes_written)
            .reduce(|a, b| a + b)
    }
}

/// Builds the connectors of every selected product: invalid connector configs fail here,
/// before anything runs.
pub fn prepare(
    project: &Project,
    selections: &[Selection<'_>],
    selectors: Vec<String>,
    registry: &Registry,
    state: Arc<dyn StateStore>,
    options: RunOptions,
) -> Result<PreparedRun, EngineError> {
    let governance = crate::governance::Governance::load(project)?;
    let mut products = Vec::new();
    for selection in selections {
        let product = selection.product;
        governance.refuse_violations(product)?;
        let file = product
            .file
            .strip_prefix(&project.root)
            .unwrap_or(&product.file)
            .display()
            .to_string();
        let label = format!("{}/{}", product.domain, product.name);
        // The first problem stops the run; `weft config validate` lists them all.
        let (source, destination) = crate::validate::build_product(project, product, registry)
            .map_err(|problems| {
                EngineError::Config(problems.into_iter().next().expect("at least one problem"))
            })?;
        let configs =
            crate::validate::effective_streams(project, product).map_err(EngineError::Config)?;
        let streams = configs
            .iter()
            .filter(|s| selection.streams.contains(&s.name))
            .map(|s| {
                let key = StreamKey {
                    domain: product.domain.clone(),
                    product: product.name.clone(),
                    stream: s.name.clone(),
                };
                let progress = Arc::new(StreamProgress::new(key.to_string()));
                (s.clone(), key, progress)
            })
            .collect();
        products.push(ProductRun {
            product: product.clone(),
            key: ProductKey {
                domain: product.domain.clone(),
                product: product.name.clone(),
            },
            label,
            upstream: product.upstream.as_ref().map(|u| u.product.to_string()),
            file,
            source: Arc::from(source),
            destination: Arc::from(destination),
            streams,
        });
    }
    let selected: Vec<&weft_mesh::Product> = selections.iter().map(|s| s.product).collect();
    let waves = weft_mesh::run_order(&selected);
    Ok(PreparedRun {
        run_id: new_run_id(),
        project_id: crate::admin::project_id(&project.root),
        selectors,
        project: project.clone(),
        products,
        waves,
        state,
        options,
        governance,
    })
}

/// Why `--full-refresh` cannot re-read a stream safely, if it cannot. Re-reading from scratch
/// is safe where the destination settles rows by key (`append_dedup`: rows read twice, as when
/// a staged generation is resumed, settle to one), and a `full_refresh` stream re-reads anyway.
/// An `append` stream would get every row a second time, an incremental `overwrite` could mix
/// a resumed generation with a new read, and a CDC stream needs a new snapshot and slot.
pub fn full_refresh_refusal(stream: &weft_mesh::StreamConfig) -> Option<&'static str> {
    use weft_core::{SyncMode, WriteMode};
    match (stream.mode, stream.write) {
        (SyncMode::FullRefresh, _) | (SyncMode::Incremental, WriteMode::AppendDedup) => None,
        (SyncMode::Incremental, WriteMode::Append) => Some(
            "its `write: append` would get every row a second time; reset it (`weft sync reset`) \
             to start over",
        ),
        (SyncMode::Incremental, _) => Some(
            "an incremental `overwrite` stream cannot re-read from the start safely; reset it \
             (`weft sync reset`) to start over",
        ),
        _ => Some("a CDC stream starts over with a new snapshot: reset it (`weft sync reset`)"),
    }
}

/// A new run id: its start time (sortable) and 8 random hex digits.
pub fn new_run_id() -> String {
    let now = Utc::now().format("%Y%m%dT%H%M%SZ");
    let short = uuid::Uuid::new_v4().simple().to_string();
    format!("{now}-{}", &short[..8])
}

impl PreparedRun {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The products the run covers: lock them (see [`crate::locks`]) before executing.
    pub fn products(&self) -> Vec<ProductKey> {
        self.products.iter().map(|p| p.key.clone()).collect()
    }

    /// Live counters of every stream of the run, in order.
    pub fn progress(&self) -> Vec<Arc<StreamProgress>> {
        self.products
            .iter()
            .flat_map(|p| p.streams.iter().map(|(_, _, progress)| progress.clone()))
            .collect()
    }

    /// Runs every stream; fails only if the state store itself fails. Stream failures are in
    /// the report.
    pub async fn execute(self, cancel: CancellationToken) -> Result<RunReport, EngineError> {
        // Every log line of the run carries its id (and, in streams, product and stream).
        let span = info_span!("run", run_id = %self.run_id);
        self.execute_in(cancel).instrument(span).await
    }

    async fn execute_in(self, cancel: CancellationToken) -> Result<RunReport, EngineError> {
        let started_at = Utc::now();
        self.state.start_run(&RunStart {
            run_id: self.run_id.clone(),
            selectors: self.selectors.clone(),
            started_at,
            products: self.products(),
            trigger: self.options.trigger,
            scheduled_at: self.options.scheduled_at,
        })?;
        info!(run_id = %self.run_id, "sync run started");

        let semaphore = Arc::new(Semaphore::new(self.options.max_concurrent_streams));
        let in_flight = InFlight::new(self.options.max_bytes_in_flight);
        let mut reports = Vec::new();
        // Each error is logged once (a product's discovery failure fails all its streams).
        let mut logged: Vec<String> = Vec::new();
        // Products with a failed or cancelled stream: their consumers are skipped.
        let mut unfinished: Vec<String> = Vec::new();
        for wave in &self.waves {
            let mut tasks = Vec::new();
            for &index in wave {
                let product = &self.products[index];
                match product.upstream.as_ref().filter(|u| unfinished.contains(u)) {
                    Some(upstream) => {
                        let message = format!(
                            "{}: skipped: its source product `{upstream}` did not sync in this run",
                            product.file
                        );
                        fail_all(product, &message, &mut tasks);
                    }
                    None => {
                        self.spawn_product(product, (&semaphore, &in_flight), &cancel, &mut tasks)
                            .await
                    }
                }
            }
            for joined in join_all(tasks).await {
                let Some(report) = self.record(joined, &mut logged)? else {
                    continue;
                };
                if report.status != RunStatus::Succeeded {
                    if let Some(product) = self.products.iter().find(|p| {
                        p.streams
                            .iter()
                            .any(|(_, k, _)| k.to_string() == report.stream)
                    }) {
                        if !unfinished.contains(&product.label) {
                            unfinished.push(product.label.clone());
                        }
                    }
                }
                reports.push(report);
            }
        }

        // What really happened: a cancellation that came while every stream was publishing
        // (streams finish their publication) leaves a succeeded run.
        let status = if reports.iter().any(|r| r.status == RunStatus::Failed) {
            RunStatus::Failed
        } else if reports.iter().any(|r| r.status == RunStatus::Cancelled)
            || (cancel.is_cancelled() && reports.is_empty())
        {
            RunStatus::Cancelled
        } else {
            RunStatus::Succeeded
        };
        let report = RunReport {
            run_id: self.run_id.clone(),
            status,
            streams: reports,
            in_flight: in_flight.report(),
        };
        let failures: Vec<String> = report
            .streams
            .iter()
            .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.stream)))
            .collect();
        let error = (!failures.is_empty()).then(|| failures.join("; "));
        self.state.finish_run(
            &self.run_id,
            status,
            report.rows(),
            report.bytes_written().unwrap_or(0),
            error.as_deref(),
            Utc::now(),
        )?;
        info!(
            run_id = %self.run_id,
            status = %status,
            rows = report.rows(),
            in_flight_peak_bytes = report.in_flight.peak_bytes,
            in_flight_limit_bytes = report.in_flight.limit_bytes,
            "sync run ended"
        );
        Ok(report)
    }
}

type Outcome = (
    StreamKey,
    Arc<StreamProgress>,
    Result<(), StreamStop>,
    chrono::DateTime<Utc>,
);

type Joined = Result<Outcome, tokio::task::JoinError>;

impl PreparedRun {
    /// Discovers a product's source and starts a task per stream (bounded by `semaphore`).
    async fn spawn_product(
        &self,
        product: &ProductRun,
        (semaphore, in_flight): (&Arc<Semaphore>, &Arc<InFlight>),
        cancel: &CancellationToken,
        tasks: &mut Vec<tokio::task::JoinHandle<Outcome>>,
    ) {
        let catalog = match product.source.discover().await {
            Ok(catalog) => catalog,
            Err(e) => {
                let message = format!("{}: source discovery failed: {e}", product.file);
                error!(product = %product.label, "{message}");
                fail_all(product, &message, tasks);
                return;
            }
        };
        for (config, key, progress) in &product.streams {
            let scope = PlanScope {
                pipeline_id: crate::admin::pipeline_id(&self.project_id, key),
                follow: self.options.follow,
            };
            let governed = self.governance.govern(&product.product, config, &catalog);
            let planned = governed.and_then(|(governed, audit)| {
                let keys = self.governance.keys();
                let plan = plan_stream(&governed, &catalog, &scope, keys)?;
                let enforced = enforce(
                    &self.project,
                    &product.product,
                    &governed,
                    plan,
                    &catalog,
                    &scope,
                    keys,
                )?;
                self.governance
                    .record(&self.state, &self.run_id, key, &audit);
                Ok(enforced)
            });
            let plan = match planned {
                Ok(Enforced { plan, drift }) => {
                    if !drift.is_empty() {
                        warn!(
                            stream = %key,
                            "{}: stream `{}` drifts from its locked contract: {}; handled per `on_change: {}`. Re-lock with `weft product contract {}`",
                            product.file,
                            config.name,
                            drift.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("; "),
                            product.product.contract.on_change,
                            product.label
                        );
                    }
                    plan
                }
                Err(message) => {
                    let message = format!("{}: stream `{}`: {message}", product.file, config.name);
                    fail_one(key, progress, message, tasks);
                    continue;
                }
            };
            let set_to = match self.options.set_positions.iter().find(|(k, _)| k == key) {
                None => None,
                Some((_, set)) => {
                    let built = match set {
                        SetPosition::Cursor(value) => product
                            .source
                            .position_from_cursor(&plan.source_stream, value),
                        SetPosition::State(state) => product
                            .source
                            .position_from_state(&plan.source_stream, state),
                    };
                    match built {
                        Ok(checkpoint) => Some(checkpoint),
                        Err(e) => {
                            let message =
                                format!("{}: stream `{}`: {e}", product.file, config.name);
                            fail_one(key, progress, message, tasks);
                            continue;
                        }
                    }
                }
            };
            let schema_check: crate::stream::SchemaCheck = {
                let (project, product, config, governance) = (
                    self.project.clone(),
                    product.product.clone(),
                    config.clone(),
                    self.governance.clone(),
                );
                let destination = plan.destination_stream.clone();
                Arc::new(
                    move |before: &weft_core::arrow_schema::SchemaRef,
                          after: &weft_core::arrow_schema::SchemaRef,
                          output: &weft_core::arrow_schema::SchemaRef| {
                        governance.check_mid_stream(&product, &config, before, after)?;
                        crate::contract::check_mid_stream(
                            &project,
                            &product,
                            &config,
                            &destination,
                            output,
                        )
                    },
                )
            };
            let job = StreamJob {
                schema_check,
                metadata: crate::contract::metadata(&product.product, config, &plan),
                key: key.clone(),
                run_id: self.run_id.clone(),
                source_stream: plan.source_stream,
                destination_stream: plan.destination_stream,
                mappers: plan.mappers,
                source: product.source.clone(),
                destination: product.destination.clone(),
                state: self.state.clone(),
                from_scratch: self.options.full_refresh
                    && config.mode == weft_core::SyncMode::Incremental,
                set_to,
                commit_interval: self.options.commit_interval,
                channel_capacity: self.options.channel_capacity,
                in_flight: in_flight.clone(),
                progress: progress.clone(),
            };
            // A following CDC stream never ends, so under the limit it would hold its permit
            // for good and the streams queued behind it would never start: it takes none.
            let endless = self.options.follow && config.mode == weft_core::SyncMode::Cdc;
            let semaphore = (!endless).then(|| semaphore.clone());
            let cancel = cancel.clone();
            let progress = progress.clone();
            let key = key.clone();
            let span = info_span!("stream", product = %product.label, stream = %key.stream);
            tasks.push(tokio::spawn(
                async move {
                    let _permit = match semaphore {
                        Some(semaphore) => match semaphore.acquire_owned().await {
                            Ok(permit) => Some(permit),
                            Err(_) => {
                                return (key, progress, Err(StreamStop::Cancelled), Utc::now())
                            }
                        },
                        None => None,
                    };
                    let started = Utc::now();
                    let outcome = if cancel.is_cancelled() {
                        Err(StreamStop::Cancelled)
                    } else {
                        job.run(cancel).await
                    };
                    progress.set_phase(phase_of(&outcome));
                    (key, progress, outcome, started)
                }
                .instrument(span),
            ));
        }
    }

    /// Records how one stream ended in the state store; `None` for a task that panicked.
    fn record(
        &self,
        joined: Joined,
        logged: &mut Vec<String>,
    ) -> Result<Option<StreamReport>, EngineError> {
        let (key, progress, outcome, started) = match joined {
            Ok(v) => v,
            Err(join_error) => {
                // A panic in a connector: report it rather than take the run down.
                error!("a stream task panicked: {join_error}");
                return Ok(None);
            }
        };
        let (status, error) = match outcome {
            Ok(()) => (RunStatus::Succeeded, None),
            Err(StreamStop::Cancelled) => (RunStatus::Cancelled, None),
            Err(StreamStop::Failed(message)) => (RunStatus::Failed, Some(message)),
        };
        if let Some(e) = &error {
            if !logged.contains(e) {
                error!(stream = %key, "{e}");
                logged.push(e.clone());
            }
        }
        let write = self
            .products
            .iter()
            .flat_map(|p| &p.streams)
            .find(|(_, k, _)| *k == key)
            .map(|(config, _, _)| config.write.to_string())
            .unwrap_or_default();
        self.state.finish_stream(
            &self.run_id,
            &StreamRun {
                key: key.clone(),
                status,
                rows: progress.rows(),
                bytes: progress.bytes_written().unwrap_or(0),
                error: error.clone(),
                started_at: started,
                ended_at: Utc::now(),
            },
        )?;
        Ok(Some(StreamReport {
            stream: key.to_string(),
            status,
            rows: progress.rows(),
            committed_rows: progress.committed_rows(),
            write,
            off_schema_values: progress.off_schema(),
            bytes_written: progress.bytes_written(),
            arrow_bytes: progress.bytes(),
            seconds: progress.elapsed_secs(),
            read_seconds: progress.read_secs(),
            publish_seconds: progress.publish_secs(),
            commits: progress.commits(),
            error,
        }))
    }
}

/// Fails one stream without running it.
fn fail_one(
    key: &StreamKey,
    progress: &Arc<StreamProgress>,
    message: String,
    tasks: &mut Vec<tokio::task::JoinHandle<Outcome>>,
) {
    progress.set_phase(Phase::Failed);
    tasks.push(tokio::spawn(ready_outcome(
        key.clone(),
        progress.clone(),
        Err(StreamStop::Failed(message)),
    )));
}

/// Fails every stream of a product with one message, without running it.
fn fail_all(
    product: &ProductRun,
    message: &str,
    tasks: &mut Vec<tokio::task::JoinHandle<Outcome>>,
) {
    for (_, key, progress) in &product.streams {
        fail_one(key, progress, message.to_string(), tasks);
    }
}

fn phase_of(outcome: &Result<(), StreamStop>) -> Phase {
    match outcome {
        Ok(()) => Phase::Succeeded,
        Err(StreamStop::Cancelled) => Phase::Cancelled,
        Err(StreamStop::Failed(_)) => Phase::Failed,
    }
}

async fn ready_outcome(
    key: StreamKey,
    progress: Arc<StreamProgress>,
    outcome: Result<(), StreamStop>,
) -> Outcome {
    (key, progress, outcome, Utc::now())
}
