//! Governance rules with `where: when_shared` on the way between domains, with the real `weft`
//! binary and the sample shop: the owning domain keeps clear values, every grant's consumer
//! gets the forced transformation on top of the grant's own, a grant trying to replace it is
//! refused (by `policy check` and at sync time, with the exact message), and a token already
//! in the upstream's store is not hashed again down a chain of products.

use std::collections::BTreeMap;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use weft_testkit::mesh::product_header as header;
use weft_testkit::{Outcome, TestProject};

const BIN: &str = env!("CARGO_BIN_EXE_weft");
const HASH_KEY: &str = "shared-key-9c2e";

const POLICY: &str = "version: 1\nkeys: { hash: \"${WEFT_HASH_KEY}\" }\nrules:\n  - { id: detect-email, kind: detect, severity: error, message: E-mail columns are personal data, tag: pii, pattern: '(?i)e-?mail' }\n  - { id: pii-shared, kind: force, severity: error, message: Personal data leaves its domain pseudonymised, tag: pii, action: hash, where: when_shared }\n  - { id: names-home, kind: force, severity: error, message: Names stay home, tag: person-name, action: drop, where: when_shared }\n";

const FIELDS: &str = "    fields: { email: { tags: [pii] } }\n";

/// sales/shop → finance/revenue → marketing/margins; `finance_transform` is the `transform:`
/// list of sales' grant to finance.
fn project(finance_transform: &str) -> TestProject {
    let p = TestProject::with_lake(BIN, "1s");
    p.file("governance.yaml", POLICY);
    p.product(
        "sales",
        "shop",
        &format!(
            "{}source:\n  connector: sample\n  config: {{ scale: 3000, changes_per_run: 0 }}\nstreams:\n  - name: customers\n    mode: full_refresh\n    write: overwrite\n    primary_key: [id]\n    fields: {{ email: {{ tags: [pii] }}, name: {{ tags: [person-name] }} }}\ngrants:\n  - to: finance\n    streams:\n      - name: customers\n        transform: {finance_transform}\n",
            header("sales", "shop")
        ),
    );
    p.product(
        "finance",
        "revenue",
        &format!(
            "{}source: {{ product: sales/shop }}\nstreams:\n  - name: customers\n    mode: full_refresh\n    write: overwrite\n{FIELDS}grants:\n  - to: marketing\n    streams:\n      - name: customers\n        filter: {{ column: country, op: in, value: [DE, FR] }}\n",
            header("finance", "revenue")
        ),
    );
    p.product(
        "marketing",
        "margins",
        &format!(
            "{}source: {{ product: finance/revenue }}\nstreams:\n  - name: customers\n    mode: full_refresh\n    write: overwrite\n{FIELDS}",
            header("marketing", "margins")
        ),
    );
    p
}

fn run(p: &TestProject, args: &[&str]) -> Outcome {
    Outcome(
        p.weft(args)
            .env("WEFT_HASH_KEY", HASH_KEY)
            .output()
            .expect("run weft"),
    )
}

fn hmac_hex(value: &str) -> String {
    weft_testkit::mesh::hmac_hex(HASH_KEY, value)
}

/// id → (email, country) of a product's customers; and whether it has a `name` column.
fn customers(
    p: &TestProject,
    domain: &str,
    product: &str,
) -> (BTreeMap<i64, (String, String)>, bool) {
    let batch = p.read_stream(domain, product, "customers");
    let id = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let email = batch.column_by_name("email").unwrap().as_string::<i32>();
    let country = batch.column_by_name("country").unwrap().as_string::<i32>();
    let rows = (0..batch.num_rows())
        .map(|i| {
            (
                id.value(i),
                (email.value(i).to_string(), country.value(i).to_string()),
            )
        })
        .collect();
    (rows, batch.column_by_name("name").is_some())
}

#[test]
fn when_shared_rules_apply_on_every_grant_once_and_a_grant_cannot_replace_them() {
    let p = project("[]");
    run(&p, &["sync", "run", "--no-progress"]).expect_code(0);

    // Sales keeps clear addresses and names in its own store.
    let (sales, sales_names) = customers(&p, "sales", "shop");
    assert_eq!(sales.len(), 300);
    assert!(sales_names);
    assert!(sales.values().all(|(e, _)| e.contains('@')));
    // Finance gets tokens (HMAC under the project key) and no names.
    let (finance, finance_names) = customers(&p, "finance", "revenue");
    assert!(!finance_names, "names stay in sales");
    let want: BTreeMap<i64, (String, String)> = sales
        .iter()
        .map(|(id, (e, c))| (*id, (hmac_hex(e), c.clone())))
        .collect();
    assert_eq!(finance, want);
    // Marketing, two grants down: the same tokens (not hashed again), only DE and FR.
    let (marketing, _) = customers(&p, "marketing", "margins");
    let want: BTreeMap<i64, (String, String)> = want
        .into_iter()
        .filter(|(_, (_, c))| c == "DE" || c == "FR")
        .collect();
    assert!(!want.is_empty() && want.len() < 300);
    assert_eq!(marketing, want);
    // The audit records the rule on the grant's way.
    let history = run(&p, &["sync", "history", "--format", "json"]);
    let history: serde_json::Value = serde_json::from_str(&history.stdout()).unwrap();
    let audit = &history[0]["governance"]["finance/revenue/customers"];
    assert_eq!(
        audit["columns"],
        serde_json::json!([
            { "column": "name", "action": "drop", "rule": "names-home", "keep_last": 0 },
            { "column": "email", "action": "hash", "rule": "pii-shared", "keep_last": 0 }
        ]),
        "{history}"
    );

    // A grant masking the e-mail instead (weaker than the forced hash) is refused.
    let p = project("[{ mask: { column: email, keep_last: 4 } }]");
    let message = "domains/sales/shop.yaml:13: error [pii-shared] sales/shop/customers.email: Personal data leaves its domain pseudonymised (a grant's transform #1 reshapes `email`, which rule `pii-shared` forces to `hash` when shared; a product file cannot replace, rename or weaken a forced transformation); fix: remove that mapper: weft applies `hash` to `email` after the product's own mappers (a `drop` of the column is allowed)";
    let out = run(&p, &["policy", "check", "--offline"]);
    out.expect_code(1);
    assert!(out.stdout().contains(message), "{}", out.stdout());
    let out = run(&p, &["sync", "run", "--no-progress", "sales"]);
    out.expect_code(2);
    assert!(out.stderr().contains(message), "{}", out.stderr());

    // A grant dropping it is fine: stronger than the hash.
    let p = project("[{ drop: [email] }]");
    run(&p, &["policy", "check", "--offline"]).expect_code(0);
}
