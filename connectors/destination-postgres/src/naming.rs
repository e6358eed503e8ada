//! PostgreSQL names: quoting, the 63-byte identifier limit, and where a stream lands.
//!
//! A stream lands in `"<schema>"."<product>__<stream>"`; an overwrite run fills
//! `"<product>__<stream>__weft_next"` beside it. Product and stream names may hold dots, spaces,
//! quotes, upper case and unicode: every identifier is quoted, never folded. When
//! `<product>__<stream>` is longer than 52 bytes (so that the `__weft_next` twin still fits
//! PostgreSQL's 63-byte limit), it is cut at a character boundary to 43 bytes and suffixed with
//! `_` and 8 hex digits of a hash of the full name, so distinct long names stay distinct.

use weft_core::StreamTarget;

/// PostgreSQL's identifier limit (NAMEDATALEN - 1); longer names are silently truncated by
/// the server, so weft never sends one.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Suffix of the table an overwrite run fills before the swap.
pub const NEXT_SUFFIX: &str = "__weft_next";

/// The control table holding each stream's checkpoint, in every domain schema.
pub const CONTROL_TABLE: &str = "_weft_checkpoints";

/// `"name"`, with inner quotes doubled.
pub fn quote(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Why `name` cannot be a PostgreSQL identifier, if it cannot.
pub fn check_identifier(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an identifier must not be empty".into());
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!(
            "{name:?} is {} bytes long; PostgreSQL identifiers hold at most 63 bytes",
            name.len()
        ));
    }
    if name.contains('\0') {
        return Err(format!("{name:?} contains a NUL character"));
    }
    Ok(())
}

/// The tables of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub schema: String,
    /// The product table readers read.
    pub table: String,
    /// The table an overwrite run fills, swapped in by `finish`.
    pub next: String,
}

impl TableNames {
    /// Where `target` lands in `schema`.
    pub fn new(schema: &str, target: &StreamTarget) -> Self {
        let table = table_name(target.product.as_str(), target.stream.as_str());
        Self {
            schema: schema.to_string(),
            next: format!("{table}{NEXT_SUFFIX}"),
            table,
        }
    }

    /// `"schema"."table"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.table))
    }

    /// `"schema"."table__weft_next"`.
    pub fn qualified_next(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.next))
    }

    /// `"schema"."_weft_checkpoints"`.
    pub fn control(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(CONTROL_TABLE))
    }
}

/// `<product>__<stream>`, shortened with a hash when it would not fit (see the module docs).
pub fn table_name(product: &str, stream: &str) -> String {
    let full = format!("{product}__{stream}");
    let limit = MAX_IDENTIFIER_BYTES - NEXT_SUFFIX.len();
    if full.len() <= limit {
        return full;
    }
    let mut cut = limit - 9;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{:08x}", &full[..cut], fnv1a(full.as_bytes()) as u32)
}

/// FNV-1a: stable across Rust versions and platforms (unlike `DefaultHasher`), so a long
/// name maps to the same table forever.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_double_inner_quotes() {
        assert_eq!(quote("orders"), "\"orders\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote("Select"), "\"Select\"");
    }

    #[test]
    fn short_names_are_kept_long_ones_hashed_within_the_limit() {
        assert_eq!(table_name("shop", "public.orders"), "shop__public.orders");
        let long_stream = "é".repeat(40);
        let a = table_name("shop", &long_stream);
        let b = table_name("shop", &format!("{long_stream}x"));
        assert_ne!(a, b, "distinct long names stay distinct");
        for name in [&a, &b] {
            assert!(
                name.len() + NEXT_SUFFIX.len() <= MAX_IDENTIFIER_BYTES,
                "{name}"
            );
            assert!(name.starts_with("shop__é"), "{name}");
        }
        // Stable: the same input always gives the same table.
        assert_eq!(a, table_name("shop", &long_stream));
        assert!(a.len() <= 52, "{a}");
    }

    #[test]
    fn identifiers_over_63_bytes_are_refused() {
        assert!(check_identifier(&"a".repeat(63)).is_ok());
        let err = check_identifier(&"a".repeat(64)).unwrap_err();
        assert!(err.contains("at most 63 bytes"), "{err}");
    }
}
