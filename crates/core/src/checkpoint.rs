//! Checkpoints: positions in a stream such that everything before them has been yielded.

use serde::{Deserialize, Serialize};

/// A source-defined position, opaque to the engine and destinations.
///
/// A source yields a checkpoint after the batches it covers. Given back to [`crate::Source::read`]
/// as state, it makes the source resume right after those batches. Its content is the source's
/// business (a cursor value, a key range, an LSN, a page token), but it must never hold a secret:
/// it is stored in the state store and in product stores.
///
/// ```
/// use weft_core::Checkpoint;
///
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct State { cursor: String, last_id: i64 }
///
/// let cp = Checkpoint::encode(&State { cursor: "2024-05-01".into(), last_id: 42 });
/// assert_eq!(cp.position()["last_id"], 42);
/// let back: State = cp.decode().unwrap();
/// assert_eq!(back.last_id, 42);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Checkpoint(pub serde_json::Value);

impl Checkpoint {
    /// A checkpoint at `position`, a JSON value of the source's design.
    pub fn new(position: serde_json::Value) -> Self {
        Self(position)
    }

    /// The position, as the source encoded it.
    pub fn position(&self) -> &serde_json::Value {
        &self.0
    }

    /// Decodes the position into a source's own state type.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.0)
    }

    /// Encodes a source's own state type.
    pub fn encode<T: Serialize>(state: &T) -> Self {
        Self(serde_json::to_value(state).expect("checkpoint state serialises to JSON"))
    }
}
