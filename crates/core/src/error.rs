//! The error type connectors return.

use std::path::PathBuf;

/// What went wrong in a connector. Messages name the file, field or stream and say what to do;
/// they never hold secrets.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The config is invalid; `field` is a path such as `streams[0].glob` (empty for the root).
    #[error("invalid config{}: {message}", if field.is_empty() { String::new() } else { format!(" at `{field}`") })]
    Config {
        /// Where in the config, e.g. `streams[0].glob`.
        field: String,
        /// What is wrong and what to do, without the value.
        message: String,
    },

    /// A stream the product asked for does not exist in the source.
    #[error("stream `{0}` not found in the source; run `weft connector discover` to list streams")]
    StreamNotFound(String),

    /// A file could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`reading`, `creating`).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The data does not fit the expected schema (drift, bad values, unsupported types).
    #[error("{0}")]
    Schema(String),

    /// The connector cannot do what was asked.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// Arrow refused a batch or array (a schema mismatch while building one).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),

    /// Anything else, already worded for a user.
    #[error("{0}")]
    Other(String),
}

impl ConnectorError {
    /// An I/O error on `path` while doing `action` ("reading", "creating", …).
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// A config error at `field` (empty for the root).
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A result whose error is a [`ConnectorError`].
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;
