//! stdout and stderr that never panic.
//!
//! std's `println!` panics when stdout is a pipe whose reader has gone
//! (`weft sync status --format json | head -1`), with a backtrace. This module's `println!`,
//! `print!`, `eprintln!` and `eprint!` replace std's in every module of the binary (they are
//! declared before the other modules, and a `macro_rules!` macro shadows the prelude's), so
//! there is one place that handles a closed pipe for every command, present and future.
//!
//! **Decision:** a closed stdout is handled here rather than by restoring the default SIGPIPE
//! action (which makes the kernel kill the process at the write, as `cat` dies). A signal death
//! would also strike a `weft sync run | head` in the middle of its run (skipping its clean stop
//! and its run record) and any write to a socket or a subprocess pipe. Here, once stdout is
//! closed, further output is dropped and the command finishes its work and exits with its own
//! code, quietly. Any other write error (a full disk behind `> file`) is reported once on
//! stderr and turns a success into exit code 1: output is never silently lost.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The reader of stdout went away: drop what follows.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// The first write error on stdout that was not a closed pipe.
static STDOUT_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Writes to stdout, optionally with a line end; never panics.
pub fn write_out(args: fmt::Arguments<'_>, newline: bool) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    let result = out
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    if let Err(e) = result {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != io::ErrorKind::BrokenPipe {
            if let Ok(mut first) = STDOUT_ERROR.lock() {
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Writes to stderr, optionally with a line end; never panics (a closed stderr loses the
/// message: there is nowhere left to say so).
pub fn write_err(args: fmt::Arguments<'_>, newline: bool) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| {
        if newline {
            err.write_all(b"\n")
        } else {
            Ok(())
        }
    });
}

/// A write to stdout that failed for another reason than a closed pipe, if any.
pub fn stdout_error() -> Option<String> {
    STDOUT_ERROR.lock().ok().and_then(|e| e.clone())
}

macro_rules! println {
    () => {
        $crate::stdio::write_out(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::stdio::write_out(format_args!($($arg)*), true)
    };
}

#[allow(unused_macros)]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::stdio::write_out(format_args!($($arg)*), false)
    };
}

macro_rules! eprintln {
    () => {
        $crate::stdio::write_err(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::stdio::write_err(format_args!($($arg)*), true)
    };
}

#[allow(unused_macros)]
macro_rules! eprint {
    ($($arg:tt)*) => {
        $crate::stdio::write_err(format_args!($($arg)*), false)
    };
}
