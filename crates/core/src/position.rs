//! Positions: a stream's checkpoint described for a person, and checkpoints built from what a
//! person gives (`weft state show` and `weft state set`).
//!
//! Checkpoints are opaque to everyone but their source, so a source that wants its positions
//! shown and set implements [`crate::Source::describe_position`],
//! [`crate::Source::position_from_cursor`] and, for sources whose state is JSON the user may
//! hold (Airbyte connectors), [`crate::Source::position_from_state`]. The defaults show the
//! checkpoint's JSON and refuse to build one. [`CursorValue::parse`] reads a user's cursor value
//! against the stream's cursor column type, so every source words its errors the same way.

use std::fmt;

use arrow_schema::DataType;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use serde::Serialize;

use crate::catalog::{ConfiguredStream, SyncMode};
use crate::error::{ConnectorError, Result};

/// Where a stream is, in human terms.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// An incremental read by cursor.
    Cursor {
        /// The cursor column.
        field: String,
        /// The cursor value of the last row read, `None` before the first row.
        value: Option<String>,
        /// The tie-breaker: the key values of the last row read, among rows sharing `value`.
        key: Vec<KeyValue>,
        /// Set by `weft state set --cursor`: the next read starts *at* `value` (every row whose
        /// cursor is ≥ it) rather than after the last row read.
        from_value: bool,
    },
    /// A read from a change log (CDC): everything committed up to `lsn` was read.
    Log {
        /// The log position (PostgreSQL's `X/Y` form).
        lsn: String,
        /// `snapshot` while the initial copy runs, then `stream`.
        phase: String,
    },
    /// A full refresh of a table read in ranges.
    Ranges {
        /// Ranges read completely.
        done: usize,
        /// Ranges the table was split into.
        total: usize,
        /// The whole table was read; the next read starts a new full refresh.
        complete: bool,
    },
    /// Files read.
    Files {
        /// Files read completely.
        done: usize,
        /// The file being read and the data rows read of it.
        current: Option<String>,
        /// Data rows read of `current`.
        current_rows: u64,
        /// Every file was read; the next read picks up new and changed files.
        complete: bool,
    },
    /// A read that has no finer position than "done" or "not done".
    Progress {
        /// The read finished.
        complete: bool,
    },
    /// The state the source itself keeps (an Airbyte connector's state messages).
    State {
        /// The state as the source emitted it.
        state: serde_json::Value,
    },
    /// A source that does not describe its checkpoints: their JSON.
    Opaque {
        /// The checkpoint's JSON.
        checkpoint: serde_json::Value,
    },
}

/// One key column's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key column.
    pub column: String,
    /// Its value in the last row read, as text.
    pub value: String,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Cursor {
                field, value: None, ..
            } => write!(f, "cursor `{field}`: no row read yet"),
            Position::Cursor {
                field,
                value: Some(value),
                from_value: true,
                ..
            } => write!(
                f,
                "cursor `{field}` set: the next run reads rows with {field} >= {value}"
            ),
            Position::Cursor {
                field,
                value: Some(value),
                key,
                ..
            } => {
                write!(f, "cursor {field} = {value}")?;
                if !key.is_empty() {
                    let key: Vec<String> = key
                        .iter()
                        .map(|k| format!("{} = {}", k.column, k.value))
                        .collect();
                    write!(f, ", key {}", key.join(", "))?;
                }
                write!(f, " (the next run reads rows after it)")
            }
            Position::Log { lsn, phase } => write!(f, "LSN {lsn} ({phase})"),
            Position::Ranges { complete: true, .. } | Position::Progress { complete: true } => {
                write!(f, "complete")
            }
            Position::Ranges { done, total, .. } => write!(f, "{done} of {total} range(s) read"),
            Position::Progress { complete: false } => write!(f, "in progress"),
            Position::Files {
                done,
                current,
                current_rows,
                complete,
            } => {
                write!(f, "{done} file(s) read")?;
                if let Some(file) = current {
                    write!(f, ", {file} at row {current_rows}")?;
                }
                if *complete {
                    write!(f, ", complete")?;
                }
                Ok(())
            }
            Position::State { state } => write!(f, "state {state}"),
            Position::Opaque { checkpoint } => write!(f, "{checkpoint}"),
        }
    }
}

impl Position {
    /// What the next read of a stream in `mode` does from this position, in words (`weft sync
    /// run --dry-run`): "resumes from LSN 0/16B3748", "cursor updated_at > 2024-01-10
    /// 09:00:00+00", "resumes an interrupted full refresh after 3 of 8 ranges". A finished
    /// full refresh starts again from the start.
    pub fn next_read(&self, mode: SyncMode) -> String {
        match self {
            Position::Cursor {
                field, value: None, ..
            } => format!("cursor {field}: every row (none read yet)"),
            Position::Cursor {
                field,
                value: Some(value),
                from_value: true,
                ..
            } => format!("cursor {field} >= {value} (set by hand)"),
            Position::Cursor {
                field,
                value: Some(value),
                key,
                ..
            } => {
                let mut text = format!("cursor {field} > {value}");
                // The tie-breaker: among rows at `value`, those after the last key read.
                match key.as_slice() {
                    [] => {}
                    [one] => text.push_str(&format!(" (ties: {} > {})", one.column, one.value)),
                    many => {
                        let (columns, values): (Vec<&str>, Vec<&str>) = many
                            .iter()
                            .map(|k| (k.column.as_str(), k.value.as_str()))
                            .unzip();
                        text.push_str(&format!(
                            " (ties: ({}) > ({}))",
                            columns.join(", "),
                            values.join(", ")
                        ));
                    }
                }
                text
            }
            Position::Log { lsn, phase } if phase == "snapshot" => {
                format!("resumes the interrupted initial snapshot, then changes from LSN {lsn}")
            }
            Position::Log { lsn, .. } => format!("resumes from LSN {lsn}"),
            Position::Ranges { complete: true, .. }
            | Position::Progress { complete: true }
            | Position::Files { complete: true, .. }
                if mode == SyncMode::FullRefresh =>
            {
                Position::first_read(mode)
            }
            Position::Ranges { complete: true, .. } | Position::Progress { complete: true } => {
                "reads what is new since the last complete read".into()
            }
            Position::Ranges { done, total, .. } => {
                format!("resumes an interrupted full refresh after {done} of {total} ranges")
            }
            Position::Progress { complete: false } => "resumes an interrupted read".into(),
            Position::Files {
                done,
                complete: true,
                ..
            } => format!("new and changed files ({done} read before)"),
            Position::Files {
                done,
                current,
                current_rows,
                ..
            } => {
                let mut text = format!("resumes after {done} file(s) read");
                if let Some(file) = current {
                    text.push_str(&format!(", {file} after row {current_rows}"));
                }
                text
            }
            Position::State { state } => format!("resumes from the connector's state {state}"),
            Position::Opaque { checkpoint } => format!("resumes from checkpoint {checkpoint}"),
        }
    }

    /// What the first read of a stream in `mode` does (no run has committed a checkpoint).
    pub fn first_read(mode: SyncMode) -> String {
        match mode {
            SyncMode::FullRefresh => "full refresh from the start",
            SyncMode::Incremental => "incremental from the start: every row",
            SyncMode::Cdc => "initial snapshot, then changes from the log",
        }
        .into()
    }
}

/// A cursor value given by a person, read as the cursor column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorValue {
    /// µs since the epoch; `utc` for a timezone-aware column (the value is in UTC).
    Timestamp {
        /// µs since the epoch.
        micros: i64,
        /// The column is timezone-aware.
        utc: bool,
    },
    /// Days since the epoch.
    Date(i32),
    /// An integer cursor.
    Integer(i64),
}

impl CursorValue {
    /// Reads `value` as the type of `stream`'s cursor column. Errors name the stream and the
    /// column and say which forms are accepted.
    pub fn parse(stream: &ConfiguredStream, value: &str) -> Result<Self> {
        let name = stream.name();
        let Some(column) = stream.cursor_field.as_deref() else {
            return Err(ConnectorError::config(
                "cursor",
                format!("stream `{name}` has no cursor column: only incremental streams have a cursor to set"),
            ));
        };
        let field = stream
            .descriptor
            .schema
            .field_with_name(column)
            .map_err(|_| {
                ConnectorError::Schema(format!(
                    "stream `{name}`: the cursor column `{column}` is not in the source's table"
                ))
            })?;
        let value = value.trim();
        let wrong = |expected: &str, example: &str| {
            ConnectorError::config(
                "cursor",
                format!(
                    "stream `{name}`: {value:?} is not a valid value of cursor column `{column}` ({expected}); give e.g. {example}"
                ),
            )
        };
        match field.data_type() {
            DataType::Timestamp(_, tz) => {
                let utc = tz.is_some();
                let example = if utc {
                    "2024-01-31, 2024-01-31 12:00:00 or 2024-01-31T12:00:00+02:00"
                } else {
                    "2024-01-31 or 2024-01-31 12:00:00"
                };
                let expected = if utc {
                    "a timestamp with time zone"
                } else {
                    "a timestamp without time zone"
                };
                let naive = parse_timestamp(value, utc).ok_or_else(|| wrong(expected, example))?;
                let micros = naive.and_utc().timestamp_micros();
                Ok(CursorValue::Timestamp { micros, utc })
            }
            DataType::Date32 | DataType::Date64 => {
                let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
                    .map_err(|_| wrong("a date", "2024-01-31"))?;
                let days = date.signed_duration_since(NaiveDate::default()).num_days();
                Ok(CursorValue::Date(days as i32))
            }
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                let n: i64 = value.parse().map_err(|_| wrong("an integer", "1000"))?;
                let fits = match field.data_type() {
                    DataType::Int8 => i8::try_from(n).is_ok(),
                    DataType::Int16 => i16::try_from(n).is_ok(),
                    DataType::Int32 => i32::try_from(n).is_ok(),
                    _ => true,
                };
                if !fits {
                    return Err(wrong(
                        &format!("an integer of type {}", field.data_type()),
                        "a smaller number",
                    ));
                }
                Ok(CursorValue::Integer(n))
            }
            other => Err(ConnectorError::Unsupported(format!(
                "stream `{name}`: weft cannot set cursor column `{column}` of type {} (only timestamp, date and integer cursors)",
                crate::sql_type(other)
            ))),
        }
    }

    /// The value as PostgreSQL text (timestamps in UTC with `+00` when timezone-aware).
    pub fn to_text(self) -> String {
        match self {
            CursorValue::Timestamp { micros, utc } => {
                let t = DateTime::from_timestamp_micros(micros)
                    .expect("parsed timestamps are in range")
                    .naive_utc();
                let mut s = t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
                if utc {
                    s.push_str("+00");
                }
                s
            }
            CursorValue::Date(days) => (NaiveDate::default()
                + chrono::TimeDelta::days(days.into()))
            .format("%Y-%m-%d")
            .to_string(),
            CursorValue::Integer(n) => n.to_string(),
        }
    }
}

/// A date, a date and time (space or `T`), with an offset where `with_offset` allows one;
/// the result is in UTC for timezone-aware columns.
fn parse_timestamp(value: &str, with_offset: bool) -> Option<NaiveDateTime> {
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Some(date.and_time(NaiveTime::MIN));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, format) {
            return Some(t);
        }
    }
    if !with_offset {
        return None;
    }
    let value = value
        .strip_suffix("+00")
        .map_or(value.to_string(), |v| format!("{v}+00:00"));
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%#z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(&value, format) {
            return Some(t.naive_utc());
        }
    }
    DateTime::parse_from_rfc3339(&value)
        .ok()
        .map(|t| t.naive_utc())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{Field, Schema, TimeUnit};

    use super::*;
    use crate::catalog::{StreamDescriptor, WriteMode};

    fn stream(ty: DataType) -> ConfiguredStream {
        ConfiguredStream {
            descriptor: StreamDescriptor {
                name: crate::StreamName::new("orders").unwrap(),
                schema: Arc::new(Schema::new(vec![Field::new("c", ty, true)])),
                primary_key: vec![],
                cursor_candidates: vec![],
                source_defined_cursor: None,
                supported_sync_modes: vec![],
                row_estimate: None,
            },
            sync_mode: SyncMode::Incremental,
            write_mode: WriteMode::Append,
            cursor_field: Some("c".into()),
            primary_key: vec![],
            pipeline_id: "d.p.orders".into(),
            follow: false,
        }
    }

    #[test]
    fn timestamps_with_time_zone_are_read_in_utc() {
        let s = stream(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        ));
        let text = |v: &str| CursorValue::parse(&s, v).unwrap().to_text();
        assert_eq!(text("2024-01-31"), "2024-01-31 00:00:00.000000+00");
        assert_eq!(text("2024-01-31 12:30:00"), "2024-01-31 12:30:00.000000+00");
        assert_eq!(
            text("2024-01-31T12:30:00+02:00"),
            "2024-01-31 10:30:00.000000+00"
        );
        assert_eq!(
            text("2024-01-31 12:30:00+00"),
            "2024-01-31 12:30:00.000000+00"
        );
        assert_eq!(
            text("2024-01-31T12:30:00Z"),
            "2024-01-31 12:30:00.000000+00"
        );
    }

    #[test]
    fn the_next_read_is_said_in_words() {
        let cursor = |value: Option<&str>, key: &[(&str, &str)], from_value| Position::Cursor {
            field: "updated_at".into(),
            value: value.map(str::to_string),
            key: key
                .iter()
                .map(|(c, v)| KeyValue {
                    column: c.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            from_value,
        };
        let inc = SyncMode::Incremental;
        let full = SyncMode::FullRefresh;
        let at = Some("2026-11-30 10:00:00+00");
        assert_eq!(
            cursor(at, &[], false).next_read(inc),
            "cursor updated_at > 2026-11-30 10:00:00+00"
        );
        assert_eq!(
            cursor(at, &[("id", "7")], false).next_read(inc),
            "cursor updated_at > 2026-11-30 10:00:00+00 (ties: id > 7)"
        );
        assert_eq!(
            cursor(Some("5"), &[("a", "1"), ("b", "x")], false).next_read(inc),
            "cursor updated_at > 5 (ties: (a, b) > (1, x))"
        );
        assert_eq!(
            cursor(at, &[], true).next_read(inc),
            "cursor updated_at >= 2026-11-30 10:00:00+00 (set by hand)"
        );
        assert_eq!(
            cursor(None, &[], false).next_read(inc),
            "cursor updated_at: every row (none read yet)"
        );
        let ranges = |done, complete| Position::Ranges {
            done,
            total: 8,
            complete,
        };
        assert_eq!(
            ranges(3, false).next_read(full),
            "resumes an interrupted full refresh after 3 of 8 ranges"
        );
        assert_eq!(
            ranges(8, true).next_read(full),
            "full refresh from the start"
        );
        let log = |phase: &str| Position::Log {
            lsn: "0/16B3748".into(),
            phase: phase.into(),
        };
        assert_eq!(
            log("stream").next_read(SyncMode::Cdc),
            "resumes from LSN 0/16B3748"
        );
        assert_eq!(
            log("snapshot").next_read(SyncMode::Cdc),
            "resumes the interrupted initial snapshot, then changes from LSN 0/16B3748"
        );
        let files = |complete: bool| Position::Files {
            done: 2,
            current: (!complete).then(|| "c.csv".to_string()),
            current_rows: 10,
            complete,
        };
        assert_eq!(
            files(false).next_read(inc),
            "resumes after 2 file(s) read, c.csv after row 10"
        );
        assert_eq!(
            files(true).next_read(inc),
            "new and changed files (2 read before)"
        );
        assert_eq!(files(true).next_read(full), "full refresh from the start");
        assert_eq!(
            Position::first_read(SyncMode::Cdc),
            "initial snapshot, then changes from the log"
        );
    }

    #[test]
    fn bad_values_name_the_stream_column_and_form() {
        let s = stream(DataType::Timestamp(TimeUnit::Microsecond, None));
        let e = CursorValue::parse(&s, "yesterday").unwrap_err().to_string();
        assert!(e.contains("stream `orders`"), "{e}");
        assert!(e.contains("cursor column `c`"), "{e}");
        assert!(e.contains("a timestamp without time zone"), "{e}");
        assert!(CursorValue::parse(&s, "2024-01-31T00:00:00+02:00").is_err());
        let i = stream(DataType::Int16);
        assert!(CursorValue::parse(&i, "70000")
            .unwrap_err()
            .to_string()
            .contains("Int16"));
        assert_eq!(CursorValue::parse(&i, "42").unwrap().to_text(), "42");
        let d = stream(DataType::Date32);
        assert_eq!(
            CursorValue::parse(&d, "2024-02-29").unwrap().to_text(),
            "2024-02-29"
        );
        assert!(CursorValue::parse(&d, "2024-02-30").is_err());
        let t = stream(DataType::Utf8);
        assert!(CursorValue::parse(&t, "x")
            .unwrap_err()
            .to_string()
            .contains("cannot set"));
    }
}
