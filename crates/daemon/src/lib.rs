//! weft's scheduler (`weft daemon`): every product on its schedule, through the engine.
//!
//! - [`Daemon`]: the running scheduler and the handle others (the CLI, the HTTP API) use to
//!   look at it and steer it: statuses, triggers, pause and resume, the last rejected reload;
//! - `scheduler`: the one loop that finds due products, misfires on start, followers;
//! - `runner`: one product's run: its lock, the engine run, retries with backoff;
//! - `reload`: SIGHUP and file changes, a new configuration swapped in between runs;
//! - [`logs`]: each run's log lines, kept bounded and redacted for the API;
//! - `lag`: CDC replication lag, asked of the sources for the metrics.
//!
//! It reports to the HTTP layer's [`weft_api::Metrics`] as runs start and end (rows, bytes,
//! duration, status, runs in flight, scheduler lag, CDC lag).
//!
//! Single-flight: a product is *busy* from the moment a trigger is accepted until its run (and
//! its retries) ended; a trigger meanwhile is recorded in the history as `skipped` (or, with
//! `overlap: queue`, runs once afterwards). A global semaphore bounds the products running at
//! once (`daemon.max_concurrent_runs`). The per-product lock files of the engine keep a
//! person's `weft sync run` of the same product out while the daemon runs it, and the other
//! way round.

mod lag;
pub mod logs;
mod reload;
mod runner;
mod scheduler;
mod status;

pub use status::{ControlError, ProductRef, ProductStatus, Scheduling, Triggered};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weft_api::Metrics;
use weft_engine::Registry;
use weft_mesh::Project;
use weft_state::{ProductKey, StateStore, Trigger};

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("state store: {0}")]
    State(#[from] weft_state::StateError),
    #[error("cannot watch the project's files for changes: {0}")]
    Watch(String),
}

/// What the daemon knows of one product between runs.
#[derive(Debug, Clone)]
struct Slot {
    next_run: Option<DateTime<Utc>>,
    paused: bool,
    /// The run in flight (or being retried).
    running: Option<String>,
    /// When the run in flight was accepted (before it may wait for a slot of the limit).
    running_since: Option<DateTime<Utc>>,
    /// A trigger waits for the current run to end (`overlap: queue`).
    queued: bool,
    consecutive_failures: u32,
    healthy: bool,
    last_error: Option<String>,
}

impl Default for Slot {
    /// A product not yet run is healthy.
    fn default() -> Self {
        Self {
            next_run: None,
            paused: false,
            running: None,
            running_since: None,
            queued: false,
            consecutive_failures: 0,
            healthy: true,
            last_error: None,
        }
    }
}

struct Shared {
    project: RwLock<Arc<Project>>,
    registry: Arc<Registry>,
    state: Arc<dyn StateStore>,
    slots: Mutex<BTreeMap<ProductKey, Slot>>,
    config_error: Mutex<Option<String>>,
    /// Bounds the products running at once.
    limit: Semaphore,
    /// Stops scheduling (first step of shutdown).
    stopping: CancellationToken,
    /// Cancels runs in flight (after the shutdown deadline).
    abort: CancellationToken,
    tasks: TaskTracker,
    /// Wakes the scheduler loop: a trigger, a reload, a run that ended.
    wake: Notify,
    /// Redacts secrets from errors kept in statuses.
    redact: Box<dyn Fn(&str) -> String + Send + Sync>,
    on_reload: Box<dyn Fn(&Project) + Send + Sync>,
    metrics: Arc<Metrics>,
    logs: Option<Arc<logs::RunLogStore>>,
}

/// The running scheduler; cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    shared: Arc<Shared>,
}

/// How the daemon was started.
pub struct DaemonOptions {
    /// Redacts known secrets from error texts kept in statuses (the logs redact on their own).
    pub redact: Box<dyn Fn(&str) -> String + Send + Sync>,
    /// Watch the project files for changes (SIGHUP always reloads).
    pub watch: bool,
    /// Called with each valid new configuration before it is swapped in (to register its
    /// secrets for redaction).
    pub on_reload: Box<dyn Fn(&Project) + Send + Sync>,
    /// Where runs are reported as they start and end (served at `/metrics`).
    pub metrics: Arc<Metrics>,
    /// The run logs kept for the API ([`logs::capture`]), if any.
    pub logs: Option<Arc<logs::RunLogStore>>,
}

impl Daemon {
    /// Starts scheduling `project`'s products: marks runs of killed processes interrupted,
    /// handles misfires, starts followers, then runs products when due.
    pub fn start(
        project: Project,
        registry: Registry,
        state: Arc<dyn StateStore>,
        options: DaemonOptions,
    ) -> Result<Self, DaemonError> {
        let limit = project.settings.daemon.max_concurrent_runs.max(1);
        let shared = Arc::new(Shared {
            project: RwLock::new(Arc::new(project)),
            registry: Arc::new(registry),
            state,
            slots: Mutex::new(BTreeMap::new()),
            config_error: Mutex::new(None),
            limit: Semaphore::new(limit),
            stopping: CancellationToken::new(),
            abort: CancellationToken::new(),
            tasks: TaskTracker::new(),
            wake: Notify::new(),
            redact: options.redact,
            on_reload: options.on_reload,
            metrics: options.metrics,
            logs: options.logs,
        });
        let daemon = Self { shared };
        daemon.recover_interrupted()?;
        daemon.plan_start()?;
        scheduler::spawn(daemon.clone());
        reload::spawn(daemon.clone(), options.watch)?;
        lag::spawn(daemon.clone());
        Ok(daemon)
    }

    /// The project as currently loaded.
    pub fn project(&self) -> Arc<Project> {
        self.shared
            .project
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The scheduler's view of each product now.
    pub fn statuses(&self) -> Vec<ProductStatus> {
        let project = self.project();
        let slots = self.slots();
        project
            .products
            .iter()
            .map(|p| {
                let key = key_of(p);
                let slot = slots.get(&key).cloned().unwrap_or_default();
                ProductStatus {
                    product: status::product_ref(&key),
                    scheduling: Scheduling {
                        next_run: slot.next_run,
                        paused: slot.paused,
                        healthy: slot.healthy,
                        running: slot.running,
                        running_since: slot.running_since,
                        consecutive_failures: slot.consecutive_failures,
                        last_error: slot.last_error,
                        ..Scheduling::idle(p)
                    },
                }
            })
            .collect()
    }

    /// Starts a run of a product (all its streams, or one) unless one is running or its
    /// schedule is paused (a paused product runs neither on schedule nor on request).
    pub async fn trigger(
        &self,
        product: &ProductRef,
        stream: Option<&str>,
    ) -> Result<Triggered, ControlError> {
        if self.shared.stopping.is_cancelled() {
            return Err(ControlError::ShuttingDown);
        }
        let key = self.known(product)?;
        if self.slots().get(&key).is_some_and(|s| s.paused) {
            return Err(ControlError::Paused);
        }
        if let Some(stream) = stream {
            let project = self.project();
            let p = project
                .product(&product.domain, &product.product)
                .ok_or(ControlError::UnknownProduct)?;
            if p.stream(stream).is_none() {
                return Err(ControlError::UnknownStream);
            }
        }
        runner::fire(self, &key, Trigger::Api, None, stream.map(str::to_string))
    }

    pub async fn pause(&self, product: &ProductRef) -> Result<(), ControlError> {
        self.set_paused(product, true)
    }

    pub async fn resume(&self, product: &ProductRef) -> Result<(), ControlError> {
        self.set_paused(product, false)
    }

    /// The error of the last rejected configuration reload, if the running one is older.
    pub fn config_error(&self) -> Option<String> {
        self.shared
            .config_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reloads the project now (what SIGHUP and file changes do).
    pub fn reload(&self) {
        reload::reload(self);
    }

    /// Graceful shutdown: stop scheduling, let runs in flight go on for up to `grace`, then
    /// cancel them (their writers abort: nothing uncommitted becomes visible) and wait for
    /// them to record how they ended.
    pub async fn shutdown(&self, grace: Duration) {
        let shared = &self.shared;
        shared.stopping.cancel();
        shared.wake.notify_waiters();
        shared.tasks.close();
        let running: Vec<String> = self
            .slots()
            .iter()
            .filter_map(|(k, s)| s.running.as_ref().map(|r| format!("{k} (run {r})")))
            .collect();
        if !running.is_empty() {
            tracing::info!(
                "shutting down: waiting up to {} for {} to finish",
                humantime_secs(grace),
                running.join(", ")
            );
        }
        if tokio::time::timeout(grace, shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown deadline passed: cancelling the runs still in flight (their \
                 uncommitted data is dropped; the next start resumes from their last commits)"
            );
            shared.abort.cancel();
            shared.tasks.wait().await;
        }
        tracing::info!("daemon stopped");
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping.is_cancelled()
    }

    fn set_paused(&self, product: &ProductRef, paused: bool) -> Result<(), ControlError> {
        let key = self.known(product)?;
        if let Some(slot) = self.slots().get_mut(&key) {
            slot.paused = paused;
        }
        tracing::info!(product = %key, "schedule {}", if paused { "paused" } else { "resumed" });
        self.shared.wake.notify_one();
        Ok(())
    }

    fn known(&self, product: &ProductRef) -> Result<ProductKey, ControlError> {
        self.project()
            .product(&product.domain, &product.product)
            .map(key_of)
            .ok_or(ControlError::UnknownProduct)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<ProductKey, Slot>> {
        self.shared.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs left `running` by a killed process are marked interrupted: for every product
    /// whose lock is free (a live `weft sync run` holds its own).
    fn recover_interrupted(&self) -> Result<(), DaemonError> {
        let project = self.project();
        let holder = weft_engine::LockHolder {
            command: "weft daemon".into(),
            pid: std::process::id(),
            run_id: "startup".into(),
        };
        let mut marked = 0;
        for product in &project.products {
            let key = key_of(product);
            if let Ok(_lock) =
                weft_engine::lock_products(&project, std::slice::from_ref(&key), &holder)
            {
                marked += self
                    .shared
                    .state
                    .mark_interrupted_product_runs(std::slice::from_ref(&key), Utc::now())?;
            }
        }
        if marked > 0 {
            tracing::warn!(
                "{marked} earlier run(s) were interrupted (killed); their products resume from \
                 their last committed checkpoints"
            );
        }
        Ok(())
    }

    /// Slots for every product: next runs, misfires, followers.
    fn plan_start(&self) -> Result<(), DaemonError> {
        let project = self.project();
        let keys: Vec<ProductKey> = project.products.iter().map(key_of).collect();
        let last: BTreeMap<ProductKey, weft_state::ProductLastRun> = self
            .shared
            .state
            .product_last_runs(&keys)?
            .into_iter()
            .map(|l| (l.product.clone(), l))
            .collect();
        let now = Utc::now();
        let mut misfired = Vec::new();
        {
            let mut slots = self.slots();
            for product in &project.products {
                let key = key_of(product);
                let mut slot = Slot::default();
                if let Some(schedule) = &product.schedule {
                    slot.next_run = schedule.next_after(now);
                    if let Some(last) = last.get(&key) {
                        let last_due = last.scheduled_at.unwrap_or(last.started_at);
                        if let Some(missed) = schedule.next_after(last_due).filter(|t| *t <= now) {
                            misfired.push((key.clone(), missed, product.policy.misfire));
                        }
                    }
                }
                slots.insert(key, slot);
            }
        }
        for (key, missed, policy) in misfired {
            match policy {
                weft_mesh::Misfire::RunOnce => {
                    tracing::info!(product = %key, "a scheduled run ({missed}) was missed while the daemon was down: running once now");
                    let _ = runner::fire(self, &key, Trigger::Misfire, Some(missed), None);
                }
                weft_mesh::Misfire::Skip => {
                    tracing::info!(product = %key, "a scheduled run ({missed}) was missed while the daemon was down: skipped (`misfire: skip`)");
                }
            }
        }
        for product in project.products.iter().filter(|p| p.policy.continuous) {
            runner::follow(self, key_of(product));
        }
        Ok(())
    }
}

fn key_of(product: &weft_mesh::Product) -> ProductKey {
    ProductKey {
        domain: product.domain.clone(),
        product: product.name.clone(),
    }
}

fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64().round())
}

/// The daemon as the HTTP layer reaches it.
#[async_trait::async_trait]
impl weft_api::Control for Daemon {
    fn project(&self) -> Arc<Project> {
        Daemon::project(self)
    }

    fn statuses(&self) -> Vec<ProductStatus> {
        Daemon::statuses(self)
    }

    async fn trigger(
        &self,
        product: &ProductRef,
        stream: Option<&str>,
    ) -> Result<Triggered, ControlError> {
        Daemon::trigger(self, product, stream).await
    }

    async fn pause(&self, product: &ProductRef) -> Result<(), ControlError> {
        Daemon::pause(self, product).await
    }

    async fn resume(&self, product: &ProductRef) -> Result<(), ControlError> {
        Daemon::resume(self, product).await
    }

    fn config_error(&self) -> Option<String> {
        Daemon::config_error(self)
    }

    fn run_logs(&self, run_id: &str) -> Option<weft_api::RunLogs> {
        self.shared.logs.as_ref()?.get(run_id)
    }
}
