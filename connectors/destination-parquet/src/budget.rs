//! The memory budget every lake writer of the process shares: the row groups being encoded.
//!
//! Each open Parquet file holds its row group in memory until the group reaches
//! `row_group_bytes` or the file is sealed at a commit, so a run writing many streams at once
//! (a `--follow` run with dozens of CDC streams, whose commits seal little) would hold up to
//! that much per stream. Every [`crate::encoder::PartWriter`] registers its open file here
//! and reports the file's buffered bytes after each batch; when the total passes the limit,
//! the largest buffers are flushed as row groups (into the same uncommitted file: nothing
//! becomes visible, a crash loses nothing committed) until the total is under half the limit,
//! so buffers are flushed in bursts rather than one at every batch. A writer busy with its own
//! batch is skipped; it reports and settles after that batch itself.
//!
//! The limit is the smallest `memory_budget_bytes` of the lakes the process writes (default
//! [`DEFAULT_BUDGET`]). Smaller budgets mean smaller row groups when many streams are open.

use std::cmp::Reverse;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

/// The default budget: 256 MiB of buffered row groups across the process.
pub const DEFAULT_BUDGET: u64 = 256 * 1024 * 1024;

/// What the budget can ask to give memory back.
pub(crate) trait Spill: Send + Sync {
    /// Bytes buffered now.
    fn used(&self) -> usize;
    /// Flushes the buffered rows unless the owner is busy with them; the bytes freed.
    fn try_spill(&self) -> Option<usize>;
}

pub(crate) struct Budget {
    /// `usize::MAX` until a lake sets it.
    limit: AtomicUsize,
    members: Mutex<Vec<Weak<dyn Spill>>>,
}

static BUDGET: LazyLock<Budget> = LazyLock::new(|| Budget {
    limit: AtomicUsize::new(usize::MAX),
    members: Mutex::new(Vec::new()),
});

/// The process's budget.
pub(crate) fn budget() -> &'static Budget {
    &BUDGET
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Budget {
    /// Lowers the limit to `bytes` (the smallest configured budget wins).
    pub fn limit_to(&self, bytes: u64) {
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        self.limit.fetch_min(bytes, Ordering::Relaxed);
    }

    fn limit(&self) -> usize {
        match self.limit.load(Ordering::Relaxed) {
            usize::MAX => usize::try_from(DEFAULT_BUDGET).unwrap_or(usize::MAX),
            limit => limit,
        }
    }

    pub fn register(&self, member: Weak<dyn Spill>) {
        lock(&self.members).push(member);
    }

    /// Bytes buffered by every live member.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        lock(&self.members)
            .iter()
            .filter_map(Weak::upgrade)
            .map(|m| m.used())
            .sum()
    }

    /// Flushes the largest buffers while the total is over the limit (see the module docs).
    /// Called by a member after it buffered a batch, without holding its own buffer.
    pub fn settle(&self) {
        let limit = self.limit();
        let live: Vec<Arc<dyn Spill>> = {
            let mut members = lock(&self.members);
            members.retain(|m| m.strong_count() > 0);
            members.iter().filter_map(Weak::upgrade).collect()
        };
        let mut sized: Vec<(usize, Arc<dyn Spill>)> =
            live.into_iter().map(|m| (m.used(), m)).collect();
        let mut total: usize = sized.iter().map(|(used, _)| used).sum();
        if total <= limit {
            return;
        }
        sized.sort_by_key(|(used, _)| Reverse(*used));
        for (_, member) in sized {
            if total <= limit / 2 {
                break;
            }
            if let Some(freed) = member.try_spill() {
                total = total.saturating_sub(freed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        used: AtomicUsize,
        busy: bool,
    }

    impl Spill for Fake {
        fn used(&self) -> usize {
            self.used.load(Ordering::Relaxed)
        }
        fn try_spill(&self) -> Option<usize> {
            if self.busy {
                return None;
            }
            Some(self.used.swap(0, Ordering::Relaxed))
        }
    }

    #[test]
    fn the_largest_buffers_are_flushed_down_to_half_the_limit_skipping_busy_ones() {
        let budget = Budget {
            limit: AtomicUsize::new(100),
            members: Mutex::new(Vec::new()),
        };
        let fakes: Vec<Arc<Fake>> = [(40, false), (30, true), (20, false), (15, false)]
            .into_iter()
            .map(|(used, busy)| {
                Arc::new(Fake {
                    used: AtomicUsize::new(used),
                    busy,
                })
            })
            .collect();
        for f in &fakes {
            let member: Arc<dyn Spill> = f.clone();
            budget.register(Arc::downgrade(&member));
        }
        // 105 > 100: the 40 goes (65), the busy 30 is skipped, the 20 goes (45 ≤ 50).
        budget.settle();
        let left: Vec<usize> = fakes.iter().map(|f| f.used()).collect();
        assert_eq!(left, vec![0, 30, 0, 15]);
        assert_eq!(budget.used(), 45);
        // Under the limit nothing is flushed; dropped members are forgotten.
        drop(fakes);
        budget.settle();
        assert_eq!(budget.used(), 0);
        assert!(lock(&budget.members).is_empty());
    }
}
