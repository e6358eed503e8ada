//! What the benches share (each bench is a crate of its own and takes this in with
//! `mod common;`): their knobs from the environment, writing a benchmark project (the domain
//! `bench`, its `weft.yaml` and products) and running the real binary on it. Measuring a run
//! (wall time, peak RSS) is [`weft_testkit::measure`], which tests use too.

// Each bench uses part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::str::FromStr;

use weft_testkit::pg::PgTestDb;

/// The real `weft` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_weft");

/// The `destination:` body of a Parquet lake under `lake/`, indented for `defaults:`.
pub const LAKE: &str = "    connector: parquet\n    config: { path: lake }\n";

/// `key` from the environment read as a `T`, or `default` when it is unset or unreadable.
pub fn env_or<T: FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A comma-separated list from the environment (`WEFT_BENCH_CHANGES=2000,500000`), or the
/// list `default` spells; items that do not read as a `T` are skipped.
pub fn env_list<T: FromStr>(key: &str, default: &str) -> Vec<T> {
    std::env::var(key)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|item| item.trim().parse().ok())
        .collect()
}

/// The `destination:` body of weft's PostgreSQL store in `db`, indented for `defaults:`.
pub fn pg_store(db: &PgTestDb) -> String {
    format!("    connector: postgres\n    config: {}\n", db.pg_config())
}

/// A bench project's `weft.yaml`: `destination` (e.g. [`LAKE`]) as the default product store
/// and `defaults`, more lines under `defaults:` (`"  commit_interval: 10s\n"`).
pub fn weft_yaml(destination: &str, defaults: &str) -> String {
    format!("version: 1\ndefaults:\n  destination:\n{destination}{defaults}")
}

/// Writes a benchmark project into `dir`: `weft_yaml`, the domain `bench` and its products,
/// each a (name, file after the header) pair: the header names the product, the domain, an
/// owner and a description, the rest starts at `source:`.
pub fn write_project(dir: &Path, weft_yaml: &str, products: &[(String, String)]) {
    std::fs::create_dir_all(dir.join("domains/bench")).expect("mkdir");
    std::fs::write(dir.join("weft.yaml"), weft_yaml).expect("weft.yaml");
    std::fs::write(
        dir.join("domains/bench/domain.yaml"),
        weft_testkit::minimal_domain_yaml("bench"),
    )
    .expect("domain.yaml");
    for (name, rest) in products {
        std::fs::write(
            dir.join(format!("domains/bench/{name}.yaml")),
            format!(
                "{}{rest}",
                weft_testkit::mesh::product_header("bench", name)
            ),
        )
        .expect("product");
    }
}

/// `weft --project <dir> ARGS…`, ready to run or measure.
pub fn weft(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--project").arg(dir).args(args);
    cmd
}

/// `weft sync run --no-progress` on the project in `dir`, measured: (seconds, peak RSS MiB);
/// its output goes to `stdout.txt` and `stderr.txt` there.
pub fn sync_measured(dir: &Path) -> (f64, f64) {
    weft_testkit::measure::run_measured(weft(dir, &["sync", "run", "--no-progress"]), dir)
}
