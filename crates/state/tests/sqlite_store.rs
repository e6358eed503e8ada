//! The SQLite state store against real database files.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use weft_core::Checkpoint;
use weft_state::{
    RunStart, RunStatus, SqliteStateStore, StateError, StateStore, StreamKey, StreamRun,
};

fn key(d: &str, p: &str, s: &str) -> StreamKey {
    StreamKey {
        domain: d.parse().unwrap(),
        product: p.parse().unwrap(),
        stream: s.parse().unwrap(),
    }
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

fn stream_run(k: StreamKey, status: RunStatus, rows: u64, start: i64) -> StreamRun {
    StreamRun {
        key: k,
        status,
        rows,
        bytes: rows * 10,
        error: (status == RunStatus::Failed).then(|| "source: connection refused".to_string()),
        started_at: at(start),
        ended_at: at(start + 5),
    }
}

#[test]
fn state_round_trips_with_growing_generations() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join(".weft/state.db")).unwrap();
    let k = key("sales", "orders", "orders");
    assert_eq!(store.get_state(&k).unwrap(), None);

    let g1 = store
        .put_state(
            &k,
            &Checkpoint(json!({"cursor": "2026-01-01"})),
            "run-1",
            None,
        )
        .unwrap();
    assert_eq!(g1, 1);
    let g2 = store
        .put_state(
            &k,
            &Checkpoint(json!({"cursor": "2026-01-02"})),
            "run-1",
            Some(1),
        )
        .unwrap();
    assert_eq!(g2, 2);

    let state = store.get_state(&k).unwrap().unwrap();
    assert_eq!(
        state.checkpoint,
        Checkpoint(json!({"cursor": "2026-01-02"}))
    );
    assert_eq!(state.generation, 2);
    assert_eq!(state.run_id, "run-1");
    assert!((Utc::now() - state.updated_at).num_seconds() < 60);

    assert!(store.delete_state(&k).unwrap());
    assert!(!store.delete_state(&k).unwrap());
    assert_eq!(store.get_state(&k).unwrap(), None);
}

#[test]
fn a_stale_generation_never_overwrites_newer_progress() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
    let k = key("sales", "orders", "orders");
    store
        .put_state(&k, &Checkpoint(json!(1)), "run-1", None)
        .unwrap();
    store
        .put_state(&k, &Checkpoint(json!(2)), "run-2", Some(1))
        .unwrap();

    // run-1 still believes generation 1 is current.
    let err = store
        .put_state(&k, &Checkpoint(json!(99)), "run-1", Some(1))
        .unwrap_err();
    assert!(matches!(
        err,
        StateError::Conflict {
            expected: Some(1),
            found: Some(2),
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "state of stream `sales/orders/orders` changed under this run (expected generation 1, \
         found 2): another run recorded newer progress, so this one stops without overwriting it"
    );
    // Creating when it exists is a conflict too.
    let err = store
        .put_state(&k, &Checkpoint(json!(99)), "run-3", None)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("(expected generation none, found 2)"),
        "{err}"
    );
    // Expecting a state that was deleted is one as well.
    let other = key("sales", "orders", "items");
    let err = store
        .put_state(&other, &Checkpoint(json!(1)), "run-3", Some(4))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("(expected generation 4, found none)"),
        "{err}"
    );

    let state = store.get_state(&k).unwrap().unwrap();
    assert_eq!(
        (state.checkpoint, state.generation),
        (Checkpoint(json!(2)), 2)
    );
    assert_eq!(store.get_state(&other).unwrap(), None);
}

#[test]
fn list_states_is_ordered_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
    for (d, p, s) in [
        ("sales", "orders", "b"),
        ("finance", "revenue", "x"),
        ("sales", "orders", "a"),
    ] {
        store
            .put_state(&key(d, p, s), &Checkpoint(json!(s)), "r", None)
            .unwrap();
    }
    let listed: Vec<String> = store
        .list_states()
        .unwrap()
        .into_iter()
        .map(|(k, s)| format!("{k}={}", s.checkpoint.0))
        .collect();
    assert_eq!(
        listed,
        [
            "finance/revenue/x=\"x\"",
            "sales/orders/a=\"a\"",
            "sales/orders/b=\"b\""
        ]
    );
}

#[test]
fn run_history_is_newest_first_with_its_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
    let orders = key("sales", "orders", "orders");
    let items = key("sales", "orders", "items");

    store
        .start_run(&RunStart {
            run_id: "r1".into(),
            selectors: vec![],
            started_at: at(0),
            ..Default::default()
        })
        .unwrap();
    store
        .finish_stream(
            "r1",
            &stream_run(orders.clone(), RunStatus::Succeeded, 100, 0),
        )
        .unwrap();
    store
        .finish_stream("r1", &stream_run(items.clone(), RunStatus::Failed, 3, 1))
        .unwrap();
    store
        .finish_run(
            "r1",
            RunStatus::Failed,
            103,
            1030,
            Some("items: source: connection refused"),
            at(10),
        )
        .unwrap();

    store
        .start_run(&RunStart {
            run_id: "r2".into(),
            selectors: vec!["sales/orders/items".into()],
            started_at: at(20),
            ..Default::default()
        })
        .unwrap();
    store
        .finish_stream(
            "r2",
            &stream_run(items.clone(), RunStatus::Succeeded, 7, 20),
        )
        .unwrap();
    store
        .finish_run("r2", RunStatus::Succeeded, 7, 70, None, at(30))
        .unwrap();

    let runs = store.runs(10).unwrap();
    assert_eq!(
        runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        ["r2", "r1"]
    );
    let r1 = &runs[1];
    assert_eq!(r1.status, RunStatus::Failed);
    assert_eq!((r1.rows, r1.bytes), (103, 1030));
    assert_eq!(
        r1.error.as_deref(),
        Some("items: source: connection refused")
    );
    assert_eq!(r1.started_at, at(0));
    assert_eq!(r1.ended_at, Some(at(10)));
    assert_eq!(
        r1.streams,
        vec![
            stream_run(orders.clone(), RunStatus::Succeeded, 100, 0),
            stream_run(items.clone(), RunStatus::Failed, 3, 1),
        ]
    );
    assert_eq!(runs[0].selectors, vec!["sales/orders/items".to_string()]);
    assert_eq!(store.runs(1).unwrap().len(), 1);

    let last = store.last_stream_runs().unwrap();
    assert_eq!(
        last,
        vec![
            (
                stream_run(items, RunStatus::Succeeded, 7, 20),
                "r2".to_string()
            ),
            (
                stream_run(orders, RunStatus::Succeeded, 100, 0),
                "r1".to_string()
            ),
        ]
    );

    let json = serde_json::to_value(&runs[1]).unwrap();
    assert_eq!(json["status"], "failed");
    assert_eq!(json["streams"][1]["key"]["stream"], "items");
}

#[test]
fn unknown_runs_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStateStore::open(&path).unwrap();
    let err = store
        .finish_stream(
            "nope",
            &stream_run(key("a", "b", "c"), RunStatus::Succeeded, 1, 0),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "run `nope` is not in the state database {}; call start_run first",
            path.display()
        )
    );
    let err = store
        .finish_run("nope", RunStatus::Succeeded, 0, 0, None, at(0))
        .unwrap_err();
    assert!(matches!(err, StateError::UnknownRun { .. }));
}

#[test]
fn runs_left_running_are_marked_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
    for (id, t) in [("done", 0), ("killed", 10)] {
        store
            .start_run(&RunStart {
                run_id: id.into(),
                selectors: vec![],
                started_at: at(t),
                ..Default::default()
            })
            .unwrap();
    }
    store
        .finish_run("done", RunStatus::Succeeded, 0, 0, None, at(5))
        .unwrap();

    assert_eq!(store.mark_interrupted_runs(at(100)).unwrap(), 1);
    assert_eq!(store.mark_interrupted_runs(at(200)).unwrap(), 0);
    let runs = store.runs(10).unwrap();
    assert_eq!(runs[0].run_id, "killed");
    assert_eq!(runs[0].status, RunStatus::Interrupted);
    assert_eq!(runs[0].ended_at, Some(at(100)));
    assert_eq!(
        runs[0].error.as_deref(),
        Some("the weft process stopped before the run finished")
    );
    assert_eq!(runs[1].status, RunStatus::Succeeded);
}

#[test]
fn reopening_the_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/state.db");
    let k = key("sales", "orders", "orders");
    {
        let store = SqliteStateStore::open(&path).unwrap();
        store
            .put_state(&k, &Checkpoint(json!({"id": 42})), "r1", None)
            .unwrap();
        store
            .start_run(&RunStart {
                run_id: "r1".into(),
                selectors: vec![],
                started_at: at(0),
                ..Default::default()
            })
            .unwrap();
        store
            .finish_stream("r1", &stream_run(k.clone(), RunStatus::Succeeded, 5, 0))
            .unwrap();
        store
            .finish_run("r1", RunStatus::Succeeded, 5, 50, None, at(9))
            .unwrap();
    }
    let store = SqliteStateStore::open(&path).unwrap();
    let state = store.get_state(&k).unwrap().unwrap();
    assert_eq!(
        (state.checkpoint, state.generation),
        (Checkpoint(json!({"id": 42})), 1)
    );
    let runs = store.runs(10).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].streams.len(), 1);
    assert_eq!(
        store
            .put_state(&k, &Checkpoint(json!({"id": 43})), "r2", Some(1))
            .unwrap(),
        2
    );

    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
}

#[test]
fn a_database_from_a_newer_weft_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStateStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 7)
        .unwrap();
    let err = SqliteStateStore::open(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the state database {} has schema version 7, newer than this weft supports (4); upgrade weft",
            path.display()
        )
    );
}

#[test]
fn a_parent_that_is_a_file_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("weft-data");
    std::fs::write(&blocker, "not a folder").unwrap();
    let path = blocker.join("state.db");
    let err = SqliteStateStore::open(&path).unwrap_err();
    let text = err.to_string();
    let expected = format!(
        "cannot create the folder of the state database {}: ",
        path.display()
    );
    assert!(text.starts_with(&expected), "{text}");
    assert!(
        text.ends_with("check that `state.path` in weft.yaml points into a writable folder"),
        "{text}"
    );
}

#[test]
fn the_store_is_shareable_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn StateStore> =
        std::sync::Arc::new(SqliteStateStore::open(&dir.path().join("state.db")).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                let k = key("d", "p", &format!("s{i}"));
                let mut generation = None;
                for n in 0..20 {
                    generation = Some(
                        store
                            .put_state(&k, &Checkpoint(json!(n)), "r", generation)
                            .unwrap(),
                    );
                }
                generation
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Some(20));
    }
    assert_eq!(store.list_states().unwrap().len(), 4);
}

#[test]
fn policy_audits_are_kept_per_run_and_stream_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStateStore::open(&path).unwrap();
    store
        .start_run(&RunStart {
            run_id: "r1".into(),
            started_at: at(0),
            ..Default::default()
        })
        .unwrap();
    let orders = key("sales", "shop", "orders");
    let customers = key("sales", "shop", "customers");
    store
        .record_policy("r1", &orders, "d1", r#"{"columns":[]}"#)
        .unwrap();
    store
        .record_policy("r1", &customers, "d1", r#"{"columns":["email"]}"#)
        .unwrap();
    drop(store);
    let store = SqliteStateStore::open(&path).unwrap();
    assert_eq!(
        store.policy_audits("r1").unwrap(),
        [
            (
                "sales/shop/customers".to_string(),
                r#"{"columns":["email"]}"#.to_string()
            ),
            (
                "sales/shop/orders".to_string(),
                r#"{"columns":[]}"#.to_string()
            ),
        ]
    );
    assert!(store.policy_audits("r2").unwrap().is_empty());
}

fn product(domain: &str, name: &str) -> weft_state::ProductKey {
    weft_state::ProductKey {
        domain: weft_core::DomainName::new(domain).unwrap(),
        product: weft_core::ProductName::new(name).unwrap(),
    }
}

#[test]
fn product_runs_skips_and_interruptions_are_per_product() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
    let (shop, ledger) = (product("sales", "shop"), product("finance", "ledger"));
    for (id, p, t) in [("a", &shop, 0), ("b", &ledger, 1)] {
        store
            .start_run(&RunStart {
                run_id: id.into(),
                started_at: at(t),
                products: vec![p.clone()],
                trigger: weft_state::Trigger::Schedule,
                scheduled_at: Some(at(t)),
                ..Default::default()
            })
            .unwrap();
    }
    store
        .record_skipped(
            &RunStart {
                run_id: "c".into(),
                started_at: at(2),
                products: vec![shop.clone()],
                trigger: weft_state::Trigger::Schedule,
                scheduled_at: Some(at(2)),
                ..Default::default()
            },
            "run a was still running",
        )
        .unwrap();
    // Holding only the ledger's lock: the shop's run (alive elsewhere) stays running.
    assert_eq!(
        store
            .mark_interrupted_product_runs(std::slice::from_ref(&ledger), at(3))
            .unwrap(),
        1
    );
    let runs = store.runs(10).unwrap();
    let status = |id: &str| runs.iter().find(|r| r.run_id == id).unwrap().status;
    assert_eq!(status("a"), RunStatus::Running);
    assert_eq!(status("b"), RunStatus::Interrupted);
    assert_eq!(status("c"), RunStatus::Skipped);
    let c = runs.iter().find(|r| r.run_id == "c").unwrap();
    assert_eq!(c.error.as_deref(), Some("run a was still running"));
    assert_eq!(c.products, vec![shop.clone()]);
    assert_eq!(c.trigger, weft_state::Trigger::Schedule);

    let never = product("hr", "people");
    let last = store
        .product_last_runs(&[ledger.clone(), never, shop.clone()])
        .unwrap();
    let ids: Vec<(String, &str)> = last
        .iter()
        .map(|l| (l.product.to_string(), l.run_id.as_str()))
        .collect();
    assert_eq!(
        ids,
        vec![("finance/ledger".into(), "b"), ("sales/shop".into(), "c")]
    );
}

#[test]
fn api_tokens_are_stored_by_hash_used_and_revoked() {
    use weft_state::{NewToken, TokenScope};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
    let token = NewToken {
        id: "abc123".into(),
        name: "sales-ci".into(),
        scope: TokenScope::Domain("sales".parse().unwrap()),
        hash: "f".repeat(64),
        created_at: at(0),
    };
    store.create_token(&token).unwrap();
    assert!(matches!(
        store.create_token(&NewToken { id: "other".into(), hash: "e".repeat(64), ..token.clone() }),
        Err(StateError::TokenNameTaken { name }) if name == "sales-ci"
    ));
    assert_eq!(store.use_token(&"0".repeat(64), at(1)).unwrap(), None);
    let used = store.use_token(&"f".repeat(64), at(5)).unwrap().unwrap();
    assert_eq!(used.scope, TokenScope::Domain("sales".parse().unwrap()));
    assert_eq!(store.tokens().unwrap()[0].last_used_at, Some(at(5)));
    assert!(store.revoke_token("abc123", at(9)).unwrap());
    assert!(
        !store.revoke_token("sales-ci", at(10)).unwrap(),
        "already revoked"
    );
    assert_eq!(store.use_token(&"f".repeat(64), at(11)).unwrap(), None);
    assert_eq!(store.tokens().unwrap()[0].revoked_at, Some(at(9)));
}

#[test]
fn product_history_pages_newest_first_and_stream_history_finds_last_success() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
    for i in 0..5i64 {
        let product = if i % 2 == 0 { "orders" } else { "people" };
        let id = format!("run{i}");
        store
            .start_run(&RunStart {
                run_id: id.clone(),
                selectors: vec![format!("sales/{product}")],
                started_at: at(i * 100),
                ..Default::default()
            })
            .unwrap();
        let status = if i == 4 {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        store
            .finish_stream(
                &id,
                &stream_run(key("sales", product, "s"), status, 10 + i as u64, i * 100),
            )
            .unwrap();
        store
            .finish_run(&id, status, 10, 100, None, at(i * 100 + 5))
            .unwrap();
    }
    let ids =
        |runs: Vec<weft_state::RunRecord>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.product_runs("sales", "orders", None, 2).unwrap()),
        ["run4", "run2"]
    );
    assert_eq!(
        ids(store
            .product_runs("sales", "orders", Some("run2"), 2)
            .unwrap()),
        ["run0"]
    );
    assert_eq!(
        ids(store.product_runs("sales", "people", None, 10).unwrap()),
        ["run3", "run1"]
    );
    assert!(store
        .product_runs("hr", "orders", None, 10)
        .unwrap()
        .is_empty());
    assert_eq!(store.run("run3").unwrap().unwrap().streams[0].rows, 13);
    assert_eq!(store.run("nope").unwrap(), None);
    let h = store.stream_history(&key("sales", "orders", "s")).unwrap();
    let (last, run_id) = h.last_run.unwrap();
    assert_eq!((last.status, run_id.as_str()), (RunStatus::Failed, "run4"));
    assert_eq!(h.last_success, Some(at(205)));
}
