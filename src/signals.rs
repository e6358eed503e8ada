//! Ctrl-C (SIGINT) and SIGTERM during a sync run.
//!
//! SIGTERM is what systemd, Kubernetes, Airflow and cron wrappers send, so it is treated as
//! Ctrl-C: the run is cancelled, streams still reading stop and drop what they have not
//! committed, streams already publishing a complete read finish (the publication is one atomic
//! step: stopping it half-way would only waste it), the run is recorded and its summary
//! printed. The exit code says which signal stopped the run: 130 (SIGINT) or 143 (SIGTERM),
//! 128 + the signal's number as shells report it. A second signal stops at once, as a kill
//! would: nothing uncommitted becomes visible, and the next run resumes from the last commit
//! (the run is marked interrupted then).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weft_engine::{Phase, StreamProgress};

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// Listens for SIGINT and SIGTERM while a run executes.
pub struct Interrupts {
    received: Arc<AtomicI32>,
    task: JoinHandle<()>,
}

impl Interrupts {
    /// Cancels `cancel` on the first signal (saying what is being stopped and what finished),
    /// exits at once on the second.
    pub fn watch(cancel: CancellationToken, streams: Vec<Arc<StreamProgress>>) -> Self {
        let received = Arc::new(AtomicI32::new(0));
        // Registered here, before the run starts, not in the task: a signal that came before
        // the task first ran would otherwise still kill the process.
        let handlers = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        );
        let task = {
            let received = received.clone();
            tokio::spawn(async move {
                let (Ok(mut int), Ok(mut term)) = handlers else {
                    tracing::warn!("cannot listen for Ctrl-C and SIGTERM: a signal stops the run as a kill would (safely: the next run resumes)");
                    return;
                };
                let first = tokio::select! {
                    _ = int.recv() => SIGINT,
                    _ = term.recv() => SIGTERM,
                };
                received.store(first, Ordering::SeqCst);
                tracing::warn!("{}", stopping_message(first, &streams));
                cancel.cancel();
                let second = tokio::select! {
                    _ = int.recv() => SIGINT,
                    _ = term.recv() => SIGTERM,
                };
                eprintln!(
                    "weft: {} again: stopping at once; nothing uncommitted becomes visible and \
                     the next run resumes from the last commit",
                    name(second)
                );
                std::process::exit(128 + second);
            })
        };
        Self { received, task }
    }

    /// The exit code of a cancelled run: 130 after Ctrl-C, 143 after SIGTERM.
    pub fn exit_code(&self) -> u8 {
        match self.received.load(Ordering::SeqCst) {
            SIGTERM => 143,
            _ => 130,
        }
    }

    /// Whether a signal came.
    pub fn received(&self) -> bool {
        self.received.load(Ordering::SeqCst) != 0
    }

    /// Stops reacting to signals: the run is over.
    pub fn stop_listening(self) {
        self.task.abort();
    }
}

fn name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        _ => "interrupted (Ctrl-C)",
    }
}

/// What the first signal stops and what it lets finish.
fn stopping_message(signal: i32, streams: &[Arc<StreamProgress>]) -> String {
    let finishing: Vec<&str> = streams
        .iter()
        .filter(|s| s.phase() == Phase::Finishing)
        .map(|s| s.label.as_str())
        .collect();
    let stopping = streams
        .iter()
        .any(|s| !s.phase().is_done() && s.phase() != Phase::Finishing);
    let what = match signal {
        SIGTERM => "weft: SIGTERM received",
        _ => "weft: interrupted (Ctrl-C)",
    };
    let mut message = what.to_string();
    if !finishing.is_empty() {
        message.push_str(&format!(
            "; {} read completely and {} publishing it (one atomic step), which finishes first",
            finishing.join(", "),
            if finishing.len() == 1 { "is" } else { "are" }
        ));
    }
    if stopping {
        message.push_str(if finishing.is_empty() {
            "; stopping the streams and dropping their uncommitted data"
        } else {
            "; stopping the other streams and dropping their uncommitted data"
        });
    }
    message.push_str("… (again to stop at once)");
    message
}
