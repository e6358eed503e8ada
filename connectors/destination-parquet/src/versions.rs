//! Published versions of a stream: what readers see changes in one atomic step.
//!
//! Readers list the stream folder (a DuckDB glob over `<stream>/*.parquet`, `pyarrow.dataset`
//! on `<stream>`) and then open what they listed. Any publish made of several renames in one
//! folder (new files in, superseded files out, the manifest replaced) can be seen half done by
//! such a listing: duplicates during a compaction, files before their manifest. So the stream
//! path is a symlink to a complete, immutable version folder, and publishing is:
//!
//! 1. make a new version folder in the stream's home: a hard link of every file the new
//!    manifest lists (kept files from the current version, new ones from staging), and the
//!    manifest itself; fsync;
//! 2. replace the symlink by renaming a new one over it (atomic); fsync the product folder;
//! 3. remove the previous version folder (only its superseded files' data goes away).
//!
//! A reader that listed the old version and opens a file the new one dropped gets "file not
//! found" and retries; it never sees a mix. A crash before step 2 leaves an unreferenced
//! version folder, removed at the next open.
//!
//! A commit that changes no visible file (an overwrite or append_dedup commit recording its
//! pending generation) replaces the current version's manifest in place: readers' files stay.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use weft_core::{ConnectorError, Result};

use crate::layout::{self, fsync_dir, home_dir, is_part_file, WEFT_DIR};
use crate::manifest::{write_manifest, Manifest};

/// A new symlink is made here, then renamed over the stream path.
const LINK_TMP: &str = "link.tmp";
/// The version a stream folder of the older layout (a plain folder) becomes.
const LEGACY: &str = "v000000000-legacy";

/// The version folder the stream path points to; `None` when nothing was published.
pub(crate) fn current(stream_dir: &Path) -> Result<Option<PathBuf>> {
    match std::fs::read_link(stream_dir) {
        Ok(target) => Ok(Some(
            stream_dir.parent().unwrap_or(Path::new("")).join(target),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Err(ConnectorError::Other(format!(
            "{} is not the symlink weft publishes a stream through; move it away",
            stream_dir.display()
        ))),
        Err(e) => Err(ConnectorError::io("reading", stream_dir, e)),
    }
}

/// Brings the stream path to this layout before a writer uses it: a stream folder written by
/// an older weft (a plain folder) becomes the first version; a link whose version is gone (a
/// reset cut short) is removed.
pub(crate) fn prepare(stream_dir: &Path) -> Result<()> {
    let home = home_dir(stream_dir);
    layout::create_dirs(&home)?;
    match std::fs::symlink_metadata(stream_dir) {
        Ok(m) if m.file_type().is_symlink() => {
            if !stream_dir.exists() {
                layout::remove_file(stream_dir)?;
            }
            Ok(())
        }
        Ok(m) if m.is_dir() => {
            // Readers see no table between these two steps; it happens once per stream.
            let legacy = home.join(LEGACY);
            layout::rename(stream_dir, &legacy)?;
            let old_staging = legacy.join(WEFT_DIR).join(layout::STAGING_DIR);
            let staging = layout::staging_dir(stream_dir);
            if old_staging.exists() {
                layout::remove_dir_all(&staging)?;
                layout::rename(&old_staging, &staging)?;
            }
            flip(stream_dir, LEGACY)
        }
        Ok(_) => Err(ConnectorError::Other(format!(
            "{} is a file, not a stream folder weft wrote; move it away",
            stream_dir.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A migration cut short between its two steps.
            if home.join(LEGACY).join(WEFT_DIR).exists() {
                flip(stream_dir, LEGACY)?;
            }
            Ok(())
        }
        Err(e) => Err(ConnectorError::io("reading", stream_dir, e)),
    }
}

/// Removes version folders nothing points to (a publish cut short, or the previous version a
/// crash kept), and a leftover temporary link. Returns how many it removed.
pub(crate) fn remove_stale(stream_dir: &Path) -> Result<usize> {
    let home = home_dir(stream_dir);
    let current = current(stream_dir)?;
    let current = current.as_deref().and_then(Path::file_name);
    let mut removed = 0;
    for (name, is_dir) in layout::list_dir(&home)? {
        if is_dir && name.starts_with('v') && current != Some(std::ffi::OsStr::new(&name)) {
            remove_version(&home.join(&name))?;
            removed += 1;
        }
    }
    layout::remove_file(&home.join(LINK_TMP))?;
    Ok(removed)
}

/// Makes `next` the stream's commit record. `sources` says where files of `next` that the
/// current version lacks are (staging); the others are in the current version.
pub(crate) fn store(
    stream_dir: &Path,
    next: &Manifest,
    sources: &HashMap<String, PathBuf>,
) -> Result<()> {
    store_consuming(stream_dir, next, sources, None)
}

/// [`store`] that also removes `consumed` (the staging generation being published) once the
/// new version folder holds its files, before the stream path is flipped to it: so a run
/// killed right after its publish leaves nothing in staging. A crash between the two steps is
/// recovered by putting the generation's files back from that unreferenced version folder
/// ([`restore_pending`]).
pub(crate) fn store_consuming(
    stream_dir: &Path,
    next: &Manifest,
    sources: &HashMap<String, PathBuf>,
    consumed: Option<&Path>,
) -> Result<()> {
    if let Some(dir) = current(stream_dir)? {
        let mut visible: Vec<String> = layout::list_dir(&dir)?
            .into_iter()
            .filter(|(name, is_dir)| !is_dir && is_part_file(name))
            .map(|(name, _)| name)
            .collect();
        let mut listed: Vec<&str> = next.files.iter().map(|f| f.path.as_str()).collect();
        visible.sort();
        listed.sort_unstable();
        if visible
            .iter()
            .map(String::as_str)
            .eq(listed.iter().copied())
        {
            write_manifest(stream_dir, next)?;
            // Nothing of `consumed` is published here, so nothing can be lost with it.
            if let Some(consumed) = consumed {
                layout::remove_dir_all(consumed)?;
            }
            return Ok(());
        }
    }
    publish(stream_dir, next, sources, consumed)
}

/// Publishes `next` as a new version (see the module docs).
fn publish(
    stream_dir: &Path,
    next: &Manifest,
    sources: &HashMap<String, PathBuf>,
    consumed: Option<&Path>,
) -> Result<()> {
    let home = home_dir(stream_dir);
    let previous = current(stream_dir)?;
    let name = format!(
        "v{:09}-{}",
        next.version,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let dir = home.join(&name);
    layout::create_dirs(&dir.join(WEFT_DIR))?;
    for f in &next.files {
        let from = match sources.get(&f.path) {
            Some(path) => path.clone(),
            None => stream_dir.join(&f.path),
        };
        std::fs::hard_link(&from, dir.join(&f.path))
            .map_err(|e| ConnectorError::io("linking", &from, e))?;
    }
    write_manifest(&dir, next)?;
    fsync_dir(&dir)?;
    if let Some(consumed) = consumed {
        // Every file of `consumed` is durably linked into `dir` now. Removed before the flip,
        // not after: a kill between the flip and a later removal would leave them in staging
        // with no run left to clean up (the stream is published, nothing reopens it).
        layout::remove_dir_all(consumed)?;
        if let Some(staging) = consumed.parent() {
            fsync_dir(staging)?;
        }
    }
    flip(stream_dir, &name)?;
    if let Some(previous) = previous.filter(|p| p != &dir) {
        // Readers now see the new version; a crash here leaves this to `remove_stale`.
        remove_version(&previous)?;
    }
    Ok(())
}

/// Puts files of the pending generation that are missing from `gen_dir` back from version
/// folders nothing points to: a publish that removed its generation (see [`store_consuming`])
/// and crashed before its flip left them only there. Call before [`remove_stale`]. Returns
/// how many files it put back.
pub(crate) fn restore_pending(stream_dir: &Path, gen_dir: &Path, files: &[&str]) -> Result<usize> {
    let missing: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| !gen_dir.join(f).exists())
        .collect();
    if missing.is_empty() {
        return Ok(0);
    }
    let home = home_dir(stream_dir);
    let current = current(stream_dir)?;
    let current = current.as_deref().and_then(Path::file_name);
    let stale: Vec<PathBuf> = layout::list_dir(&home)?
        .into_iter()
        .filter(|(name, is_dir)| {
            *is_dir && name.starts_with('v') && current != Some(std::ffi::OsStr::new(name))
        })
        .map(|(name, _)| home.join(name))
        .collect();
    let mut restored = 0;
    for file in missing {
        if let Some(from) = stale.iter().map(|v| v.join(file)).find(|p| p.exists()) {
            layout::create_dirs(gen_dir)?;
            let to = gen_dir.join(file);
            std::fs::hard_link(&from, &to).map_err(|e| ConnectorError::io("linking", &from, e))?;
            restored += 1;
        }
    }
    if restored > 0 {
        fsync_dir(gen_dir)?;
    }
    Ok(restored)
}

/// Removes a version folder: its data files and manifest. Files weft did not write (someone
/// put them in the stream folder) are left where they are, with a warning.
fn remove_version(dir: &Path) -> Result<()> {
    for (name, is_dir) in layout::list_dir(dir)? {
        if !is_dir && is_part_file(&name) {
            layout::remove_file(&dir.join(&name))?;
        }
    }
    let weft = dir.join(WEFT_DIR);
    for name in [layout::MANIFEST, layout::MANIFEST_TMP] {
        layout::remove_file(&weft.join(name))?;
    }
    for folder in [&weft, dir] {
        if let Err(e) = std::fs::remove_dir(folder) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(
                    "{} holds files weft did not write ({e}); they are no longer in the \
                     published stream folder: move them away",
                    folder.display()
                );
                break;
            }
        }
    }
    Ok(())
}

/// Points the stream path at version `name` in one rename.
fn flip(stream_dir: &Path, name: &str) -> Result<()> {
    let home = home_dir(stream_dir);
    let stream = stream_dir.file_name().unwrap_or_default();
    let target = Path::new(WEFT_DIR).join(stream).join(name);
    let tmp = home.join(LINK_TMP);
    layout::remove_file(&tmp)?;
    std::os::unix::fs::symlink(&target, &tmp)
        .map_err(|e| ConnectorError::io("creating the symlink", &tmp, e))?;
    layout::rename(&tmp, stream_dir)?;
    fsync_dir(stream_dir.parent().unwrap_or(Path::new(".")))
}

/// Removes a stream's published table and home for good: readers see no table from the first
/// step on (the link then points nowhere), whatever happens next.
pub(crate) fn remove(stream_dir: &Path) -> Result<()> {
    let home = home_dir(stream_dir);
    let aside = home.with_file_name(format!(
        ".{}.weft-reset-{}",
        stream_dir.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    if home.exists() {
        layout::rename(&home, &aside)?;
    }
    match std::fs::symlink_metadata(stream_dir) {
        Ok(m) if m.is_dir() => {
            // The older layout: move the plain folder aside in one rename too.
            let legacy = aside.with_extension("legacy");
            layout::rename(stream_dir, &legacy)?;
            layout::remove_dir_all(&legacy)?;
        }
        Ok(_) => layout::remove_file(stream_dir)?,
        Err(_) => {}
    }
    layout::remove_dir_all(&aside)
}
