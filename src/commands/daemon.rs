//! `weft daemon`: runs every product on its schedule until SIGTERM or Ctrl-C (the scheduler
//! itself is the `weft-daemon` crate).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};
use weft_daemon::{Daemon, DaemonOptions};
use weft_state::SqliteStateStore;

use crate::exit::Failure;
use crate::logging;
use crate::registry::registry;

pub async fn run(project: Option<PathBuf>) -> Result<ExitCode, Failure> {
    let project = super::load_project(project)?;
    let grace = project.settings.daemon.shutdown_timeout;
    let scheduled = project
        .products
        .iter()
        .filter(|p| p.schedule.is_some() || p.policy.continuous)
        .count();
    let total = project.products.len();
    let store = SqliteStateStore::open(&project.settings.state_path).map_err(Failure::failed)?;
    // Registered before the daemon starts: a signal that comes during startup must not kill.
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            return Err(Failure::failed(format!("cannot listen for signals: {e}")))
        }
    };
    let options = DaemonOptions {
        redact: Box::new(|text: &str| logging::redact(text)),
        watch: true,
        on_reload: Box::new(|p: &weft_mesh::Project| logging::add_redactor(p.secrets.clone())),
    };
    let daemon =
        Daemon::start(project, registry(), Arc::new(store), options).map_err(Failure::failed)?;
    info!(
        pid = std::process::id(),
        "daemon started: {scheduled} of {total} product(s) scheduled"
    );
    let first = tokio::select! {
        _ = int.recv() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
    };
    info!(
        "{first} received: no new runs start; runs in flight get up to {}s to finish",
        grace.as_secs()
    );
    let shutdown = daemon.shutdown(grace);
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => {}
        _ = int.recv() => return Ok(stop_at_once("Ctrl-C")),
        _ = term.recv() => return Ok(stop_at_once("SIGTERM")),
    }
    Ok(ExitCode::SUCCESS)
}

/// A second signal: exit now, as a kill would (safe: the next start resumes from checkpoints).
fn stop_at_once(signal: &str) -> ExitCode {
    warn!("{signal} again: stopping at once; nothing uncommitted becomes visible and the next start resumes from the last commits");
    ExitCode::from(if signal == "SIGTERM" { 143 } else { 130 })
}
