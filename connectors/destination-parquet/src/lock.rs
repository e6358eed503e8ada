//! One writer per lake stream: an OS file lock on `<product>/_weft/<stream>/lock`.
//!
//! A project's `sync.lock` keeps two runs of one project apart, but two projects (or two
//! machines sharing a folder) can point at one lake path. The stream lock is taken before the
//! writer touches anything (recovery would otherwise delete the other writer's staging files),
//! and the holder writes who it is into the file, so the one refused can say who holds it. The
//! OS releases the lock when the process ends, however it ends; the file itself stays (deleting
//! a lock file while others may open it would let two writers lock two different files).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use weft_core::{ConnectorError, Result};

use crate::layout;

/// Held while a writer (or a reset) uses the stream; released on drop.
#[derive(Debug)]
pub(crate) struct StreamLock {
    _file: File,
}

/// Takes the lock of the stream at `stream_dir`, or fails naming who holds it.
pub(crate) fn acquire(stream_dir: &Path, label: &str, project: &Path) -> Result<StreamLock> {
    let home = layout::home_dir(stream_dir);
    layout::create_dirs(&home)?;
    let path = home.join(layout::LOCK);
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| layout::lake_io("opening", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = describe(&holder);
            return Err(ConnectorError::Other(format!(
                "{label}: the lake stream {} is being written by another weft run ({holder}); \
                 one lake stream takes one writer: wait for that run to end, or give this \
                 product another lake `path` (lock file {})",
                stream_dir.display(),
                path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(ConnectorError::io("locking", &path, e));
        }
    }
    let who = serde_json::json!({
        "pid": std::process::id(),
        "host": hostname(),
        "project": project.display().to_string(),
        "since": chrono::Utc::now().to_rfc3339(),
    });
    // Best effort: the lock is what excludes; the text only explains.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(who.to_string().as_bytes()));
    Ok(StreamLock { _file: file })
}

/// The holder as a phrase, from what it wrote into the lock file.
fn describe(text: &str) -> String {
    let Ok(who) = serde_json::from_str::<serde_json::Value>(text) else {
        return "a process that has not written who it is yet".to_string();
    };
    let field = |name: &str| match &who[name] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "?".to_string(),
        other => other.to_string(),
    };
    format!(
        "pid {} on host {}, project {}, since {}",
        field("pid"),
        field("host"),
        field("project"),
        field("since")
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_naming_the_first() {
        let root = tempfile::tempdir().unwrap();
        let stream = root.path().join("sales/shop/orders");
        let project = Path::new("/projects/first");
        let held = acquire(&stream, "stream `orders`", project).unwrap();
        let err = acquire(&stream, "stream `orders`", Path::new("/projects/second"))
            .unwrap_err()
            .to_string();
        let pid = format!("pid {} on host {}", std::process::id(), hostname());
        assert!(err.contains(&pid), "{err}");
        assert!(err.contains("project /projects/first"), "{err}");
        assert!(err.contains("stream `orders`"), "{err}");
        drop(held);
        // Released with the holder.
        acquire(&stream, "stream `orders`", Path::new("/projects/second")).unwrap();
    }
}
