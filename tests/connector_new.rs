//! `weft connector new` into a temporary copy of the workspace: the generated source and
//! destination crates are registered, build, and pass their generated conformance tests.
//!
//! The copy holds only what cargo needs to load the workspace (manifests, lock file, `src/`,
//! `crates/`, `connectors/`, `benches/`); it builds into this build's own target folder
//! (`CARGO_TARGET_DIR`), so only weft's small crates compile again.

use std::path::{Path, PathBuf};
use std::process::Command;

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// Copies `from` into `to`, leaving out build output and local state.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == ".weft" || name == ".git" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&src, &dst);
        } else if kind.is_file() {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

fn workspace_copy() -> (tempfile::TempDir, PathBuf) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("weft");
    std::fs::create_dir_all(&root).unwrap();
    for file in ["Cargo.toml", "Cargo.lock"] {
        std::fs::copy(repo.join(file), root.join(file)).unwrap();
    }
    for dir in ["src", "crates", "connectors", "benches"] {
        copy_tree(&repo.join(dir), &root.join(dir));
    }
    (tmp, root)
}

fn weft_new(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(WEFT)
        .args(["connector", "new"])
        .args(args)
        .arg("--workspace")
        .arg(root)
        .output()
        .unwrap()
}

#[test]
fn connector_new_writes_registered_crates_whose_conformance_tests_pass() {
    let (_tmp, root) = workspace_copy();
    let out = weft_new(&root, &["crm", "--kind", "source"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("created source `crm`"), "{stdout}");
    let out = weft_new(&root, &["shop-store", "--kind", "destination"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Registered: member, feature in the defaults, optional dependency, registry line.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for line in [
        "    \"connectors/source-crm\",",
        "weft-source-crm = { path = \"connectors/source-crm\" }",
        "    \"source-crm\",",
        "source-crm = [\"dep:weft-source-crm\"]",
        "weft-source-crm = { workspace = true, optional = true }",
        "destination-shop-store = [\"dep:weft-destination-shop-store\"]",
    ] {
        assert!(
            manifest.lines().any(|l| l == line),
            "missing {line:?} in\n{manifest}"
        );
    }
    let registry = std::fs::read_to_string(root.join("src/registry.rs")).unwrap();
    assert!(
        registry.contains("    #[cfg(feature = \"source-crm\")]\n    let registry = registry.with_source(weft_source_crm::CrmSourceFactory);\n"),
        "{registry}"
    );
    assert!(
        registry.contains(
            "registry.with_destination(weft_destination_shop_store::ShopStoreDestinationFactory);"
        ),
        "{registry}"
    );
    for file in [
        "connectors/source-crm/src/lib.rs",
        "connectors/destination-shop-store/tests/conformance.rs",
    ] {
        assert!(root.join(file).is_file(), "{file}");
    }

    // Formatted as `cargo fmt --check` wants, whatever the name's length.
    let generated: Vec<PathBuf> = ["source-crm", "destination-shop-store"]
        .iter()
        .flat_map(|dir| {
            ["src/lib.rs", "tests/conformance.rs"]
                .map(|f| root.join("connectors").join(dir).join(f))
        })
        .chain([root.join("src/registry.rs")])
        .collect();
    let out = Command::new("rustfmt")
        .args(["--check", "--edition", "2021"])
        .args(&generated)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A second run refuses, naming what exists, and changes nothing.
    let out = weft_new(&root, &["crm", "--kind", "source"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("connectors/source-crm already exists"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("Cargo.toml")).unwrap(),
        manifest
    );

    // They build and their generated tests (the conformance suite) pass.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", target)
        .args([
            "test",
            "--offline",
            "-p",
            "weft-source-crm",
            "-p",
            "weft-destination-shop-store",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("test the_crm_source_conforms ... ok"),
        "{text}"
    );
    assert!(
        text.contains("test the_shop_store_destination_conforms ... ok"),
        "{text}"
    );
    // The binary's manifest still resolves with the new features.
    let out = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "metadata",
            "--offline",
            "--format-version",
            "1",
            "--no-deps",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
