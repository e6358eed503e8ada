//! Log setup: text or JSON lines on stderr, scrubbed of every secret the project loaded.

use std::io::{self, Write};
use std::sync::{Mutex, RwLock};

use indicatif::MultiProgress;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;
use weft_mesh::Redactor;

use crate::cli::LogFormat;

/// Replaced when `weft daemon` reloads a project with other secrets.
static REDACTOR: RwLock<Option<Redactor>> = RwLock::new(None);

/// While a live progress display is drawn, log lines are printed above it rather than
/// through it.
static PROGRESS: Mutex<Option<MultiProgress>> = Mutex::new(None);

pub fn route_logs_through(multi: MultiProgress) {
    if let Ok(mut p) = PROGRESS.lock() {
        *p = Some(multi);
    }
}

pub fn stop_routing_logs() {
    if let Ok(mut p) = PROGRESS.lock() {
        *p = None;
    }
}

/// Registers the project's secrets: from now on they are scrubbed from logs and errors.
pub fn set_redactor(redactor: Redactor) {
    if let Ok(mut r) = REDACTOR.write() {
        *r = Some(redactor);
    }
}

/// Adds the secrets of a reloaded project: the old ones stay scrubbed too (they may still
/// appear in errors of runs that started before the reload).
pub fn add_redactor(redactor: Redactor) {
    if let Ok(mut r) = REDACTOR.write() {
        *r = Some(match r.take() {
            Some(old) => old.merged(redactor),
            None => redactor,
        });
    }
}

/// `text` with every known secret replaced.
pub fn redact(text: &str) -> String {
    match REDACTOR.read().ok().as_deref() {
        Some(Some(r)) => r.redact(text),
        _ => text.to_string(),
    }
}

pub fn init(format: LogFormat, verbose: u8, quiet: bool) {
    let default = match verbose {
        _ if quiet => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("WEFT_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(RedactingStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
        .with_target(false);
    let fmt = match format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
    };
    // The daemon keeps each run's lines for its API (a no-op until `weft daemon` starts it),
    // at info and above whatever the stderr filter says.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(weft_daemon::logs::RunLogLayer.with_filter(LevelFilter::INFO))
        .try_init();
}

/// A stderr writer that scrubs secrets from each formatted event before it is written.
struct RedactingStderr;

struct LineBuffer(Vec<u8>);

impl Write for LineBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let text = redact(&text);
        let progress = PROGRESS.lock().ok().and_then(|p| p.clone());
        match progress {
            Some(multi) => {
                let _ = multi.println(text.trim_end());
            }
            None => {
                let _ = io::stderr().write_all(text.as_bytes());
            }
        }
    }
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = LineBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        LineBuffer(Vec::with_capacity(256))
    }
}
