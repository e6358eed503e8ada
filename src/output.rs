//! What the CLI prints: the live progress display, the run summary, status and history.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use comfy_table::{presets, ColumnConstraint, ContentArrangement, Table, Width};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use weft_engine::{Phase, RunReport, StreamProgress, StreamReport};
use weft_mesh::Project;
use weft_state::{RunRecord, RunStatus, StateStore};

use crate::cli::OutputFormat;
use crate::logging::redact;

/// Width of tables when stdout is not a terminal (a terminal's own width is used otherwise).
const DEFAULT_WIDTH: u16 = 80;

/// The longest word a wrapped cell keeps whole.
const MAX_WORD: usize = 32;

/// A table for [`fit`]: no borders, columns two spaces apart (as `kubectl` prints), so a
/// summary of typical stream names fits 80 columns.
pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header(header);
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i + 1 == N { 0 } else { 2 }));
    }
    table
}

/// The table as text, as wide as its content if that fits the terminal (or 80 columns when
/// stdout is not one); otherwise long cells wrap, the first column (the row's name) last.
pub fn fit(mut table: Table) -> String {
    let width = if std::io::stdout().is_terminal() {
        table.width().unwrap_or(DEFAULT_WIDTH)
    } else {
        DEFAULT_WIDTH
    };
    let natural = table.trim_fmt();
    if natural.lines().all(|l| l.chars().count() <= width as usize) {
        return natural;
    }
    table
        .set_width(width)
        .set_content_arrangement(ContentArrangement::Dynamic);
    // Cells wrap between words, never inside one (`incrementa` / `l append_d` / `edup`): a
    // column is at least as wide as its longest word (up to `MAX_WORD`, so a long path or
    // JSON value still wraps rather than widening the table without bound).
    let columns = table.column_count();
    let words: Vec<u16> = (0..columns)
        .map(|i| {
            table
                .column_cells_with_header_iter(i)
                .flatten()
                .flat_map(|cell| {
                    cell.content()
                        .split_whitespace()
                        .map(|w| w.chars().count())
                        .collect::<Vec<_>>()
                })
                .max()
                .unwrap_or(0)
                .min(MAX_WORD) as u16
        })
        .collect();
    for (i, longest) in words.into_iter().enumerate() {
        if let Some(column) = table.column_mut(i) {
            column.set_constraint(if i == 0 {
                ColumnConstraint::ContentWidth
            } else {
                ColumnConstraint::LowerBoundary(Width::Fixed(longest + 2))
            });
        }
    }
    table.trim_fmt()
}

/// `text` word-wrapped to `width` columns, continuation lines indented by `indent` spaces.
pub fn wrap(text: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut column = 0;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if column > indent && column + 1 + len > width {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            column = indent;
        } else if !out.is_empty() {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += len;
    }
    out
}

/// The one way tables show a moment: UTC (the column header says so), to the second.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
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
    if s.phase() == Phase::Finishing {
        // The read is over: say what the wait is for (a dedup settle can take a while).
        return format!(
            "finishing: {} rows read in {:.1}s, publishing for {:.0}s (final commit, overwrite \
             swap or dedup settling)",
            s.rows(),
            s.read_secs(),
            s.publish_secs()
        );
    }
    let secs = s.read_secs();
    let of = s
        .estimate()
        .map(|e| format!(" of ~{e}"))
        .unwrap_or_default();
    let phase = format!("{:?}", s.phase()).to_lowercase();
    format!(
        "{phase}: {} rows{of}, {} as Arrow, {} rows/s",
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
                "stream",
                "status",
                "rows read",
                "landed",
                "read time",
                "publish",
                "rows/s",
            ]);
            for s in &report.streams {
                t.add_row([
                    s.stream.clone(),
                    s.status.to_string(),
                    s.rows.to_string(),
                    landed(s),
                    format!("{:.1}s", s.read_seconds),
                    format!("{:.1}s", s.publish_seconds),
                    rate(s.rows, s.read_seconds),
                ]);
            }
            println!("{}", fit(t));
            // Below the table, once per distinct error, wrapped: never inside a cell.
            let mut errors: Vec<(Vec<&str>, &str)> = Vec::new();
            for s in &report.streams {
                let Some(e) = s.error.as_deref() else {
                    continue;
                };
                match errors.iter_mut().find(|(_, seen)| *seen == e) {
                    Some((streams, _)) => streams.push(&s.stream),
                    None => errors.push((vec![&s.stream], e)),
                }
            }
            for (streams, e) in &errors {
                let text = format!("error: {}: {}", streams.join(", "), redact(e));
                println!("{}", wrap(&text, DEFAULT_WIDTH as usize, 2));
            }
            for s in report.streams.iter().filter(|s| staged(s)) {
                let text = format!(
                    "note: {}: {} rows committed but not published ({} publishes a complete \
                     read only); the next run resumes from them",
                    s.stream, s.committed_rows, s.write
                );
                println!("{}", wrap(&text, DEFAULT_WIDTH as usize, 2));
            }
            for s in report.streams.iter().filter(|s| s.off_schema_values > 0) {
                let text = format!(
                    "note: {}: {} value(s) did not fit the stream's schema and were written as \
                     NULL (the source records each in its row)",
                    s.stream, s.off_schema_values
                );
                println!("{}", wrap(&text, DEFAULT_WIDTH as usize, 2));
            }
            let written = report
                .bytes_written()
                .map(|b| format!(", {} written", human_bytes(b)))
                .unwrap_or_default();
            let text = format!(
                "run {}: {} — {} rows read, {} landed{written} ({} in memory as Arrow)",
                report.run_id,
                report.status,
                report.rows(),
                report.streams.iter().map(visible_rows).sum::<u64>(),
                human_bytes(report.arrow_bytes())
            );
            println!("{}", wrap(&text, DEFAULT_WIDTH as usize, 2));
        }
    }
}

/// Whether a stream that did not succeed holds committed rows readers do not see yet.
fn staged(s: &StreamReport) -> bool {
    s.status != RunStatus::Succeeded && s.committed_rows > 0 && visible_rows(s) == 0
}

/// Rows readers can see now because of this run.
fn visible_rows(s: &StreamReport) -> u64 {
    match s.status {
        RunStatus::Succeeded => s.committed_rows,
        // Only appends publish at every commit.
        _ if s.write == "append" => s.committed_rows,
        _ => 0,
    }
}

/// The `landed` cell: rows now visible to readers, with what is staged for the next run.
fn landed(s: &StreamReport) -> String {
    if staged(s) {
        format!("0 ({} staged)", s.committed_rows)
    } else {
        visible_rows(s).to_string()
    }
}

/// `sync run --dry-run`: each selected stream, how it would be read, from where it would
/// resume (in words, from `sources[i]`, the source of `selections[i]`, where it could be
/// built; else the checkpoint's JSON) and where it would land.
pub fn plan(
    selections: &[weft_mesh::Selection<'_>],
    sources: &[Option<Box<dyn weft_core::Source>>],
    state: Option<&dyn StateStore>,
    format: OutputFormat,
) -> Result<(), weft_state::StateError> {
    let states = match state {
        Some(state) => state.list_states()?,
        None => Vec::new(),
    };
    let mut rows = Vec::new();
    for (selection, source) in selections.iter().zip(sources) {
        let product = selection.product;
        for stream in product
            .streams
            .iter()
            .filter(|s| selection.streams.contains(&s.name))
        {
            let label = format!("{}/{}/{}", product.domain, product.name, stream.name);
            let stored = states
                .iter()
                .find(|(k, _)| k.to_string() == label)
                .map(|(_, s)| &s.checkpoint);
            let checkpoint = stored.map(|c| c.position().clone());
            let position = stored.map(|c| match source {
                Some(source) => source.describe_position(c),
                None => weft_core::Position::Opaque {
                    checkpoint: c.position().clone(),
                },
            });
            let next_read = match &position {
                Some(position) => position.next_read(stream.mode),
                None => weft_core::Position::first_read(stream.mode),
            };
            rows.push(serde_json::json!({
                "stream": label,
                "source": product.source.connector,
                "mode": stream.mode.to_string(),
                "write": stream.write.to_string(),
                "cursor": stream.cursor,
                "primary_key": stream.primary_key,
                "resume_from": checkpoint,
                "position": position,
                "next_read": next_read,
                "destination": product.destination.connector,
                "destination_at": destination_at(&product.destination.config),
            }));
        }
    }
    match format {
        OutputFormat::Json => println!(
            "{}",
            redact(&serde_json::to_string_pretty(&rows).expect("JSON"))
        ),
        OutputFormat::Table => {
            let text = |v: &serde_json::Value| match v {
                serde_json::Value::Null => "-".to_string(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let mut t = table(["stream", "source", "mode", "cursor", "into"]);
            for r in &rows {
                t.add_row([
                    text(&r["stream"]),
                    text(&r["source"]),
                    format!("{} {}", text(&r["mode"]), text(&r["write"])),
                    text(&r["cursor"]),
                    format!(
                        "{} {}",
                        text(&r["destination"]),
                        redact(&text(&r["destination_at"]))
                    ),
                ]);
            }
            println!("{}", fit(t));
            // Where each stream resumes is long: below the table, one line each.
            for r in &rows {
                let line = format!("{}: {}", text(&r["stream"]), redact(&text(&r["next_read"])));
                println!("{}", wrap(&line, DEFAULT_WIDTH as usize, 2));
            }
            println!("dry run: nothing was read, written or recorded");
        }
    }
    Ok(())
}

/// Where a destination config points, from its usual fields (never a password).
fn destination_at(config: &serde_json::Value) -> String {
    let get = |k: &str| {
        config.get(k).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    match (get("path"), get("host")) {
        (Some(path), _) => path,
        (None, Some(host)) => format!(
            "{host}:{}/{}{}",
            get("port").unwrap_or_else(|| "5432".into()),
            get("database").unwrap_or_default(),
            get("schema")
                .map(|s| format!(" schema {s}"))
                .unwrap_or_default()
        ),
        _ => String::new(),
    }
}

pub fn status(
    project: &Project,
    state: Option<&dyn StateStore>,
    lags: &[(weft_state::StreamKey, Result<Option<u64>, String>)],
    format: OutputFormat,
) -> Result<(), weft_state::StateError> {
    let (states, last) = match state {
        Some(state) => (state.list_states()?, state.last_stream_runs()?),
        None => (Vec::new(), Vec::new()),
    };
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
                "rows",
                "checkpoint at (UTC)",
                "lag",
            ]);
            for r in &rows {
                let st = states
                    .iter()
                    .find(|(k, _)| r["stream"] == k.to_string())
                    .map(|(_, s)| s);
                let s = |k: &str| match &r[k] {
                    serde_json::Value::Null => "-".to_string(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                t.add_row([
                    s("stream"),
                    format!("{} {}", s("mode"), s("write")),
                    s("last_status"),
                    s("last_rows"),
                    st.map(|s| timestamp(s.updated_at))
                        .unwrap_or_else(|| "-".into()),
                    match (&r["lag_bytes"], &r["lag_error"]) {
                        (serde_json::Value::Number(n), _) => {
                            human_bytes(n.as_u64().unwrap_or_default())
                        }
                        (_, serde_json::Value::String(_)) => "?".to_string(),
                        _ => "-".to_string(),
                    },
                ]);
            }
            if rows.is_empty() {
                println!("the project has no streams yet");
            } else {
                println!("{}", fit(t));
            }
            if last.is_empty() {
                println!("no runs yet: `weft sync run` starts the first");
            }
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
            println!("{}", fit(t));
            if reports.iter().any(|r| !r.errors.is_empty()) {
                println!("rerun `weft sync reset` once the problems are fixed to finish the reset");
            }
        }
    }
}

/// Past runs; `audits[i]` holds run i's governance audits (stream key, audit JSON).
pub fn history(runs: &[RunRecord], audits: &[Vec<(String, String)>], format: OutputFormat) {
    let audit_of = |i: usize| -> serde_json::Map<String, serde_json::Value> {
        audits
            .get(i)
            .into_iter()
            .flatten()
            .map(|(stream, json)| {
                (
                    stream.clone(),
                    serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect()
    };
    match format {
        OutputFormat::Json => {
            let mut out = serde_json::to_value(runs).expect("JSON");
            if let Some(list) = out.as_array_mut() {
                for (i, run) in list.iter_mut().enumerate() {
                    run["governance"] = serde_json::Value::Object(audit_of(i));
                }
            }
            println!(
                "{}",
                redact(&serde_json::to_string_pretty(&out).expect("JSON"))
            )
        }
        OutputFormat::Table if runs.is_empty() => {
            println!("no runs yet: `weft sync run` starts the first");
        }
        OutputFormat::Table => {
            let mut t = table(["run", "status", "started (UTC)", "took", "rows", "selected"]);
            for r in runs {
                t.add_row([
                    r.run_id.clone(),
                    r.status.to_string(),
                    timestamp(r.started_at),
                    r.ended_at
                        .map(|e| {
                            let ms = (e - r.started_at).num_milliseconds().max(0);
                            format!("{:.1}s", ms as f64 / 1000.0)
                        })
                        .unwrap_or_else(|| "-".into()),
                    r.rows.to_string(),
                    if r.selectors.is_empty() {
                        "(all)".into()
                    } else {
                        r.selectors.join(" ")
                    },
                ]);
            }
            println!("{}", fit(t));
            // Errors below the table, wrapped: a cell would make it hundreds of columns wide.
            for r in runs {
                if let Some(e) = &r.error {
                    let text = format!("error of run {}: {}", r.run_id, redact(e));
                    println!("{}", wrap(&text, DEFAULT_WIDTH as usize, 2));
                }
            }
            // What the policy did, per stream: digest, rules, column transformations.
            for (i, r) in runs.iter().enumerate() {
                for (stream, audit) in audit_of(i) {
                    let digest = audit["policy_digest"].as_str().unwrap_or("");
                    let columns: Vec<String> = audit["columns"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| {
                            format!(
                                "{} {} ({})",
                                c["column"].as_str().unwrap_or(""),
                                c["action"].as_str().unwrap_or(""),
                                c["rule"].as_str().unwrap_or("")
                            )
                        })
                        .collect();
                    let rules = audit["rules"].as_array().map_or(0, Vec::len);
                    let text = format!(
                        "governance of run {} {stream}: policy {}, {rules} rule(s), {}",
                        r.run_id,
                        digest.get(..12).unwrap_or(digest),
                        if columns.is_empty() {
                            "no column transformed".to_string()
                        } else {
                            columns.join(", ")
                        }
                    );
                    // Not wrapped: one line per stream, for grep.
                    println!("{text}");
                }
            }
        }
    }
}
