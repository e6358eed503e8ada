//! `weft sync run --dry-run` says in words where each stream's next read starts, from the real
//! `weft` binary and a private PostgreSQL cluster (logical replication for the CDC stream):
//! before any run, after a run (a full refresh starts again, an incremental read goes on after
//! its cursor, CDC from the slot's LSN), and after a full refresh killed between two of its
//! ranges. `--format json` keeps the checkpoint and adds the position and the words.

use std::time::Duration;

use weft_testkit::pg::{ClusterOptions, PrivateCluster};
use weft_testkit::TestProject;

const BIN: &str = env!("CARGO_BIN_EXE_weft");
const LIMIT: Duration = Duration::from_secs(120);

/// `items`: 800 rows, read in full in ranges of 100 ids. `orders`: ten per day from
/// 2024-01-01 to 2024-01-10, five of each day an hour after the other five. `events`: CDC.
const SEED: &str = "CREATE TABLE items (id int8 PRIMARY KEY, v text);
     INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 800) g;
     CREATE TABLE orders (id int8 PRIMARY KEY, updated_at timestamptz NOT NULL);
     INSERT INTO orders SELECT g, timestamptz '2024-01-01 08:00:00+00'
         + ((g - 1) / 10) * interval '1 day' + (((g - 1) % 10) / 5) * interval '1 hour'
       FROM generate_series(1, 100) g;
     CREATE TABLE events (id int8 PRIMARY KEY, kind text);
     INSERT INTO events VALUES (1, 'a'), (2, 'b');
     ANALYZE;";

fn product(cluster: &PrivateCluster) -> String {
    format!(
        "product: db\ndomain: shop\nowner: shop-data@example.com\ndescription: dry run\nsource:\n  connector: postgres\n  config: {}\nstreams:\n  - name: public.items\n    mode: full_refresh\n    write: overwrite\n  - name: public.orders\n    mode: incremental\n    cursor: updated_at\n    write: append_dedup\n  - name: public.events\n    mode: cdc\n    write: append_dedup\n",
        cluster
            .pg_config("shop")
            .replace(" }", ", parallelism: 1, range_rows: 100, batch_size: 50 }")
    )
}

/// What the table output says below the table, one line per stream (lines wrapped to fit 80
/// columns joined again).
fn said(p: &TestProject) -> Vec<String> {
    let out = p.run_within(LIMIT, ["sync", "run", "--dry-run"]);
    let stdout = out.expect_code(0).stdout();
    assert!(
        stdout.ends_with("\ndry run: nothing was read, written or recorded\n"),
        "{stdout}"
    );
    assert!(stdout.lines().all(|l| l.chars().count() <= 80), "{stdout}");
    let below = &stdout[stdout.find("shop/db/public.items: ").expect(&stdout)..];
    let mut said: Vec<String> = Vec::new();
    for line in below.lines().filter(|l| !l.starts_with("dry run:")) {
        match line.strip_prefix("  ") {
            Some(more) => said
                .last_mut()
                .expect(&stdout)
                .push_str(&format!(" {more}")),
            None => said.push(line.to_string()),
        }
    }
    said
}

fn json(p: &TestProject, args: &[&str]) -> serde_json::Value {
    let out = p.run_within(LIMIT, args);
    let stdout = out.expect_code(0).stdout();
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn a_dry_run_says_where_each_stream_resumes() {
    let Some(cluster) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    cluster.sql("postgres", "CREATE DATABASE shop");
    cluster.sql("shop", SEED);
    let p = TestProject::with_lake(BIN, "1ms");
    p.env("PG_PASSWORD", cluster.password());
    p.product("shop", "db", &product(&cluster));

    assert_eq!(
        said(&p),
        [
            "shop/db/public.items: full refresh from the start",
            "shop/db/public.orders: incremental from the start: every row",
            "shop/db/public.events: initial snapshot, then changes from the log",
        ]
    );

    p.run_within(LIMIT, ["sync", "run", "--no-progress"])
        .expect_code(0);
    let shown = json(&p, &["state", "show", "shop/db", "--format", "json"]);
    let lsn = shown
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "shop/db/public.events")
        .and_then(|s| s["position"]["lsn"].as_str())
        .unwrap_or_else(|| panic!("no LSN in {shown}"))
        .to_string();
    let (high, low) = lsn.split_once('/').expect("an X/Y LSN");
    assert!(
        [high, low]
            .iter()
            .all(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit())),
        "{lsn}"
    );
    assert_eq!(
        said(&p),
        [
            "shop/db/public.items: full refresh from the start".to_string(),
            "shop/db/public.orders: cursor updated_at > 2024-01-10 09:00:00.000000+00 (ties: id \
             > 100)"
                .to_string(),
            format!("shop/db/public.events: resumes from LSN {lsn}"),
        ]
    );

    // JSON keeps the checkpoint as stored, with the position and the words beside it.
    let plan = json(&p, &["sync", "run", "--dry-run", "--format", "json"]);
    let orders = &plan[1];
    assert_eq!(orders["stream"], "shop/db/public.orders", "{plan}");
    assert!(orders["resume_from"].is_object(), "{plan}");
    assert_eq!(orders["position"]["kind"], "cursor", "{plan}");
    assert_eq!(orders["position"]["value"], "2024-01-10 09:00:00.000000+00");
    assert_eq!(
        plan[2]["next_read"],
        format!("resumes from LSN {lsn}"),
        "{plan}"
    );

    // A full refresh killed after one of its commits resumes after the ranges it finished.
    let killed = p.kill_after_first_commit(
        ["sync", "run", "--no-progress", "shop/db/public.items"],
        LIMIT,
    );
    assert_ne!(killed.code(), Some(0), "{}", killed.stderr());
    let shown = json(
        &p,
        &["state", "show", "shop/db/public.items", "--format", "json"],
    );
    let position = &shown[0]["position"];
    assert_eq!(position["kind"], "ranges", "{shown}");
    assert_eq!(position["total"], 8, "{shown}");
    assert_eq!(position["complete"], false, "{shown}");
    let done = position["done"].as_u64().unwrap();
    assert!(done < 8, "{shown}");
    assert_eq!(
        said(&p)[0],
        format!(
            "shop/db/public.items: resumes an interrupted full refresh after {done} of 8 ranges"
        )
    );
}
