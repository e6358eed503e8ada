//! Placeholder: the connector is being built.

use weft_core::{ConnectorContext, ConnectorError, Source, SourceFactory, Result};

/// Builds `postgres` sources.
pub struct PostgresSourceFactory;

impl SourceFactory for PostgresSourceFactory {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn description(&self) -> &'static str {
        "PostgreSQL tables, views and materialized views: full refresh by parallel COPY ranges and incremental"
    }
    fn spec(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    fn build(
        &self,
        _config: &serde_json::Value,
        _ctx: &ConnectorContext,
    ) -> Result<Box<dyn Source>> {
        Err(ConnectorError::Unsupported("not built yet".into()))
    }
}
