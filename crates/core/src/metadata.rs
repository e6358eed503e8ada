//! [`ProductMetadata`]: what a product says about itself (owner, description, contract version,
//! column descriptions and tags), handed to the destination so it travels with the data: a
//! consumer who only sees the product store can still find who owns it and what a column means.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A product's metadata for one stream, by the column names the destination writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductMetadata {
    /// Who answers for the product.
    pub owner: String,
    /// What the product holds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The locked contract's `MAJOR.MINOR`, when the product has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_version: Option<String>,
    /// What one row of the stream is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_description: Option<String>,
    /// Per column (destination names): description and tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, ColumnMetadata>,
}

/// What a product says about one column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnMetadata {
    /// What the column holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Classification tags (`pii`, `financial`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl ProductMetadata {
    /// Nothing to record (tests and tools that open streams without a product).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Key-value pairs for stores with free-form metadata (Parquet footers): `weft.owner`,
    /// `weft.description`, `weft.contract_version`, `weft.stream_description` and
    /// `weft.columns` (JSON of [`ProductMetadata::columns`]); empty values are left out.
    pub fn key_values(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut put = |key: &str, value: &str| {
            if !value.is_empty() {
                out.push((format!("weft.{key}"), value.to_string()));
            }
        };
        put("owner", &self.owner);
        put("description", &self.description);
        put(
            "contract_version",
            self.contract_version.as_deref().unwrap_or(""),
        );
        put(
            "stream_description",
            self.stream_description.as_deref().unwrap_or(""),
        );
        if !self.columns.is_empty() {
            put(
                "columns",
                &serde_json::to_string(&self.columns).expect("JSON"),
            );
        }
        out
    }

    /// One human-readable line for a table comment: description, owner, contract version.
    pub fn table_comment(&self) -> String {
        let mut parts = Vec::new();
        for text in [self.stream_description.as_deref(), Some(&self.description)]
            .into_iter()
            .flatten()
        {
            if !text.is_empty() {
                parts.push(text.trim_end_matches('.').to_string() + ".");
            }
        }
        if !self.owner.is_empty() {
            parts.push(format!("Owner: {}.", self.owner));
        }
        if let Some(v) = &self.contract_version {
            parts.push(format!("Contract {v}."));
        }
        parts.join(" ")
    }

    /// A column comment: its description, then its tags (`[pii, financial]`); `None` when the
    /// product says nothing about the column.
    pub fn column_comment(&self, column: &str) -> Option<String> {
        let meta = self.columns.get(column)?;
        let mut text = meta.description.clone().unwrap_or_default();
        if !meta.tags.is_empty() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&format!("[{}]", meta.tags.join(", ")));
        }
        (!text.is_empty()).then_some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_key_values() {
        let mut meta = ProductMetadata {
            owner: "finance@example.com".into(),
            description: "Revenue.".into(),
            contract_version: Some("1.2".into()),
            stream_description: Some("One row per order".into()),
            columns: BTreeMap::new(),
        };
        meta.columns.insert(
            "email".into(),
            ColumnMetadata {
                description: Some("Contact".into()),
                tags: vec!["pii".into()],
            },
        );
        assert_eq!(
            meta.table_comment(),
            "One row per order. Revenue. Owner: finance@example.com. Contract 1.2."
        );
        assert_eq!(meta.column_comment("email").unwrap(), "Contact [pii]");
        assert_eq!(meta.column_comment("id"), None);
        let kv = meta.key_values();
        assert_eq!(kv[0], ("weft.owner".into(), "finance@example.com".into()));
        assert_eq!(
            kv.last().unwrap().1,
            r#"{"email":{"description":"Contact","tags":["pii"]}}"#
        );
    }
}
