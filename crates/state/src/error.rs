//! The state store's error type.

use std::path::PathBuf;

/// What went wrong in the state store. Messages name the database file and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The folder of the database file could not be created.
    #[error("cannot create the folder of the state database {}: {source}; check that `state.path` in weft.yaml points into a writable folder", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The database could not be opened or prepared.
    #[error("cannot open the state database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// A query failed.
    #[error("state database {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// The database was written by a newer weft.
    #[error("the state database {} has schema version {found}, newer than this weft supports ({supported}); upgrade weft", path.display())]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    /// Another run recorded progress for this stream since this run read it.
    #[error("state of stream `{key}` changed under this run (expected generation {}, found {}): another run recorded newer progress, so this one stops without overwriting it", fmt_gen(*expected), fmt_gen(*found))]
    Conflict {
        key: String,
        expected: Option<i64>,
        found: Option<i64>,
    },

    /// A run id that was never started.
    #[error("run `{run_id}` is not in the state database {}; call start_run first", path.display())]
    UnknownRun { path: PathBuf, run_id: String },

    /// An API token of that name exists already.
    #[error(
        "an API token named `{name}` exists already; choose another --name, or revoke it first"
    )]
    TokenNameTaken { name: String },

    /// A stored value could not be read back.
    #[error("the state database {} holds an invalid {what}: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
}

fn fmt_gen(generation: Option<i64>) -> String {
    match generation {
        Some(g) => g.to_string(),
        None => "none".to_string(),
    }
}

pub type StateResult<T> = Result<T, StateError>;
