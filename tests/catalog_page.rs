//! The catalog page in headless Chromium (Debian's `chromium` + `chromium-driver`), driven over
//! WebDriver by fantoccini: it loads, asks for a token, lists the token's products, shows the
//! failing one as failing, triggers a run that then appears in the history, opens a run's
//! logs (tests/daemon_api.rs has the daemon-kept lines themselves); a screenshot is
//! saved under the test's temp dir and copied to `target/screenshots/`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use weft_testkit::control::{catalog_project, create_token, ApiServer};

const BIN: &str = env!("CARGO_BIN_EXE_weft");

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn count(c: &fantoccini::Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.map_or(0, |v| v.len())
}

async fn wait_for(c: &fantoccini::Client, css: &str, at_least: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(c, css).await < at_least {
        assert!(
            Instant::now() < deadline,
            "{what}: `{css}` never matched {at_least} elements; page:\n{}",
            c.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_page_lists_shows_failing_and_triggers_a_run() {
    let chromedriver = "/usr/bin/chromedriver";
    assert!(
        std::path::Path::new(chromedriver).exists(),
        "this test needs Chromium: apt-get install -y chromium chromium-driver"
    );
    let p = catalog_project(BIN);
    p.run(["sync", "run", "--no-progress", "sales/orders"])
        .expect_code(0);
    p.run(["sync", "run", "--no-progress", "sales/broken"]);
    let token = create_token(&p, &["--domain", "sales", "--name", "browser"]);
    let server = ApiServer::start(BIN, p.path()).await;

    let port = free_port();
    let _driver = Driver(
        Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1100"]
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let c = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a Chromium session: {e}"),
        }
    };

    c.goto(&server.base).await.unwrap();
    // Signed out: the page asks for a token.
    wait_for(&c, "form#login input#token", 1, "the sign-in form").await;
    c.find(Locator::Css("input#token"))
        .await
        .unwrap()
        .send_keys(&token)
        .await
        .unwrap();
    c.find(Locator::Css("form#login button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The sales token's products, and only them.
    wait_for(&c, "details.product", 2, "the products").await;
    let listed: Vec<String> = {
        let mut out = Vec::new();
        for e in c.find_all(Locator::Css("details.product")).await.unwrap() {
            out.push(e.attr("data-product").await.unwrap().unwrap());
        }
        out
    };
    assert_eq!(listed, ["sales/broken", "sales/orders"]);
    let broken = c
        .find(Locator::Css(
            r#"details[data-product="sales/broken"] .pill.failing"#,
        ))
        .await
        .expect("the failing product shows as failing");
    assert_eq!(broken.text().await.unwrap().to_lowercase(), "failing");
    c.find(Locator::Css(
        r#"details[data-product="sales/orders"] .pill.fresh"#,
    ))
    .await
    .expect("the synced product shows as fresh");
    let text = c
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("sales-team@example.com"), "{text}");
    assert!(
        !text.contains("people"),
        "another domain's product leaked: {text}"
    );

    // Open the product: chart, streams, one run in the history.
    c.find(Locator::Css(
        r#"details[data-product="sales/orders"] > summary .name"#,
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let rows = r#"table.runs[data-product="sales/orders"] tbody tr"#;
    wait_for(&c, rows, 1, "the run history").await;
    assert_eq!(count(&c, rows).await, 1);
    assert!(
        count(
            &c,
            r#"details[data-product="sales/orders"] .chart svg rect"#
        )
        .await
            >= 1
    );

    // Trigger a run: it appears in the history.
    c.find(Locator::Css(
        r#"details[data-product="sales/orders"] button.trigger"#,
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_for(&c, rows, 2, "the triggered run").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let finished = format!("{rows}:first-child td.status-succeeded");
    while count(&c, &finished).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the triggered run never succeeded"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let runs = server
        .store
        .product_runs("sales", "orders", None, 10)
        .unwrap();
    assert_eq!(runs.len(), 2);

    // The failing product's run: "logs" shows what the server keeps of it (this server
    // runs products through `weft sync run`, whose lines are not kept: it says so).
    c.find(Locator::Css(
        r#"details[data-product="sales/broken"] > summary .name"#,
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let toggle = r#"table.runs[data-product="sales/broken"] button.logs-toggle"#;
    wait_for(&c, toggle, 1, "the failed run's logs button").await;
    c.find(Locator::Css(toggle))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let logs = r#"details[data-product="sales/broken"] pre.logs"#;
    wait_for(&c, logs, 1, "the run's logs").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shown = c
            .find(Locator::Css(logs))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if shown.contains("not kept") {
            break;
        }
        assert!(Instant::now() < deadline, "logs box says: {shown}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let png = c.screenshot().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("catalog.png"), &png).unwrap();
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::copy(tmp.path().join("catalog.png"), shots.join("catalog.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    c.close().await.unwrap();
}
