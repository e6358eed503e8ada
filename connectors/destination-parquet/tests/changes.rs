//! CDC change batches in the lake: the changelog (`append`) and the current state
//! (`append_dedup`), on real files read back with the parquet crate's own reader.
//!
//! The throughput test is ignored by default (timing); run it with
//! `cargo test -p weft-destination-parquet --release --test changes -- --ignored --nocapture`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray, UInt64Array,
    UInt8Array,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use weft_conformance::TestStream;
use weft_core::{
    ChangeBatch, ChangeOp, Checkpoint, ConfiguredStream, ConnectorContext, ConnectorError,
    Destination, DestinationFactory, StreamTarget, StreamWriter, SyncMode, WriteMode,
};
use weft_destination_parquet::{committed_files, read_manifest, stream_dir, ParquetLakeFactory};

fn lake(root: &Path) -> Box<dyn Destination> {
    let ctx = ConnectorContext {
        project_dir: PathBuf::from("/nonexistent-project"),
    };
    ParquetLakeFactory
        .build(&json!({ "path": root }), &ctx)
        .unwrap()
}

fn target(run: &str) -> StreamTarget {
    TestStream::new("sales", "crm", "customers")
        .run(run)
        .target()
}

/// Where the lake stages a stream's uncommitted files (beside the stream's symlink).
fn staging_of(dir: &Path) -> PathBuf {
    let name = dir.file_name().unwrap();
    dir.parent()
        .unwrap()
        .join("_weft")
        .join(name)
        .join("staging")
}

fn dir_of(root: &Path) -> PathBuf {
    let t = target("x");
    stream_dir(root, &t.domain, &t.product, &t.stream)
}

/// `id` (key), `name`, `doc` (a large text column the source may not resend).
fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("doc", DataType::Utf8, true),
    ]))
}

fn schema_with_email() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("doc", DataType::Utf8, true),
        Field::new("email", DataType::Utf8, true),
    ]))
}

fn configured(schema: &SchemaRef, mode: WriteMode) -> ConfiguredStream {
    TestStream::new("sales", "crm", "customers")
        .schema(schema.clone())
        .sync(SyncMode::Cdc)
        .write(mode)
        .key(["id"])
        .configured()
}

async fn open(root: &Path, mode: WriteMode, run: &str) -> Box<dyn StreamWriter> {
    open_with(root, mode, run, schema()).await
}

async fn open_with(
    root: &Path,
    mode: WriteMode,
    run: &str,
    schema: SchemaRef,
) -> Box<dyn StreamWriter> {
    lake(root)
        .open(&target(run), &configured(&schema, mode), schema)
        .await
        .unwrap()
}

fn cp(n: i64) -> Checkpoint {
    Checkpoint::new(json!({ "lsn": n }))
}

/// One change: op, key, name, doc, position, ordinal; `doc` unchanged when `doc_unchanged`.
#[derive(Clone)]
struct C {
    op: ChangeOp,
    id: Option<i64>,
    name: Option<&'static str>,
    doc: Option<String>,
    pos: u64,
    ord: u64,
    doc_unchanged: bool,
}

fn ins(id: i64, name: &'static str, doc: &str, pos: u64, ord: u64) -> C {
    C {
        op: ChangeOp::Insert,
        id: Some(id),
        name: Some(name),
        doc: Some(doc.into()),
        pos,
        ord,
        doc_unchanged: false,
    }
}

fn upd(id: i64, name: &'static str, doc: &str, pos: u64, ord: u64) -> C {
    C {
        op: ChangeOp::Update,
        ..ins(id, name, doc, pos, ord)
    }
}

/// An update that does not resend `doc`.
fn upd_keep_doc(id: i64, name: &'static str, pos: u64, ord: u64) -> C {
    C {
        op: ChangeOp::Update,
        doc: None,
        doc_unchanged: true,
        ..ins(id, name, "", pos, ord)
    }
}

fn del(id: i64, pos: u64, ord: u64) -> C {
    C {
        op: ChangeOp::Delete,
        id: Some(id),
        name: None,
        doc: None,
        pos,
        ord,
        doc_unchanged: false,
    }
}

fn trunc(pos: u64, ord: u64) -> C {
    C {
        op: ChangeOp::Truncate,
        id: None,
        ..del(0, pos, ord)
    }
}

/// Commit time of a change: derived from its position, so tests can check it.
fn micros(pos: u64, ord: u64) -> i64 {
    1_700_000_000_000_000 + pos.wrapping_mul(1000).wrapping_add(ord) as i64 % 1_000_000_000_000
}

/// The rows of a change batch; the rows' `id` column is nullable (truncate rows have no key).
fn changes(cs: &[C]) -> ChangeBatch {
    let rows_schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("doc", DataType::Utf8, true),
    ]));
    changes_in(rows_schema, cs, None)
}

fn changes_in(schema: SchemaRef, cs: &[C], email: Option<&[Option<&str>]>) -> ChangeBatch {
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(cs.iter().map(|c| c.id).collect::<Int64Array>()),
        Arc::new(cs.iter().map(|c| c.name).collect::<StringArray>()),
        Arc::new(cs.iter().map(|c| c.doc.clone()).collect::<StringArray>()),
    ];
    if let Some(email) = email {
        columns.push(Arc::new(email.iter().copied().collect::<StringArray>()));
    }
    let mut unchanged = BTreeMap::new();
    if cs.iter().any(|c| c.doc_unchanged) {
        unchanged.insert(
            "doc".to_string(),
            cs.iter()
                .map(|c| Some(c.doc_unchanged))
                .collect::<BooleanArray>(),
        );
    }
    ChangeBatch {
        rows: RecordBatch::try_new(schema, columns).unwrap(),
        ops: UInt8Array::from(cs.iter().map(|c| c.op as u8).collect::<Vec<_>>()),
        positions: UInt64Array::from(cs.iter().map(|c| c.pos).collect::<Vec<_>>()),
        ordinals: UInt64Array::from(cs.iter().map(|c| c.ord).collect::<Vec<_>>()),
        commit_micros: cs.iter().map(|c| micros(c.pos, c.ord)).collect(),
        unchanged,
    }
}

/// A row read back from the lake, by column name.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: Option<i64>,
    name: Option<String>,
    doc: Option<String>,
    email: Option<String>,
    op: String,
    pos: i64,
    ord: i64,
    ts: Option<i64>,
    unchanged: Option<Vec<String>>,
}

/// Reads every visible file with the parquet crate's reader (not the writer's code).
fn read_visible(root: &Path) -> Vec<Row> {
    read_files(&committed_files(&dir_of(root)).unwrap())
}

fn read_files(files: &[PathBuf]) -> Vec<Row> {
    let mut out = Vec::new();
    for path in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let text = |name: &str, i: usize| {
                batch.column_by_name(name).and_then(|c| {
                    let c = c.as_string::<i32>();
                    c.is_valid(i).then(|| c.value(i).to_string())
                })
            };
            let int = |name: &str, i: usize| {
                let c = batch.column_by_name(name).unwrap();
                let c = c.as_primitive::<Int64Type>();
                c.is_valid(i).then(|| c.value(i))
            };
            let ts = batch.column_by_name("_weft_commit_ts").unwrap();
            assert_eq!(
                ts.data_type(),
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            );
            let ts = ts.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            let unchanged = batch.column_by_name("_weft_unchanged").unwrap();
            let unchanged = unchanged.as_list::<i32>();
            for i in 0..batch.num_rows() {
                out.push(Row {
                    id: int("id", i),
                    name: text("name", i),
                    doc: text("doc", i),
                    email: text("email", i),
                    op: text("_weft_op", i).unwrap(),
                    pos: int("_weft_position", i).unwrap(),
                    ord: int("_weft_ordinal", i).unwrap(),
                    ts: ts.is_valid(i).then(|| ts.value(i)),
                    unchanged: unchanged.is_valid(i).then(|| {
                        let names = unchanged.value(i);
                        names
                            .as_string::<i32>()
                            .iter()
                            .map(|s| s.unwrap().to_string())
                            .collect()
                    }),
                });
            }
        }
    }
    out
}

/// The current state as (id, name, doc), sorted by id; checks one row per key.
fn state(root: &Path) -> Vec<(i64, String, Option<String>)> {
    let mut rows: Vec<_> = read_visible(root)
        .into_iter()
        .map(|r| {
            assert!(r.op == "insert" || r.op == "update", "{r:?}");
            (r.id.unwrap(), r.name.unwrap_or_default(), r.doc)
        })
        .collect();
    rows.sort();
    let mut keys: Vec<_> = rows.iter().map(|r| r.0).collect();
    keys.dedup();
    assert_eq!(keys.len(), rows.len(), "two rows for one key: {rows:?}");
    rows
}

fn st(rows: &[(i64, &str, &str)]) -> Vec<(i64, String, Option<String>)> {
    rows.iter()
        .map(|(i, n, d)| (*i, n.to_string(), Some(d.to_string())))
        .collect()
}

/// Stream-folder files that are data files (to check nothing is left behind).
fn data_files(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir_of(root))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    out.sort();
    out
}

fn staged_files(root: &Path) -> usize {
    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| {
                        let p = e.unwrap().path();
                        if p.is_dir() {
                            walk(&p)
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&staging_of(&dir_of(root)))
}

fn assert_clean(root: &Path) {
    let manifest = read_manifest(&dir_of(root)).unwrap().unwrap();
    assert_eq!(manifest.pending, None);
    let listed: Vec<String> = {
        let mut l: Vec<_> = manifest.files.iter().map(|f| f.path.clone()).collect();
        l.sort();
        l
    };
    assert_eq!(data_files(root), listed, "unlisted files left behind");
    assert_eq!(staged_files(root), 0, "staging not empty");
}

// ---------------------------------------------------------------------------------------------
// Changelog (append)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn changelog_stores_every_change_with_its_op_position_ordinal_and_commit_time() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::Append, "r1").await;
    assert!(w.stores_checkpoints());
    assert_eq!(w.committed_checkpoint(), None);
    w.write_changes(changes(&[
        ins(1, "ann", "doc-1", 100, 0),
        ins(2, "bob", "doc-2", 100, 1),
        upd_keep_doc(1, "anne", 200, 0),
    ]))
    .await
    .unwrap();
    // Nothing visible before the commit.
    assert!(committed_files(&dir_of(root)).unwrap().is_empty());
    w.commit(&cp(200)).await.unwrap();
    let first = read_visible(root);
    assert_eq!(first.len(), 3);

    w.write_changes(changes(&[
        del(2, 300, 0),
        trunc(400, 0),
        ins(3, "cy", "doc-3", 400, 1),
    ]))
    .await
    .unwrap();
    w.finish(&cp(400)).await.unwrap();
    drop(w);

    let got = read_visible(root);
    let expect = [
        (Some(1), Some("ann"), Some("doc-1"), "insert", 100, 0, None),
        (Some(2), Some("bob"), Some("doc-2"), "insert", 100, 1, None),
        (
            Some(1),
            Some("anne"),
            None,
            "update",
            200,
            0,
            Some(vec!["doc".to_string()]),
        ),
        (Some(2), None, None, "delete", 300, 0, None),
        (None, None, None, "truncate", 400, 0, None),
        (Some(3), Some("cy"), Some("doc-3"), "insert", 400, 1, None),
    ];
    assert_eq!(got.len(), expect.len());
    for (row, (id, name, doc, op, pos, ord, unchanged)) in got.iter().zip(expect) {
        assert_eq!(row.id, id, "{row:?}");
        assert_eq!(row.name.as_deref(), name, "{row:?}");
        assert_eq!(row.doc.as_deref(), doc, "{row:?}");
        assert_eq!(row.op, op);
        assert_eq!(row.pos, pos);
        assert_eq!(row.ord, ord);
        assert_eq!(row.ts, Some(micros(pos as u64, ord as u64)));
        assert_eq!(row.unchanged, unchanged, "{row:?}");
    }

    // One file per commit, the checkpoint with them, and the stored schema is documented.
    let manifest = read_manifest(&dir_of(root)).unwrap().unwrap();
    assert_eq!(manifest.files.len(), 2);
    assert_eq!(manifest.checkpoint, Some(cp(400)));
    let fields: Vec<(String, String, bool)> = manifest
        .fields
        .iter()
        .map(|f| (f.name.clone(), f.data_type.clone(), f.nullable))
        .collect();
    let f = |n: &str, t: &str, null: bool| (n.to_string(), t.to_string(), null);
    assert_eq!(
        fields,
        vec![
            f("id", "Int64", true),
            f("name", "Utf8", true),
            f("doc", "Utf8", true),
            f("_weft_op", "Utf8", false),
            f("_weft_position", "Int64", false),
            f("_weft_ordinal", "Int64", false),
            f("_weft_commit_ts", "Timestamp(µs, \"UTC\")", true),
            f("_weft_unchanged", "List(Utf8)", true),
        ]
    );
    assert_clean(root);

    // A later run appends to the changelog.
    let mut w = open(root, WriteMode::Append, "r2").await;
    assert_eq!(w.committed_checkpoint(), Some(cp(400)));
    w.write_changes(changes(&[upd(3, "cyd", "doc-3b", 500, 0)]))
        .await
        .unwrap();
    w.finish(&cp(500)).await.unwrap();
    assert_eq!(read_visible(root).len(), 7);
}

#[tokio::test]
async fn a_position_above_i64_max_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = open(tmp.path(), WriteMode::Append, "r1").await;
    let err = w
        .write_changes(changes(&[ins(1, "a", "d", u64::MAX, 0)]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("stream `customers`") && err.contains("position"),
        "{err}"
    );
}

#[tokio::test]
async fn plain_rows_on_a_cdc_stream_and_changes_on_a_plain_stream_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = open(tmp.path(), WriteMode::Append, "r1").await;
    let plain = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(StringArray::from(vec!["a"])),
            Arc::new(StringArray::from(vec!["d"])),
        ],
    )
    .unwrap();
    let err = w.write(plain).await.unwrap_err().to_string();
    assert!(err.contains("change batches"), "{err}");
    drop(w);

    let s = schema();
    let mut stream = configured(&s, WriteMode::Append);
    stream.sync_mode = SyncMode::Incremental;
    let mut w = lake(tmp.path())
        .open(&target("r2"), &stream, s)
        .await
        .unwrap();
    let err = w
        .write_changes(changes(&[ins(1, "a", "d", 1, 0)]))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Unsupported(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Current state (append_dedup)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn current_state_applies_snapshot_updates_and_deletes_at_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::AppendDedup, "r1").await;
    // The snapshot arrives as inserts.
    w.write_changes(changes(&[
        ins(1, "ann", "d1", 10, 0),
        ins(2, "bob", "d2", 10, 1),
        ins(3, "cy", "d3", 10, 2),
        ins(4, "dee", "d4", 10, 3),
    ]))
    .await
    .unwrap();
    w.commit(&cp(10)).await.unwrap();
    // Commits are durable but not visible.
    assert!(committed_files(&dir_of(root)).unwrap().is_empty());
    w.write_changes(changes(&[
        upd(2, "bobby", "d2b", 20, 0),
        del(3, 20, 1),
        upd(2, "robert", "d2c", 30, 0),
    ]))
    .await
    .unwrap();
    w.finish(&cp(30)).await.unwrap();
    drop(w);
    assert_eq!(
        state(root),
        st(&[(1, "ann", "d1"), (2, "robert", "d2c"), (4, "dee", "d4")])
    );
    // The change columns are the key's latest change.
    let rows = read_visible(root);
    let two = rows.iter().find(|r| r.id == Some(2)).unwrap();
    assert_eq!((two.op.as_str(), two.pos, two.ord), ("update", 30, 0));
    assert_eq!(two.ts, Some(micros(30, 0)));
    assert_eq!(two.unchanged, None);
    let one = rows.iter().find(|r| r.id == Some(1)).unwrap();
    assert_eq!((one.op.as_str(), one.pos, one.ord), ("insert", 10, 0));
    assert_eq!(
        read_manifest(&dir_of(root)).unwrap().unwrap().checkpoint,
        Some(cp(30))
    );
    assert_clean(root);

    // A second run: published rows are older than every new change.
    let mut w = open(root, WriteMode::AppendDedup, "r2").await;
    assert_eq!(w.committed_checkpoint(), Some(cp(30)));
    w.write_changes(changes(&[del(1, 40, 0), upd(4, "dora", "d4b", 40, 1)]))
        .await
        .unwrap();
    w.finish(&cp(40)).await.unwrap();
    assert_eq!(state(root), st(&[(2, "robert", "d2c"), (4, "dora", "d4b")]));
    assert_clean(root);
}

#[tokio::test]
async fn a_primary_key_change_moves_the_row() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::AppendDedup, "r1").await;
    w.write_changes(changes(&[
        ins(1, "ann", "d1", 10, 0),
        ins(2, "bob", "d2", 10, 1),
    ]))
    .await
    .unwrap();
    w.finish(&cp(10)).await.unwrap();
    drop(w);

    // Key 1 becomes key 7: a delete of the old key then an insert of the new row.
    let mut w = open(root, WriteMode::AppendDedup, "r2").await;
    w.write_changes(changes(&[del(1, 20, 0), ins(7, "ann", "d1", 20, 1)]))
        .await
        .unwrap();
    w.finish(&cp(20)).await.unwrap();
    assert_eq!(state(root), st(&[(2, "bob", "d2"), (7, "ann", "d1")]));
}

#[tokio::test]
async fn insert_update_delete_of_a_key_within_a_batch_and_across_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::AppendDedup, "r1").await;
    // Within one batch.
    w.write_changes(changes(&[
        ins(1, "a", "d", 10, 0),
        upd(1, "b", "d", 10, 1),
        del(1, 10, 2),
        ins(2, "keep", "k", 10, 3),
    ]))
    .await
    .unwrap();
    w.commit(&cp(10)).await.unwrap();
    // Across commits.
    w.write_changes(changes(&[ins(3, "a", "d", 20, 0)]))
        .await
        .unwrap();
    w.commit(&cp(20)).await.unwrap();
    w.write_changes(changes(&[upd(3, "b", "d", 30, 0)]))
        .await
        .unwrap();
    w.commit(&cp(30)).await.unwrap();
    w.write_changes(changes(&[del(3, 40, 0)])).await.unwrap();
    w.finish(&cp(40)).await.unwrap();
    assert_eq!(state(root), st(&[(2, "keep", "k")]));
    assert_clean(root);
}

#[tokio::test]
async fn a_deleted_key_can_be_inserted_again() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::AppendDedup, "r1").await;
    w.write_changes(changes(&[
        ins(1, "first", "d1", 10, 0),
        ins(5, "x", "x", 10, 1),
    ]))
    .await
    .unwrap();
    w.finish(&cp(10)).await.unwrap();
    drop(w);
    let mut w = open(root, WriteMode::AppendDedup, "r2").await;
    w.write_changes(changes(&[del(1, 20, 0)])).await.unwrap();
    w.commit(&cp(20)).await.unwrap();
    w.write_changes(changes(&[
        ins(1, "second", "d1b", 30, 0),
        del(5, 30, 1),
        ins(5, "again", "y", 31, 0),
    ]))
    .await
    .unwrap();
    w.finish(&cp(31)).await.unwrap();
    assert_eq!(state(root), st(&[(1, "second", "d1b"), (5, "again", "y")]));
}

#[tokio::test]
async fn a_replayed_older_change_does_not_win() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::AppendDedup, "r1").await;
    w.write_changes(changes(&[
        ins(1, "a", "d", 10, 0),
        upd(1, "b", "d", 20, 0),
        // Arrives late but is older than the key's latest change.
        upd(1, "stale", "d", 15, 0),
    ]))
    .await
    .unwrap();
    w.finish(&cp(20)).await.unwrap();
    assert_eq!(state(root), st(&[(1, "b", "d")]));
}

#[tokio::test]
async fn truncate_mid_batch_removes_earlier_rows_including_published_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::AppendDedup, "r1").await;
    w.write_changes(changes(&[
        ins(1, "a", "d1", 10, 0),
        ins(2, "b", "d2", 10, 1),
    ]))
    .await
    .unwrap();
    w.finish(&cp(10)).await.unwrap();
    drop(w);

    let mut w = open(root, WriteMode::AppendDedup, "r2").await;
    w.write_changes(changes(&[
        ins(3, "c", "d3", 20, 0),
        upd(1, "a2", "d1b", 20, 1),
    ]))
    .await
    .unwrap();
    w.commit(&cp(20)).await.unwrap();
    w.write_changes(changes(&[
        ins(4, "d", "d4", 30, 0),
        trunc(30, 1),
        ins(5, "e", "d5", 30, 2),
        ins(1, "a3", "d1c", 30, 3),
        // Changed before the truncate but not after: gone.
        // (key 4 above, keys 2 and 3 from before)
    ]))
    .await
    .unwrap();
    w.commit(&cp(30)).await.unwrap();
    w.write_changes(changes(&[upd(5, "e2", "d5b", 40, 0)]))
        .await
        .unwrap();
    w.finish(&cp(40)).await.unwrap();
    assert_eq!(state(root), st(&[(1, "a3", "d1c"), (5, "e2", "d5b")]));
    assert_clean(root);
}

#[tokio::test]
async fn unchanged_cells_keep_the_stored_value() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let big = |c: char| c.to_string().repeat(100_000);
    let mut w = open(root, WriteMode::AppendDedup, "r1").await;
    w.write_changes(changes(&[
        ins(1, "a", &big('x'), 10, 0),
        ins(2, "b", &big('y'), 10, 1),
        ins(3, "c", &big('z'), 10, 2),
        ins(4, "d", "small", 10, 3),
    ]))
    .await
    .unwrap();
    w.finish(&cp(10)).await.unwrap();
    drop(w);

    let mut w = open(root, WriteMode::AppendDedup, "r2").await;
    w.write_changes(changes(&[
        // From the published files of the earlier run.
        upd_keep_doc(1, "a2", 20, 0),
        // From an earlier change of this run (same batch)…
        upd(2, "b2", &big('Y'), 20, 1),
        upd_keep_doc(2, "b3", 20, 2),
        // …and through a chain of unchanged updates across commits.
        upd_keep_doc(3, "c2", 20, 3),
    ]))
    .await
    .unwrap();
    w.commit(&cp(20)).await.unwrap();
    w.write_changes(changes(&[
        upd_keep_doc(3, "c3", 30, 0),
        upd_keep_doc(1, "a3", 30, 1),
        // Deleted then re-inserted and updated: the value before the delete is gone.
        del(4, 30, 2),
        ins(4, "d2", "fresh", 30, 3),
        upd_keep_doc(4, "d3", 30, 4),
    ]))
    .await
    .unwrap();
    w.finish(&cp(30)).await.unwrap();
    drop(w);
    let got = state(root);
    assert_eq!(
        got,
        vec![
            (1, "a3".to_string(), Some(big('x'))),
            (2, "b3".to_string(), Some(big('Y'))),
            (3, "c3".to_string(), Some(big('z'))),
            (4, "d3".to_string(), Some("fresh".to_string())),
        ]
    );
    // Every value was found: no cell is left flagged.
    assert!(read_visible(root).iter().all(|r| r.unchanged.is_none()));

    // An update whose previous value the lake never held keeps the cell null and says so.
    let mut w = open(root, WriteMode::AppendDedup, "r3").await;
    w.write_changes(changes(&[upd_keep_doc(9, "ghost", 40, 0)]))
        .await
        .unwrap();
    w.finish(&cp(40)).await.unwrap();
    let ghost = read_visible(root)
        .into_iter()
        .find(|r| r.id == Some(9))
        .unwrap();
    assert_eq!(ghost.doc, None);
    assert_eq!(ghost.unchanged, Some(vec!["doc".to_string()]));
    assert_clean(root);
}

#[tokio::test]
async fn abort_drops_uncommitted_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for mode in [WriteMode::Append, WriteMode::AppendDedup] {
        let _ = std::fs::remove_dir_all(dir_of(root));
        let mut w = open(root, mode, "r1").await;
        w.write_changes(changes(&[ins(1, "a", "d", 10, 0)]))
            .await
            .unwrap();
        w.commit(&cp(10)).await.unwrap();
        w.write_changes(changes(&[
            upd(1, "lost", "d", 20, 0),
            ins(2, "lost", "d", 20, 1),
        ]))
        .await
        .unwrap();
        w.abort().await.unwrap();
        assert_eq!(w.committed_checkpoint(), Some(cp(10)));
        w.write_changes(changes(&[ins(3, "c", "d", 30, 0)]))
            .await
            .unwrap();
        w.finish(&cp(30)).await.unwrap();
        drop(w);
        let rows = read_visible(root);
        assert!(
            rows.iter().all(|r| r.name.as_deref() != Some("lost")),
            "{mode}: {rows:?}"
        );
        assert_eq!(rows.len(), 2, "{mode}: {rows:?}");
        assert_clean(root);
    }
}

#[tokio::test]
async fn a_crash_after_a_commit_keeps_the_commit_and_shows_nothing_new() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::AppendDedup, "r1").await;
    w.write_changes(changes(&[
        ins(1, "a", "d1", 10, 0),
        ins(2, "b", "d2", 10, 1),
    ]))
    .await
    .unwrap();
    w.finish(&cp(10)).await.unwrap();
    drop(w);
    let before = committed_files(&dir_of(root)).unwrap();

    // Run 2 commits, writes more, and "crashes" (dropped without finish or abort).
    let mut w = open(root, WriteMode::AppendDedup, "r2").await;
    w.write_changes(changes(&[del(1, 20, 0), upd_keep_doc(2, "b2", 20, 1)]))
        .await
        .unwrap();
    w.commit(&cp(20)).await.unwrap();
    w.write_changes(changes(&[ins(3, "uncommitted", "x", 30, 0)]))
        .await
        .unwrap();
    drop(w);
    assert_eq!(committed_files(&dir_of(root)).unwrap(), before);
    assert_eq!(state(root), st(&[(1, "a", "d1"), (2, "b", "d2")]));

    // The rerun resumes after the committed checkpoint and publishes it with the rest.
    let mut w = open(root, WriteMode::AppendDedup, "r3").await;
    assert_eq!(w.committed_checkpoint(), Some(cp(20)));
    assert_eq!(state(root), st(&[(1, "a", "d1"), (2, "b", "d2")]));
    w.write_changes(changes(&[ins(3, "c", "d3", 30, 0)]))
        .await
        .unwrap();
    w.finish(&cp(30)).await.unwrap();
    assert_eq!(state(root), st(&[(2, "b2", "d2"), (3, "c", "d3")]));
    assert_clean(root);

    // The same for the changelog: the committed file stays, the uncommitted one is gone.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::Append, "r1").await;
    w.write_changes(changes(&[ins(1, "a", "d1", 10, 0)]))
        .await
        .unwrap();
    w.commit(&cp(10)).await.unwrap();
    w.write_changes(changes(&[ins(2, "uncommitted", "x", 20, 0)]))
        .await
        .unwrap();
    drop(w);
    let w = open(root, WriteMode::Append, "r2").await;
    assert_eq!(w.committed_checkpoint(), Some(cp(10)));
    assert_eq!(read_visible(root).len(), 1);
    assert_clean(root);
}

#[tokio::test]
async fn follow_mode_publishes_the_current_state_at_every_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let s = schema();
    let mut stream = configured(&s, WriteMode::AppendDedup);
    stream.follow = true;
    let dest = lake(root);
    let mut w = dest.open(&target("r1"), &stream, s.clone()).await.unwrap();
    w.write_changes(changes(&[
        ins(1, "a", "d1", 10, 0),
        ins(2, "b", "d2", 10, 1),
    ]))
    .await
    .unwrap();
    w.commit(&cp(10)).await.unwrap();
    assert_eq!(state(root), st(&[(1, "a", "d1"), (2, "b", "d2")]));
    w.write_changes(changes(&[del(1, 20, 0), upd_keep_doc(2, "b2", 20, 1)]))
        .await
        .unwrap();
    w.commit(&cp(20)).await.unwrap();
    assert_eq!(state(root), st(&[(2, "b2", "d2")]));
    assert_clean(root);
    // Uncommitted changes stay invisible; a crash keeps the last published commit.
    w.write_changes(changes(&[ins(3, "c", "d3", 30, 0)]))
        .await
        .unwrap();
    drop(w);
    let mut w = dest.open(&target("r2"), &stream, s).await.unwrap();
    assert_eq!(w.committed_checkpoint(), Some(cp(20)));
    assert_eq!(state(root), st(&[(2, "b2", "d2")]));
    w.write_changes(changes(&[ins(3, "c", "d3", 30, 0)]))
        .await
        .unwrap();
    w.commit(&cp(30)).await.unwrap();
    w.abort().await.unwrap();
    w.finish(&cp(30)).await.unwrap();
    assert_eq!(state(root), st(&[(2, "b2", "d2"), (3, "c", "d3")]));
    assert_clean(root);
}

#[tokio::test]
async fn a_publish_cut_short_is_recovered_and_redone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = dir_of(root);
    let mut w = open(root, WriteMode::AppendDedup, "r1").await;
    w.write_changes(changes(&[
        ins(1, "a", "d1", 10, 0),
        ins(2, "b", "d2", 10, 1),
    ]))
    .await
    .unwrap();
    w.finish(&cp(10)).await.unwrap();
    drop(w);
    let published = committed_files(&dir).unwrap();

    let mut w = open(root, WriteMode::AppendDedup, "r2").await;
    w.write_changes(changes(&[del(1, 20, 0), upd_keep_doc(2, "b2", 20, 1)]))
        .await
        .unwrap();
    w.commit(&cp(20)).await.unwrap();
    drop(w);

    // A crash in the middle of `finish`: the pending files were moved into the stream folder
    // and a compacted file was written, but the manifest was not swapped.
    let manifest = read_manifest(&dir).unwrap().unwrap();
    let pending = manifest.pending.clone().unwrap();
    let gen_dir = staging_of(&dir).join(&pending.generation);
    for f in &pending.files {
        std::fs::rename(gen_dir.join(&f.path), dir.join(&f.path)).unwrap();
    }
    std::fs::copy(&published[0], dir.join("part-000099-half-done.parquet")).unwrap();
    assert_eq!(committed_files(&dir).unwrap(), published);

    let mut w = open(root, WriteMode::AppendDedup, "r3").await;
    assert_eq!(w.committed_checkpoint(), Some(cp(20)));
    assert_eq!(committed_files(&dir).unwrap(), published);
    assert!(!dir.join("part-000099-half-done.parquet").exists());
    assert_eq!(state(root), st(&[(1, "a", "d1"), (2, "b", "d2")]));
    w.finish(&cp(21)).await.unwrap();
    assert_eq!(state(root), st(&[(2, "b2", "d2")]));
    assert_clean(root);
}

/// A deterministic pseudo-random sequence (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random changes over three runs checked against an in-memory model of the table. Files and
/// the published state exceed the compaction's read batch (64k rows), so rows, sources of
/// unchanged cells and winners span batch boundaries.
#[tokio::test]
async fn the_current_state_matches_a_model_over_random_changes() {
    const KEYS: u64 = 90_000;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut model: BTreeMap<i64, (String, String)> = BTreeMap::new();
    let mut pos = 1_000u64;
    let mut commits = 0;
    let names: Vec<&'static str> = (0..50)
        .map(|i| &*Box::leak(format!("name-{i}").into_boxed_str()))
        .collect();

    for run in 0..3 {
        let mut w = open(root, WriteMode::AppendDedup, &format!("r{run}")).await;
        let batches = if run == 0 { 9 } else { 16 };
        for b in 0..batches {
            let mut cs = Vec::with_capacity(10_000);
            for i in 0..10_000u64 {
                pos += rng.below(2);
                let ord = i;
                if run == 2 && b == 7 && i == 5_000 {
                    cs.push(trunc(pos, ord));
                    model.clear();
                    continue;
                }
                let id = if run == 0 {
                    (b * 10_000 + i) as i64
                } else {
                    rng.below(KEYS) as i64
                };
                let name = names[rng.below(50) as usize];
                let doc = format!("doc-{id}-{pos}-{ord}");
                let c = match model.get(&id) {
                    None => {
                        model.insert(id, (name.to_string(), doc.clone()));
                        ins(id, name, &doc, pos, ord)
                    }
                    Some(_) if rng.below(10) == 0 => {
                        model.remove(&id);
                        del(id, pos, ord)
                    }
                    Some((_, old)) if rng.below(3) == 0 => {
                        let old = old.clone();
                        model.insert(id, (name.to_string(), old));
                        upd_keep_doc(id, name, pos, ord)
                    }
                    Some(_) => {
                        model.insert(id, (name.to_string(), doc.clone()));
                        upd(id, name, &doc, pos, ord)
                    }
                };
                cs.push(c);
            }
            w.write_changes(changes(&cs)).await.unwrap();
            if b % 8 == 7 {
                commits += 1;
                w.commit(&cp(commits)).await.unwrap();
            }
        }
        w.finish(&cp(commits + 1)).await.unwrap();
        drop(w);
        let expect: Vec<_> = model
            .iter()
            .map(|(id, (name, doc))| (*id, name.clone(), Some(doc.clone())))
            .collect();
        let got = state(root);
        assert_eq!(got.len(), expect.len(), "run {run}");
        assert!(got == expect, "run {run}: the state differs from the model");
        assert!(read_visible(root).iter().all(|r| r.unchanged.is_none()));
        assert_clean(root);
    }
}

// ---------------------------------------------------------------------------------------------
// Schema changes
// ---------------------------------------------------------------------------------------------

fn with_email(cs: &[C], emails: &[Option<&str>]) -> ChangeBatch {
    let rows_schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("doc", DataType::Utf8, true),
        Field::new("email", DataType::Utf8, true),
    ]));
    changes_in(rows_schema, cs, Some(emails))
}

/// The arrow schema of every file, read from the files.
fn file_schemas(files: &[PathBuf]) -> Vec<SchemaRef> {
    files
        .iter()
        .map(|p| {
            ParquetRecordBatchReaderBuilder::try_new(File::open(p).unwrap())
                .unwrap()
                .schema()
                .clone()
        })
        .collect()
}

#[tokio::test]
async fn an_added_column_reaches_the_current_state_with_one_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::AppendDedup, "r1").await;
    w.write_changes(changes(&[
        ins(1, "a", "d1", 10, 0),
        ins(2, "b", "d2", 10, 1),
    ]))
    .await
    .unwrap();
    w.finish(&cp(10)).await.unwrap();
    drop(w);

    let mut w = open(root, WriteMode::AppendDedup, "r2").await;
    w.write_changes(changes(&[ins(3, "c", "d3", 20, 0)]))
        .await
        .unwrap();
    w.commit(&cp(20)).await.unwrap();
    w.schema_change(schema_with_email()).await.unwrap();
    w.write_changes(with_email(
        &[upd_keep_doc(1, "a2", 30, 0), ins(4, "d", "d4", 30, 1)],
        &[Some("a@x"), None],
    ))
    .await
    .unwrap();
    w.finish(&cp(30)).await.unwrap();
    drop(w);

    let files = committed_files(&dir_of(root)).unwrap();
    let schemas = file_schemas(&files);
    assert!(schemas.iter().all(|s| s == &schemas[0]), "{schemas:?}");
    assert!(schemas[0].index_of("email").is_ok());
    let mut rows: Vec<_> = read_visible(root)
        .into_iter()
        .map(|r| (r.id.unwrap(), r.name.unwrap(), r.doc.unwrap(), r.email))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            (1, "a2".into(), "d1".into(), Some("a@x".into())),
            (2, "b".into(), "d2".into(), None),
            (3, "c".into(), "d3".into(), None),
            (4, "d".into(), "d4".into(), None),
        ]
    );
    assert_clean(root);

    // The next run opens with the new schema; an older one (the column dropped) is refused.
    let mut w = open_with(root, WriteMode::AppendDedup, "r3", schema_with_email()).await;
    w.finish(&cp(31)).await.unwrap();
    drop(w);
    assert_eq!(read_visible(root).len(), 4);
    let err = lake(root)
        .open(
            &target("r4"),
            &configured(&schema(), WriteMode::AppendDedup),
            schema(),
        )
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ConnectorError::Schema(_)), "{err:?}");
    let err = err.to_string();
    assert!(
        err.contains("stream `customers`") && err.contains("`email`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_column_added_between_runs_is_null_filled_in_the_published_state() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::AppendDedup, "r1").await;
    w.write_changes(changes(&[
        ins(1, "a", "d1", 10, 0),
        ins(2, "b", "d2", 10, 1),
    ]))
    .await
    .unwrap();
    w.finish(&cp(10)).await.unwrap();
    drop(w);
    let mut w = open_with(root, WriteMode::AppendDedup, "r2", schema_with_email()).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(10)));
    w.write_changes(with_email(&[upd_keep_doc(2, "b2", 20, 0)], &[Some("b@x")]))
        .await
        .unwrap();
    w.finish(&cp(20)).await.unwrap();
    let files = committed_files(&dir_of(root)).unwrap();
    let schemas = file_schemas(&files);
    assert!(schemas.iter().all(|s| s.index_of("email").is_ok()));
    let mut rows: Vec<_> = read_visible(root)
        .into_iter()
        .map(|r| (r.id.unwrap(), r.doc.unwrap(), r.email))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![(1, "d1".into(), None), (2, "d2".into(), Some("b@x".into()))]
    );
}

/// A column added upstream with a constant DEFAULT (`weft.fill`, issue #15 item 1): rows that
/// existed before it read the default in the source, whether the lake holds them in the
/// published state or in changes of the run sent before the column appeared; rows sent after
/// it carry what the source sent (NULL included).
#[tokio::test]
async fn rows_from_before_a_column_added_with_a_default_read_the_default() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::AppendDedup, "r1").await;
    w.write_changes(changes(&[
        ins(1, "a", "d1", 10, 0),
        ins(2, "b", "d2", 10, 1),
    ]))
    .await
    .unwrap();
    w.finish(&cp(10)).await.unwrap();
    drop(w);

    let mut w = open(root, WriteMode::AppendDedup, "r2").await;
    w.write_changes(changes(&[ins(3, "c", "d3", 20, 0)]))
        .await
        .unwrap();
    w.commit(&cp(20)).await.unwrap();
    let mut fields: Vec<Field> = schema_with_email()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[3] = fields[3]
        .clone()
        .with_metadata(std::collections::HashMap::from([(
            weft_core::values::FILL.to_string(),
            "none@x".to_string(),
        )]));
    w.schema_change(Arc::new(Schema::new(fields)))
        .await
        .unwrap();
    w.write_changes(with_email(
        &[upd_keep_doc(1, "a2", 30, 0), ins(4, "d", "d4", 30, 1)],
        &[Some("a@x"), None],
    ))
    .await
    .unwrap();
    w.finish(&cp(30)).await.unwrap();
    drop(w);

    let mut rows: Vec<_> = read_visible(root)
        .into_iter()
        .map(|r| (r.id.unwrap(), r.name.unwrap(), r.doc.unwrap(), r.email))
        .collect();
    rows.sort();
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        rows,
        vec![
            (1, "a2".into(), "d1".into(), some("a@x")),
            (2, "b".into(), "d2".into(), some("none@x")),
            (3, "c".into(), "d3".into(), some("none@x")),
            (4, "d".into(), "d4".into(), None),
        ]
    );
    let files = committed_files(&dir_of(root)).unwrap();
    assert!(file_schemas(&files)
        .iter()
        .all(|s| s.index_of("email").is_ok()));
    assert_clean(root);
}

#[tokio::test]
async fn an_added_column_in_the_changelog_is_readable_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::Append, "r1").await;
    w.write_changes(changes(&[ins(1, "a", "d1", 10, 0)]))
        .await
        .unwrap();
    w.commit(&cp(10)).await.unwrap();
    w.write_changes(changes(&[ins(2, "b", "d2", 20, 0)]))
        .await
        .unwrap();
    // The schema changes between two batches of one commit.
    w.schema_change(schema_with_email()).await.unwrap();
    w.write_changes(with_email(&[upd(1, "a2", "d1", 30, 0)], &[Some("a@x")]))
        .await
        .unwrap();
    w.finish(&cp(30)).await.unwrap();
    drop(w);

    let files = committed_files(&dir_of(root)).unwrap();
    let schemas = file_schemas(&files);
    // Files written before the change lack the column; the manifest has the latest schema.
    assert_eq!(
        schemas
            .iter()
            .map(|s| s.index_of("email").is_ok())
            .collect::<Vec<_>>(),
        vec![false, false, true]
    );
    let manifest = read_manifest(&dir_of(root)).unwrap().unwrap();
    assert!(manifest.fields.iter().any(|f| f.name == "email"));
    // Every other column has the same name and type in every file.
    for s in &schemas {
        for f in s.fields() {
            let latest = schemas[2].field_with_name(f.name()).unwrap();
            assert_eq!(latest.data_type(), f.data_type());
        }
    }
    let rows = read_visible(root);
    assert_eq!(
        rows.iter()
            .map(|r| (r.id.unwrap(), r.email.clone()))
            .collect::<Vec<_>>(),
        vec![(1, None), (2, None), (1, Some("a@x".to_string()))]
    );
}

#[tokio::test]
async fn a_dropped_or_retyped_column_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = open(tmp.path(), WriteMode::AppendDedup, "r1").await;
    let dropped: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let err = w.schema_change(dropped).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Schema(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("stream `customers`") && text.contains("`doc` was dropped"),
        "{text}"
    );
    let retyped: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Int32, true),
        Field::new("doc", DataType::Utf8, true),
    ]));
    let text = w.schema_change(retyped).await.unwrap_err().to_string();
    assert!(
        text.contains("stream `customers`") && text.contains("`name` changed type"),
        "{text}"
    );
    // The writer goes on with the schema it had.
    w.write_changes(changes(&[ins(1, "a", "d", 10, 0)]))
        .await
        .unwrap();
    w.finish(&cp(10)).await.unwrap();
    assert_eq!(state(tmp.path()), st(&[(1, "a", "d")]));
}

// ---------------------------------------------------------------------------------------------
// Throughput (printed, not asserted)
// ---------------------------------------------------------------------------------------------

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Resets the peak resident set size (Linux: `5` in `/proc/self/clear_refs`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Batch `batch` of 1M changes in batches of 10k over 200k keys: inserts first (the snapshot),
/// then updates (a tenth of them leaving `doc` unchanged) and some deletes.
fn load(batch: usize) -> ChangeBatch {
    const KEYS: u64 = 200_000;
    let base = (batch * 10_000) as u64;
    let mut cs = Vec::with_capacity(10_000);
    for i in 0..10_000u64 {
        let n = base + i;
        let id = (n * 7919 % KEYS) as i64;
        let doc = format!("document of customer {id} at position {n}: some text to compress");
        let c = if n < KEYS {
            ins(id, "name", &doc, n, 0)
        } else if n.is_multiple_of(10) {
            upd_keep_doc(id, "kept", n, 0)
        } else if n.is_multiple_of(17) {
            del(id, n, 0)
        } else {
            upd(id, "name", &doc, n, 0)
        };
        cs.push(c);
    }
    changes(&cs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing; run explicitly"]
async fn throughput_of_one_million_changes() {
    for mode in [WriteMode::Append, WriteMode::AppendDedup] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        reset_peak_rss();
        let start = std::time::Instant::now();
        let mut generating = std::time::Duration::ZERO;
        let mut w = open(root, mode, "r1").await;
        for i in 0..100 {
            let t = std::time::Instant::now();
            let batch = load(i);
            generating += t.elapsed();
            w.write_changes(batch).await.unwrap();
            if i % 10 == 9 {
                w.commit(&cp(i as i64)).await.unwrap();
            }
        }
        let written = start.elapsed() - generating;
        let t = std::time::Instant::now();
        w.finish(&cp(100)).await.unwrap();
        let finish = t.elapsed();
        let total = written + finish;
        let peak = peak_rss_mib();
        let rows: i64 = committed_files(&dir_of(root))
            .unwrap()
            .iter()
            .map(|p| {
                ParquetRecordBatchReaderBuilder::try_new(File::open(p).unwrap())
                    .unwrap()
                    .metadata()
                    .file_metadata()
                    .num_rows()
            })
            .sum();
        println!(
            "{mode}: 1M changes in {:.2}s = {:.0} changes/s (writes and commits {:.2}s, finish \
             {:.2}s; generating the batches, not counted, {:.2}s); {rows} visible rows; peak \
             RSS {peak:?} MiB",
            total.as_secs_f64(),
            1e6 / total.as_secs_f64(),
            written.as_secs_f64(),
            finish.as_secs_f64(),
            generating.as_secs_f64(),
        );
    }
}

/// A run commits changes (durable, not yet published; the engine then acknowledges them and
/// the source's replication slot moves past them) and is killed; a column is added to the
/// source before the next run. The next run must resume that commit, not drop it: the source
/// can never read those changes again.
#[tokio::test]
async fn a_commit_before_a_crash_survives_a_column_added_before_the_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::AppendDedup, "r1").await;
    w.write_changes(changes(&[
        ins(1, "a", "d1", 10, 0),
        ins(2, "b", "d2", 10, 1),
    ]))
    .await
    .unwrap();
    w.commit(&cp(10)).await.unwrap();
    drop(w); // killed before finishing

    let mut w = open_with(root, WriteMode::AppendDedup, "r2", schema_with_email()).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(10)));
    w.write_changes(with_email(&[upd_keep_doc(2, "b2", 20, 0)], &[Some("b@x")]))
        .await
        .unwrap();
    w.finish(&cp(20)).await.unwrap();
    let mut rows: Vec<_> = read_visible(root)
        .into_iter()
        .map(|r| (r.id.unwrap(), r.doc.unwrap(), r.email))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![(1, "d1".into(), None), (2, "d2".into(), Some("b@x".into()))]
    );
}
