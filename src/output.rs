//! What the CLI prints: the live progress display, the run summary, status and history.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use comfy_table::{presets, Table};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use weft_engine::{Phase, RunReport, StreamProgress};
use weft_mesh::Project;
use weft_state::{RunRecord, StateStore};

use crate::cli::OutputFormat;
use crate::logging::redact;

pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_BORDERS_ONLY)
        .set_header(header);
    table
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn rate(rows: u64, secs: f64) -> String {
    if secs <= 0.0 {
        return "-".into();
    }
    format!("{:.0}", rows as f64 / secs)
}

/// A bar per stream on a terminal; a log line per stream every few seconds otherwise.
pub struct ProgressDisplay {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressDisplay {
    pub fn start(streams: Vec<Arc<StreamProgress>>, allow_bars: bool) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let tty = allow_bars && std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let multi = MultiProgress::with_draw_target(if tty {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            });
            if tty {
                crate::logging::route_logs_through(multi.clone());
            }
            let style = ProgressStyle::with_template("{spinner} {prefix:<30} {bar:24} {msg}")
                .expect("a valid template")
                .progress_chars("█▌ ");
            let bars: Vec<ProgressBar> = streams
                .iter()
                .map(|s| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(style.clone());
                    bar.set_prefix(s.label.clone());
                    bar
                })
                .collect();
            let period = if tty {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            };
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(period) => {}
                }
                for (s, bar) in streams.iter().zip(&bars) {
                    let line = progress_line(s);
                    if tty {
                        if let Some(estimate) = s.estimate() {
                            bar.set_length(estimate);
                            bar.set_position(s.rows().min(estimate));
                        }
                        bar.set_message(line);
                        bar.tick();
                    } else if s.phase() == Phase::Reading || s.phase() == Phase::Finishing {
                        tracing::info!("{}: {line}", s.label);
                    }
                }
            }
            for bar in bars {
                bar.finish_and_clear();
            }
            crate::logging::stop_routing_logs();
        });
        Self { stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn progress_line(s: &StreamProgress) -> String {
    let secs = s.elapsed_secs();
    let of = s
        .estimate()
        .map(|e| format!(" of ~{e}"))
        .unwrap_or_default();
    let phase = format!("{:?}", s.phase()).to_lowercase();
    format!(
        "{phase}: {} rows{of}, {}, {} rows/s",
        s.rows(),
        human_bytes(s.bytes()),
        rate(s.rows(), secs)
    )
}

pub fn report(report: &RunReport, format: OutputFormat) {
    match format {
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(report).expect("JSON");
            println!("{}", redact(&json));
        }
        OutputFormat::Table => {
            let mut t = table([
                "stream", "status", "rows", "size", "time", "rows/s", "error",
            ]);
            for s in &report.streams {
                // A failed stream's rows were read; only the committed ones are in the store.
                // (A succeeded stream committed everything its mappers kept.)
                let rows =
                    if s.status == weft_state::RunStatus::Succeeded || s.rows_committed == s.rows {
                        s.rows.to_string()
                    } else {
                        format!("{} read, {} committed", s.rows, s.rows_committed)
                    };
                t.add_row([
                    s.stream.clone(),
                    s.status.to_string(),
                    rows,
                    human_bytes(s.bytes),
                    format!("{:.1}s", s.seconds),
                    rate(s.rows, s.seconds),
                    s.error.as_deref().map(redact).unwrap_or_default(),
                ]);
            }
            println!("{t}");
            for s in report.streams.iter().filter(|s| s.off_schema_values > 0) {
                println!(
                    "{}: {} value(s) did not fit the stream's schema and were written as NULL \
                     (the source records each in its row)",
                    s.stream, s.off_schema_values
                );
            }
            println!(
                "run {}: {} — {} rows, {}",
                report.run_id,
                report.status,
                report.rows(),
                human_bytes(report.bytes())
            );
        }
    }
}

pub fn status(
    project: &Project,
    state: &dyn StateStore,
    lags: &[(weft_state::StreamKey, Result<Option<u64>, String>)],
    format: OutputFormat,
) -> Result<(), weft_state::StateError> {
    let states = state.list_states()?;
    let last = state.last_stream_runs()?;
    let mut rows = Vec::new();
    for product in &project.products {
        for stream in &product.streams {
            let label = format!("{}/{}/{}", product.domain, product.name, stream.name);
            let st = states
                .iter()
                .find(|(k, _)| k.to_string() == label)
                .map(|(_, s)| s);
            let run = last.iter().find(|(r, _)| r.key.to_string() == label);
            let lag = lags
                .iter()
                .find(|(k, _)| k.to_string() == label)
                .map(|(_, l)| l);
            rows.push(serde_json::json!({
                "lag_bytes": lag.and_then(|l| l.as_ref().ok().copied().flatten()),
                "lag_error": lag.and_then(|l| l.as_ref().err().cloned()),
                "stream": label,
                "mode": stream.mode.to_string(),
                "write": stream.write.to_string(),
                "checkpoint": st.map(|s| s.checkpoint.position().clone()),
                "checkpoint_at": st.map(|s| s.updated_at.to_rfc3339()),
                "last_run": run.map(|(_, id)| id.clone()),
                "last_status": run.map(|(r, _)| r.status.to_string()),
                "last_rows": run.map(|(r, _)| r.rows),
                "last_error": run.and_then(|(r, _)| r.error.clone()),
            }));
        }
    }
    match format {
        OutputFormat::Json => println!(
            "{}",
            redact(&serde_json::to_string_pretty(&rows).expect("JSON"))
        ),
        OutputFormat::Table => {
            let mut t = table([
                "stream",
                "mode",
                "last run",
                "status",
                "rows",
                "checkpoint at",
                "lag",
            ]);
            for r in &rows {
                let s = |k: &str| match &r[k] {
                    serde_json::Value::Null => "-".to_string(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                t.add_row([
                    s("stream"),
                    format!("{}/{}", s("mode"), s("write")),
                    s("last_run"),
                    s("last_status"),
                    s("last_rows"),
                    s("checkpoint_at"),
                    match (&r["lag_bytes"], &r["lag_error"]) {
                        (serde_json::Value::Number(n), _) => {
                            human_bytes(n.as_u64().unwrap_or_default())
                        }
                        (_, serde_json::Value::String(_)) => "?".to_string(),
                        _ => "-".to_string(),
                    },
                ]);
            }
            println!("{t}");
        }
    }
    Ok(())
}

pub fn reset(reports: &[weft_engine::ResetReport], format: OutputFormat) {
    match format {
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(reports).expect("JSON");
            println!("{}", redact(&json));
        }
        OutputFormat::Table => {
            let mut t = table(["stream", "reset", "problems"]);
            for r in reports {
                t.add_row([
                    r.stream.clone(),
                    if r.errors.is_empty() { "yes" } else { "partly" }.to_string(),
                    redact(&r.errors.join("; ")),
                ]);
            }
            println!("{t}");
            if reports.iter().any(|r| !r.errors.is_empty()) {
                println!("rerun `weft sync reset` once the problems are fixed to finish the reset");
            }
        }
    }
}

pub fn history(runs: &[RunRecord], format: OutputFormat) {
    match format {
        OutputFormat::Json => println!(
            "{}",
            redact(&serde_json::to_string_pretty(runs).expect("JSON"))
        ),
        OutputFormat::Table => {
            let mut t = table([
                "run",
                "status",
                "started",
                "ended",
                "rows",
                "size",
                "selectors",
                "error",
            ]);
            for r in runs {
                t.add_row([
                    r.run_id.clone(),
                    r.status.to_string(),
                    r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    r.ended_at
                        .map(|e| e.format("%H:%M:%S").to_string())
                        .unwrap_or_else(|| "-".into()),
                    r.rows.to_string(),
                    human_bytes(r.bytes),
                    if r.selectors.is_empty() {
                        "(all)".into()
                    } else {
                        r.selectors.join(" ")
                    },
                    r.error.as_deref().map(redact).unwrap_or_default(),
                ]);
            }
            println!("{t}");
        }
    }
}
