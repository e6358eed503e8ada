//! [`ProjectError`]: what is wrong with a project, worded for the person editing it.

use std::fmt;
use std::path::PathBuf;

/// Where in a project file something is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Relative to the project folder.
    pub file: PathBuf,
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// A field path such as `streams[1].write`; empty for the whole file.
    pub field: String,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        Ok(())
    }
}

/// What is wrong with a project. Messages never hold secret values.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// No `weft.yaml` in the start folder or above.
    #[error("no weft.yaml found in {} or any folder above it; run `weft init DIR` to create a project, or pass `--project DIR`", start.display())]
    NotFound { start: PathBuf },

    /// The folder given as project root holds no `weft.yaml`.
    #[error("{} has no weft.yaml, so it is not a weft project; run `weft init {}` to create one, or pass `--project DIR` with a project folder", root.display(), root.display())]
    MissingConfig { root: PathBuf },

    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A project file is invalid.
    #[error("{at}: {message}")]
    Invalid { at: Box<Position>, message: String },

    /// A selector given on the command line is malformed or names nothing.
    #[error("selector `{selector}`: {message}")]
    Selector { selector: String, message: String },
}

impl ProjectError {
    pub(crate) fn invalid(at: Position, message: impl Into<String>) -> Self {
        Self::Invalid {
            at: Box::new(at),
            message: message.into(),
        }
    }

    /// Where in which file, for invalid project files.
    pub fn position(&self) -> Option<&Position> {
        match self {
            Self::Invalid { at, .. } => Some(at),
            _ => None,
        }
    }
}
