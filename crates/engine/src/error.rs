//! Engine errors.

use weft_core::ConnectorError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown {kind} connector `{name}`; available: {known}")]
    UnknownConnector {
        kind: &'static str,
        name: String,
        known: String,
    },

    /// A connector failed; `what` names it and the stream where known.
    #[error("{what}: {source}")]
    Connector {
        what: String,
        #[source]
        source: ConnectorError,
    },

    /// The product file asks for something the source cannot give.
    #[error("{file}: stream `{stream}`: {message}")]
    Plan {
        file: String,
        stream: String,
        message: String,
    },

    /// A connector in the project files is unknown or misconfigured.
    #[error("{0}")]
    Config(crate::validate::ConfigProblem),

    /// The project's policy is invalid, or a product breaks one of its `error` rules.
    #[error("{0}")]
    Policy(String),

    #[error("state store: {0}")]
    State(#[from] weft_state::StateError),
}
