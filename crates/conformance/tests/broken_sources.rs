//! The source suite against the `counter` fixture: the correct one passes, each deliberately
//! broken one fails with a message naming its fault.

mod fixtures;

use fixtures::counter::{CounterFactory, Flaw};
use weft_conformance::{Faults, SourceSuite};
use weft_core::ConnectorContext;

async fn run(flaw: Flaw) -> Result<weft_conformance::SourceReport, Faults> {
    let factory = CounterFactory(flaw);
    let ctx = ConnectorContext {
        project_dir: std::env::temp_dir(),
    };
    SourceSuite::new(
        &factory,
        serde_json::json!({ "rows": 10, "batch_size": 3 }),
        ctx,
    )
    .run()
    .await
}

#[tokio::test]
async fn a_correct_source_passes() {
    let report = run(Flaw::None).await.unwrap_or_else(|f| panic!("{f}"));
    // Two modes; 4 checkpoints each: 3 resumed in full refresh, 4 incrementally.
    assert_eq!(report.streams, 2);
    assert_eq!(report.checkpoints_resumed, 7);
    assert_eq!(report.rows, 20);
}

#[tokio::test]
async fn a_source_losing_a_row_at_each_checkpoint_fails_naming_the_lost_row() {
    let faults = run(Flaw::LosesRowAtCheckpoint).await.unwrap_err();
    assert!(faults.has("read_resume_loss"), "{faults}");
    let text = faults.to_string();
    assert!(
        text.contains("stream `numbers` (full_refresh): resuming from checkpoint #0 3 (after 3 of 10 rows) loses rows: 1 (e.g. (4, n4) ×1) row(s) missing"),
        "{text}"
    );
    assert!(!faults.has("checkpoint_before_rows"), "{text}");
}

#[tokio::test]
async fn a_source_checkpointing_before_its_rows_fails_naming_the_checkpoint() {
    let faults = run(Flaw::CheckpointBeforeRows).await.unwrap_err();
    let text = faults.to_string();
    assert!(faults.has("checkpoint_before_rows"), "{text}");
    assert!(
        text.contains("stream `numbers` (full_refresh): checkpoint #0 3 was emitted before its rows: resuming from it skips all 3 row(s) the read yielded right after it (first (1, n1))"),
        "{text}"
    );
}

#[tokio::test]
async fn batches_off_the_declared_schema_fail_naming_the_column() {
    let faults = run(Flaw::WrongType).await.unwrap_err();
    let text = faults.to_string();
    assert!(
        text.contains("[batch_schema] stream `numbers` (full_refresh): batch #0 of the read from scratch does not match the declared schema: column `id` is Utf8, declared Int64"),
        "{text}"
    );
}

/// The suite with the undecodable-row check on a broken fixture (id 5's `label` cannot be
/// decoded).
async fn run_undecodable(flaw: Flaw) -> Result<weft_conformance::SourceReport, Faults> {
    let factory = CounterFactory(flaw);
    let ctx = ConnectorContext {
        project_dir: std::env::temp_dir(),
    };
    SourceSuite::new(
        &factory,
        serde_json::json!({ "rows": 10, "batch_size": 3 }),
        ctx,
    )
    .undecodable(
        serde_json::json!({ "rows": 10, "batch_size": 3, "bad_row": 5 }),
        "numbers",
        "label",
    )
    .run()
    .await
}

#[tokio::test]
async fn a_source_failing_an_undecodable_row_naming_stream_and_column_passes() {
    run_undecodable(Flaw::None)
        .await
        .unwrap_or_else(|f| panic!("{f}"));
}

#[tokio::test]
async fn a_source_dropping_an_undecodable_row_fails_naming_stream_and_column() {
    let faults = run_undecodable(Flaw::DropsUndecodable).await.unwrap_err();
    let text: Vec<String> = faults.faults.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        text,
        vec!["[undecodable_row] stream `numbers`: the broken fixture holds a value in column `label` the connector cannot decode, but its read ended without an error after 9 row(s): a row the connector cannot decode must fail the read, naming the stream and the column"]
    );
}

#[tokio::test]
async fn a_source_failing_an_undecodable_row_vaguely_fails_the_check() {
    let faults = run_undecodable(Flaw::VagueDecodeError).await.unwrap_err();
    let text: Vec<String> = faults.faults.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        text,
        vec!["[undecodable_row] stream `numbers`: the broken fixture holds a value in column `label` the connector cannot decode; the read fails, but its error does not name the stream or the column: cannot decode a row"]
    );
}

#[tokio::test]
async fn a_bad_config_is_checked_to_name_the_field() {
    // The counter's spec and errors are right: the config checks find nothing.
    let factory = CounterFactory(Flaw::None);
    let spec = weft_core::SourceFactory::spec(&factory);
    let ctx = ConnectorContext {
        project_dir: std::env::temp_dir(),
    };
    let faults = weft_conformance::spec::check_configs(
        &spec,
        &serde_json::json!({ "rows": 10, "batch_size": 3 }),
        |c| weft_core::SourceFactory::build(&factory, c, &ctx),
        |s| s.check(),
    )
    .await;
    assert_eq!(faults, vec![]);
    // A config the spec rejects but the connector accepts is a fault.
    let lax = serde_json::json!({ "type": "object", "properties": { "rows": { "type": "string" } }, "required": ["rows"] });
    let faults = weft_conformance::spec::check_configs(
        &lax,
        &serde_json::json!({ "rows": "10" }),
        |_| Ok(()),
        |_| Box::pin(async { Ok(()) }),
    )
    .await;
    let text: Vec<String> = faults.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        text,
        vec![
            "[bad_config] a config with `rows` removed (which the spec rejects) was accepted by build and check",
            "[bad_config] a config with `rows` set to true (which the spec rejects) was accepted by build and check",
        ]
    );
}
