//! Run logs: the log lines of each run the daemon makes, kept in memory, bounded and with
//! secrets redacted, so the API (`GET …/runs/{run_id}/logs`) and the catalog page can show why
//! a run failed without a log collector.
//!
//! [`RunLogLayer`] is a `tracing` layer the binary installs next to its stderr formatter; it
//! files every event that happens inside a span carrying a `run_id` field (the engine's `run`
//! span), or that carries one itself, under that run. Until [`capture`] is called (by `weft
//! daemon`) it keeps nothing. Bounds: the latest [`RUNS`] runs; per run the first [`HEAD`]
//! and the latest [`TAIL`] lines (the start and the end, where failures are), each cut at
//! [`LINE_CHARS`] characters.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::Utc;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;
use weft_api::{LogLine, RunLogs};

/// Runs whose lines are kept; the oldest is forgotten first.
pub const RUNS: usize = 500;
/// Lines kept from the start of a run.
pub const HEAD: usize = 50;
/// Lines kept from the end of a run.
pub const TAIL: usize = 150;
/// Longest line kept (longer ones are cut, saying so).
pub const LINE_CHARS: usize = 2000;

type Redact = Box<dyn Fn(&str) -> String + Send + Sync>;

/// The kept lines of the latest runs.
pub struct RunLogStore {
    redact: Redact,
    runs: Mutex<Runs>,
}

#[derive(Default)]
struct Runs {
    by_id: HashMap<String, Kept>,
    /// Run ids, oldest first.
    order: VecDeque<String>,
}

#[derive(Default)]
struct Kept {
    head: Vec<LogLine>,
    tail: VecDeque<LogLine>,
    dropped: u64,
}

static STORE: OnceLock<Arc<RunLogStore>> = OnceLock::new();

/// Starts keeping run logs (once per process; later calls return the first store).
pub fn capture(redact: Redact) -> Arc<RunLogStore> {
    STORE
        .get_or_init(|| {
            Arc::new(RunLogStore {
                redact,
                runs: Mutex::default(),
            })
        })
        .clone()
}

impl RunLogStore {
    /// The kept lines of `run_id`, if any.
    pub fn get(&self, run_id: &str) -> Option<RunLogs> {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.by_id.get(run_id).map(|k| RunLogs {
            run_id: run_id.to_string(),
            lines: k.head.iter().chain(k.tail.iter()).cloned().collect(),
            dropped: k.dropped,
        })
    }

    fn push(&self, run_id: &str, mut line: LogLine) {
        line.message = (self.redact)(&line.message);
        if line.message.chars().count() > LINE_CHARS {
            line.message = line.message.chars().take(LINE_CHARS).collect::<String>() + " …(cut)";
        }
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if !runs.by_id.contains_key(run_id) {
            if runs.order.len() >= RUNS {
                if let Some(old) = runs.order.pop_front() {
                    runs.by_id.remove(&old);
                }
            }
            runs.order.push_back(run_id.to_string());
        }
        let kept = runs.by_id.entry(run_id.to_string()).or_default();
        if kept.head.len() < HEAD {
            kept.head.push(line);
            return;
        }
        if kept.tail.len() >= TAIL {
            kept.tail.pop_front();
            kept.dropped += 1;
        }
        kept.tail.push_back(line);
    }
}

/// The `tracing` layer that feeds the store [`capture`] started.
pub struct RunLogLayer;

/// The `run_id` and `stream` a span names, kept in its extensions.
#[derive(Default, Clone)]
struct SpanIds {
    run_id: Option<String>,
    stream: Option<String>,
}

impl Visit for SpanIds {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl SpanIds {
    fn record(&mut self, field: &Field, value: String) {
        match field.name() {
            "run_id" => self.run_id = Some(value),
            "stream" => self.stream = Some(value),
            _ => {}
        }
    }
}

/// An event's message and other fields, as `message k=v …`.
#[derive(Default)]
struct Message {
    ids: SpanIds,
    message: String,
    fields: String,
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "run_id" | "stream" => self.ids.record(field, format!("{value:?}")),
            name => {
                let _ = write!(self.fields, " {name}={value:?}");
            }
        }
    }
}

impl<S> Layer<S> for RunLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if STORE.get().is_none() {
            return;
        }
        let mut ids = SpanIds::default();
        attrs.record(&mut ids);
        if ids.run_id.is_some() || ids.stream.is_some() {
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(ids);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(store) = STORE.get() else {
            return;
        };
        let mut m = Message::default();
        event.record(&mut m);
        // The innermost span that names a run (or stream) decides, unless the event names it.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(ids) = span.extensions().get::<SpanIds>() {
                    if m.ids.run_id.is_none() {
                        m.ids.run_id.clone_from(&ids.run_id);
                    }
                    if m.ids.stream.is_none() {
                        m.ids.stream.clone_from(&ids.stream);
                    }
                }
            }
        }
        let Some(run_id) = m.ids.run_id else {
            return;
        };
        store.push(
            &run_id,
            LogLine {
                at: Utc::now(),
                level: event.metadata().level().as_str().to_ascii_lowercase(),
                stream: m.ids.stream,
                message: m.message + &m.fields,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    #[test]
    fn lines_of_a_run_are_kept_bounded_and_redacted() {
        let store = capture(Box::new(|t: &str| t.replace("hunter2", "***")));
        let subscriber = tracing_subscriber::registry().with(RunLogLayer);
        tracing::subscriber::with_default(subscriber, || {
            let run = tracing::info_span!("run", run_id = "r1");
            let _g = run.enter();
            tracing::info!("starting");
            {
                let stream = tracing::info_span!("stream", stream = "orders");
                let _s = stream.enter();
                tracing::error!(rows = 3, "password hunter2 refused");
            }
            for i in 0..(HEAD + TAIL + 10) {
                tracing::debug!("line {i}");
            }
            drop(_g);
            tracing::warn!(run_id = "r2", "outside the span, naming its run");
            tracing::info!("no run: not kept");
        });
        let r1 = store.get("r1").expect("r1 kept");
        assert_eq!(r1.lines.len(), HEAD + TAIL);
        assert_eq!(r1.dropped, 12);
        assert_eq!(r1.lines[0].message, "starting");
        assert_eq!(r1.lines[1].level, "error");
        assert_eq!(r1.lines[1].stream.as_deref(), Some("orders"));
        assert_eq!(r1.lines[1].message, "password *** refused rows=3");
        assert_eq!(
            r1.lines.last().unwrap().message,
            format!("line {}", HEAD + TAIL + 9)
        );
        let r2 = store.get("r2").expect("r2 kept");
        assert_eq!(r2.lines.len(), 1);
        assert_eq!(r2.lines[0].message, "outside the span, naming its run");
        assert!(store.get("nothing").is_none());
    }
}
