//! Discovered catalogs kept between runs, so a sync does not start the connector twice (a
//! Python connector spends seconds importing before it prints anything).
//!
//! An entry is keyed by the connector (its argv, the size and mtime of every argument that is
//! a file, so an upgrade or an edited script misses; for `command` also its working folder) and
//! its config, and expires after `catalog_cache`. The key is a SHA-256 keyed with a random
//! secret of the cache folder: the file name must not let anyone test guesses of the
//! config's secrets. Entries hold only the catalog (stream names and schemas).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::process::Program;

/// One connector+config's cached catalog.
#[derive(Debug, Clone)]
pub struct CatalogCache {
    path: PathBuf,
    ttl: Duration,
}

impl CatalogCache {
    /// The entry of this connector and config under `root`; None when caching is off or the
    /// cache folder is unusable (then every run discovers, as without a cache).
    pub fn new(
        root: &Path,
        program: &Program,
        config: &Value,
        ttl: Duration,
        with_cwd: bool,
    ) -> Option<Self> {
        if ttl.is_zero() {
            return None;
        }
        let dir = root.join("catalogs");
        let secret = match secret(&dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("no catalog cache in {}: {e}", dir.display());
                return None;
            }
        };
        let mut h = Sha256::new();
        h.update(secret);
        let cwd = program.cwd.clone().unwrap_or_default();
        for arg in &program.argv {
            h.update((arg.len() as u64).to_le_bytes());
            h.update(arg.as_bytes());
            // A bare name is looked up on PATH, or is a script in the working folder.
            let files = if arg.contains('/') {
                vec![cwd.join(arg)]
            } else {
                [crate::install::find_on_path(arg), Some(cwd.join(arg))]
                    .into_iter()
                    .flatten()
                    .collect()
            };
            for meta in files.iter().filter_map(|f| fs::metadata(f).ok()) {
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .unwrap_or_default();
                h.update(meta.len().to_le_bytes());
                h.update(mtime.as_nanos().to_le_bytes());
            }
        }
        if with_cwd {
            h.update(cwd.to_string_lossy().as_bytes());
        }
        h.update(serde_json::to_vec(config).expect("JSON serialises"));
        Some(Self {
            path: dir.join(format!("{}.json", hex::encode(h.finalize()))),
            ttl,
        })
    }

    /// The cached `streams`, unless missing, expired or unreadable.
    pub fn load(&self) -> Option<Vec<Value>> {
        let entry: Value = serde_json::from_slice(&fs::read(&self.path).ok()?).ok()?;
        let at = entry.get("discovered_at")?.as_u64()?;
        let now = now_secs();
        if at > now || now - at >= self.ttl.as_secs() {
            return None;
        }
        match entry.get("streams")? {
            Value::Array(streams) => Some(streams.clone()),
            _ => None,
        }
    }

    /// Saves a freshly discovered catalog (best effort: a failure only costs a discover).
    pub fn store(&self, streams: &[Value]) {
        let entry = serde_json::json!({"discovered_at": now_secs(), "streams": streams});
        if let Err(e) = write_atomic(&self.path, &serde_json::to_vec(&entry).expect("JSON")) {
            tracing::debug!("cannot cache the catalog in {}: {e}", self.path.display());
        }
    }

    /// Drops the entry, so the next run discovers again.
    pub fn forget(&self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The cache folder's random secret, created on first use (0600).
fn secret(dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = dir.join("key");
    if let Ok(key) = fs::read(&path) {
        if key.len() == 32 {
            return Ok(key);
        }
    }
    fs::create_dir_all(dir)?;
    let mut key = vec![0u8; 32];
    std::io::Read::read_exact(&mut fs::File::open("/dev/urandom")?, &mut key)?;
    let tmp = dir.join(format!("key.{}.tmp", std::process::id()));
    write_file(&tmp, &key)?;
    // A hard link never replaces: when two processes race, both end up with the winner's key.
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let key = fs::read(&path)?;
            if key.len() == 32 {
                Ok(key)
            } else {
                Err(std::io::Error::other("the cache key file is damaged"))
            }
        }
        Err(e) => Err(e),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    write_file(&tmp, bytes)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(argv: &[&str]) -> Program {
        Program {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            python: None,
            cwd: Some(PathBuf::from("/")),
        }
    }

    #[test]
    fn entries_are_keyed_by_connector_and_config_and_expire() {
        let root = tempfile::tempdir().unwrap();
        let ttl = Duration::from_secs(3600);
        let config = serde_json::json!({"password": "hunter2", "n": 1});
        let a = CatalogCache::new(root.path(), &program(&["sh"]), &config, ttl, false).unwrap();
        assert!(a.load().is_none());
        let streams = vec![serde_json::json!({"name": "users"})];
        a.store(&streams);
        assert_eq!(a.load(), Some(streams.clone()));
        // The same connector and config find it; another config or connector does not.
        let again = CatalogCache::new(root.path(), &program(&["sh"]), &config, ttl, false).unwrap();
        assert_eq!(again.load(), Some(streams.clone()));
        let other = serde_json::json!({"password": "hunter3", "n": 1});
        assert!(
            CatalogCache::new(root.path(), &program(&["sh"]), &other, ttl, false)
                .unwrap()
                .load()
                .is_none()
        );
        assert!(
            CatalogCache::new(root.path(), &program(&["bash"]), &config, ttl, false)
                .unwrap()
                .load()
                .is_none()
        );
        // Nothing of the config is in a file name or an entry.
        for f in fs::read_dir(root.path().join("catalogs"))
            .unwrap()
            .flatten()
        {
            assert!(!f.file_name().to_string_lossy().contains("hunter2"));
            assert!(!String::from_utf8_lossy(&fs::read(f.path()).unwrap()).contains("hunter2"));
        }
        // Expired (written "an hour ago") and forgotten entries are not used.
        let entry = serde_json::json!({"discovered_at": now_secs() - 3600, "streams": streams});
        write_atomic(&a.path, entry.to_string().as_bytes()).unwrap();
        assert!(a.load().is_none());
        a.store(&streams);
        a.forget();
        assert!(again.load().is_none());
        assert!(CatalogCache::new(
            root.path(),
            &program(&["sh"]),
            &config,
            Duration::ZERO,
            false
        )
        .is_none());
    }
}
