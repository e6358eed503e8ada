//! The checkpoint state of a stream, and why resuming from it neither loses nor duplicates a row.
//!
//! **Full refresh.** A table is split into ranges ([`Split`]): integer primary-key ranges when
//! the table has a one-column integer key, else `ctid` block ranges (tables and materialized
//! views), else one unsplit range (views, foreign tables, partitioned tables without an integer
//! key). Each range is read in position order (`ORDER BY key`; ctid ranges are scanned in block
//! order, which the decoder verifies row by row) and the checkpoint yielded after every batch
//! records, per range, the position of the last row yielded (`after`) and whether it is `done`.
//! Batches of ranges read in parallel interleave, but each range's progress is tracked on its
//! own, so a checkpoint covers exactly the rows yielded before it: on resume every range reads
//! `position > after` up to its bound, and the ranges are never re-planned. Unsplit ranges
//! yield no checkpoint before their end, so a crash re-reads them whole and nothing of them was
//! committed. A resumed read runs in a new snapshot: with key ranges each key is still read
//! once; with ctid ranges, a row *updated* between the crash and the resume moves to a new ctid
//! and may be read in both runs (tables with an integer primary key avoid this).
//!
//! **Incremental.** Rows are read `WHERE (cursor, key…) > (last cursor, last key…) ORDER BY
//! cursor, key…`, and the checkpoint after each batch is the (cursor, key) of its last row, so
//! rows sharing the last cursor value are neither lost nor duplicated. Values are kept as their
//! PostgreSQL text, compared as typed literals. A position set by `weft state set --cursor V`
//! holds only `from: V`: the next read takes `cursor >= V` (a backfill from a date), and its
//! checkpoints are positions again.

use serde::{Deserialize, Serialize};

use crate::cdc::lsn::Lsn;

/// A stream's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum PgState {
    FullRefresh {
        split: Split,
        ranges: Vec<RangeState>,
        /// The whole table was read: the next read starts a new full refresh.
        complete: bool,
    },
    Incremental {
        cursor_field: String,
        key: Vec<String>,
        /// The cursor then the key values of the last row read, as PostgreSQL text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<Vec<String>>,
        /// Set by `weft state set --cursor` (no row read since): the next read takes every
        /// row whose cursor is ≥ this, as PostgreSQL text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
    /// Change data capture from a logical replication slot (see [`crate::cdc`]).
    Cdc(CdcState),
}

/// The checkpoint of a CDC stream.
///
/// `lsn` is the applied-through position: every transaction whose commit *end* LSN is ≤ `lsn`
/// has been yielded (and, once the engine acks this checkpoint, applied). A resumed read skips
/// transactions ending at or before it. While `phase` is `snapshot`, `ranges` records the
/// initial copy's progress exactly as a full refresh does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdcState {
    /// The replication slot the stream reads (named after the pipeline id).
    pub slot: String,
    /// The publication the slot decodes with.
    pub publication: String,
    pub phase: CdcPhase,
    /// The slot's consistent point: snapshot rows carry this position.
    pub consistent_lsn: Lsn,
    /// The first snapshot of the initial copy: transactions visible in it are in the copy and
    /// are skipped when streaming (kept even after a resumed copy took a newer snapshot).
    pub snapshot: SnapshotXids,
    /// How the initial copy splits the table (snapshot phase only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<RangeState>,
    /// Snapshot rows yielded so far (their ordinals continue from here on resume).
    #[serde(default)]
    pub snapshot_rows: u64,
    /// Applied through this position.
    pub lsn: Lsn,
    /// The table's columns the stream has delivered so far: a column found at the next start
    /// beyond these was added while no read was running (see `cdc::start`). Empty in
    /// checkpoints from before weft recorded them (no check then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}

/// Where a CDC stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CdcPhase {
    /// Copying the table's rows as of the snapshot.
    Snapshot,
    /// Reading changes from the slot.
    Stream,
}

/// A snapshot's transaction horizon (`pg_current_snapshot()`), with 64-bit transaction ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotXids {
    pub xmin: u64,
    pub xmax: u64,
    #[serde(default)]
    pub xip: Vec<u64>,
}

impl SnapshotXids {
    /// Whether the transaction with the 32-bit id `xid` (as pgoutput's Begin sends it) had
    /// committed when this snapshot was taken. The id is widened with the epoch of `xmax`:
    /// any transaction we can still decode started less than 2³¹ ids before it.
    pub fn sees(&self, xid: u32) -> bool {
        let epoch = self.xmax >> 32;
        let mut full = epoch << 32 | xid as u64;
        if full > self.xmax && epoch > 0 {
            full -= 1 << 32;
        }
        full < self.xmin || (full < self.xmax && !self.xip.contains(&full))
    }
}

/// How a full refresh splits its table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case", deny_unknown_fields)]
pub enum Split {
    /// Ranges of a one-column integer primary key.
    Key { column: String },
    /// Ranges of heap blocks; positions are `block << 16 | offset`.
    Ctid,
    /// One range read whole.
    None,
}

/// One range: `lo ≤ position < hi` (open where `None`), resumed after `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lo: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hi: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    pub done: bool,
}

impl RangeState {
    pub fn new(lo: Option<i64>, hi: Option<i64>) -> Self {
        Self {
            lo,
            hi,
            after: None,
            done: false,
        }
    }
}

/// `n` ranges of about equal width over `[min, max]`, the first and last left open so rows
/// outside the planned bounds are still read.
pub fn even_ranges(min: i64, max: i64, n: u64) -> Vec<RangeState> {
    let span = (max as i128 - min as i128 + 1).max(1);
    let n = (n as i128).clamp(1, span);
    let mut ranges = Vec::with_capacity(n as usize);
    let mut lo: Option<i64> = None;
    for i in 1..n {
        let bound = (min as i128 + span * i / n) as i64;
        ranges.push(RangeState::new(lo, Some(bound)));
        lo = Some(bound);
    }
    ranges.push(RangeState::new(lo, None));
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything_without_overlap() {
        let r = even_ranges(1, 100, 4);
        assert_eq!(r.len(), 4);
        assert_eq!((r[0].lo, r[0].hi), (None, Some(26)));
        assert_eq!((r[1].lo, r[1].hi), (Some(26), Some(51)));
        assert_eq!((r[3].lo, r[3].hi), (Some(76), None));
        assert_eq!(even_ranges(5, 5, 10).len(), 1);
        assert_eq!(even_ranges(i64::MIN, i64::MAX, 3).len(), 3);
    }

    #[test]
    fn state_round_trips() {
        let s = PgState::FullRefresh {
            split: Split::Key {
                column: "id".into(),
            },
            ranges: even_ranges(1, 10, 2),
            complete: false,
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["mode"], "full_refresh");
        assert_eq!(json["split"]["by"], "key");
        assert_eq!(serde_json::from_value::<PgState>(json).unwrap(), s);
    }

    #[test]
    fn cdc_state_round_trips() {
        let s = PgState::Cdc(CdcState {
            slot: "weft_a_0123abcd".into(),
            publication: "weft_a_0123abcd".into(),
            phase: CdcPhase::Snapshot,
            consistent_lsn: Lsn(0x1_0000_0028),
            snapshot: SnapshotXids {
                xmin: 740,
                xmax: 745,
                xip: vec![741, 743],
            },
            split: Some(Split::Ctid),
            ranges: even_ranges(0, 9, 2),
            snapshot_rows: 12,
            lsn: Lsn(0x1_0000_0028),
            columns: vec!["id".into(), "note".into()],
        });
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["mode"], "cdc");
        assert_eq!(json["phase"], "snapshot");
        assert_eq!(json["lsn"], "1/28");
        assert_eq!(json["split"]["by"], "ctid");
        assert_eq!(serde_json::from_value::<PgState>(json).unwrap(), s);
    }

    #[test]
    fn snapshot_visibility_of_transactions() {
        let s = SnapshotXids {
            xmin: 100,
            xmax: 110,
            xip: vec![100, 105],
        };
        assert!(s.sees(99));
        assert!(!s.sees(100), "running at the snapshot");
        assert!(s.sees(101));
        assert!(!s.sees(105), "running at the snapshot");
        assert!(!s.sees(110), "started after the snapshot");
        assert!(!s.sees(5000));
        // Across an epoch: xmax in epoch 1; a 32-bit xid above xmax's low bits is epoch 0.
        let e = SnapshotXids {
            xmin: (1 << 32) + 5,
            xmax: (1 << 32) + 10,
            xip: vec![(1 << 32) + 7],
        };
        assert!(e.sees(u32::MAX), "epoch 0, long committed");
        assert!(e.sees(6));
        assert!(!e.sees(7));
        assert!(!e.sees(10));
        assert!(e.sees(4));
    }
}
