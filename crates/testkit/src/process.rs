//! A running `weft` whose stderr a test watches line by line, so it can act (send a signal)
//! when the run is observably somewhere (a log line) instead of after a guessed sleep; and
//! deadlines, so a test of a hang fails instead of hanging itself.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Outcome;

/// A spawned `weft` with its stderr read on a thread.
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
    stdout_reader: Option<JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Spawns `cmd` with stdout and stderr piped.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weft");
        let (tx, lines) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("piped stderr");
        let all = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                all.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut out = child.stdout.take().expect("piped stdout");
        let stdout_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        Self {
            child,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
            stdout_reader: Some(stdout_reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `needle`; panics with what was printed if the
    /// process ends first or `limit` (a safety net, not a timing assumption) passes.
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "no stderr line with `{needle}` within {limit:?}; stderr so far:\n{}",
                        self.stderr.lock().unwrap()
                    );
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "weft ended without printing `{needle}`; stderr:\n{}",
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Waits until the run reaches the armed pausepoint `point` (`WEFT_PAUSEPOINT`), then
    /// SIGKILLs it there, as a crash would be: its outcome.
    pub fn kill_at(mut self, point: &str, limit: Duration) -> Outcome {
        self.wait_for_line(&format!("pausepoint `{point}` reached"), limit);
        self.signal(libc::SIGKILL);
        self.finish(limit)
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal}) failed");
    }

    /// Waits for the process to end (killing it after `limit`, then panicking).
    pub fn finish(mut self, limit: Duration) -> Outcome {
        let status = wait_within(&mut self.child, limit, || {
            self.stderr.lock().unwrap().clone()
        });
        if let Some(r) = self.stderr_reader.take() {
            let _ = r.join();
        }
        let stdout = self
            .stdout_reader
            .take()
            .map(|r| r.join().unwrap_or_default())
            .unwrap_or_default();
        let stderr = self.stderr.lock().unwrap().clone().into_bytes();
        Outcome(Output {
            status,
            stdout,
            stderr,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion within `limit`; a process still running then is killed and the
/// test fails, showing its stderr.
pub fn run_within(cmd: Command, limit: Duration) -> Outcome {
    Running::spawn(cmd).finish(limit)
}

fn wait_within(
    child: &mut Child,
    limit: Duration,
    stderr: impl Fn() -> String,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for weft") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "weft did not finish within {limit:?}; stderr:\n{}",
                stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A TCP server on loopback that accepts connections and never answers: what a PostgreSQL
/// `host:port` that is really a hung proxy or another service looks like.
pub struct SilentServer {
    pub port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentServer {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
