//! The destination suite against the `jsonstore` fixture, its writer run in a child process
//! killed with SIGKILL: the correct store passes, each deliberately broken one fails with a
//! message naming its fault.

mod fixtures;

use fixtures::store::{Flaw, Reader, StoreFactory};
use weft_conformance::{DestinationSuite, Faults, WriterChild};
use weft_core::ConnectorContext;

async fn run(factory: &StoreFactory, test: &str) -> Result<(), Faults> {
    let dir = tempfile::tempdir().unwrap();
    let reader = Reader(dir.path().to_path_buf());
    let ctx = ConnectorContext {
        project_dir: dir.path().to_path_buf(),
    };
    DestinationSuite::new(
        factory,
        serde_json::json!({ "path": dir.path() }),
        ctx,
        &reader,
    )
    .run(test)
    .await
}

#[tokio::test]
async fn a_correct_destination_passes() {
    let factory = StoreFactory(Flaw::None);
    if let Some(child) = WriterChild::from_env() {
        child.run(&factory).await;
    }
    run(&factory, "a_correct_destination_passes")
        .await
        .unwrap_or_else(|f| panic!("{f}"));
}

#[tokio::test]
async fn a_destination_whose_commit_is_not_durable_fails() {
    let factory = StoreFactory(Flaw::CommitNotDurable);
    if let Some(child) = WriterChild::from_env() {
        child.run(&factory).await;
    }
    let faults = run(&factory, "a_destination_whose_commit_is_not_durable_fails")
        .await
        .unwrap_err();
    let text = faults.to_string();
    assert!(faults.has("commit_durable"), "{text}");
    assert!(
        text.contains("[commit_durable] stream `durable`: commit is not durable: after commit returned and the writer process was killed (SIGKILL): a reader sees 0 row(s), expected 3: 3 (e.g. (1, name-1, 10) ×1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_destination_duplicating_on_replay_fails() {
    let factory = StoreFactory(Flaw::DuplicatesOnReplay);
    if let Some(child) = WriterChild::from_env() {
        child.run(&factory).await;
    }
    let faults = run(&factory, "a_destination_duplicating_on_replay_fails")
        .await
        .unwrap_err();
    let text = faults.to_string();
    assert_eq!(faults.faults.len(), 1, "{text}");
    assert!(
        text.contains("[replay_dedup] stream `replay_dedup`: replaying the last committed batch into an append_dedup stream after a crash (writer killed after commit(2)) does not settle to one row per key: a reader sees 9 row(s), expected 6: 3 (e.g. (4, name-4, 40) ×1"),
        "{text}"
    );
}
