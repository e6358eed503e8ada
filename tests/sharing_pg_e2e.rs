//! Sharing between domains with a product kept in PostgreSQL, end to end with the real `weft`
//! binary and a private PostgreSQL cluster holding both the shop's source table (real e-mail
//! addresses) and finance's product store: `sales/shop` (lake) → `finance/revenue`
//! (PostgreSQL) → `marketing/campaign_margins` (lake), and `marketing/audience` straight from
//! sales. The policy forces a keyed hash on personal data `when_shared`: sales keeps clear
//! e-mails in its own store, every other domain gets HMAC tokens, the same address the same
//! token whichever way it travelled. Marketing's store is scanned file by file for clear
//! e-mails and compared row by row with a query on the source; a revoked grant stops
//! marketing's next run; a consumer killed with SIGKILL while reading the PostgreSQL product
//! resumes with no loss and no duplicates.

use std::time::Duration;

use weft_testkit::mesh::product_header as header;
use weft_testkit::pg::{ClusterOptions, PrivateCluster};
use weft_testkit::{Running, TestProject};

const BIN: &str = env!("CARGO_BIN_EXE_weft");
const LIMIT: Duration = Duration::from_secs(180);
const HASH_KEY: &str = "mesh-pg-hash-key-5e1d";

const POLICY: &str = "version: 1\nkeys: { hash: \"${WEFT_HASH_KEY}\" }\nrules:\n  - { id: detect-email, kind: detect, severity: error, message: E-mail columns are personal data, tag: pii, pattern: '(?i)e-?mail' }\n  - { id: pii-shared, kind: force, severity: error, message: Personal data leaves its domain pseudonymised, tag: pii, action: hash, where: when_shared }\n";

const CUSTOMERS: &str = "  - name: public.customers\n    mode: incremental\n    write: append_dedup\n    fields: { email: { tags: [pii] } }\n";

const FINANCE_GRANT: &str = "grants:\n  - to: marketing\n    streams:\n      - name: public.customers\n        columns: [id, email, campaign, margin, updated_at]\n        filter:\n          all:\n            - { column: campaign, op: eq, value: spring }\n            - { column: margin, op: ge, value: 10 }\n        transform:\n          - drop: [name]\n";

/// The scenario over the cluster's `customers` table; `finance_grants` is the `grants:` block
/// of finance's product (empty to revoke).
fn scenario(p: &TestProject, cluster: &PrivateCluster, finance_grants: &str) {
    p.file("governance.yaml", POLICY);
    p.domain(
        "finance",
        &format!(
            "domain: finance\nowners: [finance-data@example.com]\ndescription: Revenue.\ndestination: {{ connector: postgres, config: {} }}\n",
            cluster.pg_config("stores")
        ),
    );
    p.product(
        "sales",
        "shop",
        &format!(
            "{}source:\n  connector: postgres\n  config: {}\nstreams:\n  - name: public.customers\n    mode: incremental\n    write: append_dedup\n    cursor: updated_at\n    primary_key: [id]\n    fields: {{ email: {{ tags: [pii] }} }}\ngrants:\n  - to: finance\n    streams:\n      - name: public.customers\n  - to: marketing\n    streams:\n      - name: public.customers\n        columns: [id, email, updated_at]\n",
            header("sales", "shop"),
            cluster.pg_config("postgres")
        ),
    );
    weft_testkit::mesh::sharing_consumers(p, CUSTOMERS, finance_grants);
}

fn start_cluster() -> Option<PrivateCluster> {
    let cluster = PrivateCluster::start(ClusterOptions::default())?;
    cluster.sql("postgres", "CREATE DATABASE stores");
    cluster.sql("postgres", "CREATE EXTENSION pgcrypto");
    Some(cluster)
}

/// `id|campaign|margin|token` of marketing's product, read by DuckDB and pyarrow.
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

/// HMAC-SHA-256 of an e-mail under the project key, computed by pgcrypto.
fn token_sql(column: &str) -> String {
    format!("encode(hmac({column}, '{HASH_KEY}', 'sha256'), 'hex')")
}

/// Marketing's rows computed on the source: the granted rows, with the policy's tokens.
fn expected_rows(cluster: &PrivateCluster) -> Vec<String> {
    lines(cluster.sql(
        "postgres",
        &format!(
            "SELECT id, campaign, margin, {} FROM customers WHERE campaign = 'spring' AND margin >= 10 ORDER BY id",
            token_sql("email")
        ),
    ))
}

fn lines(text: String) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

fn assert_no_clear_email(p: &TestProject, cluster: &PrivateCluster) {
    weft_testkit::mesh::assert_no_clear_email(
        &p.lake().join("marketing"),
        &lines(cluster.sql("postgres", "SELECT email FROM customers ORDER BY id")),
        &["marketing-data@example.com"],
        1000,
    );
}

fn run(p: &TestProject, cluster: &PrivateCluster, args: &[&str]) -> weft_testkit::Outcome {
    weft_testkit::Outcome(
        p.weft(args)
            .env("PG_PASSWORD", cluster.password())
            .env("WEFT_HASH_KEY", HASH_KEY)
            .output()
            .unwrap(),
    )
}

const SOURCE: &str = "CREATE TABLE customers (id int8 PRIMARY KEY, name text NOT NULL, email text NOT NULL, campaign text NOT NULL, margin numeric(12,2) NOT NULL, updated_at timestamptz NOT NULL);";

#[test]
fn a_product_in_postgresql_is_shared_with_only_granted_rows_columns_and_tokens() {
    let Some(cluster) = start_cluster() else {
        return;
    };
    cluster.sql(
        "postgres",
        &format!("{SOURCE}
         INSERT INTO customers SELECT g, 'Customer ' || g, 'first.last' || g || '@mail-' || (g % 17) || '.example.org',
             (ARRAY['spring','summer','autumn','winter'])[g % 4 + 1], (g % 997) / 10.0, timestamptz '2026-01-01' + g * interval '1 second'
           FROM generate_series(1, 4000) g;"),
    );
    let p = TestProject::with_lake(BIN, "1ms");
    scenario(&p, &cluster, FINANCE_GRANT);
    run(&p, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);

    // Sales keeps clear addresses in its own store (the rule is `when_shared`); finance's
    // PostgreSQL store holds the tokens, names and all.
    let finance = lines(cluster.sql(
        "stores",
        "SELECT id, name, email FROM finance.\"revenue__public.customers\" ORDER BY id",
    ));
    let want = lines(cluster.sql(
        "postgres",
        &format!(
            "SELECT id, name, {} FROM customers ORDER BY id",
            token_sql("email")
        ),
    ));
    assert_eq!(finance.len(), 4000);
    assert_eq!(finance, want, "finance holds every row, e-mails as tokens");

    let expected = expected_rows(&cluster);
    assert_eq!(expected.len(), 897);
    assert_eq!(marketing_rows(&p), expected);
    assert_no_clear_email(&p, &cluster);
    // The same address gives the same token in both of marketing's products: one came
    // through finance's PostgreSQL store, the other straight from sales' lake.
    let audience = weft_testkit::readers::dump(
        &p.stream_dir("marketing", "audience", "public.customers"),
        "id",
    );
    let audience: Vec<String> = (0..audience.column("id").len())
        .map(|i| {
            format!(
                "{}|{}",
                audience.column("id")[i].as_deref().unwrap(),
                audience.column("email")[i].as_deref().unwrap()
            )
        })
        .collect();
    assert_eq!(
        audience,
        lines(cluster.sql(
            "postgres",
            &format!(
                "SELECT id, {} FROM customers ORDER BY id",
                token_sql("email")
            )
        ))
    );

    // Changes flow through the PostgreSQL product incrementally.
    cluster.sql(
        "postgres",
        "UPDATE customers SET margin = margin + 1, updated_at = updated_at + interval '1 day' WHERE id % 10 = 0;
         UPDATE customers SET campaign = 'spring', updated_at = updated_at + interval '1 day' WHERE id % 10 = 1;
         INSERT INTO customers SELECT g, 'Customer ' || g, 'new' || g || '@late.example.org', 'spring', 12.5, timestamptz '2026-06-01' + g * interval '1 second' FROM generate_series(4001, 4100) g;",
    );
    run(&p, &cluster, &["sync", "run", "--no-progress"]).expect_code(0);
    assert_eq!(marketing_rows(&p), expected_rows(&cluster));
    assert_no_clear_email(&p, &cluster);
    // The read was incremental: it started at the newest `_weft_synced_at` read before.
    let checkpoint = weft_testkit::manifest_checkpoint(&p.stream_dir(
        "marketing",
        "campaign_margins",
        "public.customers",
    ))
    .unwrap();
    assert_eq!(checkpoint["upstream"], "finance/revenue/public.customers");
    assert_eq!(checkpoint["incremental"], true);
    assert_eq!(checkpoint["complete"], true);
    assert!(checkpoint["from"].is_string(), "{checkpoint}");

    // Finance revokes its grant: marketing's next run stops with the reason.
    scenario(&p, &cluster, "");
    let out = run(
        &p,
        &cluster,
        &["sync", "run", "--no-progress", "marketing/campaign_margins"],
    );
    out.expect_code(2);
    assert!(
        out.stderr().contains("domains/marketing/campaign_margins.yaml: source.product: product `finance/revenue` grants nothing to domain `marketing`"),
        "{}",
        out.stderr()
    );
    run(
        &p,
        &cluster,
        &["sync", "run", "--no-progress", "finance", "sales"],
    )
    .expect_code(0);
}

/// `id|campaign|margin|token` rows of a marketing stream, sorted by id.
fn consumer_rows(p: &TestProject, stream: &str) -> Vec<String> {
    let dump =
        weft_testkit::readers::dump(&p.stream_dir("marketing", "campaign_margins", stream), "id");
    let (id, campaign, margin, email) = (
        dump.column("id"),
        dump.column("campaign"),
        dump.column("margin"),
        dump.column("email"),
    );
    (0..id.len())
        .map(|i| {
            format!(
                "{}|{}|{}|{}",
                id[i].as_deref().unwrap_or(""),
                campaign[i].as_deref().unwrap_or(""),
                margin[i].as_deref().unwrap_or(""),
                email[i].as_deref().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn a_consumer_killed_while_reading_a_postgresql_product_resumes_without_loss_or_duplicates() {
    let Some(cluster) = start_cluster() else {
        return;
    };
    cluster.sql(
        "postgres",
        &format!("{SOURCE}
         INSERT INTO customers SELECT g, 'Customer ' || g, 'c' || g || '@shop.example.org',
             (ARRAY['spring','summer'])[g % 2 + 1], (g % 997) / 10.0, timestamptz '2026-01-01' + g * interval '1 second'
           FROM generate_series(1, 20000) g;"),
    );
    let p = TestProject::with_lake(BIN, "1ms");
    p.file("governance.yaml", POLICY);
    p.domain(
        "finance",
        &format!(
            "domain: finance\nowners: [finance-data@example.com]\ndescription: Revenue.\ndestination: {{ connector: postgres, config: {} }}\n",
            cluster.pg_config("stores")
        ),
    );
    // Finance's product reads the shop straight from PostgreSQL into its PostgreSQL store.
    p.product(
        "finance",
        "revenue",
        &format!(
            "{}source:\n  connector: postgres\n  config: {}\nstreams:\n  - {{ name: public.customers, mode: incremental, write: append_dedup, cursor: updated_at, primary_key: [id], fields: {{ email: {{ tags: [pii] }} }} }}\n  - {{ name: public.snapshot, mode: full_refresh, write: overwrite, primary_key: [id], fields: {{ email: {{ tags: [pii] }} }} }}\ngrants:\n  - to: marketing\n    streams:\n      - name: public.customers\n        filter: {{ column: campaign, op: eq, value: spring }}\n        transform: [{{ drop: [name] }}]\n      - name: public.snapshot\n        transform: [{{ drop: [name] }}]\n",
            header("finance", "revenue"),
            cluster.pg_config("postgres")
        ),
    );
    // A second table, kept equal to `customers` by every change below.
    cluster.sql(
        "postgres",
        "CREATE TABLE snapshot (LIKE customers INCLUDING ALL); INSERT INTO snapshot SELECT * FROM customers;",
    );
    // Marketing reads both: incrementally by key, and as a full refresh kept as an overwrite
    // (where a row read twice would be a duplicate row).
    p.product(
        "marketing",
        "campaign_margins",
        &format!(
            "{}source: {{ product: finance/revenue }}\nstreams:\n  - {{ name: public.customers, mode: incremental, write: append_dedup, fields: {{ email: {{ tags: [pii] }} }} }}\n  - {{ name: public.snapshot, mode: full_refresh, write: overwrite, fields: {{ email: {{ tags: [pii] }} }} }}\n",
            header("marketing", "campaign_margins")
        ),
    );
    run(&p, &cluster, &["sync", "run", "--no-progress", "finance"]).expect_code(0);

    let expect = |cluster: &PrivateCluster, filter: &str| {
        lines(cluster.sql(
            "postgres",
            &format!(
                "SELECT id, campaign, margin, {} FROM customers {filter} ORDER BY id",
                token_sql("email")
            ),
        ))
    };
    for round in 0..2 {
        // Killed right after one of its commits, mid-read (the reader checkpoints after
        // every batch of 8,192 rows).
        let release = p.path().join(format!("release-{round}"));
        let mut cmd = p.weft(["sync", "run", "--no-progress", "marketing"]);
        cmd.env("PG_PASSWORD", cluster.password())
            .env("WEFT_HASH_KEY", HASH_KEY)
            .env(
                "WEFT_PAUSEPOINT",
                format!("after_commit:{}", release.display()),
            );
        Running::spawn(cmd).kill_at("after_commit", LIMIT);

        run(&p, &cluster, &["sync", "run", "--no-progress", "marketing"]).expect_code(0);
        assert_eq!(
            consumer_rows(&p, "public.customers"),
            expect(&cluster, "WHERE campaign = 'spring'"),
            "round {round}: marketing holds exactly the granted rows"
        );
        assert_eq!(
            consumer_rows(&p, "public.snapshot"),
            expect(&cluster, ""),
            "round {round}: the full read holds every row once"
        );
        // The producer moves on: updates and new rows, read by the next round. Their cursors
        // lie past every earlier one (finance reads `customers` incrementally by cursor).
        for table in ["customers", "snapshot"] {
            cluster.sql(
                "postgres",
                &format!("UPDATE {table} SET margin = margin + 1, updated_at = timestamptz '2027-01-01' + {round} * interval '10 days' + id * interval '1 millisecond' WHERE id % 7 = {round};
                 INSERT INTO {table} SELECT g, 'Customer ' || g, 'late' || g || '@shop.example.org', 'spring', 3.5, timestamptz '2027-01-06' + {round} * interval '10 days' + g * interval '1 millisecond' FROM generate_series(20001 + {round} * 1000, 21000 + {round} * 1000) g;"),
            );
        }
        run(&p, &cluster, &["sync", "run", "--no-progress", "finance"]).expect_code(0);
    }
    run(&p, &cluster, &["sync", "run", "--no-progress", "marketing"]).expect_code(0);
    assert_eq!(
        consumer_rows(&p, "public.customers"),
        expect(&cluster, "WHERE campaign = 'spring'")
    );
    assert_eq!(consumer_rows(&p, "public.snapshot"), expect(&cluster, ""));
    assert_no_clear_email(&p, &cluster);
}
