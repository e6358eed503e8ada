//! End to end: a declarative manifest in the project, run natively by the real `weft` binary
//! into the lake; killed with SIGKILL mid-sync of a paginated, sliced stream and rerun: every
//! row exactly once, and the slices committed before the kill are not requested again.

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

/// Serves 250 items per region and day, in pages of `per_page`.
fn serve(req: &weft_testkit::http_mock::Seen) -> Reply {
    let region = req.path.split('/').nth(2).unwrap();
    let r = REGIONS.iter().position(|x| *x == region).unwrap() as u32;
    let day: u32 = req.param("day").unwrap()[8..10].parse().unwrap();
    let page: u32 = req.param("page").unwrap().parse().unwrap();
    let per_page: u32 = req.param("per_page").unwrap().parse().unwrap();
    let items: Vec<_> = ((page - 1) * per_page..(page * per_page).min(PER_SLICE))
        .map(|n| json!({"id": (r * 100 + day) * 1000 + n, "region": region, "updated_at": format!("2024-03-{day:02}")}))
        .collect();
    Reply::json(json!({"items": items}))
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
    let (mut run, _release) = p.spawn_paused("after_commit", ["sync", "run", "--no-progress"]);
    run.wait_for_line("pausepoint `after_commit` reached", limit);
    run.signal(libc::SIGKILL);
    assert_ne!(run.finish(limit).code(), Some(0));
    let first_run = server.seen().len();
    assert!(
        first_run >= 3,
        "the first slice's three pages were read before the kill"
    );

    p.run_within(limit, ["sync", "run", "--no-progress"])
        .expect_code(0);
    let ids = lake_ids(&p);
    let expected = expected_ids();
    assert_eq!(ids.len(), expected.len(), "rows lost or duplicated");
    assert!(ids == expected, "rows lost or duplicated");

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
        pages.values().all(|n| *n == 3),
        "each slice is three pages: {pages:?}"
    );
    assert!(
        pages.len() < 15,
        "the rerun resumed instead of starting over: {pages:?}"
    );
    let cp = weft_testkit::manifest_checkpoint(&p.stream_dir("ops", "api", "items"))
        .expect("a committed checkpoint");
    assert_eq!(
        (cp["complete"].clone(), cp["slices_done"].clone()),
        (json!(true), json!(15)),
        "{cp}"
    );
}
