//! Every pagination style against a loopback mock: the exact requests sent and the records read.

mod common;

use serde_json::json;
use weft_core::SyncMode;
use weft_testkit::http_mock::{MockServer, Reply};

use common::{build, column, read};

fn manifest(paginator: &str, extractor: &str) -> String {
    format!(
        r##"
version: 6.0.0
type: DeclarativeSource
check:
  stream_names: [items]
definitions:
  requester:
    type: HttpRequester
    url_base: "{{{{ config.base }}}}/api/v1"
    http_method: GET
streams:
  - type: DeclarativeStream
    name: items
    primary_key: id
    retriever:
      type: SimpleRetriever
      requester:
        $ref: "#/definitions/requester"
        path: /items
        request_parameters:
          kind: "{{{{ config.kind }}}}"
          unset: "{{{{ config.nothing }}}}"
      record_selector:
        extractor:
          field_path: {extractor}
      paginator:
{paginator}
    schema_loader:
      type: InlineSchemaLoader
      schema:
        type: object
        properties:
          id: {{type: integer}}
"##
    )
}

fn ids(rows: &[serde_json::Value]) -> Vec<i64> {
    column(rows, "id")
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn cursor_pagination_with_next_url_as_request_path() {
    let server = MockServer::start(|req| {
        let page: u32 = req.param("page").unwrap_or("1").parse().unwrap();
        let next = if page < 3 {
            json!(format!(
                "http://{}/v2/items?page={}",
                req.header("host").unwrap(),
                page + 1
            ))
        } else {
            json!(null)
        };
        Reply::json(json!({"data": [{"id": page * 10}, {"id": page * 10 + 1}], "next": next}))
    })
    .await;
    let paginator = r#"        type: DefaultPaginator
        page_token_option:
          type: RequestPath
        pagination_strategy:
          type: CursorPagination
          cursor_value: "{{ response.next }}"
          stop_condition: "{{ response.next is none }}""#;
    let b = build(
        &manifest(paginator, "[data]"),
        json!({"base": server.url(), "kind": "all"}),
    )
    .unwrap();
    let r = read(&*b.source, "items", SyncMode::FullRefresh, None).await;
    assert_eq!(ids(&r.rows), [10, 11, 20, 21, 30, 31]);
    let seen = server.seen();
    let urls: Vec<String> = seen
        .iter()
        .map(|s| format!("{}?{:?}", s.path, s.query))
        .collect();
    assert_eq!(
        urls,
        [
            r#"/api/v1/items?[("kind", "all")]"#,
            // The next URL replaces url_base and path; the requester's parameters still go along.
            r#"/v2/items?[("page", "2"), ("kind", "all")]"#,
            r#"/v2/items?[("page", "3"), ("kind", "all")]"#,
        ]
    );
    // One slice: one final checkpoint.
    assert_eq!(
        r.checkpoints,
        [json!({"complete": true, "slices_done": 1, "last_slice": {}})]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cursor_pagination_from_link_headers_into_a_parameter() {
    let server = MockServer::start(|req| {
        let cursor = req.param("cursor").unwrap_or("a").to_string();
        let (records, next) = match cursor.as_str() {
            "a" => (json!([{"id": 1}]), Some("b")),
            "b" => (json!([{"id": 2}]), Some("c")),
            _ => (json!([{"id": 3}]), None),
        };
        let mut reply = Reply::json(records);
        let host = req.header("host").unwrap();
        let link = match next {
            Some(n) => format!(r#"<http://{host}/api/v1/items?cursor={n}&per_page=1>; rel="next", <http://{host}/api/v1/items?cursor=a>; rel="first""#),
            None => format!(r#"<http://{host}/api/v1/items?cursor=a>; rel="first""#),
        };
        reply = reply.with_header("link", &link);
        reply
    })
    .await;
    let paginator = r#"        type: DefaultPaginator
        page_token_option:
          type: RequestOption
          inject_into: request_parameter
          field_name: cursor
        page_size_option:
          type: RequestOption
          inject_into: request_parameter
          field_name: per_page
        pagination_strategy:
          type: CursorPagination
          page_size: 1
          cursor_value: "{{ headers.link.next.cursor }}"
          stop_condition: "{{ 'next' not in headers.link }}""#;
    let b = build(
        &manifest(paginator, "[]"),
        json!({"base": server.url(), "kind": "x"}),
    )
    .unwrap();
    let r = read(&*b.source, "items", SyncMode::FullRefresh, None).await;
    assert_eq!(ids(&r.rows), [1, 2, 3]);
    let cursors: Vec<(Option<String>, Option<String>)> = server
        .seen()
        .iter()
        .map(|s| {
            (
                s.param("cursor").map(String::from),
                s.param("per_page").map(String::from),
            )
        })
        .collect();
    assert_eq!(
        cursors,
        [
            (None, Some("1".into())),
            (Some("b".into()), Some("1".into())),
            (Some("c".into()), Some("1".into()))
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn page_increment_stops_at_a_short_page() {
    let server = MockServer::start(|req| {
        let page: i64 = req.param("page").unwrap_or("1").parse().unwrap();
        let n = if page < 3 { 2 } else { 1 };
        Reply::json(
            json!({"items": (0..n).map(|i| json!({"id": page * 100 + i})).collect::<Vec<_>>()}),
        )
    })
    .await;
    let paginator = r#"        type: DefaultPaginator
        page_token_option:
          type: RequestOption
          inject_into: request_parameter
          field_name: page
        page_size_option:
          type: RequestOption
          inject_into: request_parameter
          field_name: size
        pagination_strategy:
          type: PageIncrement
          page_size: 2
          start_from_page: 1
          inject_on_first_request: true"#;
    let b = build(
        &manifest(paginator, "[items]"),
        json!({"base": server.url(), "kind": "k"}),
    )
    .unwrap();
    let r = read(&*b.source, "items", SyncMode::FullRefresh, None).await;
    assert_eq!(ids(&r.rows), [100, 101, 200, 201, 300]);
    let pages: Vec<String> = server
        .seen()
        .iter()
        .map(|s| format!("{}/{}", s.param("page").unwrap(), s.param("size").unwrap()))
        .collect();
    assert_eq!(pages, ["1/2", "2/2", "3/2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn offset_increment_counts_records_and_stops_at_an_empty_page() {
    let server = MockServer::start(|req| {
        let offset: i64 = req.param("offset").unwrap_or("0").parse().unwrap();
        let records: Vec<_> = (offset..(offset + 3).min(6))
            .map(|i| json!({"id": i}))
            .collect();
        Reply::json(json!({"data": records}))
    })
    .await;
    let paginator = r#"        type: DefaultPaginator
        page_token_option:
          type: RequestOption
          inject_into: request_parameter
          field_name: offset
        pagination_strategy:
          type: OffsetIncrement
          page_size: 3"#;
    let b = build(
        &manifest(paginator, "[data]"),
        json!({"base": server.url(), "kind": "k"}),
    )
    .unwrap();
    let r = read(&*b.source, "items", SyncMode::FullRefresh, None).await;
    assert_eq!(ids(&r.rows), [0, 1, 2, 3, 4, 5]);
    let offsets: Vec<Option<String>> = server
        .seen()
        .iter()
        .map(|s| s.param("offset").map(String::from))
        .collect();
    // The first request carries no offset; 6 is asked and answered empty.
    assert_eq!(offsets, [None, Some("3".into()), Some("6".into())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_token_in_the_json_body_of_a_post() {
    let server = MockServer::start(|req| {
        let body: serde_json::Value = serde_json::from_str(&req.body).unwrap();
        let after = body["page"]["after"].as_i64().unwrap_or(0);
        let data: Vec<_> = if after < 4 {
            vec![json!({"id": after + 1}), json!({"id": after + 2})]
        } else {
            vec![]
        };
        Reply::json(json!({"data": data, "has_more": after < 4}))
    })
    .await;
    let m = manifest(
        r#"        type: DefaultPaginator
        page_token_option:
          type: RequestOption
          inject_into: body_json
          field_path: [page, after]
        pagination_strategy:
          type: CursorPagination
          cursor_value: "{{ last_record.id }}"
          stop_condition: "{{ not response.has_more }}""#,
        "[data]",
    )
    .replace(
        "http_method: GET",
        "http_method: POST\n    request_body_json:\n      query: \"{{ config.kind }}\"",
    );
    let b = build(&m, json!({"base": server.url(), "kind": "q"})).unwrap();
    let r = read(&*b.source, "items", SyncMode::FullRefresh, None).await;
    assert_eq!(ids(&r.rows), [1, 2, 3, 4]);
    let bodies: Vec<serde_json::Value> = server
        .seen()
        .iter()
        .map(|s| serde_json::from_str(&s.body).unwrap())
        .collect();
    assert_eq!(
        bodies,
        [
            json!({"query": "q"}),
            json!({"query": "q", "page": {"after": 2}}),
            json!({"query": "q", "page": {"after": 4}})
        ]
    );
    assert!(server
        .seen()
        .iter()
        .all(|s| s.method == "POST" && s.header("content-type") == Some("application/json")));
}
