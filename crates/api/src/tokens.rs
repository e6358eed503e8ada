//! API tokens: their text, their hash, and who a request's token speaks for.
//!
//! A token is `weft_` and 64 hex digits (256 random bits from two v4 UUIDs' generator, the
//! OS's). Only its SHA-256 is stored; the text is printed once by `weft token create`.

use sha2::{Digest, Sha256};
use weft_state::TokenScope;

const PREFIX: &str = "weft_";
const HEX_LEN: usize = 64;

/// A new random token text.
pub fn generate() -> String {
    format!(
        "{PREFIX}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The stored form of a token: lower-case hex SHA-256 of its text.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `text` has the shape of a token (a cheap check before touching the store).
pub fn well_formed(text: &str) -> bool {
    text.strip_prefix(PREFIX)
        .is_some_and(|hex| hex.len() == HEX_LEN && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Who is asking: the scope of a live token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token_name: String,
    pub scope: TokenScope,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.scope == TokenScope::Admin
    }

    /// Whether this caller may see products of `domain` — the one place visibility is
    /// decided (products shared with a domain, read-only, are to be added here).
    pub fn sees_domain(&self, domain: &str) -> bool {
        match &self.scope {
            TokenScope::Admin => true,
            TokenScope::Domain(own) => own.as_str() == domain,
        }
    }

    /// Whether this caller may trigger, pause or resume products of `domain`.
    pub fn operates_domain(&self, domain: &str) -> bool {
        self.sees_domain(domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_well_formed_distinct_and_hashed() {
        let a = generate();
        let b = generate();
        assert!(well_formed(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
        assert!(!well_formed("weft_abc"));
        assert!(!well_formed(&a.replace("weft_", "wft_x")));
    }
}
