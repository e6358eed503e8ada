//! Arrow values written the way PostgreSQL's output functions write them (`col::text` in a
//! session with `DateStyle = ISO`, `IntervalStyle = postgres`, `TimeZone = UTC` and the default
//! `extra_float_digits`), so a test can compare what landed in a lake with what PostgreSQL
//! itself prints, value by value.
//!
//! Covers the Arrow types the `postgres` source produces: booleans, integers, floats (shortest
//! exact digits, exponent form outside PostgreSQL's fixed-point range), Decimal128, Utf8,
//! Binary (`\x…` hex), Date32, Time64(µs), Timestamp(µs) with and without a zone, Interval
//! (month-day-nano; ±infinity dates and timestamps as the type's extreme values, as weft
//! carries them) and one-dimensional Lists as PostgreSQL array literals. Anything else
//! panics, naming the type.

use arrow::array::{Array, AsArray};
use arrow::datatypes::*;

/// Days from 0001-01-01 (CE day 1) to 1970-01-01.
const UNIX_EPOCH_FROM_CE: i32 = 719_163;

/// The value at `row` as PostgreSQL prints it, or `None` for NULL.
pub fn pg_text(array: &dyn Array, row: usize) -> Option<String> {
    text(array, row, false)
}

/// `in_array`: booleans print as `t`/`f` inside arrays (the output function) but as
/// `true`/`false` through `::text`.
fn text(array: &dyn Array, row: usize, in_array: bool) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Boolean => match (array.as_boolean().value(row), in_array) {
            (true, false) => "true".into(),
            (false, false) => "false".into(),
            (true, true) => "t".into(),
            (false, true) => "f".into(),
        },
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::Float32 => {
            let v = array.as_primitive::<Float32Type>().value(row);
            float(v.is_nan(), v.is_infinite(), v < 0.0, &format!("{v:e}"), 6)
        }
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(row);
            float(v.is_nan(), v.is_infinite(), v < 0.0, &format!("{v:e}"), 15)
        }
        DataType::Decimal128(..) => array.as_primitive::<Decimal128Type>().value_as_string(row),
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
        DataType::Binary => hex(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => hex(array.as_binary::<i64>().value(row)),
        // ±infinity are the type's extreme values (weft-core's `values` convention).
        DataType::Date32 => match array.as_primitive::<Date32Type>().value(row) {
            i32::MAX => "infinity".into(),
            d if d <= -i32::MAX => "-infinity".into(),
            d => {
                let (date, bc) = date(d);
                format!("{date}{bc}")
            }
        },
        DataType::Time64(TimeUnit::Microsecond) => {
            time(array.as_primitive::<Time64MicrosecondType>().value(row))
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let us = array.as_primitive::<TimestampMicrosecondType>().value(row);
            if us == i64::MAX {
                return Some("infinity".into());
            } else if us <= -i64::MAX {
                return Some("-infinity".into());
            }
            let (days, in_day) = (us.div_euclid(86_400_000_000), us.rem_euclid(86_400_000_000));
            let (date, bc) = date(days as i32);
            let zone = if tz.is_some() { "+00" } else { "" };
            format!("{date} {}{zone}{bc}", time(in_day))
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            interval(v.months, v.days, v.nanoseconds / 1000)
        }
        DataType::List(_) => {
            let list = array.as_list::<i32>().value(row);
            let items: Vec<String> = (0..list.len())
                .map(|i| match text(list.as_ref(), i, true) {
                    None => "NULL".to_string(),
                    Some(v) => array_element(&v),
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        other => panic!("pgtext: no PostgreSQL text form for Arrow type {other}"),
    })
}

/// An array element, double-quoted when array_out would quote it.
fn array_element(v: &str) -> String {
    let needs_quotes = v.is_empty()
        || v.eq_ignore_ascii_case("NULL")
        || v.chars().any(|c| {
            matches!(
                c,
                '{' | '}' | ',' | '"' | '\\' | ' ' | '\t' | '\n' | '\r' | '\u{b}' | '\u{c}'
            )
        });
    if !needs_quotes {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("\\x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// `YYYY-MM-DD` and `" BC"` for years before 1 (PostgreSQL has no year 0).
fn date(days_since_epoch: i32) -> (String, &'static str) {
    let d = chrono::NaiveDate::from_num_days_from_ce_opt(days_since_epoch + UNIX_EPOCH_FROM_CE)
        .expect("a date chrono can represent");
    use chrono::Datelike;
    let (year, bc) = if d.year() <= 0 {
        (1 - d.year(), " BC")
    } else {
        (d.year(), "")
    };
    (format!("{year:04}-{:02}-{:02}", d.month(), d.day()), bc)
}

/// `HH:MM:SS` and the fraction without trailing zeros (hours may exceed 23).
fn time(us: i64) -> String {
    let (h, m, s, frac) = (
        us / 3_600_000_000,
        us / 60_000_000 % 60,
        us / 1_000_000 % 60,
        us % 1_000_000,
    );
    format!("{h:02}:{m:02}:{s:02}{}", fraction(frac))
}

fn fraction(us: i64) -> String {
    if us == 0 {
        return String::new();
    }
    let digits = format!(".{us:06}");
    digits.trim_end_matches('0').to_string()
}

/// `IntervalStyle = postgres`: `1 year 2 mons -3 days +04:05:06.7`.
fn interval(months: i32, days: i32, us: i64) -> String {
    let mut out = String::new();
    let mut before_negative = false;
    let mut part = |value: i64, unit: &str| {
        if value == 0 {
            return;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        let plus = if before_negative && value > 0 {
            "+"
        } else {
            ""
        };
        let s = if value == 1 { "" } else { "s" };
        out.push_str(&format!("{plus}{value} {unit}{s}"));
        before_negative = value < 0;
    };
    part(i64::from(months / 12), "year");
    part(i64::from(months % 12), "mon");
    part(i64::from(days), "day");
    if out.is_empty() || us != 0 {
        let sign = if us < 0 {
            "-"
        } else if before_negative {
            "+"
        } else {
            ""
        };
        let sep = if out.is_empty() { "" } else { " " };
        out.push_str(&format!("{sep}{sign}{}", time(us.abs())));
    }
    out
}

/// A float from Rust's shortest exact `{:e}` digits, laid out as PostgreSQL's float4out /
/// float8out do: fixed point for decimal exponents in `-4..fixed_below`, else `d.ddde±XX`.
fn float(nan: bool, inf: bool, negative: bool, sci: &str, fixed_below: i32) -> String {
    if nan {
        return "NaN".into();
    }
    if inf {
        return (if negative { "-Infinity" } else { "Infinity" }).into();
    }
    let (mantissa, exp) = sci.split_once('e').expect("{:e} output");
    let exp: i32 = exp.parse().expect("an exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if digits == "0" {
        return format!("{sign}0");
    }
    if (-4..fixed_below).contains(&exp) {
        if exp < 0 {
            return format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize));
        }
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            return format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()));
        }
        return format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..]);
    }
    let rest = if digits.len() > 1 {
        format!(".{}", &digits[1..])
    } else {
        String::new()
    };
    let exp_sign = if exp < 0 { '-' } else { '+' };
    format!("{sign}{}{rest}e{exp_sign}{:02}", &digits[..1], exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_postgres() {
        assert_eq!(
            float(false, false, false, &format!("{:e}", 1e300_f64), 15),
            "1e+300"
        );
        assert_eq!(
            float(false, false, true, &format!("{:e}", -1.5e-5_f64), 15),
            "-1.5e-05"
        );
        assert_eq!(
            float(false, false, false, &format!("{:e}", 0.0001_f64), 15),
            "0.0001"
        );
        assert_eq!(
            float(false, false, false, &format!("{:e}", 123.25_f64), 15),
            "123.25"
        );
        assert_eq!(
            float(false, false, false, &format!("{:e}", 1e6_f32), 6),
            "1e+06"
        );
        assert_eq!(
            float(false, false, false, &format!("{:e}", 100000_f32), 6),
            "100000"
        );
        assert_eq!(
            interval(14, 3, 14_706_789_000),
            "1 year 2 mons 3 days 04:05:06.789"
        );
        assert_eq!(
            interval(-14, 3, -14_706_500_000),
            "-1 years -2 mons +3 days -04:05:06.5"
        );
        assert_eq!(interval(0, 0, 0), "00:00:00");
        assert_eq!(date(-719_162 - 366), ("0001-01-01".to_string(), " BC"));
        assert_eq!(array_element("a b"), "\"a b\"");
        assert_eq!(array_element("q\"\\"), "\"q\\\"\\\\\"");
    }
}
