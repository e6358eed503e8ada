//! End to end: the real `airbyte-source-faker` from PyPI, installed by weft into its cached
//! virtualenv, synced by the real `weft` binary into the Parquet lake, checked against running
//! the connector directly; then an incremental run from the saved state.
//!
//! Needs PyPI. When it is unreachable the test is skipped with a message, except with `CI=true`
//! where it fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use weft_testkit::{manifest_checkpoint, TestProject};

const BIN: &str = env!("CARGO_BIN_EXE_weft");
const PACKAGE: &str = "airbyte-source-faker==7.2.1";
const COUNT: u64 = 300;

/// Shared between test runs so the package installs once per target folder.
fn venv_cache() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("weft-test-venvs")
}

fn faker_config() -> serde_json::Value {
    serde_json::json!({"count": COUNT, "seed": 1, "records_per_slice": 50, "always_updated": false, "parallelism": 1})
}

fn product() -> String {
    format!(
        "product: fake\ndomain: sales\nowner: test@example.com\ndescription: faker\nsource:\n  connector: airbyte\n  config:\n    package: \"{PACKAGE}\"\n    config: {}\nstreams:\n  - name: users\n    mode: incremental\n    write: append\n    cursor: updated_at\n  - name: products\n    mode: full_refresh\n    write: overwrite\n  - name: purchases\n    mode: incremental\n    write: append\n    cursor: updated_at\n",
        faker_config()
    )
}

/// The faker's executable in weft's cache, once weft installed it.
fn installed_faker() -> PathBuf {
    let cache = venv_cache();
    std::fs::read_dir(&cache)
        .expect("the venv cache exists")
        .flatten()
        .map(|e| e.path().join("bin").join("source-faker"))
        .find(|p| p.exists() && p.to_string_lossy().contains("airbyte-source-faker-__7.2.1"))
        .expect("weft installed source-faker")
}

/// Runs the connector directly: records per stream, and the users' rows by id.
fn run_directly(exe: &PathBuf) -> (BTreeMap<String, u64>, BTreeMap<i64, serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, faker_config().to_string()).unwrap();
    let discover = Command::new(exe)
        .args(["discover", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let catalog = String::from_utf8_lossy(&discover.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| m["type"] == "CATALOG")
        .expect("a catalog");
    let streams: Vec<serde_json::Value> = catalog["catalog"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| serde_json::json!({"stream": s, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}))
        .collect();
    let configured = dir.path().join("catalog.json");
    std::fs::write(
        &configured,
        serde_json::json!({ "streams": streams }).to_string(),
    )
    .unwrap();
    let read = Command::new(exe)
        .args(["read", "--config"])
        .arg(&config)
        .arg("--catalog")
        .arg(&configured)
        .output()
        .unwrap();
    assert!(read.status.success());
    let mut counts = BTreeMap::new();
    let mut users = BTreeMap::new();
    for line in String::from_utf8_lossy(&read.stdout).lines() {
        let m: serde_json::Value = serde_json::from_str(line).unwrap();
        if m["type"] == "RECORD" {
            let stream = m["record"]["stream"].as_str().unwrap().to_string();
            *counts.entry(stream.clone()).or_insert(0) += 1;
            if stream == "users" {
                let data = m["record"]["data"].clone();
                users.insert(data["id"].as_i64().unwrap(), data);
            }
        }
    }
    (counts, users)
}

#[test]
fn faker_full_refresh_then_incremental_through_the_binary() {
    let p = TestProject::with_lake(BIN, "1s");
    p.product("sales", "fake", &product());
    let run = || {
        p.weft(["sync", "run", "--no-progress"])
            .env("WEFT_CONNECTOR_CACHE", venv_cache())
            .output()
            .unwrap()
    };
    let first = run();
    let stderr = String::from_utf8_lossy(&first.stderr).into_owned();
    if !first.status.success()
        && (stderr.contains("PyPI is unreachable") || stderr.contains("cannot install"))
    {
        let message = format!("cannot install {PACKAGE} from PyPI: {stderr}");
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{message}");
        }
        eprintln!("SKIPPED (set CI=true to fail instead): {message}");
        return;
    }
    assert!(
        first.status.success(),
        "first sync failed\n--- stdout\n{}\n--- stderr\n{stderr}",
        String::from_utf8_lossy(&first.stdout)
    );

    let (counts, direct_users) = run_directly(&installed_faker());
    assert_eq!(counts["users"], COUNT);
    for stream in ["users", "products", "purchases"] {
        let lake = p.read_stream("sales", "fake", stream);
        assert_eq!(lake.num_rows() as u64, counts[stream], "rows of {stream}");
    }

    // Values match the connector's own output (updated_at is the run's clock, so not compared).
    let users = p.read_stream("sales", "fake", "users");
    let ids = users
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let names = users.column_by_name("name").unwrap().as_string::<i32>();
    let ages = users
        .column_by_name("age")
        .unwrap()
        .as_primitive::<Int64Type>();
    let addresses = users.column_by_name("address").unwrap().as_string::<i32>();
    let mut seen: Vec<i64> = ids.values().to_vec();
    seen.sort_unstable();
    assert_eq!(seen, (1..=COUNT as i64).collect::<Vec<_>>());
    for row in [0, 1, users.num_rows() - 1] {
        let expected = &direct_users[&ids.value(row)];
        assert_eq!(names.value(row), expected["name"].as_str().unwrap());
        assert_eq!(ages.value(row), expected["age"].as_i64().unwrap());
        let address: serde_json::Value = serde_json::from_str(addresses.value(row)).unwrap();
        assert_eq!(address, expected["address"]);
    }
    assert!(users.column_by_name("_airbyte_extra").unwrap().null_count() == users.num_rows());

    let users_dir = p.stream_dir("sales", "fake", "users");
    let state_after_first = manifest_checkpoint(&users_dir).expect("a committed checkpoint");
    assert_eq!(state_after_first["complete"], true);
    assert_eq!(
        state_after_first["state"]["stream"]["stream_state"]["loop_offset"],
        COUNT
    );

    // Incremental from the saved state: with always_updated=false the faker has nothing new,
    // so nothing is appended and the state stays.
    let second = run();
    assert!(
        second.status.success(),
        "second sync failed\n{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        p.read_stream("sales", "fake", "users").num_rows() as u64,
        COUNT
    );
    assert_eq!(
        p.read_stream("sales", "fake", "purchases").num_rows() as u64,
        counts["purchases"]
    );
    assert_eq!(
        p.read_stream("sales", "fake", "products").num_rows() as u64,
        counts["products"]
    );
    let state_after_second = manifest_checkpoint(&users_dir).unwrap();
    assert_eq!(
        state_after_second["state"]["stream"]["stream_state"],
        state_after_first["state"]["stream"]["stream_state"]
    );
}
