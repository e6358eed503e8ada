//! Placeholder: the connector is being built.

use weft_core::{ConnectorContext, ConnectorError, Destination, DestinationFactory, Result};

/// Builds `postgres` destinations.
pub struct PostgresDestinationFactory;

impl DestinationFactory for PostgresDestinationFactory {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn description(&self) -> &'static str {
        "a domain's product store in PostgreSQL: binary COPY, atomic overwrite, upsert dedup"
    }
    fn spec(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    fn build(
        &self,
        _config: &serde_json::Value,
        _ctx: &ConnectorContext,
    ) -> Result<Box<dyn Destination>> {
        Err(ConnectorError::Unsupported("not built yet".into()))
    }
}
