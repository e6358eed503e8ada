//! Error handling against a loopback mock: 429 with Retry-After, 5xx retried, ignore and fail
//! filters, the default failure of a 404, and a message that names the stream and hides the key.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;
use weft_core::SyncMode;
use weft_testkit::http_mock::{MockServer, Reply};

use common::{build, try_read};

fn manifest(error_handler: &str) -> String {
    format!(
        r#"
version: 6.0.0
check: {{stream_names: [things]}}
streams:
  - name: things
    retriever:
      requester:
        url_base: "{{{{ config.base }}}}"
        path: /things
        request_parameters: {{api_key: "{{{{ config.key }}}}"}}
{error_handler}
      record_selector:
        extractor: {{field_path: [data]}}
    schema_loader:
      type: InlineSchemaLoader
      schema: {{type: object, properties: {{id: {{type: integer}}}}}}
"#
    )
}

/// A server failing the first `failures` requests with `status` (and `headers`), then serving.
async fn flaky(
    failures: usize,
    status: u16,
    headers: &'static [(&'static str, &'static str)],
) -> (MockServer, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let server = MockServer::start(move |_| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        if n < failures {
            let mut r = Reply::status(status, "busy");
            for (k, v) in headers {
                r = r.with_header(k, v);
            }
            r
        } else {
            Reply::json(json!({"data": [{"id": 1}]}))
        }
    })
    .await;
    (server, count)
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_wait_as_retry_after_says_and_5xx_are_retried() {
    // No handler: the CDK's defaults (429 and 5xx retried); Retry-After: 0 keeps the test fast.
    let (server, count) = flaky(2, 429, &[("retry-after", "0")]).await;
    let b = build(&manifest(""), json!({"base": server.url(), "key": "k"})).unwrap();
    let r = try_read(&*b.source, "things", SyncMode::FullRefresh, None)
        .await
        .unwrap();
    assert_eq!(r.rows.len(), 1);
    assert_eq!(count.load(Ordering::SeqCst), 3);

    let handler = "        error_handler:\n          type: DefaultErrorHandler\n          max_retries: 3\n          backoff_strategies:\n            - type: ConstantBackoffStrategy\n              backoff_time_in_seconds: 0.01";
    let (server, count) = flaky(3, 503, &[]).await;
    let b = build(
        &manifest(handler),
        json!({"base": server.url(), "key": "k"}),
    )
    .unwrap();
    assert_eq!(
        try_read(&*b.source, "things", SyncMode::FullRefresh, None)
            .await
            .unwrap()
            .rows
            .len(),
        1
    );
    assert_eq!(count.load(Ordering::SeqCst), 4);

    // One failure more than max_retries: the read fails, naming the stream, never the key.
    let (server, count) = flaky(5, 500, &[]).await;
    let b = build(
        &manifest(handler),
        json!({"base": server.url(), "key": "sup3rs3cret"}),
    )
    .unwrap();
    let err = try_read(&*b.source, "things", SyncMode::FullRefresh, None)
        .await
        .unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 4);
    assert!(
        err.contains("stream `things`: GET http://127.0.0.1:"),
        "{err}"
    );
    assert!(
        err.contains("/things answered 500: busy (gave up after 3 retries)"),
        "{err}"
    );
    assert!(!err.contains("sup3rs3cret"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ignore_and_fail_filters() {
    let ignore = "        error_handler:\n          type: CompositeErrorHandler\n          error_handlers:\n            - response_filters:\n                - {type: HttpResponseFilter, action: IGNORE, http_codes: [403]}\n            - response_filters:\n                - type: HttpResponseFilter\n                  action: FAIL\n                  predicate: \"{{ 'quota' in response.error }}\"\n                  error_message: \"the API quota is used up: {{ response.error }}\"";
    let (server, _) = flaky(1, 403, &[]).await;
    let b = build(&manifest(ignore), json!({"base": server.url(), "key": "k"})).unwrap();
    let r = try_read(&*b.source, "things", SyncMode::FullRefresh, None)
        .await
        .unwrap();
    assert!(r.rows.is_empty(), "an ignored response yields no records");
    assert_eq!(r.checkpoints.len(), 1);

    let server = MockServer::start(|_| Reply::json(json!({"error": "daily quota exceeded"}))).await;
    let b = build(&manifest(ignore), json!({"base": server.url(), "key": "k"})).unwrap();
    let err = try_read(&*b.source, "things", SyncMode::FullRefresh, None)
        .await
        .unwrap_err();
    assert!(
        err.ends_with("answered 200: the API quota is used up: daily quota exceeded"),
        "{err}"
    );

    let (server, count) = flaky(10, 404, &[]).await;
    let b = build(&manifest(""), json!({"base": server.url(), "key": "k"})).unwrap();
    let err = try_read(&*b.source, "things", SyncMode::FullRefresh, None)
        .await
        .unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 1, "a 404 is not retried");
    assert!(err.contains("answered 404: busy"), "{err}");
}
