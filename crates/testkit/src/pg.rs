//! A throwaway PostgreSQL database per test, on the machine's server.
//!
//! The server is `WEFT_TEST_PG_HOST`/`WEFT_TEST_PG_PORT`/`WEFT_TEST_PG_USER` (default
//! `127.0.0.1`, `5432`, `postgres`, trust auth, as on the CI machines; `.ci/run` starts it).
//! Each [`PgTestDb`] is a fresh database dropped on drop. An unreachable server fails the test:
//! it is never skipped silently.
//!
//! [`PrivateCluster`] (re-exported from the `cluster` module) is a whole cluster of a test's own,
//! for what the shared server cannot do: password authentication, `wal_level=logical`.

use std::process::Command;

pub use crate::cluster::{ClusterOptions, PrivateCluster};

/// A fresh database, dropped (with its connections) when this value is dropped.
pub struct PgTestDb {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

impl PgTestDb {
    /// Creates a database named `weft_<prefix>_<random>`.
    pub fn create(prefix: &str) -> Self {
        let db = Self {
            name: format!("weft_{prefix}_{}", &random_hex()[..12]),
            host: env_or("WEFT_TEST_PG_HOST", "127.0.0.1"),
            port: env_or("WEFT_TEST_PG_PORT", "5432")
                .parse()
                .expect("a port number"),
            user: env_or("WEFT_TEST_PG_USER", "postgres"),
        };
        db.admin_sql(&format!("CREATE DATABASE \"{}\"", db.name));
        db
    }

    /// A libpq/tokio-postgres connection string to the test database.
    pub fn conn_str(&self) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            self.host, self.port, self.user, self.name
        )
    }

    /// The `config:` of a `postgres` source or destination on the test database, as a YAML
    /// flow mapping (trust auth: no password).
    pub fn pg_config(&self) -> String {
        format!(
            "{{ host: \"{}\", port: {}, user: {}, database: {} }}",
            self.host, self.port, self.user, self.name
        )
    }

    /// The same config as JSON, for a connector's factory in a crate's own tests.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "host": self.host, "port": self.port, "user": self.user, "database": self.name,
        })
    }

    /// Runs SQL in the test database with psql, failing the test on error; returns stdout
    /// (unaligned, tuples only).
    pub fn sql(&self, sql: &str) -> String {
        self.psql(&self.name, sql)
    }

    /// `psql -X` connected to the test database, for a caller's own flags and SQL (a COPY
    /// piped between two databases).
    pub fn psql_command(&self) -> Command {
        let mut cmd = Command::new("psql");
        cmd.args(["-X", "-h", &self.host, "-p", &self.port.to_string()])
            .args(["-U", &self.user, "-d", &self.name]);
        cmd
    }

    fn admin_sql(&self, sql: &str) -> String {
        self.psql("postgres", sql)
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-tA", "-h", &self.host])
            .args(["-p", &self.port.to_string(), "-U", &self.user, "-d", db])
            .args(["-c", sql])
            .output()
            .expect("psql must be installed to run PostgreSQL tests");
        assert!(
            out.status.success(),
            "psql failed on {db} (is PostgreSQL running on {}:{}?): {}\nSQL: {sql}",
            self.host,
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-X", "-tA", "-h", &self.host, "-p", &self.port.to_string()])
            .args(["-U", &self.user, "-d", "postgres", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

/// A random hex string without pulling a UUID crate into every test.
pub(crate) fn random_hex() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}
