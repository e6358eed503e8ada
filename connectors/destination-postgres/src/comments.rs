//! The product's metadata as PostgreSQL comments: `COMMENT ON TABLE` (description, owner,
//! contract version) and `COMMENT ON COLUMN` (description and tags), so someone who only sees
//! the database finds who owns a table and what a column means (`obj_description`,
//! `col_description`, psql's `\d+`).

use weft_core::ProductMetadata;

use crate::changes::literal;
use crate::naming::quote;

/// The statements commenting `table` (already qualified and quoted) and those of `columns`
/// the metadata describes; empty when the product says nothing. Identifiers are quoted and
/// values are SQL literals, so neither can break out of the statement.
pub fn comment_sql(table: &str, columns: &[String], metadata: &ProductMetadata) -> String {
    if metadata.is_empty() {
        return String::new();
    }
    let mut sql = format!(
        "COMMENT ON TABLE {table} IS {};",
        literal(&metadata.table_comment())
    );
    for column in columns {
        if let Some(text) = metadata.column_comment(column) {
            sql.push_str(&format!(
                " COMMENT ON COLUMN {table}.{} IS {};",
                quote(column),
                literal(&text)
            ));
        }
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers_and_escapes_values() {
        let mut meta = ProductMetadata {
            owner: "o'brien@example.com".into(),
            ..Default::default()
        };
        meta.columns.insert(
            "we\"ird".into(),
            weft_core::ColumnMetadata {
                description: Some("it's \\ here".into()),
                tags: vec![],
            },
        );
        let sql = comment_sql("\"s\".\"t\"", &["we\"ird".into(), "id".into()], &meta);
        assert_eq!(
            sql,
            "COMMENT ON TABLE \"s\".\"t\" IS 'Owner: o''brien@example.com.'; COMMENT ON COLUMN \"s\".\"t\".\"we\"\"ird\" IS E'it''s \\\\ here';"
        );
    }
}
