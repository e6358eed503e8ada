//! Running a connector: its input files in a private temp dir, stdout read line by line, stderr
//! captured into the log, and a watchdog that kills it when it stalls or nobody reads anymore.
//!
//! A connector runs in its own process group, which is killed on every way out (it ended, it
//! stalled, the read was dropped, weft panicked), so helpers it started die with it; and it
//! asks the kernel to kill it when weft itself dies (a parent-death signal), so a `kill -9` of
//! weft leaves no connector behind. The temp dirs holding a config (secrets) are 0700, and
//! those a killed weft left behind are removed by the next run (see [`sweep_stale_inputs`]).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weft_core::{ConnectorError, Result};

use crate::redact::Redactor;

/// How many stderr lines are kept for error messages.
const STDERR_TAIL: usize = 20;

/// The connector to run: an executable plus leading arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub argv: Vec<String>,
    /// The Python version of a package's virtualenv, for hints on import errors.
    pub python: Option<String>,
    /// Where it runs: the project folder, so relative paths in `command` work.
    pub cwd: Option<PathBuf>,
}

impl Program {
    /// A short name for messages (`source-faker`).
    pub fn label(&self) -> String {
        let first = self.argv.first().map(String::as_str).unwrap_or("?");
        let base = std::path::Path::new(first)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| first.to_string());
        match self.argv.get(1) {
            Some(script) if base.starts_with("python") => format!("{base} {script}"),
            _ => base,
        }
    }
}

/// The prefix of the temp dirs holding a connector's inputs.
const INPUTS_PREFIX: &str = "weft-airbyte-";
/// The file in an inputs dir that its live owner holds locked.
const OWNER_LOCK: &str = ".owner.lock";
/// Inputs dirs of older weft versions have no owner lock: removed once they are this old.
const LOCKLESS_MAX_AGE: Duration = Duration::from_secs(3600);
/// The only entries an inputs dir ever holds. A dir holding anything else is not ours, whatever
/// its name (a user's `/tmp/weft-airbyte-cache` was once swept with all it held).
const INPUT_FILES: [&str; 4] = [OWNER_LOCK, "config.json", "catalog.json", "state.json"];

/// Input files (config, catalog, state) in a private temp dir, removed on drop.
pub struct Inputs {
    dir: tempfile::TempDir,
    /// Locked while this process lives: a dir whose lock can be taken has lost its owner.
    _owner: std::fs::File,
}

impl Inputs {
    pub fn new() -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        sweep_stale_inputs_once();
        // 0700 explicitly: configs hold secrets, and the default follows the umask (0755).
        let dir = tempfile::Builder::new()
            .prefix(INPUTS_PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(|e| ConnectorError::io("creating", std::env::temp_dir(), e))?;
        let lock_path = dir.path().join(OWNER_LOCK);
        let owner = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| ConnectorError::io("creating", &lock_path, e))?;
        owner
            .lock()
            .map_err(|e| ConnectorError::io("locking", &lock_path, e))?;
        Ok(Self { dir, _owner: owner })
    }

    /// Writes `value` as `name` (mode 0600) and returns its path.
    pub fn write(&self, name: &str, value: &serde_json::Value) -> Result<PathBuf> {
        use std::io::Write;
        let path = self.dir.path().join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| ConnectorError::io("creating", &path, e))?;
        file.write_all(&serde_json::to_vec(value).expect("JSON serialises"))
            .map_err(|e| ConnectorError::io("writing", &path, e))?;
        Ok(path)
    }
}

fn sweep_stale_inputs_once() {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        let removed = sweep_stale_inputs(&std::env::temp_dir());
        if removed > 0 {
            tracing::info!(
                removed,
                "removed connector input folders that a killed weft left behind"
            );
        }
    });
}

/// Removes the inputs dirs under `temp` whose owner is gone (their owner lock can be taken) or,
/// for dirs without one, that are older than an hour; returns how many it removed. A weft
/// killed with SIGKILL cannot clean up, and these dirs hold connector configs with secrets.
pub fn sweep_stale_inputs(temp: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(INPUTS_PREFIX) {
            continue;
        }
        let path = entry.path();
        // Never follow a symlink someone planted in a shared temp dir.
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            _ => continue,
        }
        if !holds_only_inputs(&path) {
            continue;
        }
        let stale = match std::fs::OpenOptions::new()
            .write(true)
            .open(path.join(OWNER_LOCK))
        {
            // The lock goes with its file when the dir is removed.
            Ok(lock) => lock.try_lock().is_ok(),
            Err(_) => std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > LOCKLESS_MAX_AGE),
        };
        if stale && std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether every entry of `dir` is a plain file weft writes into an inputs dir.
fn holds_only_inputs(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.into_iter().all(|entry| {
        entry.is_ok_and(|e| {
            e.file_type().is_ok_and(|t| t.is_file())
                && INPUT_FILES.iter().any(|f| e.file_name() == *f)
        })
    })
}

/// Makes `command` start in its own process group and die with the thread that starts it
/// (the parent-death signal follows the spawning thread, which here always waits for it).
pub fn contain(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid before the fork; prctl, getppid and _exit are async-signal-safe and
        // touch no memory of the parent.
        let parent = unsafe { libc::getpid() };
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the signal was armed.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
}

/// Kills the process group a [`contain`]ed child leads (the child and everything it started).
pub fn kill_group(pid: u32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
}

/// Kills a child's process group when dropped: on every way out of [`run`], a panic included.
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// Whether to keep reading after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub status: Option<ExitStatus>,
    /// The watchdog killed it: no output for longer than the timeout.
    pub stalled: bool,
    /// Killed because the reader went away or `on_line` asked to stop.
    pub stopped: bool,
    /// Lines read from stdout.
    pub lines: u64,
    /// The last stderr lines, redacted.
    pub stderr_tail: Vec<String>,
}

struct Watch {
    last: Mutex<Instant>,
    busy: AtomicBool,
    done: AtomicBool,
    stalled: AtomicBool,
    stopped: AtomicBool,
}

/// Runs `program args…`, handing each stdout line (1-based number, bytes without the line
/// end) to `on_line`. `abandoned` is polled by the watchdog: when it says yes, the connector is
/// killed. Time spent inside `on_line` (waiting for the engine) never counts as a stall.
pub fn run(
    program: &Program,
    args: &[OsString],
    timeout: Duration,
    redactor: &Redactor,
    abandoned: Box<dyn Fn() -> bool + Send>,
    mut on_line: impl FnMut(u64, &[u8]) -> Flow,
) -> Result<Outcome> {
    let label = program.label();
    let mut command = Command::new(&program.argv[0]);
    if let Some(dir) = &program.cwd {
        command.current_dir(dir);
    }
    contain(&mut command);
    let mut child = command
        .args(&program.argv[1..])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("PYTHONUNBUFFERED", "1")
        .spawn()
        .map_err(|e| {
            ConnectorError::Other(format!(
                "cannot run the Airbyte connector `{}`: {e}; check that `command` names an \
                 installed executable",
                program.argv[0]
            ))
        })?;
    let group = GroupGuard(child.id());
    let stdout = child.stdout.take().expect("piped stdout");
    widen_pipe(&stdout);
    let stderr = child.stderr.take().expect("piped stderr");
    let child = Arc::new(Mutex::new(child));

    let tail = Arc::new(Mutex::new(VecDeque::<String>::new()));
    let (stderr_done_tx, stderr_done) = std::sync::mpsc::channel::<()>();
    {
        let tail = tail.clone();
        let redactor = redactor.clone();
        let label = label.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = redactor.redact(String::from_utf8_lossy(&line).trim_end());
                line.clear();
                if text.trim().is_empty() {
                    continue;
                }
                tracing::info!(connector = %label, "stderr: {text}");
                let mut tail = tail.lock().expect("stderr tail lock");
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(text);
            }
            let _ = stderr_done_tx.send(());
        });
    }

    let watch = Arc::new(Watch {
        last: Mutex::new(Instant::now()),
        busy: AtomicBool::new(false),
        done: AtomicBool::new(false),
        stalled: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
    });
    let watchdog = {
        let watch = watch.clone();
        let child = child.clone();
        let pid = group.0;
        let tick = (timeout / 10).clamp(Duration::from_millis(10), Duration::from_millis(250));
        std::thread::spawn(move || {
            let mut exited = false;
            while !watch.done.load(Ordering::SeqCst) {
                std::thread::sleep(tick);
                // A helper the connector left behind may hold stdout open: once the connector
                // itself has exited, its group goes, so the read sees the end of its output.
                if !exited {
                    let status = child.lock().expect("child lock").try_wait();
                    if let Ok(Some(_)) = status {
                        exited = true;
                        kill_group(pid);
                    }
                }
                let idle = watch.last.lock().expect("watch lock").elapsed();
                let stalled = !watch.busy.load(Ordering::SeqCst) && idle > timeout;
                let gone = abandoned();
                if (stalled || gone) && !watch.done.load(Ordering::SeqCst) {
                    let flag = if stalled {
                        &watch.stalled
                    } else {
                        &watch.stopped
                    };
                    flag.store(true, Ordering::SeqCst);
                    kill_group(pid);
                    let _ = child.lock().expect("child lock").kill();
                    return;
                }
            }
        })
    };

    let mut reader = BufReader::with_capacity(1 << 20, stdout);
    let mut line = Vec::with_capacity(64 * 1024);
    let mut lines = 0u64;
    let mut read_error = None;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                read_error = Some(e);
                break;
            }
        }
        lines += 1;
        *watch.last.lock().expect("watch lock") = Instant::now();
        let mut end = line.len();
        while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        if line[..end].iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        watch.busy.store(true, Ordering::SeqCst);
        let flow = on_line(lines, &line[..end]);
        watch.busy.store(false, Ordering::SeqCst);
        *watch.last.lock().expect("watch lock") = Instant::now();
        if flow == Flow::Stop {
            watch.stopped.store(true, Ordering::SeqCst);
            kill_group(group.0);
            let _ = child.lock().expect("child lock").kill();
            break;
        }
    }
    // The watchdog keeps running until the connector has exited, so a connector that closes
    // stdout but never exits is killed too.
    let status = loop {
        if let Some(status) = child
            .lock()
            .expect("child lock")
            .try_wait()
            .map_err(|e| ConnectorError::Other(format!("waiting for `{label}` failed: {e}")))?
        {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    watch.done.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    // Helpers the connector left running die with their group (they may hold stderr open).
    drop(group);
    // A grandchild outside the group may hold stderr open; do not wait for it forever.
    let _ = stderr_done.recv_timeout(Duration::from_secs(2));
    if let Some(e) = read_error {
        tracing::warn!(connector = %label, "reading the connector's output failed: {e}");
    }
    let stderr_tail = tail
        .lock()
        .expect("stderr tail lock")
        .iter()
        .cloned()
        .collect();
    Ok(Outcome {
        status: Some(status),
        stalled: watch.stalled.load(Ordering::SeqCst),
        stopped: watch.stopped.load(Ordering::SeqCst),
        lines,
        stderr_tail,
    })
}

/// Enlarges the stdout pipe so it holds about 1,700 records while weft is busy with a batch
/// (Linux's default, 64 KiB, holds about a hundred): a full pipe stalls the connector. Best
/// effort: the system may cap pipe sizes lower.
#[cfg(target_os = "linux")]
fn widen_pipe(stdout: &std::process::ChildStdout) {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a pipe fd this process owns, with an integer argument.
    unsafe {
        libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}

#[cfg(not(target_os = "linux"))]
fn widen_pipe(_stdout: &std::process::ChildStdout) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn inputs_are_private_and_only_ownerless_ones_are_swept() {
        let inputs = Inputs::new().unwrap();
        let path = inputs
            .write("config.json", &serde_json::json!({"k": 1}))
            .unwrap();
        let dir = path.parent().unwrap().to_path_buf();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);

        let temp = tempfile::tempdir().unwrap();
        // A dir whose owner died: its lock file is there, unlocked.
        let dead = temp.path().join(format!("{INPUTS_PREFIX}dead"));
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(OWNER_LOCK), "").unwrap();
        std::fs::write(dead.join("config.json"), "{}").unwrap();
        // A live owner holds its lock.
        let live = temp.path().join(format!("{INPUTS_PREFIX}live"));
        std::fs::create_dir(&live).unwrap();
        let held = std::fs::File::create(live.join(OWNER_LOCK)).unwrap();
        held.lock().unwrap();
        // A recent dir of an older weft (no lock), and something else.
        let recent = temp.path().join(format!("{INPUTS_PREFIX}old-version"));
        std::fs::create_dir(&recent).unwrap();
        let other = temp.path().join("someone-else");
        std::fs::create_dir(&other).unwrap();
        // Someone's own folder that happens to share the prefix, old and lockless, or with a
        // lock file beside their data: never ours to remove.
        let theirs = temp.path().join(format!("{INPUTS_PREFIX}sweep-cache"));
        std::fs::create_dir_all(theirs.join("results")).unwrap();
        std::fs::write(theirs.join("config.json"), "{}").unwrap();
        let old = std::time::SystemTime::now() - 2 * LOCKLESS_MAX_AGE;
        std::fs::File::open(&theirs)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let locked_theirs = temp.path().join(format!("{INPUTS_PREFIX}notes"));
        std::fs::create_dir(&locked_theirs).unwrap();
        std::fs::write(locked_theirs.join(OWNER_LOCK), "").unwrap();
        std::fs::write(locked_theirs.join("notes.txt"), "mine").unwrap();
        assert_eq!(sweep_stale_inputs(temp.path()), 1);
        assert!(!dead.exists());
        assert!(live.exists() && recent.exists() && other.exists());
        assert!(theirs.join("results").exists() && locked_theirs.join("notes.txt").exists());
        drop(held);
        // A sibling test forking a subprocess shares the lock's open file until its exec, so
        // the released lock may take a moment to be free.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while sweep_stale_inputs(temp.path()) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!live.exists());
    }
}
