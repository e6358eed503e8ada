//! Datetimes as the CDK handles them: Python `strftime`/`strptime` formats (plus the CDK's
//! `%s`, `%s_as_float`, `%ms`, `%_ms`, `%epoch_microseconds`), ISO 8601 durations, a subset of
//! `dateutil.parser.parse`, and Python's `datetime` as a template value.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta, Timelike, Utc};
use minijinja::value::{Object, ObjectRepr, Value as JValue};
use minijinja::{Error, ErrorKind, State};

/// Python's format directives translated to chrono's (`%f` is microseconds in Python).
fn chrono_format(python: &str) -> String {
    python.replace("%f", "%6f")
}

/// The CDK's `DatetimeParser.format`.
pub fn format(dt: &DateTime<Utc>, fmt: &str) -> String {
    let micros = dt.timestamp_micros();
    match fmt {
        "%s" => dt.timestamp().to_string(),
        "%s_as_float" => {
            let f = micros as f64 / 1e6;
            crate::interpolate::literal::py_repr(&serde_json::json!(f))
        }
        "%epoch_microseconds" => micros.to_string(),
        "%ms" => (micros.div_euclid(1000)).to_string(),
        _ if fmt.contains("%_ms") => {
            let ms = dt.nanosecond() / 1_000_000;
            dt.format(&chrono_format(&fmt.replace("%_ms", "_ms")))
                .to_string()
                .replace("_ms", &format!("{ms:03}"))
        }
        _ => dt.format(&chrono_format(fmt)).to_string(),
    }
}

/// The CDK's `DatetimeParser.parse`: naive results are UTC.
pub fn parse(text: &str, fmt: &str) -> Option<DateTime<Utc>> {
    let int = || text.trim().parse::<i64>().ok();
    match fmt {
        "%s" => return DateTime::from_timestamp(int()?, 0),
        "%s_as_float" => {
            let f: f64 = text.trim().parse().ok()?;
            return DateTime::from_timestamp_micros((f * 1e6).round() as i64);
        }
        "%epoch_microseconds" => return DateTime::from_timestamp_micros(int()?),
        "%ms" => return DateTime::from_timestamp_millis(int()?),
        _ => {}
    }
    // A fraction after a dot: chrono's `%.f` reads it as a fraction of a second (Python's `%f`
    // reads 1–6 digits the same way); chrono's bare `%f` would read `789` as nanoseconds.
    let fmt = fmt
        .replace(".%_ms", "%.f")
        .replace(".%f", "%.f")
        .replace("%_ms", "%3f");
    if let Ok(dt) = DateTime::parse_from_str(text, &fmt) {
        return Some(dt.with_timezone(&Utc));
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(text, &fmt) {
        return Some(dt.and_utc());
    }
    NaiveDate::parse_from_str(text, &fmt)
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

/// A subset of `dateutil.parser.parse` (ISO 8601 and close variants); naive results are UTC.
pub fn parse_any(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(text, fmt) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    let naive = text.trim_end_matches('Z');
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Some(dt.and_utc());
        }
    }
    for fmt in ["%Y-%m-%d", "%Y%m%d", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(naive, fmt) {
            return d.and_hms_opt(0, 0, 0).map(|d| d.and_utc());
        }
    }
    None
}

/// An ISO 8601 duration (`P1D`, `PT0.000001S`, `P1M`, `P1W`): months are calendar months.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Duration {
    pub months: u32,
    pub delta: TimeDelta,
}

impl Duration {
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.trim().strip_prefix('P')?;
        let (date, time) = rest.split_once('T').unwrap_or((rest, ""));
        let mut out = Duration::default();
        let mut micros: f64 = 0.0;
        for (part, in_time) in [(date, false), (time, true)] {
            let mut num = String::new();
            for c in part.chars() {
                if c.is_ascii_digit() || c == '.' || c == ',' {
                    num.push(if c == ',' { '.' } else { c });
                    continue;
                }
                let n: f64 = num.parse().ok()?;
                num.clear();
                match (c, in_time) {
                    ('Y', false) => out.months += (n * 12.0) as u32,
                    ('M', false) => out.months += n as u32,
                    ('W', false) => micros += n * 7.0 * 86_400e6,
                    ('D', false) => micros += n * 86_400e6,
                    ('H', true) => micros += n * 3_600e6,
                    ('M', true) => micros += n * 60e6,
                    ('S', true) => micros += n * 1e6,
                    _ => return None,
                }
            }
            if !num.is_empty() {
                return None;
            }
        }
        out.delta = TimeDelta::microseconds(micros.round() as i64);
        Some(out)
    }

    pub fn add(&self, dt: DateTime<Utc>) -> Option<DateTime<Utc>> {
        dt.checked_add_months(Months::new(self.months))?
            .checked_add_signed(self.delta)
    }

    pub fn sub(&self, dt: DateTime<Utc>) -> Option<DateTime<Utc>> {
        dt.checked_sub_months(Months::new(self.months))?
            .checked_sub_signed(self.delta)
    }
}

/// Python's `datetime` (always aware, UTC) as a template value: `str()` as Python prints it,
/// `.strftime()`, `.isoformat()`, `.timestamp()`, `.date()` and the date/time attributes.
#[derive(Debug, Clone, Copy)]
pub struct PyDateTime {
    pub dt: DateTime<Utc>,
    /// `today_utc()` is a `date`: it prints without a time.
    pub date_only: bool,
}

impl PyDateTime {
    pub fn value(dt: DateTime<Utc>) -> JValue {
        JValue::from_object(PyDateTime {
            dt,
            date_only: false,
        })
    }

    pub fn date(dt: DateTime<Utc>) -> JValue {
        JValue::from_object(PyDateTime {
            dt,
            date_only: true,
        })
    }

    fn isoformat(&self, sep: &str) -> String {
        if self.date_only {
            return self.dt.format("%Y-%m-%d").to_string();
        }
        let frac = if self.dt.nanosecond() / 1000 != 0 {
            ".%6f"
        } else {
            ""
        };
        self.dt
            .format(&format!("%Y-%m-%d{sep}%H:%M:%S{frac}+00:00"))
            .to_string()
    }
}

impl fmt::Display for PyDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.isoformat(" "))
    }
}

impl Object for PyDateTime {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        let d = &self.dt;
        Some(JValue::from(match key.as_str()? {
            "year" => d.year() as i64,
            "month" => d.month() as i64,
            "day" => d.day() as i64,
            "hour" => d.hour() as i64,
            "minute" => d.minute() as i64,
            "second" => d.second() as i64,
            "microsecond" => (d.nanosecond() / 1000) as i64,
            _ => return None,
        }))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State,
        method: &str,
        args: &[JValue],
    ) -> Result<JValue, Error> {
        match method {
            "strftime" => {
                let fmt = args.first().and_then(JValue::as_str).ok_or_else(|| {
                    Error::new(ErrorKind::MissingArgument, "strftime needs a format")
                })?;
                Ok(JValue::from(
                    self.dt.format(&chrono_format(fmt)).to_string(),
                ))
            }
            "isoformat" => {
                let sep = args
                    .first()
                    .and_then(JValue::as_str)
                    .unwrap_or("T")
                    .to_string();
                Ok(JValue::from(self.isoformat(&sep)))
            }
            "timestamp" => Ok(JValue::from(self.dt.timestamp_micros() as f64 / 1e6)),
            "date" => Ok(PyDateTime::date(self.dt)),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("datetime has no method `{method}`"),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> DateTime<Utc> {
        parse_any(s).unwrap()
    }

    #[test]
    fn cdk_formats() {
        let d = dt("2024-03-01T12:34:56.789012Z");
        assert_eq!(format(&d, "%s"), "1709296496");
        assert_eq!(format(&d, "%ms"), "1709296496789");
        assert_eq!(
            format(&d, "%Y-%m-%dT%H:%M:%S.%fZ"),
            "2024-03-01T12:34:56.789012Z"
        );
        assert_eq!(
            format(&d, "%Y-%m-%dT%H:%M:%S.%_msZ"),
            "2024-03-01T12:34:56.789Z"
        );
        assert_eq!(format(&d, "%Y-%m-%d"), "2024-03-01");
        assert_eq!(parse("1709296496", "%s"), Some(dt("2024-03-01T12:34:56Z")));
        assert_eq!(
            parse("1709296496789", "%ms"),
            Some(dt("2024-03-01T12:34:56.789Z"))
        );
        assert_eq!(
            parse("2024-03-01", "%Y-%m-%d"),
            Some(dt("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            parse("2024-03-01T12:34:56.789Z", "%Y-%m-%dT%H:%M:%S.%_msZ"),
            Some(dt("2024-03-01T12:34:56.789Z"))
        );
        assert_eq!(
            parse("2024-03-01T12:34:56+0200", "%Y-%m-%dT%H:%M:%S%z"),
            Some(dt("2024-03-01T10:34:56Z"))
        );
        assert_eq!(parse("nope", "%Y-%m-%d"), None);
    }

    #[test]
    fn durations() {
        let d = dt("2024-01-31T00:00:00Z");
        assert_eq!(
            Duration::parse("P1D").unwrap().add(d),
            Some(dt("2024-02-01T00:00:00Z"))
        );
        assert_eq!(
            Duration::parse("P1M").unwrap().add(d),
            Some(dt("2024-02-29T00:00:00Z"))
        );
        assert_eq!(
            Duration::parse("PT0.000001S").unwrap().delta,
            TimeDelta::microseconds(1)
        );
        assert_eq!(Duration::parse("P1W").unwrap().delta, TimeDelta::days(7));
        assert_eq!(
            Duration::parse("PT1H30M").unwrap().delta,
            TimeDelta::minutes(90)
        );
        assert!(Duration::parse("1D").is_none());
    }

    #[test]
    fn python_str_of_datetimes() {
        let d = PyDateTime {
            dt: dt("2024-03-01T12:34:56Z"),
            date_only: false,
        };
        assert_eq!(d.to_string(), "2024-03-01 12:34:56+00:00");
        let d = PyDateTime {
            dt: dt("2024-03-01T12:34:56.5Z"),
            date_only: false,
        };
        assert_eq!(d.to_string(), "2024-03-01 12:34:56.500000+00:00");
    }
}
