//! Per-product locks: `.weft/locks/<domain>.<product>.lock`, OS file locks (flock).
//!
//! A run holds the lock of every product it runs for as long as it runs, so two runs of one
//! product never overlap (they would race on its product tables and checkpoints), while runs
//! of different products — the daemon's, a person's `weft sync run` — go on side by side. The
//! holder writes who it is (command, pid, run id) into the file, so a refused run can name it.
//! The OS releases a lock when its process dies, so a killed run never leaves one behind; a
//! run left `running` in the history whose products' locks can be taken is dead (the caller
//! marks it interrupted).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weft_mesh::Project;
use weft_state::ProductKey;

/// Who holds a product's lock, as written into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// `weft sync run` or `weft daemon`.
    pub command: String,
    pub pid: u32,
    pub run_id: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` (pid {}, run {})",
            self.command, self.pid, self.run_id
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("product {product} is being run by {}; wait for that run to end{}", holder_text(.holder), daemon_hint(.holder))]
    Busy {
        product: ProductKey,
        holder: Option<LockHolder>,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn holder_text(holder: &Option<LockHolder>) -> String {
    match holder {
        Some(h) => h.to_string(),
        None => "another weft process".to_string(),
    }
}

fn daemon_hint(holder: &Option<LockHolder>) -> &'static str {
    match holder {
        Some(h) if h.command == "weft daemon" => {
            " (the daemon runs it on its schedule; other products can run now)"
        }
        _ => "",
    }
}

/// The locks of a set of products, released on drop.
#[derive(Debug)]
pub struct ProductLocks {
    held: Vec<(ProductKey, File)>,
}

impl ProductLocks {
    pub fn products(&self) -> Vec<ProductKey> {
        self.held.iter().map(|(k, _)| k.clone()).collect()
    }
}

/// The folder holding the lock files: `locks/` beside the state database.
pub fn locks_dir(project: &Project) -> PathBuf {
    project
        .settings
        .state_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| project.root.join(".weft"))
        .join("locks")
}

/// Takes the lock of every product in `products` (all or none), recording `holder` in each.
pub fn lock_products(
    project: &Project,
    products: &[ProductKey],
    holder: &LockHolder,
) -> Result<ProductLocks, LockError> {
    let dir = locks_dir(project);
    std::fs::create_dir_all(&dir).map_err(|source| LockError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut held = Vec::with_capacity(products.len());
    let record = serde_json::to_string(holder).unwrap_or_default();
    for product in products {
        // Names are validated (no `/`, no `..`), so the file stays in its folder.
        let path = dir.join(format!("{}.{}.lock", product.domain, product.product));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| serde_json::from_str(&text).ok());
                return Err(LockError::Busy {
                    product: product.clone(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.write_all(record.as_bytes()).map_err(io)?;
        held.push((product.clone(), file));
    }
    Ok(ProductLocks { held })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_names_the_holder() {
        let e = LockError::Busy {
            product: ProductKey {
                domain: weft_core::DomainName::new("sales").unwrap(),
                product: weft_core::ProductName::new("shop").unwrap(),
            },
            holder: Some(LockHolder {
                command: "weft daemon".into(),
                pid: 7,
                run_id: "r1".into(),
            }),
        };
        assert_eq!(
            e.to_string(),
            "product sales/shop is being run by `weft daemon` (pid 7, run r1); wait for that run \
             to end (the daemon runs it on its schedule; other products can run now)"
        );
    }
}
