//! [`Schedule`]: a product's `schedule`, a cron expression checked when the project loads.
//!
//! Parsing lives here, next to the project model, so `weft config validate`, `weft sync run`
//! and the daemon that will run products on their schedule all agree on what is valid and
//! when it fires. The dialect is classic (Vixie) cron: five fields `minute hour day-of-month
//! month day-of-week` with `*`, lists, ranges and steps, month and weekday names (`JAN`,
//! `MON`), 0 or 7 for Sunday, and the `@hourly` … `@yearly` macros; when both day fields are
//! restricted a day matching either fires. Times are UTC.
//!
//! **Decision:** a small parser of our own rather than a cron crate: the well-known crates pull
//! in derive macros and chrono's default features, which rebuilds all of arrow and parquet,
//! for what is a hundred lines of well-tested code.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use serde::Serialize;

/// A valid cron expression.
#[derive(Clone)]
pub struct Schedule {
    expression: String,
    /// Bit `n` set: minute `n` fires (0–59).
    minutes: u64,
    /// Hours 0–23.
    hours: u64,
    /// Days of the month 1–31.
    days: u64,
    /// Months 1–12.
    months: u64,
    /// Days of the week, Sunday = 0.
    weekdays: u64,
    /// Whether the day-of-month / day-of-week field starts with `*` (cron's rule: if both are
    /// restricted, a day matching either fires; otherwise both must match).
    days_star: bool,
    weekdays_star: bool,
}

/// Why a `schedule` is not a cron expression, worded for the person editing the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{expression}` is not a cron expression ({reason}); write five fields `minute hour day-of-month month day-of-week`, for example \"0 * * * *\" (hourly) or \"30 2 * * MON-FRI\"")]
pub struct ScheduleError {
    pub expression: String,
    pub reason: String,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One of the five fields: its name, range and value names (the first name means `low`).
struct FieldSpec {
    name: &'static str,
    low: u32,
    high: u32,
    names: &'static [&'static str],
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        low: 0,
        high: 59,
        names: &[],
    },
    FieldSpec {
        name: "hour",
        low: 0,
        high: 23,
        names: &[],
    },
    FieldSpec {
        name: "day-of-month",
        low: 1,
        high: 31,
        names: &[],
    },
    FieldSpec {
        name: "month",
        low: 1,
        high: 12,
        names: &MONTHS,
    },
    // 7 is Sunday too; folded onto 0 after parsing.
    FieldSpec {
        name: "day-of-week",
        low: 0,
        high: 7,
        names: &WEEKDAYS,
    },
];

impl Schedule {
    /// Parses a cron expression of five fields (or a macro such as `@daily`).
    pub fn parse(expression: &str) -> Result<Self, ScheduleError> {
        let expression = expression.trim();
        let fail = |reason: String| ScheduleError {
            expression: expression.to_string(),
            reason,
        };
        let expanded = match expression.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            m if m.starts_with('@') => {
                return Err(fail(
                    "the macros are @hourly, @daily, @weekly, @monthly and @yearly".into(),
                ))
            }
            _ => expression,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(fail(format!("it has {} field(s), not 5", fields.len())));
        }
        let mut bits = [0u64; 5];
        for (i, (text, spec)) in fields.iter().zip(&FIELDS).enumerate() {
            bits[i] = parse_field(text, spec)
                .map_err(|e| fail(format!("{} `{text}`: {e}", spec.name)))?;
        }
        // Sunday as 7 is Sunday as 0.
        if bits[4] & (1 << 7) != 0 {
            bits[4] = (bits[4] & !(1 << 7)) | 1;
        }
        let star = |text: &str| text.starts_with('*') || text == "?";
        let schedule = Self {
            expression: expression.to_string(),
            minutes: bits[0],
            hours: bits[1],
            days: bits[2],
            months: bits[3],
            weekdays: bits[4],
            days_star: star(fields[2]),
            weekdays_star: star(fields[4]),
        };
        // A pattern that never fires (`0 0 31 2 *`) is as wrong as one that does not parse.
        if schedule.next_after(Utc::now()).is_none() {
            return Err(fail("it never fires".into()));
        }
        Ok(schedule)
    }

    /// The expression as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.expression
    }

    /// The first minute strictly after `after` at which the schedule fires.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after.with_second(0)?.with_nanosecond(0)? + chrono::Duration::minutes(1);
        let mut date = start.date_naive();
        // Eight years cover every day pattern that fires at all (29 February across a
        // century year that is not a leap year).
        for day in 0..(366 * 8) {
            if self.day_fires(date) {
                let (from_hour, from_minute) = if day == 0 {
                    (start.hour(), start.minute())
                } else {
                    (0, 0)
                };
                for hour in from_hour..24 {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    let first = if hour == from_hour { from_minute } else { 0 };
                    if let Some(minute) = (first..60).find(|m| self.minutes & (1 << m) != 0) {
                        return Some(date.and_hms_opt(hour, minute, 0)?.and_utc());
                    }
                }
            }
            date = date.succ_opt()?;
        }
        None
    }

    fn day_fires(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let day = self.days & (1 << date.day()) != 0;
        let weekday = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.days_star || self.weekdays_star {
            day && weekday
        } else {
            day || weekday
        }
    }
}

/// The bit set of one field: `*`, `?`, `a`, `a-b`, each optionally `/step`, comma-separated.
fn parse_field(text: &str, spec: &FieldSpec) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| format!("the step `{step}` is not a number"))?;
                if step == 0 {
                    return Err("a step of 0 never advances".into());
                }
                (range, step)
            }
            None => (part, 1),
        };
        let (low, high) = if range == "*" || range == "?" {
            (spec.low, spec.high)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a, spec)?, value(b, spec)?);
            if a > b {
                return Err(format!("the range {a}-{b} runs backwards"));
            }
            (a, b)
        } else {
            let a = value(range, spec)?;
            // `5/15` means from 5 to the end in steps of 15.
            (a, if part.contains('/') { spec.high } else { a })
        };
        let mut v = low;
        while v <= high {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

fn value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(i) = spec.names.iter().position(|n| *n == upper) {
        return Ok(spec.low + i as u32);
    }
    let v: u32 = text.parse().map_err(|_| {
        if text.is_empty() {
            "an empty value".to_string()
        } else if spec.names.is_empty() {
            format!("`{text}` is not a number")
        } else {
            format!(
                "`{text}` is not a number or a name ({})",
                spec.names.join(", ")
            )
        }
    })?;
    if v < spec.low || v > spec.high {
        return Err(format!("{v} is outside {}-{}", spec.low, spec.high));
    }
    Ok(v)
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.expression).finish()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn next(expr: &str, after: DateTime<Utc>) -> DateTime<Utc> {
        Schedule::parse(expr).unwrap().next_after(after).unwrap()
    }

    #[test]
    fn next_times() {
        // 2026-03-01 is a Sunday.
        let t = at(2026, 3, 1, 10, 15);
        assert_eq!(next("0 * * * *", t), at(2026, 3, 1, 11, 0));
        assert_eq!(next("* * * * *", t), at(2026, 3, 1, 10, 16));
        assert_eq!(next("*/20 * * * *", t), at(2026, 3, 1, 10, 20));
        assert_eq!(next("5/20 * * * *", t), at(2026, 3, 1, 10, 25));
        assert_eq!(next("30 2 * * MON-FRI", t), at(2026, 3, 2, 2, 30));
        assert_eq!(next("0 0 * * 7", t), at(2026, 3, 8, 0, 0));
        assert_eq!(next("0 0 * * sun", t), at(2026, 3, 8, 0, 0));
        assert_eq!(next("0 9,17 * * *", t), at(2026, 3, 1, 17, 0));
        assert_eq!(next("0 0 1 JAN *", t), at(2027, 1, 1, 0, 0));
        assert_eq!(next("@daily", t), at(2026, 3, 2, 0, 0));
        assert_eq!(next("@monthly", t), at(2026, 4, 1, 0, 0));
        // Both day fields restricted: either fires (the 15th, or any Friday).
        assert_eq!(next("0 0 15 * FRI", t), at(2026, 3, 6, 0, 0));
        // One restricted: only it counts.
        assert_eq!(next("0 0 15 * *", t), at(2026, 3, 15, 0, 0));
        // 29 February comes in leap years only.
        assert_eq!(next("0 0 29 2 *", t), at(2028, 2, 29, 0, 0));
        // Strictly after: a time on the minute moves on.
        assert_eq!(next("15 10 * * *", t), at(2026, 3, 2, 10, 15));
    }

    #[test]
    fn nonsense_and_out_of_range_are_refused() {
        for (bad, reason) in [
            ("every tuesday-ish", "5"),
            ("99 * * * *", "minute `99`: 99 is outside 0-59"),
            ("* * *", "it has 3 field(s), not 5"),
            ("0 0 * * * *", "it has 6 field(s), not 5"),
            ("0 25 * * *", "hour `25`: 25 is outside 0-23"),
            ("0 0 31 2 *", "it never fires"),
            ("*/0 * * * *", "a step of 0"),
            ("0 0 * * FUN", "`FUN` is not a number or a name"),
            ("0 0 10-5 * *", "runs backwards"),
            ("0 0 L * *", "`L` is not a number"),
            ("@sometimes", "the macros are"),
            ("", "0 field(s)"),
        ] {
            let err = Schedule::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("not a cron expression") && err.contains(reason),
                "{bad}: {err}"
            );
        }
    }
}
