//! From an Airbyte stream's JSON Schema to an Arrow schema: the rule lives in
//! [`weft_core::json_schema`] (shared with the declarative-manifest source, which receives the
//! same JSON records); this module re-exports it under its old path.

pub use weft_core::json_schema::*;
