//! What the catalog says about a product's columns, from its configuration alone.

use crate::config::Mapper;
use crate::project::StreamConfig;

/// The transformations a source column gets on its way into the product store, in order, as
/// the catalog shows them (`renamed to customer_email`, `hash`, `dropped`). Empty when it
/// lands as it is. **The one place** the catalog asks this: transformations forced by the
/// project's policy are to be added here.
pub fn column_transformations(stream: &StreamConfig, column: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(columns) = &stream.columns {
        if !columns.iter().any(|c| c == column) {
            out.push("not read (`columns`)".to_string());
            return out;
        }
    }
    let mut name = column.to_string();
    for mapper in &stream.mappers {
        match mapper {
            Mapper::Select(keep) if !keep.contains(&name) => {
                out.push("dropped (select)".into());
                return out;
            }
            Mapper::Drop(gone) if gone.contains(&name) => {
                out.push("dropped".into());
                return out;
            }
            Mapper::Rename { from, to } if *from == name => {
                out.push(format!("renamed to {to}"));
                name = to.clone();
            }
            Mapper::Hash { column, .. } if *column == name => out.push("hash".into()),
            Mapper::Mask {
                column, keep_last, ..
            } if *column == name => out.push(format!("mask (keep last {keep_last})")),
            Mapper::Filter { column, op, value } if *column == name => {
                out.push(format!("rows filtered: {}", comparison(*op, value)))
            }
            Mapper::AnyOf(alternatives) => {
                for m in alternatives {
                    if let Mapper::Filter { column, op, value } = m {
                        if *column == name {
                            out.push(format!(
                                "rows filtered (any of): {}",
                                comparison(*op, value)
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// `eq spring`, `is_null`.
fn comparison(op: crate::FilterOp, value: &Option<serde_json::Value>) -> String {
    match value {
        Some(v) => format!("{op} {v}"),
        None => op.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::{StreamName, SyncMode, WriteMode};

    #[test]
    fn follows_the_column_through_its_mappers() {
        let stream = StreamConfig {
            name: StreamName::new("customers").unwrap(),
            mode: SyncMode::FullRefresh,
            write: WriteMode::Overwrite,
            cursor: None,
            primary_key: None,
            columns: None,
            mappers: vec![
                Mapper::Rename {
                    from: "email".into(),
                    to: "contact".into(),
                },
                Mapper::Hash {
                    column: "contact".into(),
                    salt: Some("s".into()),
                },
                Mapper::Drop(vec!["name".into()]),
            ],
            description: None,
            fields: Default::default(),
        };
        assert_eq!(
            column_transformations(&stream, "email"),
            ["renamed to contact", "hash"]
        );
        assert_eq!(column_transformations(&stream, "name"), ["dropped"]);
        assert!(column_transformations(&stream, "id").is_empty());
    }
}
