//! The airbyte source's config: which connector to run (a command or a PyPI package), the
//! connector's own config, the stall timeout and per-stream overrides.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weft_core::{ConnectorError, Result, StreamName};

/// Config of the `airbyte` source: any Airbyte-protocol source connector, run as a subprocess.
///
/// Give exactly one of `command` (an executable already installed) or `package` (a PyPI
/// requirement, installed on first use into its own cached virtualenv).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AirbyteConfig {
    /// An executable speaking the Airbyte protocol, then its leading arguments, e.g.
    /// `["source-faker"]` or `["python3", "my_source.py"]`. It runs in the project folder; a
    /// bare name is looked up on PATH.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// A PyPI requirement such as `airbyte-source-faker==7.2.1`. It is installed once into a
    /// virtualenv cached under `$WEFT_CONNECTOR_CACHE`, else `$XDG_CACHE_HOME/weft/connectors`,
    /// else `~/.cache/weft/connectors`. Pin a version: an unpinned package is installed once and
    /// then never upgraded.
    #[serde(default)]
    pub package: Option<String>,
    /// With `package`: the Python version to install it with (`"3.10"`). Without it, the
    /// installed interpreters are tried newest first until the package installs and starts.
    #[serde(default)]
    pub python: Option<String>,
    /// The connector's own config (see its documentation, or its spec). The values its spec
    /// marks `airbyte_secret`, and those under secret-looking keys (`password`, `token`,
    /// `api_key`…), are redacted from logs and errors; every string is, while the spec is
    /// unknown. Values from `${VAR}` and `${file:…}` are redacted everywhere anyway.
    #[serde(default = "empty_object")]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub config: serde_json::Value,
    /// How long the connector may print nothing before the read is failed and the connector
    /// killed (humantime: `30s`, `10m`).
    #[serde(with = "humantime_serde", default = "default_timeout")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// How long a discovered catalog is reused by later runs instead of running the connector's
    /// `discover` again (humantime; `0s`: discover on every run). Entries are per connector
    /// version and config, so changing either discovers at once; a read that fails drops the
    /// entry; `weft connector discover domain/product` refreshes it. A stream or column the
    /// source gains meanwhile appears when the entry expires (until then a new column's values
    /// land in `_airbyte_extra`).
    #[serde(with = "humantime_serde", default = "default_catalog_cache")]
    #[schemars(with = "String")]
    pub catalog_cache: Duration,
    /// Rows per record batch (a STATE message also ends a batch).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Per-stream overrides, keyed by the connector's stream name.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamOverride>,
    /// What to do with a value that does not fit its column's type (an empty string in a
    /// `date-time` field, text in an `integer` one): `null` writes NULL and records the change
    /// in the row's `_airbyte_meta` column, as Airbyte's destinations do; `fail` fails the read.
    #[serde(default)]
    pub off_schema: OffSchema,
    /// How many stdout lines that are not JSON at all (progress output) are logged and skipped
    /// before the read fails.
    #[serde(default = "default_max_invalid_lines")]
    pub max_invalid_lines: u64,
}

/// What to do with a value that does not fit its column's type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OffSchema {
    /// Write NULL and record the change in the row's `_airbyte_meta` column.
    #[default]
    Null,
    /// Fail the read, naming the stdout line and the field.
    Fail,
}

/// Overrides for one of the connector's streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamOverride {
    /// The weft stream name to use instead of the connector's (needed when two connector
    /// names map to the same weft name; names with `/` are otherwise mapped to `_`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub name: Option<StreamName>,
    /// Whether an interrupted full refresh of this stream resumes from the connector's last
    /// state rather than starting over. Default: only for streams the connector marks
    /// `is_resumable` that cannot read incrementally; set `true` only for a connector known to
    /// continue a full refresh from its state, or rows are lost or duplicated.
    #[serde(default)]
    pub resumable: Option<bool>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}
fn default_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_catalog_cache() -> Duration {
    // As often as Airbyte's own platform checks sources for schema changes.
    Duration::from_secs(24 * 3600)
}
fn default_batch_size() -> usize {
    8_192
}
fn default_max_invalid_lines() -> u64 {
    1_000
}

/// Which connector runs, once the config is validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    Command(Vec<String>),
    Package {
        requirement: String,
        python: Option<String>,
    },
}

impl AirbyteConfig {
    /// Checks what serde cannot; returns how the connector is launched.
    pub fn validate(&self) -> Result<Launch> {
        if !self.config.is_object() {
            return Err(ConnectorError::config(
                "config",
                "must be an object: the connector's own config",
            ));
        }
        if self.batch_size == 0 {
            return Err(ConnectorError::config("batch_size", "must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(ConnectorError::config(
                "timeout",
                "must be longer than zero, e.g. `10m`",
            ));
        }
        match (&self.command, &self.package) {
            (Some(_), Some(_)) => Err(ConnectorError::config(
                "",
                "give either `command` or `package`, not both",
            )),
            (None, None) => Err(ConnectorError::config(
                "",
                "give `command` (an installed executable) or `package` (a PyPI requirement such \
                 as `airbyte-source-faker==7.2.1`)",
            )),
            (Some(cmd), None) => {
                if cmd.first().is_none_or(|c| c.trim().is_empty()) {
                    return Err(ConnectorError::config(
                        "command",
                        "must name an executable, e.g. [\"source-faker\"]",
                    ));
                }
                if self.python.is_some() {
                    return Err(ConnectorError::config(
                        "python",
                        "only applies to `package`; with `command` the executable chooses its \
                         own interpreter",
                    ));
                }
                Ok(Launch::Command(cmd.clone()))
            }
            (None, Some(pkg)) => {
                crate::install::Requirement::parse(pkg)
                    .map_err(|e| ConnectorError::config("package", e))?;
                if let Some(py) = &self.python {
                    crate::install::parse_python_version(py)
                        .map_err(|e| ConnectorError::config("python", e))?;
                }
                Ok(Launch::Package {
                    requirement: pkg.trim().to_string(),
                    python: self.python.clone(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::parse_config;

    #[test]
    fn command_or_package_exactly_once() {
        let cfg: AirbyteConfig = parse_config(&serde_json::json!({})).unwrap();
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("give `command`"));
        let cfg: AirbyteConfig =
            parse_config(&serde_json::json!({"command": ["a"], "package": "b"})).unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("not both"));
        let cfg: AirbyteConfig =
            parse_config(&serde_json::json!({"package": "airbyte-source-faker==7.2.1", "python": "3.10", "timeout": "30s"}))
                .unwrap();
        assert_eq!(cfg.timeout, Duration::from_secs(30));
        assert_eq!(
            cfg.validate().unwrap(),
            Launch::Package {
                requirement: "airbyte-source-faker==7.2.1".into(),
                python: Some("3.10".into())
            }
        );
    }

    #[test]
    fn unknown_fields_and_bad_python_are_named() {
        let err = parse_config::<AirbyteConfig>(&serde_json::json!({"pakage": "x"})).unwrap_err();
        assert!(err.to_string().contains("unknown field `pakage`"), "{err}");
        let cfg: AirbyteConfig =
            parse_config(&serde_json::json!({"package": "x", "python": "three"})).unwrap();
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "invalid config at `python`: `three` is not a Python version; write it like \"3.10\""
        );
    }
}
