//! `weft state show|set`: where each stream is, in human terms, and setting a stream's
//! position by hand (a backfill from a date, an Airbyte connector's state).
//!
//! Forgetting a stream altogether is `weft sync reset` (its product table goes too: the
//! destination's checkpoint would otherwise win over a forgotten state).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use weft_core::{ConnectorContext, Position, SyncMode, WriteMode};
use weft_engine::{prepare, RunOptions, SetPosition};
use weft_mesh::{Project, Selection};
use weft_state::{RunStatus, StreamKey, Trigger};

use crate::cli::{OutputFormat, StateCommand};
use crate::exit::Failure;
use crate::logging::redact;
use crate::output;
use crate::registry::registry;

pub async fn run(project: Option<PathBuf>, cmd: StateCommand) -> Result<ExitCode, Failure> {
    match cmd {
        StateCommand::Show { selector, format } => show(project, &selector, format),
        StateCommand::Set {
            stream,
            cursor,
            state_json,
            yes,
            format,
        } => {
            let position = match (cursor, state_json) {
                (Some(value), None) => SetPosition::Cursor(value),
                (None, Some(file)) => SetPosition::State(read_state_json(&file)?),
                _ => unreachable!("clap requires exactly one of --cursor and --state-json"),
            };
            set(project, &stream, position, yes, format).await
        }
    }
}

/// One stream's position as `state show` prints it.
#[derive(serde::Serialize)]
struct Shown {
    stream: String,
    mode: String,
    write: String,
    /// `None` when no run has committed a checkpoint yet.
    position: Option<Position>,
    /// The position in words.
    summary: String,
    /// The checkpoint as stored (the source's JSON).
    checkpoint: Option<serde_json::Value>,
    updated_at: Option<String>,
    /// The run (or `weft state set`) that recorded it.
    run_id: Option<String>,
}

fn show(
    project: Option<PathBuf>,
    selector: &str,
    format: OutputFormat,
) -> Result<ExitCode, Failure> {
    let project = super::load_project(project)?;
    let selections = super::sync::select(&project, &[selector.to_string()])?;
    let state = super::sync::existing_state(&project)?;
    let registry = registry();
    let ctx = ConnectorContext {
        project_dir: project.root.clone(),
    };
    let mut shown = Vec::new();
    for selection in &selections {
        let product = selection.product;
        // Describing a checkpoint needs the source's code, not a connection.
        let source = weft_engine::build_source(&project, product, &registry, &ctx)
            .map_err(|p| Failure::config(p.to_string()))?;
        for stream in product
            .streams
            .iter()
            .filter(|s| selection.streams.contains(&s.name))
        {
            let key = StreamKey {
                domain: product.domain.clone(),
                product: product.name.clone(),
                stream: stream.name.clone(),
            };
            let stored = match &state {
                Some(state) => state.get_state(&key).map_err(Failure::failed)?,
                None => None,
            };
            let position = stored
                .as_ref()
                .map(|s| source.describe_position(&s.checkpoint));
            shown.push(Shown {
                stream: key.to_string(),
                mode: stream.mode.to_string(),
                write: stream.write.to_string(),
                summary: match &position {
                    Some(p) => p.to_string(),
                    None => "no checkpoint yet: the next run reads from the start".into(),
                },
                position,
                checkpoint: stored.as_ref().map(|s| s.checkpoint.position().clone()),
                updated_at: stored.as_ref().map(|s| s.updated_at.to_rfc3339()),
                run_id: stored.map(|s| s.run_id),
            });
        }
    }
    match format {
        OutputFormat::Json => println!(
            "{}",
            redact(&serde_json::to_string_pretty(&shown).expect("JSON"))
        ),
        OutputFormat::Table => {
            let mut t = output::table(["stream", "mode", "recorded (UTC)", "by run"]);
            for s in &shown {
                let at = s
                    .updated_at
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| output::timestamp(t.with_timezone(&chrono::Utc)))
                    .unwrap_or_else(|| "-".into());
                t.add_row([
                    s.stream.clone(),
                    format!("{} {}", s.mode, s.write),
                    at,
                    s.run_id.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            println!("{}", output::fit(t));
            // Positions are long: below the table, one line each (for grep).
            for s in &shown {
                println!("{}: {}", s.stream, redact(&s.summary));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_state_json(file: &Path) -> Result<serde_json::Value, Failure> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Failure::config(format!("cannot read --state-json {}: {e}", file.display()))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        Failure::config(format!(
            "--state-json {}: not JSON ({e}); give the stream's state object as the connector emits it",
            file.display()
        ))
    })
}

/// Why `state set` cannot set this stream's position, if it cannot: checked from the product
/// file before anything is built or locked.
fn refusal(stream: &weft_mesh::StreamConfig) -> Option<String> {
    match (stream.mode, stream.write) {
        (SyncMode::Incremental, WriteMode::Overwrite) => Some(
            "it is written with `write: overwrite`, which replaces the table every run: a run \
             from a set position would keep only the rows after it; use `write: append_dedup`, \
             or `weft sync reset` to read it again"
                .into(),
        ),
        (SyncMode::Incremental, _) => None,
        (SyncMode::FullRefresh, _) => Some(
            "it is read in `full_refresh` mode, which reads the whole table every run: it has no \
             cursor to set"
                .into(),
        ),
        (SyncMode::Cdc, _) => Some(
            "it is read in `cdc` mode, whose position is its replication slot: `weft sync reset` \
             it to take a new snapshot"
                .into(),
        ),
    }
}

async fn set(
    project: Option<PathBuf>,
    stream: &str,
    position: SetPosition,
    yes: bool,
    format: OutputFormat,
) -> Result<ExitCode, Failure> {
    let project = super::load_project(project)?;
    if stream.split('/').count() != 3 {
        return Err(Failure::config(format!(
            "`weft state set` sets one stream: give `domain/product/stream`, not `{stream}`"
        )));
    }
    let selections = super::sync::select(&project, &[stream.to_string()])?;
    let (selection, config) = one_stream(&selections)?;
    if let Some(why) = refusal(config) {
        return Err(Failure::config(format!(
            "{}: cannot set the position of stream `{}`: {why}",
            relative(&project, &selection.product.file),
            config.name
        )));
    }
    let what = match &position {
        SetPosition::Cursor(value) => format!("read every row whose cursor is >= {value}"),
        SetPosition::State(_) => "resume from the given state".to_string(),
    };
    if !yes {
        confirm(stream, &what, config.write)?;
    }
    let key = StreamKey {
        domain: selection.product.domain.clone(),
        product: selection.product.name.clone(),
        stream: config.name.clone(),
    };
    let described = match &position {
        SetPosition::Cursor(value) => format!("--cursor {value}"),
        SetPosition::State(_) => "--state-json".to_string(),
    };
    let state = super::sync::open_state(&project)?;
    let options = RunOptions {
        trigger: Trigger::StateSet,
        set_positions: vec![(key.clone(), position)],
        ..RunOptions::from_project(&project)
    };
    let prepared = prepare(
        &project,
        &selections,
        vec![format!("state set {key} {described}")],
        &registry(),
        state.clone(),
        options,
    )
    .map_err(Failure::config)?;
    let _locks = super::sync::lock_selected(
        &project,
        &prepared.products(),
        prepared.run_id(),
        "weft state set",
    )?;
    state
        .mark_interrupted_product_runs(&prepared.products(), chrono::Utc::now())
        .map_err(Failure::failed)?;
    let report = prepared
        .execute(CancellationToken::new())
        .await
        .map_err(Failure::failed)?;
    let error = report
        .streams
        .iter()
        .find_map(|s| s.error.clone())
        .unwrap_or_default();
    if report.status != RunStatus::Succeeded {
        return Err(Failure::failed(format!(
            "the position of {key} was not changed: {error}"
        )));
    }
    let stored = state.get_state(&key).map_err(Failure::failed)?;
    let source = weft_engine::build_source(
        &project,
        selection.product,
        &registry(),
        &ConnectorContext {
            project_dir: project.root.clone(),
        },
    )
    .map_err(|p| Failure::config(p.to_string()))?;
    let shown = stored.map(|s| source.describe_position(&s.checkpoint));
    match format {
        OutputFormat::Json => {
            let json = serde_json::json!({
                "stream": key.to_string(),
                "run_id": report.run_id,
                "position": shown,
            });
            println!(
                "{}",
                redact(&serde_json::to_string_pretty(&json).expect("JSON"))
            );
        }
        OutputFormat::Table => {
            let summary = shown.map(|p| p.to_string()).unwrap_or_default();
            println!(
                "{key}: position set ({}); recorded as run {}",
                redact(&summary),
                report.run_id
            );
            if config.write == WriteMode::Append {
                println!(
                    "note: {key} is written with `write: append`: rows read again are appended \
                     again (duplicates of rows already in the table)"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The one selected stream and its configuration.
fn one_stream<'s, 'p>(
    selections: &'s [Selection<'p>],
) -> Result<(&'s Selection<'p>, &'p weft_mesh::StreamConfig), Failure> {
    let selection = selections
        .first()
        .filter(|s| s.streams.len() == 1)
        .ok_or_else(|| Failure::config("`weft state set` sets exactly one stream"))?;
    let config = selection
        .product
        .streams
        .iter()
        .find(|c| c.name == selection.streams[0])
        .ok_or_else(|| Failure::config("the selected stream is not in its product file"))?;
    Ok((selection, config))
}

fn relative(project: &Project, file: &Path) -> String {
    file.strip_prefix(&project.root)
        .unwrap_or(file)
        .display()
        .to_string()
}

/// Asks on a terminal; elsewhere `--yes` is required (as `weft sync reset` does).
fn confirm(stream: &str, what: &str, write: WriteMode) -> Result<(), Failure> {
    let consequence = match write {
        WriteMode::Append => "rows read again are appended again (duplicates)",
        _ => "rows read again settle by key (no duplicates)",
    };
    super::confirm(
        "state set",
        &format!("The next run of {stream} will {what}; {consequence}."),
        format!(
            "`weft state set` makes the next run of {stream} {what}; {consequence}. Pass --yes \
             to confirm (stdin is not a terminal, so weft cannot ask)"
        ),
    )
}
