//! The `postgres` source's config and the [`Secret`] wrapper that keeps the password out of
//! `Debug` output, logs and errors.

use schemars::JsonSchema;
use serde::Deserialize;
use weft_core::{ConnectorError, Result};

/// A secret string (a password): `Debug` prints `"***"`, never the value.
#[derive(Clone, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it: the connection handshake.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Connection and reading settings of a `postgres` source.
///
/// Connections are plain TCP: TLS is not supported yet, so use this source inside a trusted
/// network (or through an SSH tunnel / local proxy) until it is.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Host name or IP address of the server.
    pub host: String,
    /// TCP port of the server.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The role to connect as. It needs `USAGE` on the schemas and `SELECT` on the tables read.
    pub user: String,
    /// The role's password (use `${VAR}` or `${file:path}`; never written inline). Omit for
    /// trust authentication.
    #[serde(default)]
    pub password: Option<Secret>,
    /// The database to read.
    pub database: String,
    /// The schemas whose tables, views and materialized views are offered as streams
    /// (`schema.table`).
    #[serde(default = "default_schemas")]
    pub schemas: Vec<String>,
    /// How many ranges of one table are read at once, each on its own connection.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// Most rows per Arrow record batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Most bytes per Arrow record batch (default 4 MiB, counted as read from the server, a
    /// little above the batch's size in memory). A batch ends at `batch_size` rows or
    /// `batch_bytes`, whichever comes first, so wide rows do not make huge batches: a read
    /// holds about fifteen batches in flight between the server and the destination.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Target rows per range when a full refresh splits a large table.
    #[serde(default = "default_range_rows")]
    pub range_rows: u64,
}

fn default_port() -> u16 {
    5432
}
fn default_schemas() -> Vec<String> {
    vec!["public".into()]
}
fn default_parallelism() -> usize {
    2
}
fn default_batch_size() -> usize {
    65_536
}
fn default_batch_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_range_rows() -> u64 {
    1_000_000
}

impl PostgresConfig {
    /// A config with defaults for everything but the connection.
    pub fn new(host: &str, port: u16, user: &str, database: &str) -> Self {
        Self {
            host: host.into(),
            port,
            user: user.into(),
            password: None,
            database: database.into(),
            schemas: default_schemas(),
            parallelism: default_parallelism(),
            batch_size: default_batch_size(),
            batch_bytes: default_batch_bytes(),
            range_rows: default_range_rows(),
        }
    }

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
        if self.schemas.is_empty() {
            return Err(ConnectorError::config(
                "schemas",
                "list at least one schema (for example [public])",
            ));
        }
        if !(1..=64).contains(&self.parallelism) {
            return Err(ConnectorError::config(
                "parallelism",
                "must be between 1 and 64",
            ));
        }
        if !(1..=1_048_576).contains(&self.batch_size) {
            return Err(ConnectorError::config(
                "batch_size",
                "must be between 1 and 1048576 rows",
            ));
        }
        if self.batch_bytes < 65_536 {
            return Err(ConnectorError::config(
                "batch_bytes",
                "must be at least 65536 (64 KiB; the default is 4194304, 4 MiB)",
            ));
        }
        if self.range_rows == 0 {
            return Err(ConnectorError::config("range_rows", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_password() {
        let mut c = PostgresConfig::new("h", 5432, "u", "d");
        c.password = Some(Secret::new("hunter2"));
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"), "{text}");
    }

    #[test]
    fn defaults_apply() {
        let c: PostgresConfig = weft_core::parse_config(
            &serde_json::json!({"host": "h", "user": "u", "database": "d"}),
        )
        .unwrap();
        assert_eq!(c.port, 5432);
        assert_eq!(c.schemas, vec!["public"]);
        assert_eq!(
            (c.parallelism, c.batch_size, c.batch_bytes, c.range_rows),
            (2, 65536, 4 << 20, 1_000_000)
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = weft_core::parse_config::<PostgresConfig>(
            &serde_json::json!({"host": "h", "user": "u", "database": "d", "pasword": "x"}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `pasword`"), "{err}");
    }
}
