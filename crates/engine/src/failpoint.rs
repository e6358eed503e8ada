//! Crash injection for tests of the checkpoint protocol.
//!
//! `WEFT_FAILPOINT=name` (or `name:N`, the N-th hit) aborts the process at the named point, as a
//! SIGKILL would, so end-to-end tests can crash `weft` exactly between two steps of a commit.
//! Unset, a hit costs one relaxed atomic load.
//!
//! `WEFT_PAUSEPOINT=name:FILE` pauses the stream that reaches the named point (each time)
//! until FILE exists, after saying so on stderr, so a test can act (send a signal) while a run
//! is exactly there instead of guessing with sleeps. `name@N:FILE` pauses from the N-th hit on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Armed {
    name: String,
    at_hit: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("WEFT_FAILPOINT").ok()?;
            let (name, at_hit) = match spec.split_once(':') {
                Some((name, n)) => (name.to_string(), n.parse().ok()?),
                None => (spec, 1),
            };
            Some(Armed {
                name,
                at_hit,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Aborts the process if the failpoint `name` is armed and this is its chosen hit.
pub fn hit(name: &str) {
    if let Some(armed) = armed() {
        if armed.name == name && armed.hits.fetch_add(1, Ordering::Relaxed) + 1 == armed.at_hit {
            eprintln!("weft: failpoint `{name}` hit: aborting");
            std::process::abort();
        }
    }
}

struct Pausepoint {
    name: String,
    from_hit: u64,
    hits: AtomicU64,
    release: std::path::PathBuf,
}

fn pausepoint() -> Option<&'static Pausepoint> {
    static PAUSE: OnceLock<Option<Pausepoint>> = OnceLock::new();
    PAUSE
        .get_or_init(|| {
            let spec = std::env::var("WEFT_PAUSEPOINT").ok()?;
            let (point, file) = spec.split_once(':')?;
            let (name, from_hit) = match point.split_once('@') {
                Some((name, n)) => (name.to_string(), n.parse().ok()?),
                None => (point.to_string(), 1),
            };
            Some(Pausepoint {
                name,
                from_hit,
                hits: AtomicU64::new(0),
                release: file.into(),
            })
        })
        .as_ref()
}

/// Waits at the pausepoint `name` until its release file exists, if it is armed (and this is
/// its chosen hit or a later one).
pub async fn pause(name: &str) {
    let Some(point) = pausepoint() else {
        return;
    };
    if point.name != name || point.hits.fetch_add(1, Ordering::Relaxed) + 1 < point.from_hit {
        return;
    }
    eprintln!("weft: pausepoint `{name}` reached");
    while !point.release.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
