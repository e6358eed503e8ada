//! `weft-api`: the HTTP layer of `weft daemon` — the JSON API under `/api/v1`, bearer-token
//! authentication, the OpenAPI document, the embedded catalog page and Prometheus metrics.
//!
//! It reaches the scheduler only through [`Control`]; the engine knows nothing of HTTP.

mod control;

pub use control::{Control, ControlError, ProductRef, ProductStatus, Triggered};
