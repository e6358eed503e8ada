//! The airbyte source against the conformance suite, driving a small but complete Airbyte
//! connector: a Python script (run with python3, a real subprocess speaking the protocol) whose
//! `items` stream counts 1..=9, sends a STATE after every 4 records and resumes after the
//! cursor it is given; with `bad_row` set, that record's `name` is an object (undecodable).

use serde_json::json;
use weft_conformance::SourceSuite;
use weft_core::ConnectorContext;
use weft_source_airbyte::AirbyteSourceFactory;

const CONNECTOR: &str = r#"
import json, sys
def emit(m):
    sys.stdout.write(json.dumps(m) + "\n"); sys.stdout.flush()
def arg(name):
    a = sys.argv
    return a[a.index(name) + 1] if name in a else None
cmd = sys.argv[1]
if cmd == "spec":
    emit({"type": "SPEC", "spec": {"connectionSpecification": {"type": "object", "properties": {"rows": {"type": "integer"}}}}})
elif cmd == "check":
    emit({"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED"}})
elif cmd == "discover":
    emit({"type": "CATALOG", "catalog": {"streams": [{"name": "items", "json_schema": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": ["null", "string"]}}}, "supported_sync_modes": ["full_refresh", "incremental"], "source_defined_cursor": True, "default_cursor_field": ["id"], "source_defined_primary_key": [["id"]]}]}})
elif cmd == "read":
    config = json.load(open(arg("--config")))
    state = json.load(open(arg("--state"))) if arg("--state") else None
    after = int(state[0]["stream"]["stream_state"]["cursor"]) if state else 0
    for i in range(after + 1, config["rows"] + 1):
        name = None if i % 5 == 0 else "n%d" % i
        if i == config.get("bad_row"):
            name = {"not": "a string"}
        emit({"type": "RECORD", "record": {"stream": "items", "data": {"id": i, "name": name}, "emitted_at": 1}})
        if i % 4 == 0 or i == config["rows"]:
            emit({"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "items"}, "stream_state": {"cursor": i}}}})
"#;

#[tokio::test]
async fn the_airbyte_source_conforms() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("connector.py"), CONNECTOR).unwrap();
    let config = json!({
        "command": ["python3", "connector.py"],
        "config": { "rows": 9 },
        "catalog_cache": "0s",
    });
    let ctx = ConnectorContext {
        project_dir: dir.path().to_path_buf(),
    };
    // The broken fixture: record 6's `name` is an object where the schema says string.
    let broken = json!({
        "command": ["python3", "connector.py"],
        "config": { "rows": 9, "bad_row": 6 },
        "catalog_cache": "0s",
        "off_schema": "fail",
    });
    let report = SourceSuite::new(&AirbyteSourceFactory, config, ctx)
        .undecodable(broken, "items", "name")
        .run()
        .await
        .unwrap_or_else(|faults| panic!("{faults}"));
    // STATEs after records 4, 8 and 9, in both modes, each resumed (but a complete full refresh).
    assert!(report.checkpoints_resumed >= 4, "{report:?}");
    assert_eq!(report.rows, 2 * 9, "{report:?}");
}
