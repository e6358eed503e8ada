//! The typed config of the `postgres` destination, and the password wrapper that keeps the
//! secret out of `Debug` output, logs and errors.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use weft_core::{ConnectorError, Result};

/// Config of the `postgres` destination (a domain's product store in PostgreSQL).
///
/// Connections are plain TCP: TLS is not supported yet, so use it on a trusted network (or
/// through a local tunnel).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    /// Host name or IP address of the server.
    pub host: String,
    /// TCP port (default 5432).
    #[serde(default = "default_port")]
    pub port: u16,
    /// User to connect as. It needs CREATE on the database (to create the domain's schema) or
    /// on the schema named by `schema`.
    pub user: String,
    /// Password, if the server asks for one. A secret: give it as `${PG_PASSWORD}` or
    /// `${file:path}`, never inline; it is never printed.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub password: Option<Password>,
    /// Database to write into.
    pub database: String,
    /// Schema holding the product tables (default: the domain's name, one schema per domain).
    /// Created if missing.
    #[serde(default)]
    pub schema: Option<String>,
    /// Add `_weft_synced_at` (timestamptz) and `_weft_run_id` (text) to every table, filled
    /// per commit (default true).
    #[serde(default = "default_true")]
    pub metadata_columns: bool,
    /// How long connecting may take (humantime: `10s`, `1m`): the TCP connect, the startup and
    /// authentication handshake together, so a host that accepts TCP but never answers (a
    /// wrong port, a hung proxy) fails instead of hanging.
    #[serde(with = "humantime_serde", default = "default_connect_timeout")]
    #[schemars(with = "String")]
    pub connect_timeout: Duration,
    /// PostgreSQL's `statement_timeout` for weft's sessions (humantime; default: the server's
    /// setting). A commit's statement running longer is cancelled by the server and the commit
    /// fails (nothing of it becomes visible). Allow for the largest commit and merge.
    #[serde(with = "humantime_serde", default)]
    #[schemars(with = "Option<String>")]
    pub statement_timeout: Option<Duration>,
    /// A connection whose server stops answering at the network level (host down, network
    /// cut) is closed after about this long (humantime), by TCP keepalive probes and
    /// TCP_USER_TIMEOUT. A busy or idle but reachable server is never cut off by it.
    #[serde(with = "humantime_serde", default = "default_network_timeout")]
    #[schemars(with = "String")]
    pub network_timeout: Duration,
}

fn default_port() -> u16 {
    5432
}

fn default_true() -> bool {
    true
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_network_timeout() -> Duration {
    Duration::from_secs(120)
}

/// A password: `Debug` prints `<redacted>`, and there is no `Display`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the connection only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl PgConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<()> {
        if self.host.trim().is_empty() {
            return Err(ConnectorError::config("host", "must not be empty"));
        }
        if self.user.is_empty() {
            return Err(ConnectorError::config("user", "must not be empty"));
        }
        if self.database.is_empty() {
            return Err(ConnectorError::config("database", "must not be empty"));
        }
        if let Some(schema) = &self.schema {
            crate::naming::check_identifier(schema)
                .map_err(|why| ConnectorError::config("schema", why))?;
        }
        if self.connect_timeout.is_zero() {
            return Err(ConnectorError::config(
                "connect_timeout",
                "must be longer than zero, e.g. `10s`",
            ));
        }
        if self
            .statement_timeout
            .is_some_and(|t| t < Duration::from_millis(1))
        {
            return Err(ConnectorError::config(
                "statement_timeout",
                "must be at least 1ms; leave it out for the server's setting",
            ));
        }
        if self.network_timeout < Duration::from_secs(2) {
            return Err(ConnectorError::config(
                "network_timeout",
                "must be at least 2s (default 2m)",
            ));
        }
        Ok(())
    }

    /// Where, for messages: `host:port/database` (never the password).
    pub fn location(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }

    pub(crate) fn pg_config(&self) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.database)
            .application_name("weft")
            .keepalives(true)
            .keepalives_idle((self.network_timeout / 2).max(Duration::from_secs(1)))
            .keepalives_interval((self.network_timeout / 8).max(Duration::from_secs(1)))
            .keepalives_retries(4)
            .tcp_user_timeout(self.network_timeout);
        if let Some(password) = &self.password {
            cfg.password(password.expose());
        }
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_apply_and_the_password_never_prints() {
        let cfg: PgConfig = weft_core::parse_config(&json!({
            "host": "db", "user": "weft", "database": "mesh", "password": "hunter2"
        }))
        .unwrap();
        assert_eq!(cfg.port, 5432);
        assert!(cfg.metadata_columns);
        assert_eq!(cfg.schema, None);
        assert_eq!(
            (
                cfg.connect_timeout,
                cfg.statement_timeout,
                cfg.network_timeout
            ),
            (Duration::from_secs(10), None, Duration::from_secs(120))
        );
        cfg.validate().unwrap();
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(!format!("{:?}", cfg.pg_config()).contains("hunter2"));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let err = weft_core::parse_config::<PgConfig>(
            &json!({"host": "db", "user": "u", "database": "d", "passwd": "hunter2"}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `passwd`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        let cfg: PgConfig = weft_core::parse_config(
            &json!({"host": "db", "user": "u", "database": "d", "schema": "x".repeat(64)}),
        )
        .unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("`schema`") && err.contains("63 bytes"),
            "{err}"
        );
    }

    #[test]
    fn spec_documents_the_fields() {
        let spec = weft_core::spec_of::<PgConfig>();
        assert_eq!(spec["properties"]["port"]["type"], "integer");
        assert!(spec["properties"]["password"].is_object());
        assert!(spec["required"]
            .as_array()
            .unwrap()
            .contains(&json!("database")));
    }
}
