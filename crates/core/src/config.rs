//! Typed connector configs: specs generated from the config types, parsing with field paths.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::error::ConnectorError;

/// The JSON Schema of a config type: what `weft connector spec` prints.
///
/// ```
/// /// Config of a source.
/// #[derive(schemars::JsonSchema)]
/// struct Config {
///     /// The server to read from.
///     host: String,
/// }
///
/// let spec = weft_core::spec_of::<Config>();
/// assert_eq!(spec["properties"]["host"]["description"], "The server to read from.");
/// ```
pub fn spec_of<T: JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).expect("a JSON Schema serialises")
}

/// Parses a connector config, naming the offending field on error.
///
/// Values are never echoed back: configs hold secrets.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Config { port: u16 }
///
/// let err = weft_core::parse_config::<Config>(&serde_json::json!({ "port": "hunter2" }))
///     .err()
///     .unwrap();
/// assert_eq!(err.to_string(), "invalid config at `port`: invalid type: string \"…\", expected u16");
/// ```
pub fn parse_config<T: DeserializeOwned>(config: &serde_json::Value) -> Result<T, ConnectorError> {
    serde_path_to_error::deserialize(config).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        ConnectorError::Config {
            field: if path == "." { String::new() } else { path },
            message: scrub_value(&inner),
        }
    })
}

/// serde's messages quote the value they choke on (`invalid type: string "hunter2"`); keep the
/// shape, drop the value.
fn scrub_value(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_quote = false;
    for c in message.chars() {
        if c == '"' {
            if in_quote {
                out.push_str("\"…\"");
            }
            in_quote = !in_quote;
            continue;
        }
        if !in_quote {
            out.push(c);
        }
    }
    if in_quote {
        out.push_str("\"…");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        port: u16,
        password: Option<String>,
    }

    #[test]
    fn errors_name_the_field_and_hide_the_value() {
        let err = parse_config::<Cfg>(&serde_json::json!({"port": "hunter2"})).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("port"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = parse_config::<Cfg>(&serde_json::json!({"port": 1, "pasword": "x"})).unwrap_err();
        assert!(err.to_string().contains("unknown field `pasword`"), "{err}");
    }

    #[test]
    fn spec_is_a_json_schema() {
        let spec = spec_of::<Cfg>();
        assert_eq!(spec["properties"]["port"]["type"], "integer");
    }
}
