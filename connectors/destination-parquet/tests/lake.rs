//! End-to-end tests of the lake: real files on disk, read back with the parquet crate's reader.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use weft_conformance::TestStream;
use weft_core::{
    Checkpoint, ConfiguredStream, ConnectorContext, ConnectorError, Destination,
    DestinationFactory, StreamTarget, StreamWriter, WriteMode,
};
use weft_destination_parquet::{committed_files, read_manifest, stream_dir, ParquetLakeFactory};

fn lake(root: &Path, extra: serde_json::Value) -> Box<dyn Destination> {
    let mut config = json!({ "path": root });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let ctx = ConnectorContext {
        project_dir: PathBuf::from("/nonexistent-project"),
    };
    ParquetLakeFactory.build(&config, &ctx).unwrap()
}

fn target(run: &str) -> StreamTarget {
    TestStream::new("finance", "revenue", "orders")
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

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

fn configured(
    schema: &SchemaRef,
    mode: WriteMode,
    key: &[&str],
    cursor: Option<&str>,
) -> ConfiguredStream {
    let s = TestStream::new("test", "product", "orders")
        .schema(schema.clone())
        .write(mode)
        .key(key)
        .pipeline("test.product.stream");
    match cursor {
        Some(c) => s.cursor(c),
        None => s,
    }
    .configured()
}

fn batch(ids: &[i64], names: &[&str]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(names.to_vec())),
        ],
    )
    .unwrap()
}

fn cp(n: i64) -> Checkpoint {
    Checkpoint::new(json!({ "cursor": n }))
}

async fn open(root: &Path, mode: WriteMode) -> Box<dyn StreamWriter> {
    let s = schema();
    lake(root, json!({}))
        .open(&target("run-1"), &configured(&s, mode, &[], None), s)
        .await
        .unwrap()
}

/// Reads (id, name) rows of files with the parquet crate's own reader.
fn read_rows(files: &[PathBuf]) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for path in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let names = batch.column(1).as_string::<i32>();
            for i in 0..batch.num_rows() {
                out.push((ids.value(i), names.value(i).to_string()));
            }
        }
    }
    out
}

fn rows(pairs: &[(i64, &str)]) -> Vec<(i64, String)> {
    pairs.iter().map(|(i, s)| (*i, s.to_string())).collect()
}

/// Every regular file under `dir`, relative to it, sorted.
fn all_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

fn data_files(dir: &Path) -> Vec<String> {
    all_files(dir)
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .collect()
}

#[tokio::test]
async fn append_across_commits_keeps_every_row_and_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::Append).await;
    assert!(w.stores_checkpoints());
    assert_eq!(w.committed_checkpoint(), None);
    w.write(batch(&[1, 2], &["a", "b"])).await.unwrap();
    w.write(batch(&[3], &["c"])).await.unwrap();
    w.commit(&cp(1)).await.unwrap();
    assert_eq!(read_rows(&committed_files(&dir_of(root)).unwrap()).len(), 3);
    w.write(batch(&[4, 5], &["d", "e"])).await.unwrap();
    w.commit(&cp(2)).await.unwrap();
    w.finish(&cp(3)).await.unwrap();
    assert_eq!(w.committed_checkpoint(), Some(cp(3)));
    drop(w);

    let dir = dir_of(root);
    let files = committed_files(&dir).unwrap();
    assert_eq!(files.len(), 2, "one file per commit with rows");
    assert_eq!(
        read_rows(&files),
        rows(&[(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")])
    );
    let manifest = read_manifest(&dir).unwrap().unwrap();
    assert_eq!(manifest.checkpoint, Some(cp(3)));
    assert_eq!(manifest.version, 3, "three commits, the last without rows");
    assert_eq!(manifest.write_mode, WriteMode::Append);
    assert_eq!(manifest.run_id, "run-1");
    assert_eq!(
        manifest.files.iter().map(|f| f.rows).collect::<Vec<_>>(),
        vec![3, 2]
    );
    assert_eq!(manifest.fields.len(), 2);
    assert_eq!(manifest.fields[0].name, "id");
    for (f, path) in manifest.files.iter().zip(&files) {
        assert_eq!(f.bytes, std::fs::metadata(path).unwrap().len());
        assert!(f.path.starts_with("part-0000"), "{}", f.path);
    }
    // Nothing else lies around: data files are exactly the committed ones.
    assert_eq!(
        all_files(&dir),
        vec![
            "_weft/manifest.json".to_string(),
            manifest.files[0].path.clone(),
            manifest.files[1].path.clone()
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );

    // A new run resumes from the committed checkpoint and appends.
    let mut w = open(root, WriteMode::Append).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(3)));
    w.write(batch(&[6], &["f"])).await.unwrap();
    w.finish(&cp(4)).await.unwrap();
    assert_eq!(read_rows(&committed_files(&dir).unwrap()).len(), 6);
}

#[tokio::test]
async fn overwrite_survives_a_crash_mid_generation_and_publishes_on_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = dir_of(root);

    let mut w = open(root, WriteMode::Overwrite).await;
    w.write(batch(&[1, 2], &["old1", "old2"])).await.unwrap();
    // Before finish, readers see nothing of the new generation.
    w.commit(&cp(1)).await.unwrap();
    assert!(committed_files(&dir).unwrap().is_empty());
    w.finish(&cp(2)).await.unwrap();
    drop(w);
    let old_files = committed_files(&dir).unwrap();
    assert_eq!(read_rows(&old_files), rows(&[(1, "old1"), (2, "old2")]));

    // Second run: one commit, then more rows, then a crash (the writer is dropped).
    let mut w = open(root, WriteMode::Overwrite).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(2)));
    w.write(batch(&[10], &["new10"])).await.unwrap();
    w.commit(&cp(10)).await.unwrap();
    w.write(batch(&[11], &["lost"])).await.unwrap();
    drop(w);

    assert_eq!(
        committed_files(&dir).unwrap(),
        old_files,
        "readers still see the old table"
    );
    assert_eq!(read_rows(&old_files), rows(&[(1, "old1"), (2, "old2")]));
    let pending = read_manifest(&dir).unwrap().unwrap().pending.unwrap();
    assert_eq!(pending.checkpoint, Some(cp(10)));
    assert_eq!(pending.files.len(), 1);

    // The restarted run resumes the generation from its committed checkpoint.
    let mut w = open(root, WriteMode::Overwrite).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(10)));
    let gen_files = data_files(&staging_of(&dir));
    assert_eq!(
        gen_files.len(),
        1,
        "the committed generation file is kept: {gen_files:?}"
    );
    assert_eq!(committed_files(&dir).unwrap(), old_files);
    w.write(batch(&[11, 12], &["new11", "new12"]))
        .await
        .unwrap();
    w.finish(&cp(12)).await.unwrap();
    drop(w);

    let files = committed_files(&dir).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(
        read_rows(&files),
        rows(&[(10, "new10"), (11, "new11"), (12, "new12")])
    );
    for old in &old_files {
        assert!(
            !old.exists(),
            "old file {} deleted after publishing",
            old.display()
        );
    }
    let manifest = read_manifest(&dir).unwrap().unwrap();
    assert_eq!(manifest.pending, None);
    assert_eq!(manifest.checkpoint, Some(cp(12)));
    assert_eq!(
        data_files(&dir).len(),
        2,
        "no leftovers: {:?}",
        all_files(&dir)
    );
}

#[tokio::test]
async fn an_overwrite_publish_cut_short_is_rolled_back_into_its_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = dir_of(root);
    let mut w = open(root, WriteMode::Overwrite).await;
    w.write(batch(&[1], &["a"])).await.unwrap();
    w.commit(&cp(1)).await.unwrap();
    drop(w);
    // Simulate a crash in finish after the generation's file was moved, before the manifest.
    let staged = all_files(&staging_of(&dir));
    assert_eq!(staged.len(), 1);
    let name = Path::new(&staged[0]).file_name().unwrap();
    std::fs::rename(staging_of(&dir).join(&staged[0]), dir.join(name)).unwrap();

    let mut w = open(root, WriteMode::Overwrite).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(1)));
    assert!(committed_files(&dir).unwrap().is_empty());
    w.write(batch(&[2], &["b"])).await.unwrap();
    w.finish(&cp(2)).await.unwrap();
    assert_eq!(
        read_rows(&committed_files(&dir).unwrap()),
        rows(&[(1, "a"), (2, "b")])
    );
}

/// A run killed right after its overwrite is published is never followed by one that cleans
/// up, so the publish must have emptied staging by its flip; a publish cut short between the
/// two must still resume its generation.
#[tokio::test]
async fn an_overwrite_publish_empties_staging_before_its_flip_and_a_cut_short_one_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = dir_of(root);
    let home = staging_of(&dir).parent().unwrap().to_path_buf();

    let mut w = open(root, WriteMode::Overwrite).await;
    w.write(batch(&[1], &["a"])).await.unwrap();
    w.commit(&cp(1)).await.unwrap();
    w.write(batch(&[2], &["b"])).await.unwrap();
    // A folder where the flip makes its temporary link: the publish fails at its flip, after
    // the new version folder was made.
    std::fs::create_dir(home.join("link.tmp")).unwrap();
    let err = w.finish(&cp(2)).await.unwrap_err();
    assert!(err.to_string().contains("link.tmp"), "{err}");
    assert_eq!(
        data_files(&staging_of(&dir)),
        Vec::<String>::new(),
        "the generation's files left staging before the flip"
    );
    drop(w);
    std::fs::remove_dir(home.join("link.tmp")).unwrap();
    assert!(
        committed_files(&dir).unwrap().is_empty(),
        "nothing published"
    );

    // The next run puts the generation back from the version folder the flip never reached.
    let mut w = open(root, WriteMode::Overwrite).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(1)));
    assert_eq!(data_files(&staging_of(&dir)).len(), 1);
    w.write(batch(&[2], &["b"])).await.unwrap();
    w.finish(&cp(2)).await.unwrap();
    drop(w);
    assert_eq!(
        read_rows(&committed_files(&dir).unwrap()),
        rows(&[(1, "a"), (2, "b")])
    );
    assert_eq!(all_files(&staging_of(&dir)), Vec::<String>::new());
    let versions: Vec<String> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('v'))
        .collect();
    assert_eq!(versions.len(), 1, "one version folder: {versions:?}");
}

#[tokio::test]
async fn abort_drops_uncommitted_rows_and_leaves_the_manifest_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = dir_of(root);

    let mut w = open(root, WriteMode::Append).await;
    w.write(batch(&[1], &["a"])).await.unwrap();
    w.abort().await.unwrap();
    assert!(data_files(&dir).is_empty(), "{:?}", all_files(&dir));
    assert_eq!(read_manifest(&dir).unwrap(), None);

    w.write(batch(&[2], &["b"])).await.unwrap();
    w.commit(&cp(2)).await.unwrap();
    let before = read_manifest(&dir).unwrap();
    w.write(batch(&[3], &["c"])).await.unwrap();
    w.abort().await.unwrap();
    assert_eq!(read_manifest(&dir).unwrap(), before);
    assert_eq!(data_files(&dir).len(), 1, "{:?}", all_files(&dir));
    // The writer is usable after an abort.
    w.write(batch(&[4], &["d"])).await.unwrap();
    w.finish(&cp(4)).await.unwrap();
    assert_eq!(
        read_rows(&committed_files(&dir).unwrap()),
        rows(&[(2, "b"), (4, "d")])
    );

    drop(w);

    // Overwrite: abort keeps the published table and leaves no staging file.
    let mut w = open(root, WriteMode::Overwrite).await;
    w.write(batch(&[9], &["z"])).await.unwrap();
    w.abort().await.unwrap();
    drop(w);
    assert_eq!(
        read_rows(&committed_files(&dir).unwrap()),
        rows(&[(2, "b"), (4, "d")])
    );
    assert!(
        data_files(&dir.join("_weft")).is_empty() && data_files(&staging_of(&dir)).is_empty(),
        "{:?}",
        all_files(&dir)
    );
}

#[tokio::test]
async fn leftovers_of_a_crash_are_removed_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = dir_of(root);
    let mut w = open(root, WriteMode::Append).await;
    w.write(batch(&[1], &["a"])).await.unwrap();
    w.finish(&cp(1)).await.unwrap();
    drop(w);
    let committed = committed_files(&dir).unwrap();

    let junk = [
        dir.join("part-000007-deadbeef.parquet"),
        staging_of(&dir).join("part-000008-feed.parquet"),
        staging_of(&dir).join("0123abcd/part-000009-cafe.parquet"),
        dir.join("_weft/manifest.json.tmp"),
    ];
    for path in &junk {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"half a file").unwrap();
    }
    std::fs::write(dir.join("README.txt"), b"not ours").unwrap();

    let w = open(root, WriteMode::Append).await;
    assert_eq!(w.committed_checkpoint(), Some(cp(1)));
    for path in &junk {
        assert!(!path.exists(), "{} should be removed", path.display());
    }
    assert!(!staging_of(&dir).join("0123abcd").exists());
    assert!(
        dir.join("README.txt").exists(),
        "files that are not weft's are left alone"
    );
    assert_eq!(committed_files(&dir).unwrap(), committed);
    assert_eq!(read_rows(&committed), rows(&[(1, "a")]));
}

#[tokio::test]
async fn an_uncreatable_root_is_an_io_error_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let root = blocker.join("lake");

    let dest = lake(&root, json!({}));
    let err = dest.check().await.unwrap_err();
    assert!(matches!(err, ConnectorError::Io { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&blocker.display().to_string()), "{text}");
    assert!(
        text.contains("check the lake `path` in the product's destination config"),
        "{text}"
    );

    let s = schema();
    let err = dest
        .open(
            &target("r"),
            &configured(&s, WriteMode::Append, &[], None),
            s.clone(),
        )
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ConnectorError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("check the lake `path`"), "{err}");

    let ok = tmp.path().join("fine/lake");
    lake(&ok, json!({})).check().await.unwrap();
    assert!(ok.is_dir());
    assert_eq!(
        std::fs::read_dir(&ok).unwrap().count(),
        0,
        "the probe file is removed"
    );
}

#[tokio::test]
async fn small_file_bytes_roll_to_several_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let s = schema();
    let mut w = lake(
        root,
        json!({ "file_bytes": 1, "row_group_bytes": 1, "zstd_level": 1 }),
    )
    .open(
        &target("r"),
        &configured(&s, WriteMode::Append, &[], None),
        s,
    )
    .await
    .unwrap();
    for i in 0..5 {
        w.write(batch(&[i * 2, i * 2 + 1], &["x", "y"]))
            .await
            .unwrap();
    }
    w.finish(&cp(1)).await.unwrap();
    let files = committed_files(&dir_of(root)).unwrap();
    assert_eq!(files.len(), 5);
    let all = read_rows(&files);
    assert_eq!(
        all.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    let meta = ParquetRecordBatchReaderBuilder::try_new(File::open(&files[0]).unwrap()).unwrap();
    assert_eq!(meta.metadata().file_metadata().num_rows(), 2);
}

#[tokio::test]
async fn row_groups_are_capped_by_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let s = schema();
    let mut w = lake(root, json!({ "row_group_bytes": 4096 }))
        .open(
            &target("r"),
            &configured(&s, WriteMode::Append, &[], None),
            s,
        )
        .await
        .unwrap();
    // The cap splits between and within batches once a row group has rows to measure.
    for chunk in 0..20 {
        let ids: Vec<i64> = (chunk * 1000..(chunk + 1) * 1000).collect();
        let names: Vec<String> = ids
            .iter()
            .map(|i| format!("name-{i}-{}", i * 7919 % 10007))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        w.write(batch(&ids, &names)).await.unwrap();
    }
    w.finish(&cp(1)).await.unwrap();
    let files = committed_files(&dir_of(root)).unwrap();
    assert_eq!(files.len(), 1);
    let b = ParquetRecordBatchReaderBuilder::try_new(File::open(&files[0]).unwrap()).unwrap();
    assert!(
        b.metadata().num_row_groups() > 3,
        "{} row groups",
        b.metadata().num_row_groups()
    );
    assert_eq!(read_rows(&files).len(), 20_000);
}

fn dedup_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, false),
        Field::new("id", DataType::Int64, false),
        Field::new("updated", DataType::Int64, true),
        Field::new("value", DataType::Utf8, true),
    ]))
}

fn dedup_batch(rows: &[(&str, i64, Option<i64>, &str)]) -> RecordBatch {
    RecordBatch::try_new(
        dedup_schema(),
        vec![
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

fn read_dedup(files: &[PathBuf]) -> Vec<(String, i64, Option<i64>, String)> {
    let mut out = Vec::new();
    for path in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let (r, i, u, v) = (
                b.column(0).as_string::<i32>(),
                b.column(1).as_primitive::<Int64Type>(),
                b.column(2).as_primitive::<Int64Type>(),
                b.column(3).as_string::<i32>(),
            );
            for k in 0..b.num_rows() {
                let upd = (!u.is_null(k)).then(|| u.value(k));
                out.push((
                    r.value(k).to_string(),
                    i.value(k),
                    upd,
                    v.value(k).to_string(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn append_dedup_keeps_the_latest_row_per_multi_column_key() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = dir_of(root);
    let s = dedup_schema();
    let stream = configured(
        &s,
        WriteMode::AppendDedup,
        &["region", "id"],
        Some("updated"),
    );
    let dest = lake(root, json!({}));

    let mut w = dest.open(&target("r1"), &stream, s.clone()).await.unwrap();
    w.write(dedup_batch(&[
        ("eu", 1, Some(10), "eu1-v10"),
        ("us", 1, Some(10), "us1-v10"), // same id, other region: another key
        ("eu", 2, Some(50), "eu2-v50"),
        ("eu", 3, Some(5), "eu3-v5"),
    ]))
    .await
    .unwrap();
    w.commit(&cp(1)).await.unwrap();
    w.write(dedup_batch(&[
        ("eu", 1, Some(20), "eu1-v20"),     // newer cursor wins
        ("eu", 2, Some(40), "eu2-v40-old"), // older cursor loses although later
        ("eu", 3, Some(5), "eu3-v5-tie"),   // cursor tie: later arrival wins
        ("us", 9, None, "us9-null"),
    ]))
    .await
    .unwrap();
    w.write(dedup_batch(&[("us", 9, Some(1), "us9-v1")]))
        .await
        .unwrap();
    w.finish(&cp(2)).await.unwrap();
    drop(w);

    let expected = vec![
        ("eu".to_string(), 1, Some(20), "eu1-v20".to_string()),
        ("eu".to_string(), 2, Some(50), "eu2-v50".to_string()),
        ("eu".to_string(), 3, Some(5), "eu3-v5-tie".to_string()),
        ("us".to_string(), 1, Some(10), "us1-v10".to_string()),
        ("us".to_string(), 9, Some(1), "us9-v1".to_string()),
    ];
    let files = committed_files(&dir).unwrap();
    assert_eq!(read_dedup(&files), expected);
    let manifest = read_manifest(&dir).unwrap().unwrap();
    assert_eq!(manifest.files.iter().map(|f| f.rows).sum::<u64>(), 5);
    assert!(manifest.files.iter().all(|f| f.compacted));
    assert_eq!(manifest.checkpoint, Some(cp(2)));
    assert_eq!(
        data_files(&dir).len(),
        files.len(),
        "replaced files deleted: {:?}",
        all_files(&dir)
    );

    // A run with nothing new does not rewrite anything.
    let mut w = dest.open(&target("r2"), &stream, s.clone()).await.unwrap();
    w.finish(&cp(3)).await.unwrap();
    drop(w);
    assert_eq!(committed_files(&dir).unwrap(), files);

    // A later run settles against the compacted data too.
    let mut w = dest.open(&target("r3"), &stream, s.clone()).await.unwrap();
    w.write(dedup_batch(&[
        ("us", 1, Some(11), "us1-v11"),
        ("eu", 7, Some(1), "eu7"),
    ]))
    .await
    .unwrap();
    w.finish(&cp(4)).await.unwrap();
    let got = read_dedup(&committed_files(&dir).unwrap());
    assert_eq!(got.len(), 6);
    assert!(got.contains(&("us".to_string(), 1, Some(11), "us1-v11".to_string())));
    assert!(!got.iter().any(|r| r.3 == "us1-v10"));
}

#[tokio::test]
async fn append_dedup_finds_changed_keys_in_any_row_group_and_file() {
    // Many row groups in several files, so a compaction can skip those without a changed key.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // `merge_keys` below the first run's rows: that compaction settles in 15 parts by key hash.
    let config = json!({ "row_group_bytes": 4096, "file_bytes": 10000, "merge_keys": 700 });
    let s = schema();
    let stream = configured(&s, WriteMode::AppendDedup, &["id"], None);
    let mut w = lake(root, config.clone())
        .open(&target("r1"), &stream, s.clone())
        .await
        .unwrap();
    for chunk in 0..10 {
        let ids: Vec<i64> = (chunk * 1000..(chunk + 1) * 1000).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("v1-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        w.write(batch(&ids, &names)).await.unwrap();
    }
    // Later rows of three keys in the same run win over the first ones.
    w.write(batch(&[3, 4003, 9998], &["v1b-3", "v1b-4003", "v1b-9998"]))
        .await
        .unwrap();
    w.finish(&cp(1)).await.unwrap();
    drop(w);
    let dir = dir_of(root);
    let mut first = read_rows(&committed_files(&dir).unwrap());
    first.sort();
    assert_eq!(first.len(), 10_000, "one row per key after the first run");
    assert_eq!(first[4003], (4003, "v1b-4003".to_string()));
    let before = committed_files(&dir).unwrap();
    assert!(before.len() > 3, "{} files", before.len());

    // Keys in the first, a middle and the last row group, one twice, and a new one.
    let mut w = lake(root, config)
        .open(&target("r2"), &stream, s)
        .await
        .unwrap();
    w.write(batch(
        &[0, 5005, 9999, 20000],
        &["v2-0", "v2-5005", "v2-9999", "new"],
    ))
    .await
    .unwrap();
    w.write(batch(&[5005], &["v3-5005"])).await.unwrap();
    w.finish(&cp(2)).await.unwrap();

    let mut got = read_rows(&committed_files(&dir).unwrap());
    got.sort();
    let mut want: Vec<(i64, String)> = (0..10_000).map(|i| (i, format!("v1-{i}"))).collect();
    want[0].1 = "v2-0".into();
    want[3].1 = "v1b-3".into();
    want[4003].1 = "v1b-4003".into();
    want[9998].1 = "v1b-9998".into();
    want[5005].1 = "v3-5005".into();
    want[9999].1 = "v2-9999".into();
    want.push((20000, "new".into()));
    assert_eq!(got.len(), want.len(), "one row per key");
    assert_eq!(got, want);
    // Files without a changed key were kept as they were.
    let after = committed_files(&dir).unwrap();
    let kept = before.iter().filter(|f| after.contains(f)).count();
    assert!(kept >= 1, "no file was kept: {before:?} -> {after:?}");
}

#[tokio::test]
async fn append_dedup_publishes_settled_at_finish_and_resumes_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = dir_of(root);
    let s = dedup_schema();
    let stream = configured(
        &s,
        WriteMode::AppendDedup,
        &["region", "id"],
        Some("updated"),
    );
    let dest = lake(root, json!({}));

    // Run 1 publishes two keys.
    let mut w = dest.open(&target("r1"), &stream, s.clone()).await.unwrap();
    w.write(dedup_batch(&[
        ("eu", 1, Some(1), "a"),
        ("eu", 2, Some(1), "b"),
    ]))
    .await
    .unwrap();
    w.finish(&cp(1)).await.unwrap();
    drop(w);
    let published = committed_files(&dir).unwrap();

    // Run 2 commits an update mid-run, then "crashes" (dropped without finish): readers still
    // see run 1's rows only, never a duplicate key, and the commit is not lost.
    let mut w = dest.open(&target("r2"), &stream, s.clone()).await.unwrap();
    w.write(dedup_batch(&[("eu", 1, Some(2), "a2")]))
        .await
        .unwrap();
    w.commit(&cp(2)).await.unwrap();
    drop(w);
    assert_eq!(committed_files(&dir).unwrap(), published);
    assert_eq!(read_dedup(&published).len(), 2);

    // The rerun resumes from the pending checkpoint and publishes everything settled.
    let mut w = dest.open(&target("r3"), &stream, s.clone()).await.unwrap();
    assert_eq!(w.committed_checkpoint(), Some(cp(2)));
    w.write(dedup_batch(&[("eu", 3, Some(2), "c")]))
        .await
        .unwrap();
    w.finish(&cp(3)).await.unwrap();
    drop(w);
    let got = read_dedup(&committed_files(&dir).unwrap());
    assert_eq!(
        got,
        vec![
            ("eu".to_string(), 1, Some(2), "a2".to_string()),
            ("eu".to_string(), 2, Some(1), "b".to_string()),
            ("eu".to_string(), 3, Some(2), "c".to_string()),
        ]
    );
    let manifest = read_manifest(&dir).unwrap().unwrap();
    assert_eq!(manifest.pending, None);
    assert_eq!(manifest.checkpoint, Some(cp(3)));
    assert_eq!(
        data_files(&dir).len(),
        manifest.files.len(),
        "{:?}",
        all_files(&dir)
    );
}

#[tokio::test]
async fn append_dedup_without_cursor_keeps_the_last_arrival() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let s = dedup_schema();
    let stream = configured(&s, WriteMode::AppendDedup, &["id"], None);
    let mut w = lake(root, json!({}))
        .open(&target("r"), &stream, s.clone())
        .await
        .unwrap();
    w.write(dedup_batch(&[
        ("eu", 1, Some(9), "first"),
        ("eu", 2, None, "only"),
    ]))
    .await
    .unwrap();
    w.commit(&cp(1)).await.unwrap();
    w.write(dedup_batch(&[
        ("us", 1, Some(1), "second"),
        ("us", 1, Some(0), "third"),
    ]))
    .await
    .unwrap();
    w.finish(&cp(2)).await.unwrap();
    let got = read_dedup(&committed_files(&dir_of(root)).unwrap());
    assert_eq!(
        got,
        vec![
            ("eu".to_string(), 2, None, "only".to_string()),
            ("us".to_string(), 1, Some(0), "third".to_string()),
        ]
    );
}

#[tokio::test]
async fn append_dedup_needs_a_primary_key() {
    let tmp = tempfile::tempdir().unwrap();
    let s = dedup_schema();
    let dest = lake(tmp.path(), json!({}));
    let err = dest
        .open(
            &target("r"),
            &configured(&s, WriteMode::AppendDedup, &[], None),
            s.clone(),
        )
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("set `primary_key`"), "{err}");
    let err = dest
        .open(
            &target("r"),
            &configured(&s, WriteMode::AppendDedup, &["nope"], None),
            s,
        )
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("primary key column `nope`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_dropped_or_retyped_column_against_committed_data_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = open(root, WriteMode::Append).await;
    w.write(batch(&[1], &["a"])).await.unwrap();
    w.finish(&cp(1)).await.unwrap();
    drop(w);

    let other: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, true),
    ]));
    let err = lake(root, json!({}))
        .open(
            &target("r"),
            &configured(&other, WriteMode::Append, &[], None),
            other.clone(),
        )
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ConnectorError::Schema(_)), "{err:?}");
    let text = err.to_string();
    for part in [
        "stream `orders`",
        "column `id` changed type from Int64 to Utf8",
        "only widens types",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    // Overwrite replaces the table, so a new schema is fine there.
    let mut w = lake(root, json!({}))
        .open(
            &target("r"),
            &configured(&other, WriteMode::Overwrite, &[], None),
            other,
        )
        .await
        .unwrap();
    w.finish(&cp(2)).await.unwrap();
    assert!(committed_files(&dir_of(root)).unwrap().is_empty());
}

/// `id`, `n` (Int32, later Int64) and `name`; the evolved schema adds `extra`.
fn evolving(widened: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "n",
            if widened {
                DataType::Int64
            } else {
                DataType::Int32
            },
            false,
        ),
        Field::new("name", DataType::Utf8, true),
    ];
    if widened {
        fields.push(Field::new("extra", DataType::Utf8, false));
    }
    Arc::new(Schema::new(fields))
}

#[tokio::test]
async fn added_columns_and_widened_types_flow_into_append_dedup() {
    use arrow::array::Int32Array;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let old = evolving(false);
    let stream = configured(&old, WriteMode::AppendDedup, &["id"], None);
    let mut w = lake(root, json!({}))
        .open(&target("r1"), &stream, old.clone())
        .await
        .unwrap();
    let rows = RecordBatch::try_new(
        old,
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(Int32Array::from(vec![10, 20])),
            Arc::new(StringArray::from(vec!["a", "b"])),
        ],
    )
    .unwrap();
    w.write(rows).await.unwrap();
    w.finish(&cp(1)).await.unwrap();
    drop(w);

    let new = evolving(true);
    let stream = configured(&new, WriteMode::AppendDedup, &["id"], None);
    let mut w = lake(root, json!({}))
        .open(&target("r2"), &stream, new.clone())
        .await
        .unwrap();
    let rows = RecordBatch::try_new(
        new,
        vec![
            Arc::new(Int64Array::from(vec![2, 3])),
            Arc::new(Int64Array::from(vec![3_000_000_000, 30])),
            Arc::new(StringArray::from(vec!["b2", "c"])),
            Arc::new(StringArray::from(vec!["x", "y"])),
        ],
    )
    .unwrap();
    w.write(rows).await.unwrap();
    w.finish(&cp(2)).await.unwrap();

    let dir = dir_of(root);
    let manifest = read_manifest(&dir).unwrap().unwrap();
    let fields: Vec<(String, String, bool)> = manifest
        .fields
        .iter()
        .map(|c| (c.name.clone(), c.data_type.clone(), c.nullable))
        .collect();
    assert_eq!(
        fields,
        [
            ("id".to_string(), "Int64".to_string(), false),
            ("n".to_string(), "Int64".to_string(), false),
            ("name".to_string(), "Utf8".to_string(), true),
            ("extra".to_string(), "Utf8".to_string(), true),
        ]
    );
    // Read every file by name, as README's readers do: one row per key, old rows null-filled.
    let mut got = Vec::new();
    for path in committed_files(&dir).unwrap() {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let ids = batch
                .column_by_name("id")
                .unwrap()
                .as_primitive::<Int64Type>();
            let n =
                arrow::compute::cast(batch.column_by_name("n").unwrap(), &DataType::Int64).unwrap();
            let n = n.as_primitive::<Int64Type>();
            let extra = batch
                .column_by_name("extra")
                .map(|c| c.as_string::<i32>().clone());
            for i in 0..batch.num_rows() {
                let e = extra
                    .as_ref()
                    .and_then(|e| e.is_valid(i).then(|| e.value(i).to_string()));
                got.push((ids.value(i), n.value(i), e));
            }
        }
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            (1, 10, None),
            (2, 3_000_000_000, Some("x".to_string())),
            (3, 30, Some("y".to_string())),
        ]
    );
}

#[tokio::test]
async fn a_batch_with_another_schema_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = open(tmp.path(), WriteMode::Append).await;
    let bad = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false)])),
        vec![Arc::new(arrow::array::Int32Array::from(vec![1]))],
    )
    .unwrap();
    let err = w.write(bad).await.unwrap_err().to_string();
    assert!(
        err.contains("stream `orders`") && err.contains("`id` is Int64"),
        "{err}"
    );
}

#[tokio::test]
async fn timestamptz_decimal_and_date_get_parquet_logical_types() {
    use arrow::array::{Date32Array, Decimal128Array, TimestampMicrosecondArray};
    use arrow::datatypes::TimeUnit;
    use parquet::basic::{LogicalType, TimeUnit as PqUnit};

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let s: SchemaRef = Arc::new(Schema::new(vec![
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("amount", DataType::Decimal128(18, 2), false),
        Field::new("day", DataType::Date32, false),
    ]));
    let b = RecordBatch::try_new(
        s.clone(),
        vec![
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_700_000_000_000_000]).with_timezone("UTC"),
            ),
            Arc::new(
                Decimal128Array::from(vec![12345])
                    .with_precision_and_scale(18, 2)
                    .unwrap(),
            ),
            Arc::new(Date32Array::from(vec![19_700])),
        ],
    )
    .unwrap();
    let mut w = lake(root, json!({}))
        .open(
            &target("r"),
            &configured(&s, WriteMode::Append, &[], None),
            s.clone(),
        )
        .await
        .unwrap();
    w.write(b).await.unwrap();
    w.finish(&cp(1)).await.unwrap();

    let files = committed_files(&dir_of(root)).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&files[0]).unwrap()).unwrap();
    let descr = builder.metadata().file_metadata().schema_descr();
    match descr.column(0).logical_type_ref() {
        Some(LogicalType::Timestamp(t)) => {
            assert!(
                t.is_adjusted_to_u_t_c,
                "timestamptz must be adjusted to UTC"
            );
            assert!(matches!(t.unit, PqUnit::MICROS), "{:?}", t.unit);
        }
        other => panic!("timestamp column has logical type {other:?}"),
    }
    match descr.column(1).logical_type_ref() {
        Some(LogicalType::Decimal(d)) => assert_eq!((d.precision, d.scale), (18, 2)),
        other => panic!("decimal column has logical type {other:?}"),
    }
    assert_eq!(descr.column(2).logical_type_ref(), Some(&LogicalType::Date));
    let codec = builder.metadata().row_group(0).column(0).compression();
    assert!(
        matches!(codec, parquet::basic::Compression::ZSTD(_)),
        "{codec:?}"
    );
    assert!(builder
        .metadata()
        .row_group(0)
        .column(1)
        .statistics()
        .is_some());
    let back = builder.build().unwrap().next().unwrap().unwrap();
    assert_eq!(back.schema().field(0).data_type(), s.field(0).data_type());
    let amount = back
        .column(1)
        .as_primitive::<arrow::datatypes::Decimal128Type>();
    assert_eq!(amount.value(0), 12345);
}

#[test]
fn factory_names_itself_and_validates_config() {
    let f = ParquetLakeFactory;
    assert_eq!(f.name(), "parquet");
    let spec = f.spec();
    assert!(spec["properties"]["path"].is_object(), "{spec}");
    assert!(spec["properties"]["row_group_bytes"].is_object(), "{spec}");
    let ctx = ConnectorContext {
        project_dir: PathBuf::from("/p"),
    };
    let err = f
        .build(&json!({"path": "x", "zstd": 3}), &ctx)
        .err()
        .unwrap();
    assert!(err.to_string().contains("unknown field `zstd`"), "{err}");
    let err = f.build(&json!({}), &ctx).err().unwrap();
    assert!(err.to_string().contains("missing field `path`"), "{err}");
    let err = f
        .build(&json!({"path": "x", "zstd_level": 40}), &ctx)
        .err()
        .unwrap();
    assert!(err.to_string().contains("`zstd_level`"), "{err}");
}

#[tokio::test]
async fn relative_paths_resolve_against_the_project_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ConnectorContext {
        project_dir: tmp.path().to_path_buf(),
    };
    let dest = ParquetLakeFactory
        .build(&json!({"path": "lake"}), &ctx)
        .unwrap();
    dest.check().await.unwrap();
    assert!(tmp.path().join("lake").is_dir());
}

#[tokio::test]
async fn an_unfinished_overwrite_is_dropped_when_the_stream_is_reopened_in_append_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = dir_of(root);
    let mut w = open(root, WriteMode::Overwrite).await;
    w.write(batch(&[1], &["gen"])).await.unwrap();
    w.commit(&cp(1)).await.unwrap();
    drop(w);

    let mut w = open(root, WriteMode::Append).await;
    assert_eq!(
        w.committed_checkpoint(),
        None,
        "the generation was never published"
    );
    assert_eq!(read_manifest(&dir).unwrap().unwrap().pending, None);
    assert!(data_files(&dir).is_empty(), "{:?}", all_files(&dir));
    w.write(batch(&[2], &["append"])).await.unwrap();
    w.finish(&cp(2)).await.unwrap();
    assert_eq!(
        read_rows(&committed_files(&dir).unwrap()),
        rows(&[(2, "append")])
    );
}

/// (rows, compressed bytes) of each row group of `path`.
fn row_group_sizes(path: &Path) -> Vec<(i64, i64)> {
    let b = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    b.metadata()
        .row_groups()
        .iter()
        .map(|g| (g.num_rows(), g.compressed_size()))
        .collect()
}

#[tokio::test]
async fn a_merge_copies_the_row_groups_without_a_changed_key_and_encodes_only_the_others() {
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
    use parquet::file::metadata::PageIndexPolicy;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // One file of many row groups, several pages each (so the copied page indexes matter).
    let config = json!({ "row_group_bytes": 16384, "file_bytes": 100_000_000 });
    let s = schema();
    let stream = configured(&s, WriteMode::AppendDedup, &["id"], None);
    let mut w = lake(root, config.clone())
        .open(&target("r1"), &stream, s.clone())
        .await
        .unwrap();
    let name = |i: i64, v: &str| format!("{v}-{i}-{}", i * 7919 % 10007);
    for chunk in 0..20 {
        let ids: Vec<i64> = (chunk * 1000..(chunk + 1) * 1000).collect();
        let names: Vec<String> = ids.iter().map(|i| name(*i, "v1")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        w.write(batch(&ids, &names)).await.unwrap();
    }
    w.finish(&cp(1)).await.unwrap();
    drop(w);
    let dir = dir_of(root);
    let before = committed_files(&dir).unwrap();
    assert_eq!(before.len(), 1);
    let old_groups = row_group_sizes(&before[0]);
    assert!(old_groups.len() >= 8, "{} row groups", old_groups.len());

    // Two changed keys, in the second row group and in the last one, and a new key.
    let second = old_groups[0].0 + 1;
    let last = 19_999;
    let mut w = lake(root, config)
        .open(&target("r2"), &stream, s)
        .await
        .unwrap();
    w.write(batch(
        &[second, last, 50_000],
        &["v2-second", "v2-last", "new"],
    ))
    .await
    .unwrap();
    w.finish(&cp(2)).await.unwrap();
    drop(w);

    let after = committed_files(&dir).unwrap();
    let mut got = read_rows(&after);
    got.sort();
    let mut want: Vec<(i64, String)> = (0..20_000).map(|i| (i, name(i, "v1"))).collect();
    want[second as usize].1 = "v2-second".into();
    want[last as usize].1 = "v2-last".into();
    want.push((50_000, "new".into()));
    assert_eq!(got, want);

    // The big file was rewritten: every row group but the two with a loser has the same
    // rows and bytes as before (copied as encoded), those two one row less.
    let rewritten: Vec<&PathBuf> = after
        .iter()
        .filter(|p| row_group_sizes(p).len() == old_groups.len())
        .collect();
    assert_eq!(rewritten.len(), 1, "{after:?}");
    assert!(!before.contains(rewritten[0]));
    let new_groups = row_group_sizes(rewritten[0]);
    let touched = [1, old_groups.len() - 1];
    for (g, (old, new)) in old_groups.iter().zip(&new_groups).enumerate() {
        if touched.contains(&g) {
            assert_eq!(new.0, old.0 - 1, "row group {g}");
        } else {
            assert_eq!(new, old, "row group {g} was not copied as it was");
        }
    }

    // The copied page indexes point at the right pages: a reader that skips rows by the
    // offset index reads the same values as a full scan.
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let b = ParquetRecordBatchReaderBuilder::try_new_with_options(
        File::open(rewritten[0]).unwrap(),
        options,
    )
    .unwrap();
    assert!(b.metadata().page_index().is_some(), "page index kept");
    let total: usize = new_groups.iter().map(|g| g.0 as usize).sum();
    let selection: Vec<RowSelector> = (0..total / 1000)
        .flat_map(|_| [RowSelector::skip(997), RowSelector::select(3)])
        .collect();
    let reader = b
        .with_row_selection(RowSelection::from(selection))
        .build()
        .unwrap();
    let mut picked = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let names = batch.column(1).as_string::<i32>();
        for i in 0..batch.num_rows() {
            picked.push((ids.value(i), names.value(i).to_string()));
        }
    }
    let full = read_rows(&[rewritten[0].clone()]);
    let expected: Vec<(i64, String)> = full
        .chunks(1000)
        .take(total / 1000)
        .flat_map(|c| c[997..].to_vec())
        .collect();
    assert_eq!(picked, expected);
}
