//! Spec and config checks: the spec is a valid JSON Schema, the connector's own configs satisfy
//! it and build, and a config its spec rejects fails naming the field without echoing the value.

use futures::future::BoxFuture;
use serde_json::{json, Value};
use weft_core::{ConnectorError, Result};

use crate::Fault;

/// A value no config field should ever hold, and no error message should echo.
pub const BAD_VALUE: &str = "weft-conformance-bad-value";

/// Checks that `spec` is a valid JSON Schema and returns its validator.
pub fn validator(spec: &Value) -> Result<jsonschema::Validator, Fault> {
    if let Err(err) = jsonschema::meta::validate(spec) {
        return Err(Fault::new(
            "spec",
            format!(
                "the spec is not a valid JSON Schema: {err} (at {})",
                err.instance_path()
            ),
        ));
    }
    jsonschema::validator_for(spec).map_err(|err| {
        Fault::new(
            "spec",
            format!("the spec cannot be compiled as a JSON Schema: {err}"),
        )
    })
}

/// Why `config` does not satisfy the spec, if it does not.
pub fn violation(validator: &jsonschema::Validator, config: &Value) -> Option<String> {
    let errors: Vec<String> = validator
        .iter_errors(config)
        .map(|e| format!("{e} (at `{}`)", e.instance_path()))
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// The spec's `examples` (top-level only: each is a whole config).
pub fn examples(spec: &Value) -> Vec<Value> {
    spec.get("examples")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Values to put into a field so that the spec rejects the config, tried in order.
fn wrong_values() -> [Value; 4] {
    [
        json!(true),
        json!({ "weft_conformance": true }),
        json!(BAD_VALUE),
        json!(-1.5),
    ]
}

/// Configs derived from `config` that the spec rejects, each with the top-level field at fault:
/// every required field removed, every field set to a value of a type the spec refuses.
pub fn bad_configs(
    validator: &jsonschema::Validator,
    spec: &Value,
    config: &Value,
) -> Vec<(String, Value, String)> {
    let Some(object) = config.as_object() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let required = spec
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    for field in required {
        let mut broken = object.clone();
        if broken.remove(field).is_some() {
            out.push((
                field.to_string(),
                Value::Object(broken),
                "removed".to_string(),
            ));
        }
    }
    let fields = spec
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|p| p.keys());
    for field in fields {
        for wrong in wrong_values() {
            let mut broken = object.clone();
            broken.insert(field.clone(), wrong.clone());
            let broken = Value::Object(broken);
            if !validator.is_valid(&broken) {
                out.push((field.clone(), broken, format!("set to {wrong}")));
                break;
            }
        }
    }
    out
}

/// Runs the spec checks for one connector: `build` builds it from a config (the factory's
/// `build`), `check` runs its `check`.
pub async fn check_configs<T>(
    spec: &Value,
    config: &Value,
    build: impl Fn(&Value) -> Result<T>,
    check: impl for<'a> Fn(&'a T) -> BoxFuture<'a, Result<()>>,
) -> Vec<Fault> {
    let mut faults = Vec::new();
    let validator = match validator(spec) {
        Ok(v) => v,
        Err(fault) => return vec![fault],
    };
    if let Some(why) = violation(&validator, config) {
        faults.push(Fault::new(
            "spec",
            format!("the test fixture's config is rejected by the connector's own spec: {why}"),
        ));
    }
    for (i, example) in examples(spec).into_iter().enumerate() {
        if let Some(why) = violation(&validator, &example) {
            faults.push(Fault::new(
                "spec",
                format!("spec example #{i} is rejected by the spec itself: {why}"),
            ));
        }
        if let Err(ConnectorError::Config { field, message }) = build(&example) {
            faults.push(Fault::new(
                "spec",
                format!(
                    "spec example #{i} does not deserialise into the config: `{field}`: {message}"
                ),
            ));
        }
    }
    for (field, broken, how) in bad_configs(&validator, spec, config) {
        let outcome = match build(&broken) {
            Ok(built) => check(&built).await,
            Err(err) => Err(err),
        };
        match outcome {
            Ok(()) => faults.push(Fault::new(
                "bad_config",
                format!("a config with `{field}` {how} (which the spec rejects) was accepted by build and check"),
            )),
            Err(err) => {
                let text = err.to_string();
                if !text.contains(field.as_str()) {
                    faults.push(Fault::new(
                        "bad_config",
                        format!("a config with `{field}` {how} fails without naming the field: {text}"),
                    ));
                }
                if text.contains(BAD_VALUE) {
                    faults.push(Fault::new(
                        "bad_config",
                        format!("the error for a bad `{field}` echoes the config value (configs hold secrets): {text}"),
                    ));
                }
            }
        }
    }
    faults
}
