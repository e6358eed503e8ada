//! The commit record of a stream: `_weft/manifest.json`.
//!
//! The manifest is the only truth about what a stream holds: readers read exactly the files it
//! lists, and a data file it does not list is a leftover of a crash. It is replaced atomically
//! (write `manifest.json.tmp`, fsync, rename, fsync the folder), so a reader or a restarted run
//! sees either the old or the new commit, never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use weft_core::arrow_schema::Schema;
use weft_core::{Checkpoint, ConnectorError, Result, WriteMode};

use crate::layout::{self, fsync_dir, is_plain_file_name, MANIFEST, MANIFEST_TMP};

/// The manifest format this crate writes; newer formats are refused rather than misread.
pub const FORMAT_VERSION: u32 = 1;

/// One stream's commit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// Incremented by every commit.
    pub version: u64,
    pub write_mode: WriteMode,
    /// The published data files, in commit order (dedup breaks ties by this order).
    pub files: Vec<DataFile>,
    /// The Arrow schema of the published files.
    pub fields: Vec<ColumnSpec>,
    /// The source position the published data covers.
    pub checkpoint: Option<Checkpoint>,
    pub run_id: String,
    pub committed_at: DateTime<Utc>,
    /// An overwrite generation committed but not yet published (its run has not finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingGeneration>,
    /// The product's owner, description, contract version and column metadata, as of the
    /// commit (the same as the data files' key-value metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<weft_core::ProductMetadata>,
}

/// A committed data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// File name, relative to the stream folder (or to the generation's staging folder).
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// Already de-duplicated by a compaction (append_dedup): holds one row per key and no key
    /// of another compacted file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compacted: bool,
}

/// One column of the stored schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    /// The Arrow type as Arrow displays it (`Int64`, `Timestamp(µs, "UTC")`, …).
    pub data_type: String,
    pub nullable: bool,
}

/// A run in progress whose commits are durable but not yet published (overwrite and
/// append_dedup): its files sit in `_weft/staging/<generation>/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingGeneration {
    pub generation: String,
    /// The write mode that will publish it.
    #[serde(default = "overwrite")]
    pub write_mode: WriteMode,
    pub files: Vec<DataFile>,
    pub fields: Vec<ColumnSpec>,
    pub checkpoint: Option<Checkpoint>,
    pub run_id: String,
    pub updated_at: DateTime<Utc>,
}

fn overwrite() -> WriteMode {
    WriteMode::Overwrite
}

impl Manifest {
    /// The manifest of a stream nothing was committed to yet.
    pub(crate) fn empty(write_mode: WriteMode, run_id: &str) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            version: 0,
            write_mode,
            files: Vec::new(),
            fields: Vec::new(),
            checkpoint: None,
            run_id: run_id.to_string(),
            committed_at: Utc::now(),
            pending: None,
            product: None,
        }
    }

    /// The highest data file sequence number in use, published or pending.
    pub(crate) fn max_seq(&self) -> u64 {
        let pending = self.pending.iter().flat_map(|p| p.files.iter());
        self.files
            .iter()
            .chain(pending)
            .filter_map(|f| layout::part_seq(&f.path))
            .max()
            .unwrap_or(0)
    }
}

/// The stored form of an Arrow schema.
pub(crate) fn columns_of(schema: &Schema) -> Vec<ColumnSpec> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnSpec {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// How `new` differs from `old`, one phrase per column (empty when they match).
pub(crate) fn column_differences(old: &[ColumnSpec], new: &[ColumnSpec]) -> Vec<String> {
    let mut out = Vec::new();
    for o in old {
        match new.iter().find(|n| n.name == o.name) {
            None => out.push(format!("`{}` is missing from the new schema", o.name)),
            Some(n) if n.data_type != o.data_type => out.push(format!(
                "`{}` is {} in the lake but {} now",
                o.name, o.data_type, n.data_type
            )),
            Some(n) if n.nullable != o.nullable => out.push(format!(
                "`{}` is {} in the lake but {} now",
                o.name,
                nullability(o.nullable),
                nullability(n.nullable)
            )),
            Some(_) => {}
        }
    }
    for n in new {
        if !old.iter().any(|o| o.name == n.name) {
            out.push(format!("`{}` is new", n.name));
        }
    }
    if out.is_empty() && old != new {
        out.push("the columns are in a different order".to_string());
    }
    out
}

fn nullability(nullable: bool) -> &'static str {
    if nullable {
        "nullable"
    } else {
        "not nullable"
    }
}

/// Reads a stream's manifest; `None` when nothing was ever committed.
pub fn read_manifest(stream_dir: &Path) -> Result<Option<Manifest>> {
    let path = layout::weft_dir(stream_dir).join(MANIFEST);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ConnectorError::io("reading", &path, e)),
    };
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
        ConnectorError::Other(format!(
            "the lake manifest {} is not valid ({e}); restore it from a backup, or delete the \
             stream folder to sync the stream again from scratch",
            path.display()
        ))
    })?;
    if manifest.format_version > FORMAT_VERSION {
        return Err(ConnectorError::Other(format!(
            "the lake manifest {} has format version {}, newer than this weft understands ({}); \
             upgrade weft",
            path.display(),
            manifest.format_version,
            FORMAT_VERSION
        )));
    }
    let pending = manifest.pending.iter().flat_map(|p| p.files.iter());
    let generation_ok = manifest
        .pending
        .as_ref()
        .is_none_or(|p| is_plain_file_name(&p.generation));
    if let Some(bad) = manifest
        .files
        .iter()
        .chain(pending)
        .find(|f| !is_plain_file_name(&f.path))
    {
        return Err(ConnectorError::Other(format!(
            "the lake manifest {} lists {:?}, which is not a plain file name; it was not written \
             by weft: restore it from a backup",
            path.display(),
            bad.path
        )));
    }
    if !generation_ok {
        return Err(ConnectorError::Other(format!(
            "the lake manifest {} names an invalid overwrite generation; restore it from a backup",
            path.display()
        )));
    }
    Ok(Some(manifest))
}

/// The committed data files of a stream, in commit order; empty when nothing was committed.
/// These are exactly the files a reader should read.
pub fn committed_files(stream_dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(read_manifest(stream_dir)?
        .map(|m| m.files.iter().map(|f| stream_dir.join(&f.path)).collect())
        .unwrap_or_default())
}

/// Publishes `manifest` atomically and durably.
pub(crate) fn write_manifest(stream_dir: &Path, manifest: &Manifest) -> Result<()> {
    let dir = layout::weft_dir(stream_dir);
    let tmp = dir.join(MANIFEST_TMP);
    let path = dir.join(MANIFEST);
    let text = serde_json::to_vec_pretty(manifest)
        .map_err(|e| ConnectorError::Other(format!("encoding the lake manifest: {e}")))?;
    let mut file =
        std::fs::File::create(&tmp).map_err(|e| ConnectorError::io("creating", &tmp, e))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(|e| ConnectorError::io("writing", &tmp, e))?;
    drop(file);
    layout::rename(&tmp, &path)?;
    fsync_dir(&dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, nullable: bool) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            data_type: ty.into(),
            nullable,
        }
    }

    #[test]
    fn differences_name_the_columns() {
        let old = [
            col("id", "Int64", false),
            col("name", "Utf8", true),
            col("gone", "Int32", true),
        ];
        let new = [
            col("id", "Utf8", false),
            col("name", "Utf8", false),
            col("extra", "Date32", true),
        ];
        assert_eq!(
            column_differences(&old, &new),
            vec![
                "`id` is Int64 in the lake but Utf8 now",
                "`name` is nullable in the lake but not nullable now",
                "`gone` is missing from the new schema",
                "`extra` is new",
            ]
        );
        assert!(column_differences(&old, &old).is_empty());
    }

    #[test]
    fn manifest_round_trips_and_tampered_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("_weft")).unwrap();
        assert_eq!(read_manifest(dir.path()).unwrap(), None);
        assert!(committed_files(dir.path()).unwrap().is_empty());

        let mut m = Manifest::empty(WriteMode::Append, "run-1");
        m.files.push(DataFile {
            path: "part-000001-x.parquet".into(),
            rows: 3,
            bytes: 10,
            compacted: false,
        });
        m.checkpoint = Some(Checkpoint::new(serde_json::json!({"cursor": 7})));
        write_manifest(dir.path(), &m).unwrap();
        assert_eq!(read_manifest(dir.path()).unwrap(), Some(m.clone()));
        assert_eq!(
            committed_files(dir.path()).unwrap(),
            vec![dir.path().join("part-000001-x.parquet")]
        );
        assert!(!dir.path().join("_weft/manifest.json.tmp").exists());

        m.files[0].path = "../../etc/passwd".into();
        write_manifest(dir.path(), &m).unwrap();
        let err = read_manifest(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a plain file name"), "{err}");
    }
}
