//! Sharing between domains, end to end with the real `weft` binary: a shop in a private
//! PostgreSQL cluster with real e-mail addresses → `sales/shop` → `finance/revenue` (through
//! sales' grant) → `marketing/campaign_margins` (through finance's grant: e-mails hashed, names
//! dropped, only one campaign's rows). Marketing's store is scanned file by file for clear-text
//! e-mails; its rows are compared exactly with a query on the source; a revoked grant stops
//! marketing's next run; a consumer killed with SIGKILL mid-read resumes with no loss and no
//! duplicates; bad input (a grant to an unknown domain, circular lineage, a column outside the
//! grant, no grant at all) is refused with exit 2.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use weft_testkit::mesh::product_header as header;
use weft_testkit::pg::{ClusterOptions, PrivateCluster};
use weft_testkit::{Running, TestProject};

const BIN: &str = env!("CARGO_BIN_EXE_weft");
const LIMIT: Duration = Duration::from_secs(120);
const SALT: &str = "grant-salt-7f3a";

const CUSTOMERS: &str = "  - { name: public.customers, mode: incremental, write: append_dedup }\n";

/// The scenario's products over the cluster's `customers` table; `finance_grants` is the
/// `grants:` block of finance's product (empty to revoke).
fn scenario(p: &TestProject, cluster: &PrivateCluster, finance_grants: &str) {
    p.product(
        "sales",
        "shop",
        &format!(
            "{}source:\n  connector: postgres\n  config: {}\nstreams:\n  - {{ name: public.customers, mode: incremental, write: append_dedup, cursor: updated_at, primary_key: [id] }}\ngrants:\n  - to: finance\n    streams:\n      - name: public.customers\n  - to: marketing\n    streams:\n      - name: public.customers\n        columns: [id, email, updated_at]\n        transform:\n          - hash: {{ column: email, salt: \"{SALT}\" }}\n",
            header("sales", "shop"),
            cluster.pg_config("postgres")
        ),
    );
    weft_testkit::mesh::sharing_consumers(p, CUSTOMERS, finance_grants);
}

const FINANCE_GRANT: &str = "grants:\n  - to: marketing\n    streams:\n      - name: public.customers\n        columns: [id, email, campaign, margin, updated_at]\n        filter: { column: campaign, op: eq, value: spring }\n        transform:\n          - hash: { column: email, salt: \"grant-salt-7f3a\" }\n          - drop: [name]\n";

/// `id|campaign|margin|email token` of marketing's product, read by DuckDB and pyarrow.
fn marketing_rows(p: &TestProject) -> Vec<String> {
    let dump = weft_testkit::readers::dump(
        &p.stream_dir("marketing", "campaign_margins", "public.customers"),
        "id",
    );
    let mut columns: Vec<&String> = dump.types.keys().collect();
    columns.sort();
    assert_eq!(
        columns,
        ["campaign", "email", "id", "margin", "updated_at"],
        "only the granted columns reach marketing"
    );
    dump.rows(&["id", "campaign", "margin", "email"])
}

/// The same rows computed on the source: SHA-256 of salt ‖ e-mail, as the hash mapper does.
fn expected_rows(cluster: &PrivateCluster) -> Vec<String> {
    cluster
        .sql(
            "postgres",
            &format!("SELECT id, campaign, margin, encode(sha256(convert_to('{SALT}' || email, 'UTF8')), 'hex') FROM customers WHERE campaign = 'spring' ORDER BY id"),
        )
        .lines()
        .map(str::to_string)
        .collect()
}

fn emails(cluster: &PrivateCluster) -> Vec<String> {
    cluster
        .sql("postgres", "SELECT email FROM customers ORDER BY id")
        .lines()
        .map(str::to_string)
        .collect()
}

/// id → e-mail token of a marketing product.
fn tokens(p: &TestProject, product: &str) -> BTreeMap<i64, String> {
    let batch = p.read_stream("marketing", product, "public.customers");
    let id = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let email = batch.column_by_name("email").unwrap().as_string::<i32>();
    (0..batch.num_rows())
        .map(|i| (id.value(i), email.value(i).to_string()))
        .collect()
}

fn assert_no_clear_email(p: &TestProject, cluster: &PrivateCluster) {
    weft_testkit::mesh::assert_no_clear_email(
        &p.lake().join("marketing"),
        &emails(cluster),
        &["marketing-data@example.com"],
        1000,
    );
}

#[test]
fn marketing_gets_only_granted_rows_and_columns_with_hashed_emails_and_a_revoke_stops_it() {
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    cluster.sql(
        "postgres",
        "CREATE TABLE customers (id int8 PRIMARY KEY, name text NOT NULL, email text NOT NULL, campaign text NOT NULL, margin numeric(12,2) NOT NULL, updated_at timestamptz NOT NULL);
         INSERT INTO customers SELECT g, 'Customer ' || g, 'first.last' || g || '@mail-' || (g % 17) || '.example.org',
             (ARRAY['spring','summer','autumn','winter'])[g % 4 + 1], (g % 997) / 10.0, timestamptz '2026-01-01' + g * interval '1 second'
           FROM generate_series(1, 4000) g;",
    );
    let p = TestProject::with_lake(BIN, "1ms");
    scenario(&p, &cluster, FINANCE_GRANT);
    let run = |args: &[&str]| {
        weft_testkit::Outcome(
            p.weft(args)
                .env("PG_PASSWORD", cluster.password())
                .output()
                .unwrap(),
        )
    };
    let out = run(&["sync", "run", "--no-progress"]);
    out.expect_code(0);
    // Upstreams ran before their consumers.
    let stderr = out.stderr();
    let finished = |s: &str| {
        stderr
            .find(&format!("stream={s} "))
            .unwrap_or_else(|| panic!("{s}: {stderr}"))
    };
    assert!(finished("sales/shop/public.customers") < finished("finance/revenue/public.customers"));
    assert!(
        finished("finance/revenue/public.customers")
            < finished("marketing/campaign_margins/public.customers")
    );

    assert_eq!(marketing_rows(&p), expected_rows(&cluster));
    assert_eq!(expected_rows(&cluster).len(), 1000);
    assert_no_clear_email(&p, &cluster);
    // The same address gives the same token in both of marketing's products.
    let (margins, audience) = (tokens(&p, "campaign_margins"), tokens(&p, "audience"));
    assert_eq!(audience.len(), 4000);
    for (id, token) in &margins {
        assert_eq!(audience.get(id), Some(token), "customer {id}");
    }

    // The consumer's catalog entry: its schema is the upstream's store read back through the
    // grant (granted columns only, e-mail hashed on the grant's way).
    let out = run(&[
        "product",
        "show",
        "marketing/campaign_margins",
        "--format",
        "json",
    ]);
    out.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(json["schema_error"], serde_json::Value::Null, "{json}");
    assert_eq!(json["schema_from"], "source");
    let columns = json["streams"][0]["columns"].as_array().unwrap();
    let shown: Vec<(&str, &str, serde_json::Value)> = columns
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["type"].as_str().unwrap(),
                c["transformations"].clone(),
            )
        })
        .collect();
    let none = serde_json::json!([]);
    assert_eq!(
        shown,
        [
            ("id", "bigint", none.clone()),
            ("email", "text", serde_json::json!(["hash"])),
            (
                "campaign",
                "text",
                serde_json::json!(["rows filtered: eq \"spring\""])
            ),
            ("margin", "decimal(12,2)", none.clone()),
            ("updated_at", "timestamptz", none.clone()),
        ],
        "{json}"
    );
    let text = run(&["product", "show", "marketing/campaign_margins"]).stdout();
    assert!(!text.contains("schema unknown"), "{text}");
    assert!(
        text.contains("stream public.customers (incremental, append_dedup)"),
        "{text}"
    );
    // Its contract is planned the same way: no `name`, the e-mail a token.
    run(&["product", "contract", "marketing/campaign_margins"]).expect_code(0);
    let contract = std::fs::read_to_string(
        p.path()
            .join("domains/marketing/campaign_margins.contract.yaml"),
    )
    .unwrap();
    assert!(contract.contains("name: email"), "{contract}");
    assert!(!contract.contains("name: name\n"), "{contract}");
    // And the next run holds to it.
    run(&["sync", "run", "--no-progress", "marketing/campaign_margins"]).expect_code(0);

    // Changes flow through both hops incrementally.
    cluster.sql(
        "postgres",
        "UPDATE customers SET margin = margin + 1, updated_at = updated_at + interval '1 day' WHERE id % 10 = 0;
         UPDATE customers SET campaign = 'spring', updated_at = updated_at + interval '1 day' WHERE id % 10 = 1;
         INSERT INTO customers SELECT g, 'Customer ' || g, 'new' || g || '@late.example.org', 'spring', 1.5, timestamptz '2026-06-01' + g * interval '1 second' FROM generate_series(4001, 4100) g;",
    );
    run(&["sync", "run", "--no-progress"]).expect_code(0);
    assert_eq!(marketing_rows(&p), expected_rows(&cluster));
    assert_no_clear_email(&p, &cluster);

    // Finance revokes its grant: marketing's next run stops with the reason; finance's own
    // runs go on.
    scenario(&p, &cluster, "");
    let out = run(&["sync", "run", "--no-progress", "marketing/campaign_margins"]);
    out.expect_code(2);
    assert!(
        out.stderr().contains("domains/marketing/campaign_margins.yaml: source.product: product `finance/revenue` grants nothing to domain `marketing` (domains/finance/revenue.yaml has no grant `to: marketing`); ask its owner (finance-data@example.com) for a grant"),
        "{}",
        out.stderr()
    );
    run(&["sync", "run", "--no-progress", "finance", "sales"]).expect_code(0);
}

fn sample_shop(scale: u64, grants: &str) -> String {
    format!(
        "{}source:\n  connector: sample\n  config: {{ scale: {scale}, changes_per_run: 2000, batch_size: 5000 }}\nstreams:\n  - {{ name: orders, mode: incremental, write: append, cursor: updated_at }}\n  - {{ name: customers, mode: incremental, write: append_dedup, cursor: updated_at, primary_key: [id] }}\n{grants}",
        header("sales", "shop")
    )
}

const TO_FINANCE: &str = "grants:\n  - to: finance\n    streams:\n      - name: orders\n      - name: customers\n        transform:\n          - drop: [name]\n";

/// `(id, updated_at)` of every row of a stream, sorted.
fn id_versions(p: &TestProject, domain: &str, product: &str) -> Vec<(i64, i64)> {
    let batch = p.read_stream(domain, product, "orders");
    if batch.num_columns() == 0 {
        // Nothing committed yet (a kill after another stream's first commit).
        return Vec::new();
    }
    let id = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let at = batch.column_by_name("updated_at").unwrap();
    let at = arrow::compute::cast(at, &arrow::datatypes::DataType::Int64).unwrap();
    let at = at.as_primitive::<Int64Type>();
    let mut rows: Vec<(i64, i64)> = (0..batch.num_rows())
        .map(|i| (id.value(i), at.value(i)))
        .collect();
    rows.sort_unstable();
    rows
}

#[test]
fn a_consumer_killed_mid_read_resumes_without_loss_or_duplicates() {
    let p = TestProject::with_lake(BIN, "1ms");
    p.product("sales", "shop", &sample_shop(300_000, TO_FINANCE));
    p.product(
        "finance",
        "revenue",
        &format!(
            "{}source: {{ product: sales/shop }}\nstreams:\n  - {{ name: orders, mode: incremental, write: append }}\n  - {{ name: customers, mode: incremental, write: append_dedup }}\n",
            header("finance", "revenue")
        ),
    );
    p.run(["sync", "run", "--no-progress", "sales"])
        .expect_code(0);

    for round in 0..2 {
        // Killed right after one of its commits, mid-read (the first read is far from done;
        // the later ones read only the producer's new files and a customers file rewritten by
        // its compaction).
        let release = p.path().join(format!("release-{round}"));
        let mut cmd = p.weft(["sync", "run", "--no-progress", "finance"]);
        cmd.env(
            "WEFT_PAUSEPOINT",
            format!("after_commit:{}", release.display()),
        );
        Running::spawn(cmd).kill_at("after_commit", LIMIT);
        if round == 0 {
            let partial = id_versions(&p, "finance", "revenue");
            assert!(
                partial.len() < id_versions(&p, "sales", "shop").len(),
                "the kill landed mid-read"
            );
        }

        p.run(["sync", "run", "--no-progress", "finance"])
            .expect_code(0);
        assert_eq!(
            id_versions(&p, "finance", "revenue"),
            id_versions(&p, "sales", "shop"),
            "round {round}: finance holds exactly sales' rows"
        );
        let customers = p.read_stream("finance", "revenue", "customers");
        assert!(
            customers.column_by_name("name").is_none(),
            "the grant drops names"
        );
        assert_eq!(
            customers.num_rows(),
            p.read_stream("sales", "shop", "customers").num_rows()
        );
        // The producer moves on; the next consumer read picks up only its new files.
        p.run(["sync", "run", "--no-progress", "sales"])
            .expect_code(0);
    }
    let out = p.run(["sync", "run", "--no-progress", "finance"]);
    out.expect_code(0);
    assert_eq!(
        id_versions(&p, "finance", "revenue"),
        id_versions(&p, "sales", "shop")
    );
    // The consumer's checkpoint records which upstream version it read (its lineage).
    let checkpoint =
        weft_testkit::manifest_checkpoint(&p.stream_dir("finance", "revenue", "orders")).unwrap();
    assert_eq!(checkpoint["upstream"], "sales/shop/orders");
    assert_eq!(checkpoint["complete"], true);
    assert!(checkpoint["version"].as_u64().unwrap() >= 3, "{checkpoint}");
}

/// A project with sales/shop (sample) and the files given; returns `config validate`'s outcome.
fn validate(files: &[(&str, &str, String)]) -> weft_testkit::Outcome {
    validate_with_shop(&sample_shop(1000, TO_FINANCE), files)
}

fn validate_with_shop(shop: &str, files: &[(&str, &str, String)]) -> weft_testkit::Outcome {
    let p = TestProject::with_lake(BIN, "1s");
    p.product("sales", "shop", shop);
    for (domain, product, yaml) in files {
        p.product(domain, product, yaml);
    }
    p.run(["config", "validate"])
}

fn reader(domain: &str, product: &str, upstream: &str, stream: &str) -> String {
    format!(
        "{}source: {{ product: {upstream} }}\nstreams:\n{stream}",
        header(domain, product)
    )
}

#[test]
fn bad_sharing_configs_are_refused_with_exit_2() {
    let orders = "  - { name: orders, mode: incremental, write: append }\n";
    let expect = |out: weft_testkit::Outcome, message: &str| {
        out.expect_code(2);
        assert!(
            out.stderr().contains(message),
            "want: {message}\ngot: {}",
            out.stderr()
        );
        assert!(!out.all().contains("panicked"));
    };

    // A grant to a domain nobody declared.
    expect(
        validate(&[(
            "finance",
            "revenue",
            format!(
                "{}source: {{ product: sales/shop }}\nstreams:\n{orders}grants:\n  - to: markting\n    streams: [{{ name: orders }}]\n",
                header("finance", "revenue")
            ),
        )]),
        "domains/finance/revenue.yaml:9:9: grants[0].to: grants `finance/revenue` to domain `markting`, which is not declared; declare it in domains/markting/domain.yaml or fix the name (domains: finance, sales)",
    );

    // Circular lineage.
    expect(
        validate(&[
            ("finance", "a", reader("finance", "a", "finance/b", orders)),
            ("finance", "b", reader("finance", "b", "finance/a", orders)),
        ]),
        "circular product lineage: finance/a → finance/b → finance/a",
    );

    // A column outside the grant (the grant drops `name`).
    expect(
        validate(&[(
            "finance",
            "revenue",
            reader(
                "finance",
                "revenue",
                "sales/shop",
                "  - { name: customers, mode: incremental, write: append_dedup, columns: [id, name] }\n",
            ),
        )]),
        "domains/finance/revenue.yaml: streams[0].columns: column `name` of `sales/shop/customers` is outside the grant to domain `finance` (the grant drops it); remove it, or ask its owner (sales-data@example.com) to grant it in domains/sales/shop.yaml",
    );

    // No grant at all, and a product that does not exist.
    expect(
        validate_with_shop(
            &sample_shop(1000, ""),
            &[("marketing", "m", reader("marketing", "m", "sales/shop", orders))],
        ),
        "domains/marketing/m.yaml: source.product: product `sales/shop` grants nothing to domain `marketing`",
    );
    expect(
        validate_with_shop(
            &sample_shop(1000, ""),
            &[("marketing", "m", reader("marketing", "m", "sales/nope", orders))],
        ),
        "domains/marketing/m.yaml:5:20: source.product: product `sales/nope` does not exist (products: marketing/m, sales/shop)",
    );
}
