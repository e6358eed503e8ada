//! What weft runs natively, and the up-front refusal of anything else.
//!
//! Every component of the pre-processed manifest is checked before anything runs: a Python
//! component (`class_name`, `Custom*`) or a type weft does not implement is refused with its
//! path in the manifest, so a manifest never runs with a part silently skipped.

use serde_json::Value;

use super::ManifestError;

/// The component types weft implements.
pub const SUPPORTED: &[&str] = &[
    "DeclarativeSource",
    "DeclarativeStream",
    "SimpleRetriever",
    "HttpRequester",
    "RecordSelector",
    "DpathExtractor",
    "RecordFilter",
    "NoPagination",
    "DefaultPaginator",
    "CursorPagination",
    "PageIncrement",
    "OffsetIncrement",
    "RequestOption",
    "RequestPath",
    "NoAuth",
    "ApiKeyAuthenticator",
    "BearerAuthenticator",
    "BasicHttpAuthenticator",
    "OAuthAuthenticator",
    "SelectiveAuthenticator",
    "SessionTokenAuthenticator",
    "SessionTokenRequestApiKeyAuthenticator",
    // The types `SessionTokenAuthenticator.request_authentication` is written with.
    "ApiKey",
    "Bearer",
    "SessionTokenRequestBearerAuthenticator",
    "DefaultErrorHandler",
    "CompositeErrorHandler",
    "HttpResponseFilter",
    "ExponentialBackoffStrategy",
    "ConstantBackoffStrategy",
    "WaitTimeFromHeader",
    "InlineSchemaLoader",
    "JsonFileSchemaLoader",
    "ListPartitionRouter",
    "SubstreamPartitionRouter",
    "ParentStreamConfig",
    "DatetimeBasedCursor",
    "MinMaxDatetime",
    "AddFields",
    "AddedFieldDefinition",
    "RemoveFields",
    "CheckStream",
    "Spec",
    "JsonDecoder",
    "ConcurrencyLevel",
];

/// Fields that hold data (request options, JSON Schemas, free-form maps), never components.
const DATA_FIELDS: &[&str] = &[
    "request_parameters",
    "request_headers",
    "request_body_json",
    "request_body_data",
    "refresh_request_body",
    "refresh_request_headers",
    "schema",
    "connection_specification",
    "advanced_auth",
    "metadata",
    "values",
    "extra_fields",
    "value",
    "$parameters",
    "definitions",
    "schemas",
];

const JSON_SCHEMA_TYPES: &[&str] = &[
    "object", "string", "array", "integer", "number", "boolean", "null",
];

const ALTERNATIVE: &str = "run the connector's published package through the Airbyte-protocol source (`connector: airbyte`) instead";

/// Refuses the manifest if any component in it is not run natively.
pub fn check(manifest: &Value) -> Result<(), ManifestError> {
    for top in ["dynamic_streams", "api_budget"] {
        if manifest.get(top).is_some() {
            return Err(ManifestError::Unsupported {
                path: top.into(),
                message: format!(
                    "`{top}` is not supported by weft's manifest runner yet; {ALTERNATIVE}"
                ),
            });
        }
    }
    let Some(obj) = manifest.as_object() else {
        return Err(ManifestError::Invalid {
            path: "(root)".into(),
            message: "a manifest is a mapping (`version`, `streams`, `check`, …)".into(),
        });
    };
    for (key, value) in obj {
        if DATA_FIELDS.contains(&key.as_str()) {
            continue;
        }
        walk(value, key.clone())?;
    }
    Ok(())
}

fn walk(node: &Value, path: String) -> Result<(), ManifestError> {
    match node {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let name = item
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty());
                let item_path = match name {
                    Some(n) => format!("{path}[{i}] ({n})"),
                    None => format!("{path}[{i}]"),
                };
                walk(item, item_path)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            if let Some(ty) = map.get("type").and_then(Value::as_str) {
                if JSON_SCHEMA_TYPES.contains(&ty) {
                    return Ok(());
                }
                if let Some(class) = map.get("class_name").and_then(Value::as_str) {
                    return Err(ManifestError::Unsupported {
                        path,
                        message: format!(
                            "{ty} is the Python class `{class}`, which weft cannot run natively; {ALTERNATIVE}"
                        ),
                    });
                }
                if !SUPPORTED.contains(&ty) {
                    return Err(ManifestError::Unsupported {
                        path,
                        message: format!(
                            "component type `{ty}` is not supported by weft's manifest runner (see docs/manifest.md); {ALTERNATIVE}"
                        ),
                    });
                }
            } else if let Some(class) = map.get("class_name").and_then(Value::as_str) {
                return Err(ManifestError::Unsupported {
                    path,
                    message: format!(
                        "the Python class `{class}` cannot run natively; {ALTERNATIVE}"
                    ),
                });
            }
            for (key, value) in map {
                if DATA_FIELDS.contains(&key.as_str()) {
                    continue;
                }
                walk(value, format!("{path}.{key}"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::components::propagate;
    use serde_json::json;

    #[test]
    fn custom_components_are_refused_with_their_path() {
        let m = propagate(json!({
            "streams": [{"name": "users", "retriever": {
                "requester": {"url_base": "https://a", "request_parameters": {"type": "issue"}},
                "record_selector": {"extractor": {"class_name": "source_x.components.Extractor"}}
            }}]
        }));
        let err = check(&m).unwrap_err().to_string();
        assert_eq!(
            err,
            "streams[0] (users).retriever.record_selector.extractor: CustomRecordExtractor is the Python class \
             `source_x.components.Extractor`, which weft cannot run natively; run the connector's published \
             package through the Airbyte-protocol source (`connector: airbyte`) instead"
        );
    }

    #[test]
    fn unknown_types_are_refused() {
        let m =
            propagate(json!({"streams": [{"name": "s", "retriever": {"type": "AsyncRetriever"}}]}));
        let err = check(&m).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "streams[0] (s).retriever: component type `AsyncRetriever` is not supported"
            ),
            "{err}"
        );
    }
}
