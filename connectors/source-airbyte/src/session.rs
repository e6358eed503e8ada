//! One connector command (`spec`, `check`, `discover`, `read`) at the protocol level: lines
//! parsed into messages, LOG lines logged (redacted), TRACE errors and the connector's exit
//! turned into one error message that says what happened, where, and what to try.
//!
//! Lines that are not JSON at all (progress output some sources print on stdout) are logged and
//! skipped, as the Airbyte platform does, up to `max_invalid_lines`; a line that starts like a
//! JSON object but does not parse is fatal, since it may be a truncated record.

use std::ffi::OsString;
use std::time::Duration;

use serde_json::Value;
use weft_core::{ConnectorError, Result};

use crate::process::{self, Flow, Inputs, Outcome, Program};
use crate::protocol::{parse_line, Envelope, Log};
use crate::redact::Redactor;

/// A runnable connector with its config.
#[derive(Debug, Clone)]
pub struct Connector {
    pub program: Program,
    pub config: Value,
    pub timeout: Duration,
    pub redactor: Redactor,
    /// Non-JSON stdout lines skipped before the command fails.
    pub max_invalid_lines: u64,
}

/// How many skipped lines are logged one by one (the rest are only counted).
const SHOWN_INVALID_LINES: usize = 5;
/// How much of a connector's stack trace the error keeps: its last lines.
const STACK_TAIL_LINES: usize = 3;

/// What the connector said went wrong, gathered while reading its output.
#[derive(Debug, Default)]
pub struct Diagnostics {
    /// The last TRACE error: (stdout line, message).
    pub trace_error: Option<(u64, String)>,
    /// The last ERROR or FATAL log line.
    pub error_log: Option<(u64, String)>,
    /// A problem weft found in the output (a line that is not a message…): the read stops.
    pub fatal: Option<String>,
    /// Stdout lines that were not JSON, skipped.
    pub skipped_lines: u64,
    /// The first few of them (redacted, shortened), for the log.
    pub skipped_sample: Vec<String>,
}

impl Connector {
    fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// Runs one command; `handle` sees every message but LOG lines. TRACE errors are recorded
    /// before `handle` sees them.
    pub fn exchange(
        &self,
        args: Vec<OsString>,
        abandoned: Box<dyn Fn() -> bool + Send>,
        mut handle: impl FnMut(u64, Envelope<'_>, &mut Diagnostics) -> Flow,
    ) -> Result<(Outcome, Diagnostics)> {
        let label = self.program.label();
        let mut diag = Diagnostics::default();
        let outcome = process::run(
            &self.program,
            &args,
            self.timeout,
            &self.redactor,
            abandoned,
            |n, line| {
                let message = match parse_line(line) {
                    Ok(m) => m,
                    Err(e) => {
                        let shown: String =
                            String::from_utf8_lossy(line).chars().take(200).collect();
                        let shown = self.redact(&shown);
                        let looks_like_json = line
                            .iter()
                            .find(|b| !b.is_ascii_whitespace())
                            .is_some_and(|&b| b == b'{');
                        if !looks_like_json && diag.skipped_lines < self.max_invalid_lines {
                            diag.skipped_lines += 1;
                            if diag.skipped_sample.len() < SHOWN_INVALID_LINES {
                                tracing::warn!(connector = %label, "skipping stdout line {n}, which is not an Airbyte message: {shown}");
                                diag.skipped_sample.push(format!("line {n}: {shown}"));
                            }
                            return Flow::Continue;
                        }
                        let why = if looks_like_json {
                            format!("stdout line {n} is not an Airbyte protocol message ({e})")
                        } else {
                            format!(
                                "stdout line {n} is the {} line that is not an Airbyte \
                                 protocol message, more than `max_invalid_lines` ({}) allows",
                                ordinal(diag.skipped_lines + 1),
                                self.max_invalid_lines
                            )
                        };
                        diag.fatal = Some(format!("{why}: `{shown}`"));
                        return Flow::Stop;
                    }
                };
                match message.kind.as_deref() {
                    Some("LOG") => {
                        if let Some(log) = &message.log {
                            self.log(&label, n, log, &mut diag);
                        }
                        Flow::Continue
                    }
                    Some("TRACE") => {
                        if let Some(trace) = &message.trace {
                            self.observe_trace(&label, n, trace, &mut diag);
                        }
                        handle(n, message, &mut diag)
                    }
                    _ => handle(n, message, &mut diag),
                }
            },
        )?;
        if diag.skipped_lines > 0 {
            tracing::warn!(
                connector = %label,
                "skipped {} stdout line(s) that were not Airbyte messages (first: {})",
                diag.skipped_lines,
                diag.skipped_sample.join(" | ")
            );
        }
        Ok((outcome, diag))
    }

    fn log(&self, label: &str, line: u64, log: &Log, diag: &mut Diagnostics) {
        let mut text = self.redact(&log.message);
        if let Some(stack) = &log.stack_trace {
            text.push('\n');
            text.push_str(&self.redact(stack));
        }
        match log.level.to_ascii_uppercase().as_str() {
            "FATAL" | "ERROR" => {
                tracing::error!(connector = %label, "{text}");
                diag.error_log = Some((line, self.redact(&log.message)));
            }
            "WARN" | "WARNING" => tracing::warn!(connector = %label, "{text}"),
            "DEBUG" => tracing::debug!(connector = %label, "{text}"),
            "TRACE" => tracing::trace!(connector = %label, "{text}"),
            _ => tracing::info!(connector = %label, "{text}"),
        }
    }

    fn observe_trace(&self, label: &str, line: u64, trace: &Value, diag: &mut Diagnostics) {
        if trace.get("type").and_then(Value::as_str) != Some("ERROR") {
            return;
        }
        let error = trace.get("error").cloned().unwrap_or(Value::Null);
        let text = |key: &str| {
            error
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|t| !t.is_empty())
        };
        let stack = text("stack_trace");
        if let Some(stack) = stack {
            tracing::debug!(connector = %label, "stack trace of the error: {}", self.redact(stack));
        }
        let message = self.redact(&trace_error_text(
            text("message"),
            text("internal_message"),
            stack,
        ));
        tracing::error!(connector = %label, "the connector reported an error: {message}");
        diag.trace_error = Some((line, message));
    }

    /// Turns an unsuccessful run into the error a user reads; Ok when the run succeeded.
    pub fn verdict(&self, what: &str, outcome: &Outcome, diag: &Diagnostics) -> Result<()> {
        let label = self.program.label();
        let after = format!("after stdout line {}", outcome.lines);
        let cause = if let Some(fatal) = &diag.fatal {
            fatal.clone()
        } else if outcome.stalled {
            format!(
                "printed nothing for {} {after} and was killed; raise `timeout` if it is just slow",
                humantime_secs(self.timeout)
            )
        } else {
            match outcome.status {
                Some(s) if s.success() => match &diag.trace_error {
                    None => return Ok(()),
                    Some(_) => "reported an error".to_string(),
                },
                Some(s) => match s.code() {
                    Some(code) => format!("exited with code {code} {after}"),
                    None => {
                        use std::os::unix::process::ExitStatusExt;
                        format!(
                            "was killed (signal {}) {after}",
                            s.signal().map_or("?".into(), |s| s.to_string())
                        )
                    }
                },
                None => format!("ended {after}"),
            }
        };
        let mut message = format!("Airbyte connector `{label}` {what}: {cause}");
        if let Some((line, error)) = &diag.trace_error {
            message.push_str(&format!("; its last error (stdout line {line}): {error}"));
        } else if let Some((line, error)) = &diag.error_log {
            message.push_str(&format!(
                "; its last error log (stdout line {line}): {error}"
            ));
        } else if !outcome.stderr_tail.is_empty() && diag.fatal.is_none() {
            let tail = &outcome.stderr_tail[outcome.stderr_tail.len().saturating_sub(3)..];
            message.push_str(&format!("; stderr: {}", tail.join(" | ")));
        }
        let import_failed = outcome.stderr_tail.iter().any(|l| {
            l.contains("ModuleNotFoundError")
                || l.contains("ImportError")
                || l.contains("SyntaxError")
        });
        if import_failed {
            match &self.program.python {
                Some(v) => message.push_str(&format!(
                    " (it ran on Python {v}; if it fails at import, pin another version the \
                     package supports, e.g. `python: \"3.10\"`)"
                )),
                None => message
                    .push_str(" (it failed at import: check the Python environment it runs in)"),
            }
        }
        Err(ConnectorError::Other(message))
    }

    /// `spec`: the connector's own config schema.
    pub fn spec(&self) -> Result<Value> {
        let mut spec = None;
        let (outcome, diag) = self.exchange(vec!["spec".into()], never(), |_, m, _| {
            if m.kind.as_deref() == Some("SPEC") {
                spec = m.spec;
            }
            Flow::Continue
        })?;
        self.verdict("spec", &outcome, &diag)?;
        spec.ok_or_else(|| self.missing("spec", "SPEC"))
    }

    /// `check`: Ok when the connector says SUCCEEDED.
    pub fn check(&self) -> Result<()> {
        let inputs = Inputs::new()?;
        let config = inputs.write("config.json", &self.config)?;
        let mut status = None;
        let (outcome, diag) = self.exchange(
            vec!["check".into(), "--config".into(), config.into()],
            never(),
            |_, m, _| {
                if m.kind.as_deref() == Some("CONNECTION_STATUS") {
                    status = m.connection_status;
                }
                Flow::Continue
            },
        )?;
        self.verdict("check", &outcome, &diag)?;
        let status = status.ok_or_else(|| self.missing("check", "CONNECTION_STATUS"))?;
        match status.get("status").and_then(Value::as_str) {
            Some("SUCCEEDED") => Ok(()),
            _ => Err(ConnectorError::Other(format!(
                "Airbyte connector `{}` check failed: {}",
                self.program.label(),
                self.redact(
                    status
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("no message; see the log")
                )
            ))),
        }
    }

    /// `discover`: the connector's catalog (its `streams` array).
    pub fn discover(&self) -> Result<Vec<Value>> {
        let inputs = Inputs::new()?;
        let config = inputs.write("config.json", &self.config)?;
        let mut catalog = None;
        let (outcome, diag) = self.exchange(
            vec!["discover".into(), "--config".into(), config.into()],
            never(),
            |_, m, _| {
                if m.kind.as_deref() == Some("CATALOG") {
                    catalog = m.catalog;
                }
                Flow::Continue
            },
        )?;
        self.verdict("discover", &outcome, &diag)?;
        let catalog = catalog.ok_or_else(|| self.missing("discover", "CATALOG"))?;
        match catalog.get("streams") {
            Some(Value::Array(streams)) => {
                if streams.is_empty() {
                    tracing::warn!(
                        connector = %self.program.label(),
                        "the connector's catalog has no streams at all: nothing can be synced; \
                         check its config (credentials that see nothing, no selected reports or \
                         tables…)"
                    );
                }
                Ok(streams.clone())
            }
            _ => Err(ConnectorError::Other(format!(
                "Airbyte connector `{}` discover: its CATALOG has no `streams` list",
                self.program.label()
            ))),
        }
    }

    fn missing(&self, what: &str, kind: &str) -> ConnectorError {
        ConnectorError::Other(format!(
            "Airbyte connector `{}` {what}: it exited without printing a {kind} message; is it \
             an Airbyte source?",
            self.program.label()
        ))
    }
}

/// A TRACE error as one line: the user-facing message, then the internal message and the end
/// of the stack trace when they add something (the CDK's message is often just "Something went
/// wrong in the connector", the cause being in `internal_message` and the trace's last line).
pub fn trace_error_text(
    message: Option<&str>,
    internal: Option<&str>,
    stack: Option<&str>,
) -> String {
    let mut text = message
        .or(internal)
        .unwrap_or("an error without a message")
        .to_string();
    if let (Some(internal), Some(_)) = (internal, message) {
        if !text.contains(internal) {
            text.push_str(&format!(" (internal message: {internal})"));
        }
    }
    if let Some(stack) = stack {
        let lines: Vec<&str> = stack
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let tail = &lines[lines.len().saturating_sub(STACK_TAIL_LINES)..];
        if !tail.is_empty() {
            let mut joined = tail.join(" | ");
            if joined.chars().count() > 600 {
                joined = joined.chars().take(600).collect::<String>() + "…";
            }
            text.push_str(&format!(" [stack trace, last lines: {joined}]"));
        }
    }
    text
}

fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn never() -> Box<dyn Fn() -> bool + Send> {
    Box::new(|| false)
}

fn humantime_secs(d: Duration) -> String {
    let secs = d.as_secs();
    if secs > 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else if secs > 0 {
        format!("{secs}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}
