//! Measuring a benchmark's commands: wall time and the command's own peak RSS, at its end or
//! while it runs.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Runs `cmd` to its end with stdout and stderr captured in files of `dir`: its wall time in
/// seconds and its own peak RSS in MiB (from `wait4`, so earlier children do not count, unlike
/// `getrusage(RUSAGE_CHILDREN)`, which keeps the maximum over all of them).
#[allow(clippy::zombie_processes)] // reaped by `wait4`, which std cannot know
pub fn run_measured(mut cmd: Command, dir: &Path) -> (f64, f64) {
    let (out, err) = (dir.join("stdout.txt"), dir.join("stderr.txt"));
    cmd.stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"));
    let start = Instant::now();
    let child = cmd.spawn().expect("run weft");
    let mut status = 0;
    // SAFETY: wait4 only writes into the two values we hand it; it reaps the child, which the
    // `Child` handle never waits for afterwards.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "weft failed:\n{}\n{}",
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    (secs, usage.ru_maxrss as f64 / 1024.0) // KiB on Linux
}

/// The peak RSS in MiB (`VmHWM`) of the live process `pid` so far, for a process measured
/// before it ends (a `--follow` run, a daemon); NaN when it cannot be read.
pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}
