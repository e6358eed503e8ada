//! The run-wide limit on bytes in flight: record batches a stream has read (and mapped) but its
//! destination has not consumed yet, summed over every stream of the run.
//!
//! **Why.** Each stream is a pipeline (source → mappers → a channel of `channel_capacity`
//! items → the destination's writer), and each stage may hold a batch. Bounded per stream,
//! that still multiplies with the number of streams running at once: 50 lake streams held
//! ~30 MiB each, 1.6 GB together, whatever the lake's own row-group budget. One pool of byte
//! permits shared by the run's streams makes the total independent of the stream count:
//!
//! - a stream takes permits for a batch's size (`RecordBatch::get_array_memory_size`) before
//!   the batch enters its channel, and gives them back when the destination's `write` for it
//!   returned (the destination then holds it in its own, separately bounded buffers: the lake's
//!   row groups count against its `memory_budget_bytes`);
//! - before asking its source for the next message a stream reserves what its last batch
//!   took and a quarter more (settled to the batch's real size when it came), so a stream that is out of permits does not make its source produce another batch
//!   it would hold uncounted; a following stream's source that stays quiet ([`IDLE`]: a
//!   following CDC stream waiting for changes) gets the reservation released, so idle streams
//!   never starve busy ones (a bounded read's source is working on its next message: it keeps
//!   the reservation, which is why a source must make progress without another stream of the
//!   run being read, as every source does: each stream reads on its own);
//! - never two waits while holding permits (a stream that needs more than it reserved gives
//!   the reservation back first), so streams cannot wait on each other: no deadlock;
//! - a batch larger than the whole limit takes all of it and passes alone.
//!
//! Sources that read ahead on their own (a PostgreSQL source's decoding queue) hold those
//! batches outside this count; the sample source generates only when asked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The default limit: 128 MiB. A single stream rarely needs more than ~60 MiB in flight to
/// keep its pipeline busy (docs/benchmarks.md), and with the lake's default 256 MiB row-group
/// budget a run stays well under 512 MiB whatever its stream count.
pub const DEFAULT_MAX_BYTES_IN_FLIGHT: u64 = weft_mesh::DEFAULT_MAX_BYTES_IN_FLIGHT;

/// How long a stream waits for its source while holding a reservation before giving it back.
pub(crate) const IDLE: Duration = Duration::from_millis(100);

/// Permits count KiB: a semaphore takes at most `u32::MAX` permits at once.
const UNIT: u64 = 1024;

/// What a run's limiter saw, for the run report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct InFlightReport {
    /// The limit (`defaults.max_bytes_in_flight`).
    pub limit_bytes: u64,
    /// The most bytes of batches in flight at once, across the run's streams.
    pub peak_bytes: u64,
    /// Batches larger than the limit (each passed alone).
    pub oversized_batches: u64,
}

/// The byte pool shared by one run's streams.
#[derive(Debug)]
pub struct InFlight {
    limit: u64,
    /// `limit` in [`UNIT`]s.
    units: u32,
    semaphore: Arc<Semaphore>,
    in_use: AtomicU64,
    peak: AtomicU64,
    oversized: AtomicU64,
}

/// Permits held for bytes in flight; given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
    pool: Arc<InFlight>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.pool.in_use.fetch_sub(self.bytes, Ordering::Relaxed);
        self.permit.take();
    }
}

impl Permit {
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl InFlight {
    /// A pool of `limit` bytes (at least one [`UNIT`]).
    pub fn new(limit: u64) -> Arc<Self> {
        let units = u32::try_from(limit.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .max(1);
        Arc::new(Self {
            limit,
            units,
            semaphore: Arc::new(Semaphore::new(units as usize)),
            in_use: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            oversized: AtomicU64::new(0),
        })
    }

    /// Waits until `bytes` fit (all of the limit for a batch larger than it), then holds them.
    /// `None` only if the pool was closed, which no run does.
    pub(crate) async fn acquire(self: &Arc<Self>, bytes: u64) -> Option<Permit> {
        let units = self.units_for(bytes);
        let permit = self
            .semaphore
            .clone()
            .acquire_many_owned(units)
            .await
            .ok()?;
        if bytes > self.limit {
            self.oversized.fetch_add(1, Ordering::Relaxed);
        }
        let now = self.in_use.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        Some(Permit {
            permit: Some(permit),
            bytes,
            pool: self.clone(),
        })
    }

    fn units_for(&self, bytes: u64) -> u32 {
        u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.units)
    }

    /// Reserves room for a batch like the last one (`last` bytes), with a quarter more so that
    /// a slightly larger next batch still fits in it.
    pub(crate) async fn reserve(self: &Arc<Self>, last: u64) -> Option<Permit> {
        self.acquire(last.saturating_add(last / 4)).await
    }

    /// `reserved` (if any) turned into the permits of a batch of `bytes`: the excess is given
    /// back; a shortfall is taken if it is free now, otherwise everything is given back before
    /// waiting for `bytes` (holding permits while waiting for more is how two streams would
    /// deadlock).
    pub(crate) async fn settle(
        self: &Arc<Self>,
        reserved: Option<Permit>,
        bytes: u64,
    ) -> Option<Permit> {
        let Some(mut permit) = reserved else {
            return self.acquire(bytes).await;
        };
        let want = self.units_for(bytes);
        let held = permit.permit.as_ref().map_or(0, |p| p.num_permits()) as u32;
        if want > held {
            match self.semaphore.clone().try_acquire_many_owned(want - held) {
                Ok(extra) => {
                    if let Some(p) = permit.permit.as_mut() {
                        p.merge(extra);
                    }
                }
                Err(_) => {
                    drop(permit);
                    return self.acquire(bytes).await;
                }
            }
        } else if let Some(p) = permit.permit.as_mut() {
            drop(p.split((held - want) as usize));
        }
        if bytes > self.limit {
            self.oversized.fetch_add(1, Ordering::Relaxed);
        }
        if bytes >= permit.bytes {
            let now = self
                .in_use
                .fetch_add(bytes - permit.bytes, Ordering::Relaxed)
                + (bytes - permit.bytes);
            self.peak.fetch_max(now, Ordering::Relaxed);
        } else {
            self.in_use
                .fetch_sub(permit.bytes - bytes, Ordering::Relaxed);
        }
        permit.bytes = bytes;
        Some(permit)
    }

    /// Bytes held now.
    pub fn in_flight(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> InFlightReport {
        InFlightReport {
            limit_bytes: self.limit,
            peak_bytes: self.peak.load(Ordering::Relaxed),
            oversized_batches: self.oversized.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn permits_wait_for_room_and_an_oversized_batch_passes_alone() {
        let pool = InFlight::new(10 * UNIT);
        let a = pool.acquire(6 * UNIT).await.unwrap();
        // 6 + 6 > 10: the second waits until the first is given back.
        let waiting = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.acquire(6 * UNIT).await.map(|p| p.bytes()) })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(pool.in_flight(), 6 * UNIT);
        drop(a);
        assert_eq!(waiting.await.unwrap(), Some(6 * UNIT));
        assert_eq!(pool.in_flight(), 0);

        // Larger than the whole limit: it takes everything and passes.
        let big = pool.acquire(25 * UNIT).await.unwrap();
        assert_eq!(pool.in_flight(), 25 * UNIT);
        let report = pool.report();
        assert_eq!(report.oversized_batches, 1);
        assert_eq!(report.peak_bytes, 25 * UNIT);
        drop(big);

        // A reservation settled to a smaller batch gives the rest back; to a slightly larger
        // one, takes the difference while it is free.
        let reserved = pool.acquire(5 * UNIT).await;
        let settled = pool.settle(reserved, 3 * UNIT).await.unwrap();
        assert_eq!((settled.bytes(), pool.in_flight()), (3 * UNIT, 3 * UNIT));
        let settled = pool.settle(Some(settled), 4 * UNIT).await.unwrap();
        assert_eq!((settled.bytes(), pool.in_flight()), (4 * UNIT, 4 * UNIT));
        let rest = pool.acquire(6 * UNIT).await.unwrap();
        drop((settled, rest));

        // Settling a reservation to a larger size than is free gives it back before waiting.
        let reserved = pool.acquire(8 * UNIT).await;
        let other = pool.acquire(2 * UNIT).await.unwrap();
        let settled = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.settle(reserved, 9 * UNIT).await.map(|p| p.bytes()) })
        };
        tokio::task::yield_now().await;
        // 9 + 2 > 10: it waits, holding nothing, so `other` is the only holder.
        assert_eq!(pool.in_flight(), 2 * UNIT);
        drop(other);
        assert_eq!(settled.await.unwrap(), Some(9 * UNIT));
    }
}
