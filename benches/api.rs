//! API latency with a long run history: `GET /api/v1/products` and a product's
//! `GET …/runs?limit=50`, over loopback with a real token, with 100,000 runs in the history
//! (`WEFT_BENCH_RUNS`), against the same queries made directly on the state store in the same
//! run (the reference); p50/p99 and the ratio are printed. Goal: p99 < 50 ms.
//!
//! Also the daemon's start-up lookup of each product's latest run (`product_last_runs`, for
//! misfires) against the raw window query run directly on the same file.
//!
//! `cargo bench --bench api`. The history is written straight into the SQLite file in one
//! transaction (not measured): 20 products in 4 domains, three streams each.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{env_or, BIN};
use weft_testkit::control::{create_token, ApiServer};
use weft_testkit::TestProject;

const DOMAINS: usize = 4;
const PRODUCTS: usize = 5;
const STREAMS: [&str; 3] = ["customers", "orders", "products"];

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}

fn fill_history(db: &std::path::Path, runs: usize) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let tx = conn.transaction().unwrap();
    let start = chrono::Utc::now() - chrono::Duration::seconds(runs as i64 * 10);
    for i in 0..runs {
        let (d, p) = (i % DOMAINS, (i / DOMAINS) % PRODUCTS);
        let id = format!("bench{i:08}");
        let t0 = (start + chrono::Duration::seconds(i as i64 * 10))
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let t1 = (start + chrono::Duration::seconds(i as i64 * 10 + 3))
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let status = if i % 17 == 0 { "failed" } else { "succeeded" };
        tx.execute(
            "INSERT INTO runs (run_id, selectors, status, started_at, ended_at, rows, bytes, trigger)
             VALUES (?1, ?2, ?3, ?4, ?5, 3000, 90000, 'schedule')",
            rusqlite::params![id, format!("[\"d{d}/p{p}\"]"), status, t0, t1],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO run_products (run_id, domain, product) VALUES (?1, ?2, ?3)",
            rusqlite::params![id, format!("d{d}"), format!("p{p}")],
        )
        .unwrap();
        for s in STREAMS {
            tx.execute(
                "INSERT INTO stream_runs (run_id, domain, product, stream, status, rows, bytes, started_at, ended_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1000, 30000, ?6, ?7)",
                rusqlite::params![id, format!("d{d}"), format!("p{p}"), s, status, t0, t1],
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn measure<F: FnMut()>(n: usize, mut f: F) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

fn main() {
    let runs: usize = env_or("WEFT_BENCH_RUNS", 100_000);
    let n: usize = env_or("WEFT_BENCH_REQUESTS", 200);
    let p = TestProject::with_lake(BIN, "1s");
    for d in 0..DOMAINS {
        for i in 0..PRODUCTS {
            p.product(
                &format!("d{d}"),
                &format!("p{i}"),
                &format!("product: p{i}\ndomain: d{d}\nowner: o@example.com\ndescription: bench\nschedule: \"* * * * *\"\nsource:\n  connector: sample\n  config: {{ scale: 100 }}\nstreams:\n  - name: customers\n  - name: orders\n  - name: products\n"),
            );
        }
    }
    let admin = create_token(&p, &["--admin", "--name", "bench"]);
    let t = Instant::now();
    fill_history(&p.path().join(".weft/state.db"), runs);
    eprintln!("wrote {runs} runs in {:.1} s", t.elapsed().as_secs_f64());

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let server = ApiServer::start(BIN, p.path()).await;
        let http = reqwest::Client::new();
        let project = Arc::new(weft_mesh::Project::load(p.path()).unwrap());
        let get = |path: String| {
            let req = http
                .get(format!("{}{path}", server.base))
                .header("Authorization", format!("Bearer {admin}"));
            async move {
                let r = req.send().await.unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                r.bytes().await.unwrap()
            }
        };
        // Warm up.
        get("/api/v1/products".into()).await;
        let mut api_list = Vec::with_capacity(n);
        let mut api_runs = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            get("/api/v1/products".into()).await;
            api_list.push(t.elapsed());
            let t = Instant::now();
            get(format!(
                "/api/v1/products/d{}/p{}/runs?limit=50",
                i % DOMAINS,
                i % PRODUCTS
            ))
            .await;
            api_runs.push(t.elapsed());
        }
        let store = server.store.clone();
        let mut ref_list = measure(n, || {
            for prod in &project.products {
                for s in &prod.streams {
                    let key = weft_state::StreamKey {
                        domain: prod.domain.clone(),
                        product: prod.name.clone(),
                        stream: s.name.clone(),
                    };
                    store.stream_history(&key).unwrap();
                    store.get_state(&key).unwrap();
                }
            }
        });
        let mut i = 0;
        let mut ref_runs = measure(n, || {
            store
                .product_runs(
                    &format!("d{}", i % DOMAINS),
                    &format!("p{}", i % PRODUCTS),
                    None,
                    51,
                )
                .unwrap();
            i += 1;
        });
        // The daemon's start: the latest run of each product, now (per product, newest
        // first) and as it was (one window over the whole history), on the same file.
        let keys: Vec<weft_state::ProductKey> = project
            .products
            .iter()
            .map(|p| weft_state::ProductKey {
                domain: p.domain.clone(),
                product: p.name.clone(),
            })
            .collect();
        let mut last_runs = measure(n.min(50), || {
            assert_eq!(store.product_last_runs(&keys).unwrap().len(), keys.len());
        });
        let conn = rusqlite::Connection::open(p.path().join(".weft/state.db")).unwrap();
        let mut window = measure(n.min(50), || {
            let found: i64 = conn
                .prepare_cached(
                    "SELECT count(*) FROM (
                        SELECT p.domain, p.product, r.run_id, r.status, r.trigger, r.started_at,
                               r.scheduled_at, ROW_NUMBER() OVER (
                                   PARTITION BY p.domain, p.product
                                   ORDER BY r.started_at DESC, r.rowid DESC
                               ) AS n
                        FROM run_products p JOIN runs r ON r.run_id = p.run_id
                     ) WHERE n = 1",
                )
                .unwrap()
                .query_row([], |r| r.get(0))
                .unwrap();
            assert_eq!(found as usize, keys.len());
        });
        println!(
            "daemon start, latest run of {} products: p50 {:.2} ms, p99 {:.2} ms; the \
             raw window query: p50 {:.2} ms, p99 {:.2} ms; ratio p99 {:.3}",
            keys.len(),
            percentile(&mut last_runs, 0.5),
            percentile(&mut last_runs, 0.99),
            percentile(&mut window, 0.5),
            percentile(&mut window, 0.99),
            percentile(&mut last_runs, 0.99) / percentile(&mut window, 0.99).max(0.001)
        );
        println!("API latency, {runs} runs in the history, {n} requests each (ms):");
        println!("| query | API p50 | API p99 | store p50 | store p99 | ratio p99 |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for (name, api, reference) in [
            ("product list (20 products)", &mut api_list, &mut ref_list),
            ("run history (50 per page)", &mut api_runs, &mut ref_runs),
        ] {
            let (a50, a99) = (percentile(api, 0.5), percentile(api, 0.99));
            let (r50, r99) = (percentile(reference, 0.5), percentile(reference, 0.99));
            println!(
                "| {name} | {a50:.2} | {a99:.2} | {r50:.2} | {r99:.2} | {:.2} |",
                a99 / r99.max(0.001)
            );
        }
    });
}
