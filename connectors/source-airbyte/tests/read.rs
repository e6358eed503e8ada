//! The airbyte source against tiny fake connectors: Python scripts run with python3, speaking
//! the protocol well and badly. Every read is checked for what reaches the engine: batches and
//! checkpoints in order, and on failure an error after the last good checkpoint, never a
//! checkpoint past bad output.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use weft_core::arrow_array::cast::AsArray;
use weft_core::arrow_array::types::Int64Type;
use weft_core::arrow_array::Array;
use weft_core::{
    Checkpoint, ConfiguredStream, ConnectorContext, Source, SourceFactory, SourceMessage, SyncMode,
    WriteMode,
};
use weft_source_airbyte::{AirbyteCheckpoint, AirbyteSourceFactory};

/// A fake connector: spec/check/discover are fixed, `read` runs `body` with `config`,
/// `catalog` and `state` (the parsed `--state` file or None) in scope and `emit`/`record`/
/// `state_msg` helpers.
const PRELUDE: &str = r#"
import json, sys, time
def emit(m):
    sys.stdout.write(json.dumps(m) + "\n"); sys.stdout.flush()
def record(i, **extra):
    data = {"id": i, "name": "n%d" % i}
    data.update(extra)
    emit({"type": "RECORD", "record": {"stream": "items", "data": data, "emitted_at": 1}})
def state_msg(v):
    emit({"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "items"}, "stream_state": {"cursor": v}}, "sourceStats": {"recordCount": 1.0}}})
def arg(name):
    a = sys.argv
    return a[a.index(name) + 1] if name in a else None
cmd = sys.argv[1]
config = json.load(open(arg("--config"))) if arg("--config") else None
if cmd == "spec":
    emit({"type": "SPEC", "spec": {"connectionSpecification": {"type": "object"}}})
elif cmd == "check":
    ok = config.get("ok", True)
    emit({"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED" if ok else "FAILED", "message": "bad key " + str(config.get("api_key"))}})
elif cmd == "discover":
    emit({"type": "LOG", "log": {"level": "INFO", "message": "discovering"}})
    emit({"type": "CATALOG", "catalog": {"streams": [{"name": "items", "json_schema": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": ["null", "string"]}, "tags": {"type": "array"}}}, "supported_sync_modes": ["full_refresh", "incremental"], "source_defined_cursor": True, "default_cursor_field": ["id"], "source_defined_primary_key": [["id"]]}]}})
elif cmd == "read":
    catalog = json.load(open(arg("--catalog")))
    state = json.load(open(arg("--state"))) if arg("--state") else None
    assert [s["stream"]["name"] for s in catalog["streams"]] == ["items"]
"#;

struct Fake {
    _dir: tempfile::TempDir,
    source: Box<dyn Source>,
}

fn fake(read_body: &str, extra: Value) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let body: String = read_body.lines().map(|l| format!("    {l}\n")).collect();
    std::fs::write(dir.path().join("connector.py"), format!("{PRELUDE}{body}")).unwrap();
    let mut config = json!({
        "command": ["python3", "connector.py"],
        "config": {"api_key": "sk-secret-123"},
        // Each test's connector lives in its own temp folder: caching its catalog would only
        // leave entries in the user's cache folder.
        "catalog_cache": "0s",
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let ctx = ConnectorContext {
        project_dir: dir.path().to_path_buf(),
    };
    let source = AirbyteSourceFactory.build(&config, &ctx).unwrap();
    Fake { _dir: dir, source }
}

/// A fake whose `spec` runs `spec_body` first, and whose failed check says `check_message`
/// (Python string-literal content, concatenations allowed).
fn fake_with_spec(spec_body: &str, extra: Value, check_message: &str) -> Fake {
    let prelude = PRELUDE
        .replace(
            "if cmd == \"spec\":\n",
            &format!(
                "if cmd == \"spec\":\n    {}\n",
                spec_body.replace('\n', "\n    ")
            ),
        )
        .replace(
            "\"bad key \" + str(config.get(\"api_key\"))",
            &format!("'{check_message}'"),
        );
    assert_ne!(prelude, PRELUDE);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("connector.py"), prelude).unwrap();
    let mut config = json!({"command": ["python3", "connector.py"], "catalog_cache": "0s"});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let ctx = ConnectorContext {
        project_dir: dir.path().to_path_buf(),
    };
    let source = AirbyteSourceFactory.build(&config, &ctx).unwrap();
    Fake { _dir: dir, source }
}

/// What a read yielded: "rows:N" per batch, "cp:<checkpoint>", "est:N", and the error if any.
async fn read(
    f: &Fake,
    mode: SyncMode,
    state: Option<Value>,
) -> (Vec<String>, Vec<Checkpoint>, Option<String>) {
    let catalog = f.source.discover().await.unwrap();
    let stream = ConfiguredStream {
        descriptor: catalog.stream("items").unwrap().clone(),
        sync_mode: mode,
        write_mode: WriteMode::Append,
        cursor_field: Some("id".into()),
        primary_key: vec!["id".into()],
        pipeline_id: "test.product.stream".into(),
        follow: false,
    };
    let state = state.map(Checkpoint::new);
    let mut messages = f.source.read(&stream, state.as_ref()).await.unwrap();
    let (mut log, mut checkpoints, mut error) = (Vec::new(), Vec::new(), None);
    while let Some(m) = messages.next().await {
        match m {
            Ok(SourceMessage::Records(b)) => {
                let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
                log.push(format!("rows:{:?}", ids.values().to_vec()))
            }
            Ok(SourceMessage::Checkpoint(c)) => {
                log.push(format!("cp:{}", c.position()));
                checkpoints.push(c);
            }
            Ok(SourceMessage::Estimate { rows }) => log.push(format!("est:{rows}")),
            Ok(other) => log.push(format!("{other:?}")),
            Err(e) => {
                assert!(error.is_none(), "two errors");
                error = Some(e.to_string());
            }
        }
    }
    (log, checkpoints, error)
}

fn cp(state: Value, complete: bool) -> String {
    format!("cp:{}", json!({"state": state, "complete": complete}))
}

fn stream_state(v: i64) -> Value {
    json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": "items"}, "stream_state": {"cursor": v}}})
}

#[tokio::test]
async fn records_then_states_become_batches_then_checkpoints() {
    let f = fake(
        "emit({'type': 'TRACE', 'trace': {'type': 'ESTIMATE', 'estimate': {'name': 'items', 'type': 'STREAM', 'row_estimate': 5}}})\nfor i in range(1, 4): record(i)\nstate_msg(3)\nfor i in range(4, 6): record(i)\nstate_msg(5)",
        json!({}),
    );
    let (log, checkpoints, error) = read(&f, SyncMode::Incremental, None).await;
    assert_eq!(error, None);
    assert_eq!(
        log,
        [
            "est:5".to_string(),
            "rows:[1, 2, 3]".into(),
            cp(stream_state(3), false),
            "rows:[4, 5]".into(),
            cp(stream_state(5), false),
            cp(stream_state(5), true),
        ]
    );
    // Resuming hands the saved state back as a one-element array; the fake echoes it.
    let f = fake(
        "record(int(state[0]['stream']['stream_state']['cursor']) + 1)",
        json!({}),
    );
    let saved = checkpoints.last().unwrap().position().clone();
    let (log, _, error) = read(&f, SyncMode::Incremental, Some(saved.clone())).await;
    assert_eq!(error, None);
    // No new STATE: the final checkpoint keeps the state it started from.
    assert_eq!(log, ["rows:[6]".to_string(), cp(stream_state(5), true)]);
    // A completed full refresh starts over without state.
    let f = fake("record(0 if state is None else 99)", json!({}));
    let (log, _, _) = read(&f, SyncMode::FullRefresh, Some(saved)).await;
    assert_eq!(log, ["rows:[0]".to_string(), cp(Value::Null, true)]);
}

#[tokio::test]
async fn non_json_lines_are_skipped_up_to_the_threshold_and_broken_json_is_fatal() {
    let body = "record(1)\nstate_msg(1)\nrecord(2)\nprint('progress: 50% sk-secret-123')\nprint('progress: 100%')\nrecord(3)\nstate_msg(3)";
    let f = fake(body, json!({}));
    let (log, _, error) = read(&f, SyncMode::Incremental, None).await;
    assert_eq!(error, None);
    assert_eq!(
        log,
        [
            "rows:[1]".to_string(),
            cp(stream_state(1), false),
            "rows:[2, 3]".into(),
            cp(stream_state(3), false),
            cp(stream_state(3), true),
        ]
    );
    // Past the threshold the read fails after the last good state, naming the line.
    let f = fake(body, json!({"max_invalid_lines": 1}));
    let (log, _, error) = read(&f, SyncMode::Incremental, None).await;
    assert_eq!(log, ["rows:[1]".to_string(), cp(stream_state(1), false)]);
    assert_eq!(
        error.unwrap(),
        "Airbyte connector `python3 connector.py` read of stream `items`: stdout line 5 is the \
         2nd line that is not an Airbyte protocol message, more than `max_invalid_lines` (1) \
         allows: `progress: 100%`"
    );
    // A line that starts like JSON but does not parse may be a cut record: never skipped.
    let f = fake(
        "record(1)\nstate_msg(1)\nrecord(2)\nprint('{\"type\": \"RECORD\", \"record\": {\"stream\"')\nrecord(3)\nstate_msg(3)",
        json!({}),
    );
    let (log, _, error) = read(&f, SyncMode::Incremental, None).await;
    assert_eq!(log, ["rows:[1]".to_string(), cp(stream_state(1), false)]);
    let error = error.unwrap();
    assert!(
        error.starts_with("Airbyte connector `python3 connector.py` read of stream `items`: stdout line 4 is not an Airbyte protocol message (EOF while parsing"),
        "{error}"
    );
}

#[tokio::test]
async fn a_crash_mid_stream_names_the_exit_code_line_and_stderr() {
    let f = fake(
        "record(1)\nstate_msg(1)\nrecord(2)\nsys.stderr.write('Traceback: boom with sk-secret-123\\n')\nsys.exit(3)",
        json!({}),
    );
    let (log, _, error) = read(&f, SyncMode::Incremental, None).await;
    assert_eq!(log, ["rows:[1]".to_string(), cp(stream_state(1), false)]);
    assert_eq!(
        error.unwrap(),
        "Airbyte connector `python3 connector.py` read of stream `items`: exited with code 3 \
         after stdout line 3; stderr: Traceback: boom with ***"
    );
}

#[tokio::test]
async fn a_trace_error_is_the_failure_message_with_secrets_redacted() {
    let f = fake(
        "record(1)\nstate_msg(1)\nemit({'type': 'TRACE', 'trace': {'type': 'ERROR', 'emitted_at': 1, 'error': {'message': 'HTTP 401 for key sk-secret-123', 'failure_type': 'config_error'}}})\nsys.exit(1)",
        json!({}),
    );
    let (log, _, error) = read(&f, SyncMode::Incremental, None).await;
    assert_eq!(log, ["rows:[1]".to_string(), cp(stream_state(1), false)]);
    assert_eq!(
        error.unwrap(),
        "Airbyte connector `python3 connector.py` read of stream `items`: exited with code 1 \
         after stdout line 3; its last error (stdout line 3): HTTP 401 for key ***"
    );
    // The CDK's generic message comes with the internal message and the end of the trace.
    let f = fake(
        "emit({'type': 'TRACE', 'trace': {'type': 'ERROR', 'emitted_at': 1, 'error': {'message': 'Something went wrong in the connector. See the logs for more details.', 'internal_message': \"'base_url'\", 'stack_trace': 'Traceback (most recent call last):\\n  File \"a.py\", line 1, in <module>\\n  File \"b.py\", line 7, in read\\n    url = config[\"base_url\"]\\nKeyError: \\'base_url\\'\\n', 'failure_type': 'system_error'}}})\nsys.exit(1)",
        json!({}),
    );
    let (_, _, error) = read(&f, SyncMode::Incremental, None).await;
    assert_eq!(
        error.unwrap(),
        "Airbyte connector `python3 connector.py` read of stream `items`: exited with code 1 \
         after stdout line 1; its last error (stdout line 1): Something went wrong in the \
         connector. See the logs for more details. (internal message: 'base_url') [stack trace, \
         last lines: File \"b.py\", line 7, in read | url = config[\"base_url\"] | KeyError: \
         'base_url']"
    );
    // A TRACE error with a clean exit fails the read too.
    let f = fake("record(1)\nemit({'type': 'TRACE', 'trace': {'type': 'ERROR', 'error': {'message': 'partial'}}})", json!({}));
    let (log, _, error) = read(&f, SyncMode::Incremental, None).await;
    assert!(log.is_empty(), "{log:?}");
    assert!(error
        .unwrap()
        .ends_with("reported an error; its last error (stdout line 2): partial"));
}

#[tokio::test]
async fn state_before_records_unknown_types_and_fields_are_fine() {
    let f = fake(
        "state_msg(0)\nemit({'type': 'CONTROL', 'control': {'type': 'CONNECTOR_CONFIG'}})\nemit({'type': 'FUTURE_THING', 'x': 1})\nemit({'type': 'TRACE', 'trace': {'type': 'ANALYTICS', 'analytics': {}}})\nemit({'type': 'TRACE', 'trace': {'type': 'STREAM_STATUS', 'stream_status': {'stream_descriptor': {'name': 'items'}, 'status': 'COMPLETE'}}})\nemit({'type': 'LOG', 'log': {'level': 'WARN', 'message': 'hm'}, 'new_field': 1})\nemit({'type': 'RECORD', 'record': {'stream': 'items', 'data': {'id': 7, 'surprise': {'a': 1}}, 'emitted_at': 1, 'meta': {}}})\nrecord(8, tags=['x', 'y'])",
        json!({}),
    );
    let (log, checkpoints, error) = read(&f, SyncMode::Incremental, None).await;
    assert_eq!(error, None);
    assert_eq!(
        log,
        [
            cp(stream_state(0), false),
            "rows:[7, 8]".to_string(),
            cp(stream_state(0), true)
        ]
    );
    assert_eq!(checkpoints.len(), 2);
}

#[tokio::test]
async fn extra_fields_and_json_text_columns_keep_every_value() {
    let f = fake(
        "emit({'type': 'RECORD', 'record': {'stream': 'items', 'data': {'id': 7, 'surprise': {'a': 1}, 'tags': [1, {'b': None}]}}})",
        json!({}),
    );
    let catalog = f.source.discover().await.unwrap();
    let stream = ConfiguredStream {
        descriptor: catalog.stream("items").unwrap().clone(),
        sync_mode: SyncMode::FullRefresh,
        write_mode: WriteMode::Overwrite,
        cursor_field: None,
        primary_key: vec![],
        pipeline_id: "test.product.stream".into(),
        follow: false,
    };
    let mut messages = f.source.read(&stream, None).await.unwrap();
    let Some(Ok(SourceMessage::Records(batch))) = messages.next().await else {
        panic!("a batch first")
    };
    let text = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_string::<i32>()
            .value(0)
            .to_string()
    };
    assert_eq!(text("tags"), r#"[1, {"b": null}]"#);
    assert_eq!(text("_airbyte_extra"), r#"{"surprise":{"a": 1}}"#);
    assert!(batch.column_by_name("name").unwrap().is_null(0));
}

#[tokio::test]
async fn a_huge_record_is_read_whole() {
    let f = fake("record(1, name='x' * 20000000)\nstate_msg(1)", json!({}));
    let catalog = f.source.discover().await.unwrap();
    let stream = ConfiguredStream {
        descriptor: catalog.stream("items").unwrap().clone(),
        sync_mode: SyncMode::Incremental,
        write_mode: WriteMode::Append,
        cursor_field: None,
        primary_key: vec![],
        pipeline_id: "test.product.stream".into(),
        follow: false,
    };
    let mut messages = f.source.read(&stream, None).await.unwrap();
    let Some(Ok(SourceMessage::Records(batch))) = messages.next().await else {
        panic!("a batch first")
    };
    assert_eq!(
        batch
            .column_by_name("name")
            .unwrap()
            .as_string::<i32>()
            .value(0)
            .len(),
        20_000_000
    );
}

#[tokio::test]
async fn global_and_legacy_states_round_trip() {
    let global = json!({"type": "GLOBAL", "global": {"shared_state": {"lsn": 42}, "stream_states": [{"stream_descriptor": {"name": "items"}, "stream_state": {"c": 1}}]}});
    let f = fake(
        &format!("record(1)\nemit({{'type': 'STATE', 'state': {global}}})"),
        json!({}),
    );
    let (log, checkpoints, error) = read(&f, SyncMode::Incremental, None).await;
    assert_eq!(error, None);
    assert_eq!(
        log,
        [
            "rows:[1]".to_string(),
            cp(global.clone(), false),
            cp(global.clone(), true)
        ]
    );
    // Given back as a one-element array.
    let f = fake(
        "record(state[0]['global']['shared_state']['lsn'])",
        json!({}),
    );
    let (log, _, _) = read(
        &f,
        SyncMode::Incremental,
        Some(checkpoints[1].position().clone()),
    )
    .await;
    assert_eq!(log[0], "rows:[42]");

    // LEGACY: a STATE without `type`; given back as the bare `data` object.
    let f = fake(
        "record(1)\nemit({'type': 'STATE', 'state': {'data': {'items': {'cursor': 9}}}})",
        json!({}),
    );
    let (log, checkpoints, _) = read(&f, SyncMode::Incremental, None).await;
    let legacy = json!({"type": "LEGACY", "data": {"items": {"cursor": 9}}});
    assert_eq!(log[1], cp(legacy, false));
    let f = fake("record(state['items']['cursor'])", json!({}));
    let (log, _, _) = read(
        &f,
        SyncMode::Incremental,
        Some(checkpoints[1].position().clone()),
    )
    .await;
    assert_eq!(log[0], "rows:[9]");
    let saved: AirbyteCheckpoint = checkpoints[1].decode().unwrap();
    assert!(saved.complete);
}

/// The interpreter itself, not pyenv's shim: the shim is a shell script that runs pyenv
/// first, which on a loaded machine takes seconds before the connector prints its first line.
fn python_executable() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn a_stalled_connector_is_killed_after_the_timeout() {
    // The watchdog's clock runs from the start, so the connector's start-up counts against
    // the timeout: the real interpreter and a timeout well above its start-up under load keep
    // the three lines before the stall on time. The stall itself is a sleep the watchdog ends.
    let python = python_executable();
    let f = fake(
        "record(1)\nstate_msg(1)\nrecord(2)\ntime.sleep(600)\nstate_msg(2)",
        json!({"timeout": "4s", "command": [&python, "connector.py"]}),
    );
    let interpreter = Path::new(&python).file_name().unwrap().to_string_lossy();
    let start = Instant::now();
    let (log, _, error) = read(&f, SyncMode::Incremental, None).await;
    assert!(
        start.elapsed() < Duration::from_secs(300),
        "killed long before the connector's own 600s: {:?}",
        start.elapsed()
    );
    assert_eq!(log, ["rows:[1]".to_string(), cp(stream_state(1), false)]);
    assert_eq!(
        error.unwrap(),
        format!(
            "Airbyte connector `{interpreter} connector.py` read of stream `items`: printed \
             nothing for 4s after stdout line 3 and was killed; raise `timeout` if it is just slow"
        )
    );
}

#[tokio::test]
async fn a_record_that_does_not_fit_names_its_line_and_field_with_off_schema_fail() {
    let f = fake(
        "record(1)\nemit({'type': 'RECORD', 'record': {'stream': 'items', 'data': {'id': 'seven'}}})\nstate_msg(2)",
        json!({"off_schema": "fail"}),
    );
    let (log, _, error) = read(&f, SyncMode::Incremental, None).await;
    assert!(log.is_empty(), "{log:?}");
    let error = error.unwrap();
    assert!(
        error.contains(
            "read of stream `items`: stdout line 2: a record does not fit the stream's schema: \
             field `id`: "
        ) && error.ends_with(
            "(set the source's `off_schema: null` to write such values as NULL, recorded in \
             `_airbyte_meta`)"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn off_schema_values_are_written_as_null_recorded_per_row_and_counted() {
    let f = fake(
        "record(1)\nemit({'type': 'RECORD', 'record': {'stream': 'items', 'data': {'id': 'seven', 'name': 'x'}}})\nrecord(3)\nstate_msg(3)",
        json!({}),
    );
    let catalog = f.source.discover().await.unwrap();
    let stream = ConfiguredStream {
        descriptor: catalog.stream("items").unwrap().clone(),
        sync_mode: SyncMode::Incremental,
        write_mode: WriteMode::Append,
        cursor_field: None,
        primary_key: vec![],
        pipeline_id: "test.product.stream".into(),
        follow: false,
    };
    let messages: Vec<SourceMessage> = f
        .source
        .read(&stream, None)
        .await
        .unwrap()
        .map(|m| m.unwrap())
        .collect()
        .await;
    let SourceMessage::Records(batch) = &messages[0] else {
        panic!("{messages:?}")
    };
    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(
        (0..3)
            .map(|i| ids.is_valid(i).then(|| ids.value(i)))
            .collect::<Vec<_>>(),
        [Some(1), None, Some(3)]
    );
    let names = batch.column_by_name("name").unwrap().as_string::<i32>();
    assert_eq!(names.value(1), "x");
    let meta = batch
        .column_by_name("_airbyte_meta")
        .unwrap()
        .as_string::<i32>();
    assert!(meta.is_null(0) && meta.is_null(2));
    assert_eq!(
        serde_json::from_str::<Value>(meta.value(1)).unwrap(),
        json!({"changes": [{"field": "id", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}]})
    );
    assert!(
        matches!(messages[1], SourceMessage::OffSchema { values: 1 }),
        "{messages:?}"
    );
    assert!(matches!(messages[2], SourceMessage::Checkpoint(_)));
}

#[tokio::test]
async fn a_full_refresh_the_connector_cannot_resume_checkpoints_only_at_its_end() {
    // The fake's stream reads incrementally and is not marked `is_resumable`.
    let body = "record(1)\nstate_msg(1)\nrecord(2)\nstate_msg(2)";
    let f = fake(body, json!({}));
    let (log, _, error) = read(&f, SyncMode::FullRefresh, None).await;
    assert_eq!(error, None);
    assert_eq!(
        log,
        [
            "rows:[1]".to_string(),
            "rows:[2]".into(),
            cp(stream_state(2), true)
        ]
    );
    // An interrupted one (left by an earlier weft) is read from scratch in append mode …
    let interrupted = json!({"state": stream_state(1), "complete": false});
    let f = fake("record(0 if state is None else 99)", json!({}));
    let (log, _, _) = read(&f, SyncMode::FullRefresh, Some(interrupted.clone())).await;
    assert_eq!(log, ["rows:[0]".to_string(), cp(Value::Null, true)]);
    // … and refused in overwrite mode, where finishing it would publish rows twice.
    let catalog = f.source.discover().await.unwrap();
    let stream = ConfiguredStream {
        descriptor: catalog.stream("items").unwrap().clone(),
        sync_mode: SyncMode::FullRefresh,
        write_mode: WriteMode::Overwrite,
        cursor_field: None,
        primary_key: vec![],
        pipeline_id: "sales.shop.items".into(),
        follow: false,
    };
    let Err(err) = f
        .source
        .read(&stream, Some(&Checkpoint::new(interrupted.clone())))
        .await
    else {
        panic!("an interrupted overwrite must not resume")
    };
    assert_eq!(
        err.to_string(),
        "stream `items`: an interrupted full refresh is pending in the product store, but the \
         connector cannot resume it (the stream is not resumable), so finishing it would \
         publish rows twice; run `weft sync reset sales/shop/items` to read it again from scratch"
    );
    // A stream declared resumable resumes, with checkpoints as it goes.
    let f = fake(
        "record(int(state[0]['stream']['stream_state']['cursor']) + 1)\nstate_msg(2)",
        json!({"streams": {"items": {"resumable": true}}}),
    );
    let (log, _, _) = read(&f, SyncMode::FullRefresh, Some(interrupted)).await;
    assert_eq!(
        log,
        [
            "rows:[2]".to_string(),
            cp(stream_state(2), false),
            cp(stream_state(2), true)
        ]
    );
}

#[tokio::test]
async fn helpers_a_connector_leaves_running_die_with_its_process_group() {
    let f = fake(
        "import subprocess\np = subprocess.Popen(['sleep', '300'])\nopen('helper.pid', 'w').write(str(p.pid))\nrecord(1)\nstate_msg(1)",
        json!({}),
    );
    let (log, _, error) = read(&f, SyncMode::Incremental, None).await;
    assert_eq!(error, None, "{log:?}");
    let pid: i32 = std::fs::read_to_string(f._dir.path().join("helper.pid"))
        .unwrap()
        .parse()
        .unwrap();
    // Killed by the group kill; reaped by init once its parent (the connector) is gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
    {
        assert!(
            Instant::now() < deadline,
            "the connector's helper {pid} still runs"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn check_spec_and_missing_executables() {
    let f = fake("", json!({}));
    f.source.check().await.unwrap();
    let bad = fake(
        "",
        json!({"config": {"api_key": "sk-secret-123", "ok": false}}),
    );
    assert_eq!(
        bad.source.check().await.unwrap_err().to_string(),
        "Airbyte connector `python3 connector.py` check failed: bad key ***"
    );
    // Secrets by the spec: `token` is marked `airbyte_secret`, `host` is not (and stays
    // readable), `api_key` looks secret whatever the spec says.
    let spec = "emit({'type': 'SPEC', 'spec': {'connectionSpecification': {'properties': {'token': {'type': 'string', 'airbyte_secret': True}, 'host': {'type': 'string'}}}}})\nsys.exit(0)";
    let marked = fake_with_spec(
        spec,
        json!({"config": {"api_key": "sk-secret-123", "token": "tok-777777", "host": "db.example.com", "ok": false}}),
        "bad key ' + str(config.get('api_key')) + ' token ' + config['token'] + ' at ' + config['host'] + '",
    );
    assert_eq!(
        marked.source.check().await.unwrap_err().to_string(),
        "Airbyte connector `python3 connector.py` check failed: bad key *** token *** at db.example.com"
    );
    let ctx = ConnectorContext {
        project_dir: Path::new("/").to_path_buf(),
    };
    let source = AirbyteSourceFactory
        .build(&json!({"command": ["no-such-connector-xyz"]}), &ctx)
        .unwrap();
    assert_eq!(
        source.check().await.unwrap_err().to_string(),
        "cannot run the Airbyte connector `no-such-connector-xyz`: No such file or directory (os \
         error 2); check that `command` names an installed executable"
    );
}
