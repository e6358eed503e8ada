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

pub async fn run(
    project: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
) -> Result<ExitCode, Failure> {
    let project = super::load_project(project)?;
    let grace = project.settings.daemon.shutdown_timeout;
    let scheduled = project
        .products
        .iter()
        .filter(|p| p.schedule.is_some() || p.policy.continuous)
        .count();
    let total = project.products.len();
    let store: Arc<dyn weft_state::StateStore> =
        Arc::new(SqliteStateStore::open(&project.settings.state_path).map_err(Failure::failed)?);
    // Bound before the scheduler starts, so a taken port fails the start, not a run later.
    let listener = match listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Failure::failed(format!(
                "cannot listen on {addr}: {e}; pick another --listen address"
            ))
        })?),
        None => None,
    };
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
    let metrics = Arc::new(weft_api::Metrics::new());
    let options = DaemonOptions {
        redact: Box::new(|text: &str| logging::redact(text)),
        watch: true,
        on_reload: Box::new(|p: &weft_mesh::Project| logging::add_redactor(p.secrets.clone())),
        metrics: metrics.clone(),
        logs: Some(weft_daemon::logs::capture(Box::new(|text: &str| {
            logging::redact(text)
        }))),
    };
    let daemon =
        Daemon::start(project, registry(), store.clone(), options).map_err(Failure::failed)?;
    let http_stop = tokio_util::sync::CancellationToken::new();
    let http = listener.map(|listener| {
        let addr = listener.local_addr().ok();
        if let Some(addr) = addr {
            info!("HTTP API and catalog page on http://{addr}/ (metrics: /metrics)");
        }
        let control: Arc<dyn weft_api::Control> = Arc::new(daemon.clone());
        let serve = weft_api::serve(listener, control, store.clone(), metrics, http_stop.clone());
        tokio::spawn(async move {
            if let Err(e) = serve.await {
                warn!("the HTTP server stopped: {e}");
            }
        })
    });
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
    // The API answers until the runs are done (health, status), then stops with the daemon.
    let shutdown = async {
        daemon.shutdown(grace).await;
        http_stop.cancel();
        if let Some(http) = http {
            let _ = http.await;
        }
    };
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
