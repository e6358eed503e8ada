//! End to end: the run-wide limit on bytes in flight (`defaults.max_bytes_in_flight`, the
//! engine's `inflight` module) through the real `weft` binary. Many lake streams run at once;
//! the run report's `in_flight` says how many bytes of batches were in flight at the peak, and
//! every stream's lake table must equal the sample source row for row.

use arrow::array::{Array, RecordBatch};
use arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use weft_source_sample::{expected_rows, SampleConfig};
use weft_testkit::TestProject;

const BIN: &str = env!("CARGO_BIN_EXE_weft");
const MIB: u64 = 1024 * 1024;

/// A project of `streams` products, each the sample's `orders` (`rows` rows, batches of
/// `batch` rows) into one lake, all running at once.
fn project(streams: usize, rows: u64, batch: usize, limit: u64) -> TestProject {
    let project = TestProject::new(
        BIN,
        &format!(
            "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config: {{ path: lake }}\n  commit_interval: 1h\n  max_concurrent_streams: {streams}\n  max_bytes_in_flight: {limit}\n"
        ),
    );
    for i in 0..streams {
        project.product(
            "shop",
            &format!("s{i}"),
            &format!(
                "product: s{i}\ndomain: shop\nowner: test@example.com\ndescription: memory test\nsource:\n  connector: sample\n  config: {{ scale: {rows}, seed: {i}, batch_size: {batch} }}\nstreams:\n  - name: orders\n    mode: full_refresh\n    write: overwrite\n"
            ),
        );
    }
    project
}

/// Runs the project; the run report as JSON, after checking every stream succeeded.
fn sync(project: &TestProject) -> serde_json::Value {
    let out = project.run(["sync", "run", "--no-progress", "--format", "json"]);
    out.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&out.stdout())
        .unwrap_or_else(|e| panic!("a JSON report ({e}):\n{}", out.stdout()));
    for stream in report["streams"].as_array().expect("streams") {
        assert_eq!(stream["status"], "succeeded", "{stream}");
    }
    report
}

fn sorted_by_id(batch: &RecordBatch) -> RecordBatch {
    let indices = sort_to_indices(batch.column_by_name("id").expect("id"), None, None).unwrap();
    take_record_batch(batch, &indices).unwrap()
}

/// Every stream's lake table holds exactly the sample's rows, value for value.
fn assert_lake_equals_source(project: &TestProject, streams: usize, rows: u64) {
    for i in 0..streams {
        let config = SampleConfig::new(rows).with_seed(i as u64);
        let expected: Vec<RecordBatch> = expected_rows(&config, "orders", 0).collect();
        let expected = concat_batches(&expected[0].schema(), &expected).unwrap();
        let actual = sorted_by_id(&project.read_stream("shop", &format!("s{i}"), "orders"));
        assert_eq!(actual.num_rows(), expected.num_rows(), "s{i}: row count");
        for (c, field) in expected.schema().fields().iter().enumerate() {
            let column = actual
                .column_by_name(field.name())
                .unwrap_or_else(|| panic!("s{i}: column {}", field.name()));
            assert_eq!(
                column.to_data(),
                expected.column(c).to_data(),
                "s{i}: column {}",
                field.name()
            );
        }
    }
}

fn in_flight(report: &serde_json::Value, field: &str) -> u64 {
    report["in_flight"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("in_flight.{field} in {report}"))
}

#[test]
fn bytes_in_flight_stay_under_the_limit_across_many_streams() {
    // 16 streams of ~150 KiB batches: unlimited, they hold several MiB in flight together.
    let (streams, rows, batch) = (16, 40_000, 2_000);
    let limited = project(streams, rows, batch, 2 * MIB);
    let report = sync(&limited);
    assert_eq!(in_flight(&report, "limit_bytes"), 2 * MIB);
    let peak = in_flight(&report, "peak_bytes");
    assert!(peak > 0, "batches were counted: {report}");
    assert!(peak <= 2 * MIB, "peak {peak} over the 2 MiB limit");
    assert_eq!(in_flight(&report, "oversized_batches"), 0);
    assert_lake_equals_source(&limited, streams, rows);

    // The same run with room to spare goes past 2 MiB: the limit is what held it down.
    let unlimited = project(streams, rows, batch, 1024 * MIB);
    let report = sync(&unlimited);
    let free_peak = in_flight(&report, "peak_bytes");
    assert!(
        free_peak > 2 * MIB,
        "without the limit the peak was only {free_peak} bytes: the test proves nothing"
    );
    assert_lake_equals_source(&unlimited, streams, rows);
}

#[test]
fn a_batch_larger_than_the_limit_passes_alone() {
    // Batches of 65,536 orders are several MiB each, over the 1 MiB limit.
    let (streams, rows) = (3, 150_000);
    let project = project(streams, rows, 65_536, MIB);
    let report = sync(&project);
    let oversized = in_flight(&report, "oversized_batches");
    assert!(
        oversized >= 3,
        "every stream's batches are oversized: {report}"
    );
    let peak = in_flight(&report, "peak_bytes");
    assert!(peak > MIB, "an oversized batch was in flight: {report}");
    assert_lake_equals_source(&project, streams, rows);
}
