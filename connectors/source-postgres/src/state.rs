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
//! PostgreSQL text, compared as typed literals.

use serde::{Deserialize, Serialize};

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
    },
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
}
