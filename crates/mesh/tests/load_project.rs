//! Loading real project folders.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use weft_core::{SyncMode, WriteMode};
use weft_mesh::{ConnectorRef, FilterOp, Mapper, Project, ProjectError, Selector};

const WEFT_YAML: &str = "\
version: 1
state:
  path: .weft/state.db
defaults:
  destination:
    connector: parquet
    config: { path: lake }
  commit_interval: 10s
  max_concurrent_streams: 4
  channel_capacity: 8
";

const ORDERS_YAML: &str = r#"product: orders
domain: sales
owner: alice@example.com
description: Orders placed in the web shop.
source:
  connector: sample
  config: { scale: 100000, password: "${SAMPLE_PASSWORD}" }
streams:
  - name: orders
    mode: incremental
    write: append_dedup
    cursor: updated_at
    primary_key: [id]
    columns: [id, status, amount, updated_at]
    mappers:
      - hash: { column: email, salt: "${PII_SALT}" }
      - mask: { column: phone, keep_last: 4 }
      - rename: { from: amount, to: amount_eur }
      - drop: [note]
      - select: [id, status]
      - filter: { column: status, op: ne, value: cancelled }
  - name: items
destination:
  connector: parquet
  config: { path: sales-lake }
schedule: "0 * * * *"
"#;

struct TempProject {
    dir: tempfile::TempDir,
}

impl TempProject {
    fn new(weft_yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("weft.yaml"), weft_yaml).unwrap();
        Self { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Writes a file; a product file's domain gets a minimal `domain.yaml` when it has none.
    fn write(&self, rel: &str, text: &str) -> &Self {
        let path = self.dir.path().join(rel);
        let folder = path.parent().unwrap();
        std::fs::create_dir_all(folder).unwrap();
        let domain_file = folder.join("domain.yaml");
        if rel.starts_with("domains/")
            && rel.matches('/').count() == 2
            && !rel.ends_with("/domain.yaml")
            && !domain_file.exists()
        {
            let domain = folder.file_name().unwrap().to_str().unwrap();
            std::fs::write(
                domain_file,
                format!("domain: {domain}\nowners: [{domain}@example.com]\ndescription: The {domain} domain.\n"),
            )
            .unwrap();
        }
        std::fs::write(path, text).unwrap();
        self
    }

    fn load(&self) -> Result<Project, ProjectError> {
        Project::load_with_env(&self.root(), &env)
    }

    fn error(&self) -> String {
        match self.load() {
            Ok(_) => panic!("the project loaded, but an error was expected"),
            Err(e) => e.to_string(),
        }
    }
}

fn env(name: &str) -> Option<String> {
    match name {
        "SAMPLE_PASSWORD" => Some("correct-horse-battery".into()),
        "PII_SALT" => Some("pepper-and-salt".into()),
        "NOT_A_NUMBER" => Some("sekrit-value".into()),
        _ => None,
    }
}

/// A product file with `line` replaced (1-based) — for one-line mistakes.
fn orders_with(find: &str, replace: &str) -> String {
    assert!(ORDERS_YAML.contains(find), "{find}");
    ORDERS_YAML.replacen(find, replace, 1)
}

#[test]
fn a_good_project_loads_with_defaults_applied() {
    let p = TempProject::new(WEFT_YAML);
    p.write("domains/sales/orders.yaml", ORDERS_YAML).write(
        "domains/finance/revenue.yaml",
        "product: revenue\ndomain: finance\nowner: bob\nsource: { connector: sample }\nstreams:\n  - name: revenue\n",
    );
    p.write("domains/sales/README.md", "not a product");
    let project = p.load().unwrap();

    assert_eq!(project.root, std::path::absolute(p.root()).unwrap());
    assert_eq!(
        project.settings.state_path,
        project.root.join(".weft/state.db")
    );
    assert_eq!(project.settings.commit_interval, Duration::from_secs(10));
    assert_eq!(project.settings.max_concurrent_streams, 4);
    assert_eq!(project.settings.channel_capacity, 8);

    let labels: Vec<String> = project.products.iter().map(|p| p.label()).collect();
    assert_eq!(labels, ["finance/revenue", "sales/orders"]);

    let revenue = &project.products[0];
    assert_eq!(revenue.description, "");
    assert_eq!(revenue.schedule, None);
    assert_eq!(
        revenue.source,
        ConnectorRef {
            connector: "sample".into(),
            config: json!({})
        }
    );
    assert_eq!(
        revenue.destination,
        ConnectorRef {
            connector: "parquet".into(),
            config: json!({"path": "lake"})
        }
    );
    assert_eq!(revenue.streams[0].mode, SyncMode::FullRefresh);
    assert_eq!(revenue.streams[0].write, WriteMode::Overwrite);
    assert_eq!(
        revenue.file,
        project.root.join("domains/finance/revenue.yaml")
    );

    let orders = &project.products[1];
    assert_eq!(orders.owner, "alice@example.com");
    assert_eq!(
        orders.source.config,
        json!({"scale": 100000, "password": "correct-horse-battery"})
    );
    assert_eq!(orders.destination.config, json!({"path": "sales-lake"}));
    assert_eq!(
        orders.schedule.as_ref().map(|s| s.as_str()),
        Some("0 * * * *")
    );
    let s = &orders.streams[0];
    assert_eq!(
        (s.mode, s.write),
        (SyncMode::Incremental, WriteMode::AppendDedup)
    );
    assert_eq!(s.cursor.as_deref(), Some("updated_at"));
    assert_eq!(s.primary_key, Some(vec!["id".to_string()]));
    assert_eq!(s.columns.as_ref().unwrap().len(), 4);
    assert_eq!(
        s.mappers,
        vec![
            Mapper::Hash {
                column: "email".into(),
                salt: Some("pepper-and-salt".into())
            },
            Mapper::Mask {
                column: "phone".into(),
                keep_last: 4,
                mask_char: '*'
            },
            Mapper::Rename {
                from: "amount".into(),
                to: "amount_eur".into()
            },
            Mapper::Drop(vec!["note".into()]),
            Mapper::Select(vec!["id".into(), "status".into()]),
            Mapper::Filter {
                column: "status".into(),
                op: FilterOp::Ne,
                value: Some(json!("cancelled"))
            },
        ]
    );
    assert_eq!(orders.streams[1].name.as_str(), "items");
    assert_eq!(orders.streams[1].write, WriteMode::Overwrite);

    assert_eq!(
        project
            .secrets
            .redact("login failed for correct-horse-battery with pepper-and-salt"),
        "login failed for *** with ***"
    );
}

#[test]
fn minimal_weft_yaml_uses_builtin_defaults() {
    let p = TempProject::new("version: 1\n");
    let project = p.load().unwrap();
    assert_eq!(
        project.settings.state_path,
        project.root.join(".weft/state.db")
    );
    assert_eq!(project.settings.commit_interval, Duration::from_secs(10));
    assert_eq!(project.settings.max_concurrent_streams, 4);
    assert_eq!(project.settings.channel_capacity, 8);
    assert!(project.products.is_empty());
}

#[test]
fn find_root_walks_up_and_explains_when_there_is_none() {
    let p = TempProject::new(WEFT_YAML);
    p.write("domains/sales/orders.yaml", ORDERS_YAML);
    let deep = p.root().join("domains/sales");
    assert_eq!(Project::find_root(&deep).unwrap(), p.root());

    let empty = tempfile::tempdir().unwrap();
    let err = Project::find_root(empty.path()).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "no weft.yaml found in {} or any folder above it; run `weft init DIR` to create a project, or pass `--project DIR`",
            empty.path().display()
        )
    );
    let err = Project::load(empty.path()).unwrap_err().to_string();
    assert!(
        err.contains("has no weft.yaml, so it is not a weft project; run `weft init"),
        "{err}"
    );
}

fn product_error(text: &str) -> String {
    let p = TempProject::new(WEFT_YAML);
    p.write("domains/sales/orders.yaml", text);
    p.error()
}

#[test]
fn a_domain_that_could_escape_is_rejected() {
    assert_eq!(
        product_error(&orders_with("domain: sales", "domain: ../../x")),
        "domains/sales/orders.yaml:2:9: domain: invalid domain name \"../../x\": it contains a path separator (`/` or `\\`); it must be the name of the folder holding this file (`sales`)"
    );
}

#[test]
fn the_domain_must_match_its_folder() {
    assert_eq!(
        product_error(&orders_with("domain: sales", "domain: marketing")),
        "domains/sales/orders.yaml:2:9: domain: the file is in folder `domains/sales` but says `domain: marketing`; set `domain: sales` or move the file to domains/marketing/"
    );
}

#[test]
fn the_product_must_match_its_file_name() {
    assert_eq!(
        product_error(&orders_with("product: orders", "product: order")),
        "domains/sales/orders.yaml:1:10: product: the file is named `orders` but says `product: order`; set `product: orders` or rename the file to order.yaml"
    );
}

#[test]
fn incremental_may_leave_the_cursor_to_the_source() {
    let p = TempProject::new(WEFT_YAML);
    p.write(
        "domains/sales/orders.yaml",
        &orders_with("    cursor: updated_at\n", ""),
    );
    let project = p.load().unwrap();
    assert_eq!(project.products[0].streams[0].cursor, None);
}

#[test]
fn append_dedup_may_leave_the_key_to_the_source() {
    let p = TempProject::new(WEFT_YAML);
    p.write(
        "domains/sales/orders.yaml",
        &orders_with("    primary_key: [id]\n", ""),
    );
    let project = p.load().unwrap();
    assert_eq!(project.products[0].streams[0].primary_key, None);
}

#[test]
fn incremental_overwrite_is_rejected() {
    let text = orders_with(
        "  - name: items\n",
        "  - name: items\n    mode: incremental\n    cursor: id\n    write: overwrite\n",
    );
    assert_eq!(
        product_error(&text),
        "domains/sales/orders.yaml:25:12: streams[1].write: incremental streams cannot use write mode overwrite (each run would replace the table with only the rows read since the last one); use `write: append` or `write: append_dedup`"
    );
}

#[test]
fn duplicate_streams_are_rejected() {
    let text = orders_with("  - name: items\n", "  - name: orders\n    write: append\n");
    assert_eq!(
        product_error(&text),
        "domains/sales/orders.yaml:22:11: streams[1].name: stream `orders` is already defined at streams[0]; each stream may appear once per product"
    );
}

#[test]
fn duplicate_products_are_rejected() {
    let p = TempProject::new(WEFT_YAML);
    p.write("domains/sales/orders.yaml", ORDERS_YAML);
    p.write("domains/sales/orders.yml", ORDERS_YAML);
    assert_eq!(
        p.error(),
        "domains/sales/orders.yml: product: product `sales/orders` is also defined in domains/sales/orders.yaml; keep one file per product"
    );
}

#[test]
fn a_destination_is_required_without_a_default() {
    let p = TempProject::new("version: 1\n");
    p.write(
        "domains/sales/orders.yaml",
        "product: orders\ndomain: sales\nowner: a\nsource: { connector: sample }\nstreams: [{ name: orders }]\n",
    );
    assert_eq!(
        p.error(),
        "domains/sales/orders.yaml: destination: the product names no destination and neither its domain.yaml nor weft.yaml has a default (`destination` / `defaults.destination`); add `destination: { connector: ..., config: {...} }` to this file, its domain.yaml or a default to weft.yaml"
    );
}

#[test]
fn unknown_fields_are_named_with_their_line() {
    let text = orders_with(
        "    cursor: updated_at\n",
        "    cursor: updated_at\n    cursr: x\n",
    );
    let err = product_error(&text);
    assert!(
        err.starts_with("domains/sales/orders.yaml:13:5: streams[0].cursr: unknown field `cursr`, expected one of"),
        "{err}"
    );
}

#[test]
fn missing_required_fields_are_named() {
    let err = product_error(&orders_with("owner: alice@example.com\n", ""));
    assert_eq!(err, "domains/sales/orders.yaml: missing field `owner`");
    let err = product_error(&orders_with("  - name: items\n", "  - mode: incremental\n"));
    assert_eq!(
        err,
        "domains/sales/orders.yaml: streams[1]: missing field `name`"
    );
}

#[test]
fn a_bad_enum_value_names_the_field() {
    let err = product_error(&orders_with("write: append_dedup", "write: upsert"));
    assert!(
        err.starts_with(
            "domains/sales/orders.yaml:11:12: streams[0].write: unknown variant `upsert`"
        ),
        "{err}"
    );
}

#[test]
fn weft_yaml_errors_name_the_file() {
    let p = TempProject::new("version: 2\n");
    assert_eq!(
        p.error(),
        "weft.yaml:1:10: version: version 2 is not supported; this weft reads version 1"
    );
    let p = TempProject::new("version: 1\ndefaults:\n  max_concurrent_streams: 0\n");
    assert_eq!(
        p.error(),
        "weft.yaml:3:27: defaults.max_concurrent_streams: must be at least 1"
    );
    let p = TempProject::new("version: 1\ndefaults:\n  commit_interval: soon\n");
    let err = p.error();
    assert!(err.starts_with("weft.yaml:3:3: defaults.commit_interval: invalid value: string \"soon\", expected a duration"), "{err}");
    let p = TempProject::new("version: 1\nstate: { pth: x }\n");
    let err = p.error();
    assert!(
        err.starts_with("weft.yaml:2:10: state.pth: unknown field `pth`"),
        "{err}"
    );
}

#[test]
fn env_vars_are_substituted_and_missing_ones_explained() {
    let err = product_error(&orders_with("${PII_SALT}", "${NO_SUCH_SALT}"));
    assert_eq!(
        err,
        "domains/sales/orders.yaml:16:39: streams[0].mappers[0].salt: environment variable `NO_SUCH_SALT` is not set; export it or use ${NO_SUCH_SALT:-default}"
    );
    let err = product_error(&orders_with("${SAMPLE_PASSWORD}", "${NO_PW}"));
    assert_eq!(
        err,
        "domains/sales/orders.yaml:7:39: source.config.password: environment variable `NO_PW` is not set; export it or use ${NO_PW:-default}"
    );

    let p = TempProject::new(WEFT_YAML);
    p.write(
        "domains/sales/orders.yaml",
        &orders_with(
            "${SAMPLE_PASSWORD}",
            "${NO_PW:-guest}/$${literal}/${SAMPLE_PASSWORD}",
        ),
    );
    let project = p.load().unwrap();
    assert_eq!(
        project.products[0].source.config["password"],
        "guest/${literal}/correct-horse-battery"
    );
}

#[test]
fn secret_files_are_read_trimmed_and_redacted() {
    let p = TempProject::new(WEFT_YAML);
    p.write("secrets/db.txt", "  file-secret-123\n");
    p.write(
        "domains/sales/orders.yaml",
        &orders_with("${SAMPLE_PASSWORD}", "${file:secrets/db.txt}"),
    );
    let project = p.load().unwrap();
    assert_eq!(
        project.products[0].source.config["password"],
        "file-secret-123"
    );
    assert_eq!(project.secrets.redact("pw file-secret-123"), "pw ***");

    let p = TempProject::new(WEFT_YAML);
    p.write(
        "domains/sales/orders.yaml",
        &orders_with("${SAMPLE_PASSWORD}", "${file:secrets/none.txt}"),
    );
    let err = p.error();
    let prefix = format!(
        "domains/sales/orders.yaml:7:39: source.config.password: cannot read secret file {}: ",
        p.root().join("secrets/none.txt").display()
    );
    assert!(err.starts_with(&prefix), "{err}");
    assert!(
        err.ends_with("create it or fix the path (relative paths start at the project folder)"),
        "{err}"
    );
}

#[test]
fn secrets_never_appear_in_errors() {
    // A type error on an interpolated value.
    let p =
        TempProject::new("version: 1\ndefaults:\n  max_concurrent_streams: \"${NOT_A_NUMBER}\"\n");
    let err = p.error();
    assert!(!err.contains("sekrit-value"), "{err}");
    assert!(
        err.starts_with("weft.yaml:3:27: defaults.max_concurrent_streams: "),
        "{err}"
    );

    // A validation error on a product holding secrets.
    let err = product_error(&orders_with("write: append_dedup", "write: overwrite"));
    assert!(
        !err.contains("correct-horse-battery") && !err.contains("pepper-and-salt"),
        "{err}"
    );
}

#[test]
fn filter_values_are_checked() {
    let err = product_error(&orders_with("op: ne, value: cancelled", "op: eq"));
    assert_eq!(
        err,
        "domains/sales/orders.yaml:21:9: streams[0].mappers[5].value: filter op `eq` needs a `value` to compare with; add one, or use `is_null` / `is_not_null`"
    );
}

#[test]
fn selectors_pick_products_and_streams() {
    let p = TempProject::new(WEFT_YAML);
    p.write("domains/sales/orders.yaml", ORDERS_YAML).write(
        "domains/finance/revenue.yaml",
        "product: revenue\ndomain: finance\nowner: bob\nsource: { connector: sample }\nstreams:\n  - name: revenue\n",
    );
    let project = p.load().unwrap();
    let pick = |selectors: &[&str]| -> Result<Vec<String>, String> {
        let selectors: Vec<Selector> = selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect();
        project
            .select(&selectors)
            .map(|sel| {
                sel.iter()
                    .map(|s| {
                        let streams: Vec<&str> = s.streams.iter().map(|n| n.as_str()).collect();
                        format!("{}:{}", s.product.label(), streams.join(","))
                    })
                    .collect()
            })
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        pick(&[]).unwrap(),
        ["finance/revenue:revenue", "sales/orders:orders,items"]
    );
    assert_eq!(pick(&["sales"]).unwrap(), ["sales/orders:orders,items"]);
    assert_eq!(
        pick(&["sales/orders/items", "finance", "sales/orders/orders"]).unwrap(),
        ["finance/revenue:revenue", "sales/orders:orders,items"]
    );
    assert_eq!(
        pick(&["sales/orders/items"]).unwrap(),
        ["sales/orders:items"]
    );
    assert_eq!(
        pick(&["hr"]).unwrap_err(),
        "selector `hr`: no domain `hr` in this project; domains: finance, sales"
    );
    assert_eq!(
        pick(&["sales/returns"]).unwrap_err(),
        "selector `sales/returns`: no product `sales/returns`; products of `sales`: orders"
    );
    assert_eq!(
        pick(&["sales/orders/lines"]).unwrap_err(),
        "selector `sales/orders/lines`: no stream `sales/orders/lines`; streams of `sales/orders`: orders, items"
    );
}

#[test]
fn misplaced_product_files_are_explained() {
    let p = TempProject::new(WEFT_YAML);
    p.write("domains/orders.yaml", ORDERS_YAML);
    assert_eq!(
        p.error(),
        "domains/orders.yaml: product files belong in a domain folder; move it to domains/<domain>/orders.yaml"
    );
    let p = TempProject::new(WEFT_YAML);
    p.write("domains/_sales/orders.yaml", ORDERS_YAML);
    assert_eq!(
        p.error(),
        "domains/_sales: the folder name is not a valid domain name (invalid domain name \"_sales\": names starting with `_` or `.` are reserved); rename the folder"
    );
}

// --- declared domains (#9) ---

const FINANCE_DOMAIN: &str = r##"domain: finance
owners: [finance-data@example.com, cfo@example.com]
description: Revenue and margins.
contact: "#finance-data"
destination: { connector: parquet, config: { path: finance-lake } }
rules:
  - { id: finance-tags, kind: required_metadata, severity: error, message: m, field: tags }
"##;

const REVENUE_YAML: &str = "product: revenue\ndomain: finance\nowner: bob\nsource: { connector: sample }\nstreams:\n  - name: revenue\n";

#[test]
fn declared_domains_load_with_their_fields_and_default_store() {
    let p = TempProject::new(WEFT_YAML);
    p.write("domains/finance/domain.yaml", FINANCE_DOMAIN)
        .write("domains/finance/revenue.yaml", REVENUE_YAML)
        .write("domains/sales/orders.yaml", ORDERS_YAML)
        .write(
            "domains/marketing/domain.yaml",
            "domain: marketing\nowners: [m@example.com]\ndescription: Campaigns.\n",
        );
    let project = p.load().unwrap();
    let names: Vec<String> = project.domains().iter().map(|d| d.to_string()).collect();
    assert_eq!(names, ["finance", "marketing", "sales"]);
    assert!(project.warnings.is_empty(), "{:?}", project.warnings);
    let finance = project.domain("finance").unwrap();
    assert_eq!(
        finance.owners,
        ["finance-data@example.com", "cfo@example.com"]
    );
    assert_eq!(finance.description, "Revenue and margins.");
    assert_eq!(finance.contact.as_deref(), Some("#finance-data"));
    assert_eq!(
        finance.file,
        project.root.join("domains/finance/domain.yaml")
    );
    assert_eq!(finance.rules.len(), 1);
    assert_eq!(finance.rules[0].line, Some(7));
    assert_eq!(finance.rules[0].value["id"], "finance-tags");
    // The domain's store sits between the product's own and weft.yaml's default.
    let revenue = project.product("finance", "revenue").unwrap();
    assert_eq!(revenue.destination.config, json!({"path": "finance-lake"}));
    assert_eq!(revenue.destination_file, finance.file);
    let orders = project.product("sales", "orders").unwrap();
    assert_eq!(orders.destination.config, json!({"path": "sales-lake"}));
    assert_eq!(project.domain("marketing").unwrap().destination, None);
}

#[test]
fn a_product_of_an_undeclared_domain_names_the_file_to_create() {
    let p = TempProject::new(WEFT_YAML);
    p.write("domains/finance/domain.yaml", FINANCE_DOMAIN)
        .write("domains/finance/revenue.yaml", REVENUE_YAML);
    std::fs::create_dir_all(p.root().join("domains/hr")).unwrap();
    std::fs::write(
        p.root().join("domains/hr/people.yaml"),
        REVENUE_YAML
            .replace("domain: finance", "domain: hr")
            .replace("revenue", "people"),
    )
    .unwrap();
    assert_eq!(
        p.error(),
        "domains/hr/people.yaml: domain: domain `hr` is not declared; create domains/hr/domain.yaml, for example:\n  domain: hr\n  owners: [hr-data@example.com]\n  description: What the hr domain owns."
    );
}

#[test]
fn bad_domain_files_are_refused_with_file_line_and_field() {
    for (text, expected) in [
        (
            "domain: sales\nowners: [a@example.com]\ndescription: d\n",
            "domains/finance/domain.yaml:1:9: domain: the file is in folder `domains/finance` but says `domain: sales`; set `domain: finance`",
        ),
        (
            "domain: finance\nowners: []\ndescription: d\n",
            "domains/finance/domain.yaml:2:9: owners: names no owner; list who answers for the domain, for example `owners: [team@example.com]`",
        ),
        (
            "domain: finance\nowners: [a]\ndescription: \"\"\n",
            "domains/finance/domain.yaml:3:1: description: is empty; say what the domain owns, for the rest of the organisation",
        ),
        (
            "domain: finance\nowners: [a]\ndescription: d\nowner: b\n",
            "domains/finance/domain.yaml:4:1: owner: unknown field `owner`, expected one of domain, owners, description, contact, destination, rules",
        ),
        (
            "domain: finance\nowners: [a]\n",
            "domains/finance/domain.yaml: missing field `description`",
        ),
    ] {
        let p = TempProject::new(WEFT_YAML);
        p.write("domains/finance/domain.yaml", text)
            .write("domains/finance/revenue.yaml", REVENUE_YAML);
        assert_eq!(p.error(), expected, "{text}");
    }
}

/// The sales shop granting its orders to marketing with `filter`.
fn granted_orders(filter: &str) -> String {
    format!("{ORDERS_YAML}grants:\n  - to: marketing\n    streams:\n      - name: orders\n        filter:\n{filter}")
}

#[test]
fn a_grant_filter_of_any_keeps_rows_matching_one_of_its_comparisons() {
    let p = TempProject::new(WEFT_YAML);
    p.write(
        "domains/sales/orders.yaml",
        &granted_orders("          any:\n            - { column: status, op: eq, value: paid }\n            - { column: amount, op: ge, value: 100 }\n"),
    )
    .write(
        "domains/marketing/domain.yaml",
        "domain: marketing\nowners: [m@example.com]\ndescription: Campaigns.\n",
    );
    let project = p.load().unwrap();
    let orders = project.product("sales", "orders").unwrap();
    let granted = orders.grants[0].stream("orders").unwrap();
    assert_eq!(
        granted.mappers(),
        vec![Mapper::AnyOf(vec![
            Mapper::Filter {
                column: "status".into(),
                op: FilterOp::Eq,
                value: Some(json!("paid"))
            },
            Mapper::Filter {
                column: "amount".into(),
                op: FilterOp::Ge,
                value: Some(json!(100))
            },
        ])]
    );

    // `all:` and `any:` together, or an `any:` comparison missing its value, are refused.
    for (filter, expected) in [
        (
            "          all: [{ column: status, op: eq, value: paid }]\n          any: [{ column: amount, op: ge, value: 100 }]\n",
            "a grant's filter is one comparison (`{ column: country, op: eq, value: DE }`), `all:` of several that must all hold",
        ),
        (
            "          any: [{ column: status, op: eq }]\n",
            "grants[0].streams[0].filter.any[0].value: filter op `eq` needs a `value` to compare with",
        ),
    ] {
        p.write("domains/sales/orders.yaml", &granted_orders(filter));
        let err = p.error();
        assert!(err.contains(expected), "{err}");
    }
}
