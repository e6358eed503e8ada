//! The product's metadata in every Parquet file: as footer key-value pairs (`weft.owner`,
//! `weft.description`, `weft.contract_version`, `weft.stream_description`, `weft.columns`),
//! and inside the embedded Arrow schema, where Arrow readers look (pyarrow's
//! `schema.metadata`, and per field `weft.description` / `weft.tags`).
//!
//! The writer properties carry the pairs (so every file a stream writes, compactions
//! included, gets them); [`file_schema`] derives the decorated Arrow schema from them.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use weft_core::{ColumnMetadata, ProductMetadata};

/// The writer properties with the product's pairs added to the footer's key-value metadata.
pub(crate) fn with_product_metadata(
    props: WriterProperties,
    metadata: &ProductMetadata,
) -> WriterProperties {
    let pairs = metadata.key_values();
    if pairs.is_empty() {
        return props;
    }
    let mut kv = props.key_value_metadata().cloned().unwrap_or_default();
    kv.extend(pairs.into_iter().map(|(k, v)| KeyValue::new(k, v)));
    props
        .into_builder()
        .set_key_value_metadata(Some(kv))
        .build()
}

/// The Arrow schema a file is written with: `schema` plus the product's pairs (from `props`)
/// as schema metadata, and each described column's description and tags as field metadata.
/// Only the embedded schema changes: batches keep theirs.
pub(crate) fn file_schema(schema: &SchemaRef, props: &WriterProperties) -> SchemaRef {
    let pairs: Vec<&KeyValue> = props
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter(|kv| kv.key.starts_with("weft.") && kv.value.is_some())
        .collect();
    if pairs.is_empty() {
        return schema.clone();
    }
    let columns: BTreeMap<String, ColumnMetadata> = pairs
        .iter()
        .find(|kv| kv.key == "weft.columns")
        .and_then(|kv| serde_json::from_str(kv.value.as_deref()?).ok())
        .unwrap_or_default();
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| {
            let Some(meta) = columns.get(f.name()) else {
                return f.as_ref().clone();
            };
            let mut m = f.metadata().clone();
            if let Some(d) = &meta.description {
                m.insert("weft.description", d.clone());
            }
            if !meta.tags.is_empty() {
                m.insert("weft.tags", meta.tags.join(","));
            }
            f.as_ref().clone().with_metadata(m)
        })
        .collect();
    let mut metadata = schema.metadata().clone();
    for kv in pairs {
        metadata.insert(kv.key.clone(), kv.value.clone().unwrap_or_default());
    }
    Arc::new(Schema::new_with_metadata(fields, metadata))
}
