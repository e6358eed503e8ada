//! [`PolicyError`]: what is wrong with the policy or a domain's rules.

use weft_mesh::{Position, ProjectError};

/// A policy that cannot be used. Messages never hold key values.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{at}: {message}")]
    Invalid { at: Box<Position>, message: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl PolicyError {
    pub(crate) fn invalid(at: Position, message: impl Into<String>) -> Self {
        Self::Invalid {
            at: Box::new(at),
            message: message.into(),
        }
    }
}

impl From<ProjectError> for PolicyError {
    fn from(e: ProjectError) -> Self {
        match e {
            ProjectError::Invalid { at, message } => Self::Invalid { at, message },
            other => Self::Io {
                path: String::new(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}
