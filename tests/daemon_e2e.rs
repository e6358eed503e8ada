//! `weft daemon` against the real binary: second-granularity schedules on the sample source
//! and PostgreSQL, single-flight (skipped triggers in the history), a manual `weft sync run`
//! of a running product refused, retries with growing backoff, misfires run once, SIGTERM and
//! kill -9 mid-run, a broken edit that keeps the old configuration running. Every wait is for
//! an event (a log line, a pausepoint, a history entry), never a guessed sleep.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use weft_testkit::daemon::runs_with;
use weft_testkit::TestProject;

const BIN: &str = env!("CARGO_BIN_EXE_weft");
/// A safety net for a broken build, not a timing assumption: every wait is for an event.
const LIMIT: Duration = Duration::from_secs(120);

fn project(daemon: &str) -> TestProject {
    let daemon = if daemon.is_empty() {
        String::new()
    } else {
        format!("daemon:\n{daemon}")
    };
    TestProject::new(
        BIN,
        &format!(
            "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n  commit_interval: 1ms\n{daemon}"
        ),
    )
}

fn sample_product(name: &str, scale: u64, write: &str, timing: &str) -> String {
    format!(
        "product: {name}\ndomain: sales\nowner: o@example.com\nsource:\n  connector: sample\n  config: {{ scale: {scale}, batch_size: 5000 }}\n{timing}\nstreams:\n  - name: orders\n    mode: full_refresh\n    write: {write}\n"
    )
}

fn time(run: &serde_json::Value, field: &str) -> DateTime<Utc> {
    run[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {run}"))
        .parse()
        .unwrap()
}

/// The history read from the state store itself (while the project does not load, `weft
/// sync history` cannot).
fn stored_history(p: &TestProject) -> Vec<serde_json::Value> {
    use weft_state::StateStore;
    let store = weft_state::SqliteStateStore::open(&p.path().join(".weft/state.db")).unwrap();
    let runs = store.runs(10_000).unwrap();
    serde_json::from_value(serde_json::to_value(runs).unwrap()).unwrap()
}

#[test]
fn runs_when_due_single_flight_records_skips_and_a_manual_run_of_it_is_refused() {
    let p = project("  max_concurrent_runs: 2\n");
    p.product(
        "sales",
        "shop",
        &sample_product("shop", 1000, "overwrite", "schedule: \"* * * * * *\""),
    );
    p.product(
        "sales",
        "ledger",
        &sample_product("ledger", 10, "overwrite", ""),
    );
    let release = p.path().join("release");
    let mut daemon = p.start_daemon(
        &[(
            "WEFT_PAUSEPOINT",
            format!("finishing:{}", release.display()),
        )],
        LIMIT,
    );
    // The first scheduled run is held while it publishes; the ticks meanwhile are skipped.
    daemon.wait_for_line("pausepoint `finishing` reached", LIMIT);
    let history = p.wait_for_history(LIMIT, "two skipped triggers", |h| {
        runs_with(h, "skipped", Some("schedule")).len() >= 2
    });
    let running = runs_with(&history, "running", Some("schedule"));
    assert_eq!(running.len(), 1, "{history:#?}");
    let run_id = running[0]["run_id"].as_str().unwrap().to_string();
    for skipped in runs_with(&history, "skipped", None) {
        assert_eq!(
            skipped["error"],
            format!("skipped: product sales/shop was still running (run {run_id})")
        );
        assert_eq!(skipped["products"][0]["product"], "shop");
    }

    // A person's run of the busy product is refused, naming the daemon's run; another
    // product runs beside the daemon.
    let refused = p.run_within(LIMIT, ["sync", "run", "--no-progress", "sales/shop"]);
    refused.expect_code(1);
    let stderr = refused.stderr();
    assert!(
        stderr.contains("product sales/shop is being run by `weft daemon` (pid ")
            && stderr.contains(&format!("run {run_id})")),
        "{stderr}"
    );
    p.run_within(LIMIT, ["sync", "run", "--no-progress", "sales/ledger"])
        .expect_code(0);

    std::fs::write(&release, "").unwrap();
    let history = p.wait_for_history(LIMIT, "three scheduled runs succeeded", |h| {
        runs_with(h, "succeeded", Some("schedule")).len() >= 3
    });
    let done = runs_with(&history, "succeeded", Some("schedule"));
    assert_eq!(done[0]["run_id"], run_id.as_str());
    // Single-flight: the scheduled runs never overlap, and each started when it was due.
    for pair in done.windows(2) {
        assert!(
            time(pair[0], "ended_at") <= time(pair[1], "started_at"),
            "{pair:#?}"
        );
    }
    for run in &done {
        let lag = time(run, "started_at") - time(run, "scheduled_at");
        assert!(
            lag >= chrono::Duration::zero() && lag < chrono::Duration::seconds(1),
            "lag {lag} in {run}"
        );
    }
    assert_eq!(p.id_counts("sales", "shop", "orders"), (1000, 1000));

    daemon.signal(libc::SIGTERM);
    let out = daemon.finish(LIMIT);
    out.expect_code(0);
    let stderr = out.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    // JSON lines; those of a run carry its product, run and stream ids.
    for line in stderr.lines().filter(|l| l.contains("read complete")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let spans = v["spans"].as_array().unwrap();
        assert!(spans.iter().any(|s| s["product"] == "sales/shop"), "{line}");
        assert!(spans.iter().any(|s| s["run_id"].is_string()), "{line}");
        assert!(spans.iter().any(|s| s["stream"] == "orders"), "{line}");
    }
}

#[test]
fn a_failing_source_is_retried_with_growing_backoff_then_marked_unhealthy() {
    // A port nothing listens on: connection refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = project("  retries: 3\n  retry_backoff: 200ms\n  retry_backoff_max: 10s\n");
    p.product(
        "ops",
        "db",
        &format!(
            "product: db\ndomain: ops\nowner: o@example.com\nsource:\n  connector: postgres\n  config: {{ host: \"127.0.0.1\", port: {port}, user: postgres, database: test }}\nschedule: \"* * * * * *\"\nstreams:\n  - name: public.accounts\n"
        ),
    );
    let mut daemon = p.start_daemon(&[], LIMIT);
    daemon.wait_for_line(
        "product marked unhealthy: 4 failure(s) in a row (3 retries)",
        LIMIT,
    );
    let history = p.wait_for_history(LIMIT, "three failed retries", |h| {
        runs_with(h, "failed", Some("retry")).len() >= 3
    });
    let failed = runs_with(&history, "failed", None);
    assert_eq!(failed[0]["trigger"], "schedule", "{failed:#?}");
    let attempts: Vec<DateTime<Utc>> = failed[..4].iter().map(|r| time(r, "started_at")).collect();
    let gaps: Vec<i64> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    // 200 ms, then about twice as long each time (jitter adds up to one more delay).
    assert!(gaps[0] >= 200, "{gaps:?}");
    assert!(gaps[0] < gaps[1] && gaps[1] < gaps[2], "{gaps:?}");
    for run in &failed[..4] {
        let error = run["error"].as_str().unwrap();
        assert!(error.contains(&port.to_string()), "{error}");
    }
    daemon.signal(libc::SIGTERM);
    daemon.finish(LIMIT).expect_code(0);
}

#[test]
fn a_missed_schedule_runs_once_on_start_and_misfire_skip_waits() {
    let p = project("");
    p.product(
        "sales",
        "shop",
        &sample_product("shop", 10, "overwrite", "schedule: \"@daily\""),
    );
    p.product(
        "sales",
        "quiet",
        &sample_product(
            "quiet",
            10,
            "overwrite",
            "schedule: \"@daily\"\nmisfire: skip",
        ),
    );
    // Both last ran three days ago: several daily runs were missed.
    let store = weft_state::SqliteStateStore::open(&p.path().join(".weft/state.db")).unwrap();
    let long_ago = Utc::now() - chrono::Duration::days(3);
    for name in ["shop", "quiet"] {
        use weft_state::StateStore;
        let run_id = format!("old-{name}");
        store
            .start_run(&weft_state::RunStart {
                run_id: run_id.clone(),
                started_at: long_ago,
                products: vec![weft_state::ProductKey {
                    domain: weft_core::DomainName::new("sales").unwrap(),
                    product: weft_core::ProductName::new(name).unwrap(),
                }],
                trigger: weft_state::Trigger::Schedule,
                scheduled_at: Some(long_ago),
                ..Default::default()
            })
            .unwrap();
        store
            .finish_run(
                &run_id,
                weft_state::RunStatus::Succeeded,
                10,
                0,
                None,
                long_ago,
            )
            .unwrap();
    }
    drop(store);
    let daemon = p.start_daemon(&[], LIMIT);
    let history = p.wait_for_history(LIMIT, "the misfire run", |h| {
        !runs_with(h, "succeeded", Some("misfire")).is_empty()
    });
    daemon.signal(libc::SIGTERM);
    let out = daemon.finish(LIMIT);
    out.expect_code(0);
    assert!(
        out.stderr().contains("skipped (`misfire: skip`)"),
        "{}",
        out.stderr()
    );
    let history = p.history().into_iter().chain(history).collect::<Vec<_>>();
    let misfires: HashSet<&str> = runs_with(&history, "succeeded", Some("misfire"))
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(misfires.len(), 1, "{history:#?}");
    let run = runs_with(&history, "succeeded", Some("misfire"))[0];
    assert_eq!(run["selectors"][0], "sales/shop");
    assert_eq!(p.id_counts("sales", "shop", "orders"), (10, 10));
    assert!(!p.stream_dir("sales", "quiet", "orders").exists());
}

#[test]
fn sigterm_mid_run_exits_0_and_nothing_uncommitted_is_visible() {
    let p = project("  shutdown_timeout: 200ms\n");
    p.product(
        "sales",
        "shop",
        &sample_product("shop", 200_000, "overwrite", "schedule: \"* * * * * *\""),
    );
    let (mut daemon, release) = p.start_daemon_paused_at("after_commit", LIMIT);
    daemon.signal(libc::SIGTERM);
    daemon.wait_for_line("shutdown deadline passed", LIMIT);
    std::fs::write(&release, "").unwrap();
    let out = daemon.finish(LIMIT);
    out.expect_code(0);
    assert!(!out.stderr().contains("panicked"), "{}", out.stderr());
    // The overwrite never published: readers see no rows, not a part of the table.
    let dir = p.stream_dir("sales", "shop", "orders");
    assert!(!dir.exists() || p.read_stream("sales", "shop", "orders").num_rows() == 0);
    let history = p.history();
    assert_eq!(
        runs_with(&history, "cancelled", None).len(),
        1,
        "{history:#?}"
    );
    assert!(runs_with(&history, "running", None).is_empty());
    // The next run resumes the staged generation: every row once.
    p.run_within(LIMIT, ["sync", "run", "--no-progress"])
        .expect_code(0);
    assert_eq!(p.id_counts("sales", "shop", "orders"), (200_000, 200_000));
}

#[test]
fn kill_9_mid_run_then_restart_marks_it_interrupted_and_resumes_without_loss() {
    let p = project("");
    p.product(
        "sales",
        "shop",
        &sample_product("shop", 200_000, "append", "every: 1s"),
    );
    // An interval waits one period after start; the first run comes a second later.
    let (daemon, _release) = p.start_daemon_paused_at("after_commit", LIMIT);
    daemon.signal(libc::SIGKILL);
    daemon.finish(LIMIT);
    let killed = runs_with(&p.history(), "running", None)[0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();

    let daemon = p.start_daemon(&[], LIMIT);
    let history = p.wait_for_history(LIMIT, "a run after the kill", |h| {
        !runs_with(h, "succeeded", None).is_empty()
    });
    daemon.signal(libc::SIGTERM);
    daemon.finish(LIMIT).expect_code(0);
    let interrupted = runs_with(&history, "interrupted", None);
    assert_eq!(interrupted.len(), 1, "{history:#?}");
    assert_eq!(interrupted[0]["run_id"], killed.as_str());
    // The first run after the kill appends from the killed run's last commit on; the schedule
    // may start more full runs before SIGTERM lands (each appends every row again, and a run in
    // flight at SIGTERM finishes). So every id is there once per succeeded run, never more or
    // less.
    let succeeded = runs_with(&stored_history(&p), "succeeded", None).len();
    let batch = p.read_stream("sales", "shop", "orders");
    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap();
    let mut counts = std::collections::HashMap::<i64, usize>::new();
    for id in ids.iter().flatten() {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(counts.len(), 200_000, "distinct ids");
    let off: Vec<(i64, usize)> = counts
        .into_iter()
        .filter(|&(_, n)| n != succeeded)
        .take(5)
        .collect();
    assert!(
        off.is_empty(),
        "ids not there once per succeeded run ({succeeded}): {off:?}"
    );
}

#[test]
fn a_postgres_product_runs_on_a_second_schedule() {
    let db = weft_testkit::pg::PgTestDb::create("daemon");
    db.sql("CREATE TABLE accounts (id bigint PRIMARY KEY, name text); INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 50) g;");
    let p = project("");
    p.product(
        "ops",
        "db",
        &format!(
            "product: db\ndomain: ops\nowner: o@example.com\nsource:\n  connector: postgres\n  config: {}\nschedule: \"*/1 * * * * *\"\nstreams:\n  - name: public.accounts\n",
            db.pg_config()
        ),
    );
    let daemon = p.start_daemon(&[], LIMIT);
    p.wait_for_history(LIMIT, "two scheduled runs", |h| {
        runs_with(h, "succeeded", Some("schedule")).len() >= 2
    });
    db.sql("INSERT INTO accounts VALUES (51, 'new')");
    let before = runs_with(&p.history(), "succeeded", Some("schedule")).len();
    p.wait_for_history(LIMIT, "a run after the insert", |h| {
        runs_with(h, "succeeded", Some("schedule")).len() >= before + 2
    });
    daemon.signal(libc::SIGTERM);
    daemon.finish(LIMIT).expect_code(0);
    let batch = p.read_stream("ops", "db", "public.accounts");
    assert_eq!(batch.num_rows(), 51);
}

#[test]
fn a_broken_edit_keeps_the_old_configuration_running_and_logs_the_error() {
    let p = project("");
    let good = sample_product("shop", 10, "overwrite", "schedule: \"* * * * * *\"");
    p.product("sales", "shop", &good);
    let mut daemon = p.start_daemon(&[], LIMIT);
    p.wait_for_history(LIMIT, "a scheduled run", |h| {
        !runs_with(h, "succeeded", Some("schedule")).is_empty()
    });
    p.product("sales", "shop", &good.replace("schedule:", "schedul:"));
    let line = daemon.wait_for_line("configuration change rejected", LIMIT);
    assert!(line.contains("domains/sales/shop.yaml"), "{line}");
    assert!(line.contains("schedul"), "{line}");
    let before = runs_with(&stored_history(&p), "succeeded", Some("schedule")).len();
    let deadline = std::time::Instant::now() + LIMIT;
    while runs_with(&stored_history(&p), "succeeded", Some("schedule")).len() < before + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no runs after the broken edit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A valid edit is taken: the product stops being scheduled.
    p.product(
        "sales",
        "shop",
        &good.replace("schedule: \"* * * * * *\"", ""),
    );
    daemon.wait_for_line("configuration reloaded: 1 product(s)", LIMIT);
    daemon.signal(libc::SIGTERM);
    daemon.finish(LIMIT).expect_code(0);
}
