//! weft's engine: one sync run, from the selected products' sources through their mappers into
//! their product stores, with the checkpoint protocol of its `stream` module (commit → record → ack).
//!
//! - [`admin`]: `weft sync reset` and CDC lag, outside runs;
//! - [`contract`]: product contracts generated, enforced at planning, and product metadata;
//! - [`registry`]: the connectors a binary offers, by name;
//! - `plan`: configured streams matched against the source's catalog, before any row moves;
//! - [`mappers`]: select/drop/rename/hash/mask/filter on whole Arrow batches;
//! - `stream`: one stream's run and the checkpoint protocol;
//! - [`run`]: a whole run, streams concurrently and bounded, recorded in the run history;
//! - [`progress`]: live counters for progress displays;
//! - [`inflight`]: the run-wide limit on bytes of batches in flight, shared by its streams;
//! - [`validate`]: connector configs checked without connecting;
//! - [`locks`]: per-product OS file locks held while a product runs;
//! - [`failpoint`]: crash injection for tests.

pub mod admin;
pub mod contract;
pub mod error;
pub mod failpoint;
pub mod governance;
pub mod inflight;
pub mod locks;
pub mod mappers;
mod plan;
pub mod progress;
pub mod registry;
pub mod run;
mod stream;
pub mod validate;

pub use admin::{cdc_lags, reset, ResetReport};
pub use contract::{current_contract, product_contract};
pub use error::EngineError;
pub use governance::StreamAudit;
pub use inflight::{InFlightReport, DEFAULT_MAX_BYTES_IN_FLIGHT};
pub use locks::{lock_products, LockError, LockHolder, ProductLocks};
pub use mappers::{MapperChain, MapperError};
pub use progress::{Phase, StreamProgress};
pub use registry::Registry;
pub use run::{
    full_refresh_refusal, prepare, PreparedRun, RunOptions, RunReport, SetPosition, StreamReport,
};
pub use validate::{build_source, check_connectors, effective_streams, ConfigProblem};
