//! Where things live in the lake, and the small file-system steps that make commits durable.
//!
//! ```text
//! <root>/<domain>/<product>/
//!     <stream> -> _weft/<stream>/v<version>-<id>   the published version (a symlink readers follow)
//!     _weft/<stream>/                              the stream's home (see `home_dir`)
//!         v<version>-<id>/part-*.parquet           a version's data files (hard links)
//!         v<version>-<id>/_weft/manifest.json      its commit record
//!         staging/                                 files not yet committed
//!         staging/<generation>/                    a generation in progress (overwrite, append_dedup)
//!         lock                                     held by the one writer of the stream
//! ```
//!
//! See [`crate::versions`] for why readers see versions through one symlink.

use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

use weft_core::{ConnectorError, DomainName, ProductName, Result, StreamName};

pub(crate) const WEFT_DIR: &str = "_weft";
pub(crate) const STAGING_DIR: &str = "staging";
pub(crate) const MANIFEST: &str = "manifest.json";
pub(crate) const MANIFEST_TMP: &str = "manifest.json.tmp";
pub(crate) const LOCK: &str = "lock";

/// What users should look at when the lake folder cannot be used.
pub(crate) const PATH_HINT: &str = "check the lake `path` in the product's destination config";

/// The folder of one stream's product table.
pub fn stream_dir(
    root: &Path,
    domain: &DomainName,
    product: &ProductName,
    stream: &StreamName,
) -> PathBuf {
    root.join(domain.as_str())
        .join(product.as_str())
        .join(stream.as_str())
}

/// Names are validated types, so this cannot fail today; it guards against a future name rule
/// change letting a path escape the lake.
pub(crate) fn ensure_under(root: &Path, dir: &Path) -> Result<()> {
    let rest = dir.strip_prefix(root).ok();
    let inside = rest.is_some_and(|rest| {
        rest.components().count() == 3
            && rest.components().all(|c| matches!(c, Component::Normal(_)))
    });
    if inside {
        Ok(())
    } else {
        Err(ConnectorError::Other(format!(
            "stream folder {} is not inside the lake root {}; domain, product and stream names \
             must be plain folder names",
            dir.display(),
            root.display()
        )))
    }
}

pub(crate) fn weft_dir(stream_dir: &Path) -> PathBuf {
    stream_dir.join(WEFT_DIR)
}

/// The folder weft keeps a stream's versions, staging and lock in: `<product>/_weft/<stream>/`.
/// It lies beside the stream path, not under it, because the stream path is the symlink that
/// is replaced at each publish.
pub(crate) fn home_dir(stream_dir: &Path) -> PathBuf {
    let name = stream_dir.file_name().unwrap_or_default();
    match stream_dir.parent() {
        Some(product) => product.join(WEFT_DIR).join(name),
        None => PathBuf::from(WEFT_DIR).join(name),
    }
}

pub(crate) fn staging_dir(stream_dir: &Path) -> PathBuf {
    home_dir(stream_dir).join(STAGING_DIR)
}

pub(crate) fn generation_dir(stream_dir: &Path, generation: &str) -> PathBuf {
    staging_dir(stream_dir).join(generation)
}

/// `part-<seq:06>-<uuid>.parquet`.
pub(crate) fn part_name(seq: u64) -> String {
    format!("part-{seq:06}-{}.parquet", uuid::Uuid::new_v4())
}

/// Whether `name` looks like a data file weft wrote (only those are ever deleted by recovery).
pub(crate) fn is_part_file(name: &str) -> bool {
    part_seq(name).is_some()
}

/// The sequence number of a data file name.
pub(crate) fn part_seq(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (seq, _uuid) = rest.split_once('-')?;
    seq.parse().ok()
}

/// A file name from a manifest must be one plain component: a tampered manifest must never
/// make recovery or compaction touch files outside the stream folder.
pub(crate) fn is_plain_file_name(name: &str) -> bool {
    let mut components = Path::new(name).components();
    matches!(components.next(), Some(Component::Normal(_))) && components.next().is_none()
}

/// An I/O error on the lake, with the hint users need when the folder itself is the problem.
pub(crate) fn lake_io(action: &'static str, path: &Path, err: io::Error) -> ConnectorError {
    ConnectorError::io(
        action,
        path,
        io::Error::new(err.kind(), format!("{err}; {PATH_HINT}")),
    )
}

/// Makes renames and new entries in `dir` durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| ConnectorError::io("syncing folder", dir, e))
}

pub(crate) fn create_dirs(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| lake_io("creating", dir, e))
}

pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| ConnectorError::io("moving", from, e))
}

/// Removes a file; one already gone is fine (recovery may run twice).
pub(crate) fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(ConnectorError::io("removing", path, e))
        }
        _ => Ok(()),
    }
}

pub(crate) fn remove_dir_all(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(ConnectorError::io("removing", path, e))
        }
        _ => Ok(()),
    }
}

/// The entries of a folder as (name, is_dir); names that are not UTF-8 are not weft's and are
/// skipped.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<(String, bool)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ConnectorError::io("listing", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ConnectorError::io("listing", dir, e))?;
        let is_dir = entry
            .file_type()
            .map_err(|e| ConnectorError::io("listing", entry.path(), e))?
            .is_dir();
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, is_dir));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_round_trip() {
        let name = part_name(42);
        assert!(name.starts_with("part-000042-"), "{name}");
        assert_eq!(part_seq(&name), Some(42));
        assert!(!is_part_file("notes.parquet"));
        assert!(!is_part_file("part-x-y.parquet"));
    }

    #[test]
    fn manifest_names_must_be_plain() {
        assert!(is_plain_file_name("part-000001-a.parquet"));
        for bad in ["../x.parquet", "/etc/passwd", "a/b", "", ".."] {
            assert!(!is_plain_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn stream_dir_stays_under_root() {
        let root = Path::new("/lake");
        let dir = stream_dir(
            root,
            &DomainName::new("finance").unwrap(),
            &ProductName::new("revenue").unwrap(),
            &StreamName::new("orders").unwrap(),
        );
        assert_eq!(dir, Path::new("/lake/finance/revenue/orders"));
        assert_eq!(
            home_dir(&dir),
            Path::new("/lake/finance/revenue/_weft/orders")
        );
        assert_eq!(
            staging_dir(&dir),
            Path::new("/lake/finance/revenue/_weft/orders/staging")
        );
        ensure_under(root, &dir).unwrap();
        assert!(ensure_under(root, Path::new("/lake/a/../../etc")).is_err());
    }
}
