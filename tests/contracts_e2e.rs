//! End to end: product contracts locked by `weft product contract`, enforced by `weft sync run`
//! per `on_change` (CSV files rewritten between runs drive the schema changes), compared by
//! `weft product diff`; the catalog commands on a two-domain project; product metadata read
//! back from the lake by pyarrow and from PostgreSQL comments.

use weft_testkit::pg::PgTestDb;
use weft_testkit::readers::{dump, parquet_metadata};
use weft_testkit::TestProject;

const BIN: &str = env!("CARGO_BIN_EXE_weft");
const CONTRACT: &str = "domains/sales/people.contract.yaml";

fn product(on_change: &str, overrides: &str, key: &str) -> String {
    format!(
        r#"product: people
domain: sales
owner: sales-data@example.com
description: People from the CRM's CSV drops.
classification: confidential
freshness: 24h
contract: {{ on_change: {on_change} }}
source:
  connector: files
  config:
    streams:
      - {{ name: people, path: drops, glob: "*.csv", format: csv{overrides} }}
streams:
  - name: people
    description: One row per person.
    primary_key: [{key}]
    fields:
      email: {{ description: The person's e-mail address, tags: [pii] }}
      qty: {{ description: Items bought }}
    mappers:
      - hash: {{ column: email, salt: "pepper" }}
"#
    )
}

/// A project whose `sales/people` product reads `drops/*.csv`; the first CSV is synced and
/// the contract locked (1.0).
fn locked(on_change: &str) -> TestProject {
    let p = TestProject::one_product(BIN, "sales", "people", &product(on_change, "", "id"));
    p.file(
        "drops/a.csv",
        "id,name,email,qty\n1,Ann,ann@example.com,3\n2,Bob,bob@example.com,4\n",
    );
    let out = p.run(["product", "contract", "sales/people"]);
    out.expect_code(0);
    assert_eq!(
        out.stdout(),
        format!("locked sales/people contract 1.0 in {CONTRACT}\n")
    );
    p.run(["sync", "run"]).expect_code(0);
    p
}

/// The one stream's error of a `sync run --format json`, which must have failed.
fn failed_sync(p: &TestProject) -> String {
    let out = p.run(["sync", "run", "--format", "json"]);
    out.expect_code(1);
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(report["streams"][0]["status"], "failed", "{report}");
    report["streams"][0]["error"].as_str().unwrap().to_string()
}

fn rows(p: &TestProject) -> Vec<(Option<String>, Option<String>)> {
    let d = dump(&p.stream_dir("sales", "people", "people"), "id");
    d.column("id").into_iter().zip(d.column("name")).collect()
}

fn manifest(p: &TestProject) -> serde_json::Value {
    let path = p
        .stream_dir("sales", "people", "people")
        .join("_weft/manifest.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn some(pairs: &[(&str, &str)]) -> Vec<(Option<String>, Option<String>)> {
    pairs
        .iter()
        .map(|(a, b)| (Some(a.to_string()), Some(b.to_string())))
        .collect()
}

fn without_qty() -> String {
    product("evolve", "", "id").replace("      qty: { description: Items bought }\n", "")
}

const THREE_WITH_EXTRA: &str = "id,name,email,qty,extra\n1,Ann,ann@example.com,3,\n2,Bob,bob@example.com,4,vip\n3,Cy,cy@example.com,5,\n";

#[test]
fn an_added_column_evolves_and_is_reported_as_drift() {
    let p = locked("evolve");
    p.file("drops/a.csv", THREE_WITH_EXTRA);
    let out = p.run(["sync", "run"]);
    out.expect_code(0);
    assert!(
        out.stderr().contains("domains/sales/people.yaml: stream `people` drifts from its locked contract: additive: people.extra: new column (text); handled per `on_change: evolve`. Re-lock with `weft product contract sales/people`"),
        "{}",
        out.stderr()
    );
    let d = dump(&p.stream_dir("sales", "people", "people"), "id");
    assert_eq!(d.column("extra"), [None, Some("vip".into()), None]);

    // The diff flags it as additive, exit 0; re-locking bumps the minor version.
    let diff = p.run(["product", "diff", "sales/people", "--format", "json"]);
    diff.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&diff.stdout()).unwrap();
    assert_eq!(json["breaking"], false);
    assert_eq!(
        json["changes"],
        serde_json::json!([{"kind": "additive", "stream": "people", "column": "extra", "change": "new column (text)"}])
    );
    let lock = p.run(["product", "contract", "sales/people"]);
    lock.expect_code(0);
    assert_eq!(
        lock.stdout(),
        format!("locked sales/people contract 1.1 in {CONTRACT} (was 1.0; 1 change(s))\n")
    );
    let again = p.run(["product", "contract", "sales/people"]);
    assert_eq!(
        again.stdout(),
        format!("sales/people: contract 1.1 ({CONTRACT}) is up to date\n")
    );
    let diff = p.run(["product", "diff", "sales/people"]);
    diff.expect_code(0);
    assert_eq!(
        diff.stdout(),
        "sales/people: the source matches contract 1.1\n"
    );
}

#[test]
fn an_added_column_is_refused_under_freeze_and_nothing_is_written() {
    let p = locked("freeze");
    let before = manifest(&p);
    p.file("drops/a.csv", THREE_WITH_EXTRA);
    assert_eq!(
        failed_sync(&p),
        format!("domains/sales/people.yaml: stream `people`: the source differs from contract 1.0 ({CONTRACT}) and the product's `on_change: freeze` refuses any difference: people.extra: new column (text); nothing was written. Lock the change with `weft product contract sales/people` (version 1.1), or undo it in the source")
    );
    assert_eq!(rows(&p), some(&[("1", "Ann"), ("2", "Bob")]));
    assert_eq!(manifest(&p)["version"], before["version"]);
}

#[test]
fn discard_value_leaves_new_columns_out() {
    let p = locked("discard_value");
    p.file("drops/a.csv", THREE_WITH_EXTRA);
    p.run(["sync", "run"]).expect_code(0);
    let d = dump(&p.stream_dir("sales", "people", "people"), "id");
    assert!(!d.types.contains_key("extra"), "{:?}", d.types);
    assert_eq!(rows(&p), some(&[("1", "Ann"), ("2", "Bob"), ("3", "Cy")]));
}

#[test]
fn discard_row_leaves_out_rows_with_values_in_new_columns() {
    let p = locked("discard_row");
    p.file("drops/a.csv", THREE_WITH_EXTRA);
    p.run(["sync", "run"]).expect_code(0);
    let d = dump(&p.stream_dir("sales", "people", "people"), "id");
    assert!(!d.types.contains_key("extra"), "{:?}", d.types);
    assert_eq!(rows(&p), some(&[("1", "Ann"), ("3", "Cy")]));
}

/// A breaking change fails the stream before anything is written, whatever `on_change` says.
fn assert_breaking(p: &TestProject, what: &str) {
    let before = manifest(p);
    assert_eq!(
        failed_sync(p),
        format!("domains/sales/people.yaml: stream `people`: breaking change against contract 1.0 ({CONTRACT}): {what}; nothing was written. If consumers can accept it, lock a new major version with `weft product contract sales/people --major` and tell them; otherwise restore the source")
    );
    assert_eq!(rows(p), some(&[("1", "Ann"), ("2", "Bob")]));
    assert_eq!(manifest(p)["version"], before["version"]);
    // `product diff` fails CI on it.
    let diff = p.run(["product", "diff", "sales/people", "--format", "json"]);
    diff.expect_code(1);
    let json: serde_json::Value = serde_json::from_str(&diff.stdout()).unwrap();
    assert_eq!(json["breaking"], true, "{json}");
}

#[test]
fn a_dropped_column_stops_the_stream() {
    let p = locked("evolve");
    // The source lost `qty`, and the product file its description.
    p.product("sales", "people", &without_qty());
    p.file(
        "drops/a.csv",
        "id,name,email\n1,Ann,a@example.com\n9,Zed,z@example.com\n",
    );
    assert_breaking(&p, "people.qty: column dropped");
}

#[test]
fn a_renamed_column_stops_the_stream() {
    let p = locked("evolve");
    p.file(
        "drops/a.csv",
        "id,full_name,email,qty\n1,Ann,a@example.com,3\n9,Zed,z@example.com,1\n",
    );
    assert_breaking(&p, "people.name: column dropped (renamed to `full_name`?)");
}

#[test]
fn a_narrowed_type_stops_the_stream() {
    let p = locked("evolve");
    p.product(
        "sales",
        "people",
        &product("evolve", ", schema_overrides: { qty: int32 }", "id"),
    );
    p.file(
        "drops/a.csv",
        "id,name,email,qty\n1,Ann,a@example.com,3\n9,Zed,z@example.com,1\n",
    );
    assert_breaking(&p, "people.qty: type bigint → integer (narrowed)");
}

#[test]
fn a_changed_key_stops_the_stream() {
    let p = locked("evolve");
    p.product("sales", "people", &product("evolve", "", "name"));
    p.file(
        "drops/a.csv",
        "id,name,email,qty\n1,Ann,a@example.com,3\n9,Zed,z@example.com,1\n",
    );
    assert_breaking(&p, "people: primary key [id] → [name]");
}

#[test]
fn a_breaking_change_is_locked_only_with_major() {
    let p = locked("evolve");
    p.product("sales", "people", &without_qty());
    p.file("drops/a.csv", "id,name,email\n1,Ann,a@example.com\n");
    let out = p.run(["product", "contract", "sales/people"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr().trim(),
        format!("error: sales/people: the source breaks contract 1.0 ({CONTRACT}): breaking: people.qty: column dropped. Consumers must accept a breaking change: lock it as version 2.0 with `weft product contract sales/people --major` and tell them; or restore the source")
    );
    let out = p.run(["product", "contract", "sales/people", "--major"]);
    out.expect_code(0);
    assert_eq!(
        out.stdout(),
        format!("locked sales/people contract 2.0 in {CONTRACT} (was 1.0; 1 change(s))\n")
    );
    let text = std::fs::read_to_string(p.path().join(CONTRACT)).unwrap();
    assert!(text.contains("version: \"2.0\""), "{text}");
    assert!(!text.contains("qty"), "{text}");
    p.run(["sync", "run"]).expect_code(0);
}

#[test]
fn fields_naming_a_missing_column_fail_planning() {
    let p = TestProject::one_product(
        BIN,
        "sales",
        "people",
        &product("evolve", "", "id").replace("      qty: {", "      qtty: {"),
    );
    p.file("drops/a.csv", "id,name,email,qty\n1,Ann,a@example.com,3\n");
    assert_eq!(
        failed_sync(&p),
        "domains/sales/people.yaml: stream `people`: `fields` describes column `qtty`, which the source does not have; it offers: id, name, email, qty, _file, _line, _file_modified_at"
    );
}

#[test]
fn metadata_travels_into_the_lake() {
    let p = locked("evolve");
    let files = parquet_metadata(&p.stream_dir("sales", "people", "people"));
    assert!(!files.is_empty());
    for file in &files {
        let schema = &file["schema"];
        assert_eq!(schema["weft.owner"], "sales-data@example.com");
        assert_eq!(
            schema["weft.description"],
            "People from the CRM's CSV drops."
        );
        assert_eq!(schema["weft.contract_version"], "1.0");
        assert_eq!(schema["weft.stream_description"], "One row per person.");
        assert_eq!(
            file["fields"]["email"],
            serde_json::json!({"weft.description": "The person's e-mail address", "weft.tags": "pii"})
        );
        assert_eq!(
            file["fields"]["qty"],
            serde_json::json!({"weft.description": "Items bought"})
        );
        assert_eq!(file["fields"]["id"], serde_json::json!({}));
    }
    let product = &manifest(&p)["product"];
    assert_eq!(product["owner"], "sales-data@example.com");
    assert_eq!(product["contract_version"], "1.0");
    assert_eq!(
        product["columns"]["email"],
        serde_json::json!({"description": "The person's e-mail address", "tags": ["pii"]})
    );
}

#[test]
fn metadata_travels_into_postgres_comments() {
    let db = PgTestDb::create("contracts");
    let p = TestProject::new(
        BIN,
        &format!(
            "version: 1\ndefaults:\n  destination:\n    connector: postgres\n    config: {{ host: {}, port: {}, user: {}, database: {} }}\n",
            db.host, db.port, db.user, db.name
        ),
    );
    // A quote in the owner and the description must reach the comments intact.
    let text = product("evolve", "", "id")
        .replace("sales-data@example.com", "o'brien@example.com")
        .replace("The person's e-mail address", "It's the \\ e-mail");
    p.product("sales", "people", &text);
    p.file("drops/a.csv", "id,name,email,qty\n1,Ann,a@example.com,3\n");
    p.run(["product", "contract", "sales/people"])
        .expect_code(0);
    p.run(["sync", "run"]).expect_code(0);
    assert_eq!(
        db.sql("SELECT obj_description('sales.people__people'::regclass, 'pg_class')"),
        "One row per person. People from the CRM's CSV drops. Owner: o'brien@example.com. Contract 1.0."
    );
    let col = |c: &str| {
        db.sql(&format!(
            "SELECT col_description('sales.people__people'::regclass, attnum) FROM pg_attribute WHERE attrelid = 'sales.people__people'::regclass AND attname = '{c}'"
        ))
    };
    assert_eq!(col("email"), "It's the \\ e-mail [pii]");
    assert_eq!(col("qty"), "Items bought");
    assert_eq!(col("id"), "");
}

const FINANCE: &str = r#"product: revenue
domain: finance
owner: finance-data@example.com
description: Revenue per order.
source:
  connector: files
  config:
    streams:
      - { name: orders, path: drops, glob: "*.csv", format: csv }
streams:
  - name: orders
    mappers:
      - select: [id, qty]
"#;

#[test]
fn the_catalog_lists_domains_and_products_and_shows_one() {
    let p = locked("freeze");
    p.domain(
        "finance",
        "domain: finance\nowners: [cfo@example.com, finance-data@example.com]\ndescription: Revenue and margins.\ncontact: \"#finance-data\"\n",
    );
    p.product("finance", "revenue", FINANCE);

    let out = p.run(["domain", "list"]);
    out.expect_code(0);
    assert_eq!(
        out.stdout(),
        "domain   owners                    products  description\n\
         finance  cfo@example.com,          revenue   Revenue and margins.\n         finance-data@example.com\n\
         sales    sales-data@example.com    people    The sales domain.\n"
    );
    let out = p.run(["domain", "list", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(json[0]["domain"], "finance");
    assert_eq!(json[0]["contact"], "#finance-data");
    assert_eq!(
        json[0]["owners"],
        serde_json::json!(["cfo@example.com", "finance-data@example.com"])
    );
    assert_eq!(json[1]["products"], serde_json::json!(["people"]));

    let out = p.run(["product", "list"]);
    out.expect_code(0);
    assert_eq!(
        out.stdout(),
        "product          owner                     contract  description\n\
         finance/revenue  finance-data@example.com  none      Revenue per order.\n\
         sales/people     sales-data@example.com    1.0       People from the CRM's CSV\n                                                     drops.\n"
    );
    let out = p.run(["product", "list", "--domain", "finance", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["product"], "finance/revenue");
    assert_eq!(json[0]["contract_version"], serde_json::Value::Null);
    let out = p.run(["product", "list", "--domain", "hr"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr().trim(),
        "error: no domain `hr` in this project; domains: finance, sales"
    );

    let out = p.run(["product", "show", "sales/people"]);
    out.expect_code(0);
    let text = out.stdout();
    for line in [
        "owner            sales-data@example.com",
        "contract         1.0 (domains/sales/people.contract.yaml, on_change: freeze)",
        "upstream         source: files",
        "stream people (full_refresh, overwrite): One row per person.",
        "email              text         yes   pii   hash            The person's e-mail",
        "qty                bigint       yes                         Items bought",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    assert!(
        text.contains("freshness        fresh, last success "),
        "{text}"
    );
    assert!(text.contains("classification   confidential"), "{text}");

    let out = p.run(["product", "show", "sales/people", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(json["contract"]["version"], "1.0");
    assert_eq!(json["freshness"]["status"], "fresh");
    assert_eq!(json["freshness"]["sla"], "1day");
    let email = &json["streams"][0]["columns"][2];
    assert_eq!(email["name"], "email");
    assert_eq!(email["tags"], serde_json::json!(["pii"]));
    assert_eq!(email["transformations"], serde_json::json!(["hash"]));

    // Never synced, no contract: the schema is the source's.
    let out = p.run(["product", "show", "finance/revenue", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(json["freshness"]["status"], "never");
    assert_eq!(json["schema_from"], "source");
    assert_eq!(json["streams"][0]["columns"][1]["name"], "qty");

    let out = p.run(["product", "show", "sales/nope"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr().trim(),
        "error: no product `sales/nope` in this project; name one as domain/product: finance/revenue, sales/people"
    );
}

#[test]
fn a_contract_file_of_another_product_is_refused() {
    let p = locked("evolve");
    let path = p.path().join(CONTRACT);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("product: sales/people", "product: sales/other"),
    )
    .unwrap();
    let out = p.run(["product", "list"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr().trim(),
        format!("error: {CONTRACT}: product: this contract is for `sales/other`, not `sales/people`; regenerate it with `weft product contract sales/people`")
    );
}

/// kill -9 in the middle of a `discard_row` sync (after its first commit), then a rerun: every
/// row without a value in the new column lands exactly once, and the column does not.
#[test]
fn a_discarding_sync_killed_mid_read_resumes_without_loss_or_duplicates() {
    let p = locked("discard_row");
    p.file(
        "weft.yaml",
        "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n  commit_interval: 1ms\n",
    );
    let rows = 200_000u64;
    let mut csv = String::from("id,name,email,qty,extra\n");
    for id in 1..=rows {
        let extra = if id % 10 == 0 { "vip" } else { "" };
        csv.push_str(&format!("{id},n{id},e{id}@example.com,{id},{extra}\n"));
    }
    p.file("drops/a.csv", &csv);

    let limit = std::time::Duration::from_secs(120);
    let killed = p.kill_after_first_commit(["sync", "run", "--no-progress"], limit);
    assert_ne!(killed.code(), Some(0));

    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let d = dump(&p.stream_dir("sales", "people", "people"), "id");
    assert!(!d.types.contains_key("extra"), "{:?}", d.types);
    let ids: Vec<u64> = d.values("id");
    let expected: Vec<u64> = (1..=rows).filter(|id| id % 10 != 0).collect();
    assert_eq!(ids.len(), expected.len());
    assert!(ids == expected, "rows lost or duplicated");
}
