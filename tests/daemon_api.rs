//! The HTTP API end to end through the real `weft daemon --listen 127.0.0.1:0` (its address
//! read from its log), with tokens made by the real `weft token` CLI: every kind of caller;
//! triggered runs whose rows are read back from the lake; pause and resume against a
//! second-granularity schedule; the metrics a user would graph, CDC slot lag among them; the
//! kept logs of a failing run, secrets redacted; SIGTERM while a triggered run is in flight.
//! Every wait is for an event (a log line, a pausepoint, an API answer), never a guessed sleep.

use std::time::Duration;

use serde_json::Value;
use weft_testkit::control::create_token;
use weft_testkit::http::{bearer, code, ApiClient, Method, StatusCode};
use weft_testkit::TestProject;

const BIN: &str = env!("CARGO_BIN_EXE_weft");
/// A safety net for a broken build, not a timing assumption: every wait is for an event.
const LIMIT: Duration = Duration::from_secs(120);
/// The database name of the broken product, given as a secret: it must never come back.
const SECRET: &str = "weft_secret_db_4711";

fn project(daemon: &str) -> TestProject {
    TestProject::new(
        BIN,
        &format!(
            "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n  commit_interval: 1ms\ndaemon:\n{daemon}"
        ),
    )
}

fn sample(domain: &str, name: &str, scale: u64, extra: &str, streams: &str) -> String {
    format!(
        "product: {name}\ndomain: {domain}\nowner: {domain}-team@example.com\ndescription: {name} of {domain}\nsource:\n  connector: sample\n  config: {{ scale: {scale}, batch_size: 5000 }}\n{extra}streams:\n{streams}"
    )
}

/// `sales/orders` (three streams, run on request), `sales/ticker` and `hr/clock` (every
/// second), `sales/broken` (a database that does not exist, named by a secret).
fn mesh() -> TestProject {
    let p = project("  retries: 0\n");
    p.product(
        "sales",
        "orders",
        &sample(
            "sales",
            "orders",
            2000,
            "",
            "  - name: customers\n  - name: orders\n    mode: incremental\n    write: append_dedup\n    primary_key: [id]\n    cursor: updated_at\n  - name: products\n",
        ),
    );
    let every_second = "schedule: \"* * * * * *\"\n";
    p.product(
        "sales",
        "ticker",
        &sample("sales", "ticker", 100, every_second, "  - name: products\n"),
    );
    p.product(
        "hr",
        "clock",
        &sample("hr", "clock", 100, every_second, "  - name: products\n"),
    );
    p.product(
        "sales",
        "broken",
        "product: broken\ndomain: sales\nowner: sales-team@example.com\ndescription: A database that is not there\nsource:\n  connector: postgres\n  config: { host: \"127.0.0.1\", port: 5432, user: postgres, database: \"${BROKEN_DB:-weft_secret_db_4711}\" }\nstreams:\n  - name: public.things\n",
    );
    p
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|v| match field {
            "domain/product" => format!(
                "{}/{}",
                v["domain"].as_str().unwrap(),
                v["product"].as_str().unwrap()
            ),
            f => v[f].as_str().unwrap().to_string(),
        })
        .collect()
}

/// The value of the metric line that starts with `series` (name and labels), if any.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{series} {v}")))
}

/// Triggers a run of `product` (`domain/product[?stream=…]`) and waits until the API shows
/// it ended; returns its run view.
async fn run_through_the_api(c: &ApiClient, product: &str, auth: &str) -> Value {
    let (product, query) = product.split_once('?').unwrap_or((product, ""));
    let path = format!("/api/v1/products/{product}/runs?{query}");
    let (s, b) = c.call(Method::POST, &path, Some(auth)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "trigger {path}: {b}");
    let run_id = b["run_id"].as_str().expect("a run id").to_string();
    // The run is recorded once the engine starts it, a moment after the trigger answers.
    let ended = |page: &Value| {
        page["runs"]
            .as_array()
            .and_then(|runs| runs.iter().find(|r| r["run_id"] == run_id.as_str()))
            .filter(|r| r["status"] != "running")
            .cloned()
    };
    let page = c
        .wait_for(
            &format!("/api/v1/products/{product}/runs?limit=50"),
            auth,
            "an ended run",
            |page| ended(page).is_some(),
        )
        .await;
    ended(&page).unwrap()
}

async fn run_count(c: &ApiClient, product: &str, auth: &str) -> usize {
    let (s, b) = c
        .call(
            Method::GET,
            &format!("/api/v1/products/{product}/runs?limit=500"),
            Some(auth),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["runs"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_each_kind_of_token_runs_pauses_and_reports() {
    let p = mesh();
    let sales = bearer(&create_token(
        &p,
        &["--domain", "sales", "--name", "sales-ci"],
    ));
    let hr = bearer(&create_token(&p, &["--domain", "hr"]));
    let admin = bearer(&create_token(&p, &["--admin", "--name", "ops"]));
    let revoked = bearer(&create_token(&p, &["--domain", "sales", "--name", "old"]));
    p.run(["token", "revoke", "old"]).expect_code(0);
    let (daemon, base) = p.start_daemon_listening(&[("BROKEN_DB", SECRET.to_string())], LIMIT);
    let c = ApiClient::new(base);

    // Health answers anyone; everything else needs a live, well-formed token.
    let (s, b) = c.call(Method::GET, "/health", None).await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ok")));
    for path in [
        "/ready",
        "/api/v1/domains",
        "/api/v1/products",
        "/api/v1/products/sales/orders",
        "/api/v1/products/sales/orders/runs",
        "/metrics",
    ] {
        for (auth, expected) in [
            (None, "missing_token"),
            (Some("Bearer weft_nonsense"), "malformed_token"),
            (Some(revoked.as_str()), "invalid_token"),
        ] {
            let (s, b) = c.call(Method::GET, path, auth).await;
            assert_eq!(
                (s, code(&b)),
                (StatusCode::UNAUTHORIZED, expected),
                "{path}: {b}"
            );
        }
    }
    // A token made while the daemon runs works at once.
    let late = bearer(&create_token(&p, &["--domain", "sales", "--name", "late"]));
    let (s, b) = c.call(Method::GET, "/ready", Some(&late)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, serde_json::json!({"ready": true, "config_error": null}));

    // Each token sees its own domain; the admin sees all.
    let (_, b) = c.call(Method::GET, "/api/v1/domains", Some(&hr)).await;
    assert_eq!(names(&b, "name"), ["hr"]);
    assert_eq!(b[0]["products"], serde_json::json!(["clock"]));
    let (_, b) = c.call(Method::GET, "/api/v1/domains", Some(&admin)).await;
    assert_eq!(names(&b, "name"), ["hr", "sales"]);
    let (_, b) = c.call(Method::GET, "/api/v1/products", Some(&sales)).await;
    assert_eq!(
        names(&b, "domain/product"),
        ["sales/broken", "sales/orders", "sales/ticker"]
    );
    let ticker = b
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["product"] == "ticker")
        .unwrap();
    assert_eq!(ticker["schedule"], "* * * * * *");
    assert!(ticker["next_run"].is_string(), "{ticker}");
    let (_, b) = c.call(Method::GET, "/api/v1/products", Some(&hr)).await;
    assert_eq!(names(&b, "domain/product"), ["hr/clock"]);

    // Another domain's product answers exactly as one that does not exist.
    for (method, path) in [
        (Method::GET, "/api/v1/products/sales/orders"),
        (Method::GET, "/api/v1/products/sales/orders/runs"),
        (Method::POST, "/api/v1/products/sales/orders/runs"),
        (Method::POST, "/api/v1/products/sales/orders/pause"),
        (Method::POST, "/api/v1/products/sales/orders/resume"),
    ] {
        let (s, b) = c.call(method.clone(), path, Some(&hr)).await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
        let missing = path.replace("sales/orders", "sales/nothing");
        let (s2, b2) = c.call(method, &missing, Some(&hr)).await;
        assert_eq!((s2, &b2), (s, &b), "{path}");
        assert!(!b.to_string().contains("orders"), "{b}");
    }

    // A triggered run lands its rows; the history and the product show it.
    let run = run_through_the_api(&c, "sales/orders", &sales).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let rows: Vec<(String, u64)> = run["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stream"].as_str().unwrap().into(),
                s["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("customers".to_string(), 200),
            ("orders".to_string(), 2000),
            ("products".to_string(), 20)
        ]
    );
    assert_eq!(run["rows"], 2220);
    assert_eq!(p.id_counts("sales", "orders", "orders"), (2000, 2000));
    assert_eq!(p.id_counts("sales", "orders", "customers"), (200, 200));
    let history = p.history();
    let recorded = history
        .iter()
        .find(|r| r["run_id"] == run_id.as_str())
        .unwrap();
    assert_eq!(recorded["trigger"], "api", "{recorded}");
    let (_, d) = c
        .call(Method::GET, "/api/v1/products/sales/orders", Some(&sales))
        .await;
    assert_eq!(d["freshness"], "fresh", "{d}");
    assert!(d["running"].is_null(), "{d}");
    let orders = &d["stream_details"][1];
    assert_eq!(orders["last_run"]["run_id"], run_id.as_str(), "{d}");
    assert!(orders["checkpoint"].is_object(), "{d}");

    // One stream alone; an unknown stream is refused.
    let one = run_through_the_api(&c, "sales/orders?stream=products", &admin).await;
    assert_eq!(one["status"], "succeeded", "{one}");
    assert_eq!(names(&one["streams"], "stream"), ["products"]);
    let (s, b) = c
        .call(
            Method::POST,
            "/api/v1/products/sales/orders/runs?stream=nope",
            Some(&sales),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "unknown_stream"));

    // Paused: not scheduled while `hr/clock` runs on the same schedule, and a trigger is
    // refused; resumed: scheduled again.
    c.wait_for(
        "/api/v1/products/sales/ticker/runs",
        &sales,
        "a scheduled run",
        |b| b["runs"].as_array().is_some_and(|r| !r.is_empty()),
    )
    .await;
    let (s, b) = c
        .call(
            Method::POST,
            "/api/v1/products/sales/ticker/pause",
            Some(&sales),
        )
        .await;
    assert_eq!(
        (s, &b["paused"]),
        (StatusCode::OK, &Value::Bool(true)),
        "{b}"
    );
    c.settle("sales/ticker", &sales).await;
    let paused_runs = run_count(&c, "sales/ticker", &sales).await;
    let clock_runs = run_count(&c, "hr/clock", &admin).await;
    c.wait_for(
        "/api/v1/products/hr/clock/runs?limit=500",
        &hr,
        "3 more runs",
        |b| b["runs"].as_array().unwrap().len() >= clock_runs + 3,
    )
    .await;
    assert_eq!(run_count(&c, "sales/ticker", &sales).await, paused_runs);
    let (s, b) = c
        .call(
            Method::POST,
            "/api/v1/products/sales/ticker/runs",
            Some(&sales),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "paused"), "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("resume"),
        "{b}"
    );
    let (_, b) = c
        .call(Method::GET, "/api/v1/products/sales/ticker", Some(&sales))
        .await;
    assert_eq!(b["paused"], true, "{b}");
    let (s, b) = c
        .call(
            Method::POST,
            "/api/v1/products/sales/ticker/resume",
            Some(&admin),
        )
        .await;
    assert_eq!(
        (s, &b["paused"]),
        (StatusCode::OK, &Value::Bool(false)),
        "{b}"
    );
    c.wait_for(
        "/api/v1/products/sales/ticker/runs?limit=500",
        &sales,
        "a run after resume",
        |b| b["runs"].as_array().unwrap().len() > paused_runs,
    )
    .await;

    // A failing run: the API tells why, from the logs the daemon kept, with the secret
    // redacted; only the product's own domain (or an admin) reads them.
    let failed = run_through_the_api(&c, "sales/broken", &sales).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let failed_id = failed["run_id"].as_str().unwrap();
    let logs_path = format!("/api/v1/products/sales/broken/runs/{failed_id}/logs");
    let (s, logs) = c.call(Method::GET, &logs_path, Some(&sales)).await;
    assert_eq!(s, StatusCode::OK, "{logs}");
    assert_eq!(logs["run_id"], failed_id);
    let lines = logs["lines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "error"
                && l["message"].as_str().unwrap().contains("does not exist")),
        "no error line saying why: {logs:#}"
    );
    assert!(!logs.to_string().contains(SECRET), "{logs}");
    assert!(
        logs.to_string().contains("***"),
        "the secret is shown redacted: {logs}"
    );
    let (s, b) = c.call(Method::GET, &logs_path, Some(&hr)).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, b) = c
        .call(
            Method::GET,
            "/api/v1/products/sales/broken/runs/nope/logs",
            Some(&admin),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"));
    let (_, b) = c
        .call(Method::GET, "/api/v1/products/sales/broken", Some(&sales))
        .await;
    assert_eq!(b["freshness"], "failing", "{b}");
    assert!(!b.to_string().contains(SECRET), "{b}");
    // The logs of a successful run are kept too.
    let (s, b) = c
        .call(
            Method::GET,
            &format!("/api/v1/products/sales/orders/runs/{run_id}/logs"),
            Some(&admin),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(!b["lines"].as_array().unwrap().is_empty(), "{b}");

    // Metrics: admin only; what a user would graph.
    for auth in [&sales, &hr] {
        let (s, b) = c.call(Method::GET, "/metrics", Some(auth)).await;
        assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "forbidden"));
    }
    let (s, text) = c.call(Method::GET, "/metrics", Some(&admin)).await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().unwrap().to_string();
    let orders = r#"domain="sales",product="orders""#;
    for (series, value) in [
        (
            format!(r#"weft_runs_total{{{orders},status="succeeded"}}"#),
            2.0,
        ),
        (
            format!(r#"weft_rows_synced_total{{{orders},stream="orders"}}"#),
            2000.0,
        ),
        (
            format!(r#"weft_rows_synced_total{{{orders},stream="products"}}"#),
            40.0,
        ),
        (
            format!(r#"weft_run_duration_seconds_count{{{orders}}}"#),
            2.0,
        ),
        (format!(r#"weft_runs_in_flight{{{orders}}}"#), 0.0),
        (
            r#"weft_runs_total{domain="sales",product="broken",status="failed"}"#.into(),
            1.0,
        ),
        (
            r#"weft_run_failures_total{domain="sales",product="broken"}"#.into(),
            1.0,
        ),
    ] {
        assert_eq!(metric(&text, &series), Some(value), "{series} in\n{text}");
    }
    let bytes = metric(
        &text,
        &format!(r#"weft_bytes_synced_total{{{orders},stream="orders"}}"#),
    );
    assert!(bytes.is_some_and(|b| b > 2000.0), "{text}");
    let fresh = metric(
        &text,
        &format!("weft_seconds_since_last_success{{{orders}}}"),
    );
    assert!(fresh.is_some_and(|s| (0.0..600.0).contains(&s)), "{text}");
    let lag = metric(
        &text,
        r#"weft_scheduler_lag_seconds{domain="hr",product="clock"}"#,
    );
    assert!(lag.is_some_and(|l| (0.0..60.0).contains(&l)), "{text}");
    assert!(
        metric(
            &text,
            r#"weft_runs_total{domain="hr",product="clock",status="succeeded"}"#
        )
        .is_some_and(|n| n >= 3.0),
        "{text}"
    );
    assert!(!text.contains(SECRET));

    daemon.signal(libc::SIGTERM);
    let out = daemon.finish(LIMIT);
    out.expect_code(0);
    assert!(!out.all().contains(SECRET), "{}", out.all());
}

/// A daemon with `sales/shop` (20,000 rows in batches of 5,000), whose API-triggered run is
/// held at its first commit until `release` exists, and `sales/later` (run on request).
/// `daemon` is the daemon settings block.
struct Held {
    p: TestProject,
    daemon: weft_testkit::Running,
    base: String,
    admin: String,
    release: std::path::PathBuf,
    run_id: String,
}

async fn held_triggered_run(daemon: &str) -> Held {
    let p = project(daemon);
    p.product(
        "sales",
        "later",
        &sample("sales", "later", 100, "", "  - name: products\n"),
    );
    p.product(
        "sales",
        "shop",
        &sample(
            "sales",
            "shop",
            20_000,
            "",
            "  - name: orders\n    mode: full_refresh\n    write: overwrite\n",
        ),
    );
    let admin = bearer(&create_token(&p, &["--admin"]));
    let release = p.path().join("release");
    let spec = format!("after_commit:{}", release.display());
    let (mut daemon, base) = p.start_daemon_listening(&[("WEFT_PAUSEPOINT", spec)], LIMIT);
    let c = ApiClient::new(base.clone());
    let (s, b) = c
        .call(
            Method::POST,
            "/api/v1/products/sales/shop/runs",
            Some(&admin),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let run_id = b["run_id"].as_str().unwrap().to_string();
    daemon.wait_for_line("pausepoint `after_commit` reached", LIMIT);
    Held {
        p,
        daemon,
        base,
        admin,
        release,
        run_id,
    }
}

/// With one run at a time, a trigger of a second product is accepted and waits: the run id it
/// answered is `pending` (never a 404) until the slot frees, then the run goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_for_the_concurrency_limit_is_pending_under_the_id_the_trigger_gave() {
    let Held {
        p,
        daemon,
        base,
        admin,
        release,
        run_id: held,
    } = held_triggered_run("  max_concurrent_runs: 1\n").await;
    let c = ApiClient::new(base);
    let (s, b) = c
        .call(
            Method::POST,
            "/api/v1/products/sales/later/runs",
            Some(&admin),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let waiting = b["run_id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/products/sales/later/runs/{waiting}");
    let (s, b) = c.call(Method::GET, &path, Some(&admin)).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("pending")),
        "{b}"
    );
    assert_eq!(b["run_id"], waiting.as_str(), "{b}");
    assert!(
        b["started_at"].is_string() && b["ended_at"].is_null(),
        "{b}"
    );
    // Under another product the id is nobody's run.
    let (s, _) = c
        .call(
            Method::GET,
            &format!("/api/v1/products/sales/shop/runs/{waiting}"),
            Some(&admin),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, d) = c
        .call(Method::GET, "/api/v1/products/sales/later", Some(&admin))
        .await;
    assert_eq!(d["running"], waiting.as_str(), "{d}");

    std::fs::write(&release, "").unwrap();
    let done = c
        .wait_for(&path, &admin, "the waiting run ended", |b| {
            b["status"] == "succeeded"
        })
        .await;
    // `products` at scale 100 is one row.
    assert_eq!(done["rows"], 1, "{done}");
    assert_eq!(p.id_counts("sales", "later", "products"), (1, 1));
    let history = p.history();
    let statuses: Vec<_> = [&held, &waiting]
        .iter()
        .map(|id| {
            history
                .iter()
                .find(|r| r["run_id"] == id.as_str())
                .map(|r| r["status"].clone())
        })
        .collect();
    assert_eq!(
        statuses,
        [Some("succeeded".into()), Some("succeeded".into())],
        "{history:#?}"
    );
    daemon.signal(libc::SIGTERM);
    daemon.finish(LIMIT).expect_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_a_triggered_run_is_in_flight_lets_it_finish_exits_0_and_frees_the_port() {
    let Held {
        p,
        mut daemon,
        base,
        admin,
        release,
        run_id,
    } = held_triggered_run("  shutdown_timeout: 5m\n").await;
    let c = ApiClient::new(base.clone());

    // Single flight: a second trigger is refused, naming the run in flight.
    let (s, b) = c
        .call(
            Method::POST,
            "/api/v1/products/sales/shop/runs",
            Some(&admin),
        )
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "already_running"),
        "{b}"
    );
    assert!(
        b["error"]["message"].as_str().unwrap().contains(&run_id),
        "{b}"
    );
    let (_, d) = c
        .call(Method::GET, "/api/v1/products/sales/shop", Some(&admin))
        .await;
    assert_eq!(d["running"], run_id.as_str(), "{d}");
    let (_, text) = c.call(Method::GET, "/metrics", Some(&admin)).await;
    assert_eq!(
        metric(
            text.as_str().unwrap(),
            r#"weft_runs_in_flight{domain="sales",product="shop"}"#
        ),
        Some(1.0),
        "{text}"
    );

    // SIGTERM: the API still answers while the run goes on, but starts nothing new.
    daemon.signal(libc::SIGTERM);
    daemon.wait_for_line("SIGTERM received", LIMIT);
    let (s, _) = c.call(Method::GET, "/health", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = c
        .call(
            Method::POST,
            "/api/v1/products/sales/shop/runs",
            Some(&admin),
        )
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        "{b}"
    );

    std::fs::write(&release, "").unwrap();
    let out = daemon.finish(LIMIT);
    out.expect_code(0);
    assert!(!out.stderr().contains("panicked"), "{}", out.stderr());
    let history = p.history();
    let run = history
        .iter()
        .find(|r| r["run_id"] == run_id.as_str())
        .unwrap();
    assert_eq!(run["status"], "succeeded", "{history:#?}");
    assert!(
        history.iter().all(|r| r["status"] != "running"),
        "{history:#?}"
    );
    assert_eq!(p.id_counts("sales", "shop", "orders"), (20_000, 20_000));
    // The port is free again.
    let addr = base.trim_start_matches("http://");
    std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("{addr} still taken: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_deadline_cancels_the_triggered_run_cleanly_and_frees_the_port() {
    let Held {
        p,
        mut daemon,
        base,
        release,
        run_id,
        ..
    } = held_triggered_run("  shutdown_timeout: 200ms\n").await;
    daemon.signal(libc::SIGTERM);
    daemon.wait_for_line("shutdown deadline passed", LIMIT);
    std::fs::write(&release, "").unwrap();
    let out = daemon.finish(LIMIT);
    out.expect_code(0);
    let history = p.history();
    let run = history
        .iter()
        .find(|r| r["run_id"] == run_id.as_str())
        .unwrap();
    assert_eq!(run["status"], "cancelled", "{history:#?}");
    // The overwrite never published: nothing uncommitted is visible.
    let dir = p.stream_dir("sales", "shop", "orders");
    assert!(!dir.exists() || p.read_stream("sales", "shop", "orders").num_rows() == 0);
    let addr = base.trim_start_matches("http://");
    std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("{addr} still taken: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_slot_lag_is_a_gauge_that_grows_with_unread_changes_and_drops_after_a_run() {
    use weft_testkit::pg::{ClusterOptions, PrivateCluster};
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    cluster.sql("postgres", "CREATE DATABASE shop");
    cluster.sql(
        "shop",
        "CREATE TABLE items (id int8 PRIMARY KEY, body text);
         INSERT INTO items SELECT g, 'seed' || g FROM generate_series(1, 200) g;",
    );
    let p = project("  cdc_lag_interval: 200ms\n");
    p.product(
        "shop",
        "items",
        &format!(
            "product: items\ndomain: shop\nowner: o@example.com\ndescription: d\nsource:\n  connector: postgres\n  config: {{ host: \"{}\", port: {}, user: {}, password: \"${{PG_PASSWORD:-{}}}\", database: shop }}\nstreams:\n  - name: public.items\n    mode: cdc\n    write: append_dedup\n",
            cluster.host,
            cluster.port,
            cluster.user,
            cluster.password()
        ),
    );
    let admin = bearer(&create_token(&p, &["--admin"]));
    let (daemon, base) =
        p.start_daemon_listening(&[("PG_PASSWORD", cluster.password().to_string())], LIMIT);
    let c = ApiClient::new(base);
    let series = r#"weft_cdc_lag_bytes{domain="shop",product="items",stream="public.items"}"#;
    let lag = |text: &Value| metric(text.as_str().unwrap(), series);

    let first = run_through_the_api(&c, "shop/items", &admin).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["rows"], 200, "{first}");
    let caught_up = lag(&c
        .wait_for("/metrics", &admin, "a CDC lag", |t| lag(t).is_some())
        .await)
    .unwrap();
    // Changes the daemon has not read yet: the slot falls behind by at least their WAL.
    cluster.sql(
        "shop",
        "INSERT INTO items SELECT g, repeat(md5(g::text), 40) FROM generate_series(201, 5200) g;",
    );
    let behind = lag(&c
        .wait_for("/metrics", &admin, "the lag to grow past 1 MB", |t| {
            lag(t).is_some_and(|l| l > caught_up + 1_000_000.0)
        })
        .await)
    .unwrap();
    let second = run_through_the_api(&c, "shop/items", &admin).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(second["rows"], 5000, "{second}");
    c.wait_for("/metrics", &admin, "the lag to drop after the run", |t| {
        lag(t).is_some_and(|l| l < behind)
    })
    .await;
    assert_eq!(p.id_counts("shop", "items", "public.items"), (5200, 5200));
    daemon.signal(libc::SIGTERM);
    daemon.finish(LIMIT).expect_code(0);
}
