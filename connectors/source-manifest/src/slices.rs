//! Slices: the partitions of `ListPartitionRouter`s and `SubstreamPartitionRouter`s (several
//! routers give their cartesian product) times the time windows of a `DatetimeBasedCursor`.
//!
//! Windows follow the CDK's concurrent cursor: from `max(start, state - lookback)` to `end`
//! (default now), `step` long; a window that is not the last ends `cursor_granularity` before
//! the next one starts, the last ends exactly at `end`. Without `step` there is one window.
//! The stream's state is the CDK's `{"<cursor_field>": "<latest cursor value, in
//! datetime_format>"}`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::interpolate::datetime::{self, Duration};
use crate::interpolate::{Interpolator, Vars};
use crate::manifest::model::{DatetimeBasedCursor, MinMaxDatetime};
use crate::request::Options;
use crate::ManifestSourceError;

/// One slice: its partition values, its time window, and the options they inject.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slice {
    pub partition: Map<String, Value>,
    pub window: Map<String, Value>,
    pub options: Options,
    /// The window's start key and value: with the partition, what identifies the slice across
    /// reads (the last window's end moves with the clock).
    pub window_start: Option<(String, Value)>,
}

impl Slice {
    /// The `stream_slice` (`stream_partition`, `stream_interval`) variable.
    pub fn var(&self) -> Value {
        let mut m = self.partition.clone();
        m.extend(self.window.clone());
        Value::Object(m)
    }

    /// The product of two lists of slices.
    pub fn product(a: Vec<Slice>, b: Vec<Slice>) -> Vec<Slice> {
        let mut out = Vec::with_capacity(a.len() * b.len());
        for x in &a {
            for y in &b {
                let mut s = x.clone();
                s.partition.extend(y.partition.clone());
                s.window.extend(y.window.clone());
                s.options.merge(y.options.clone());
                if y.window_start.is_some() {
                    s.window_start = y.window_start.clone();
                }
                out.push(s);
            }
        }
        out
    }
}

/// A `DatetimeBasedCursor` evaluated against the config.
#[derive(Debug, Clone)]
pub struct DateCursor {
    pub field: String,
    pub format: String,
    /// Formats tried when reading a record's cursor value.
    pub record_formats: Vec<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub step: Option<Duration>,
    pub granularity: Duration,
    pub lookback: Duration,
    pub start_key: String,
    pub end_key: String,
    pub client_side: bool,
}

fn bound(
    b: &MinMaxDatetime,
    cursor_format: &str,
    interp: &Interpolator,
    vars: &Vars,
    what: &str,
) -> Result<DateTime<Utc>, ManifestSourceError> {
    let (text, own_format, min, max, params) = match b {
        MinMaxDatetime::Plain(s) => (s.clone(), None, None, None, None),
        MinMaxDatetime::Full {
            datetime,
            datetime_format,
            min_datetime,
            max_datetime,
            parameters,
        } => (
            datetime.clone(),
            datetime_format.clone().filter(|f| !f.is_empty()),
            min_datetime.clone(),
            max_datetime.clone(),
            Some(parameters.clone()),
        ),
    };
    let mut v = vars.clone();
    if let Some(p) = params {
        v.insert("parameters".into(), Value::Object(p));
    }
    let parse = |template: &str| -> Result<Option<DateTime<Utc>>, ManifestSourceError> {
        let value = interp.eval_string(&Value::String(template.to_string()), &v)?;
        if value.is_empty() {
            return Ok(None);
        }
        let formats = [
            own_format.as_deref(),
            Some(cursor_format),
            Some("%Y-%m-%dT%H:%M:%S%.f%z"),
        ];
        let parsed = formats
            .iter()
            .flatten()
            .find_map(|f| datetime::parse(&value, f))
            .or_else(|| datetime::parse_any(&value));
        parsed.map(Some).ok_or_else(|| {
            ManifestSourceError::Config(format!(
                "the incremental cursor's {what} `{value}` is not a datetime in the format `{}`",
                own_format.as_deref().unwrap_or(cursor_format)
            ))
        })
    };
    let mut dt = parse(&text)?.ok_or_else(|| {
        ManifestSourceError::Config(format!("the incremental cursor's {what} is empty"))
    })?;
    if let Some(min) = min.as_deref().map(parse).transpose()?.flatten() {
        dt = dt.max(min);
    }
    if let Some(max) = max.as_deref().map(parse).transpose()?.flatten() {
        dt = dt.min(max);
    }
    Ok(dt)
}

fn duration(text: &str, what: &str) -> Result<Duration, ManifestSourceError> {
    Duration::parse(text).ok_or_else(|| {
        ManifestSourceError::Manifest(format!("`{what}: {text}` is not an ISO 8601 duration"))
    })
}

impl DateCursor {
    pub fn new(
        c: &DatetimeBasedCursor,
        interp: &Interpolator,
        vars: &Vars,
    ) -> Result<Self, ManifestSourceError> {
        let mut v = vars.clone();
        v.insert("parameters".into(), Value::Object(c.parameters.clone()));
        let field = interp.eval_string(&c.cursor_field, &v)?;
        let start = bound(
            &c.start_datetime,
            &c.datetime_format,
            interp,
            &v,
            "start_datetime",
        )?;
        let end = match &c.end_datetime {
            Some(e) => bound(e, &c.datetime_format, interp, &v, "end_datetime")?,
            None => Utc::now(),
        };
        let step = c
            .step
            .as_deref()
            .map(|s| interp.eval_string(&Value::String(s.into()), &v))
            .transpose()?;
        let step = step
            .filter(|s| !s.is_empty())
            .map(|s| duration(&s, "step"))
            .transpose()?;
        let granularity = match &c.cursor_granularity {
            Some(g) => duration(g, "cursor_granularity")?,
            None => Duration::default(),
        };
        let lookback = match &c.lookback_window {
            Some(l) => {
                let text = interp.eval_string(l, &v)?;
                if text.is_empty() {
                    Duration::default()
                } else {
                    duration(&text, "lookback_window")?
                }
            }
            None => Duration::default(),
        };
        let mut record_formats = c.cursor_datetime_formats.clone();
        record_formats.push(c.datetime_format.clone());
        Ok(Self {
            field,
            format: c.datetime_format.clone(),
            record_formats,
            start,
            end,
            step,
            granularity,
            lookback,
            start_key: c
                .partition_field_start
                .clone()
                .unwrap_or_else(|| "start_time".into()),
            end_key: c
                .partition_field_end
                .clone()
                .unwrap_or_else(|| "end_time".into()),
            client_side: c.is_client_side_incremental,
        })
    }

    /// The stored cursor value of a CDK state (`{"<cursor_field>": value}`).
    pub fn state_value(&self, state: &Value) -> Result<Option<DateTime<Utc>>, ManifestSourceError> {
        let Some(v) = state.get(&self.field) else {
            return Ok(None);
        };
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        self.parse_value(&text).map(Some).ok_or_else(|| {
            ManifestSourceError::State(format!(
                "the saved state's `{}` is `{text}`, not a datetime in the format `{}`; reset the stream (`weft sync reset`)",
                self.field, self.format
            ))
        })
    }

    pub fn parse_value(&self, text: &str) -> Option<DateTime<Utc>> {
        self.record_formats
            .iter()
            .find_map(|f| datetime::parse(text, f))
    }

    /// A record's cursor value, if it has a readable one.
    pub fn record_value(&self, record: &Value) -> Option<DateTime<Utc>> {
        match record.get(&self.field)? {
            Value::String(s) => self.parse_value(s),
            Value::Number(n) => self.parse_value(&n.to_string()),
            _ => None,
        }
    }

    pub fn format(&self, dt: &DateTime<Utc>) -> String {
        datetime::format(dt, &self.format)
    }

    /// The time windows from the state (or the start) to the end.
    pub fn windows(&self, state: Option<DateTime<Utc>>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let mut lower = match state {
            Some(s) => self.lookback.sub(s).unwrap_or(s),
            None => self.start,
        };
        lower = lower.max(self.start);
        let upper = self.end;
        let mut out = Vec::new();
        if lower >= upper {
            return out;
        }
        let Some(step) = self.step else {
            out.push((lower, upper));
            return out;
        };
        loop {
            let next = step.add(lower).unwrap_or(upper).min(upper);
            if lower >= next {
                break;
            }
            let reached = next >= upper;
            let end = if reached {
                next
            } else {
                self.granularity.sub(next).unwrap_or(next)
            };
            out.push((lower, end));
            lower = next;
            if reached {
                break;
            }
        }
        out
    }

    /// The window's slice part and the start/end options it injects.
    pub fn window_slice(
        &self,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        c: &DatetimeBasedCursor,
        interp: &Interpolator,
        vars: &Vars,
    ) -> Result<Slice, ManifestSourceError> {
        let mut s = Slice::default();
        let (a, b) = (self.format(&from), self.format(&to));
        s.window
            .insert(self.start_key.clone(), Value::String(a.clone()));
        s.window_start = Some((self.start_key.clone(), Value::String(a.clone())));
        s.window
            .insert(self.end_key.clone(), Value::String(b.clone()));
        if let Some(o) = &c.start_time_option {
            s.options.inject(o, Value::String(a), interp, vars)?;
        }
        if let Some(o) = &c.end_time_option {
            s.options.inject(o, Value::String(b), interp, vars)?;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cursor(extra: Value) -> DateCursor {
        let mut c = json!({
            "cursor_field": "updated_at", "datetime_format": "%Y-%m-%d",
            "start_datetime": "{{ config.start }}", "end_datetime": "2024-01-10"
        });
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let c: DatetimeBasedCursor = serde_json::from_value(c).unwrap();
        let vars = json!({"config": {"start": "2024-01-01"}})
            .as_object()
            .unwrap()
            .clone();
        DateCursor::new(&c, &Interpolator::new(), &vars).unwrap()
    }

    fn days(w: Vec<(DateTime<Utc>, DateTime<Utc>)>) -> Vec<(String, String)> {
        w.into_iter()
            .map(|(a, b)| {
                (
                    a.format("%Y-%m-%d").to_string(),
                    b.format("%Y-%m-%d").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn windows_by_step_granularity_and_lookback() {
        let c = cursor(json!({"step": "P4D", "cursor_granularity": "P1D"}));
        assert_eq!(
            days(c.windows(None)),
            [
                ("2024-01-01", "2024-01-04"),
                ("2024-01-05", "2024-01-08"),
                ("2024-01-09", "2024-01-10")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let c =
            cursor(json!({"step": "P4D", "cursor_granularity": "P1D", "lookback_window": "P2D"}));
        let state = c.state_value(&json!({"updated_at": "2024-01-08"})).unwrap();
        assert_eq!(
            days(c.windows(state)),
            [("2024-01-06".to_string(), "2024-01-10".to_string())]
        );
        let c = cursor(json!({}));
        assert_eq!(
            days(c.windows(None)),
            [("2024-01-01".to_string(), "2024-01-10".to_string())]
        );
        assert!(c.state_value(&json!({"updated_at": "garbage"})).is_err());
    }
}
