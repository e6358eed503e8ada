//! Crash recovery: bring a stream folder back to exactly what its manifest says.
//!
//! A crash can leave version folders nothing points to (a publish cut short, or the previous
//! version after one), files in the stream's staging folder, and a `manifest.json.tmp`. None of
//! it is visible to readers; all of it is removed here, except the committed files of a pending
//! generation, which the run resumes. (Data files in the published folder that its manifest
//! does not list only occur in stream folders of weft's older layout, which moved files in
//! before their manifest; they are removed or moved back to their generation too.)

use std::collections::HashSet;
use std::path::Path;

use weft_core::Result;

use crate::layout::{self, is_part_file};
use crate::manifest::Manifest;
use crate::versions;

/// What recovery removed or put back, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovered {
    pub removed: usize,
    pub restored: usize,
}

/// Removes everything `manifest` does not account for. Pending overwrite files found in the
/// stream folder (a publish cut short before its manifest) are moved back to their generation.
pub(crate) fn recover(stream_dir: &Path, manifest: Option<&Manifest>) -> Result<Recovered> {
    let published: HashSet<&str> = manifest
        .map(|m| m.files.iter().map(|f| f.path.as_str()).collect())
        .unwrap_or_default();
    let pending = manifest.and_then(|m| m.pending.as_ref());
    let pending_files: HashSet<&str> = pending
        .map(|p| p.files.iter().map(|f| f.path.as_str()).collect())
        .unwrap_or_default();
    // Before stale versions are removed: a publish cut short between removing its generation
    // and its flip left the generation's files only in the unreferenced new version.
    let restored = match pending {
        Some(p) => versions::restore_pending(
            stream_dir,
            &layout::generation_dir(stream_dir, &p.generation),
            &p.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        )?,
        None => 0,
    };
    let mut done = Recovered {
        removed: versions::remove_stale(stream_dir)?,
        restored,
    };

    let staging = layout::staging_dir(stream_dir);
    for (name, is_dir) in layout::list_dir(stream_dir)? {
        if is_dir || !is_part_file(&name) || published.contains(name.as_str()) {
            continue;
        }
        let path = stream_dir.join(&name);
        match pending {
            Some(p) if pending_files.contains(name.as_str()) => {
                let gen_dir = layout::generation_dir(stream_dir, &p.generation);
                layout::create_dirs(&gen_dir)?;
                layout::rename(&path, &gen_dir.join(&name))?;
                done.restored += 1;
            }
            _ => {
                layout::remove_file(&path)?;
                done.removed += 1;
            }
        }
    }

    for (name, is_dir) in layout::list_dir(&staging)? {
        let path = staging.join(&name);
        match pending {
            Some(p) if is_dir && name == p.generation => {
                for (file, _) in layout::list_dir(&path)? {
                    if !pending_files.contains(file.as_str()) {
                        layout::remove_file(&path.join(file))?;
                        done.removed += 1;
                    }
                }
            }
            _ if is_dir => {
                layout::remove_dir_all(&path)?;
                done.removed += 1;
            }
            _ => {
                layout::remove_file(&path)?;
                done.removed += 1;
            }
        }
    }

    layout::remove_file(&layout::weft_dir(stream_dir).join(layout::MANIFEST_TMP))?;
    if done.restored > 0 {
        layout::fsync_dir(stream_dir)?;
        if let Some(p) = pending {
            layout::fsync_dir(&layout::generation_dir(stream_dir, &p.generation))?;
        }
    }
    Ok(done)
}
