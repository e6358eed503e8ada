//! JSON Schemas of the project files, for `weft config schema` and editors.

use crate::config::{DomainFile, ProductFile, ProjectFile};

/// The JSON Schema of a product file (`domains/<domain>/<product>.yaml`).
pub fn product_json_schema() -> serde_json::Value {
    weft_core::spec_of::<ProductFile>()
}

/// The JSON Schema of a domain file (`domains/<domain>/domain.yaml`).
pub fn domain_json_schema() -> serde_json::Value {
    weft_core::spec_of::<DomainFile>()
}

/// The JSON Schema of `weft.yaml`.
pub fn project_json_schema() -> serde_json::Value {
    weft_core::spec_of::<ProjectFile>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_schema_describes_fields_and_enums() {
        let schema = product_json_schema();
        let text = schema.to_string();
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["product"]["type"], "string");
        assert!(
            schema["properties"]["owner"]["description"]
                .as_str()
                .unwrap()
                .starts_with("Who answers"),
            "{text}"
        );
        for word in ["append_dedup", "full_refresh", "is_not_null", "keep_last"] {
            assert!(text.contains(word), "{word} missing from {text}");
        }
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            required,
            ["product", "domain", "owner", "source", "streams"]
        );
    }

    #[test]
    fn project_schema_has_defaults() {
        let schema = project_json_schema();
        assert_eq!(schema["required"], serde_json::json!(["version"]));
        assert!(schema.to_string().contains("max_concurrent_streams"));
    }
}
