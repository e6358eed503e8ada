//! Loading manifests end to end: `$ref` and `$parameters` as the CDK resolves them, implicit
//! types (0.29-style manifests), record filters and transformations, the spec validated, and
//! Python components refused up front with their path.

mod common;

use serde_json::json;
use weft_core::SyncMode;
use weft_testkit::http_mock::{MockServer, Reply};

use common::{build, column, read};

/// An old-style manifest: no `type`s, everything through `$ref` and `$parameters`.
const OLD_STYLE: &str = r##"
version: "0.29.0"
definitions:
  selector:
    extractor:
      field_path: ["{{ parameters['data_key'] }}"]
    record_filter:
      condition: "{{ record['status'] != 'deleted' }}"
  requester:
    url_base: "{{ config['base'] }}/v1"
    http_method: "GET"
    authenticator:
      type: BearerAuthenticator
      api_token: "{{ config['api_key'] }}"
    request_headers:
      Accept: application/json
  retriever:
    record_selector:
      $ref: "#/definitions/selector"
    requester:
      $ref: "#/definitions/requester"
  base_stream:
    retriever:
      $ref: "#/definitions/retriever"
  users_stream:
    $ref: "#/definitions/base_stream"
    $parameters:
      name: "users"
      primary_key: "id"
      path: "/users"
      data_key: "users"
    schema_loader:
      type: InlineSchemaLoader
      schema: "#/schemas/users"
    transformations:
      - type: AddFields
        fields:
          - path: [source]
            value: "{{ parameters.name }}-{{ config.region }}"
      - type: RemoveFields
        field_pointers: [[secret]]
streams:
  - "#/definitions/users_stream"
check:
  stream_names: ["users"]
schemas:
  users:
    type: object
    properties:
      id: {type: integer}
      status: {type: string}
      secret: {type: string}
      source: {type: string}
spec:
  connection_specification:
    type: object
    required: [api_key, base]
    properties:
      api_key: {type: string, airbyte_secret: true}
      base: {type: string}
      region: {type: string, default: eu}
"##;

#[tokio::test(flavor = "multi_thread")]
async fn refs_parameters_implicit_types_filters_and_transformations() {
    let server = MockServer::start(|req| {
        assert_eq!(req.path, "/v1/users");
        Reply::json(json!({"users": [
            {"id": 1, "status": "active", "secret": "x"},
            {"id": 2, "status": "deleted", "secret": "y"},
            {"id": 3, "status": "active", "extra": true},
        ]}))
    })
    .await;
    let b = build(OLD_STYLE, json!({"base": server.url(), "api_key": "k"})).unwrap();
    b.source.check().await.unwrap();
    server.clear();
    let catalog = b.source.discover().await.unwrap();
    let users = catalog.stream("users").unwrap();
    assert_eq!(users.primary_key, ["id"]);
    let fields: Vec<_> = users
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "id",
            "secret",
            "source",
            "status",
            "_airbyte_extra",
            "_airbyte_meta"
        ]
    );

    let r = read(&*b.source, "users", SyncMode::FullRefresh, None).await;
    assert_eq!(column(&r.rows, "id"), [json!(1), json!(3)]);
    // The spec's default for `region` was applied.
    assert_eq!(
        column(&r.rows, "source"),
        [json!("users-eu"), json!("users-eu")]
    );
    assert_eq!(column(&r.rows, "secret"), [json!(null), json!(null)]);
    assert_eq!(r.rows[1]["_airbyte_extra"], json!("{\"extra\":true}"));
    let seen = server.seen();
    assert_eq!(seen[0].header("authorization"), Some("Bearer k"));
    assert_eq!(seen[0].header("accept"), Some("application/json"));
}

#[test]
fn the_spec_is_validated_naming_fields_not_values() {
    let err = build(OLD_STYLE, json!({"api_key": 42})).err().unwrap();
    assert!(
        err.contains("lacks `base`, which the manifest's spec requires"),
        "{err}"
    );
    assert!(
        err.contains("`api_key` does not satisfy the spec's `type`"),
        "{err}"
    );
    assert!(!err.contains("42"), "{err}");
}

#[test]
fn python_components_and_unknown_types_are_refused_with_their_path() {
    let custom = OLD_STYLE.replace(
        "    record_filter:\n      condition: \"{{ record['status'] != 'deleted' }}\"",
        "    record_filter:\n      type: CustomRecordFilter\n      class_name: source_x.components.Filter",
    );
    let err = build(&custom, json!({"base": "http://x", "api_key": "k"}))
        .err()
        .unwrap();
    assert!(
        err.contains("streams[0] (users).retriever.record_selector.record_filter: CustomRecordFilter is the Python class `source_x.components.Filter`, which weft cannot run natively; run the connector's published package through the Airbyte-protocol source (`connector: airbyte`) instead"),
        "{err}"
    );
    let unknown = OLD_STYLE.replace("type: BearerAuthenticator", "type: JwtAuthenticator");
    let err = build(&unknown, json!({"base": "http://x", "api_key": "k"}))
        .err()
        .unwrap();
    assert!(err.contains("streams[0] (users).retriever.requester.authenticator: component type `JwtAuthenticator` is not supported"), "{err}");

    let cycle = OLD_STYLE.replace(
        "$ref: \"#/definitions/retriever\"",
        "$ref: \"#/definitions/base_stream\"",
    );
    let err = build(&cycle, json!({"base": "http://x", "api_key": "k"}))
        .err()
        .unwrap();
    assert!(err.contains("refers to itself (a cycle)"), "{err}");

    let missing = OLD_STYLE.replace(
        "schema: \"#/schemas/users\"",
        "schema: \"#/schemas/people\"",
    );
    let err = build(&missing, json!({"base": "http://x", "api_key": "k"}))
        .err()
        .unwrap();
    assert!(
        err.contains("the manifest refers to `#/schemas/people`, which it does not define"),
        "{err}"
    );
}
