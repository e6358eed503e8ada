//! End to end: the real `weft` binary syncing the sample source into the Parquet lake, read back
//! with the parquet crate alone, in every write mode, with SIGKILLs at random points, crashes
//! injected between the destination's commit and the state store's record, and Ctrl-C.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch, sort_to_indices, take_record_batch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use weft_source_sample::{expected_rows, SampleConfig};
use weft_testkit::rng::Rng;
use weft_testkit::{committed_files, manifest_checkpoint, visible_files, TestProject};

const BIN: &str = env!("CARGO_BIN_EXE_weft");

fn product(scale: u64, changes: u64, stream: &str, mode: &str, write: &str) -> String {
    let cursor = if mode == "incremental" {
        "\n    cursor: updated_at"
    } else {
        ""
    };
    format!(
        "product: shop\ndomain: sales\nowner: test@example.com\ndescription: crash test\nsource:\n  connector: sample\n  config: {{ scale: {scale}, changes_per_run: {changes}, batch_size: 20000 }}\nstreams:\n  - name: {stream}\n    mode: {mode}\n    write: {write}\n    primary_key: [id]{cursor}\n"
    )
}

fn expected(scale: u64, changes: u64, stream: &str, version: u64) -> RecordBatch {
    let config = SampleConfig::new(scale).with_changes_per_run(changes);
    let batches: Vec<RecordBatch> = expected_rows(&config, stream, version).collect();
    concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn sorted_by_id(batch: &RecordBatch) -> RecordBatch {
    let ids = batch.column_by_name("id").expect("an id column");
    let indices = sort_to_indices(ids, None, None).unwrap();
    take_record_batch(batch, &indices).unwrap()
}

/// Same rows (as a multiset keyed by id), same values, same types.
fn assert_same_rows(actual: &RecordBatch, expected: &RecordBatch) {
    assert_eq!(actual.num_rows(), expected.num_rows(), "row count");
    let (a, e) = (sorted_by_id(actual), sorted_by_id(expected));
    assert_eq!(a.num_columns(), e.num_columns(), "column count");
    for (i, field) in e.schema().fields().iter().enumerate() {
        let col = a
            .column_by_name(field.name())
            .unwrap_or_else(|| panic!("column {}", field.name()));
        assert_eq!(
            col.data_type(),
            field.data_type(),
            "type of {}",
            field.name()
        );
        if col.as_ref() != e.column(i).as_ref() {
            let ids_a = a.column_by_name("id").unwrap().as_primitive::<Int64Type>();
            for row in 0..a.num_rows() {
                if col.slice(row, 1).as_ref() != e.column(i).slice(row, 1).as_ref() {
                    panic!(
                        "column {} differs first at id {}: lake {:?} vs source {:?}",
                        field.name(),
                        ids_a.value(row),
                        col.slice(row, 1),
                        e.column(i).slice(row, 1)
                    );
                }
            }
        }
    }
}

fn assert_unique_ids(batch: &RecordBatch) {
    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let mut v: Vec<i64> = ids.values().to_vec();
    v.sort_unstable();
    let before = v.len();
    v.dedup();
    assert_eq!(v.len(), before, "duplicate ids in the lake");
}

/// The sample version the lake's published checkpoint says is completely read, if any.
fn completed_version(p: &TestProject, stream: &str) -> Option<u64> {
    let cp = manifest_checkpoint(&p.stream_dir("sales", "shop", stream))?;
    (cp["complete"] == true).then(|| cp["version"].as_u64().unwrap())
}

/// [`TestProject::sync_with_kills`] until the lake has published `target` version completely.
fn run_with_kills(
    p: &TestProject,
    rng: &mut Rng,
    kills: usize,
    target: u64,
    between: impl FnMut(),
) -> usize {
    let done = || completed_version(p, "orders") == Some(target);
    p.sync_with_kills(rng, kills, 50..750, done, between)
}

fn staging_is_empty(stream_dir: &Path) -> bool {
    let staging = weft_testkit::staging_dir(stream_dir);
    let empty = !staging.exists() || walk_files(&staging) == 0;
    if !empty {
        let listing = std::process::Command::new("find")
            .arg(&staging)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        eprintln!("staging holds files:\n{listing}");
    }
    empty
}

fn walk_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    if e.path().is_dir() {
                        walk_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

const SCALE: u64 = 2_000_000;
const CHANGES: u64 = 5_000;

#[test]
fn overwrite_survives_kills_and_readers_never_see_half() {
    let mut rng = Rng::new("overwrite");
    let p = TestProject::with_lake(BIN, "100ms");
    p.product(
        "sales",
        "shop",
        &product(SCALE, CHANGES, "orders", "full_refresh", "overwrite"),
    );
    // Version 0, killed a few times, then completed.
    let killed = run_with_kills(&p, &mut rng, 3, 0, || {});
    eprintln!("killed {killed} times");
    let v0 = expected(SCALE, CHANGES, "orders", 0);
    assert_same_rows(&p.read_stream("sales", "shop", "orders"), &v0);

    // Version 1: while it is interrupted, readers keep seeing exactly the published version.
    let dir = p.stream_dir("sales", "shop", "orders");
    run_with_kills(&p, &mut rng, 3, 1, || {
        let visible = p.read_stream("sales", "shop", "orders").num_rows() as u64;
        let published = completed_version(&p, "orders").unwrap();
        let config = SampleConfig::new(SCALE).with_changes_per_run(CHANGES);
        let want: u64 = expected_rows(&config, "orders", published)
            .map(|b| b.num_rows() as u64)
            .sum();
        assert_eq!(visible, want, "readers saw a half-written overwrite");
    });
    assert_same_rows(
        &p.read_stream("sales", "shop", "orders"),
        &expected(SCALE, CHANGES, "orders", 1),
    );
    assert_eq!(
        visible_files(&dir),
        {
            let mut c = committed_files(&dir);
            c.sort();
            c
        },
        "only committed files remain in the stream folder"
    );
    assert!(staging_is_empty(&dir));
}

#[test]
fn full_refresh_append_resumes_into_exactly_one_copy() {
    let mut rng = Rng::new("append");
    let p = TestProject::with_lake(BIN, "100ms");
    p.product(
        "sales",
        "shop",
        &product(SCALE, 0, "orders", "full_refresh", "append"),
    );
    run_with_kills(&p, &mut rng, 4, 0, || {});
    let lake = p.read_stream("sales", "shop", "orders");
    assert_unique_ids(&lake);
    assert_same_rows(&lake, &expected(SCALE, 0, "orders", 0));
}

#[test]
fn incremental_dedup_survives_kills_and_crashes_between_commit_and_record() {
    let mut rng = Rng::new("dedup");
    let p = TestProject::with_lake(BIN, "100ms");
    p.product(
        "sales",
        "shop",
        &product(SCALE, CHANGES, "orders", "incremental", "append_dedup"),
    );

    // Crash right after the lake's third commit, before the state store hears of it.
    let out = p
        .weft(["sync", "run", "--no-progress"])
        .env("WEFT_FAILPOINT", "after_destination_commit:3")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the failpoint must abort weft");
    run_with_kills(&p, &mut rng, 3, 0, || {});
    assert_same_rows(
        &p.read_stream("sales", "shop", "orders"),
        &expected(SCALE, CHANGES, "orders", 0),
    );

    // The next run reads version 1: updated and new rows, settled to one row per id.
    run_with_kills(&p, &mut rng, 2, 1, || {});
    let lake = p.read_stream("sales", "shop", "orders");
    assert_unique_ids(&lake);
    assert_same_rows(&lake, &expected(SCALE, CHANGES, "orders", 1));
}

#[test]
fn incremental_append_adds_exactly_the_changed_rows() {
    let mut rng = Rng::new("incremental-append");
    let scale = 1_000_000;
    let p = TestProject::with_lake(BIN, "100ms");
    p.product(
        "sales",
        "shop",
        &product(scale, CHANGES, "orders", "incremental", "append"),
    );
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let v0 = expected(scale, CHANGES, "orders", 0);
    run_with_kills(&p, &mut rng, 3, 1, || {});

    // Version 1's changes are the rows whose cursor moved past everything in version 0.
    let v1 = expected(scale, CHANGES, "orders", 1);
    let max_v0 = arrow::compute::max(
        v0.column_by_name("updated_at")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>(),
    )
    .unwrap();
    let moved = arrow::compute::kernels::cmp::gt(
        v1.column_by_name("updated_at").unwrap(),
        &arrow::array::Scalar::new(
            arrow::array::TimestampMicrosecondArray::from(vec![max_v0]).with_timezone("UTC"),
        ),
    )
    .unwrap();
    let changed = filter_record_batch(&v1, &moved).unwrap();
    assert_eq!(
        changed.num_rows() as u64,
        2 * CHANGES,
        "updated + added rows of version 1"
    );
    let want = concat_batches(&v0.schema(), &[v0.clone(), changed]).unwrap();

    let lake = p.read_stream("sales", "shop", "orders");
    assert_eq!(lake.num_rows(), want.num_rows());
    // Same multiset: compare sorted by (id, updated_at).
    let sort = |b: &RecordBatch| {
        let cols = [
            arrow::compute::SortColumn {
                values: b.column_by_name("id").unwrap().clone(),
                options: None,
            },
            arrow::compute::SortColumn {
                values: b.column_by_name("updated_at").unwrap().clone(),
                options: None,
            },
        ];
        let idx = arrow::compute::lexsort_to_indices(&cols, None).unwrap();
        take_record_batch(b, &idx).unwrap()
    };
    let (a, e) = (sort(&lake), sort(&want));
    for field in e.schema().fields() {
        assert!(
            a.column_by_name(field.name()).unwrap().as_ref()
                == e.column_by_name(field.name()).unwrap().as_ref(),
            "column {} differs",
            field.name()
        );
    }
}

#[test]
fn ctrl_c_stops_cleanly_and_commits_nothing_half_done() {
    let p = TestProject::with_lake(BIN, "1ms");
    p.product(
        "sales",
        "shop",
        &product(CTRL_C_SCALE, 0, "orders", "full_refresh", "append"),
    );
    // Interrupt right after the first commit, while most of the copy is still to come: the
    // run waits at the pausepoint until the signal is in.
    let release = p.path().join("release");
    let mut cmd = p.weft(["sync", "run", "--no-progress"]);
    cmd.env(
        "WEFT_PAUSEPOINT",
        format!("after_commit:{}", release.display()),
    );
    let mut run = weft_testkit::Running::spawn(cmd);
    let limit = Duration::from_secs(120);
    run.wait_for_line("pausepoint `after_commit` reached", limit);
    let dir = p.stream_dir("sales", "shop", "orders");
    assert!(
        manifest_checkpoint(&dir).is_some(),
        "the first commit is in the manifest"
    );
    run.signal(libc::SIGINT);
    run.wait_for_line("interrupted (Ctrl-C)", limit);
    std::fs::write(&release, "").unwrap();
    let out = run.finish(limit);
    let stderr = out.stderr();
    assert_eq!(out.code(), Some(130), "stderr: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(staging_is_empty(&dir), "uncommitted files were left behind");
    // What is visible is exactly what the manifest committed.
    let mut committed = committed_files(&dir);
    committed.sort();
    assert_eq!(visible_files(&dir), committed);
    let history = p.run(["sync", "history", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_str(&history.expect_code(0).stdout()).unwrap();
    assert_eq!(runs[0]["status"], "cancelled");

    // The next run completes the copy from the last commit.
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    assert_same_rows(
        &p.read_stream("sales", "shop", "orders"),
        &expected(CTRL_C_SCALE, 0, "orders", 0),
    );
}

const CTRL_C_SCALE: u64 = 200_000;

#[test]
fn every_sample_stream_lands_with_its_logical_types() {
    let p = TestProject::one_product(BIN, "sales",
        "shop",
        "product: shop\ndomain: sales\nowner: o@example.com\ndescription: d\nsource:\n  connector: sample\n  config: { scale: 20000 }\nstreams:\n  - name: customers\n  - name: orders\n  - name: products\n");
    let out = p.run(["sync", "run", "--no-progress"]);
    out.expect_code(0);
    assert!(
        out.stdout().contains("sales/shop/orders"),
        "{}",
        out.stdout()
    );
    for (stream, rows) in [("customers", 2000), ("orders", 20000), ("products", 200)] {
        let lake = p.read_stream("sales", "shop", stream);
        assert_eq!(lake.num_rows(), rows, "{stream}");
        assert_same_rows(&lake, &expected(20000, 0, stream, 0));
    }
    let orders = p.read_stream("sales", "shop", "orders");
    let schema = orders.schema();
    assert_eq!(
        schema.field_with_name("updated_at").unwrap().data_type(),
        &arrow::datatypes::DataType::Timestamp(
            arrow::datatypes::TimeUnit::Microsecond,
            Some(Arc::from("UTC"))
        )
    );
    assert_eq!(
        schema.field_with_name("amount").unwrap().data_type(),
        &arrow::datatypes::DataType::Decimal128(12, 2)
    );
    assert_eq!(
        schema.field_with_name("ordered_on").unwrap().data_type(),
        &arrow::datatypes::DataType::Date32
    );
}

#[test]
fn incremental_dedup_splicing_its_files_survives_kills() {
    let mut rng = Rng::new("dedup-splice");
    // Row groups of 4 MiB: the published file has many, and the merge splices it (copies the
    // row groups without a changed key, encodes the others again) instead of encoding it whole.
    let p = TestProject::new(
        BIN,
        "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n      row_group_bytes: 4194304\n  commit_interval: 100ms\n",
    );
    p.product(
        "sales",
        "shop",
        &product(SCALE, CHANGES, "orders", "incremental", "append_dedup"),
    );
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let dir = p.stream_dir("sales", "shop", "orders");
    let groups: usize = committed_files(&dir)
        .iter()
        .map(|f| {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(f).unwrap(),
            )
            .unwrap()
            .metadata()
            .num_row_groups()
        })
        .sum();
    assert!(groups >= 4, "{groups} row groups");

    // Version 1 under kills, some landing in the splicing compaction.
    run_with_kills(&p, &mut rng, 4, 1, || {});
    let lake = p.read_stream("sales", "shop", "orders");
    assert_unique_ids(&lake);
    assert_same_rows(&lake, &expected(SCALE, CHANGES, "orders", 1));
    assert!(staging_is_empty(&dir));
}
