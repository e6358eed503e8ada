//! The `postgres` source's config and the [`Secret`] wrapper that keeps the password out of
//! `Debug` output, logs and errors.

use std::time::Duration;

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
    /// How CDC streams read the replication slot.
    #[serde(default)]
    pub replication: ReplicationConfig,
    /// How long connecting may take (humantime: `10s`, `1m`): the TCP connect, the startup and
    /// authentication handshake and the session setup together, so a host that accepts TCP
    /// but never answers (a wrong port, a hung proxy) fails instead of hanging.
    #[serde(with = "humantime_serde", default = "default_connect_timeout")]
    #[schemars(with = "String")]
    pub connect_timeout: Duration,
    /// PostgreSQL's `statement_timeout` for weft's sessions (humantime; default: no limit). A
    /// statement running longer is cancelled by the server and the read fails saying so. A
    /// full refresh reads each range with one COPY: allow for the slowest range.
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

/// How CDC reads change data from the replication slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Bounded windows of `pg_logical_slot_peek_binary_changes` over plain SQL; the slot
    /// moves with `pg_replication_slot_advance` on each ack. Each poll decodes again from
    /// the last acknowledged position.
    Poll,
    /// A replication connection (`START_REPLICATION`): the server pushes changes as they
    /// are decoded, and standby status updates report the last acknowledged position (never
    /// more) on every keepalive that asks for one and at least every 10 seconds.
    #[default]
    Stream,
}

/// CDC (logical replication) settings of a `postgres` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// How changes are read: `stream` (a replication connection, the default) or `poll`
    /// (plain SQL, for servers or proxies that refuse replication connections).
    #[serde(default)]
    pub transport: Transport,
    /// Decoded messages per poll (`poll` transport) (the server finishes the transaction it is in when it
    /// reaches this many). Each poll decodes again from the last acknowledged position, so
    /// larger windows mean fewer polls but more re-decoding while acks lag.
    #[serde(default = "default_poll_changes")]
    pub poll_changes: u32,
    /// How long a following read (`weft sync follow`) waits between polls when the slot has
    /// nothing new, in milliseconds.
    #[serde(default = "default_idle_poll_ms")]
    pub idle_poll_ms: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            transport: Transport::default(),
            poll_changes: default_poll_changes(),
            idle_poll_ms: default_idle_poll_ms(),
        }
    }
}

fn default_poll_changes() -> u32 {
    20_000
}
fn default_idle_poll_ms() -> u64 {
    200
}

fn default_port() -> u16 {
    5432
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_network_timeout() -> Duration {
    Duration::from_secs(120)
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
            replication: ReplicationConfig::default(),
            connect_timeout: default_connect_timeout(),
            statement_timeout: None,
            network_timeout: default_network_timeout(),
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
                "must be at least 1ms; leave it out for no limit",
            ));
        }
        if self.network_timeout < Duration::from_secs(2) {
            return Err(ConnectorError::config(
                "network_timeout",
                "must be at least 2s (default 2m)",
            ));
        }
        if !(1..=10_000_000).contains(&self.replication.poll_changes) {
            return Err(ConnectorError::config(
                "replication.poll_changes",
                "must be between 1 and 10000000",
            ));
        }
        if !(1..=60_000).contains(&self.replication.idle_poll_ms) {
            return Err(ConnectorError::config(
                "replication.idle_poll_ms",
                "must be between 1 and 60000 (one minute)",
            ));
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
        assert_eq!(
            (c.replication.poll_changes, c.replication.idle_poll_ms),
            (20_000, 200)
        );
        assert_eq!(c.replication.transport, Transport::Stream);
        assert_eq!(
            (c.connect_timeout, c.statement_timeout, c.network_timeout),
            (Duration::from_secs(10), None, Duration::from_secs(120))
        );
        let c: PostgresConfig = weft_core::parse_config(&serde_json::json!(
            {"host": "h", "user": "u", "database": "d", "replication": {"transport": "poll"}}
        ))
        .unwrap();
        assert_eq!(c.replication.transport, Transport::Poll);
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
