//! Default component types and `$parameters`, propagated as the CDK's
//! `ManifestComponentTransformer` does.
//!
//! A mapping without `type` takes it from the table of defaults keyed by
//! `<ParentType>.<field>` (or, when it has a Python `class_name`, the `Custom*` type of that
//! field). A typed component's `$parameters` are merged over its parent's, each parameter is
//! copied onto the component where its own value is missing or falsy (Python's
//! `own or parameter`), and the merged parameters flow on to its children — except the one named
//! like the field being descended into. Mappings without a type, and JSON Schema objects
//! (`type: object`), are left as written.

use serde_json::{Map, Value};

const PARAMETERS: &str = "$parameters";

/// The CDK's `DEFAULT_MODEL_TYPES`.
const DEFAULT_TYPES: &[(&str, &str)] = &[
    (
        "CompositeErrorHandler.error_handlers",
        "DefaultErrorHandler",
    ),
    ("CursorPagination.decoder", "JsonDecoder"),
    ("DatetimeBasedCursor.end_datetime", "MinMaxDatetime"),
    ("DatetimeBasedCursor.end_time_option", "RequestOption"),
    ("DatetimeBasedCursor.start_datetime", "MinMaxDatetime"),
    ("DatetimeBasedCursor.start_time_option", "RequestOption"),
    ("CustomIncrementalSync.end_datetime", "MinMaxDatetime"),
    ("CustomIncrementalSync.end_time_option", "RequestOption"),
    ("CustomIncrementalSync.start_datetime", "MinMaxDatetime"),
    ("CustomIncrementalSync.start_time_option", "RequestOption"),
    ("DeclarativeSource.check", "CheckStream"),
    ("DeclarativeSource.spec", "Spec"),
    ("DeclarativeSource.streams", "DeclarativeStream"),
    ("DeclarativeStream.retriever", "SimpleRetriever"),
    ("DeclarativeStream.schema_loader", "JsonFileSchemaLoader"),
    (
        "DynamicDeclarativeStream.stream_template",
        "DeclarativeStream",
    ),
    (
        "DynamicDeclarativeStream.components_resolver",
        "HttpComponentsResolver",
    ),
    ("HttpComponentsResolver.retriever", "SimpleRetriever"),
    (
        "HttpComponentsResolver.components_mapping",
        "ComponentMappingDefinition",
    ),
    ("ConfigComponentsResolver.stream_config", "StreamConfig"),
    (
        "ConfigComponentsResolver.components_mapping",
        "ComponentMappingDefinition",
    ),
    ("DefaultErrorHandler.response_filters", "HttpResponseFilter"),
    ("DefaultPaginator.decoder", "JsonDecoder"),
    ("DefaultPaginator.page_size_option", "RequestOption"),
    ("DpathExtractor.decoder", "JsonDecoder"),
    ("HttpRequester.error_handler", "DefaultErrorHandler"),
    ("ListPartitionRouter.request_option", "RequestOption"),
    ("ParentStreamConfig.request_option", "RequestOption"),
    ("ParentStreamConfig.stream", "DeclarativeStream"),
    ("RecordSelector.extractor", "DpathExtractor"),
    ("RecordSelector.record_filter", "RecordFilter"),
    ("SimpleRetriever.paginator", "NoPagination"),
    ("SimpleRetriever.record_selector", "RecordSelector"),
    ("SimpleRetriever.requester", "HttpRequester"),
    (
        "SubstreamPartitionRouter.parent_stream_configs",
        "ParentStreamConfig",
    ),
    ("AddFields.fields", "AddedFieldDefinition"),
    (
        "CustomPartitionRouter.parent_stream_configs",
        "ParentStreamConfig",
    ),
    ("DynamicSchemaLoader.retriever", "SimpleRetriever"),
    (
        "DynamicSchemaLoader.schema_type_identifier",
        "SchemaTypeIdentifier",
    ),
    ("SchemaTypeIdentifier.types_map", "TypesMap"),
    ("PropertiesFromEndpoint.retriever", "SimpleRetriever"),
    ("QueryProperties.property_chunking", "PropertyChunking"),
];

/// The CDK's `CUSTOM_COMPONENTS_MAPPING`: the type of an untyped component with `class_name`.
const CUSTOM_TYPES: &[(&str, &str)] = &[
    (
        "CompositeErrorHandler.backoff_strategies",
        "CustomBackoffStrategy",
    ),
    ("DeclarativeStream.retriever", "CustomRetriever"),
    ("DeclarativeStream.transformations", "CustomTransformation"),
    (
        "DefaultErrorHandler.backoff_strategies",
        "CustomBackoffStrategy",
    ),
    (
        "DefaultPaginator.pagination_strategy",
        "CustomPaginationStrategy",
    ),
    ("HttpRequester.authenticator", "CustomAuthenticator"),
    ("HttpRequester.error_handler", "CustomErrorHandler"),
    (
        "HttpRequester.request_options_provider",
        "CustomRequestOptionsProvider",
    ),
    ("RecordSelector.extractor", "CustomRecordExtractor"),
    ("SimpleRetriever.partition_router", "CustomPartitionRouter"),
];

fn table(table: &[(&str, &'static str)], key: &str) -> Option<&'static str> {
    table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Propagates types and parameters through the whole (reference-resolved) manifest.
pub fn propagate(manifest: Value) -> Value {
    match manifest {
        Value::Object(mut map) => {
            map.entry("type")
                .or_insert_with(|| Value::String("DeclarativeSource".into()));
            component("", map, &Map::new())
        }
        other => other,
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

fn component(
    parent_field: &str,
    mut map: Map<String, Value>,
    parent_params: &Map<String, Value>,
) -> Value {
    if !map.contains_key("type") {
        let found = if map.contains_key("class_name") {
            table(CUSTOM_TYPES, parent_field)
        } else {
            table(DEFAULT_TYPES, parent_field)
        };
        if let Some(t) = found {
            map.insert("type".into(), Value::String(t.into()));
        }
    }
    let is_schema = matches!(map.get("type"), Some(Value::String(t)) if t == "object")
        || map.get("type") == Some(&serde_json::json!(["null", "object"]));
    if !map.contains_key("type") || is_schema {
        return Value::Object(map);
    }
    let mut params = parent_params.clone();
    if let Some(Value::Object(own)) = map.remove(PARAMETERS) {
        params.extend(own);
    }
    for (k, v) in &params {
        if !truthy(map.get(k)) {
            map.insert(k.clone(), v.clone());
        }
    }
    let ty = map
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let fields: Vec<String> = map.keys().cloned().collect();
    for field in fields {
        let child_key = format!("{ty}.{field}");
        let excluded = params.remove(&field);
        let value = map.remove(&field).expect("key listed above");
        let value = match value {
            Value::Object(child) => component(&child_key, child, &params),
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|item| match item {
                        Value::Object(child) => component(&child_key, child, &params),
                        other => other,
                    })
                    .collect(),
            ),
            other => other,
        };
        map.insert(field.clone(), value);
        if let Some(excluded) = excluded {
            params.insert(field, excluded);
        }
    }
    if !params.is_empty() {
        map.insert(PARAMETERS.into(), Value::Object(params));
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_by_parent_field_and_parameters_flow_down() {
        let m = json!({
            "version": "0.29.0",
            "streams": [{
                "$parameters": {"name": "users", "path": "/users", "primary_key": "id"},
                "retriever": {
                    "requester": {"url_base": "https://a", "path": ""},
                    "record_selector": {"extractor": {"field_path": ["data"]}},
                    "paginator": {"type": "DefaultPaginator", "pagination_strategy": {"class_name": "x.Y"}}
                },
                "schema_loader": {"type": "InlineSchemaLoader", "schema": {"type": "object", "properties": {"path": {"type": "string"}}}}
            }]
        });
        let out = propagate(m);
        let stream = &out["streams"][0];
        assert_eq!(out["type"], "DeclarativeSource");
        assert_eq!(stream["type"], "DeclarativeStream");
        assert_eq!(stream["name"], "users");
        assert_eq!(stream["primary_key"], "id");
        let req = &stream["retriever"]["requester"];
        assert_eq!(req["type"], "HttpRequester");
        // An empty own value is falsy: the parameter fills it.
        assert_eq!(req["path"], "/users");
        assert_eq!(req["$parameters"]["name"], "users");
        assert_eq!(
            stream["retriever"]["record_selector"]["extractor"]["type"],
            "DpathExtractor"
        );
        assert_eq!(
            stream["retriever"]["paginator"]["pagination_strategy"]["type"],
            "CustomPaginationStrategy"
        );
        // JSON Schemas are not components: no parameters copied into them.
        assert!(stream["schema_loader"]["schema"].get("name").is_none());
        assert!(stream["schema_loader"]["schema"]
            .get("$parameters")
            .is_none());
    }

    #[test]
    fn child_parameters_override_and_the_descended_field_is_excluded() {
        let m = json!({
            "streams": [{
                "$parameters": {"name": "a", "retriever": "x"},
                "retriever": {"$parameters": {"name": "b"}, "requester": {"path": "p"}, "record_selector": {}}
            }]
        });
        let out = propagate(m);
        let r = &out["streams"][0]["retriever"];
        assert_eq!(out["streams"][0]["name"], "a");
        assert_eq!(r["name"], "b");
        assert_eq!(r["requester"]["name"], "b");
        assert!(r.get("retriever").is_none(), "{r}");
    }
}
