//! Placeholder: the connector is being built.

use weft_core::{ConnectorContext, ConnectorError, Source, SourceFactory, Result};

/// Builds `airbyte` sources.
pub struct AirbyteSourceFactory;

impl SourceFactory for AirbyteSourceFactory {
    fn name(&self) -> &'static str {
        "airbyte"
    }
    fn description(&self) -> &'static str {
        "any Airbyte-protocol source run as a subprocess (PyPI packages in their own virtualenv)"
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
