//! schemathesis (PyPI: `pip install schemathesis`) against the served `/openapi.json` with an
//! admin token: no 5xx, and every response within the documented schema. Skips, saying so,
//! only when schemathesis is not installed.

use std::process::Command;

use weft_testkit::control::{catalog_project, create_token, ApiServer};

const BIN: &str = env!("CARGO_BIN_EXE_weft");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_response_outside_the_schema() {
    let installed = Command::new("st")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("SKIPPED: schemathesis is not installed (pip install schemathesis)");
        return;
    }
    let p = catalog_project(BIN);
    p.run(["sync", "run", "--no-progress", "sales/orders"])
        .expect_code(0);
    p.run(["sync", "run", "--no-progress", "sales/broken"]);
    let admin = create_token(&p, &["--admin", "--name", "fuzz"]);
    let server = ApiServer::start(BIN, p.path()).await;
    let url = format!("{}/openapi.json", server.base);
    let out = tokio::process::Command::new("st")
        .args(["run", &url, "--header"])
        .arg(format!("Authorization: Bearer {admin}"))
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--max-examples",
            "25",
            "--phases",
            "examples,coverage,fuzzing",
            "--no-color",
        ])
        .output()
        .await
        .expect("run schemathesis");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(text.contains("passed"), "{text}");
}
