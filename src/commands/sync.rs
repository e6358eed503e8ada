//! `weft sync run|status|history`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;
use weft_engine::{prepare, RunOptions};
use weft_mesh::{Project, Selector};
use weft_state::{RunStatus, SqliteStateStore, StateStore};

use crate::cli::{OutputFormat, SyncCommand};
use crate::exit::Failure;
use crate::output;
use crate::registry::registry;

pub async fn run(project: Option<PathBuf>, cmd: SyncCommand) -> Result<ExitCode, Failure> {
    match cmd {
        SyncCommand::Run {
            selectors,
            no_progress,
            format,
            follow,
        } => sync_run(project, selectors, no_progress, format, follow).await,
        SyncCommand::Reset { selectors, format } => sync_reset(project, selectors, format).await,
        SyncCommand::Status { format } => {
            let project = super::load_project(project)?;
            let state = open_state(&project)?;
            let selections = project.select(&[]).map_err(Failure::config)?;
            let lags = weft_engine::cdc_lags(&project, &selections, &registry())
                .await
                .map_err(Failure::config)?;
            output::status(&project, state.as_ref(), &lags, format).map_err(Failure::failed)?;
            Ok(ExitCode::SUCCESS)
        }
        SyncCommand::History { limit, format } => {
            let project = super::load_project(project)?;
            let state = open_state(&project)?;
            let runs = state.runs(limit).map_err(Failure::failed)?;
            output::history(&runs, format);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open_state(project: &Project) -> Result<Arc<dyn StateStore>, Failure> {
    let store = SqliteStateStore::open(&project.settings.state_path).map_err(Failure::failed)?;
    Ok(Arc::new(store))
}

/// Only one sync at a time per project: two would race on the same product tables.
fn lock_project(project: &Project) -> Result<File, Failure> {
    let dir = project
        .settings
        .state_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| project.root.join(".weft"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::failed(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join("sync.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Failure::failed(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Failure::failed(format!(
            "another `weft sync run` is running in this project (lock {}); wait for it to end",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Failure::failed(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// The products and streams `selectors` name (all when empty).
fn select<'p>(
    project: &'p Project,
    selectors: &[String],
) -> Result<Vec<weft_mesh::Selection<'p>>, Failure> {
    let parsed = selectors
        .iter()
        .map(|s| Selector::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::config)?;
    project.select(&parsed).map_err(Failure::config)
}

async fn sync_reset(
    project: Option<PathBuf>,
    selectors: Vec<String>,
    format: OutputFormat,
) -> Result<ExitCode, Failure> {
    let project = super::load_project(project)?;
    let selections = select(&project, &selectors)?;
    let _lock = lock_project(&project)?;
    let state = open_state(&project)?;
    let reports = weft_engine::reset(&project, &selections, &registry(), state)
        .await
        .map_err(Failure::config)?;
    output::reset(&reports, format);
    Ok(if reports.iter().all(|r| r.errors.is_empty()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn sync_run(
    project: Option<PathBuf>,
    selectors: Vec<String>,
    no_progress: bool,
    format: OutputFormat,
    follow: bool,
) -> Result<ExitCode, Failure> {
    let project = super::load_project(project)?;
    let selections = select(&project, &selectors)?;
    if selections.is_empty() {
        return Err(Failure::config(
            "the project has no products; add one under domains/<domain>/<product>.yaml",
        ));
    }

    let _lock = lock_project(&project)?;
    let state = open_state(&project)?;
    let interrupted = state
        .mark_interrupted_runs(chrono::Utc::now())
        .map_err(Failure::failed)?;
    if interrupted > 0 {
        warn!("{interrupted} earlier run(s) were interrupted (killed); resuming from their last committed checkpoints");
    }

    let registry = registry();
    let options = RunOptions {
        follow,
        ..RunOptions::from_project(&project)
    };
    let prepared = prepare(&project, &selections, selectors, &registry, state, options)
        .map_err(Failure::config)?;

    let cancel = CancellationToken::new();
    let ctrl_c = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("weft: interrupted; stopping streams and dropping uncommitted data…");
                cancel.cancel();
            }
        })
    };
    let display = output::ProgressDisplay::start(prepared.progress(), !no_progress);
    let report = prepared.execute(cancel.clone()).await;
    display.stop().await;
    ctrl_c.abort();
    let report = report.map_err(Failure::failed)?;

    output::report(&report, format);
    Ok(match report.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Cancelled => ExitCode::from(130),
        _ => ExitCode::from(1),
    })
}
