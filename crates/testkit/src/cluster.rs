//! A private PostgreSQL cluster for one test: password (SCRAM) authentication and
//! `wal_level=logical`, which the shared trust-auth server of [`crate::pg`] cannot offer.
//!
//! [`PrivateCluster::start`] runs `initdb` (PostgreSQL 15's binaries, or `WEFT_TEST_PG_BIN`)
//! into a temp dir with `--auth=scram-sha-256` and a random superuser password, on a free
//! loopback port, and starts it with `pg_ctl -w`. When the tests run as root, initdb and
//! pg_ctl run as the `postgres` user through `runuser` (the server refuses to run as root).
//! Dropping the value stops the server (`pg_ctl stop -m immediate`) and deletes the folder.
//!
//! When the cluster cannot start, `start` returns `None` with a message on stderr, unless
//! `CI=true`: then the test fails, so CI never skips these tests silently. The password is
//! never printed (not in `Debug`, not in failure messages); the password file initdb reads
//! is deleted as soon as initdb is done.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Options of [`PrivateCluster::start`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The superuser initdb creates (default `weft_owner`).
    pub user: String,
    /// `wal_level=logical` with room for replication slots (default true).
    pub logical: bool,
    /// `max_replication_slots` and `max_wal_senders` when `logical` (default 4; weft takes one
    /// slot per CDC stream).
    pub replication_slots: u32,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            user: "weft_owner".into(),
            logical: true,
            replication_slots: 4,
        }
    }
}

/// A running private cluster; stopped and removed on drop.
pub struct PrivateCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    pub host: String,
    pub port: u16,
    pub user: String,
    password: String,
}

impl std::fmt::Debug for PrivateCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateCluster")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

impl PrivateCluster {
    /// Starts a cluster, or returns `None` (outside CI only) when this machine cannot run one.
    pub fn start(opts: ClusterOptions) -> Option<Self> {
        match Self::try_start(&opts) {
            Ok(cluster) => Some(cluster),
            Err(why) if ci() => {
                panic!("CI=true but a private PostgreSQL cluster cannot start: {why}")
            }
            Err(why) => {
                eprintln!("SKIPPED: a private PostgreSQL cluster cannot start here: {why}");
                None
            }
        }
    }

    fn try_start(opts: &ClusterOptions) -> Result<Self, String> {
        let bin = PathBuf::from(
            std::env::var("WEFT_TEST_PG_BIN")
                .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        );
        if !bin.join("initdb").exists() {
            return Err(format!("no initdb in {}", bin.display()));
        }
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| format!("id -u: {e}"))?;
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let dir = tempfile::Builder::new()
            .prefix("weft-pgcluster-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let password = format!("pw-{}", &crate::pg::random_hex()[..16]);
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).map_err(|e| e.to_string())?;
        let mut cluster = Self {
            dir,
            bin,
            as_postgres,
            host: "127.0.0.1".into(),
            port: 0,
            user: opts.user.clone(),
            password,
        };
        if as_postgres {
            let out = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(cluster.dir.path())
                .output()
                .map_err(|e| format!("chown: {e}"))?;
            check("chown", &out)?;
        }
        let data = cluster.data();
        let out = cluster
            .tool("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", &opts.user, "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C.UTF-8", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        let _ = std::fs::remove_file(&pwfile);
        check("initdb", &out)?;
        let mut conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\nmax_connections = 50\n\
             shared_buffers = 32MB\n",
            cluster.dir.path().display()
        );
        if opts.logical {
            conf.push_str(&format!(
                "wal_level = logical\nmax_wal_senders = {n}\nmax_replication_slots = {n}\n",
                n = opts.replication_slots
            ));
        }
        // A free port can be taken between the probe and the start: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("a free port: {e}"))?
                .port();
            let mut c = conf.clone();
            c.push_str(&format!("port = {port}\n"));
            std::fs::write(data.join("postgresql.auto.conf"), c).map_err(|e| e.to_string())?;
            let out = cluster
                .tool("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(cluster.dir.path().join("server.log"))
                .args(["-w", "-t", "60", "start"])
                .output()
                .map_err(|e| format!("pg_ctl: {e}"))?;
            if out.status.success() {
                cluster.port = port;
                return Ok(cluster);
            }
            last = format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(cluster.dir.path().join("server.log")).unwrap_or_default()
            );
        }
        Err(format!("pg_ctl start failed: {last}"))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The folder of the cluster (data, log, socket).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The superuser's password, for configs and environment variables only: never print it.
    pub fn password(&self) -> &str {
        &self.password
    }

    fn tool(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(exe);
            cmd
        } else {
            Command::new(exe)
        }
    }

    /// Runs SQL in `database` as the superuser over TCP with the password; returns stdout
    /// (unaligned, tuples only) and fails the test on error.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-tA", "-h", &self.host])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                &self.user,
                "-d",
                database,
            ])
            .args(["-c", sql])
            .env("PGPASSWORD", &self.password)
            .env_remove("PGPASSFILE")
            .output()
            .expect("psql must be installed to run PostgreSQL tests");
        assert!(
            out.status.success(),
            "psql failed on the private cluster (port {}): {}\nSQL: {sql}",
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// The `config:` of a `postgres` source or destination on `database` as the superuser, as a YAML
    /// flow mapping; the password is `${PG_PASSWORD}` (set it with
    /// `TestProject::env("PG_PASSWORD", cluster.password())`), never the value.
    pub fn pg_config(&self, database: &str) -> String {
        format!(
            "{{ host: \"{}\", port: {}, user: {}, password: \"${{PG_PASSWORD}}\", database: {database} }}",
            self.host, self.port, self.user
        )
    }

    /// The server log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

fn check(what: &str, out: &Output) -> Result<(), String> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self
                .tool("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}
