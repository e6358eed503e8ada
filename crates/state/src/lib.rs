//! The state store: where weft remembers how far each stream got, and what each run did.
//!
//! [`StateStore`] is the contract the engine and CLI use; [`SqliteStateStore`] is the default
//! implementation (one SQLite file per project). Checkpoints are recorded with a compare-and-set
//! on a per-stream generation, so a stale worker can never overwrite newer progress.

mod error;
mod model;
mod sqlite;

pub use error::{StateError, StateResult};
pub use model::{
    NewToken, ProductKey, ProductLastRun, RunRecord, RunStart, RunStatus, StoredState,
    StreamHistory, StreamKey, StreamRun, TokenRecord, TokenScope, Trigger,
};
pub use sqlite::SqliteStateStore;

use chrono::{DateTime, Utc};
use weft_core::Checkpoint;

/// Per-stream checkpoints and run history.
///
/// Methods are synchronous: each is one short SQLite transaction. Callers on an async runtime
/// that cannot afford a few milliseconds of blocking may wrap calls in `spawn_blocking`.
pub trait StateStore: Send + Sync {
    /// The last recorded checkpoint of a stream, if any.
    fn get_state(&self, key: &StreamKey) -> StateResult<Option<StoredState>>;

    /// Records `checkpoint` for `key` if the stored generation is `expected_generation`
    /// (`None`: no state may exist yet) and returns the new generation. On a mismatch nothing
    /// is written and [`StateError::Conflict`] is returned.
    fn put_state(
        &self,
        key: &StreamKey,
        checkpoint: &Checkpoint,
        run_id: &str,
        expected_generation: Option<i64>,
    ) -> StateResult<i64>;

    /// Every stored stream state, ordered by key.
    fn list_states(&self) -> StateResult<Vec<(StreamKey, StoredState)>>;

    /// Forgets a stream's state (its next run starts from scratch). Returns whether one existed.
    fn delete_state(&self, key: &StreamKey) -> StateResult<bool>;

    /// Records the start of a run (status `running`).
    fn start_run(&self, run: &RunStart) -> StateResult<()>;

    /// Records how one stream of a run ended.
    fn finish_stream(&self, run_id: &str, stream: &StreamRun) -> StateResult<()>;

    /// Records how a run ended.
    fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        rows: u64,
        bytes: u64,
        error: Option<&str>,
        ended_at: DateTime<Utc>,
    ) -> StateResult<()>;

    /// The latest `limit` runs, newest first, each with its streams.
    fn runs(&self, limit: usize) -> StateResult<Vec<RunRecord>>;

    /// A product's runs, newest first: those older than run `before` (a page's last run id)
    /// if given, at most `limit`.
    fn product_runs(
        &self,
        domain: &str,
        product: &str,
        before: Option<&str>,
        limit: usize,
    ) -> StateResult<Vec<RunRecord>>;

    /// One run with its streams.
    fn run(&self, run_id: &str) -> StateResult<Option<RunRecord>>;

    /// A stream's latest run (with its run id) and when it last succeeded.
    fn stream_history(&self, key: &StreamKey) -> StateResult<StreamHistory>;

    /// Records an API token (its hash); a taken name is [`StateError::TokenNameTaken`].
    fn create_token(&self, token: &NewToken) -> StateResult<()>;

    /// Every API token, revoked ones too, oldest first.
    fn tokens(&self) -> StateResult<Vec<TokenRecord>>;

    /// Revokes the token of that name or id; returns whether a live one was found.
    fn revoke_token(&self, name_or_id: &str, now: DateTime<Utc>) -> StateResult<bool>;

    /// The live (unrevoked) token with this hash, recording that it was used `now`.
    fn use_token(&self, hash: &str, now: DateTime<Utc>) -> StateResult<Option<TokenRecord>>;

    /// The latest run of every stream, with its run id, ordered by key.
    fn last_stream_runs(&self) -> StateResult<Vec<(StreamRun, String)>>;

    /// Records what the governance policy did to one stream of a run (`audit` is JSON).
    fn record_policy(
        &self,
        run_id: &str,
        key: &StreamKey,
        digest: &str,
        audit: &str,
    ) -> StateResult<()>;

    /// The governance audits of a run: (stream key, audit JSON), by stream.
    fn policy_audits(&self, run_id: &str) -> StateResult<Vec<(String, String)>>;

    /// Marks runs still `running` as `interrupted` (their process died): call it under the
    /// project lock before starting a new run. Returns how many were marked.
    fn mark_interrupted_runs(&self, now: DateTime<Utc>) -> StateResult<usize>;

    /// Marks runs still `running` that cover any of `products` as `interrupted`, and runs
    /// recorded without products (older weft): call it holding those products' locks, which
    /// a live run of them would hold. Returns how many were marked.
    fn mark_interrupted_product_runs(
        &self,
        products: &[ProductKey],
        now: DateTime<Utc>,
    ) -> StateResult<usize>;

    /// Records a trigger that was not run (single-flight): a run with status `skipped`
    /// ending when it started, with `reason` as its error.
    fn record_skipped(&self, run: &RunStart, reason: &str) -> StateResult<()>;

    /// The latest run (skipped ones too) of each of `products` that has one, in the order
    /// given (one pass over the history; the daemon asks once, at start).
    fn product_last_runs(&self, products: &[ProductKey]) -> StateResult<Vec<ProductLastRun>>;
}
