//! Live counters per stream, read by the CLI's progress display and the final summary.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Where a stream is in its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Phase {
    Waiting = 0,
    Reading = 1,
    Finishing = 2,
    Succeeded = 3,
    Failed = 4,
    Cancelled = 5,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Phase::Reading,
            2 => Phase::Finishing,
            3 => Phase::Succeeded,
            4 => Phase::Failed,
            5 => Phase::Cancelled,
            _ => Phase::Waiting,
        }
    }

    pub fn is_done(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Cancelled)
    }
}

/// Counters of one stream, updated by the engine as batches flow.
#[derive(Debug)]
pub struct StreamProgress {
    /// `domain/product/stream`.
    pub label: String,
    rows: AtomicU64,
    bytes: AtomicU64,
    estimate: AtomicU64,
    commits: AtomicU64,
    /// Rows covered by the last committed checkpoint.
    committed_rows: AtomicU64,
    /// Values the source wrote as NULL because they did not fit the schema.
    off_schema: AtomicU64,
    phase: AtomicU8,
    started: Mutex<Option<Instant>>,
    elapsed_ms: AtomicU64,
    /// When finishing (publishing) began, in ms since the start; `u64::MAX` until then.
    finishing_ms: AtomicU64,
    /// Bytes the destination says it made durable; `u64::MAX` while it has not said.
    bytes_written: AtomicU64,
}

impl StreamProgress {
    pub fn new(label: String) -> Self {
        Self {
            label,
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            estimate: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            committed_rows: AtomicU64::new(0),
            off_schema: AtomicU64::new(0),
            phase: AtomicU8::new(Phase::Waiting as u8),
            started: Mutex::new(None),
            elapsed_ms: AtomicU64::new(0),
            finishing_ms: AtomicU64::new(u64::MAX),
            bytes_written: AtomicU64::new(u64::MAX),
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
    /// Size of the rows read as Arrow data in memory.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Bytes the destination made durable (see `StreamWriter::bytes_written`), `None` when it
    /// does not count them.
    pub fn bytes_written(&self) -> Option<u64> {
        Some(self.bytes_written.load(Ordering::Relaxed)).filter(|&b| b != u64::MAX)
    }
    pub fn estimate(&self) -> Option<u64> {
        Some(self.estimate.load(Ordering::Relaxed)).filter(|&e| e > 0)
    }
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
    pub fn off_schema(&self) -> u64 {
        self.off_schema.load(Ordering::Relaxed)
    }
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }
    /// Rows the destination has made durable (committed; for overwrite and dedup streams
    /// visible only once published).
    pub fn committed_rows(&self) -> u64 {
        self.committed_rows.load(Ordering::Relaxed)
    }

    /// Seconds spent reading (until finishing began, or until now / the end).
    pub fn read_secs(&self) -> f64 {
        match self.finishing_ms.load(Ordering::Relaxed) {
            u64::MAX => self.elapsed_secs(),
            ms => ms as f64 / 1000.0,
        }
    }

    /// Seconds spent finishing (the final commit and publication: overwrite swap, dedup
    /// settling); 0 if it never began.
    pub fn publish_secs(&self) -> f64 {
        match self.finishing_ms.load(Ordering::Relaxed) {
            u64::MAX => 0.0,
            ms => (self.elapsed_secs() - ms as f64 / 1000.0).max(0.0),
        }
    }

    /// Seconds since the stream started reading (frozen once it is done).
    pub fn elapsed_secs(&self) -> f64 {
        if self.phase().is_done() {
            return self.elapsed_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        }
        self.started
            .lock()
            .ok()
            .and_then(|s| *s)
            .map(|s| s.elapsed().as_secs_f64())
            .unwrap_or(0.0)
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        if phase == Phase::Reading {
            if let Ok(mut s) = self.started.lock() {
                s.get_or_insert_with(Instant::now);
            }
        }
        let since_start = || {
            self.started
                .lock()
                .ok()
                .and_then(|s| *s)
                .map(|s| s.elapsed().as_millis() as u64)
                .unwrap_or(0)
        };
        if phase == Phase::Finishing {
            self.finishing_ms.store(since_start(), Ordering::Relaxed);
        }
        if phase.is_done() {
            self.elapsed_ms.store(since_start(), Ordering::Relaxed);
        }
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, rows: u64, bytes: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn set_estimate(&self, rows: u64) {
        self.estimate.store(rows, Ordering::Relaxed);
    }

    pub(crate) fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_off_schema(&self, values: u64) {
        self.off_schema.fetch_add(values, Ordering::Relaxed);
    }

    pub(crate) fn set_bytes_written(&self, bytes: Option<u64>) {
        self.bytes_written
            .store(bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn set_committed_rows(&self, rows: u64) {
        self.committed_rows.store(rows, Ordering::Relaxed);
    }
}
