//! Federated governance: the platform team's central policy (`governance.yaml` at the project
//! root), the rules domains add in their `domain.yaml`, and what they mean for each product.
//!
//! - [`policy`]: the file format and loading ([`Policy::load`]), with file:line errors.
//! - [`check`]: evaluating products against the rules ([`Policy::check_product`]) and the
//!   transformations the rules force on columns ([`Policy::forced`],
//!   [`Policy::forced_when_shared`]).
//! - [`crypto`]: the keyed hash (HMAC-SHA-256) and AES-256-GCM encryption those
//!   transformations use, and decryption for key holders.

pub mod check;
pub mod crypto;
mod error;
pub mod policy;

pub use check::{Forced, ForcedAt, Violation};
pub use crypto::Keys;
pub use error::PolicyError;
pub use policy::{
    Action, MetaField, NameTarget, Policy, Rule, RuleKind, Scope, Severity, POLICY_FILE,
};
