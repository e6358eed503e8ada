//! Jinja interpolation as the CDK does it (`JinjaInterpolation`), on minijinja.
//!
//! A template is rendered with the CDK's variables; the text is then read as a Python literal
//! when it is one ([`literal`]); an empty result or an undefined variable gives the default.
//! Values print as Python's `str()` prints them (`True`, `None`, `['a']`), so a rendered
//! `{{ config.flag }}` reads back as the boolean. The CDK's macros and filters are registered
//! ([`macros`]); Python methods on strings, lists and dicts come from minijinja-contrib's
//! `pycompat`; Python datetimes are [`datetime::PyDateTime`] values.

use std::sync::RwLock;

use minijinja::value::{Value as JValue, ValueKind};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value};

pub mod datetime;
pub mod literal;
mod macros;

pub use literal::{literal_eval, py_str};

/// A template that could not be evaluated, with the template's text.
#[derive(Debug, thiserror::Error)]
#[error("evaluating `{template}`: {message}")]
pub struct InterpolationError {
    pub template: String,
    pub message: String,
}

/// The variables of one evaluation (`config`, `parameters`, `stream_interval`, `record`, …).
pub type Vars = Map<String, Value>;

/// Renders templates; compiled templates are kept, keyed by their text.
pub struct Interpolator {
    env: RwLock<Environment<'static>>,
}

impl std::fmt::Debug for Interpolator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interpolator")
    }
}

impl Default for Interpolator {
    fn default() -> Self {
        Self::new()
    }
}

/// `stream_interval` and `stream_partition` are the CDK's aliases of `stream_slice`.
const SLICE_ALIASES: [&str; 2] = ["stream_interval", "stream_partition"];

/// What the CDK's `InterpolatedBoolean` reads as false.
fn is_false(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::String(s) => {
            ["False", "false", "{}", "[]", "()", "", "0", "0.0"].contains(&s.as_str())
        }
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Null => false,
    }
}

impl Interpolator {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_formatter(|out, _state, value| {
            let text = match value.kind() {
                ValueKind::Undefined => String::new(),
                ValueKind::None | ValueKind::Bool | ValueKind::Seq | ValueKind::Map => {
                    literal::py_str(&to_json(value))
                }
                _ => value.to_string(),
            };
            out.write_str(&text)
                .map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "writing"))
        });
        // The CDK removes `range` from its sandbox; minijinja has it as a global function.
        env.remove_global("range");
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        macros::register(&mut env);
        Self {
            env: RwLock::new(env),
        }
    }

    /// Renders `template` to text (no literal conversion); `None` when a variable it needs is
    /// undefined.
    fn render(&self, template: &str, vars: &Vars) -> Result<Option<String>, InterpolationError> {
        let err = |e: minijinja::Error| InterpolationError {
            template: template.to_string(),
            message: e.to_string(),
        };
        {
            let env = self.env.read().expect("interpolator lock");
            if let Ok(t) = env.get_template(template) {
                return finish(t.render(vars), err);
            }
        }
        {
            let mut env = self.env.write().expect("interpolator lock");
            if env.get_template(template).is_err() {
                env.add_template_owned(template.to_string(), template.to_string())
                    .map_err(err)?;
            }
        }
        let env = self.env.read().expect("interpolator lock");
        let t = env.get_template(template).map_err(err)?;
        finish(t.render(vars), err)
    }

    /// Evaluates a manifest value: strings are templates (the CDK's `InterpolatedString`),
    /// other values are returned as they are. `default` is used when the result is empty or
    /// undefined.
    pub fn eval(
        &self,
        value: &Value,
        vars: &Vars,
        default: Option<&str>,
    ) -> Result<Value, InterpolationError> {
        let Value::String(template) = value else {
            return Ok(value.clone());
        };
        let vars = with_aliases(vars);
        if let Some(text) = self.render(template, &vars)? {
            if !text.is_empty() {
                return Ok(coerce(text));
            }
        }
        match default {
            Some(d) => Ok(self
                .render(d, &vars)?
                .map(coerce)
                .unwrap_or(Value::String(String::new()))),
            None => Ok(Value::Null),
        }
    }

    /// Evaluates to text (`str()` of the value); empty when undefined.
    pub fn eval_string(&self, value: &Value, vars: &Vars) -> Result<String, InterpolationError> {
        Ok(match self.eval(value, vars, None)? {
            Value::Null => String::new(),
            v => py_str(&v),
        })
    }

    /// Evaluates a condition as the CDK's `InterpolatedBoolean` does.
    pub fn eval_bool(&self, condition: &Value, vars: &Vars) -> Result<bool, InterpolationError> {
        if let Value::Bool(b) = condition {
            return Ok(*b);
        }
        let v = self.eval(condition, vars, Some("False"))?;
        Ok(!is_false(&v))
    }

    /// Evaluates a mapping (request parameters, headers, bodies): keys and string values are
    /// templates; a string is evaluated and must give a mapping.
    pub fn eval_mapping(
        &self,
        value: &Value,
        vars: &Vars,
    ) -> Result<Map<String, Value>, InterpolationError> {
        match value {
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    let key = self.eval_string(&Value::String(k.clone()), vars)?;
                    out.insert(key, self.eval_nested(v, vars)?);
                }
                Ok(out)
            }
            Value::String(_) => match self.eval(value, vars, None)? {
                Value::Object(map) => Ok(map),
                Value::Null => Ok(Map::new()),
                Value::String(s) if s.is_empty() => Ok(Map::new()),
                _ => Err(InterpolationError {
                    template: py_str(value),
                    message: "expected a mapping".into(),
                }),
            },
            Value::Null => Ok(Map::new()),
            other => Err(InterpolationError {
                template: py_str(other),
                message: "expected a mapping".into(),
            }),
        }
    }

    /// Evaluates every string inside a nested value (the CDK's `InterpolatedNestedMapping`).
    pub fn eval_nested(&self, value: &Value, vars: &Vars) -> Result<Value, InterpolationError> {
        Ok(match value {
            Value::String(_) => self.eval(value, vars, None)?,
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.eval_nested(v, vars))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    out.insert(
                        self.eval_string(&Value::String(k.clone()), vars)?,
                        self.eval_nested(v, vars)?,
                    );
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }
}

fn with_aliases(vars: &Vars) -> std::borrow::Cow<'_, Vars> {
    match vars.get("stream_slice") {
        Some(slice) if SLICE_ALIASES.iter().any(|a| !vars.contains_key(*a)) => {
            let mut v = vars.clone();
            for alias in SLICE_ALIASES {
                v.entry(alias).or_insert_with(|| slice.clone());
            }
            std::borrow::Cow::Owned(v)
        }
        _ => std::borrow::Cow::Borrowed(vars),
    }
}

fn finish(
    rendered: Result<String, minijinja::Error>,
    err: impl Fn(minijinja::Error) -> InterpolationError,
) -> Result<Option<String>, InterpolationError> {
    match rendered {
        Ok(s) => Ok(Some(s)),
        // Jinja2's UndefinedError: the CDK falls back to the default.
        Err(e) if e.kind() == ErrorKind::UndefinedError => Ok(None),
        Err(e) => Err(err(e)),
    }
}

fn coerce(text: String) -> Value {
    literal_eval(&text).unwrap_or(Value::String(text))
}

/// A template value as JSON (datetimes and other objects as their text).
pub fn to_json(v: &JValue) -> Value {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => Value::Null,
        ValueKind::Bool => Value::Bool(v.is_true()),
        ValueKind::Number | ValueKind::String | ValueKind::Bytes => {
            serde_json::to_value(v).unwrap_or(Value::Null)
        }
        ValueKind::Seq | ValueKind::Iterable => match v.try_iter() {
            Ok(items) => Value::Array(items.map(|i| to_json(&i)).collect()),
            Err(_) => Value::String(v.to_string()),
        },
        ValueKind::Map => {
            let mut out = Map::new();
            if let Ok(keys) = v.try_iter() {
                for k in keys {
                    let item = v.get_item(&k).unwrap_or_default();
                    out.insert(
                        k.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| k.to_string()),
                        to_json(&item),
                    );
                }
            }
            Value::Object(out)
        }
        _ => Value::String(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Vars {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn results_are_python_literals() {
        let i = Interpolator::new();
        let v =
            vars(json!({"config": {"n": 5, "flag": true, "name": "x", "list": ["a"], "s": "007"}}));
        assert_eq!(
            i.eval(&json!("{{ config.n }}"), &v, None).unwrap(),
            json!(5)
        );
        assert_eq!(
            i.eval(&json!("{{ config['flag'] }}"), &v, None).unwrap(),
            json!(true)
        );
        assert_eq!(
            i.eval_string(&json!("{{ config['flag'] }}"), &v).unwrap(),
            "True"
        );
        assert_eq!(
            i.eval(&json!("{{ config.list }}"), &v, None).unwrap(),
            json!(["a"])
        );
        assert_eq!(
            i.eval(&json!("{{ config.s }}"), &v, None).unwrap(),
            json!("007")
        );
        assert_eq!(
            i.eval(&json!("id-{{ config.name }}"), &v, None).unwrap(),
            json!("id-x")
        );
        assert_eq!(
            i.eval(&json!("{{ config.missing }}"), &v, Some("d"))
                .unwrap(),
            json!("d")
        );
        assert_eq!(
            i.eval(&json!("{{ config.missing.deeper }}"), &v, Some("d"))
                .unwrap(),
            json!("d")
        );
        assert_eq!(
            i.eval(&json!("{{ config.get('name') }}"), &v, None)
                .unwrap(),
            json!("x")
        );
        assert_eq!(
            i.eval(&json!("{{ config.name.upper() }}"), &v, None)
                .unwrap(),
            json!("X")
        );
        assert_eq!(i.eval(&json!(7), &v, None).unwrap(), json!(7));
        assert!(i.eval_bool(&json!("{{ config.n > 3 }}"), &v).unwrap());
        assert!(!i.eval_bool(&json!("{{ config.missing }}"), &v).unwrap());
        assert!(!i.eval_bool(&json!("{{ 0 }}"), &v).unwrap());
    }

    #[test]
    fn slice_aliases() {
        let i = Interpolator::new();
        let v = vars(json!({"config": {}, "stream_slice": {"start_time": "2024-01-01"}}));
        assert_eq!(
            i.eval(
                &json!("{{ stream_interval.start_time }}|{{ stream_partition['start_time'] }}"),
                &v,
                None
            )
            .unwrap(),
            json!("2024-01-01|2024-01-01")
        );
    }

    #[test]
    fn errors_other_than_undefined_are_reported() {
        let i = Interpolator::new();
        let err = i
            .eval(&json!("{{ 1 + }}"), &vars(json!({"config": {}})), None)
            .unwrap_err();
        assert!(
            err.to_string().starts_with("evaluating `{{ 1 + }}`:"),
            "{err}"
        );
    }
}
