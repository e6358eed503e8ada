//! The connectors a binary offers, looked up by the names product files use.

use weft_core::{ConnectorContext, Destination, DestinationFactory, Source, SourceFactory};

use crate::error::EngineError;

/// One explicit list of connectors. The `weft` binary fills it (one line per connector crate).
#[derive(Default)]
pub struct Registry {
    sources: Vec<Box<dyn SourceFactory>>,
    destinations: Vec<Box<dyn DestinationFactory>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_source(mut self, factory: impl SourceFactory + 'static) -> Self {
        self.sources.push(Box::new(factory));
        self
    }

    pub fn with_destination(mut self, factory: impl DestinationFactory + 'static) -> Self {
        self.destinations.push(Box::new(factory));
        self
    }

    pub fn sources(&self) -> impl Iterator<Item = &dyn SourceFactory> {
        self.sources.iter().map(|f| f.as_ref())
    }

    pub fn destinations(&self) -> impl Iterator<Item = &dyn DestinationFactory> {
        self.destinations.iter().map(|f| f.as_ref())
    }

    pub fn source(&self, name: &str) -> Result<&dyn SourceFactory, EngineError> {
        self.sources()
            .find(|f| f.name() == name)
            .ok_or_else(|| EngineError::UnknownConnector {
                kind: "source",
                name: name.to_string(),
                known: self
                    .sources()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub fn destination(&self, name: &str) -> Result<&dyn DestinationFactory, EngineError> {
        self.destinations()
            .find(|f| f.name() == name)
            .ok_or_else(|| EngineError::UnknownConnector {
                kind: "destination",
                name: name.to_string(),
                known: self
                    .destinations()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub fn build_source(
        &self,
        name: &str,
        config: &serde_json::Value,
        ctx: &ConnectorContext,
    ) -> Result<Box<dyn Source>, EngineError> {
        self.source(name)?
            .build(config, ctx)
            .map_err(|source| EngineError::Connector {
                what: format!("source `{name}`"),
                source,
            })
    }

    pub fn build_destination(
        &self,
        name: &str,
        config: &serde_json::Value,
        ctx: &ConnectorContext,
    ) -> Result<Box<dyn Destination>, EngineError> {
        self.destination(name)?
            .build(config, ctx)
            .map_err(|source| EngineError::Connector {
                what: format!("destination `{name}`"),
                source,
            })
    }
}
