//! `weft sync run|reset|status|history`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weft_engine::{prepare, RunOptions};
use weft_mesh::{Project, Selector};
use weft_state::{RunStatus, SqliteStateStore, StateStore};

use crate::cli::{OutputFormat, SyncCommand};
use crate::exit::Failure;
use crate::output;
use crate::registry::registry;
use crate::signals::Interrupts;

pub async fn run(
    project: Option<PathBuf>,
    cmd: SyncCommand,
    quiet: bool,
) -> Result<ExitCode, Failure> {
    match cmd {
        SyncCommand::Run {
            selectors,
            no_progress,
            format,
            follow,
            dry_run,
            full_refresh,
        } => {
            if dry_run {
                return sync_plan(project, selectors, format);
            }
            let flags = RunFlags {
                no_progress,
                format,
                follow,
                quiet,
                full_refresh,
            };
            sync_run(project, selectors, flags).await
        }
        SyncCommand::Reset {
            selectors,
            format,
            yes,
        } => sync_reset(project, selectors, format, yes).await,
        SyncCommand::Status { format } => {
            let project = super::load_project(project)?;
            let state = existing_state(&project)?;
            let selections = project.select(&[]).map_err(Failure::config)?;
            let lags = weft_engine::cdc_lags(&project, &selections, &registry())
                .await
                .map_err(Failure::config)?;
            output::status(&project, state.as_deref(), &lags, format).map_err(Failure::failed)?;
            Ok(ExitCode::SUCCESS)
        }
        SyncCommand::History { limit, format } => {
            let project = super::load_project(project)?;
            let (runs, audits) = match existing_state(&project)? {
                Some(state) => {
                    let runs = state.runs(limit).map_err(Failure::failed)?;
                    let mut audits = Vec::with_capacity(runs.len());
                    for run in &runs {
                        audits.push(state.policy_audits(&run.run_id).map_err(Failure::failed)?);
                    }
                    (runs, audits)
                }
                None => (Vec::new(), Vec::new()),
            };
            output::history(&runs, &audits, format);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The state store if one exists: looking at status or history never creates it.
pub(super) fn existing_state(project: &Project) -> Result<Option<Arc<dyn StateStore>>, Failure> {
    if project.settings.state_path.exists() {
        open_state(project).map(Some)
    } else {
        Ok(None)
    }
}

pub(super) fn open_state(project: &Project) -> Result<Arc<dyn StateStore>, Failure> {
    let store = SqliteStateStore::open(&project.settings.state_path).map_err(Failure::failed)?;
    Ok(Arc::new(store))
}

/// Takes the locks of the selected products: a product runs in one process at a time (the
/// daemon's or a person's), while other products go on.
pub(super) fn lock_selected(
    project: &Project,
    products: &[weft_state::ProductKey],
    run_id: &str,
    command: &str,
) -> Result<weft_engine::ProductLocks, Failure> {
    let holder = weft_engine::LockHolder {
        command: command.into(),
        pid: std::process::id(),
        run_id: run_id.into(),
    };
    weft_engine::lock_products(project, products, &holder).map_err(Failure::failed)
}

fn product_keys(selections: &[weft_mesh::Selection<'_>]) -> Vec<weft_state::ProductKey> {
    selections
        .iter()
        .map(|s| weft_state::ProductKey {
            domain: s.product.domain.clone(),
            product: s.product.name.clone(),
        })
        .collect()
}

/// The products and streams `selectors` name (all when empty).
pub(super) fn select<'p>(
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
    yes: bool,
) -> Result<ExitCode, Failure> {
    let project = super::load_project(project)?;
    let selections = select(&project, &selectors)?;
    if !yes {
        confirm_reset(&selections)?;
    }
    let _locks = lock_selected(
        &project,
        &product_keys(&selections),
        "reset",
        "weft sync reset",
    )?;
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

/// Asks on a terminal before a reset drops product tables; elsewhere `--yes` is required.
fn confirm_reset(selections: &[weft_mesh::Selection<'_>]) -> Result<(), Failure> {
    let streams: Vec<String> = selections
        .iter()
        .flat_map(|s| {
            s.streams.iter().map(|stream| {
                format!(
                    "{}/{}/{stream} (in {})",
                    s.product.domain, s.product.name, s.product.destination.connector
                )
            })
        })
        .collect();
    eprintln!("This drops the product tables, checkpoints and source replication state of:");
    for s in &streams {
        eprintln!("  {s}");
    }
    super::confirm(
        "reset",
        "Readers lose these tables until the next run rebuilds them.",
        format!(
            "`weft sync reset` drops the product tables and checkpoints of {} stream(s) ({}); \
             pass --yes to confirm (stdin is not a terminal, so weft cannot ask)",
            streams.len(),
            streams.join(", ")
        ),
    )
}

/// `sync run --dry-run`: what a run would do, from the project and the state store alone.
fn sync_plan(
    project: Option<PathBuf>,
    selectors: Vec<String>,
    format: OutputFormat,
) -> Result<ExitCode, Failure> {
    let project = super::load_project(project)?;
    let selections = select(&project, &selectors)?;
    let state = existing_state(&project)?;
    // Saying where a stream resumes needs the source's code, not a connection; a source that
    // cannot be built (the run would say why) shows its checkpoints' JSON.
    let registry = registry();
    let ctx = weft_core::ConnectorContext {
        project_dir: project.root.clone(),
    };
    let sources: Vec<_> = selections
        .iter()
        .map(|s| {
            weft_engine::build_source(&project, s.product, &registry, &ctx)
                .inspect_err(|problem| warn!("{problem}"))
                .ok()
        })
        .collect();
    output::plan(&selections, &sources, state.as_deref(), format).map_err(Failure::failed)?;
    Ok(ExitCode::SUCCESS)
}

/// How `sync run` was asked to run.
struct RunFlags {
    no_progress: bool,
    format: OutputFormat,
    follow: bool,
    quiet: bool,
    full_refresh: bool,
}

async fn sync_run(
    project: Option<PathBuf>,
    selectors: Vec<String>,
    flags: RunFlags,
) -> Result<ExitCode, Failure> {
    let RunFlags {
        no_progress,
        format,
        follow,
        quiet,
        full_refresh,
    } = flags;
    let project = super::load_project(project)?;
    let selections = select(&project, &selectors)?;
    if selections.is_empty() {
        return Err(Failure::config(
            "the project has no products; add one under domains/<domain>/<product>.yaml",
        ));
    }
    if full_refresh {
        let refused: Vec<String> = selections
            .iter()
            .flat_map(|s| {
                s.product
                    .streams
                    .iter()
                    .filter(|c| s.streams.contains(&c.name))
                    .filter_map(move |c| {
                        weft_engine::full_refresh_refusal(c).map(|why| {
                            format!("{}/{}/{}: {why}", s.product.domain, s.product.name, c.name)
                        })
                    })
            })
            .collect();
        if !refused.is_empty() {
            return Err(Failure::config(format!(
                "--full-refresh cannot re-read every selected stream safely (select the others \
                 only): {}",
                refused.join("; ")
            )));
        }
    }

    let state = open_state(&project)?;
    let registry = registry();
    let options = RunOptions {
        follow,
        full_refresh,
        ..RunOptions::from_project(&project)
    };
    let prepared = prepare(
        &project,
        &selections,
        selectors,
        &registry,
        state.clone(),
        options,
    )
    .map_err(Failure::config)?;
    let _locks = lock_selected(
        &project,
        &prepared.products(),
        prepared.run_id(),
        "weft sync run",
    )?;
    let interrupted = state
        .mark_interrupted_product_runs(&prepared.products(), chrono::Utc::now())
        .map_err(Failure::failed)?;
    if interrupted > 0 {
        warn!("{interrupted} earlier run(s) were interrupted (killed); resuming from their last committed checkpoints");
    }

    let cancel = CancellationToken::new();
    let interrupts = Interrupts::watch(cancel.clone(), prepared.progress());
    let display = output::ProgressDisplay::start(prepared.progress(), !no_progress && !quiet);
    let report = prepared.execute(cancel.clone()).await;
    display.stop().await;
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            interrupts.stop_listening();
            return Err(Failure::failed(e));
        }
    };
    if interrupts.received() && report.status == RunStatus::Succeeded {
        info!("every stream had finished when the signal came: the run succeeded");
    }

    output::report(&report, format);
    let code = match report.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Cancelled => ExitCode::from(interrupts.exit_code()),
        _ => ExitCode::from(1),
    };
    interrupts.stop_listening();
    Ok(code)
}
