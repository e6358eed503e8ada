//! The CLI's other faces: init (the quickstart), status, history, connectors, config schema.

use weft_testkit::{read_committed, TestProject};

const BIN: &str = env!("CARGO_BIN_EXE_weft");

fn weft(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn init_creates_the_quickstart_and_it_syncs_and_resyncs() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("shop");
    let out = weft(&["init", project.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second init into the same folder is refused.
    assert_eq!(
        weft(&["init", project.to_str().unwrap()]).status.code(),
        Some(2)
    );

    let run = |args: &[&str]| {
        let mut all = vec!["--project", project.to_str().unwrap()];
        all.extend_from_slice(args);
        weft(&all)
    };
    let out = run(&["sync", "run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("sales/shop/orders") && stdout.contains("succeeded"),
        "{stdout}"
    );

    // The lake and the state live under .weft/: the project folder holds only what people write.
    let lake = project.join(".weft/lake/sales/shop");
    assert_eq!(read_committed(&lake.join("orders")).num_rows(), 1_000_000);
    assert_eq!(read_committed(&lake.join("customers")).num_rows(), 100_000);
    assert_eq!(read_committed(&lake.join("products")).num_rows(), 10_000);

    // Emails are hashed by the quickstart's mapper: 64 hex characters, never an address.
    let customers = read_committed(&lake.join("customers"));
    let email = customers
        .column_by_name("email")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    assert!(email
        .iter()
        .flatten()
        .all(|e| e.len() == 64 && !e.contains('@')));
    // The policy's keyed hash gives the same token in every product: marketing's copy (two
    // grants down) holds sales' tokens for the same customers, only German ones, and no
    // names (governance.yaml keeps them in sales).
    let ids = |batch: &arrow::array::RecordBatch| {
        let id = batch
            .column_by_name("id")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .clone();
        let email = batch
            .column_by_name("email")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap()
            .clone();
        (0..batch.num_rows())
            .map(|i| (id.value(i), email.value(i).to_string()))
            .collect::<std::collections::BTreeMap<i64, String>>()
    };
    let sales_tokens = ids(&customers);
    let marketing =
        read_committed(&project.join(".weft/lake/marketing/campaign_margins/customers"));
    assert!(marketing.num_rows() > 1000);
    assert!(marketing.column_by_name("name").is_none());
    for (id, token) in ids(&marketing) {
        assert_eq!(sales_tokens.get(&id), Some(&token), "customer {id}");
    }
    let finance = read_committed(&project.join(".weft/lake/finance/revenue/customers"));
    assert!(
        finance.column_by_name("name").is_none(),
        "names stay in sales"
    );

    // README's `product show` of marketing's product: its schema is finance's store read back
    // through finance's grant (granted columns, the row filter).
    let out = run(&["product", "show", "marketing/campaign_margins"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("schema unknown"), "{text}");
    assert!(
        text.contains("stream customers (incremental, append_dedup)"),
        "{text}"
    );
    let out = run(&[
        "product",
        "show",
        "marketing/campaign_margins",
        "--format",
        "json",
    ]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let columns: Vec<(&str, &serde_json::Value)> = shown["streams"][0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), &c["transformations"]))
        .collect();
    let none = serde_json::json!([]);
    assert_eq!(
        columns,
        [
            ("id", &none),
            ("email", &none),
            ("country", &serde_json::json!(["rows filtered: eq \"DE\""])),
            ("lifetime_value", &none),
            ("updated_at", &none),
        ],
        "{shown}"
    );

    // The second run picks up the sample's changes: 1000 new orders, one row per id.
    let out = run(&["sync", "run", "sales/shop/orders", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "succeeded");
    assert_eq!(
        report["streams"][0]["rows"], 2000,
        "1000 updated + 1000 new orders"
    );
    assert_eq!(read_committed(&lake.join("orders")).num_rows(), 1_001_000);

    let status = run(&["sync", "status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let orders = status
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "sales/shop/orders")
        .unwrap();
    assert_eq!(orders["last_status"], "succeeded");
    assert_eq!(orders["last_rows"], 2000);

    let history = run(&["sync", "history", "--format", "json"]);
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[0]["selectors"][0], "sales/shop/orders");
}

#[test]
fn connector_list_spec_and_discover() {
    let out = weft(&["connector", "list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for n in ["sample", "files", "parquet"] {
        assert!(names.contains(&n), "{names:?}");
    }

    let out = weft(&["connector", "spec", "parquet"]);
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(spec["properties"]["path"].is_object(), "{spec}");

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sample.yaml");
    std::fs::write(&cfg, "scale: 500\n").unwrap();
    let out = weft(&[
        "connector",
        "discover",
        "sample",
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let catalog: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let orders = catalog
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "orders")
        .unwrap();
    assert_eq!(orders["primary_key"][0], "id");
    assert_eq!(orders["row_estimate"], 500);

    let out = weft(&["connector", "spec", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn connector_check_of_a_product_destination() {
    let p = TestProject::with_lake(BIN, "1s");
    p.file("blocked", "a file");
    p.product(
        "sales",
        "shop",
        "product: shop\ndomain: sales\nowner: o@example.com\ndescription: d\nsource:\n  connector: sample\nstreams:\n  - name: orders\ndestination:\n  connector: parquet\n  config: { path: blocked/lake }\n",
    );
    let out = p.run(["connector", "check", "sales/shop"]);
    out.expect_code(0);
    let out = p.run(["connector", "check", "sales/shop", "--destination"]);
    out.expect_code(1);
    assert!(out.stderr().contains("blocked"), "{}", out.stderr());
}

#[test]
fn config_schema_describes_product_files() {
    let out = weft(&["config", "schema"]);
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = schema.to_string();
    for field in ["domain", "owner", "streams", "mappers", "primary_key"] {
        assert!(text.contains(field), "{field} missing from the schema");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let p = TestProject::one_product(BIN, "sales",
        "shop",
        "product: shop\ndomain: sales\nowner: o@example.com\ndescription: d\nsource:\n  connector: sample\n  config: { scale: 1000 }\nstreams:\n  - name: orders\n");
    let out = p.run(["--log-format", "json", "sync", "run", "--no-progress"]);
    out.expect_code(0);
    let lines: Vec<serde_json::Value> = out
        .stderr()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert!(lines.iter().any(
        |l| l["fields"]["message"] == "sync run ended" && l["fields"]["status"] == "succeeded"
    ));
}

#[test]
fn sync_reset_forgets_a_lake_stream_and_the_next_run_starts_over() {
    let p = TestProject::one_product(BIN, "sales",
        "shop",
        "product: shop\ndomain: sales\nowner: o@example.com\ndescription: d\nsource:\n  connector: sample\n  config: { scale: 1000, changes_per_run: 50 }\nstreams:\n  - name: orders\n    mode: incremental\n    write: append\n    cursor: updated_at\n  - name: customers\n");
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let orders = p.stream_dir("sales", "shop", "orders");
    let appended = p.read_stream("sales", "shop", "orders").num_rows();
    assert!(
        appended > 1000,
        "{appended} rows after two incremental runs"
    );

    // A selector is required: a reset never forgets everything by accident.
    let out = p.run(["sync", "reset"]);
    out.expect_code(2);

    // Off a terminal, a reset needs --yes, and without it nothing is dropped.
    let out = p.run(["sync", "reset", "sales/shop/orders"]);
    out.expect_code(2);
    assert!(
        out.stderr().contains("pass --yes to confirm")
            && out.stderr().contains("sales/shop/orders"),
        "{}",
        out.stderr()
    );
    assert!(orders.exists(), "an unconfirmed reset dropped the stream");

    let out = p.run([
        "sync",
        "reset",
        "sales/shop/orders",
        "--format",
        "json",
        "--yes",
    ]);
    out.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(report[0]["stream"], "sales/shop/orders");
    assert_eq!(report[0]["had_state"], true);
    assert_eq!(report[0]["errors"], serde_json::json!([]));
    assert!(!orders.exists(), "the stream folder is still there");
    assert!(
        p.stream_dir("sales", "shop", "customers").exists(),
        "reset touched another stream"
    );
    let status = p.run(["sync", "status", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    let orders_status = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["stream"] == "sales/shop/orders")
        .unwrap();
    assert!(orders_status["checkpoint"].is_null(), "{orders_status}");

    // The next run reads the stream from scratch: one copy of the current rows.
    p.run(["sync", "run", "--no-progress", "sales/shop/orders"])
        .expect_code(0);
    assert_eq!(p.read_stream("sales", "shop", "orders").num_rows(), 1000);
}

const SHOP: &str = "product: shop\ndomain: sales\nowner: o@example.com\ndescription: d\nsource:\n  connector: sample\n  config: { scale: 1000 }\nstreams:\n  - name: orders\n";

#[test]
fn init_refuses_a_folder_that_is_not_empty_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("existing");
    std::fs::create_dir_all(target.join("domains/sales")).unwrap();
    std::fs::write(target.join(".gitignore"), "/secrets/\n").unwrap();
    std::fs::write(target.join("domains/sales/mine.yaml"), "mine").unwrap();

    let out = weft(&["init", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not empty (.gitignore, domains)") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(target.join(".gitignore")).unwrap(),
        "/secrets/\n"
    );
    assert!(!target.join("weft.yaml").exists());

    let out = weft(&["init", target.to_str().unwrap(), "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(target.join("weft.yaml").is_file());
    // The user's .gitignore keeps its lines and gains weft's; their product file is left alone.
    assert_eq!(
        std::fs::read_to_string(target.join(".gitignore")).unwrap(),
        "/secrets/\n/.weft/\n"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("domains/sales/mine.yaml")).unwrap(),
        "mine"
    );
}

#[test]
fn init_with_connectors_writes_a_commented_skeleton_that_validates() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("ledger");
    let t = target.to_str().unwrap();
    let out = weft(&[
        "init",
        t,
        "--source",
        "postgres",
        "--destination",
        "parquet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let product = std::fs::read_to_string(target.join("domains/example/my_product.yaml")).unwrap();
    for line in [
        "  connector: postgres",
        "    # Host name or IP address of the server.",
        "    host: localhost",
        "    # password: \"${SOURCE_PASSWORD}\"",
        "    # port: 5432",
        "  - name: public.my_table",
        "# schedule: \"0 * * * *\"",
    ] {
        assert!(
            product.lines().any(|l| l.starts_with(line)),
            "{line:?} missing:\n{product}"
        );
    }
    let weft_yaml = std::fs::read_to_string(target.join("weft.yaml")).unwrap();
    assert!(
        weft_yaml.contains("    connector: parquet\n"),
        "{weft_yaml}"
    );
    assert!(weft_yaml.contains("      path: lake\n"), "{weft_yaml}");

    // The skeleton is a valid project as written: only its values need filling in.
    let out = weft(&["--project", t, "config", "validate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("my_product (domains/example/my_product.yaml): postgres -> parquet"),
        "{stdout}"
    );

    // The command line's unambiguous names work here too.
    let y = dir.path().join("y");
    let out = weft(&[
        "init",
        y.to_str().unwrap(),
        "--source",
        "source-sample",
        "--destination",
        "destination-postgres",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(y.join("weft.yaml"))
        .unwrap()
        .contains("    connector: postgres\n"));

    let out = weft(&[
        "init",
        dir.path().join("x").to_str().unwrap(),
        "--source",
        "nosuch",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--source: unknown source connector `nosuch`; available: sample"),
        "{err}"
    );
}

#[test]
fn connector_names_are_unambiguous_on_the_command_line() {
    let out = weft(&["connector", "spec", "postgres"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`postgres` is both a source and a destination")
            && err.contains("`source-postgres` or `destination-postgres`"),
        "{err}"
    );

    let spec = |args: &[&str]| -> serde_json::Value {
        let out = weft(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let source = spec(&["connector", "spec", "source-postgres"]);
    let destination = spec(&["connector", "spec", "destination-postgres"]);
    assert!(source["properties"]["replication"].is_object(), "{source}");
    assert!(
        destination["properties"]["replication"].is_null(),
        "{destination}"
    );
    assert_eq!(
        spec(&["connector", "spec", "postgres", "--kind", "destination"]),
        destination
    );
    assert_eq!(
        spec(&["connector", "spec", "sample"]),
        spec(&["connector", "spec", "source-sample"])
    );

    let out = weft(&["connector", "spec", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown connector `nope`; sources: sample, files, postgres, airbyte, manifest; destinations: parquet, postgres"),
        "{err}"
    );
    let out = weft(&["connector", "spec", "destination-sample"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn discover_prints_a_table_with_sql_types_and_json_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sample.yaml");
    std::fs::write(&cfg, "scale: 500\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let out = weft(&["connector", "discover", "sample", "--config", cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("source connector `sample`: 3 stream(s)"),
        "{table}"
    );
    assert!(
        table.contains("orders  (modes full_refresh, incremental; key id; cursor candidates updated_at; ~500 rows)"),
        "{table}"
    );
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().find(|w| *w != "|" && *w != "│") == Some(name))
            .unwrap_or_else(|| panic!("no row {name}:\n{table}"))
            .split_whitespace()
            .filter(|w| *w != "|" && *w != "│")
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("lifetime_value"),
        ["lifetime_value", "decimal(12,2)", "no"]
    );
    assert_eq!(row("note"), ["note", "text", "yes"]);
    assert!(table.contains("timestamptz"), "{table}");
    assert!(
        !table.contains("Timestamp(") && !table.contains("Decimal128"),
        "{table}"
    );

    let out = weft(&[
        "connector",
        "discover",
        "sample",
        "--config",
        cfg,
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let customers = json
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "customers")
        .unwrap();
    let updated_at = customers["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "updated_at")
        .unwrap();
    assert_eq!(updated_at["type"], "timestamptz");
    assert_eq!(updated_at["arrow_type"], "Timestamp(µs, \"UTC\")");

    // A destination has nothing to discover; the old no-op flag is gone.
    let out = weft(&["connector", "discover", "parquet"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`parquet` is a destination"));
    let out = weft(&["connector", "discover", "sample", "--destination"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_validate_lists_what_it_found_and_connect_runs_the_checks() {
    let p = TestProject::one_product(
        BIN,
        "sales",
        "shop",
        &SHOP.replace("streams:", "schedule: \"30 2 * * *\"\nstreams:"),
    );
    p.product(
        "finance",
        "ledger",
        "product: ledger\ndomain: finance\nowner: o@example.com\nsource:\n  connector: sample\nstreams:\n  - name: customers\n    mode: incremental\n    cursor: updated_at\n  - name: products\n",
    );
    let out = p.run(["config", "validate"]);
    out.expect_code(0);
    let stdout = out.stdout();
    for line in [
        "domain finance (domains/finance/domain.yaml): 1 product(s), owners finance-data@example.com",
        "  ledger (domains/finance/ledger.yaml): sample -> parquet, no schedule",
        "    customers: incremental / append_dedup",
        "    products: full_refresh / overwrite",
        "domain sales (domains/sales/domain.yaml): 1 product(s), owners sales-data@example.com",
        "valid: 2 domain(s), 2 product(s), 3 stream(s)",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line:?} missing:\n{stdout}"
        );
    }
    assert!(
        stdout.contains(
            "  shop (domains/sales/shop.yaml): sample -> parquet, schedule \"30 2 * * *\" (next "
        ) && stdout.contains(" 02:30:00 UTC)"),
        "{stdout}"
    );
    // Validation connects to nothing and writes nothing.
    assert!(!p.lake().exists() && !p.path().join(".weft").exists());

    let out = p.run(["config", "validate", "--connect"]);
    out.expect_code(0);
    assert!(
        out.stdout()
            .contains("finance/ledger source `sample`: check succeeded"),
        "{}",
        out.stdout()
    );
    assert!(
        out.stdout()
            .contains("finance/ledger destination `parquet`: check succeeded"),
        "{}",
        out.stdout()
    );
    // One lake, checked once.
    assert_eq!(
        out.stdout().matches("destination `parquet`").count(),
        1,
        "{}",
        out.stdout()
    );

    p.file("blocked", "a file where a folder should be");
    p.product(
        "sales",
        "shop",
        &format!("{SHOP}destination:\n  connector: parquet\n  config: {{ path: blocked/lake }}\n"),
    );
    let out = p.run(["config", "validate", "--connect"]);
    out.expect_code(1);
    assert!(
        out.stderr()
            .contains("error: sales/shop destination `parquet`: check failed:")
            && out.stderr().contains("blocked"),
        "{}",
        out.stderr()
    );
}

#[test]
fn a_filter_on_a_zoned_timestamp_keeps_exactly_the_later_rows() {
    let p = TestProject::with_lake(BIN, "1s");
    let product = SHOP.replace("- name: orders", "- name: customers");
    p.product("sales", "shop", &product);
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let all = p.read_stream("sales", "shop", "customers");
    let times = |batch: &arrow::array::RecordBatch| -> Vec<(i64, i64)> {
        let ids = batch
            .column_by_name("id")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        let at = batch
            .column_by_name("created_at")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .unwrap();
        let mut v: Vec<_> = ids
            .values()
            .iter()
            .copied()
            .zip(at.values().iter().copied())
            .collect();
        v.sort();
        v
    };
    let rows = times(&all);
    let mut instants: Vec<i64> = rows.iter().map(|r| r.1).collect();
    instants.sort();
    let cut = instants[instants.len() / 2];
    // The cut written in another offset: the same instant, two hours ahead on the clock.
    let text = chrono::DateTime::from_timestamp_micros(cut)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    assert!(text.ends_with("+02:00"), "{text}");

    p.product(
        "sales",
        "later",
        &product.replace("product: shop", "product: later").replace(
            "- name: customers",
            &format!("- name: customers\n    mappers:\n      - filter: {{ column: created_at, op: ge, value: \"{text}\" }}"),
        ),
    );
    p.run(["sync", "run", "--no-progress", "sales/later"])
        .expect_code(0);
    let kept = times(&p.read_stream("sales", "later", "customers"));
    let expected: Vec<(i64, i64)> = rows.iter().copied().filter(|r| r.1 >= cut).collect();
    assert!(!expected.is_empty() && expected.len() < rows.len());
    assert_eq!(kept, expected);
}

#[test]
fn a_changed_sample_scale_under_a_checkpoint_stops_with_the_way_out() {
    let p = TestProject::with_lake(BIN, "1s");
    let incremental = SHOP.replace(
        "- name: orders",
        "- name: orders\n    mode: incremental\n    cursor: updated_at",
    );
    p.product("sales", "shop", &incremental);
    // -v shows the resume position as JSON, as `sync status` does.
    let out = p.run(["-v", "sync", "run", "--no-progress"]);
    out.expect_code(0);
    assert!(out.stderr().contains("resume=none"), "{}", out.stderr());
    let out = p.run(["-v", "sync", "run", "--no-progress"]);
    out.expect_code(0);
    assert!(
        out.stderr().contains("resume={\"complete\":true"),
        "{}",
        out.stderr()
    );
    assert!(!out.stderr().contains("Object {"), "{}", out.stderr());

    // Status and history show moments one way: `YYYY-MM-DD HH:MM:SS`, in columns saying UTC.
    let status = p.run(["sync", "status"]).stdout();
    let history = p.run(["sync", "history"]).stdout();
    assert_eq!(timestamps(&status).len(), 1, "{status}");
    assert_eq!(
        timestamps(&history).len(),
        2,
        "two runs started:\n{history}"
    );
    assert!(status.contains("(UTC)") && history.contains("(UTC)"));
    assert!(!status.contains("+00:00") && !history.contains("+00:00"));

    p.product(
        "sales",
        "shop",
        &incremental.replace("scale: 1000", "scale: 3000"),
    );
    let out = p.run(["sync", "run", "--no-progress"]);
    out.expect_code(1);
    let all = out.all();
    assert!(
        all.contains("the checkpoint was taken with scale 1000 and seed 0, but the config now says scale 3000 and seed 0")
            && all.contains("weft sync reset"),
        "{all}"
    );
    assert_eq!(p.read_stream("sales", "shop", "orders").num_rows(), 1000);

    p.run(["sync", "reset", "sales/shop/orders", "--yes"])
        .expect_code(0);
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    assert_eq!(p.read_stream("sales", "shop", "orders").num_rows(), 3000);
}

/// Every `YYYY-MM-DD HH:MM:SS` in `text`.
fn timestamps(text: &str) -> Vec<&str> {
    let shape = "dddd-dd-dd dd:dd:dd";
    (0..text.len().saturating_sub(shape.len() - 1))
        .filter_map(|i| text.get(i..i + shape.len()))
        .filter(|w| {
            w.chars().zip(shape.chars()).all(|(c, s)| match s {
                'd' => c.is_ascii_digit(),
                s => c == s,
            })
        })
        .collect()
}

const SMALL: &str = "product: shop\ndomain: sales\nowner: o@example.com\ndescription: d\nsource:\n  connector: sample\n  config: { scale: 1000, changes_per_run: 10 }\nstreams:\n  - name: orders\n    mode: incremental\n    write: append_dedup\n    cursor: updated_at\n    primary_key: [id]\n  - name: customers\n";

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let p = TestProject::one_product(BIN, "sales", "shop", SMALL);
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    p.file("sample.yaml", "scale: 500\n");
    let sample = p.path().join("sample.yaml");
    let sample = sample.to_str().unwrap();
    for args in [
        vec!["sync", "status", "--format", "json"],
        vec!["sync", "status"],
        vec!["sync", "history", "--format", "json"],
        vec!["sync", "history"],
        vec!["connector", "list"],
        vec!["connector", "spec", "parquet"],
        vec!["connector", "discover", "sample", "--config", sample],
        vec!["sync", "run", "--dry-run"],
        // A run does its work and keeps its exit code; only its summary is lost.
        vec!["sync", "run", "--no-progress"],
    ] {
        // The reader is gone before weft writes a byte: every write meets a closed pipe, as
        // with `weft … | head -1` on output longer than what head reads.
        let mut child = p
            .weft(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
    let runs = p.run(["sync", "history", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_str(&runs.expect_code(0).stdout()).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    assert_eq!(runs[0]["status"], "succeeded", "{runs}");
    // A failed write that is not a closed pipe is not silent.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = p.weft(["sync", "history"]).stdout(full).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot write to stdout"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn status_and_history_of_a_new_project_say_no_runs_and_create_nothing() {
    let p = TestProject::one_product(BIN, "sales", "shop", SMALL);
    let out = p.run(["sync", "history"]);
    out.expect_code(0);
    assert!(out.stdout().contains("no runs yet"), "{}", out.stdout());
    let out = p.run(["sync", "history", "--format", "json"]);
    assert_eq!(out.expect_code(0).stdout().trim(), "[]");
    let out = p.run(["sync", "status"]);
    out.expect_code(0);
    assert!(
        out.stdout().contains("sales/shop/orders"),
        "{}",
        out.stdout()
    );
    assert!(out.stdout().contains("no runs yet"), "{}", out.stdout());
    p.run(["sync", "run", "--dry-run"]).expect_code(0);
    assert!(
        !p.path().join(".weft").exists(),
        "looking created the state folder"
    );
}

#[test]
fn dry_run_shows_the_plan_and_changes_nothing() {
    let p = TestProject::one_product(BIN, "sales", "shop", SMALL);
    let plan = |p: &TestProject| -> serde_json::Value {
        let out = p.run(["sync", "run", "--dry-run", "--format", "json"]);
        serde_json::from_str(&out.expect_code(0).stdout()).unwrap()
    };
    let before = plan(&p);
    let orders = &before[0];
    assert_eq!(orders["stream"], "sales/shop/orders", "{before}");
    assert_eq!(orders["mode"], "incremental");
    assert_eq!(orders["write"], "append_dedup");
    assert_eq!(orders["cursor"], "updated_at");
    assert_eq!(orders["destination"], "parquet");
    assert_eq!(orders["destination_at"], "lake");
    assert!(orders["resume_from"].is_null(), "{before}");
    assert!(!p.stream_dir("sales", "shop", "orders").exists());

    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let after = plan(&p);
    assert!(after[0]["resume_from"].is_object(), "{after}");
    let table = p.run(["sync", "run", "--dry-run"]);
    assert!(
        table
            .expect_code(0)
            .stdout()
            .contains("dry run: nothing was read"),
        "{}",
        table.stdout()
    );
    let runs = p.run(["sync", "history", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout()).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "a dry run was recorded");
}

#[test]
fn quiet_runs_print_only_the_summary() {
    let p = TestProject::one_product(BIN, "sales", "shop", SMALL);
    let out = p.run(["-q", "sync", "run"]);
    out.expect_code(0);
    assert_eq!(out.stderr(), "", "quiet, yet stderr had output");
    assert!(out.stdout().contains("succeeded"), "{}", out.stdout());
}

#[test]
fn the_run_summary_fits_80_columns_and_splits_read_and_publish_time() {
    let p = TestProject::one_product(BIN, "sales", "shop", SMALL);
    let out = p.run(["sync", "run", "--no-progress"]);
    let stdout = out.expect_code(0).stdout();
    for line in stdout.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line}\n{stdout}"
        );
    }
    for header in ["read time", "publish", "landed", "rows/s"] {
        assert!(stdout.contains(header), "{header}: {stdout}");
    }
    let out = p.run(["sync", "run", "--no-progress", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out.expect_code(0).stdout()).unwrap();
    let orders = &report["streams"][0];
    assert_eq!(orders["stream"], "sales/shop/orders");
    assert_eq!(orders["rows"], orders["committed_rows"], "{orders}");
    let (read, publish, total) = (
        orders["read_seconds"].as_f64().unwrap(),
        orders["publish_seconds"].as_f64().unwrap(),
        orders["seconds"].as_f64().unwrap(),
    );
    assert!(
        read + publish <= total + 0.002 && read + publish >= total - 0.002,
        "{orders}"
    );
}

#[test]
fn sync_reset_asks_for_confirmation_on_a_terminal() {
    let p = TestProject::one_product(BIN, "sales", "shop", SMALL);
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let orders = p.stream_dir("sales", "shop", "orders");
    // `script` runs weft on a pseudo-terminal and feeds it our stdin: the answer.
    let on_a_terminal = |answer: &str| {
        use std::io::Write;
        let command = format!(
            "{BIN} --project {} sync reset sales/shop/orders",
            p.path().display()
        );
        let mut child = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script (util-linux) runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = on_a_terminal("no\n");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("sales/shop/orders (in parquet)"), "{shown}");
    assert!(shown.contains("Type `yes` to go on"), "{shown}");
    assert!(shown.contains("reset not confirmed"), "{shown}");
    assert!(orders.exists(), "dropped without a yes");

    let out = on_a_terminal("yes\n");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(!orders.exists(), "not dropped after a yes: {shown}");
}

#[test]
fn shell_completions_cover_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = weft(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for word in ["sync", "connector", "dry-run", "no-progress"] {
            assert!(script.contains(word), "{shell}: {word} missing");
        }
    }
    assert_eq!(weft(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn full_refresh_rereads_dedup_streams_without_a_reset_and_refuses_appends() {
    let p = TestProject::one_product(BIN, "sales", "shop", SMALL);
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let rows_read = |out: &weft_testkit::Outcome| -> u64 {
        let report: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
        assert_eq!(
            report["streams"][0]["stream"], "sales/shop/orders",
            "{report}"
        );
        report["streams"][0]["rows"].as_u64().unwrap()
    };
    // An ordinary run reads only what changed; --full-refresh reads everything again.
    let out = p.run(["sync", "run", "sales/shop/orders", "--format", "json"]);
    assert_eq!(
        rows_read(out.expect_code(0)),
        20,
        "10 updated + 10 new orders"
    );
    let out = p.run([
        "sync",
        "run",
        "sales/shop/orders",
        "--full-refresh",
        "--format",
        "json",
    ]);
    // (The sample source read without a checkpoint is its first version: its 1000 orders.)
    assert_eq!(
        rows_read(out.expect_code(0)),
        1000,
        "every order, read again"
    );
    // One row per key, nothing lost: the 10 newer orders and updates stay (latest cursor wins).
    let orders = p.read_stream("sales", "shop", "orders");
    let ids = orders
        .column_by_name("id")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap();
    let distinct: std::collections::HashSet<i64> = ids.iter().flatten().collect();
    assert_eq!((ids.len(), distinct.len()), (1010, 1010));
    // And the cursor goes on from the full read.
    let out = p.run(["sync", "run", "sales/shop/orders", "--format", "json"]);
    assert_eq!(rows_read(out.expect_code(0)), 20);

    // An append stream would get every row twice: refused before anything runs.
    p.product(
        "sales",
        "shop",
        &SMALL.replace("write: append_dedup", "write: append"),
    );
    let out = p.run(["sync", "run", "--full-refresh"]);
    out.expect_code(2);
    assert!(
        out.stderr()
            .contains("sales/shop/orders: its `write: append` would get every row a second time"),
        "{}",
        out.stderr()
    );
}
