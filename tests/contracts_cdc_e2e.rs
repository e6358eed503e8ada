//! A column added to a CDC source while a `--follow` run streams it is checked like a column
//! found at planning: against the locked contract (`on_change: freeze` stops the stream) and
//! against the governance policy (a new column a rule forces to `hash` stops the stream: the
//! mappers planned before it would write it in clear). Nothing of the new shape is written;
//! the real `weft` binary, a private PostgreSQL cluster with logical replication.

use std::time::{Duration, Instant};

use weft_testkit::pg::{ClusterOptions, PrivateCluster};
use weft_testkit::readers::dump;
use weft_testkit::{Running, TestProject};

const BIN: &str = env!("CARGO_BIN_EXE_weft");
const LIMIT: Duration = Duration::from_secs(120);

const POLICY: &str = "version: 1\nkeys: { hash: \"cdc-key-1\" }\nrules:\n  - { id: detect-email, kind: detect, severity: warn, message: E-mail columns are personal data, tag: pii, pattern: '(?i)e-?mail' }\n  - { id: pii-hash, kind: force, severity: error, message: Personal data is pseudonymised, tag: pii, action: hash }\n";

fn product(name: &str, table: &str, on_change: &str, cluster: &PrivateCluster) -> String {
    format!(
        "product: {name}\ndomain: shop\nowner: shop-data@example.com\ndescription: cdc contract\ncontract: {{ on_change: {on_change} }}\nsource:\n  connector: postgres\n  config: {}\nstreams:\n  - name: public.{table}\n    mode: cdc\n    write: append_dedup\n",
        cluster.pg_config("shop")
    )
}

/// `id|v` of a lake stream, by id.
fn rows(p: &TestProject, product: &str, table: &str) -> Vec<String> {
    dump(
        &p.stream_dir("shop", product, &format!("public.{table}")),
        "id",
    )
    .rows(&["id", "v"])
}

#[test]
fn a_column_added_mid_stream_is_checked_against_the_contract_and_the_policy() {
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    cluster.sql("postgres", "CREATE DATABASE shop");
    cluster.sql(
        "shop",
        "CREATE TABLE items (id int8 PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a');
         CREATE TABLE people (id int8 PRIMARY KEY, v text); INSERT INTO people VALUES (1, 'a');",
    );
    let p = TestProject::new(
        BIN,
        "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n  commit_interval: 100ms\n",
    );
    p.file("governance.yaml", POLICY);
    p.product(
        "shop",
        "frozen",
        &product("frozen", "items", "freeze", &cluster),
    );
    p.product(
        "shop",
        "evolving",
        &product("evolving", "people", "evolve", &cluster),
    );
    let weft = |args: &[&str]| {
        let mut cmd = p.weft(args);
        cmd.env("PG_PASSWORD", cluster.password());
        cmd
    };
    for label in ["shop/frozen", "shop/evolving"] {
        let out = weft_testkit::Outcome(weft(&["product", "contract", label]).output().unwrap());
        out.expect_code(0);
    }
    weft_testkit::Outcome(weft(&["sync", "run", "--no-progress"]).output().unwrap()).expect_code(0);

    let follow = Running::spawn(weft(&["sync", "run", "--no-progress", "--follow"]));
    // A change of the old shape streams through.
    cluster.sql(
        "shop",
        "INSERT INTO items VALUES (2, 'b'); INSERT INTO people VALUES (2, 'b');",
    );
    let started = Instant::now();
    while (rows(&p, "frozen", "items").len() < 2 || rows(&p, "evolving", "people").len() < 2)
        && started.elapsed() < LIMIT
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(rows(&p, "frozen", "items"), ["1|a", "2|b"]);
    assert_eq!(rows(&p, "evolving", "people"), ["1|a", "2|b"]);

    // Then a column is added, and rows carrying it.
    cluster.sql(
        "shop",
        "ALTER TABLE items ADD COLUMN note text; INSERT INTO items VALUES (3, 'c', 'n');
         ALTER TABLE people ADD COLUMN email text; INSERT INTO people VALUES (3, 'c', 'c@mail.example.org');",
    );
    // Both streams stop, which ends the run.
    let out = follow.finish(LIMIT);
    let stderr = out.stderr();
    assert_eq!(out.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the stream's schema changed mid-read: the source now differs from contract 1.0 (domains/shop/frozen.contract.yaml) and the product's `on_change: freeze` refuses it mid-stream: public.items.note: new column (text); nothing of the new shape was written"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the stream's schema changed mid-read: column `email` appeared, which rule `pii-hash` forces to `hash`; the stream stopped before writing it (the next run applies the rule to it)"),
        "{stderr}"
    );
    // Nothing of the new shape was written.
    assert_eq!(rows(&p, "frozen", "items"), ["1|a", "2|b"]);
    assert_eq!(rows(&p, "evolving", "people"), ["1|a", "2|b"]);
    let d = dump(&p.stream_dir("shop", "evolving", "public.people"), "id");
    assert!(!d.types.contains_key("email"), "{:?}", d.types);

    // The next run plans the new column: evolve with the policy's hash; freeze refuses.
    let out = weft_testkit::Outcome(weft(&["sync", "run", "--no-progress"]).output().unwrap());
    out.expect_code(1);
    let d = dump(&p.stream_dir("shop", "evolving", "public.people"), "id");
    let email = d.column("email");
    assert_eq!(email.len(), 3);
    let token = email[2].as_deref().unwrap();
    assert!(token.len() == 64 && !token.contains('@'), "{token}");
    assert_eq!(rows(&p, "frozen", "items"), ["1|a", "2|b"]);
}
