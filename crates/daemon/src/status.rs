//! What the daemon tells about its products, and how a trigger ends: the shapes of the HTTP
//! layer's [`weft_api::Control`] trait, which [`crate::Daemon`] implements.

pub use weft_api::{ControlError, ProductRef, ProductStatus, Scheduling, Triggered};
use weft_state::ProductKey;

/// `domain` + `product`, as the API names them.
pub(crate) fn product_ref(key: &ProductKey) -> ProductRef {
    ProductRef::new(key.domain.to_string(), key.product.to_string())
}
