//! A date-cursor incremental stream against a loopback mock: windows by step and granularity,
//! start/end options injected, the CDK's state after each window, resume with lookback.

mod common;

use serde_json::json;
use weft_core::SyncMode;
use weft_testkit::http_mock::{MockServer, Reply};

use common::{build, column, read, try_read};

const MANIFEST: &str = r#"
version: 6.0.0
check: {stream_names: [events]}
streams:
  - name: events
    primary_key: id
    retriever:
      requester:
        url_base: "{{ config.base }}"
        path: /events
      record_selector: {extractor: {field_path: [data]}}
    incremental_sync:
      type: DatetimeBasedCursor
      cursor_field: updated_at
      datetime_format: "%Y-%m-%d"
      cursor_datetime_formats: ["%Y-%m-%dT%H:%M:%SZ"]
      start_datetime: "{{ config.start_date }}"
      end_datetime: "2024-01-10"
      step: P3D
      cursor_granularity: P1D
      lookback_window: P1D
      start_time_option: {type: RequestOption, inject_into: request_parameter, field_name: since}
      end_time_option: {type: RequestOption, inject_into: request_parameter, field_name: until}
    schema_loader:
      type: InlineSchemaLoader
      schema:
        type: object
        properties:
          id: {type: integer}
          updated_at: {type: string, format: date-time}
"#;

/// One event per day, 2024-01-01 … 2024-01-10, at noon; the server filters by `since`/`until`
/// (inclusive days).
async fn server() -> MockServer {
    MockServer::start(|req| {
        let since = req.param("since").unwrap().to_string();
        let until = req.param("until").unwrap().to_string();
        let data: Vec<_> = (1..=10)
            .map(|d| (d, format!("2024-01-{d:02}")))
            .filter(|(_, day)| *day >= since && *day <= until)
            .map(|(d, day)| json!({"id": d, "updated_at": format!("{day}T12:00:00Z")}))
            .collect();
        Reply::json(json!({"data": data}))
    })
    .await
}

fn windows(server: &MockServer) -> Vec<String> {
    server
        .seen()
        .iter()
        .map(|s| {
            format!(
                "{}..{}",
                s.param("since").unwrap(),
                s.param("until").unwrap()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn windows_state_and_resume_with_lookback() {
    let server = server().await;
    let b = build(
        MANIFEST,
        json!({"base": server.url(), "start_date": "2024-01-02"}),
    )
    .unwrap();
    let catalog = b.source.discover().await.unwrap();
    let events = catalog.stream("events").unwrap();
    assert_eq!(events.source_defined_cursor.as_deref(), Some("updated_at"));
    assert_eq!(events.primary_key, ["id"]);

    let r = read(&*b.source, "events", SyncMode::Incremental, None).await;
    assert_eq!(
        windows(&server),
        [
            "2024-01-02..2024-01-04",
            "2024-01-05..2024-01-07",
            "2024-01-08..2024-01-10"
        ]
    );
    assert_eq!(
        column(&r.rows, "id"),
        (2..=10).map(|i| json!(i)).collect::<Vec<_>>()
    );
    // The CDK's state shape, after every window: the latest cursor value, in datetime_format.
    assert_eq!(
        r.checkpoints,
        [
            json!({"updated_at": "2024-01-04"}),
            json!({"updated_at": "2024-01-07"}),
            json!({"updated_at": "2024-01-10"})
        ]
    );
    assert_eq!(r.rows_at_checkpoint, [3, 6, 9]);
    // Timestamps are typed (UTC; the helper prints them without the zone).
    assert_eq!(r.rows[0]["updated_at"], json!("2024-01-02T12:00:00"));

    // Resume from a state a killed run (or the Python CDK) left: one day of lookback.
    server.clear();
    let r = read(
        &*b.source,
        "events",
        SyncMode::Incremental,
        Some(json!({"updated_at": "2024-01-07"})),
    )
    .await;
    assert_eq!(
        windows(&server),
        ["2024-01-06..2024-01-08", "2024-01-09..2024-01-10"]
    );
    assert_eq!(
        column(&r.rows, "id"),
        (6..=10).map(|i| json!(i)).collect::<Vec<_>>()
    );
    assert_eq!(
        r.checkpoints.last().unwrap(),
        &json!({"updated_at": "2024-01-10"})
    );

    // A state that cannot be read names the field and the way out.
    let err = try_read(
        &*b.source,
        "events",
        SyncMode::Incremental,
        Some(json!({"updated_at": "yesterday"})),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("the saved state's `updated_at` is `yesterday`"),
        "{err}"
    );
    assert!(err.contains("weft sync reset"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn epoch_formats_in_requests() {
    let server = MockServer::start(|_| {
        Reply::json(json!({"data": [{"id": 1, "updated_at": "2024-01-01T00:00:00Z"}]}))
    })
    .await;
    let m = MANIFEST
        .replace("datetime_format: \"%Y-%m-%d\"", "datetime_format: \"%s\"")
        .replace(
            "end_datetime: \"2024-01-10\"",
            "end_datetime: \"{{ config.end }}\"",
        )
        .replace("step: P3D", "step: P1D")
        .replace("cursor_granularity: P1D", "cursor_granularity: PT1S");
    let b = build(
        &m,
        json!({"base": server.url(), "start_date": "1704067200", "end": "1704240000"}),
    )
    .unwrap();
    let r = read(&*b.source, "events", SyncMode::Incremental, None).await;
    assert_eq!(
        windows(&server),
        ["1704067200..1704153599", "1704153600..1704240000"],
        "one-day windows in epoch seconds, the first ending a granule before the next"
    );
    assert_eq!(
        r.checkpoints.last().unwrap(),
        &json!({"updated_at": "1704067200"})
    );
}
