//! List partitions and substreams against a loopback mock.

mod common;

use serde_json::json;
use weft_core::SyncMode;
use weft_testkit::http_mock::{MockServer, Reply};

use common::{build, column, read};

const MANIFEST: &str = r##"
version: 6.0.0
check: {stream_names: [projects]}
definitions:
  requester:
    type: HttpRequester
    url_base: "{{ config.base }}"
  projects:
    type: DeclarativeStream
    name: projects
    primary_key: id
    $parameters: {path: /projects}
    retriever:
      type: SimpleRetriever
      requester: {$ref: "#/definitions/requester"}
      record_selector: {extractor: {field_path: [projects]}}
      partition_router:
        type: ListPartitionRouter
        cursor_field: region
        values: "{{ config.regions }}"
        request_option: {type: RequestOption, inject_into: request_parameter, field_name: region}
    schema_loader:
      type: InlineSchemaLoader
      schema: {type: object, properties: {id: {type: string}, region: {type: string}}}
streams:
  - "#/definitions/projects"
  - type: DeclarativeStream
    name: issues
    primary_key: id
    retriever:
      type: SimpleRetriever
      requester:
        $ref: "#/definitions/requester"
        path: "/projects/{{ stream_partition.project_id }}/issues"
      record_selector: {extractor: {field_path: []}}
      partition_router:
        type: SubstreamPartitionRouter
        parent_stream_configs:
          - stream: "#/definitions/projects"
            parent_key: id
            partition_field: project_id
    transformations:
      - type: AddFields
        fields:
          - path: [project]
            value: "{{ stream_partition.project_id }}"
          - path: [parent_region]
            value: "{{ stream_slice.parent_slice.region }}"
    schema_loader:
      type: InlineSchemaLoader
      schema: {type: object, properties: {id: {type: integer}, project: {type: string}, parent_region: {type: string}}}
"##;

async fn server() -> MockServer {
    MockServer::start(|req| {
        if req.path == "/projects" {
            let region = req.param("region").unwrap_or("?").to_string();
            return Reply::json(json!({"projects": [{"id": format!("{region}-a"), "region": region}, {"id": format!("{region}-b"), "region": region}]}));
        }
        let project = req.path.split('/').nth(2).unwrap().to_string();
        let n = if project.ends_with('a') { 1 } else { 2 };
        Reply::json(json!((0..n).map(|i| json!({"id": i})).collect::<Vec<_>>()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn list_partitions_are_one_slice_each_with_the_value_injected() {
    let server = server().await;
    let b = build(
        MANIFEST,
        json!({"base": server.url(), "regions": ["eu", "us"]}),
    )
    .unwrap();
    let r = read(&*b.source, "projects", SyncMode::FullRefresh, None).await;
    assert_eq!(
        column(&r.rows, "id"),
        [json!("eu-a"), json!("eu-b"), json!("us-a"), json!("us-b")]
    );
    let regions: Vec<_> = server
        .seen()
        .iter()
        .map(|s| s.param("region").unwrap().to_string())
        .collect();
    assert_eq!(regions, ["eu", "us"]);
    // A checkpoint per completed slice.
    assert_eq!(
        r.checkpoints,
        [
            json!({"complete": false, "slices_done": 1, "last_slice": {"region": "eu"}}),
            json!({"complete": true, "slices_done": 2, "last_slice": {"region": "us"}}),
        ]
    );
    assert_eq!(r.rows_at_checkpoint, [2, 4]);
}

#[tokio::test(flavor = "multi_thread")]
async fn substreams_read_the_parent_and_request_per_parent_record() {
    let server = server().await;
    let b = build(
        MANIFEST,
        json!({"base": server.url(), "regions": ["eu", "us"]}),
    )
    .unwrap();
    let r = read(&*b.source, "issues", SyncMode::FullRefresh, None).await;
    let got: Vec<(i64, String, String)> = r
        .rows
        .iter()
        .map(|row| {
            (
                row["id"].as_i64().unwrap(),
                row["project"].as_str().unwrap().into(),
                row["parent_region"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(i64, String, String)> = [
        (0, "eu-a", "eu"),
        (0, "eu-b", "eu"),
        (1, "eu-b", "eu"),
        (0, "us-a", "us"),
        (0, "us-b", "us"),
        (1, "us-b", "us"),
    ]
    .iter()
    .map(|(i, p, g)| (*i, p.to_string(), g.to_string()))
    .collect();
    assert_eq!(got, want);
    let paths: Vec<String> = server.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/projects",
            "/projects",
            "/projects/eu-a/issues",
            "/projects/eu-b/issues",
            "/projects/us-a/issues",
            "/projects/us-b/issues"
        ]
    );
    // A resumed read skips the slices already done.
    server.clear();
    let resumed = read(
        &*b.source,
        "issues",
        SyncMode::FullRefresh,
        Some(r.checkpoints[1].clone()),
    )
    .await;
    assert_eq!(resumed.rows.len(), 3);
    let paths: Vec<String> = server.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/projects",
            "/projects",
            "/projects/us-a/issues",
            "/projects/us-b/issues"
        ]
    );
}
