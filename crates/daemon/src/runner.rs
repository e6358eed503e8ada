//! One product's run under the daemon: single-flight, the global limit, the product's lock,
//! the engine run, and retries with exponential backoff and jitter; and followers
//! (`continuous: true`), restarted with backoff when they end.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};
use weft_api::StreamVolume;
use weft_engine::{PreparedRun, RunOptions};
use weft_mesh::{Overlap, Selector};
use weft_state::{ProductKey, RunStart, RunStatus, Trigger};

use crate::{ControlError, Daemon, Triggered};

/// How one attempt ended.
enum Outcome {
    Succeeded,
    Failed(String),
    Cancelled,
    /// Not run: recorded in the history as skipped.
    Skipped,
}

/// Accepts a trigger of `key`: starts a run, or (single-flight) records the trigger as skipped
/// or queues it when the product is busy.
pub(crate) fn fire(
    daemon: &Daemon,
    key: &ProductKey,
    trigger: Trigger,
    due: Option<DateTime<Utc>>,
    stream: Option<String>,
) -> Result<Triggered, ControlError> {
    if daemon.is_stopping() {
        return Err(ControlError::ShuttingDown);
    }
    let project = daemon.project();
    let product = project
        .product(key.domain.as_str(), key.product.as_str())
        .ok_or(ControlError::UnknownProduct)?;
    let mut slots = daemon.slots();
    let slot = slots.get_mut(key).ok_or(ControlError::UnknownProduct)?;
    if let Some(running) = slot.running.clone() {
        if product.policy.overlap == Overlap::Queue && !slot.queued {
            slot.queued = true;
            info!(product = %key, run_id = %running, "trigger queued: runs when run {running} ends");
            return Ok(Triggered::AlreadyRunning { run_id: running });
        }
        drop(slots);
        let run = RunStart {
            run_id: weft_engine::run::new_run_id(),
            selectors: vec![key.to_string()],
            started_at: Utc::now(),
            products: vec![key.clone()],
            trigger,
            scheduled_at: due,
        };
        let reason = format!("skipped: product {key} was still running (run {running})");
        warn!(product = %key, run_id = %run.run_id, "{reason}");
        daemon
            .shared
            .state
            .record_skipped(&run, &reason)
            .map_err(|e| ControlError::Other(e.to_string()))?;
        return Ok(Triggered::AlreadyRunning { run_id: running });
    }
    let prepared = prepare(daemon, key, trigger, due, stream.as_deref(), false)
        .map_err(ControlError::Other)?;
    let run_id = prepared.run_id().to_string();
    slot.running = Some(run_id.clone());
    slot.running_since = Some(Utc::now());
    drop(slots);
    let d = daemon.clone();
    let key = key.clone();
    let span = info_span!("product", product = %key);
    daemon.shared.tasks.spawn(
        async move {
            run_with_retries(&d, &key, prepared, trigger, due, stream).await;
            let queued = {
                let mut slots = d.slots();
                match slots.get_mut(&key) {
                    Some(slot) => {
                        slot.running = None;
                        slot.running_since = None;
                        std::mem::take(&mut slot.queued)
                    }
                    None => false,
                }
            };
            if queued && !d.is_stopping() {
                let _ = fire(&d, &key, Trigger::Api, None, None);
            }
            d.shared.wake.notify_one();
        }
        .instrument(span),
    );
    Ok(Triggered::Started { run_id })
}

/// The product's runs for one trigger: the first attempt, then retries while it fails.
async fn run_with_retries(
    daemon: &Daemon,
    key: &ProductKey,
    first: PreparedRun,
    trigger: Trigger,
    due: Option<DateTime<Utc>>,
    stream: Option<String>,
) {
    let retries = daemon
        .project()
        .product(key.domain.as_str(), key.product.as_str())
        .map_or(0, |p| p.policy.retries);
    let mut delays = backoff(daemon, retries as usize);
    let mut next = Some((first, trigger));
    while let Some((run, trigger)) = next.take() {
        let run_id = run.run_id().to_string();
        set_running(daemon, key, &run_id);
        let cancel = daemon.shared.abort.child_token();
        let outcome = attempt(daemon, key, run, trigger, due, cancel).await;
        if !matches!(outcome, Outcome::Skipped) && has_cdc(daemon, key) {
            crate::lag::probe(daemon, key).await;
        }
        match outcome {
            Outcome::Succeeded => record_success(daemon, key),
            Outcome::Cancelled | Outcome::Skipped => {}
            Outcome::Failed(message) => {
                let failures = record_failure(daemon, key, &message);
                let delay = delays.next().filter(|_| !daemon.is_stopping());
                let Some(delay) = delay else {
                    mark_unhealthy(daemon, key, &run_id, failures, retries);
                    break;
                };
                warn!(
                    run_id = %run_id,
                    "run failed ({failures} failure(s) in a row); retrying in {:.1}s",
                    delay.as_secs_f64()
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = daemon.shared.stopping.cancelled() => break,
                }
                match prepare(daemon, key, Trigger::Retry, due, stream.as_deref(), false) {
                    Ok(run) => next = Some((run, Trigger::Retry)),
                    Err(message) => {
                        let failures = record_failure(daemon, key, &message);
                        mark_unhealthy(daemon, key, &run_id, failures, retries);
                    }
                }
            }
        }
    }
}

/// A long-lived follower (`continuous: true`): runs with `follow` until shutdown, restarted
/// with backoff when it ends or fails.
pub(crate) fn follow(daemon: &Daemon, key: ProductKey) {
    let d = daemon.clone();
    let span = info_span!("product", product = %key);
    daemon.shared.tasks.spawn(
        async move {
            let mut delays = backoff(&d, usize::MAX);
            while !d.is_stopping() {
                let outcome = match prepare(&d, &key, Trigger::Follow, None, None, true) {
                    Ok(run) => {
                        let run_id = run.run_id().to_string();
                        set_running(&d, &key, &run_id);
                        // A follower never ends by itself: shutdown stops it at once (what it
                        // committed stays; the rest is dropped and read again).
                        let cancel = d.shared.stopping.child_token();
                        let started = std::time::Instant::now();
                        let outcome = attempt(&d, &key, run, Trigger::Follow, None, cancel).await;
                        if started.elapsed() > Duration::from_secs(60) {
                            delays = backoff(&d, usize::MAX);
                        }
                        outcome
                    }
                    Err(message) => Outcome::Failed(message),
                };
                if d.is_stopping() {
                    break;
                }
                if let Outcome::Failed(message) = &outcome {
                    record_failure(&d, &key, message);
                }
                let delay = delays.next().unwrap_or(Duration::from_secs(60));
                warn!("follower ended; restarting in {:.1}s", delay.as_secs_f64());
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = d.shared.stopping.cancelled() => break,
                }
            }
            if let Some(slot) = d.slots().get_mut(&key) {
                slot.running = None;
                slot.running_since = None;
            }
        }
        .instrument(span),
    );
}

/// One attempt: a slot of the global limit, the product's lock, the engine run.
async fn attempt(
    daemon: &Daemon,
    key: &ProductKey,
    run: PreparedRun,
    trigger: Trigger,
    due: Option<DateTime<Utc>>,
    cancel: CancellationToken,
) -> Outcome {
    let shared = &daemon.shared;
    let run_id = run.run_id().to_string();
    let skip = |reason: String| {
        warn!(run_id = %run_id, "{reason}");
        let start = RunStart {
            run_id: run_id.clone(),
            selectors: vec![key.to_string()],
            started_at: Utc::now(),
            products: vec![key.clone()],
            trigger,
            scheduled_at: due,
        };
        if let Err(e) = shared.state.record_skipped(&start, &reason) {
            error!(run_id = %run_id, "cannot record the skipped run: {e}");
        }
        Outcome::Skipped
    };
    let _permit = tokio::select! {
        permit = shared.limit.acquire() => match permit {
            Ok(p) => p,
            Err(_) => return skip("skipped: the daemon is shutting down".into()),
        },
        _ = shared.stopping.cancelled() => {
            return skip("skipped: the daemon was shutting down before the run could start".into())
        }
    };
    let project = daemon.project();
    let holder = weft_engine::LockHolder {
        command: "weft daemon".into(),
        pid: std::process::id(),
        run_id: run_id.clone(),
    };
    let _lock = match weft_engine::lock_products(&project, std::slice::from_ref(key), &holder) {
        Ok(lock) => lock,
        Err(e) => return skip(format!("skipped: {e}")),
    };
    if let Err(e) = shared
        .state
        .mark_interrupted_product_runs(std::slice::from_ref(key), Utc::now())
    {
        return Outcome::Failed(format!("state store: {e}"));
    }
    let product = crate::status::product_ref(key);
    if let Some(due) = due {
        let lag = (Utc::now() - due).num_milliseconds() as f64 / 1000.0;
        info!(run_id = %run_id, trigger = %trigger, lag_seconds = lag, "product run starting");
        // Scheduler lag is the scheduler's: a retry or a misfire starts late by design.
        if trigger == Trigger::Schedule {
            shared.metrics.scheduler_lag(&product, lag);
        }
    } else {
        info!(run_id = %run_id, trigger = %trigger, "product run starting");
    }
    shared.metrics.run_started(&product);
    let started = std::time::Instant::now();
    let result = run.execute(cancel).await;
    let (status, volumes) = match &result {
        Ok(report) => (report.status, volumes(report)),
        Err(_) => (RunStatus::Failed, Vec::new()),
    };
    shared
        .metrics
        .run_finished(&product, status, started.elapsed(), &volumes);
    match result {
        Ok(report) => match report.status {
            RunStatus::Succeeded => Outcome::Succeeded,
            RunStatus::Cancelled => Outcome::Cancelled,
            _ => Outcome::Failed(
                report
                    .streams
                    .iter()
                    .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.stream)))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Rows and bytes per stream of a finished run, for the metrics.
fn volumes(report: &weft_engine::RunReport) -> Vec<StreamVolume> {
    report
        .streams
        .iter()
        .map(|s| StreamVolume {
            // `domain/product/stream`: the labels carry domain and product already.
            stream: s.stream.rsplit('/').next().unwrap_or(&s.stream).to_string(),
            rows: s.rows,
            // Bytes the destinations made durable (0 where a destination does not count).
            bytes: s.bytes_written.unwrap_or(0),
        })
        .collect()
}

/// A prepared run of the product (or one stream of it) on the configuration loaded now.
fn prepare(
    daemon: &Daemon,
    key: &ProductKey,
    trigger: Trigger,
    due: Option<DateTime<Utc>>,
    stream: Option<&str>,
    follow: bool,
) -> Result<PreparedRun, String> {
    let project = daemon.project();
    let text = match stream {
        Some(s) => format!("{key}/{s}"),
        None => key.to_string(),
    };
    let selector = Selector::parse(&text).map_err(|e| e.to_string())?;
    let selections = project.select(&[selector]).map_err(|e| e.to_string())?;
    let options = RunOptions {
        follow,
        trigger,
        scheduled_at: due,
        ..RunOptions::from_project(&project)
    };
    weft_engine::prepare(
        &project,
        &selections,
        vec![text],
        &daemon.shared.registry,
        daemon.shared.state.clone(),
        options,
    )
    .map_err(|e| (daemon.shared.redact)(&e.to_string()))
}

fn backoff(daemon: &Daemon, times: usize) -> impl Iterator<Item = Duration> {
    let settings = daemon.project().settings.daemon.clone();
    ExponentialBuilder::default()
        .with_min_delay(settings.retry_backoff)
        .with_max_delay(settings.retry_backoff_max)
        .with_max_times(times)
        .with_jitter()
        .build()
}

fn has_cdc(daemon: &Daemon, key: &ProductKey) -> bool {
    daemon
        .project()
        .product(key.domain.as_str(), key.product.as_str())
        .is_some_and(crate::lag::has_cdc)
}

fn set_running(daemon: &Daemon, key: &ProductKey, run_id: &str) {
    if let Some(slot) = daemon.slots().get_mut(key) {
        if slot.running.as_deref() != Some(run_id) {
            slot.running = Some(run_id.to_string());
            slot.running_since = Some(Utc::now());
        }
    }
}

fn record_success(daemon: &Daemon, key: &ProductKey) {
    if let Some(slot) = daemon.slots().get_mut(key) {
        slot.consecutive_failures = 0;
        slot.healthy = true;
        slot.last_error = None;
    }
}

fn record_failure(daemon: &Daemon, key: &ProductKey, message: &str) -> u32 {
    let message = (daemon.shared.redact)(message);
    let mut slots = daemon.slots();
    match slots.get_mut(key) {
        Some(slot) => {
            slot.consecutive_failures += 1;
            slot.last_error = Some(message);
            slot.consecutive_failures
        }
        None => 0,
    }
}

/// `run_id` is the last failed attempt's.
fn mark_unhealthy(daemon: &Daemon, key: &ProductKey, run_id: &str, failures: u32, retries: u32) {
    if let Some(slot) = daemon.slots().get_mut(key) {
        slot.healthy = false;
    }
    error!(
        run_id = %run_id,
        "product marked unhealthy: {failures} failure(s) in a row ({retries} retries); the next \
         attempt is at its next scheduled time or an explicit trigger"
    );
}
