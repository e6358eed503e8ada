//! Bad input gets a clear error and the right exit code, never a panic, never a leaked secret.

use weft_testkit::TestProject;

const BIN: &str = env!("CARGO_BIN_EXE_weft");

const GOOD: &str = "product: shop\ndomain: sales\nowner: o@example.com\ndescription: d\nsource:\n  connector: sample\n  config: { scale: 1000 }\nstreams:\n  - name: orders\n";

fn project() -> TestProject {
    let p = TestProject::with_lake(BIN, "1s");
    p.product("sales", "shop", GOOD);
    p
}

fn assert_no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "weft panicked:\n{stderr}");
}

#[test]
fn unknown_field_names_file_line_and_field() {
    let p = project();
    p.product("sales", "shop", &GOOD.replace("owner:", "ownr:"));
    let out = p.run(["sync", "run"]);
    out.expect_code(2);
    let err = out.stderr();
    assert_no_panic(&err);
    assert!(err.contains("domains/sales/shop.yaml"), "{err}");
    assert!(err.contains("ownr"), "{err}");
    assert!(err.contains("shop.yaml:3:"), "line of the bad field: {err}");
}

#[test]
fn missing_env_var_is_named_with_its_file() {
    let p = project();
    p.product(
        "sales",
        "shop",
        &GOOD.replace(
            "scale: 1000",
            "scale: 1000, seed: \"${WEFT_TEST_UNSET_SEED}\"",
        ),
    );
    let out = p.run(["sync", "run"]);
    out.expect_code(2);
    let err = out.stderr();
    assert!(err.contains("WEFT_TEST_UNSET_SEED"), "{err}");
    assert!(err.contains("domains/sales/shop.yaml"), "{err}");
}

#[test]
fn bad_selectors_say_what_exists() {
    let p = project();
    for (selector, needle) in [
        ("finance", "sales"),
        ("sales/nope", "shop"),
        ("sales/shop/nope", "orders"),
        ("../x", ".."),
        ("a/b/c/d", "a/b/c/d"),
    ] {
        let out = p.run(["sync", "run", selector]);
        out.expect_code(2);
        let err = out.stderr();
        assert_no_panic(&err);
        assert!(err.contains(needle), "{selector}: {err}");
    }
}

#[test]
fn unwritable_lake_path_fails_the_stream_with_the_path() {
    let p = project();
    p.file("not-a-folder", "a file where the lake's parent should be");
    p.product(
        "sales",
        "shop",
        &format!(
            "{GOOD}destination:\n  connector: parquet\n  config: {{ path: not-a-folder/lake }}\n"
        ),
    );
    let out = p.run(["sync", "run", "--no-progress"]);
    let all = format!("{}{}", out.stdout(), out.stderr());
    assert_no_panic(&all);
    assert!(matches!(out.code(), Some(1)), "{all}");
    assert!(all.contains("not-a-folder"), "{all}");
}

#[test]
fn hostile_stream_and_domain_names_never_escape() {
    let p = project();
    p.product(
        "sales",
        "shop",
        &GOOD.replace("- name: orders", "- name: ../../x"),
    );
    let out = p.run(["sync", "run"]);
    out.expect_code(2);
    assert!(out.stderr().contains("../../x"), "{}", out.stderr());
    assert!(out.stderr().contains("path separator"), "{}", out.stderr());

    let p = project();
    p.product(
        "sales",
        "shop",
        &GOOD.replace("domain: sales", "domain: ../../x"),
    );
    let out = p.run(["sync", "run"]);
    out.expect_code(2);
    assert!(!p.path().parent().unwrap().join("x").exists());
}

#[test]
fn unknown_connector_and_bad_connector_config() {
    let p = project();
    p.product(
        "sales",
        "shop",
        &GOOD.replace("connector: sample", "connector: nosuch"),
    );
    let out = p.run(["sync", "run"]);
    out.expect_code(2);
    assert!(out.stderr().contains("nosuch"), "{}", out.stderr());
    assert!(
        out.stderr().contains("sample"),
        "lists the known ones: {}",
        out.stderr()
    );

    let p = project();
    p.product("sales", "shop", &GOOD.replace("scale: 1000", "scael: 1000"));
    let out = p.run(["sync", "run"]);
    out.expect_code(2);
    assert!(out.stderr().contains("scael"), "{}", out.stderr());
}

#[test]
fn unknown_stream_and_missing_column_fail_with_exit_1() {
    let p = project();
    p.product(
        "sales",
        "shop",
        &GOOD.replace("- name: orders", "- name: invoices"),
    );
    let out = p.run(["sync", "run", "--no-progress"]);
    out.expect_code(1);
    let all = format!("{}{}", out.stdout(), out.stderr());
    assert!(all.contains("invoices") && all.contains("orders"), "{all}");

    let p = project();
    p.product(
        "sales",
        "shop",
        &format!("{GOOD}    mappers:\n      - drop: [no_such_column]\n"),
    );
    let out = p.run(["sync", "run", "--no-progress"]);
    out.expect_code(1);
    let all = format!("{}{}", out.stdout(), out.stderr());
    assert!(all.contains("no_such_column"), "{all}");
}

#[test]
fn secrets_never_reach_output() {
    let secret = "s3cr3t-salt-value-9f2";
    let p = project();
    p.product(
        "sales",
        "shop",
        &format!("{GOOD}    mappers:\n      - hash: {{ column: status, salt: \"${{WEFT_TEST_SALT}}\" }}\n"),
    );
    let out = p
        .weft(["-vv", "sync", "run", "--no-progress"])
        .env("WEFT_TEST_SALT", secret)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(!all.contains(secret), "the secret leaked:\n{all}");

    // A secret in the wrong place (a number field) is not echoed in the error either.
    p.product(
        "sales",
        "shop",
        &GOOD.replace("scale: 1000", "scale: \"${WEFT_TEST_SECRET_SCALE}\""),
    );
    let out = p
        .weft(["sync", "run"])
        .env("WEFT_TEST_SECRET_SCALE", secret)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("scale"), "{all}");
    assert!(!all.contains(secret), "the secret leaked:\n{all}");
    // And nothing secret is in the state store or the lake's manifest.
    let db = std::fs::read(p.path().join(".weft/state.db")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&db).contains(secret));
}

#[test]
fn no_project_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["--project"])
        .arg(dir.path())
        .args(["sync", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("weft init"));
}

#[test]
fn incremental_without_a_cursor_lists_the_candidates() {
    let p = project();
    p.product(
        "sales",
        "shop",
        &GOOD.replace("- name: orders", "- name: orders\n    mode: incremental"),
    );
    let out = p.run(["sync", "run", "--no-progress"]);
    out.expect_code(1);
    let all = format!("{}{}", out.stdout(), out.stderr());
    assert!(
        all.contains(
            "stream `orders`: incremental mode needs a `cursor`; the source offers: updated_at"
        ),
        "{all}"
    );
}

#[test]
fn a_postgres_server_that_never_answers_fails_within_connect_timeout() {
    // Accepts TCP, never says a word: a wrong port, a hung proxy.
    let silent = weft_testkit::SilentServer::start();
    let at = format!("127.0.0.1:{}", silent.port);
    let limit = std::time::Duration::from_secs(60);
    let expected = format!(
        "PostgreSQL at {at} did not complete the connection (TCP connect, startup and \
         authentication) within 1s (`connect_timeout`)"
    );
    let p = project();
    p.product(
        "sales",
        "shop",
        &format!(
            "product: shop\ndomain: sales\nowner: o@example.com\ndescription: d\nsource:\n  connector: postgres\n  config: {{ host: 127.0.0.1, port: {}, user: u, database: d, connect_timeout: 1s }}\nstreams:\n  - name: public.t\n",
            silent.port
        ),
    );
    let out = p.run_within(limit, ["connector", "check", "sales/shop"]);
    out.expect_code(1);
    assert!(out.stderr().contains(&expected), "{}", out.stderr());
    let out = p.run_within(limit, ["sync", "run", "--no-progress"]);
    out.expect_code(1);
    let all = format!("{}{}", out.stdout(), out.stderr());
    assert_no_panic(&all);
    assert!(all.contains(&expected), "{all}");
    assert!(out.stdout().contains("failed"), "{}", out.stdout());

    // The PostgreSQL product store, the same.
    p.product(
        "sales",
        "shop",
        &format!(
            "{GOOD}destination:\n  connector: postgres\n  config: {{ host: 127.0.0.1, port: {}, user: u, database: d, connect_timeout: 1s }}\n",
            silent.port
        ),
    );
    let out = p.run_within(limit, ["connector", "check", "sales/shop", "--destination"]);
    out.expect_code(1);
    assert!(out.stderr().contains(&expected), "{}", out.stderr());
    let out = p.run_within(limit, ["sync", "run", "--no-progress"]);
    out.expect_code(1);
    let all = format!("{}{}", out.stdout(), out.stderr());
    assert!(all.contains(&expected), "{all}");

    // The timeouts are validated.
    p.product(
        "sales",
        "shop",
        &format!(
            "{GOOD}destination:\n  connector: postgres\n  config: {{ host: 127.0.0.1, port: {}, user: u, database: d, connect_timeout: 0s }}\n",
            silent.port
        ),
    );
    let out = p.run_within(limit, ["sync", "run", "--no-progress"]);
    out.expect_code(2);
    assert!(out.stderr().contains("connect_timeout"), "{}", out.stderr());
}

#[test]
fn a_failed_stream_prints_its_error_once_below_a_summary_that_fits_80_columns() {
    let p = project();
    p.product(
        "sales",
        "shop",
        &format!(
            "{GOOD}    mappers:\n      - drop: [no_such_column_with_a_long_name_to_make_the_error_wide]\n"
        ),
    );
    let out = p.run(["sync", "run", "--no-progress"]);
    out.expect_code(1);
    let (stdout, stderr) = (out.stdout(), out.stderr());
    let needle = "no_such_column_with_a_long_name_to_make_the_error_wide";
    assert_eq!(stdout.matches(needle).count(), 1, "stdout:\n{stdout}");
    assert_eq!(stderr.matches(needle).count(), 1, "stderr:\n{stderr}");
    for line in stdout.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80: {line}\n{stdout}"
        );
    }
    assert!(stdout.contains("error: sales/shop/orders:"), "{stdout}");
}

#[test]
fn a_postgres_statement_timeout_fails_the_read_saying_what_to_raise() {
    let db = weft_testkit::pg::PgTestDb::create("weft_stmt_timeout");
    // Every row of the view takes a while: the read's statement outlives the timeout.
    db.sql(
        "CREATE VIEW slow AS SELECT g AS id, pg_sleep(0.5)::text AS nap FROM generate_series(1, 20) g",
    );
    let p = project();
    p.product(
        "ops",
        "db",
        &format!(
            "product: db\ndomain: ops\nowner: o@example.com\ndescription: d\nsource:\n  connector: postgres\n  config: {{ host: \"{}\", port: {}, user: {}, database: {}, statement_timeout: 300ms }}\nstreams:\n  - name: public.slow\n",
            db.host, db.port, db.user, db.name
        ),
    );
    let out = p.run_within(
        std::time::Duration::from_secs(60),
        ["sync", "run", "--no-progress", "ops"],
    );
    out.expect_code(1);
    let all = format!("{}{}", out.stdout(), out.stderr());
    assert_no_panic(&all);
    assert!(
        all.contains("stream `public.slow`: reading was cancelled by the server")
            && all.contains("statement timeout")
            && all.contains("raise it"),
        "{all}"
    );
}
