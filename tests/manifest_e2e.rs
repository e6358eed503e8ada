//! End to end: a declarative manifest in the project, run natively by the real `weft` binary
//! into the lake; killed with SIGKILL mid-sync of a paginated, sliced stream and rerun: every
//! row exactly once (read back by DuckDB and pyarrow), and the slices committed before the kill
//! are not requested again — for a full refresh (list partitions × day windows, page numbers)
//! and for an incremental stream (day windows, cursor tokens) whose state is the CDK's.
//!
//! The windows are the CDK's concurrent cursor's: a day each, but the last, which ends at
//! `end_datetime` (so 4 windows for 5 days); the mocks serve a window's whole range.

use std::collections::BTreeMap;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use serde_json::json;
use weft_testkit::http_mock::{MockServer, Reply};
use weft_testkit::TestProject;

const BIN: &str = env!("CARGO_BIN_EXE_weft");

const MANIFEST: &str = r#"
version: 6.0.0
type: DeclarativeSource
check: {stream_names: [items]}
streams:
  - type: DeclarativeStream
    name: items
    primary_key: id
    retriever:
      type: SimpleRetriever
      requester:
        type: HttpRequester
        url_base: "{{ config.base }}"
        path: "/regions/{{ stream_partition.region }}/items"
      record_selector:
        type: RecordSelector
        extractor: {type: DpathExtractor, field_path: [items]}
      paginator:
        type: DefaultPaginator
        page_token_option: {type: RequestOption, inject_into: request_parameter, field_name: page}
        page_size_option: {type: RequestOption, inject_into: request_parameter, field_name: per_page}
        pagination_strategy: {type: PageIncrement, page_size: 100, start_from_page: 1, inject_on_first_request: true}
      partition_router:
        type: ListPartitionRouter
        cursor_field: region
        values: [north, south, west]
    incremental_sync:
      type: DatetimeBasedCursor
      cursor_field: updated_at
      datetime_format: "%Y-%m-%d"
      start_datetime: "2024-03-01"
      end_datetime: "2024-03-05"
      step: P1D
      cursor_granularity: P1D
      start_time_option: {type: RequestOption, inject_into: request_parameter, field_name: day}
      end_time_option: {type: RequestOption, inject_into: request_parameter, field_name: until}
    schema_loader:
      type: InlineSchemaLoader
      schema:
        type: object
        properties:
          id: {type: integer}
          region: {type: string}
          updated_at: {type: string, format: date}
"#;

const REGIONS: [&str; 3] = ["north", "south", "west"];
const DAYS: u32 = 5;
const PER_SLICE: u32 = 250;

/// Serves 250 items per region and day for the days `day..=until`, in pages of `per_page`.
fn serve(req: &weft_testkit::http_mock::Seen) -> Reply {
    let region = req.path.split('/').nth(2).unwrap();
    let r = REGIONS.iter().position(|x| *x == region).unwrap() as u32;
    let (from, until) = (
        day_of(req.param("day").unwrap()),
        day_of(req.param("until").unwrap()),
    );
    let page: usize = req.param("page").unwrap().parse().unwrap();
    let per_page: usize = req.param("per_page").unwrap().parse().unwrap();
    let items: Vec<_> = (from..=until)
        .flat_map(|day| (0..PER_SLICE).map(move |n| (day, n)))
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(day, n)| json!({"id": (r * 100 + day) * 1000 + n, "region": region, "updated_at": format!("2024-03-{day:02}")}))
        .collect();
    Reply::json(json!({"items": items}))
}

/// The requests for a slice starting on `day`: 250 items a day, 100 a page, until a page is
/// short (or empty); the last window (starting on day 4) holds days 4 and 5.
fn pages_of(day: &str) -> usize {
    let days = if day == "2024-03-04" { 2 } else { 1 };
    (days * PER_SLICE as usize) / 100 + 1
}

fn expected_ids() -> Vec<i64> {
    let mut ids = Vec::new();
    for r in 0..3u32 {
        for day in 1..=DAYS {
            ids.extend((0..PER_SLICE).map(|n| ((r * 100 + day) * 1000 + n) as i64));
        }
    }
    ids.sort_unstable();
    ids
}

fn project(base: &str) -> TestProject {
    let p = TestProject::with_lake(BIN, "1ms");
    p.file("connectors/items.yaml", MANIFEST);
    p.product(
        "ops",
        "api",
        &format!(
            "product: api\ndomain: ops\nowner: ops@example.com\ndescription: Items of a paginated, sliced HTTP API.\nsource:\n  connector: manifest\n  config:\n    manifest: connectors/items.yaml\n    config:\n      base: {base}\nstreams:\n  - name: items\n    mode: full_refresh\n    write: overwrite\n"
        ),
    );
    p
}

fn lake_ids(p: &TestProject) -> Vec<i64> {
    let batch = p.read_stream("ops", "api", "items");
    let mut ids: Vec<i64> = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    ids.sort_unstable();
    ids
}

#[test]
fn a_manifest_sync_killed_mid_read_resumes_from_the_last_committed_slice() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(MockServer::start(serve));
    let p = project(&server.url());

    let limit = std::time::Duration::from_secs(180);
    let killed = p.kill_after_first_commit(["sync", "run", "--no-progress"], limit);
    assert_ne!(killed.code(), Some(0));
    let first_run = server.seen().len();
    assert!(
        first_run >= 3,
        "the first slice's three pages were read before the kill"
    );
    // The killed run's commit is in the lake's manifest, with its staged generation.
    let staged = weft_testkit::resume_checkpoint(&p.stream_dir("ops", "api", "items"))
        .expect("a committed checkpoint");
    assert_eq!(staged["complete"], json!(false), "{staged}");
    assert!(staged["slices_done"].as_u64().unwrap() >= 1, "{staged}");

    p.run_within(limit, ["sync", "run", "--no-progress"])
        .expect_code(0);
    let ids = lake_ids(&p);
    let expected = expected_ids();
    assert_eq!(ids.len(), expected.len(), "rows lost or duplicated");
    assert!(ids == expected, "rows lost or duplicated");
    // The same rows as independent readers see them.
    let dump = weft_testkit::readers::dump(&p.stream_dir("ops", "api", "items"), "id");
    let read: Vec<i64> = dump.values("id");
    assert!(
        read == expected,
        "DuckDB/pyarrow rows differ from the mock's"
    );
    assert_eq!(dump.types["id"], "int64");
    assert_eq!(dump.types["updated_at"], "date32[day]");

    // Every slice is read completely once after the kill, except those committed before it.
    let mut pages: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in &server.seen()[first_run..] {
        *pages
            .entry((s.path.clone(), s.param("day").unwrap().to_string()))
            .or_default() += 1;
    }
    assert!(
        !pages.contains_key(&("/regions/north/items".to_string(), "2024-03-01".to_string())),
        "the committed first slice was requested again: {pages:?}"
    );
    assert!(
        pages.iter().all(|((_, day), n)| *n == pages_of(day)),
        "each slice is read whole, once: {pages:?}"
    );
    assert!(
        pages.len() < 12,
        "the rerun resumed instead of starting over: {pages:?}"
    );
    let cp = weft_testkit::manifest_checkpoint(&p.stream_dir("ops", "api", "items"))
        .expect("a committed checkpoint");
    assert_eq!(
        (cp["complete"].clone(), cp["slices_done"].clone()),
        (json!(true), json!(12)),
        "{cp}"
    );
}

const EVENTS: &str = r##"
version: 6.0.0
type: DeclarativeSource
check: {stream_names: [events]}
spec:
  type: Spec
  connection_specification:
    type: object
    required: [base, token]
    properties:
      base: {type: string}
      token: {type: string, airbyte_secret: true}
      start: {type: string, default: "2024-03-01"}
definitions:
  requester:
    type: HttpRequester
    url_base: "{{ config.base }}"
    authenticator: {type: BearerAuthenticator, api_token: "{{ config.token }}"}
streams:
  - type: DeclarativeStream
    name: events
    primary_key: id
    retriever:
      type: SimpleRetriever
      requester: {$ref: "#/definitions/requester", path: /events}
      record_selector:
        type: RecordSelector
        extractor: {type: DpathExtractor, field_path: [data]}
      paginator:
        type: DefaultPaginator
        page_token_option: {type: RequestOption, inject_into: request_parameter, field_name: cursor}
        pagination_strategy:
          type: CursorPagination
          cursor_value: "{{ response.next }}"
          stop_condition: "{{ not response.next }}"
    incremental_sync:
      type: DatetimeBasedCursor
      cursor_field: updated_at
      datetime_format: "%Y-%m-%d"
      start_datetime: "{{ config.start }}"
      end_datetime: "2024-03-06"
      step: P1D
      cursor_granularity: P1D
      start_time_option: {type: RequestOption, inject_into: request_parameter, field_name: since}
      end_time_option: {type: RequestOption, inject_into: request_parameter, field_name: until}
    schema_loader:
      type: InlineSchemaLoader
      schema:
        type: object
        properties:
          id: {type: integer}
          updated_at: {type: string, format: date}
          payload: {type: string}
"##;

const EVENTS_PER_DAY: u32 = 120;
const EVENTS_PER_PAGE: u32 = 40;

fn day_of(date: &str) -> u32 {
    date[8..10].parse().unwrap()
}

/// The events of the days `since..=until` (120 a day), 40 a page, chained by a `next` cursor.
fn serve_events(req: &weft_testkit::http_mock::Seen) -> Reply {
    if req.header("authorization") != Some("Bearer tok-s3cret") {
        return Reply::status(401, "{\"error\": \"bad token\"}");
    }
    let (since, until) = (req.param("since").unwrap(), req.param("until").unwrap());
    let all: Vec<(u32, u32)> = (day_of(since)..=day_of(until))
        .flat_map(|d| (0..EVENTS_PER_DAY).map(move |n| (d, n)))
        .collect();
    let page: usize = req.param("cursor").map_or(0, |c| c.parse().unwrap());
    let per = EVENTS_PER_PAGE as usize;
    let data: Vec<_> = all
        .iter()
        .skip(page * per)
        .take(per)
        .map(|(d, n)| {
            json!({"id": d * 1000 + n, "updated_at": format!("2024-03-{d:02}"), "payload": format!("e{n}")})
        })
        .collect();
    let next = ((page + 1) * per < all.len()).then(|| (page + 1).to_string());
    Reply::json(json!({"data": data, "next": next}))
}

#[test]
fn an_incremental_manifest_sync_killed_mid_read_resumes_from_its_cursor_state() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(MockServer::start(serve_events));
    let p = TestProject::with_lake(BIN, "1ms");
    p.file("connectors/events.yaml", EVENTS);
    p.product(
        "ops",
        "ev",
        &format!(
            "product: ev\ndomain: ops\nowner: ops@example.com\ndescription: Events of a date-sliced HTTP API.\nsource:\n  connector: manifest\n  config:\n    manifest: connectors/events.yaml\n    config:\n      base: {}\n      token: tok-s3cret\nstreams:\n  - name: events\n    mode: incremental\n    write: append_dedup\n",
            server.url()
        ),
    );
    let limit = std::time::Duration::from_secs(180);
    let killed = p.kill_after_first_commit(["sync", "run", "--no-progress"], limit);
    assert_ne!(killed.code(), Some(0));
    assert!(!killed.all().contains("tok-s3cret"), "{}", killed.all());
    let stream_dir = p.stream_dir("ops", "ev", "events");
    // Committed with the run's staged generation (published only when a run finishes).
    let cp = weft_testkit::resume_checkpoint(&stream_dir).expect("a committed checkpoint");
    // The CDK's own state shape: the cursor field and the newest value seen.
    let committed = cp["updated_at"]
        .as_str()
        .unwrap_or_else(|| panic!("a cursor state: {cp}"))
        .to_string();
    assert!(committed.starts_with("2024-03-0"), "{cp}");
    let first_run = server.seen().len();

    let rerun = p.run_within(limit, ["sync", "run", "--no-progress"]);
    rerun.expect_code(0);
    assert!(!rerun.all().contains("tok-s3cret"), "{}", rerun.all());
    let after: Vec<_> = server.seen()[first_run..].to_vec();
    // The rerun starts at the committed cursor (inclusive, as the CDK does), not at the start;
    // windows are one day but the last, which ends at `end_datetime` (the CDK's rule).
    assert_eq!(after[0].param("since"), Some(committed.as_str()));
    assert!(after
        .iter()
        .all(|s| s.param("since").unwrap() >= committed.as_str()));
    let windows: std::collections::BTreeSet<_> = after
        .iter()
        .map(|s| {
            (
                s.param("since").unwrap().to_string(),
                s.param("until").unwrap().to_string(),
            )
        })
        .collect();
    let last = day_of(&committed);
    let mut want: std::collections::BTreeSet<_> = (last..5)
        .map(|d| (format!("2024-03-{d:02}"), format!("2024-03-{d:02}")))
        .collect();
    want.insert(("2024-03-05".into(), "2024-03-06".into()));
    assert_eq!(windows, want);
    assert_eq!(
        weft_testkit::manifest_checkpoint(&stream_dir).unwrap(),
        json!({"updated_at": "2024-03-06"})
    );

    let mut expected: Vec<i64> = (1..=6u32)
        .flat_map(|d| (0..EVENTS_PER_DAY).map(move |n| (d * 1000 + n) as i64))
        .collect();
    expected.sort_unstable();
    let dump = weft_testkit::readers::dump(&stream_dir, "id");
    let ids: Vec<i64> = dump.values("id");
    assert_eq!(ids.len(), expected.len(), "rows lost or duplicated");
    assert!(ids == expected, "rows lost or duplicated");
    let payloads = dump.column("payload");
    assert_eq!(payloads[0].as_deref(), Some("e0"));
    assert_eq!(payloads[119].as_deref(), Some("e119"));

    // Caught up: the state is at `end_datetime`, so the next run has no window to ask for.
    let before = server.seen().len();
    p.run_within(limit, ["sync", "run", "--no-progress"])
        .expect_code(0);
    assert_eq!(
        server.seen().len(),
        before,
        "{:?}",
        &server.seen()[before..]
    );
    assert_eq!(
        weft_testkit::manifest_checkpoint(&stream_dir).unwrap(),
        json!({"updated_at": "2024-03-06"})
    );
    assert_eq!(
        weft_testkit::readers::dump(&stream_dir, "id")
            .column("id")
            .len(),
        expected.len()
    );
}

/// The same API's manifest out of a published wheel (`package:`), from a loopback index: the
/// real binary downloads it once, reads it with no Python, and a second run asks the index
/// nothing.
#[test]
fn a_manifest_from_a_published_wheel_syncs_into_the_lake() {
    use weft_testkit::pypi::{self, Release};
    let wheel = pypi::wheel(
        "airbyte-source-items",
        "1.2.3",
        &[
            ("source_items/__init__.py", ""),
            ("source_items/manifest.yaml", MANIFEST),
        ],
    );
    let release = Release::new("airbyte-source-items", "1.2.3", wheel);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(MockServer::start(move |req| {
        release.serve(req).unwrap_or_else(|| serve(req))
    }));
    let p = TestProject::with_lake(BIN, "1ms");
    p.product(
        "ops",
        "api",
        &format!(
            "product: api\ndomain: ops\nowner: ops@example.com\ndescription: Items of a published manifest connector.\nsource:\n  connector: manifest\n  config:\n    package: airbyte-source-items==1.2.3\n    index_url: {base}/pypi\n    config:\n      base: {base}\nstreams:\n  - name: items\n    mode: full_refresh\n    write: overwrite\n",
            base = server.url()
        ),
    );
    let limit = std::time::Duration::from_secs(180);
    let from_index = |s: &MockServer| {
        s.seen()
            .iter()
            .filter(|r| r.path.starts_with("/pypi/") || r.path.starts_with("/files/"))
            .count()
    };
    p.run_within(limit, ["sync", "run", "--no-progress"])
        .expect_code(0);
    assert_eq!(from_index(&server), 2, "the release JSON, then the wheel");
    assert!(lake_ids(&p) == expected_ids(), "rows lost or duplicated");
    p.run_within(limit, ["sync", "run", "--no-progress"])
        .expect_code(0);
    assert_eq!(from_index(&server), 2, "the cached manifest is used");
    assert!(lake_ids(&p) == expected_ids());
}
