//! End to end: the governance policy through the real binary — `weft policy check`, refusal
//! at sync time, forced keyed hashes (checked against an independent HMAC) and encryption in
//! the lake read back by DuckDB and pyarrow, the run audit, bad policies, and a kill -9.

use weft_testkit::readers::dump;
use weft_testkit::{Outcome, TestProject};

const BIN: &str = env!("CARGO_BIN_EXE_weft");
const HASH_KEY: &str = "test-hash-key-0123456789";
const ENCRYPT_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

const POLICY: &str = r#"version: 1
classifications: [public, internal, confidential, restricted]
keys: { hash: "${WEFT_HASH_KEY}", encrypt: "${WEFT_ENCRYPT_KEY}" }
rules:
  - id: owner-format
    kind: required_metadata
    severity: error
    message: Products are owned by a team address
    field: owner
    pattern: '^[a-z-]+@example\.com$'
  - id: described
    kind: required_metadata
    severity: error
    message: Consumers need a description
    field: description
  - id: classified
    kind: required_metadata
    severity: warn
    message: Every product has a classification
    field: classification
  - id: snake-columns
    kind: naming
    severity: error
    message: Column names are snake_case
    applies_to: column
    pattern: '^[a-z_][a-z0-9_]*$'
  - id: detect-email
    kind: detect
    severity: error
    message: E-mail columns are personal data
    tag: pii
    pattern: '(?i)e-?mail'
    types: [text]
  - id: pii-hash
    kind: force
    severity: error
    message: Personal data is pseudonymised
    tag: pii
    action: hash
  - id: secret-encrypt
    kind: force
    severity: error
    message: Secrets are encrypted
    tag: secret
    action: encrypt
  - id: direct-drop
    kind: force
    severity: error
    message: Direct identifiers never land
    tag: direct
    action: drop
  - id: name-mask
    kind: force
    severity: error
    message: Names show their last letter only
    tag: name
    action: mask
    keep_last: 1
"#;

const PEOPLE_CSV: &str = "id,email,name,note\n1,ann@example.com,Ann,n1\n2,bob@example.org,Bob,n2\n3,cy@example.net,Cy,n3\n";

/// A product reading `people/*.csv`; `fields` and `extra` are inserted into its stream.
fn people(product: &str, domain: &str, stream_extra: &str) -> String {
    format!(
        r#"product: {product}
domain: {domain}
owner: {domain}-data@example.com
description: People from the CSV drop.
classification: confidential
source:
  connector: files
  config:
    streams:
      - name: people
        path: people
        glob: "*.csv"
        format: csv
streams:
  - name: people
    mode: full_refresh
    write: overwrite
{stream_extra}"#
    )
}

const TAGGED: &str = "    fields:\n      email: { tags: [pii] }\n      name: { tags: [name] }\n      note: { tags: [secret] }\n";

fn project() -> TestProject {
    let p = TestProject::with_lake(BIN, "1s");
    p.file("governance.yaml", POLICY);
    p.file("people/a.csv", PEOPLE_CSV);
    p
}

fn run(p: &TestProject, args: &[&str]) -> Outcome {
    Outcome(
        p.weft(args)
            .env("WEFT_HASH_KEY", HASH_KEY)
            .env("WEFT_ENCRYPT_KEY", ENCRYPT_KEY)
            .output()
            .expect("run weft"),
    )
}

fn hmac_hex(value: &str) -> String {
    weft_testkit::mesh::hmac_hex(HASH_KEY, value)
}

#[test]
fn forced_hash_drop_and_encrypt_land_in_the_lake_and_are_audited() {
    let p = project();
    p.product("crm", "contacts", &people("contacts", "crm", TAGGED));
    p.product("sales", "leads", &people("leads", "sales", TAGGED));
    run(&p, &["sync", "run", "--no-progress"]).expect_code(0);

    let expected: Vec<Option<String>> = ["ann@example.com", "bob@example.org", "cy@example.net"]
        .iter()
        .map(|e| Some(hmac_hex(e)))
        .collect();
    let mut notes = Vec::new();
    for (domain, product) in [("crm", "contacts"), ("sales", "leads")] {
        let d = dump(&p.stream_dir(domain, product, "people"), "id");
        // The same email gives the same token in both products: HMAC-SHA-256(key, email).
        assert_eq!(d.column("email"), expected, "{domain}/{product}");
        assert_eq!(
            d.column("name"),
            [
                Some("**n".to_string()),
                Some("**b".into()),
                Some("*y".into())
            ]
        );
        // No clear-text email or note anywhere, in any column of any row.
        for row in d.duckdb.iter().chain(&d.pyarrow) {
            for value in row.values() {
                let text = value.as_str().unwrap_or_default();
                assert!(
                    !text.contains('@') && !["n1", "n2", "n3"].contains(&text),
                    "{row:?}"
                );
            }
        }
        notes.extend(d.column("note").into_iter().map(Option::unwrap));
    }
    // Encrypted with a fresh nonce each time; key holders decrypt them.
    assert_ne!(notes[0], notes[3]);
    let mut args = vec!["policy", "decrypt"];
    args.extend(notes.iter().map(String::as_str));
    let out = run(&p, &args);
    out.expect_code(0);
    assert_eq!(out.stdout(), "n1\nn2\nn3\nn1\nn2\nn3\n");

    // The audit: policy digest, rules, and per column the transformation.
    let out = run(&p, &["sync", "history", "--format", "json"]);
    out.expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let audit = &runs[0]["governance"]["crm/contacts/people"];
    assert_eq!(audit["policy_digest"].as_str().unwrap().len(), 64);
    assert_eq!(audit["rules"].as_array().unwrap().len(), 9);
    let columns: Vec<(String, String, String)> = audit["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["column"].as_str().unwrap().into(),
                c["action"].as_str().unwrap().into(),
                c["rule"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            ("email".into(), "hash".into(), "pii-hash".into()),
            ("name".into(), "mask".into(), "name-mask".into()),
            ("note".into(), "encrypt".into(), "secret-encrypt".into()),
        ]
    );
    let text = run(&p, &["sync", "history"]).stdout();
    assert!(
        text.contains("crm/contacts/people: policy ")
            && text.contains("email hash (pii-hash), name mask (name-mask), note encrypt")
            && text.contains("(secret-encrypt)"),
        "{text}"
    );
}

#[test]
fn product_show_lists_what_the_policy_forces_on_each_column_and_where() {
    let p = project();
    p.file(
        "governance.yaml",
        &format!("{POLICY}  - id: name-shared\n    kind: force\n    severity: error\n    message: Names leave the domain hashed\n    tag: name\n    action: hash\n    where: when_shared\n"),
    );
    p.product("crm", "contacts", &people("contacts", "crm", TAGGED));
    let out = run(&p, &["product", "show", "crm/contacts", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&out.expect_code(0).stdout()).unwrap();
    let columns = doc["streams"][0]["columns"].as_array().unwrap();
    let forced = |name: &str| -> Vec<(String, String, String)> {
        let column = columns
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no column {name} in {doc}"));
        column["policy"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let s = |k: &str| f[k].as_str().unwrap().to_string();
                (s("action"), s("scope"), s("rule"))
            })
            .collect()
    };
    let f = |a: &str, s: &str, r: &str| (a.to_string(), s.to_string(), r.to_string());
    assert_eq!(forced("id"), []);
    assert_eq!(forced("email"), [f("hash", "everywhere", "pii-hash")]);
    assert_eq!(
        forced("name"),
        [
            f("mask", "everywhere", "name-mask"),
            f("hash", "when_shared", "name-shared")
        ]
    );
    assert_eq!(
        forced("note"),
        [f("encrypt", "everywhere", "secret-encrypt")]
    );
    // The table says the same in the transformation column.
    let text = run(&p, &["product", "show", "crm/contacts"]).stdout();
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for said in [
        "pii-hash)",
        "name-mask)",
        "shared (policy",
        "name-shared)",
        "secret-encrypt)",
    ] {
        assert!(words.contains(said), "{said}: {text}");
    }
}

#[test]
fn policy_check_reports_each_rule_kind_with_file_line_rule_and_fix() {
    let p = project();
    let bad = people("leads", "sales", "    columns: [id, email, Name]\n")
        .replace("owner: sales-data@example.com", "owner: Bob")
        .replace("description: People from the CSV drop.\n", "")
        .replace("classification: confidential\n", "");
    p.product("sales", "leads", &bad);
    let out = run(&p, &["policy", "check", "--offline"]);
    out.expect_code(1);
    let stdout = out.stdout();
    for line in [
        "domains/sales/leads.yaml:3: error [owner-format] sales/leads: Products are owned by a team address (owner `Bob` does not match `^[a-z-]+@example\\.com$`); fix: set `owner:` to an address matching `^[a-z-]+@example\\.com$`",
        "domains/sales/leads.yaml:1: error [described] sales/leads: Consumers need a description (`description` is missing); fix: add `description: What the product holds.` to the product file",
        "domains/sales/leads.yaml:1: warn [classified] sales/leads: Every product has a classification (`classification` is missing); fix: add `classification: public|internal|confidential|restricted` to the product file",
        "domains/sales/leads.yaml:16: error [detect-email] sales/leads/people.email: E-mail columns are personal data (column `email` looks like `pii` but is not tagged); fix: tag it under its stream: `fields: { email: { tags: [pii] } }`",
        "domains/sales/leads.yaml:16: error [snake-columns] sales/leads/people.Name: Column names are snake_case (column `Name` does not match `^[a-z_][a-z0-9_]*$`); fix: rename the column with a `rename` mapper to a name matching `^[a-z_][a-z0-9_]*$`",
        "1 product(s) checked against policy ",
    ] {
        assert!(stdout.contains(line), "{line}\nmissing from:\n{stdout}");
    }
    assert!(stdout.contains(": 4 error(s), 1 warning(s)"), "{stdout}");

    let out = run(&p, &["policy", "check", "--offline", "--format", "json"]);
    out.expect_code(1);
    let json: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(json["errors"], 4);
    assert_eq!(json["violations"][0]["rule"], "owner-format");
    assert_eq!(json["violations"][0]["line"], 3);

    // At sync time the product does not run: exit 2, the same words, nothing written.
    let out = run(&p, &["sync", "run", "--no-progress"]);
    out.expect_code(2);
    let err = out.stderr();
    assert!(err.contains("refused by the governance policy"), "{err}");
    assert!(err.contains("error [owner-format] sales/leads"), "{err}");
    assert!(!p.lake().exists());

    // Fixed, only the warning is left: exit 0.
    p.product(
        "sales",
        "leads",
        &people("leads", "sales", TAGGED).replace("classification: confidential\n", ""),
    );
    let out = run(&p, &["policy", "check"]);
    out.expect_code(0);
    assert!(
        out.stdout().contains(": 0 error(s), 1 warning(s)"),
        "{}",
        out.stdout()
    );
}

#[test]
fn an_untagged_email_the_source_offers_is_caught_by_detection() {
    let p = project();
    // The file names no column at all: only the discovered schema shows the email.
    p.product("sales", "leads", &people("leads", "sales", ""));
    let out = run(&p, &["policy", "check"]);
    out.expect_code(1);
    assert!(
        out.stdout().contains("error [detect-email] sales/leads/people.email: E-mail columns are personal data (column `email` looks like `pii` but is not tagged)"),
        "{}",
        out.stdout()
    );
    let out = run(&p, &["sync", "run", "--no-progress"]);
    out.expect_code(1);
    assert!(
        out.stderr()
            .contains("stream `people`: refused by the governance policy")
            && out.stderr().contains("[detect-email]"),
        "{}",
        out.stderr()
    );
    assert!(!p.stream_dir("sales", "leads", "people").exists());
}

#[test]
fn a_product_file_cannot_remove_or_rename_away_a_forced_hash() {
    let p = project();
    for mapper in [
        "      - rename: { from: email, to: contact }\n",
        "      - mask: { column: email, keep_last: 20 }\n",
    ] {
        p.product(
            "sales",
            "leads",
            &people("leads", "sales", &format!("{TAGGED}    mappers:\n{mapper}")),
        );
        let out = run(&p, &["sync", "run", "--no-progress"]);
        out.expect_code(2);
        let err = out.stderr();
        assert!(
            err.contains("error [pii-hash] sales/leads/people.email: Personal data is pseudonymised (streams mapper #1 reshapes `email`, which rule `pii-hash` forces to `hash`; a product file cannot replace, rename or weaken a forced transformation); fix: remove that mapper"),
            "{err}"
        );
    }
    // A domain rule cannot allow what the centre forces.
    p.product("sales", "leads", &people("leads", "sales", TAGGED));
    p.domain(
        "sales",
        "domain: sales\nowners: [s@example.com]\ndescription: Sales.\nrules:\n  - { id: pii-ok, kind: force, severity: error, message: fine, tag: pii, action: allow }\n",
    );
    let out = run(&p, &["policy", "check"]);
    out.expect_code(2);
    assert!(
        out.stderr().contains("domains/sales/domain.yaml:5: rules: rule `pii-ok` would weaken central rule `pii-hash` (governance.yaml:"),
        "{}",
        out.stderr()
    );
}

#[test]
fn bad_policies_are_configuration_errors() {
    let p = project();
    p.product("sales", "leads", &people("leads", "sales", TAGGED));
    p.file(
        "governance.yaml",
        &POLICY.replace("kind: naming", "kind: spelling"),
    );
    let out = run(&p, &["sync", "run", "--no-progress"]);
    out.expect_code(2);
    assert!(
        out.stderr().contains("governance.yaml:")
            && out.stderr().contains("unknown variant `spelling`"),
        "{}",
        out.stderr()
    );

    // The encryption key is not set.
    p.file("governance.yaml", POLICY);
    let out = Outcome(
        p.weft(["sync", "run", "--no-progress"])
            .env("WEFT_HASH_KEY", HASH_KEY)
            .output()
            .unwrap(),
    );
    out.expect_code(2);
    assert!(
        out.stderr().contains("governance.yaml: keys.encrypt: ${WEFT_ENCRYPT_KEY}: environment variable `WEFT_ENCRYPT_KEY` is not set"),
        "{}",
        out.stderr()
    );
    // No encrypt key in the policy while a rule forces encryption.
    p.file(
        "governance.yaml",
        &POLICY.replace(", encrypt: \"${WEFT_ENCRYPT_KEY}\"", ""),
    );
    let out = run(&p, &["sync", "run", "--no-progress"]);
    out.expect_code(2);
    assert!(
        out.stderr().contains("error [secret-encrypt] sales/leads/people.note: Secrets are encrypted (rule `secret-encrypt` forces `encrypt` on `note` but governance.yaml sets no `keys.encrypt`)"),
        "{}",
        out.stderr()
    );
    assert!(!out.stderr().contains(HASH_KEY));
}

#[test]
fn a_governed_stream_killed_mid_sync_resumes_without_loss_duplicates_or_clear_text() {
    let p = TestProject::with_lake(BIN, "100ms");
    p.file("governance.yaml", POLICY);
    p.product(
        "sales",
        "shop",
        "product: shop\ndomain: sales\nowner: sales-data@example.com\ndescription: d\nclassification: internal\nsource:\n  connector: sample\n  config: { scale: 3000000 }\nstreams:\n  - name: customers\n    mode: incremental\n    write: append_dedup\n    cursor: updated_at\n    primary_key: [id]\n    fields:\n      email: { tags: [pii] }\n      name: { tags: [direct] }\n",
    );
    let out = p
        .weft(["sync", "run", "--no-progress"])
        .env("WEFT_HASH_KEY", HASH_KEY)
        .env("WEFT_ENCRYPT_KEY", ENCRYPT_KEY)
        .env("WEFT_FAILPOINT", "after_destination_commit:2")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the failpoint must abort weft");
    run(&p, &["sync", "run", "--no-progress"]).expect_code(0);
    // Read back with DuckDB: every customer once, every email a 64-hex token.
    let glob = p.stream_dir("sales", "shop", "customers").join("*.parquet");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import duckdb, sys\nprint(duckdb.sql(f\"SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE NOT regexp_full_match(email, '[0-9a-f]{{64}}')) FROM read_parquet('{sys.argv[1]}', union_by_name = true)\").fetchall()[0], duckdb.sql(f\"SELECT * FROM read_parquet('{sys.argv[1]}', union_by_name = true) LIMIT 0\").columns)",
        )
        .arg(&glob)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "(300000, 300000, 0) ['id', 'email', 'country', 'lifetime_value', 'created_at', 'updated_at']"
    );
}
