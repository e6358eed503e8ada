//! Failures at the edge: a message for people and an exit code for scripts.
//!
//! 0 success, 1 a sync (or a check) failed, 2 a usage or configuration error, 130 cancelled.

use std::fmt::Display;
use std::process::ExitCode;

use crate::logging;

#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// The user's configuration or invocation is wrong (exit 2).
    pub fn config(message: impl Display) -> Self {
        Self {
            code: 2,
            message: message.to_string(),
        }
    }

    /// Something failed while doing the work (exit 1).
    pub fn failed(message: impl Display) -> Self {
        Self {
            code: 1,
            message: message.to_string(),
        }
    }

    pub fn runtime(e: impl Display) -> Self {
        Self::failed(e)
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }

    pub fn print(&self) {
        eprintln!("error: {}", logging::redact(&self.message));
    }
}
