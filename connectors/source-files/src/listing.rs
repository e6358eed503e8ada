//! Finding a stream's files: a walk of its folder, matched against its glob, sorted.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use globset::{GlobBuilder, GlobMatcher};
use weft_core::{ConnectorError, Result};

/// One matching file, as found when the read started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileEntry {
    /// Path relative to the stream's folder, with `/` separators: the `_file` column.
    pub rel: String,
    pub abs: PathBuf,
    pub size: u64,
    /// Last modification, µs since the epoch.
    pub modified_us: i64,
}

/// `*` stays within one folder; `**` crosses folders.
pub(crate) fn build_glob(glob: &str) -> std::result::Result<GlobMatcher, String> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid glob `{glob}`: {e}"))
}

/// The files under `root` matching `glob`, sorted by relative path.
///
/// Symbolic links are neither followed nor read, so nothing outside `root` is ever touched.
pub(crate) fn list_files(root: &Path, glob: &str) -> Result<Vec<FileEntry>> {
    let matcher = build_glob(glob).map_err(|e| ConnectorError::config("glob", e))?;
    let meta =
        std::fs::metadata(root).map_err(|e| ConnectorError::io("reading folder", root, e))?;
    if !meta.is_dir() {
        return Err(ConnectorError::io(
            "reading folder",
            root,
            std::io::Error::other("not a folder; `path` must name a folder"),
        ));
    }
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            let io = e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("file system loop"));
            ConnectorError::io("reading folder", path, io)
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let Some(rel_str) = rel.to_str() else {
            return Err(ConnectorError::io(
                "reading",
                entry.path(),
                std::io::Error::other("the file name is not valid UTF-8; rename it"),
            ));
        };
        let rel_str = rel_str.replace('\\', "/");
        if !matcher.is_match(&rel_str) {
            continue;
        }
        let meta = entry
            .metadata()
            .map_err(|e| ConnectorError::io("reading", entry.path(), e.into()))?;
        let modified_us = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        files.push(FileEntry {
            rel: rel_str,
            abs: entry.path().to_path_buf(),
            size: meta.len(),
            modified_us,
        });
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_relative_to_the_folder_sorted_and_star_stays_in_one_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("orders/old")).unwrap();
        for f in [
            "orders/b.csv",
            "orders/a.csv",
            "orders/old/c.csv",
            "orders/x.json",
        ] {
            std::fs::write(dir.path().join(f), "id\n1\n").unwrap();
        }
        let names = |glob| {
            list_files(dir.path(), glob)
                .unwrap()
                .into_iter()
                .map(|f| f.rel)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("orders/*.csv"), ["orders/a.csv", "orders/b.csv"]);
        assert_eq!(
            names("**/*.csv"),
            ["orders/a.csv", "orders/b.csv", "orders/old/c.csv"]
        );
        assert!(names("../**/*.csv").is_empty());
    }

    #[test]
    fn a_missing_folder_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = list_files(&missing, "*.csv").unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("reading folder {}", missing.display())),
            "{err}"
        );
    }
}
