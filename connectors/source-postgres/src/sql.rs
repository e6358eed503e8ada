//! Quoting identifiers and literals for the SQL weft builds (COPY cannot take parameters).

/// `"name"` with embedded quotes doubled: safe for any table or column name.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `schema.table`, both quoted.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// A string literal with quotes doubled. Sessions run with `standard_conforming_strings = on`
/// (set on connect), so backslashes are plain characters; NULs cannot occur in PostgreSQL text.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_hostile_names_and_values() {
        assert_eq!(quote_ident(r#"we"ird tab"#), r#""we""ird tab""#);
        assert_eq!(qualified("public", "a.b"), r#""public"."a.b""#);
        assert_eq!(quote_literal(r"it's \ fine"), r"'it''s \ fine'");
    }
}
