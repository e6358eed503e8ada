//! The HTTP API end to end: a real server on loopback over the real state store, a real
//! project whose runs are real `weft sync run`s, tokens made by the real `weft token` CLI;
//! every endpoint against every kind of caller.

use serde_json::Value;
use weft_testkit::control::{catalog_project, create_token, ApiServer};
use weft_testkit::http::{bearer, code, ApiClient, Method, StatusCode};

const BIN: &str = env!("CARGO_BIN_EXE_weft");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_against_every_kind_of_token() {
    let p = catalog_project(BIN);
    p.run(["sync", "run", "--no-progress", "sales/orders"])
        .expect_code(0);
    p.run(["sync", "run", "--no-progress", "sales/orders"])
        .expect_code(0);
    p.run(["sync", "run", "--no-progress", "sales/broken"]);
    let sales = create_token(&p, &["--domain", "sales", "--name", "sales-ci"]);
    let hr = create_token(&p, &["--domain", "hr"]);
    let admin = create_token(&p, &["--admin", "--name", "root"]);
    let revoked = create_token(&p, &["--domain", "sales", "--name", "old"]);
    p.run(["token", "revoke", "old"]).expect_code(0);

    // Tokens are never stored or listed, only their names and scopes.
    let list = p.run(["token", "list", "--format", "json"]);
    list.expect_code(0);
    for t in [&sales, &hr, &admin, &revoked] {
        assert!(!list.stdout().contains(t.as_str()));
        let db = std::fs::read(p.path().join(".weft/state.db")).unwrap();
        assert!(!String::from_utf8_lossy(&db).contains(t.as_str()));
    }
    let listed: Value = serde_json::from_str(&list.stdout()).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4);
    assert!(names.contains(&"sales-ci") && names.contains(&"root") && names.contains(&"old"));

    let server = ApiServer::start(BIN, p.path()).await;
    let c = ApiClient::new(server.base.clone());
    let runs = server
        .store
        .product_runs("sales", "orders", None, 10)
        .unwrap();
    assert_eq!(runs.len(), 2);
    let run_id = runs[0].run_id.clone();

    // Open without a token: health, the page shell, the API description.
    let (s, b) = c.call(Method::GET, "/health", None).await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, b) = c.call(Method::GET, "/", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(b.as_str().unwrap().contains("weft catalog"));
    let (s, b) = c.call(Method::GET, "/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["openapi"], "3.1.0");
    assert!(b["paths"]["/api/v1/products/{domain}/{product}/runs"]["post"].is_object());

    let callers: Vec<(&str, Option<String>)> = vec![
        ("none", None),
        ("malformed", Some("Bearer not-a-token".to_string())),
        ("revoked", Some(bearer(&revoked))),
        ("other_domain", Some(bearer(&hr))),
        ("own_domain", Some(bearer(&sales))),
        ("admin", Some(bearer(&admin))),
    ];
    let run_path = format!("/api/v1/products/sales/orders/runs/{run_id}");
    let endpoints: Vec<(Method, String)> = vec![
        (Method::GET, "/ready".into()),
        (Method::GET, "/api/v1/domains".into()),
        (Method::GET, "/api/v1/products".into()),
        (Method::GET, "/api/v1/products/sales/orders".into()),
        (Method::GET, "/api/v1/products/sales/orders/runs".into()),
        (Method::GET, run_path.clone()),
        (Method::GET, format!("{run_path}/logs")),
        (Method::POST, "/api/v1/products/sales/orders/pause".into()),
        (Method::POST, "/api/v1/products/sales/orders/resume".into()),
        (
            Method::POST,
            "/api/v1/products/sales/orders/runs?stream=products".into(),
        ),
        (Method::GET, "/metrics".into()),
    ];
    for (who, auth) in &callers {
        for (method, path) in &endpoints {
            let (s, b) = c.call(method.clone(), path, auth.as_deref()).await;
            let what = format!("{who} {method} {path}: {s} {b}");
            let scoped = path.starts_with("/api/v1/products/sales/");
            match *who {
                "none" => assert_eq!(
                    (s, code(&b)),
                    (StatusCode::UNAUTHORIZED, "missing_token"),
                    "{what}"
                ),
                "malformed" => assert_eq!(
                    (s, code(&b)),
                    (StatusCode::UNAUTHORIZED, "malformed_token"),
                    "{what}"
                ),
                "revoked" => assert_eq!(
                    (s, code(&b)),
                    (StatusCode::UNAUTHORIZED, "invalid_token"),
                    "{what}"
                ),
                "other_domain" if scoped => {
                    assert_eq!(
                        (s, code(&b)),
                        (StatusCode::NOT_FOUND, "not_found"),
                        "{what}"
                    );
                    // The same answer as for a product that does not exist.
                    let (s2, b2) = c
                        .call(
                            method.clone(),
                            &path.replace("sales/orders", "sales/nothing"),
                            auth.as_deref(),
                        )
                        .await;
                    assert_eq!((s2, &b2), (s, &b), "{what}");
                    assert!(!b.to_string().contains("orders"), "{what}");
                }
                "other_domain" if path == "/metrics" => {
                    assert_eq!(
                        (s, code(&b)),
                        (StatusCode::FORBIDDEN, "forbidden"),
                        "{what}"
                    )
                }
                "own_domain" if path == "/metrics" => {
                    assert_eq!(
                        (s, code(&b)),
                        (StatusCode::FORBIDDEN, "forbidden"),
                        "{what}"
                    )
                }
                // Runs made by `weft sync run` have no logs kept by a daemon.
                _ if path.ends_with("/logs") => {
                    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "no_logs"), "{what}")
                }
                _ if method == Method::POST && path.contains("/runs") => {
                    assert_eq!(s, StatusCode::ACCEPTED, "{what}");
                    assert!(b["run_id"].as_str().is_some_and(|r| r.len() > 4), "{what}");
                    c.settle("sales/orders", &bearer(&admin)).await;
                }
                _ => assert!(s.is_success(), "{what}"),
            }
            if *who == "other_domain" {
                assert!(!b.to_string().contains("sales"), "{what}");
            }
        }
    }

    // What each sees: the hr token sees hr alone; sales and admin see sales.
    let (_, b) = c
        .call(Method::GET, "/api/v1/domains", Some(&bearer(&hr)))
        .await;
    assert_eq!(
        b,
        serde_json::json!([{
            "name": "hr",
            "owners": ["hr-data@example.com"],
            "description": "The hr domain.",
            "contact": null,
            "products": ["people"]
        }])
    );
    let (_, b) = c
        .call(Method::GET, "/api/v1/products", Some(&bearer(&sales)))
        .await;
    let listed: Vec<String> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["domain"].as_str().unwrap(),
                p["product"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(listed, ["sales/broken", "sales/orders"]);
    let (_, b) = c
        .call(Method::GET, "/api/v1/products", Some(&bearer(&admin)))
        .await;
    assert_eq!(b.as_array().unwrap().len(), 3);
    let by_name = |name: &str| {
        b.as_array()
            .unwrap()
            .iter()
            .find(|p| p["product"] == name)
            .cloned()
            .unwrap()
    };
    let orders = by_name("orders");
    assert_eq!(orders["owner"], "sales-team@example.com");
    assert_eq!(orders["schedule"], "*/5 * * * *");
    assert_eq!(orders["freshness"], "fresh", "{orders}");
    assert!(orders["freshness_seconds"].as_f64().unwrap() < 120.0);
    assert!(orders["next_run"].is_string());
    let broken = by_name("broken");
    assert_eq!(broken["freshness"], "failing", "{broken}");
    assert!(
        broken["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{broken}"
    );
    assert_eq!(by_name("people")["freshness"], "never");

    // The product's streams: configuration, checkpoints, latest runs.
    let (_, d) = c
        .call(
            Method::GET,
            "/api/v1/products/sales/orders",
            Some(&bearer(&sales)),
        )
        .await;
    let streams = d["stream_details"].as_array().unwrap();
    assert_eq!(streams.len(), 3);
    assert_eq!(streams[1]["name"], "orders");
    assert_eq!(streams[1]["mode"], "incremental");
    assert_eq!(streams[1]["write"], "append_dedup");
    assert_eq!(streams[1]["cursor"], "updated_at");
    assert_eq!(streams[1]["primary_key"], serde_json::json!(["id"]));
    assert!(streams[1]["checkpoint"].is_object(), "{d}");
    assert_eq!(streams[2]["columns"], serde_json::json!(["id", "name"]));

    // The history: newest first, paged, with per-stream rows; the API's own triggered run
    // (stream `products` alone) is there, twice (own domain and admin triggered it).
    let (s, page) = c
        .call(
            Method::GET,
            "/api/v1/products/sales/orders/runs?limit=3",
            Some(&bearer(&sales)),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let first = page["runs"].as_array().unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(first[0]["streams"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(first[0]["streams"][0]["stream"], "products");
    assert_eq!(first[0]["streams"][0]["rows"], 20);
    assert_eq!(first[0]["status"], "succeeded");
    let before = page["next_before"].as_str().expect("a next page");
    let (_, older) = c
        .call(
            Method::GET,
            &format!("/api/v1/products/sales/orders/runs?limit=3&before={before}"),
            Some(&bearer(&sales)),
        )
        .await;
    let older = older["runs"].as_array().unwrap();
    assert_eq!(older.len(), 1, "four runs in all: {older:?}");
    assert_eq!(older[0]["run_id"], runs[1].run_id.as_str());
    let oldest_rows: Vec<(String, u64)> = older[0]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stream"].as_str().unwrap().to_string(),
                s["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        oldest_rows
            .iter()
            .map(|(s, r)| (s.as_str(), *r))
            .collect::<Vec<_>>()
            .len(),
        3
    );
    assert!(
        oldest_rows.contains(&("orders".to_string(), 2000)),
        "{oldest_rows:?}"
    );
    assert!(
        oldest_rows.contains(&("customers".to_string(), 200)),
        "{oldest_rows:?}"
    );
    for bad in ["limit=0", "limit=501", "limit=abc"] {
        let (s, b) = c
            .call(
                Method::GET,
                &format!("/api/v1/products/sales/orders/runs?{bad}"),
                Some(&bearer(&sales)),
            )
            .await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{bad}: {b}"
        );
    }

    // Unknown stream, pause state, metrics content.
    let (s, b) = c
        .call(
            Method::POST,
            "/api/v1/products/sales/orders/runs?stream=nope",
            Some(&bearer(&sales)),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "unknown_stream"));
    let (_, b) = c
        .call(
            Method::POST,
            "/api/v1/products/sales/orders/pause",
            Some(&bearer(&sales)),
        )
        .await;
    assert_eq!(b["paused"], true);
    let (_, b) = c
        .call(Method::GET, "/api/v1/products", Some(&bearer(&sales)))
        .await;
    assert_eq!(b[1]["paused"], true);
    let (s, text) = c.call(Method::GET, "/metrics", Some(&bearer(&admin))).await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().unwrap().to_string();
    assert!(
        text.contains(r#"weft_seconds_since_last_success{domain="sales",product="orders"}"#),
        "{text}"
    );
    assert!(
        !text.contains(r#"product="people""#),
        "never synced: no freshness\n{text}"
    );

    // The last use of a token is recorded.
    let list = p.run(["token", "list"]);
    assert!(list.stdout().contains("sales-ci"), "{}", list.all());
    let tokens = server.store.tokens().unwrap();
    let used = tokens.iter().find(|t| t.name == "sales-ci").unwrap();
    assert!(used.last_used_at.is_some());
    assert!(tokens
        .iter()
        .find(|t| t.name == "old")
        .unwrap()
        .revoked_at
        .is_some());
}

#[test]
fn token_commands_refuse_bad_input_with_clear_errors() {
    let p = catalog_project(BIN);
    let out = p.run(["token", "create", "--domain", "finance"]);
    out.expect_code(2);
    assert!(
        out.stderr()
            .contains("no such domain (its domains: hr, sales)"),
        "{}",
        out.all()
    );
    create_token(&p, &["--admin", "--name", "ops"]);
    let out = p.run(["token", "create", "--admin", "--name", "ops"]);
    out.expect_code(2);
    assert!(
        out.stderr().contains("named `ops` exists already"),
        "{}",
        out.all()
    );
    let out = p.run(["token", "revoke", "nobody"]);
    out.expect_code(2);
    assert!(
        out.stderr()
            .contains("no live token named or with id `nobody`"),
        "{}",
        out.all()
    );
    let out = p.run(["token", "create"]);
    out.expect_code(2);
}
