//! Signals against the real binary: SIGTERM (what systemd, Kubernetes and Airflow send) stops a
//! run as Ctrl-C does, and Ctrl-C while a stream publishes lets it finish and says so. Each
//! signal is sent when the run is observably at a point (a pausepoint's line on stderr), never
//! after a guessed sleep.

use std::time::Duration;

use weft_testkit::{committed_files, visible_files, TestProject};

const BIN: &str = env!("CARGO_BIN_EXE_weft");
/// A safety net for a broken build, not a timing assumption: every wait is for an event.
const LIMIT: Duration = Duration::from_secs(120);

fn orders_product(scale: u64, write: &str) -> String {
    format!(
        "product: shop\ndomain: sales\nowner: o@example.com\ndescription: d\nsource:\n  connector: sample\n  config: {{ scale: {scale}, batch_size: 5000 }}\nstreams:\n  - name: orders\n    mode: full_refresh\n    write: {write}\n"
    )
}

fn history(p: &TestProject) -> serde_json::Value {
    let out = p.run(["sync", "history", "--format", "json"]);
    serde_json::from_str(&out.expect_code(0).stdout()).unwrap()
}

#[test]
fn sigterm_stops_like_ctrl_c_records_the_run_cancelled_and_prints_the_summary() {
    let p = TestProject::with_lake(BIN, "1ms");
    p.product("sales", "shop", &orders_product(200_000, "append"));
    let release = p.path().join("release");
    let mut cmd = p.weft(["sync", "run", "--no-progress"]);
    cmd.env(
        "WEFT_PAUSEPOINT",
        format!("after_commit:{}", release.display()),
    );
    let mut run = weft_testkit::Running::spawn(cmd);
    // The first commit of the copy is durable and recorded; most of the read is still to come.
    run.wait_for_line("pausepoint `after_commit` reached", LIMIT);
    run.signal(libc::SIGTERM);
    run.wait_for_line("SIGTERM received", LIMIT);
    std::fs::write(&release, "").unwrap();
    let out = run.finish(LIMIT);
    out.expect_code(143);
    let (stdout, stderr) = (out.stdout(), out.stderr());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("stopping the streams and dropping their uncommitted data"),
        "{stderr}"
    );

    // Nothing partial: what a glob sees is exactly what the manifest committed, and that is the
    // first commit's rows (appends publish at every commit).
    let dir = p.stream_dir("sales", "shop", "orders");
    let mut committed = committed_files(&dir);
    committed.sort();
    assert_eq!(visible_files(&dir), committed);
    let staging = dir.join("_weft/staging");
    assert!(
        !staging.exists() || std::fs::read_dir(&staging).unwrap().next().is_none(),
        "uncommitted files were left in {}",
        staging.display()
    );
    let (landed, distinct) = p.id_counts("sales", "shop", "orders");
    assert_eq!(landed, distinct, "duplicates landed");
    assert!(
        landed > 0 && landed < 200_000,
        "{landed} rows committed before the signal"
    );
    // The summary tells what was read and what landed.
    assert!(stdout.contains("sales/shop/orders"), "{stdout}");
    assert!(stdout.contains("cancelled"), "{stdout}");
    assert!(stdout.contains(&landed.to_string()), "{stdout}");

    let runs = history(&p);
    assert_eq!(runs[0]["status"], "cancelled", "{runs}");

    // The next run goes on from the commit: every row once.
    p.run_within(LIMIT, ["sync", "run", "--no-progress"])
        .expect_code(0);
    assert_eq!(p.id_counts("sales", "shop", "orders"), (200_000, 200_000));
}

#[test]
fn ctrl_c_while_a_stream_publishes_lets_it_finish_and_reports_success() {
    let p = TestProject::one_product(BIN, "sales", "shop", &orders_product(20_000, "overwrite"));
    let release = p.path().join("release");
    let mut cmd = p.weft(["sync", "run", "--no-progress", "--format", "json"]);
    cmd.env(
        "WEFT_PAUSEPOINT",
        format!("finishing:{}", release.display()),
    );
    let mut run = weft_testkit::Running::spawn(cmd);
    run.wait_for_line("pausepoint `finishing` reached", LIMIT);
    // Off a terminal, the progress lines (every 5s) say what the wait is for.
    let progress = run.wait_for_line("sales/shop/orders: finishing:", LIMIT);
    assert!(
        progress.contains("20000 rows read in") && progress.contains("publishing for"),
        "{progress}"
    );
    run.signal(libc::SIGINT);
    // It says what it is finishing rather than going silent.
    let line = run.wait_for_line("interrupted (Ctrl-C)", LIMIT);
    assert!(
        line.contains("sales/shop/orders read completely and is publishing it"),
        "{line}"
    );
    std::fs::write(&release, "").unwrap();
    let out = run.finish(LIMIT);
    out.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(report["status"], "succeeded", "{report}");
    assert_eq!(report["streams"][0]["status"], "succeeded", "{report}");
    assert_eq!(report["streams"][0]["committed_rows"], 20_000, "{report}");
    assert_eq!(history(&p)[0]["status"], "succeeded");
    assert_eq!(p.id_counts("sales", "shop", "orders"), (20_000, 20_000));
}
