//! [`SqliteStateStore`]: the state store in one SQLite file (WAL, `synchronous=FULL`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use weft_core::{Checkpoint, DomainName, ProductName, StreamName};

use crate::error::{StateError, StateResult};
use crate::model::{
    NewToken, ProductKey, ProductLastRun, RunRecord, RunStart, RunStatus, StoredState,
    StreamHistory, StreamKey, StreamRun, TokenRecord, TokenScope, Trigger,
};
use crate::StateStore;

/// Schema migrations, applied in order; `PRAGMA user_version` counts the ones applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE stream_state (
    domain      TEXT NOT NULL,
    product     TEXT NOT NULL,
    stream      TEXT NOT NULL,
    checkpoint  TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    updated_at  TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    PRIMARY KEY (domain, product, stream)
);
CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY,
    selectors   TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    rows        INTEGER NOT NULL DEFAULT 0,
    bytes       INTEGER NOT NULL DEFAULT 0,
    error       TEXT
);
CREATE INDEX runs_started ON runs (started_at);
CREATE INDEX runs_status ON runs (status);
CREATE TABLE stream_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    domain      TEXT NOT NULL,
    product     TEXT NOT NULL,
    stream      TEXT NOT NULL,
    status      TEXT NOT NULL,
    rows        INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    error       TEXT,
    started_at  TEXT NOT NULL,
    ended_at    TEXT NOT NULL
);
CREATE INDEX stream_runs_run ON stream_runs (run_id);
CREATE INDEX stream_runs_key ON stream_runs (domain, product, stream);
"#,
    // governance (#9): what the policy did to each stream of a run.
    r#"
CREATE TABLE run_policy (
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    stream      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    audit       TEXT NOT NULL,
    PRIMARY KEY (run_id, stream)
);
"#,
    // The daemon: what started a run, when it was due, which products it covers (per-product
    // locks: a run's liveness is its products' locks).
    r#"
ALTER TABLE runs ADD COLUMN trigger TEXT NOT NULL DEFAULT 'manual';
ALTER TABLE runs ADD COLUMN scheduled_at TEXT;
CREATE TABLE run_products (
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    domain      TEXT NOT NULL,
    product     TEXT NOT NULL,
    PRIMARY KEY (run_id, domain, product)
);
CREATE INDEX run_products_product ON run_products (domain, product);
"#,
    // The HTTP API: bearer tokens (hashes only), and indexes for product run history and
    // per-stream latest/last-success lookups.
    r#"
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    scope        TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX stream_runs_product_run ON stream_runs (domain, product, run_id);
CREATE INDEX stream_runs_key_ended ON stream_runs (domain, product, stream, ended_at);
CREATE INDEX stream_runs_key_status_ended ON stream_runs (domain, product, stream, status, ended_at);
CREATE INDEX runs_started_id ON runs (started_at, run_id);
"#,
];

/// How long a writer waits for another process holding the database (a `weft sync status`
/// reading while a sync writes) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The state store in one SQLite file.
///
/// One connection behind a mutex: every method is one short transaction.
pub struct SqliteStateStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStateStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStateStore {
    /// Opens (creating it and its folders if needed) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> StateResult<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StateError::CreateDir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source| StateError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // WAL lets readers (status commands) run beside a writing sync; FULL makes every
        // recorded checkpoint survive a power loss, which the engine's guarantees rely on.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        migrate(&mut conn, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        move |source| StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, what: &'static str, message: impl ToString) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            what,
            message: message.to_string(),
        }
    }

    fn time(&self, text: &str) -> StateResult<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| self.corrupt("timestamp", format!("{text:?}: {e}")))
    }

    fn status(&self, text: &str) -> StateResult<RunStatus> {
        RunStatus::parse(text).ok_or_else(|| self.corrupt("run status", format!("{text:?}")))
    }

    fn trigger(&self, text: &str) -> StateResult<Trigger> {
        Trigger::parse(text).ok_or_else(|| self.corrupt("run trigger", format!("{text:?}")))
    }

    fn product_key(&self, domain: String, product: String) -> StateResult<ProductKey> {
        Ok(ProductKey {
            domain: DomainName::new(domain).map_err(|e| self.corrupt("product key", e))?,
            product: ProductName::new(product).map_err(|e| self.corrupt("product key", e))?,
        })
    }

    /// Inserts a run and its products in one transaction.
    fn insert_run(
        &self,
        run: &RunStart,
        status: RunStatus,
        ended_at: Option<&DateTime<Utc>>,
        error: Option<&str>,
    ) -> StateResult<()> {
        let selectors =
            serde_json::to_string(&run.selectors).map_err(|e| self.corrupt("selectors", e))?;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql())?;
        tx.execute(
            "INSERT INTO runs (run_id, selectors, status, started_at, ended_at, error, trigger, scheduled_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                run.run_id,
                selectors,
                status.as_str(),
                db_time(&run.started_at),
                ended_at.map(db_time),
                error,
                run.trigger.as_str(),
                run.scheduled_at.as_ref().map(db_time),
            ],
        )
        .map_err(self.sql())?;
        for p in &run.products {
            tx.execute(
                "INSERT OR IGNORE INTO run_products (run_id, domain, product) VALUES (?1, ?2, ?3)",
                params![run.run_id, p.domain.as_str(), p.product.as_str()],
            )
            .map_err(self.sql())?;
        }
        tx.commit().map_err(self.sql())
    }

    fn key(&self, domain: String, product: String, stream: String) -> StateResult<StreamKey> {
        Ok(StreamKey {
            domain: DomainName::new(domain).map_err(|e| self.corrupt("stream key", e))?,
            product: ProductName::new(product).map_err(|e| self.corrupt("stream key", e))?,
            stream: StreamName::new(stream).map_err(|e| self.corrupt("stream key", e))?,
        })
    }

    fn stored_state(&self, raw: RawState) -> StateResult<StoredState> {
        let checkpoint = serde_json::from_str(&raw.checkpoint)
            .map(Checkpoint)
            .map_err(|e| self.corrupt("checkpoint", e))?;
        Ok(StoredState {
            checkpoint,
            generation: raw.generation,
            updated_at: self.time(&raw.updated_at)?,
            run_id: raw.run_id,
        })
    }

    fn stream_run(&self, raw: RawStreamRun) -> StateResult<StreamRun> {
        Ok(StreamRun {
            key: self.key(raw.domain, raw.product, raw.stream)?,
            status: self.status(&raw.status)?,
            rows: from_db_count(raw.rows),
            bytes: from_db_count(raw.bytes),
            error: raw.error,
            started_at: self.time(&raw.started_at)?,
            ended_at: self.time(&raw.ended_at)?,
        })
    }
}

impl SqliteStateStore {
    /// Runs a query selecting [`RUN_COLUMNS`] and loads each run with its streams and products.
    fn load_runs(&self, sql: &str, args: impl rusqlite::Params) -> StateResult<Vec<RunRecord>> {
        let conn = self.conn();
        type RawRun = (
            String,
            String,
            String,
            String,
            Option<String>,
            i64,
            i64,
            Option<String>,
            String,
            Option<String>,
        );
        let mut stmt = conn.prepare(sql).map_err(self.sql())?;
        let raw: Vec<RawRun> = stmt
            .query_map(args, |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })
            .map_err(self.sql())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.sql())?;
        let mut streams_stmt = conn
            .prepare(&format!(
                "SELECT {STREAM_RUN_COLUMNS} FROM stream_runs WHERE run_id = ?1 ORDER BY id"
            ))
            .map_err(self.sql())?;
        let mut products_stmt = conn
            .prepare(
                "SELECT domain, product FROM run_products WHERE run_id = ?1 ORDER BY domain, product",
            )
            .map_err(self.sql())?;
        let mut out = Vec::with_capacity(raw.len());
        for (
            run_id,
            selectors,
            status,
            started_at,
            ended_at,
            rows,
            bytes,
            error,
            trigger,
            scheduled_at,
        ) in raw
        {
            let products = products_stmt
                .query_map([&run_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(self.sql())?
                .collect::<rusqlite::Result<Vec<(String, String)>>>()
                .map_err(self.sql())?
                .into_iter()
                .map(|(d, p)| self.product_key(d, p))
                .collect::<StateResult<Vec<_>>>()?;
            let streams = streams_stmt
                .query_map([&run_id], raw_stream_run)
                .map_err(self.sql())?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(self.sql())?
                .into_iter()
                .map(|s| self.stream_run(s))
                .collect::<StateResult<Vec<_>>>()?;
            out.push(RunRecord {
                selectors: serde_json::from_str(&selectors)
                    .map_err(|e| self.corrupt("selector list", e))?,
                status: self.status(&status)?,
                started_at: self.time(&started_at)?,
                ended_at: ended_at.map(|t| self.time(&t)).transpose()?,
                rows: from_db_count(rows),
                bytes: from_db_count(bytes),
                error,
                streams,
                trigger: self.trigger(&trigger)?,
                scheduled_at: scheduled_at.map(|t| self.time(&t)).transpose()?,
                products,
                run_id,
            });
        }
        Ok(out)
    }

    fn load_tokens(&self, sql: &str, args: impl rusqlite::Params) -> StateResult<Vec<TokenRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql).map_err(self.sql())?;
        type RawToken = (
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
        );
        let raw: Vec<RawToken> = stmt
            .query_map(args, |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(self.sql())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.sql())?;
        raw.into_iter()
            .map(|(id, name, scope, created_at, last_used_at, revoked_at)| {
                Ok(TokenRecord {
                    scope: TokenScope::parse(&scope)
                        .ok_or_else(|| self.corrupt("token scope", format!("{scope:?}")))?,
                    created_at: self.time(&created_at)?,
                    last_used_at: last_used_at.map(|t| self.time(&t)).transpose()?,
                    revoked_at: revoked_at.map(|t| self.time(&t)).transpose()?,
                    id,
                    name,
                })
            })
            .collect()
    }
}

const RUN_COLUMNS: &str =
    "run_id, selectors, status, started_at, ended_at, rows, bytes, error, trigger, scheduled_at";
const TOKEN_COLUMNS: &str = "id, name, scope, created_at, last_used_at, revoked_at";

fn migrate(conn: &mut Connection, path: &Path) -> StateResult<()> {
    let open_err = |source| StateError::Open {
        path: path.to_path_buf(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(open_err)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(open_err)?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StateError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(open_err)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(open_err)?;
    }
    tx.commit().map_err(open_err)
}

/// Timestamps are stored as fixed-width RFC 3339 UTC text, so text order is time order.
fn db_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// SQLite integers are signed; counts beyond `i64::MAX` cannot happen in practice.
fn to_db_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn from_db_count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

struct RawState {
    checkpoint: String,
    generation: i64,
    updated_at: String,
    run_id: String,
}

struct RawStreamRun {
    domain: String,
    product: String,
    stream: String,
    status: String,
    rows: i64,
    bytes: i64,
    error: Option<String>,
    started_at: String,
    ended_at: String,
}

const STREAM_RUN_COLUMNS: &str =
    "domain, product, stream, status, rows, bytes, error, started_at, ended_at";

fn raw_stream_run(row: &Row<'_>) -> rusqlite::Result<RawStreamRun> {
    Ok(RawStreamRun {
        domain: row.get(0)?,
        product: row.get(1)?,
        stream: row.get(2)?,
        status: row.get(3)?,
        rows: row.get(4)?,
        bytes: row.get(5)?,
        error: row.get(6)?,
        started_at: row.get(7)?,
        ended_at: row.get(8)?,
    })
}

impl StateStore for SqliteStateStore {
    fn get_state(&self, key: &StreamKey) -> StateResult<Option<StoredState>> {
        let raw = self
            .conn()
            .query_row(
                "SELECT checkpoint, generation, updated_at, run_id FROM stream_state
                 WHERE domain = ?1 AND product = ?2 AND stream = ?3",
                params![
                    key.domain.as_str(),
                    key.product.as_str(),
                    key.stream.as_str()
                ],
                |r| {
                    Ok(RawState {
                        checkpoint: r.get(0)?,
                        generation: r.get(1)?,
                        updated_at: r.get(2)?,
                        run_id: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(self.sql())?;
        raw.map(|raw| self.stored_state(raw)).transpose()
    }

    fn put_state(
        &self,
        key: &StreamKey,
        checkpoint: &Checkpoint,
        run_id: &str,
        expected_generation: Option<i64>,
    ) -> StateResult<i64> {
        let json = serde_json::to_string(checkpoint).map_err(|e| self.corrupt("checkpoint", e))?;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql())?;
        let ids = params![
            key.domain.as_str(),
            key.product.as_str(),
            key.stream.as_str()
        ];
        let found: Option<i64> = tx
            .query_row(
                "SELECT generation FROM stream_state
                 WHERE domain = ?1 AND product = ?2 AND stream = ?3",
                ids,
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())?;
        if found != expected_generation {
            return Err(StateError::Conflict {
                key: key.to_string(),
                expected: expected_generation,
                found,
            });
        }
        let generation = found.map_or(1, |g| g + 1);
        tx.execute(
            "INSERT INTO stream_state (domain, product, stream, checkpoint, generation, updated_at, run_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (domain, product, stream) DO UPDATE SET
                checkpoint = excluded.checkpoint, generation = excluded.generation,
                updated_at = excluded.updated_at, run_id = excluded.run_id",
            params![
                key.domain.as_str(),
                key.product.as_str(),
                key.stream.as_str(),
                json,
                generation,
                db_time(&Utc::now()),
                run_id
            ],
        )
        .map_err(self.sql())?;
        tx.commit().map_err(self.sql())?;
        Ok(generation)
    }

    fn list_states(&self) -> StateResult<Vec<(StreamKey, StoredState)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT domain, product, stream, checkpoint, generation, updated_at, run_id
                 FROM stream_state ORDER BY domain, product, stream",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    (r.get(0)?, r.get(1)?, r.get(2)?),
                    RawState {
                        checkpoint: r.get(3)?,
                        generation: r.get(4)?,
                        updated_at: r.get(5)?,
                        run_id: r.get(6)?,
                    },
                ))
            })
            .map_err(self.sql())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sql())?;
        rows.into_iter()
            .map(|((d, p, s), raw)| Ok((self.key(d, p, s)?, self.stored_state(raw)?)))
            .collect()
    }

    fn delete_state(&self, key: &StreamKey) -> StateResult<bool> {
        let n = self
            .conn()
            .execute(
                "DELETE FROM stream_state WHERE domain = ?1 AND product = ?2 AND stream = ?3",
                params![
                    key.domain.as_str(),
                    key.product.as_str(),
                    key.stream.as_str()
                ],
            )
            .map_err(self.sql())?;
        Ok(n > 0)
    }

    fn start_run(&self, run: &RunStart) -> StateResult<()> {
        self.insert_run(run, RunStatus::Running, None, None)
    }

    fn record_skipped(&self, run: &RunStart, reason: &str) -> StateResult<()> {
        self.insert_run(run, RunStatus::Skipped, Some(&run.started_at), Some(reason))
    }

    fn mark_interrupted_product_runs(
        &self,
        products: &[ProductKey],
        now: DateTime<Utc>,
    ) -> StateResult<usize> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql())?;
        let mut marked = 0;
        let update = "UPDATE runs SET status = ?1, ended_at = ?2,
                error = COALESCE(error, 'the weft process stopped before the run finished')
             WHERE status = ?3 AND ";
        let running = params![
            RunStatus::Interrupted.as_str(),
            db_time(&now),
            RunStatus::Running.as_str()
        ];
        marked += tx
            .execute(
                &format!(
                    "{update} NOT EXISTS (SELECT 1 FROM run_products p WHERE p.run_id = runs.run_id)"
                ),
                running,
            )
            .map_err(self.sql())?;
        for p in products {
            marked += tx
                .execute(
                    &format!(
                        "{update} run_id IN (SELECT run_id FROM run_products
                                             WHERE domain = ?4 AND product = ?5)"
                    ),
                    params![
                        RunStatus::Interrupted.as_str(),
                        db_time(&now),
                        RunStatus::Running.as_str(),
                        p.domain.as_str(),
                        p.product.as_str()
                    ],
                )
                .map_err(self.sql())?;
        }
        tx.commit().map_err(self.sql())?;
        Ok(marked)
    }

    fn product_last_runs(&self, products: &[ProductKey]) -> StateResult<Vec<ProductLastRun>> {
        // One window over the history: measured (benches/api.rs) faster than a newest-first
        // walk per product, which SQLite did not stop early; both read the whole history.
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT domain, product, run_id, status, trigger, started_at, scheduled_at FROM (
                    SELECT p.domain, p.product, r.run_id, r.status, r.trigger, r.started_at,
                           r.scheduled_at, ROW_NUMBER() OVER (
                               PARTITION BY p.domain, p.product
                               ORDER BY r.started_at DESC, r.rowid DESC
                           ) AS n
                    FROM run_products p JOIN runs r ON r.run_id = p.run_id
                 ) WHERE n = 1",
            )
            .map_err(self.sql())?;
        type Raw = (
            String,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
        );
        let raw: Vec<Raw> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .map_err(self.sql())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.sql())?;
        let mut out = Vec::new();
        for key in products {
            let found = raw
                .iter()
                .find(|(d, p, ..)| d == key.domain.as_str() && p == key.product.as_str());
            if let Some((_, _, run_id, status, trigger, started, scheduled)) = found {
                out.push(ProductLastRun {
                    product: key.clone(),
                    run_id: run_id.clone(),
                    status: self.status(status)?,
                    trigger: self.trigger(trigger)?,
                    started_at: self.time(started)?,
                    scheduled_at: scheduled.as_ref().map(|t| self.time(t)).transpose()?,
                });
            }
        }
        Ok(out)
    }

    fn finish_stream(&self, run_id: &str, stream: &StreamRun) -> StateResult<()> {
        let conn = self.conn();
        let known: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE run_id = ?1)",
                [run_id],
                |r| r.get(0),
            )
            .map_err(self.sql())?;
        if !known {
            return Err(StateError::UnknownRun {
                path: self.path.clone(),
                run_id: run_id.to_string(),
            });
        }
        conn.execute(
            &format!(
                "INSERT INTO stream_runs (run_id, {STREAM_RUN_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ),
            params![
                run_id,
                stream.key.domain.as_str(),
                stream.key.product.as_str(),
                stream.key.stream.as_str(),
                stream.status.as_str(),
                to_db_count(stream.rows),
                to_db_count(stream.bytes),
                stream.error,
                db_time(&stream.started_at),
                db_time(&stream.ended_at)
            ],
        )
        .map_err(self.sql())?;
        Ok(())
    }

    fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        rows: u64,
        bytes: u64,
        error: Option<&str>,
        ended_at: DateTime<Utc>,
    ) -> StateResult<()> {
        let n = self
            .conn()
            .execute(
                "UPDATE runs SET status = ?2, rows = ?3, bytes = ?4, error = ?5, ended_at = ?6
                 WHERE run_id = ?1",
                params![
                    run_id,
                    status.as_str(),
                    to_db_count(rows),
                    to_db_count(bytes),
                    error,
                    db_time(&ended_at)
                ],
            )
            .map_err(self.sql())?;
        if n == 0 {
            return Err(StateError::UnknownRun {
                path: self.path.clone(),
                run_id: run_id.to_string(),
            });
        }
        Ok(())
    }

    fn runs(&self, limit: usize) -> StateResult<Vec<RunRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.load_runs(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?1"
            ),
            params![limit],
        )
    }

    fn product_runs(
        &self,
        domain: &str,
        product: &str,
        before: Option<&str>,
        limit: usize,
    ) -> StateResult<Vec<RunRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // A run covers a product if it recorded the product (run_products), or, for runs
        // recorded before weft kept products, if one of the product's streams ran in it.
        // Walking runs newest first (index runs_started_id) with per-run key lookups finds a
        // page without reading the product's whole history.
        self.load_runs(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs
                 WHERE (EXISTS (SELECT 1 FROM run_products p WHERE p.run_id = runs.run_id
                                AND p.domain = ?1 AND p.product = ?2)
                        OR EXISTS (SELECT 1 FROM stream_runs s WHERE s.run_id = runs.run_id
                                   AND s.domain = ?1 AND s.product = ?2))
                   AND (?3 IS NULL OR (started_at, run_id) <
                        (SELECT started_at, run_id FROM runs WHERE run_id = ?3))
                 ORDER BY started_at DESC, run_id DESC LIMIT ?4"
            ),
            params![domain, product, before, limit],
        )
    }

    fn run(&self, run_id: &str) -> StateResult<Option<RunRecord>> {
        Ok(self
            .load_runs(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1"),
                params![run_id],
            )?
            .pop())
    }

    fn stream_history(&self, key: &StreamKey) -> StateResult<StreamHistory> {
        let conn = self.conn();
        let args = params![
            key.domain.as_str(),
            key.product.as_str(),
            key.stream.as_str()
        ];
        // Both are index lookups (stream_runs_key_ended, stream_runs_key_status_ended), so a
        // product list stays fast with a long history.
        let last = conn
            .query_row(
                &format!(
                    "SELECT {STREAM_RUN_COLUMNS}, run_id FROM stream_runs
                     WHERE domain = ?1 AND product = ?2 AND stream = ?3
                     ORDER BY ended_at DESC, id DESC LIMIT 1"
                ),
                args,
                |r| Ok((raw_stream_run(r)?, r.get::<_, String>(9)?)),
            )
            .optional()
            .map_err(self.sql())?;
        let success: Option<String> = conn
            .query_row(
                "SELECT MAX(ended_at) FROM stream_runs
                 WHERE domain = ?1 AND product = ?2 AND stream = ?3 AND status = 'succeeded'",
                args,
                |r| r.get(0),
            )
            .map_err(self.sql())?;
        drop(conn);
        Ok(StreamHistory {
            last_run: last
                .map(|(raw, run_id)| Ok::<_, StateError>((self.stream_run(raw)?, run_id)))
                .transpose()?,
            last_success: success.map(|t| self.time(&t)).transpose()?,
        })
    }

    fn create_token(&self, token: &NewToken) -> StateResult<()> {
        let conn = self.conn();
        let taken: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE name = ?1)",
                [&token.name],
                |r| r.get(0),
            )
            .map_err(self.sql())?;
        if taken {
            return Err(StateError::TokenNameTaken {
                name: token.name.clone(),
            });
        }
        conn.execute(
            "INSERT INTO api_tokens (id, name, scope, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                token.id,
                token.name,
                token.scope.to_string(),
                token.hash,
                db_time(&token.created_at)
            ],
        )
        .map_err(self.sql())?;
        Ok(())
    }

    fn tokens(&self) -> StateResult<Vec<TokenRecord>> {
        self.load_tokens(
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"),
            [],
        )
    }

    fn revoke_token(&self, name_or_id: &str, now: DateTime<Utc>) -> StateResult<bool> {
        let changed = self
            .conn()
            .execute(
                "UPDATE api_tokens SET revoked_at = ?2
                 WHERE (name = ?1 OR id = ?1) AND revoked_at IS NULL",
                params![name_or_id, db_time(&now)],
            )
            .map_err(self.sql())?;
        Ok(changed > 0)
    }

    fn use_token(&self, hash: &str, now: DateTime<Utc>) -> StateResult<Option<TokenRecord>> {
        let found = self
            .load_tokens(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = ?1 AND revoked_at IS NULL"
                ),
                [hash],
            )?
            .pop();
        if let Some(token) = &found {
            self.conn()
                .execute(
                    "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
                    params![token.id, db_time(&now)],
                )
                .map_err(self.sql())?;
        }
        Ok(found)
    }

    fn last_stream_runs(&self) -> StateResult<Vec<(StreamRun, String)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {STREAM_RUN_COLUMNS}, run_id FROM (
                    SELECT *, ROW_NUMBER() OVER (
                        PARTITION BY domain, product, stream ORDER BY ended_at DESC, id DESC
                    ) AS n FROM stream_runs
                 ) WHERE n = 1 ORDER BY domain, product, stream"
            ))
            .map_err(self.sql())?;
        let raw = stmt
            .query_map([], |r| Ok((raw_stream_run(r)?, r.get::<_, String>(9)?)))
            .map_err(self.sql())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sql())?;
        raw.into_iter()
            .map(|(s, run_id)| Ok((self.stream_run(s)?, run_id)))
            .collect()
    }

    fn record_policy(
        &self,
        run_id: &str,
        key: &StreamKey,
        digest: &str,
        audit: &str,
    ) -> StateResult<()> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO run_policy (run_id, stream, digest, audit)
                 VALUES (?1, ?2, ?3, ?4)",
                params![run_id, key.to_string(), digest, audit],
            )
            .map(|_| ())
            .map_err(self.sql())
    }

    fn policy_audits(&self, run_id: &str) -> StateResult<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT stream, audit FROM run_policy WHERE run_id = ?1 ORDER BY stream")
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.sql())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sql())
    }

    fn mark_interrupted_runs(&self, now: DateTime<Utc>) -> StateResult<usize> {
        self.conn()
            .execute(
                "UPDATE runs SET status = ?1, ended_at = ?2,
                    error = COALESCE(error, 'the weft process stopped before the run finished')
                 WHERE status = ?3",
                params![
                    RunStatus::Interrupted.as_str(),
                    db_time(&now),
                    RunStatus::Running.as_str()
                ],
            )
            .map_err(self.sql())
    }
}
