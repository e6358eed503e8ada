//! Manifests out of published wheels (`package:`, `wheel:`): a wheel built by the test, served
//! with its release JSON by a loopback index, read by the source with no Python; downloaded
//! once and cached under the project's `.weft/manifests/`; every way it can go wrong named.

mod common;

use serde_json::{json, Value};
use weft_core::{ConnectorContext, SourceFactory, SyncMode};
use weft_source_manifest::ManifestSourceFactory;
use weft_testkit::http_mock::{MockServer, Reply};
use weft_testkit::pypi::{self, Release};

const MANIFEST: &str = r#"
version: 6.0.0
type: DeclarativeSource
check: {stream_names: [items]}
spec:
  type: Spec
  connection_specification:
    type: object
    required: [base]
    properties:
      base: {type: string}
streams:
  - type: DeclarativeStream
    name: items
    primary_key: id
    retriever:
      type: SimpleRetriever
      requester: {type: HttpRequester, url_base: "{{ config.base }}", path: /items}
      record_selector:
        type: RecordSelector
        extractor: {type: DpathExtractor, field_path: [items]}
    schema_loader:
      type: JsonFileSchemaLoader
      file_path: "./source_items/schemas/items.json"
"#;

const SCHEMA: &str =
    r#"{"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}"#;

fn items_wheel() -> Vec<u8> {
    pypi::wheel(
        "airbyte-source-items",
        "1.0.0",
        &[
            ("source_items/__init__.py", ""),
            ("source_items/run.py", "print('never run')\n"),
            ("source_items/manifest.yaml", MANIFEST),
            ("source_items/schemas/items.json", SCHEMA),
            // Outside the package folder, or escaping it: never unpacked.
            ("unit_tests/test_x.py", ""),
            ("source_items/../../escaped.json", "{}"),
        ],
    )
}

/// A loopback index serving `release`, beside the API the manifest reads.
fn serve(rt: &tokio::runtime::Runtime, release: Release) -> MockServer {
    rt.block_on(MockServer::start(move |req| {
        if let Some(reply) = release.serve(req) {
            return reply;
        }
        match req.path.as_str() {
            "/items" => {
                Reply::json(json!({"items": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
            }
            _ => Reply::status(404, "{}"),
        }
    }))
}

fn build(project: &std::path::Path, config: Value) -> Result<Box<dyn weft_core::Source>, String> {
    let ctx = ConnectorContext {
        project_dir: project.to_path_buf(),
    };
    ManifestSourceFactory
        .build(&config, &ctx)
        .map_err(|e| e.to_string())
}

fn index_requests(server: &MockServer) -> usize {
    server
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/pypi/") || s.path.starts_with("/files/"))
        .count()
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_pinned_package_is_downloaded_once_and_its_manifest_read_from_the_wheel() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = serve(
        &rt,
        Release::new("airbyte-source-items", "1.0.0", items_wheel()),
    );
    let project = tempfile::tempdir().unwrap();
    let config = json!({
        "package": "airbyte-source-items==1.0.0",
        "index_url": format!("{}/pypi", server.url()),
        "config": {"base": server.url()},
    });
    let source = build(project.path(), config.clone()).unwrap();
    let paths: Vec<String> = server.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/pypi/airbyte-source-items/1.0.0/json",
            "/files/airbyte_source_items-1.0.0-py3-none-any.whl"
        ]
    );

    // The schema is the wheel's JSON file; the rows are the API's.
    let catalog = rt.block_on(source.discover()).unwrap();
    let schema = &catalog.stream("items").unwrap().schema;
    assert_eq!(
        schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().to_string()))
            .filter(|(n, _)| !n.starts_with('_'))
            .collect::<Vec<_>>(),
        [("id", "Int64".to_string()), ("name", "Utf8".to_string())]
    );
    let read = rt.block_on(common::read(
        source.as_ref(),
        "items",
        SyncMode::FullRefresh,
        None,
    ));
    assert_eq!(common::column(&read.rows, "name"), [json!("a"), json!("b")]);

    // Only the manifest, its schemas and the cache's own record were unpacked.
    let entry = project
        .path()
        .join(".weft/manifests/airbyte-source-items/1.0.0");
    assert_eq!(
        files_under(&entry),
        [
            "source_items/manifest.yaml",
            "source_items/schemas/items.json",
            "weft-package.json"
        ]
    );
    assert!(files_under(project.path())
        .iter()
        .all(|f| !f.ends_with("escaped.json")));

    // Cached: a second build asks the index nothing.
    let before = index_requests(&server);
    build(project.path(), config).unwrap();
    assert_eq!(index_requests(&server), before);
}

#[test]
fn a_wheel_file_in_the_project_is_read_the_same_way() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = serve(&rt, Release::new("unused", "0", Vec::new()));
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("items.whl"), items_wheel()).unwrap();
    let source = build(
        project.path(),
        json!({"wheel": "items.whl", "config": {"base": server.url()}}),
    )
    .unwrap();
    let read = rt.block_on(common::read(
        source.as_ref(),
        "items",
        SyncMode::FullRefresh,
        None,
    ));
    assert_eq!(common::column(&read.rows, "id"), [json!(1), json!(2)]);
}

#[test]
fn a_package_that_cannot_be_had_is_refused_with_the_reason() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let python_only = pypi::wheel(
        "airbyte-source-code",
        "2.0.0",
        &[
            ("source_code/__init__.py", ""),
            ("source_code/source.py", ""),
        ],
    );
    let mut tampered = Release::new("airbyte-source-items", "1.0.0", items_wheel());
    tampered.sha256 = "ab".repeat(32);
    let code = Release::new("airbyte-source-code", "2.0.0", python_only);
    let server = rt.block_on(MockServer::start(move |req| {
        code.serve(req)
            .filter(|_| req.path.contains("code"))
            .or_else(|| tampered.serve(req))
            .unwrap_or_else(|| Reply::status(404, "{}"))
    }));
    let project = tempfile::tempdir().unwrap();
    let index = format!("{}/pypi", server.url());
    let err = |config: Value| match build(project.path(), config) {
        Ok(_) => panic!("built a source from a package that cannot be had"),
        Err(e) => e,
    };

    let e = err(json!({"package": "airbyte-source-code==2.0.0", "index_url": index}));
    assert!(
        e.contains("airbyte-source-code==2.0.0")
            && e.contains("not a declarative (manifest) connector")
            && e.contains("connector: airbyte"),
        "{e}"
    );
    let e = err(json!({"package": "airbyte-source-items==1.0.0", "index_url": index}));
    assert!(e.contains("does not match the index's sha256"), "{e}");
    let e = err(json!({"package": "airbyte-source-nope==1.0.0", "index_url": index}));
    assert!(e.contains("not found on the index"), "{e}");
    let e = err(json!({"package": "airbyte-source-items", "index_url": index}));
    assert!(e.contains("pin a version"), "{e}");
    let e =
        err(json!({"package": "airbyte-source-items==1.0.0", "index_url": "ftp://127.0.0.1/pypi"}));
    assert!(
        e.contains("http:// or https://") && e.contains("`wheel:`"),
        "{e}"
    );
    let e = err(json!({"package": "airbyte-source-items==1.0.0", "manifest": "x.yaml"}));
    assert!(e.contains("exactly one of `manifest`"), "{e}");
    let e = err(
        json!({"package": "airbyte-source-items==1.0.0", "index_url": "http://user:s3cret@127.0.0.1:1/pypi"}),
    );
    assert!(!e.contains("s3cret"), "{e}");

    // Nothing half-done was cached: no entry for any of them.
    let cache = project.path().join(".weft/manifests");
    let entries: Vec<String> = files_under(&cache)
        .into_iter()
        .filter(|f| f.ends_with("weft-package.json"))
        .collect();
    assert!(entries.is_empty(), "{entries:?}");
}
