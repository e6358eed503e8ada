//! [`Schedule`]: when a product runs, checked when the project loads.
//!
//! Parsing lives here, next to the project model, so `weft config validate`, `weft sync run`
//! and `weft daemon` all agree on what is valid and when it fires. Two kinds:
//!
//! - a cron expression (`schedule:`), parsed and computed by the `croner` crate: five fields
//!   `minute hour day-of-month month day-of-week`, or six with seconds first; `*`, lists,
//!   ranges, steps, month and weekday names, `L`/`#` modifiers and the `@hourly` … `@yearly`
//!   macros. When both day fields are restricted a day matching either fires (Vixie cron).
//!   Times are computed in the product's time zone (`timezone:`, or weft.yaml's
//!   `defaults.timezone`, UTC when neither), so `0 2 * * *` in `Europe/Berlin` follows
//!   daylight saving time.
//! - an interval (`every: 15m`, humantime): the next run is one interval after the previous
//!   one started.
//!
//! **Decision:** a cron crate (croner) rather than our own parser: it handles seconds, macros,
//! `L`/`#` and daylight-saving gaps and folds correctly, which a hand-written parser did not;
//! it uses chrono without default features, so arrow and parquet are not rebuilt.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::Serialize;

/// A valid schedule: a cron expression in a time zone, or an interval.
#[derive(Clone)]
pub struct Schedule {
    /// As written (trimmed): the cron expression, or `every 15m`.
    expression: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Cron { cron: Box<Cron>, tz: Tz },
    Every(Duration),
}

/// Why a `schedule` is not a cron expression, worded for the person editing the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{expression}` is not a cron expression ({reason}); write five fields `minute hour day-of-month month day-of-week` (or six with seconds first), for example \"0 * * * *\" (hourly) or \"30 2 * * MON-FRI\", or use `every: 15m` for an interval")]
pub struct ScheduleError {
    pub expression: String,
    pub reason: String,
}

const MACROS: [&str; 6] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
];

impl Schedule {
    /// Parses a cron expression of five or six fields (or a macro such as `@daily`), computed
    /// in UTC.
    pub fn parse(expression: &str) -> Result<Self, ScheduleError> {
        Self::parse_in(expression, Tz::UTC)
    }

    /// Parses a cron expression whose times are wall-clock times in `tz`.
    pub fn parse_in(expression: &str, tz: Tz) -> Result<Self, ScheduleError> {
        let expression = expression.trim();
        let fail = |reason: String| ScheduleError {
            expression: expression.to_string(),
            reason,
        };
        let lower = expression.to_ascii_lowercase();
        let pattern = match lower.as_str() {
            "@midnight" => "@daily",
            m if m.starts_with('@') && !MACROS.contains(&m) => {
                return Err(fail(
                    "the macros are @hourly, @daily, @weekly, @monthly and @yearly".into(),
                ))
            }
            _ => expression,
        };
        let fields = pattern.split_whitespace().count();
        if !pattern.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(fail(format!("it has {fields} field(s), not 5 or 6")));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|e| fail(cron_reason(&e)))?;
        let schedule = Self {
            expression: expression.to_string(),
            kind: Kind::Cron {
                cron: Box::new(cron),
                tz,
            },
        };
        // A pattern that never fires (`0 0 31 2 *`) is as wrong as one that does not parse.
        if schedule.next_after(Utc::now()).is_none() {
            return Err(fail("it never fires".into()));
        }
        Ok(schedule)
    }

    /// An interval schedule; `text` is the interval as written (`15m`).
    pub fn every(text: &str, interval: Duration) -> Result<Self, String> {
        if interval < Duration::from_secs(1) {
            return Err(format!(
                "`{text}` is shorter than one second; write an interval such as `30s` or `15m`"
            ));
        }
        Ok(Self {
            expression: format!("every {}", text.trim()),
            kind: Kind::Every(interval),
        })
    }

    /// The schedule as written (trimmed): the cron expression or `every <interval>`.
    pub fn as_str(&self) -> &str {
        &self.expression
    }

    /// The interval of an `every:` schedule.
    pub fn interval(&self) -> Option<Duration> {
        match &self.kind {
            Kind::Every(d) => Some(*d),
            Kind::Cron { .. } => None,
        }
    }

    /// The time zone cron times are computed in (UTC for intervals).
    pub fn timezone(&self) -> Tz {
        match &self.kind {
            Kind::Cron { tz, .. } => *tz,
            Kind::Every(_) => Tz::UTC,
        }
    }

    /// The first time strictly after `after` at which the schedule fires; for an interval,
    /// `after` plus the interval (`after` being when the previous run was due).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| after.checked_add_signed(d)),
            Kind::Cron { cron, tz } => cron
                .find_next_occurrence(&after.with_timezone(tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

/// croner's messages, shortened to what the person needs.
fn cron_reason(e: &croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    match e {
        E::EmptyPattern => "it is empty".into(),
        E::InvalidPattern(m) | E::IllegalCharacters(m) | E::ComponentError(m) => m.clone(),
        other => other.to_string(),
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule")
            .field(&self.expression)
            .field(&self.timezone().name())
            .finish()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.timezone() == other.timezone()
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
        assert_eq!(next("5-59/20 * * * *", t), at(2026, 3, 1, 10, 25));
        assert_eq!(next("30 2 * * MON-FRI", t), at(2026, 3, 2, 2, 30));
        assert_eq!(next("0 0 * * 7", t), at(2026, 3, 8, 0, 0));
        assert_eq!(next("0 0 * * sun", t), at(2026, 3, 8, 0, 0));
        assert_eq!(next("0 9,17 * * *", t), at(2026, 3, 1, 17, 0));
        assert_eq!(next("0 0 1 JAN *", t), at(2027, 1, 1, 0, 0));
        assert_eq!(next("@daily", t), at(2026, 3, 2, 0, 0));
        assert_eq!(next("@midnight", t), at(2026, 3, 2, 0, 0));
        assert_eq!(next("@hourly", t), at(2026, 3, 1, 11, 0));
        assert_eq!(next("@monthly", t), at(2026, 4, 1, 0, 0));
        // Both day fields restricted: either fires (the 15th, or any Friday).
        assert_eq!(next("0 0 15 * FRI", t), at(2026, 3, 6, 0, 0));
        assert_eq!(next("0 0 15 * *", t), at(2026, 3, 15, 0, 0));
        assert_eq!(next("0 0 29 2 *", t), at(2028, 2, 29, 0, 0));
        // Strictly after: a time on the minute moves on.
        assert_eq!(next("15 10 * * *", t), at(2026, 3, 2, 10, 15));
        // Six fields: seconds first.
        assert_eq!(
            next("*/5 * * * * *", t),
            Utc.with_ymd_and_hms(2026, 3, 1, 10, 15, 5).unwrap()
        );
    }

    #[test]
    fn time_zones_follow_daylight_saving() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let s = Schedule::parse_in("0 2 * * *", berlin).unwrap();
        // Winter: 02:00 CET is 01:00 UTC.
        assert_eq!(
            s.next_after(at(2026, 1, 10, 12, 0)),
            Some(at(2026, 1, 11, 1, 0))
        );
        // Summer: 02:00 CEST is 00:00 UTC.
        assert_eq!(
            s.next_after(at(2026, 7, 10, 12, 0)),
            Some(at(2026, 7, 11, 0, 0))
        );
    }

    #[test]
    fn intervals_add_to_the_previous_time() {
        let s = Schedule::every("15m", Duration::from_secs(900)).unwrap();
        assert_eq!(s.as_str(), "every 15m");
        assert_eq!(
            s.next_after(at(2026, 3, 1, 10, 0)),
            Some(at(2026, 3, 1, 10, 15))
        );
        assert!(Schedule::every("0s", Duration::ZERO).is_err());
    }

    #[test]
    fn nonsense_and_out_of_range_are_refused() {
        for (bad, reason) in [
            ("every tuesday-ish", "field(s), not 5 or 6"),
            ("99 * * * *", "99"),
            ("* * *", "it has 3 field(s), not 5 or 6"),
            ("0 0 * * * * *", "it has 7 field(s), not 5 or 6"),
            ("0 25 * * *", "25"),
            ("0 0 31 2 *", "never fires"),
            ("0 0 * * FUN", "not a cron expression"),
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
