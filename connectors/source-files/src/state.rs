//! The files source's checkpoint state for one stream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::listing::FileEntry;

/// A file's identity for change detection: size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub size: u64,
    /// µs since the epoch.
    pub modified_us: i64,
}

impl FileStamp {
    pub(crate) fn of(file: &FileEntry) -> Self {
        Self {
            size: file.size,
            modified_us: file.modified_us,
        }
    }
}

/// A file partly read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InProgress {
    /// Path relative to the stream's folder.
    pub file: String,
    pub stamp: FileStamp,
    /// Data rows already yielded.
    pub rows: u64,
}

/// What has been read: files read completely (with their stamp then), the file in progress,
/// and whether the whole read completed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesState {
    pub done: BTreeMap<String, FileStamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<InProgress>,
    pub complete: bool,
}
