//! Picking up project changes: SIGHUP, and changes of `weft.yaml` or `domains/` (notify,
//! debounced). A valid new configuration replaces the old one between runs (runs in flight
//! finish with what they were prepared with); an invalid one is logged and kept for
//! [`Daemon::config_error`], and the old one goes on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};
use weft_mesh::{Project, CONFIG_FILE, DOMAINS_DIR};

use crate::{key_of, runner, Daemon, DaemonError};

/// How long file changes settle before a reload (an editor writes a file in several steps).
const DEBOUNCE: Duration = Duration::from_millis(300);

pub(crate) fn spawn(daemon: Daemon, watch: bool) -> Result<(), DaemonError> {
    let mut hangup =
        signal(SignalKind::hangup()).map_err(|e| DaemonError::Watch(format!("SIGHUP: {e}")))?;
    let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel::<()>();
    let root = daemon.project().root.clone();
    let watcher = if watch {
        let filter_root = root.clone();
        let mut w = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
            // Reading the files (our own reload) is an access: only changes count.
            if let Ok(event) = result {
                let change = matches!(
                    event.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                );
                if change && event.paths.iter().any(|p| is_project_file(&filter_root, p)) {
                    let _ = tx.send(());
                }
            }
        })
        .map_err(|e| DaemonError::Watch(e.to_string()))?;
        w.watch(&root, RecursiveMode::NonRecursive)
            .map_err(|e| DaemonError::Watch(format!("{}: {e}", root.display())))?;
        let domains = root.join(DOMAINS_DIR);
        if domains.is_dir() {
            w.watch(&domains, RecursiveMode::Recursive)
                .map_err(|e| DaemonError::Watch(format!("{}: {e}", domains.display())))?;
        }
        Some(w)
    } else {
        None
    };
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    info!("SIGHUP: reloading the project");
                    reload(&daemon);
                }
                Some(()) = changes.recv() => {
                    // Debounce: an editor writes a file in several steps.
                    tokio::time::sleep(DEBOUNCE).await;
                    while changes.try_recv().is_ok() {}
                    info!("project files changed: reloading the project");
                    reload(&daemon);
                }
                _ = daemon.shared.stopping.cancelled() => break,
            }
        }
    });
    Ok(())
}

/// `weft.yaml` or anything under `domains/` (not the state database, the lake, locks).
fn is_project_file(root: &Path, path: &Path) -> bool {
    let config: PathBuf = root.join(CONFIG_FILE);
    path == config || path.starts_with(root.join(DOMAINS_DIR))
}

/// Loads the project again and swaps it in if valid.
pub(crate) fn reload(daemon: &Daemon) {
    let old = daemon.project();
    let new = match Project::load(&old.root) {
        Ok(project) => project,
        Err(e) => {
            let message = (daemon.shared.redact)(&e.to_string());
            error!("configuration change rejected, the previous configuration keeps running: {message}");
            *daemon
                .shared
                .config_error
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(message);
            return;
        }
    };
    (daemon.shared.on_reload)(&new);
    let now = Utc::now();
    let mut new_followers = Vec::new();
    {
        let mut slots = daemon.slots();
        for product in &new.products {
            let key = key_of(product);
            let before = old.product(key.domain.as_str(), key.product.as_str());
            let slot = slots.entry(key.clone()).or_default();
            if before.is_none_or(|b| b.schedule != product.schedule) {
                slot.next_run = product.schedule.as_ref().and_then(|s| s.next_after(now));
            }
            if product.policy.continuous && !before.is_some_and(|b| b.policy.continuous) {
                new_followers.push(key);
            }
        }
        slots.retain(|k, s| {
            new.product(k.domain.as_str(), k.product.as_str()).is_some() || s.running.is_some()
        });
    }
    let count = new.products.len();
    *daemon
        .shared
        .project
        .write()
        .unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
    *daemon
        .shared
        .config_error
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = None;
    for key in new_followers {
        runner::follow(daemon, key);
    }
    info!("configuration reloaded: {count} product(s)");
    daemon.shared.wake.notify_one();
}
