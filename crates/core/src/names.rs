//! Validated names of domains, products and streams.
//!
//! These names become folder names in product stores and keys in the state store, so they are
//! checked once, here: a name is never empty, never `.` or `..`, and never holds a path
//! separator, a NUL or another control character. A name such as `../../x` is rejected before
//! it can reach a file system.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} name {name:?}: {reason}")]
pub struct InvalidName {
    /// Which kind of name (`domain`, `product`, `stream`).
    pub kind: &'static str,
    /// The name refused.
    pub name: String,
    /// Which rule it breaks.
    pub reason: &'static str,
}

fn validate(kind: &'static str, name: &str) -> Result<(), InvalidName> {
    let reject = |reason| {
        Err(InvalidName {
            kind,
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return reject("it is empty");
    }
    if name.len() > 255 {
        return reject("it is longer than 255 bytes");
    }
    if name == "." || name == ".." {
        return reject("`.` and `..` are not names");
    }
    if name.contains(['/', '\\']) {
        return reject("it contains a path separator (`/` or `\\`)");
    }
    if name.chars().any(char::is_control) {
        return reject("it contains a control character");
    }
    if name.starts_with('_') || name.starts_with('.') {
        // `_weft` and dot folders are reserved for weft's own metadata in product stores.
        return reject("names starting with `_` or `.` are reserved");
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            /// Validates `name`; see the module docs for the rules.
            pub fn new(name: impl Into<String>) -> Result<Self, InvalidName> {
                let name = name.into();
                validate($kind, &name)?;
                Ok(Self(name))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = InvalidName;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = InvalidName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
    };
}

name_type!(
    /// The name of a stream (a table, a file set, an API resource) within a source.
    StreamName,
    "stream"
);
name_type!(
    /// The name of a domain: the team that owns a set of data products.
    DomainName,
    "domain"
);
name_type!(
    /// The name of a data product within its domain.
    ProductName,
    "product"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["orders", "public.orders", "Orders 2024", "données", "a-b_c"] {
            assert_eq!(StreamName::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_names_that_could_escape_a_folder() {
        for bad in [
            "", ".", "..", "../../x", "a/b", "a\\b", "x\0y", "_weft", ".hidden", "a\nb",
        ] {
            let err = StreamName::new(bad).unwrap_err();
            assert_eq!(err.kind, "stream", "{bad:?}");
        }
        let err = StreamName::new("../../x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid stream name \"../../x\": it contains a path separator (`/` or `\\`)"
        );
    }

    #[test]
    fn deserialising_validates() {
        let err = serde_json::from_str::<DomainName>("\"..\"").unwrap_err();
        assert!(
            err.to_string().contains("`.` and `..` are not names"),
            "{err}"
        );
    }
}
