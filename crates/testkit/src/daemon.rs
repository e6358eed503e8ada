//! Running `weft daemon` in a test: start it and wait until it is scheduling, and wait on the
//! run history (polled through `weft sync history --format json`, the way a user would look)
//! instead of sleeping.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::{Running, TestProject};

impl TestProject {
    /// Starts `weft daemon` with extra environment variables (a pausepoint, secrets) and waits
    /// for its "daemon started" line.
    pub fn start_daemon(&self, env: &[(&str, String)], limit: Duration) -> Running {
        let mut cmd = self.weft(["daemon"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut daemon = Running::spawn(cmd);
        daemon.wait_for_line("daemon started", limit);
        daemon
    }

    /// Starts `weft daemon --listen 127.0.0.1:0` (extra environment as for
    /// [`TestProject::start_daemon`]) and waits until it serves and schedules; returns it and
    /// the base URL (`http://127.0.0.1:PORT`) its log named.
    pub fn start_daemon_listening(
        &self,
        env: &[(&str, String)],
        limit: Duration,
    ) -> (Running, String) {
        let mut cmd = self.weft(["daemon", "--listen", "127.0.0.1:0"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut daemon = Running::spawn(cmd);
        let line = daemon.wait_for_line("HTTP API and catalog page on http://", limit);
        let base = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .map(|addr| format!("http://{addr}"))
            .unwrap_or_else(|| panic!("no address in {line}"));
        daemon.wait_for_line("daemon started", limit);
        (daemon, base)
    }

    /// Starts `weft daemon` with its streams held at pausepoint `point` until the returned
    /// file exists, and waits until one is held there.
    pub fn start_daemon_paused_at(&self, point: &str, limit: Duration) -> (Running, PathBuf) {
        let release = self.path().join(format!("release-{point}"));
        let spec = format!("{point}:{}", release.display());
        let mut daemon = self.start_daemon(&[("WEFT_PAUSEPOINT", spec)], limit);
        daemon.wait_for_line(&format!("pausepoint `{point}` reached"), limit);
        (daemon, release)
    }

    /// The run history, newest first (the last 10,000 runs).
    pub fn history(&self) -> Vec<serde_json::Value> {
        let out = self.run(["sync", "history", "--format", "json", "--limit", "10000"]);
        out.expect_code(0);
        serde_json::from_str(&out.stdout()).expect("history is JSON")
    }

    /// Polls the history until `done` holds for it, returning it; panics after `limit`.
    pub fn wait_for_history(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + limit;
        loop {
            let runs = if self.path().join(".weft/state.db").exists() {
                self.history()
            } else {
                Vec::new()
            };
            if done(&runs) {
                return runs;
            }
            if Instant::now() >= deadline {
                panic!("no history with {what} within {limit:?}; history: {runs:#?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The runs of `history` with this status (and trigger, when given), oldest first.
pub fn runs_with<'a>(
    history: &'a [serde_json::Value],
    status: &str,
    trigger: Option<&str>,
) -> Vec<&'a serde_json::Value> {
    let mut runs: Vec<&serde_json::Value> = history
        .iter()
        .filter(|r| r["status"] == status && trigger.is_none_or(|t| r["trigger"] == t))
        .collect();
    runs.reverse();
    runs
}
