//! Bad input gets a clear error and the right exit code, never a panic, never a leaked secret.

use weft_testkit::TestProject;

const BIN: &str = env!("CARGO_BIN_EXE_weft");

const GOOD: &str = "product: shop\ndomain: sales\nowner: o@example.com\ndescription: d\nsource:\n  connector: sample\n  config: { scale: 1000 }\nstreams:\n  - name: orders\n";

fn project() -> TestProject {
    TestProject::one_product(BIN, "sales", "shop", GOOD)
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

/// A project that `weft config validate` must refuse (or warn about), and what it must say.
struct BadProject {
    case: &'static str,
    /// Files to write (relative path, content); `None` content makes an empty folder, and a
    /// path of `-domains/sales/shop.yaml` removes the good product file first.
    files: &'static [(&'static str, Option<&'static str>)],
    code: i32,
    /// Every one of these must be in the output.
    says: &'static [&'static str],
}

const LAKE_WEFT_YAML: &str =
    "version: 1\ndefaults:\n  destination:\n    connector: parquet\n    config: { path: lake }\n";

fn good_with(find: &str, replace: &str) -> String {
    assert!(GOOD.contains(find), "{find}");
    GOOD.replacen(find, replace, 1)
}

/// Builds one case's project from GOOD: `$GOOD{a=>b}` in a content replaces `a` by `b`.
fn content(text: &str) -> String {
    match text.strip_prefix("$GOOD") {
        None => text.to_string(),
        Some("") => GOOD.to_string(),
        Some(edit) => {
            let edit = edit
                .strip_prefix('{')
                .and_then(|e| e.strip_suffix('}'))
                .expect("$GOOD{a=>b}");
            let (find, replace) = edit.split_once("=>").expect("a=>b");
            good_with(find, &replace.replace("\\n", "\n"))
        }
    }
}

#[test]
fn config_validate_refuses_what_sync_run_would_and_names_file_and_field() {
    let cases = [
        BadProject {
            case: "unknown source connector",
            files: &[("domains/sales/shop.yaml", Some("$GOOD{connector: sample=>connector: nosuch}"))],
            code: 2,
            says: &["domains/sales/shop.yaml: source.connector: unknown source connector `nosuch`; available: sample"],
        },
        BadProject {
            case: "unknown default destination, reported against weft.yaml",
            files: &[("weft.yaml", Some("version: 1\ndefaults:\n  destination:\n    connector: nope\n"))],
            code: 2,
            says: &["weft.yaml: defaults.destination.connector: unknown destination connector `nope`; available: parquet"],
        },
        BadProject {
            case: "unknown field in a source config",
            files: &[("domains/sales/shop.yaml", Some("$GOOD{scale: 1000=>scael: 1000}"))],
            code: 2,
            says: &["domains/sales/shop.yaml: source.config.scael: unknown field `scael`, expected one of `scale`"],
        },
        BadProject {
            case: "wrong type in a source config",
            files: &[("domains/sales/shop.yaml", Some("$GOOD{scale: 1000=>scale: lots}"))],
            code: 2,
            says: &["domains/sales/shop.yaml: source.config.scale: invalid type"],
        },
        BadProject {
            case: "wrong type in a product's own destination config",
            files: &[("domains/sales/shop.yaml", Some("$GOOD{streams:=>destination:\\n  connector: parquet\\n  config: { path: lake2, file_bytes: big }\\nstreams:}"))],
            code: 2,
            says: &["domains/sales/shop.yaml: destination.config.file_bytes: invalid type"],
        },
        BadProject {
            case: "a cron that is prose",
            files: &[("domains/sales/shop.yaml", Some("$GOOD{streams:=>schedule: \"every tuesday-ish\"\\nstreams:}"))],
            code: 2,
            says: &["domains/sales/shop.yaml:8:1: schedule: `every tuesday-ish` is not a cron expression", "\"0 * * * *\""],
        },
        BadProject {
            case: "a cron minute out of range",
            files: &[("domains/sales/shop.yaml", Some("$GOOD{streams:=>schedule: \"99 * * * *\"\\nstreams:}"))],
            code: 2,
            says: &["schedule: `99 * * * *` is not a cron expression"],
        },
        BadProject {
            case: "a product file with an upper-case extension",
            files: &[("-domains/sales/shop.yaml", None), ("domains/sales/shop.YAML", Some("$GOOD"))],
            code: 2,
            says: &["domains/sales/shop.YAML: product files end in `.yaml` or `.yml`, in lower case", "rename it to shop.yaml"],
        },
        BadProject {
            case: "a product file in a sub-folder of its domain",
            files: &[("domains/sales/sub/more.yaml", Some("$GOOD"))],
            code: 2,
            says: &["domains/sales/sub/more.yaml: product files sit directly in their domain folder", "move it to domains/sales/more.yaml"],
        },
        BadProject {
            case: "hash without a salt",
            files: &[("domains/sales/shop.yaml", Some("$GOOD{- name: orders=>- name: orders\\n    mappers:\\n      - hash: { column: status }}"))],
            code: 2,
            says: &["domains/sales/shop.yaml:", "streams[0].mappers[0].salt: hashing `status` needs a secret `salt`", "${PII_SALT}"],
        },
        BadProject {
            case: "hash with an empty salt file",
            files: &[
                ("secrets/salt", Some("\n")),
                ("domains/sales/shop.yaml", Some("$GOOD{- name: orders=>- name: orders\\n    mappers:\\n      - hash: { column: status, salt: \"${file:secrets/salt}\" }}")),
            ],
            code: 2,
            says: &["streams[0].mappers[0].salt: the salt for hashing `status` is empty"],
        },
        BadProject {
            case: "an empty domains folder",
            files: &[("-domains", None), ("domains", None)],
            code: 0,
            says: &["warning: domains/ holds no product files", "valid: 0 domain(s), 0 product(s)"],
        },
        BadProject {
            case: "a domain folder without products",
            files: &[("domains/marketing", None)],
            code: 0,
            says: &["warning: domains/marketing holds no product files", "valid: 1 domain(s), 1 product(s), 1 stream(s)"],
        },
        BadProject {
            case: "a product of an undeclared domain",
            files: &[("-domains/sales/domain.yaml", None)],
            code: 2,
            says: &["domains/sales/shop.yaml: domain: domain `sales` is not declared; create domains/sales/domain.yaml, for example:\n  domain: sales\n  owners: [sales-data@example.com]\n"],
        },
        BadProject {
            case: "a declared domain without products",
            files: &[("domains/marketing/domain.yaml", Some("domain: marketing\nowners: [m@example.com]\ndescription: Campaigns.\n"))],
            code: 0,
            says: &["domain marketing (domains/marketing/domain.yaml): 0 product(s), owners m@example.com", "valid: 2 domain(s), 1 product(s), 1 stream(s)"],
        },
    ];
    for case in cases {
        let p = TestProject::new(BIN, LAKE_WEFT_YAML);
        p.product("sales", "shop", GOOD);
        for (path, text) in case.files {
            match (path.strip_prefix('-'), text) {
                (Some(gone), _) => {
                    p.remove(gone);
                }
                (None, Some(text)) => {
                    p.file(path, &content(text));
                }
                (None, None) => {
                    p.dir(path);
                }
            }
        }
        let out = p.run(["config", "validate"]);
        let all = out.all();
        assert_no_panic(&all);
        assert_eq!(out.code(), Some(case.code), "{}:\n{all}", case.case);
        for needle in case.says {
            assert!(
                all.contains(needle),
                "{}: expected {needle:?} in:\n{all}",
                case.case
            );
        }
        if case.code == 2 {
            assert!(
                !all.contains("valid:"),
                "{}: called valid:\n{all}",
                case.case
            );
        }
    }
}

#[test]
fn sync_run_reports_a_bad_default_destination_against_weft_yaml() {
    let p = TestProject::new(
        BIN,
        "version: 1\ndefaults:\n  destination:\n    connector: parquet\n    config: { path: lake, row_group_bytes: lots }\n",
    );
    p.product("sales", "shop", GOOD);
    let out = p.run(["sync", "run", "--no-progress"]);
    out.expect_code(2);
    assert!(
        out.stderr()
            .contains("weft.yaml: defaults.destination.config.row_group_bytes: invalid type"),
        "{}",
        out.stderr()
    );
    assert!(!out.stderr().contains("shop.yaml"), "{}", out.stderr());
}

#[test]
fn mask_on_a_decimal_column_is_refused_with_the_alternatives() {
    let p = project();
    p.product(
        "sales",
        "shop",
        &good_with(
            "- name: orders",
            "- name: customers\n    mappers:\n      - mask: { column: lifetime_value, keep_last: 2 }",
        ),
    );
    let out = p.run(["sync", "run", "--no-progress"]);
    out.expect_code(1);
    let all = out.all();
    assert!(
        all.contains("column `lifetime_value` is decimal(12,2), not text")
            && all.contains("use `hash`"),
        "{all}"
    );
    assert!(p.read_stream("sales", "shop", "customers").num_rows() == 0);
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
