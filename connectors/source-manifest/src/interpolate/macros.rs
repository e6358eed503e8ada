//! The CDK's macros (global functions) and filters.

use base64::Engine;
use chrono::{TimeDelta, Utc};
use minijinja::value::{Rest, Value as JValue, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use sha2::Digest;

use super::datetime::{self, Duration, PyDateTime};
use super::{literal, to_json};

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// A datetime argument: a datetime value, or text parsed as `dateutil` would.
fn as_datetime(v: &JValue, input_format: Option<&str>) -> Result<chrono::DateTime<Utc>, Error> {
    if let Some(d) = v.downcast_object_ref::<PyDateTime>() {
        return Ok(d.dt);
    }
    let text = match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    };
    match input_format {
        Some(f) => datetime::parse(&text, f),
        None => datetime::parse_any(&text),
    }
    .ok_or_else(|| invalid(format!("`{text}` is not a datetime")))
}

fn python_str(v: &JValue) -> String {
    match v.kind() {
        ValueKind::String => v.as_str().unwrap_or_default().to_string(),
        ValueKind::Undefined => String::new(),
        ValueKind::Plain => v.to_string(),
        _ => literal::py_str(&to_json(v)),
    }
}

pub fn register(env: &mut Environment<'static>) {
    env.add_function("now_utc", || PyDateTime::value(Utc::now()));
    env.add_function("today_utc", || {
        let now = Utc::now();
        PyDateTime::date(
            now.date_naive()
                .and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc(),
        )
    });
    env.add_function("timestamp", |v: JValue| -> Result<JValue, Error> {
        if v.kind() == ValueKind::Number {
            let f = f64::try_from(v.clone()).map_err(|_| invalid("timestamp of a number"))?;
            return Ok(JValue::from(f.trunc() as i64));
        }
        Ok(JValue::from(as_datetime(&v, None)?.timestamp()))
    });
    env.add_function("str_to_datetime", |s: String| -> Result<JValue, Error> {
        Ok(PyDateTime::value(as_datetime(&JValue::from(s), None)?))
    });
    env.add_function(
        "day_delta",
        |days: f64, fmt: Option<String>| -> Result<String, Error> {
            let fmt = fmt.unwrap_or_else(|| "%Y-%m-%dT%H:%M:%S.%f%z".into());
            let dt = Utc::now() + TimeDelta::microseconds((days * 86_400e6) as i64);
            Ok(dt.format(&fmt.replace("%f", "%6f")).to_string())
        },
    );
    env.add_function("duration", |s: String| -> Result<JValue, Error> {
        // Returned as its ISO text: date arithmetic on it is not supported (refused at run time
        // by minijinja rather than silently wrong).
        Duration::parse(&s).ok_or_else(|| invalid(format!("`{s}` is not an ISO 8601 duration")))?;
        Ok(JValue::from(s))
    });
    env.add_function(
        "format_datetime",
        |dt: JValue, fmt: String, input_format: Option<String>| -> Result<String, Error> {
            let parsed = as_datetime(&dt, input_format.as_deref())?;
            Ok(datetime::format(&parsed, &fmt))
        },
    );
    fn extreme(args: Rest<JValue>, want_max: bool) -> Result<JValue, Error> {
        let items: Vec<JValue> =
            if args.len() == 1 && matches!(args[0].kind(), ValueKind::Seq | ValueKind::Iterable) {
                args[0].try_iter()?.collect()
            } else {
                args.0
            };
        let mut best: Option<JValue> = None;
        for item in items {
            best = Some(match best {
                None => item,
                Some(b) => {
                    let better = if want_max { item > b } else { item < b };
                    if better {
                        item
                    } else {
                        b
                    }
                }
            });
        }
        best.ok_or_else(|| invalid("max()/min() of nothing"))
    }
    env.add_function("max", |args: Rest<JValue>| extreme(args, true));
    env.add_function("min", |args: Rest<JValue>| extreme(args, false));
    env.add_function("sanitize_url", |s: String| {
        url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
    });
    env.add_function("camel_case_to_snake_case", |s: String| {
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        }
        out
    });

    env.add_filter(
        "hash",
        |v: JValue, hash_type: Option<String>, salt: Option<JValue>| -> Result<String, Error> {
            let mut data = python_str(&v).into_bytes();
            if let Some(salt) = salt.filter(|s| s.is_true()) {
                data.extend(python_str(&salt).into_bytes());
            }
            Ok(match hash_type.as_deref().unwrap_or("md5") {
                "md5" => hex::encode(<md5::Md5 as md5::Digest>::digest(&data)),
                "sha256" => hex::encode(sha2::Sha256::digest(&data)),
                "sha512" => hex::encode(sha2::Sha512::digest(&data)),
                other => {
                    return Err(invalid(format!(
                        "hash type `{other}` is not supported (md5, sha256, sha512)"
                    )))
                }
            })
        },
    );
    env.add_filter("base64encode", |v: JValue| {
        base64::engine::general_purpose::STANDARD.encode(python_str(&v))
    });
    env.add_filter("base64decode", |v: String| -> Result<String, Error> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|e| invalid(format!("base64decode: {e}")))?;
        String::from_utf8(bytes).map_err(|_| invalid("base64decode: not UTF-8 text"))
    });
    env.add_filter("string", |v: JValue| -> String {
        match v.as_str() {
            Some(s) if v.kind() == ValueKind::String => s.to_string(),
            _ => format!("\"\"\"{}\"\"\"", literal::json_dumps(&to_json(&v))),
        }
    });
    env.add_filter(
        "regex_search",
        |v: String, pattern: String| -> Result<String, Error> {
            let re =
                regex::Regex::new(&pattern).map_err(|e| invalid(format!("regex_search: {e}")))?;
            Ok(re
                .captures(&v)
                .and_then(|c| c.get(1))
                .map(|m| m.as_str().to_string())
                .unwrap_or_default())
        },
    );
    env.add_filter(
        "regex_replace",
        |v: String, pattern: String, repl: String| -> Result<String, Error> {
            let re =
                regex::Regex::new(&pattern).map_err(|e| invalid(format!("regex_replace: {e}")))?;
            // Python's `\1` group references are `${1}` in Rust's regex.
            let repl = regex::Regex::new(r"\\(\d+)")
                .expect("static regex")
                .replace_all(&repl, "$${$1}");
            Ok(re.replace_all(&v, repl.as_ref()).into_owned())
        },
    );
}

#[cfg(test)]
mod tests {
    use crate::interpolate::Interpolator;
    use serde_json::{json, Value};

    fn eval(t: &str) -> Value {
        let vars = json!({"config": {"user": "u", "pw": "p", "d": "2024-03-01T00:00:00Z", "n": [3, 9, 4]}});
        Interpolator::new()
            .eval(&json!(t), vars.as_object().unwrap(), None)
            .unwrap()
    }

    #[test]
    fn macros() {
        assert_eq!(
            eval("{{ format_datetime(config.d, '%Y/%m/%d') }}"),
            json!("2024/03/01")
        );
        assert_eq!(
            eval("{{ format_datetime('1709251200', '%Y-%m-%d', '%s') }}"),
            json!("2024-03-01")
        );
        assert_eq!(
            eval("{{ format_datetime(config.d, '%ms') }}"),
            json!(1709251200000i64)
        );
        assert_eq!(eval("{{ timestamp(config.d) }}"), json!(1709251200));
        assert_eq!(eval("{{ timestamp(5.7) }}"), json!(5));
        assert_eq!(
            eval("{{ str_to_datetime(config.d) }}"),
            json!("2024-03-01 00:00:00+00:00")
        );
        assert_eq!(
            eval("{{ str_to_datetime(config.d).strftime('%d.%m.%Y') }}"),
            json!("01.03.2024")
        );
        assert_eq!(eval("{{ max(1, 7, 3) }}"), json!(7));
        assert_eq!(eval("{{ max(config.n) }}"), json!(9));
        assert_eq!(eval("{{ min('b', 'a') }}"), json!("a"));
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        assert_eq!(eval("{{ today_utc() }}"), json!(today));
        assert_eq!(eval("{{ now_utc().strftime('%Y-%m-%d') }}"), json!(today));
        let tomorrow = (chrono::Utc::now() + chrono::TimeDelta::days(1))
            .format("%Y-%m-%d")
            .to_string();
        assert_eq!(eval("{{ day_delta(1, '%Y-%m-%d') }}"), json!(tomorrow));
        assert_eq!(
            eval("{{ camel_case_to_snake_case('CamelCase') }}"),
            json!("camel_case")
        );
    }

    #[test]
    fn filters() {
        assert_eq!(
            eval("{{ (config.user ~ ':' ~ config.pw) | base64encode }}"),
            json!("dTpw")
        );
        assert_eq!(eval("{{ 'dTpw' | base64decode }}"), json!("u:p"));
        assert_eq!(
            eval("{{ 'x' | hash('md5') }}"),
            json!("9dd4e461268c8034f5c8564e155c67a6")
        );
        assert_eq!(
            eval("{{ 'x' | hash('sha256', 'salt') }}"),
            json!("59098e2e749becb74e501e20763edb94b09433e20c2aff0ebc9a061bb92448e6")
        );
        assert_eq!(
            eval("{{ 'page=42&x' | regex_search('page=(\\d+)') }}"),
            json!(42)
        );
        assert_eq!(eval("{{ config.n | string }}"), json!("[3, 9, 4]"));
        assert_eq!(eval("{{ 'abc' | regex_replace('b', 'X') }}"), json!("aXc"));
    }
}
