//! The PostgreSQL product store read back as an upstream (`source: { product: … }`), against a
//! real server: a read checkpoints after every batch, and resuming from each checkpoint yields
//! exactly the rows the read from scratch yielded after it (compared as multisets), for a
//! single-column key, a composite key, a keyless append table and an overwrite, in full-refresh
//! and incremental mode; a row updated upstream between a kill and the resume is read once.

use std::sync::Arc;

use futures::StreamExt;
use weft_conformance::table::{Diff, Row, Table};
use weft_core::arrow_array::{Int64Array, RecordBatch, StringArray};
use weft_core::arrow_schema::{DataType, Field, Schema, SchemaRef};
use weft_core::{
    Checkpoint, ConfiguredStream, Destination, DestinationFactory, DomainName, ProductName, Source,
    SourceMessage, StreamDescriptor, StreamName, StreamTarget, SyncMode, WriteMode,
};
use weft_destination_postgres::PostgresDestinationFactory;
use weft_testkit::pg::PgTestDb;

fn destination(db: &PgTestDb) -> Box<dyn Destination> {
    let ctx = weft_core::ConnectorContext {
        project_dir: std::env::temp_dir(),
    };
    let config = db.config_json();
    PostgresDestinationFactory.build(&config, &ctx).unwrap()
}

fn reader(dest: &dyn Destination) -> Box<dyn Source> {
    dest.product_reader(
        &DomainName::new("finance").unwrap(),
        &ProductName::new("revenue").unwrap(),
    )
    .expect("the PostgreSQL store reads products back")
    .unwrap()
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, false),
        Field::new("b", DataType::Utf8, false),
        Field::new("v", DataType::Utf8, true),
    ]))
}

fn batch(rows: &[(i64, String, String)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.2))),
        ],
    )
    .unwrap()
}

/// One upstream run writing `commits` (each a list of rows) to `stream`.
async fn publish(
    dest: &dyn Destination,
    stream: &str,
    write: WriteMode,
    key: &[&str],
    run: &str,
    commits: Vec<Vec<(i64, String, String)>>,
) {
    let target = StreamTarget {
        domain: DomainName::new("finance").unwrap(),
        product: ProductName::new("revenue").unwrap(),
        stream: StreamName::new(stream).unwrap(),
        run_id: run.into(),
        metadata: Default::default(),
    };
    let key: Vec<String> = key.iter().map(|k| k.to_string()).collect();
    let configured = ConfiguredStream {
        descriptor: StreamDescriptor {
            name: StreamName::new(stream).unwrap(),
            schema: schema(),
            primary_key: key.clone(),
            cursor_candidates: vec![],
            source_defined_cursor: None,
            supported_sync_modes: vec![SyncMode::FullRefresh],
            row_estimate: None,
        },
        sync_mode: SyncMode::FullRefresh,
        write_mode: write,
        cursor_field: None,
        primary_key: key,
        pipeline_id: format!("finance.revenue.{stream}"),
        follow: false,
    };
    let mut w = dest.open(&target, &configured, schema()).await.unwrap();
    let last = commits.len();
    for (i, rows) in commits.into_iter().enumerate() {
        w.write(batch(&rows)).await.unwrap();
        let cp = Checkpoint::new(serde_json::json!({ "run": run, "commit": i }));
        if i + 1 == last {
            w.finish(&cp).await.unwrap();
        } else {
            w.commit(&cp).await.unwrap();
        }
    }
}

/// The stream as a consumer configures it: incremental reads are settled by key.
fn consumer(source: &StreamDescriptor, mode: SyncMode, write: WriteMode) -> ConfiguredStream {
    ConfiguredStream {
        descriptor: source.clone(),
        sync_mode: mode,
        write_mode: write,
        cursor_field: None,
        primary_key: vec![],
        pipeline_id: "marketing.margins.s".into(),
        follow: false,
    }
}

/// Everything one read yielded: its rows and each checkpoint with the rows before it.
struct Read {
    rows: Vec<Row>,
    checkpoints: Vec<(Checkpoint, usize)>,
}

async fn read(source: &dyn Source, stream: &ConfiguredStream, from: Option<&Checkpoint>) -> Read {
    read_until(source, stream, from, usize::MAX).await
}

/// Reads until `checkpoints` checkpoints were seen (a consumer killed right after a commit).
async fn read_until(
    source: &dyn Source,
    stream: &ConfiguredStream,
    from: Option<&Checkpoint>,
    checkpoints: usize,
) -> Read {
    let mut messages = source.read(stream, from).await.unwrap();
    let mut table = Table::new(["a", "b", "v"]);
    let mut cps = Vec::new();
    while let Some(m) = messages.next().await {
        match m.unwrap() {
            SourceMessage::Records(b) => table.push_batch(&b).unwrap(),
            SourceMessage::Checkpoint(cp) => {
                cps.push((cp, table.rows.len()));
                if cps.len() == checkpoints {
                    break;
                }
            }
            other => panic!("unexpected message {other:?}"),
        }
    }
    Read {
        rows: table.rows,
        checkpoints: cps,
    }
}

fn rows(
    range: std::ops::Range<i64>,
    b: impl Fn(i64) -> String,
    v: &str,
) -> Vec<(i64, String, String)> {
    range.map(|i| (i, b(i), format!("{v} {i}"))).collect()
}

/// Resumes `stream` from every checkpoint of a read from scratch: exactly the rest each time.
async fn assert_resumes_exactly(source: &dyn Source, stream: &ConfiguredStream, total: usize) {
    let label = format!("{} ({})", stream.name(), stream.sync_mode);
    let scratch = read(source, stream, None).await;
    assert_eq!(scratch.rows.len(), total, "{label}: rows read from scratch");
    assert!(
        scratch.checkpoints.len() >= 3,
        "{label}: a checkpoint after every batch, got {:?}",
        scratch.checkpoints.iter().map(|c| c.1).collect::<Vec<_>>()
    );
    let (last, rest) = scratch.checkpoints.split_last().unwrap();
    assert_eq!(
        last.1, total,
        "{label}: the last checkpoint follows every row"
    );
    for (i, (cp, offset)) in rest.iter().enumerate() {
        assert!(*offset > 0, "{label}: checkpoint #{i} before any row");
        let resumed = read(source, stream, Some(cp)).await;
        let diff = Diff::of(&scratch.rows[*offset..], &resumed.rows);
        assert!(
            diff.is_empty(),
            "{label}: resuming from checkpoint #{i} {} (after {offset} of {total} rows): {}",
            cp.position(),
            diff.describe()
        );
    }
}

#[tokio::test]
async fn reads_resume_from_every_checkpoint_with_exactly_the_rest() {
    let db = PgTestDb::create("pgreader_resume");
    let dest = destination(&db);
    // A single-column key, loaded in three commits, then a second run updating a slice and
    // adding rows: heap order is no longer key order.
    let text = |i: i64| format!("k{i}");
    publish(
        dest.as_ref(),
        "orders",
        WriteMode::AppendDedup,
        &["a"],
        "run-1",
        vec![
            rows(0..7000, text, "first"),
            rows(7000..14000, text, "first"),
            rows(14000..20000, text, "first"),
        ],
    )
    .await;
    publish(
        dest.as_ref(),
        "orders",
        WriteMode::AppendDedup,
        &["a"],
        "run-2",
        vec![
            rows(5000..6000, text, "second"),
            rows(20000..21000, text, "second"),
        ],
    )
    .await;
    // A composite key whose second column alone repeats (a line number per order).
    let lines: Vec<(i64, String, String)> = (0..5000)
        .flat_map(|order| {
            (0..4).map(move |line| {
                (
                    line,
                    format!("order {order:05}"),
                    format!("l{order}-{line}"),
                )
            })
        })
        .collect();
    publish(
        dest.as_ref(),
        "lines",
        WriteMode::AppendDedup,
        &["b", "a"],
        "run-1",
        vec![lines[..9000].to_vec(), lines[9000..].to_vec()],
    )
    .await;
    // Without a key: heap order.
    publish(
        dest.as_ref(),
        "events",
        WriteMode::Append,
        &[],
        "run-1",
        vec![rows(0..9000, text, "e"), rows(9000..18000, text, "e")],
    )
    .await;
    // An overwrite with a key.
    publish(
        dest.as_ref(),
        "snapshot",
        WriteMode::Overwrite,
        &["a"],
        "run-1",
        vec![rows(0..9000, text, "s"), rows(9000..18000, text, "s")],
    )
    .await;

    let source = reader(dest.as_ref());
    let catalog = source.discover().await.unwrap();
    let totals = [
        ("orders", 21000),
        ("lines", 20000),
        ("events", 18000),
        ("snapshot", 18000),
    ];
    for (name, total) in totals {
        let d = catalog
            .stream(name)
            .unwrap_or_else(|| panic!("`{name}` discovered"));
        assert_resumes_exactly(
            source.as_ref(),
            &consumer(d, SyncMode::FullRefresh, WriteMode::Overwrite),
            total,
        )
        .await;
        if d.supported_sync_modes.contains(&SyncMode::Incremental) {
            assert_resumes_exactly(
                source.as_ref(),
                &consumer(d, SyncMode::Incremental, WriteMode::AppendDedup),
                total,
            )
            .await;
        }
    }
}

#[tokio::test]
async fn a_row_updated_upstream_between_a_kill_and_the_resume_is_read_once() {
    let db = PgTestDb::create("pgreader_update");
    let dest = destination(&db);
    let text = |i: i64| format!("k{i}");
    publish(
        dest.as_ref(),
        "orders",
        WriteMode::AppendDedup,
        &["a"],
        "run-1",
        vec![rows(0..20000, text, "first")],
    )
    .await;
    let source = reader(dest.as_ref());
    let catalog = source.discover().await.unwrap();
    let stream = consumer(
        catalog.stream("orders").unwrap(),
        SyncMode::FullRefresh,
        WriteMode::Overwrite,
    );
    // Killed after the first batch's commit.
    let before = read_until(source.as_ref(), &stream, None, 1).await;
    let (cp, offset) = before.checkpoints[0].clone();
    assert_eq!(offset, before.rows.len());
    assert!(
        offset > 0 && offset < 20000,
        "killed mid-read, after {offset} rows"
    );
    // The upstream updates rows on both sides of the position (the new row versions land at
    // the heap's end) before the consumer resumes.
    publish(
        dest.as_ref(),
        "orders",
        WriteMode::AppendDedup,
        &["a"],
        "run-2",
        vec![[
            rows(0..100, text, "second"),
            rows(19900..20000, text, "second"),
        ]
        .concat()],
    )
    .await;
    let after = read(source.as_ref(), &stream, Some(&cp)).await;
    let mut keys: Vec<&str> = before
        .rows
        .iter()
        .chain(&after.rows)
        .map(|r| r[0].as_deref().unwrap())
        .collect();
    keys.sort_unstable();
    let read_twice: Vec<&&str> = keys
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    assert!(
        read_twice.is_empty(),
        "keys read twice: {} (e.g. {:?})",
        read_twice.len(),
        &read_twice[..read_twice.len().min(3)]
    );
    assert_eq!(keys.len(), 20000, "every key read once");
    // The rows past the position are read as they are now.
    assert!(after
        .rows
        .iter()
        .any(|r| r[2].as_deref() == Some("second 19999")));
}
