//! Reads through the public `Source` API, compared with the independently computed tables.

use arrow::array::{Array, AsArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use weft_core::{
    Checkpoint, ConfiguredStream, ConnectorContext, Source, SourceFactory, SourceMessage, SyncMode,
    WriteMode,
};
use weft_source_sample::model::{change_time_us, CHANGES_BASE_US, HOUR_US};
use weft_source_sample::{
    expected_changes, expected_rows, stream_schema, RowsRead, SampleConfig, SampleSource,
    SampleSourceFactory, SampleState, SampleStream,
};

fn source(config: &SampleConfig) -> SampleSource {
    SampleSource::new(config.clone()).unwrap()
}

fn configured(src: &SampleSource, stream: &str, mode: SyncMode) -> ConfiguredStream {
    let descriptor = src.catalog().stream(stream).unwrap().clone();
    ConfiguredStream {
        primary_key: descriptor.primary_key.clone(),
        cursor_field: (mode == SyncMode::Incremental).then(|| "updated_at".to_string()),
        descriptor,
        sync_mode: mode,
        write_mode: WriteMode::Append,
        pipeline_id: "test.product.stream".into(),
        follow: false,
    }
}

/// Every message of a read.
async fn read_all(
    src: &SampleSource,
    stream: &str,
    mode: SyncMode,
    state: Option<&Checkpoint>,
) -> Vec<SourceMessage> {
    let mut messages = src
        .read(&configured(src, stream, mode), state)
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(msg) = messages.next().await {
        out.push(msg.unwrap());
    }
    out
}

fn batches(messages: &[SourceMessage]) -> Vec<RecordBatch> {
    messages
        .iter()
        .filter_map(|m| match m {
            SourceMessage::Records(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn checkpoints(messages: &[SourceMessage]) -> Vec<Checkpoint> {
    messages
        .iter()
        .filter_map(|m| match m {
            SourceMessage::Checkpoint(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn last_state(messages: &[SourceMessage]) -> SampleState {
    match messages.last() {
        Some(SourceMessage::Checkpoint(c)) => c.decode().unwrap(),
        other => panic!("a read must end with a checkpoint, got {other:?}"),
    }
}

fn table(stream: &str, batches: &[RecordBatch]) -> RecordBatch {
    concat_batches(&stream_schema(stream), batches).unwrap()
}

fn ids(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

fn updated_at(batch: &RecordBatch) -> Vec<i64> {
    let col = batch.column_by_name("updated_at").unwrap();
    col.as_primitive::<TimestampMicrosecondType>()
        .values()
        .to_vec()
}

/// The rows of `full` whose id is in `wanted`, in order.
fn select_ids(full: &RecordBatch, wanted: &[i64]) -> RecordBatch {
    let keep: arrow::array::BooleanArray = ids(full)
        .iter()
        .map(|id| Some(wanted.binary_search(id).is_ok()))
        .collect();
    arrow::compute::filter_record_batch(full, &keep).unwrap()
}

#[tokio::test]
async fn the_same_config_gives_identical_batches_matching_expected_rows() {
    let config = SampleConfig::new(5_000).with_batch_size(700).with_seed(42);
    for stream in ["customers", "orders", "products"] {
        let first = read_all(&source(&config), stream, SyncMode::FullRefresh, None).await;
        let second = read_all(&source(&config), stream, SyncMode::FullRefresh, None).await;
        let (a, b) = (batches(&first), batches(&second));
        assert_eq!(a, b, "{stream}");
        let expected: Vec<RecordBatch> = expected_rows(&config, stream, 0).collect();
        assert_eq!(a, expected, "{stream}");
        let rows: usize = a.iter().map(|b| b.num_rows()).sum();
        assert_eq!(
            rows,
            [500, 5_000, 50][SampleStream::from_name(stream).unwrap() as usize]
        );
        assert_eq!(
            ids(&table(stream, &a)),
            (1..=rows as i64).collect::<Vec<_>>()
        );
    }
    let other_seed = config.clone().with_seed(43);
    assert_ne!(
        expected_rows(&config, "orders", 0).next(),
        expected_rows(&other_seed, "orders", 0).next()
    );
}

#[tokio::test]
async fn a_read_starts_with_an_estimate_and_ends_with_a_complete_checkpoint() {
    let config = SampleConfig::new(2_500).with_batch_size(1_000);
    let messages = read_all(&source(&config), "orders", SyncMode::FullRefresh, None).await;
    assert!(matches!(
        messages[0],
        SourceMessage::Estimate { rows: 2_500 }
    ));
    // Estimate, then (batch, checkpoint) × 3.
    assert_eq!(messages.len(), 7);
    let states: Vec<SampleState> = checkpoints(&messages)
        .iter()
        .map(|c| c.decode().unwrap())
        .collect();
    assert_eq!(
        states
            .iter()
            .map(|s| (s.last_id, s.complete))
            .collect::<Vec<_>>(),
        vec![(1_000, false), (2_000, false), (2_500, true)]
    );
    assert_eq!(states[2].rows, RowsRead::All);
    assert_eq!(states[2].cursor, None);
}

#[tokio::test]
async fn values_are_sensible() {
    let config = SampleConfig::new(20_000);
    let orders = table(
        "orders",
        &expected_rows(&config, "orders", 0).collect::<Vec<_>>(),
    );
    let customer_ids = orders.column_by_name("customer_id").unwrap();
    let customer_ids = customer_ids.as_primitive::<Int64Type>();
    assert!(customer_ids
        .values()
        .iter()
        .all(|&c| (1..=2_000).contains(&c)));
    let notes = orders.column_by_name("note").unwrap();
    // About one order in five has a note.
    let with_note = notes.len() - notes.null_count();
    assert!((3_000..5_000).contains(&with_note), "{with_note}");
    let statuses = orders.column_by_name("status").unwrap();
    let statuses = statuses.as_string::<i32>();
    let distinct: std::collections::BTreeSet<&str> = statuses.iter().flatten().collect();
    assert_eq!(distinct.len(), 5);

    let customers = expected_rows(&config, "customers", 0).next().unwrap();
    let email = customers.column_by_name("email").unwrap();
    let name = customers.column_by_name("name").unwrap();
    let (email, name) = (email.as_string::<i32>(), name.as_string::<i32>());
    assert!(
        email.value(0).ends_with("1@example.com"),
        "{}",
        email.value(0)
    );
    assert_eq!(name.value(0).split(' ').count(), 2, "{}", name.value(0));
    let products = expected_rows(&config, "products", 0).next().unwrap();
    let sku = products.column_by_name("sku").unwrap();
    assert_eq!(sku.as_string::<i32>().value(6), "SKU-00000007");
}

#[tokio::test]
async fn a_full_refresh_resumed_mid_read_yields_exactly_the_rest() {
    let config = SampleConfig::new(10_000).with_batch_size(1_500);
    let src = source(&config);
    let whole = read_all(&src, "orders", SyncMode::FullRefresh, None).await;
    let cps = checkpoints(&whole);
    // Crash after the third batch: resume from its checkpoint.
    let resumed = read_all(&src, "orders", SyncMode::FullRefresh, Some(&cps[2])).await;
    assert!(matches!(
        resumed[0],
        SourceMessage::Estimate { rows: 5_500 }
    ));
    let mut stitched = batches(&whole)[..3].to_vec();
    stitched.extend(batches(&resumed));
    assert_eq!(
        table("orders", &stitched),
        table("orders", &batches(&whole))
    );
    assert!(last_state(&resumed).complete);
}

#[tokio::test]
async fn incremental_ties_split_by_a_checkpoint_are_neither_lost_nor_duplicated() {
    // Base rows share `updated_at` in groups of 1000 ids; batches of 300 cut groups apart.
    let config = SampleConfig::new(5_000).with_batch_size(300);
    let src = source(&config);
    let whole = read_all(&src, "orders", SyncMode::Incremental, None).await;
    let cps = checkpoints(&whole);
    let mid: SampleState = cps[4].decode().unwrap();
    assert_eq!(mid.last_id, 1_500);
    // The checkpoint's cursor is shared with rows 1001..=2000, half of them not yet read.
    let whole_table = table("orders", &batches(&whole));
    let ua = updated_at(&whole_table);
    assert_eq!(mid.cursor, Some(ua[1_499]));
    assert_eq!(ua[1_000], ua[1_999]);

    let resumed = read_all(&src, "orders", SyncMode::Incremental, Some(&cps[4])).await;
    let rest = table("orders", &batches(&resumed));
    assert_eq!(ids(&rest), (1_501..=5_000).collect::<Vec<_>>());
    let mut stitched = batches(&whole)[..5].to_vec();
    stitched.extend(batches(&resumed));
    assert_eq!(table("orders", &stitched), whole_table);
    // (updated_at, id) strictly increases across the whole read.
    let order: Vec<(i64, i64)> = ua.into_iter().zip(ids(&whole_table)).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn the_next_incremental_version_yields_exactly_the_changed_rows() {
    let config = SampleConfig::new(2_000)
        .with_batch_size(64)
        .with_changes_per_run(50);
    let src = source(&config);
    let v0 = read_all(&src, "customers", SyncMode::Incremental, None).await;
    let v0_state = last_state(&v0);
    assert_eq!((v0_state.version, v0_state.complete), (0, true));
    let v0_table = table("customers", &batches(&v0));
    assert_eq!(v0_table.num_rows(), 200);

    let v1 = read_all(
        &src,
        "customers",
        SyncMode::Incremental,
        checkpoints(&v0).last(),
    )
    .await;
    assert!(matches!(v1[0], SourceMessage::Estimate { rows: 100 }));
    let v1_table = table("customers", &batches(&v1));
    let changed = ids(&v1_table);
    assert_eq!(changed.len(), 100);
    // 50 existing ids were updated, ids 201..=250 were added.
    assert_eq!(changed.iter().filter(|&&id| id <= 200).count(), 50);
    assert_eq!(changed[50..], (201..=250).collect::<Vec<_>>());
    // Every change carries the version's time: one big cursor tie, after all base rows.
    let t1 = change_time_us(1);
    assert_eq!(t1, CHANGES_BASE_US + HOUR_US);
    assert!(updated_at(&v1_table).iter().all(|&t| t == t1));
    // The values are those of the table at version 1.
    let full_v1 = table(
        "customers",
        &expected_rows(&config, "customers", 1).collect::<Vec<_>>(),
    );
    assert_eq!(full_v1.num_rows(), 250);
    assert_eq!(select_ids(&full_v1, &changed), v1_table);
    assert_eq!(
        v1_table,
        table(
            "customers",
            &expected_changes(&config, "customers", 1).collect::<Vec<_>>()
        )
    );
    // Unchanged rows are as they were in version 0.
    let unchanged: Vec<i64> = (1..=200).filter(|id| !changed.contains(id)).collect();
    assert_eq!(
        select_ids(&full_v1, &unchanged),
        select_ids(&v0_table, &unchanged)
    );
    // An updated row keeps its identity (name, email, created_at) but its value changed.
    let updated = changed[0];
    let (old, new) = (
        select_ids(&v0_table, &[updated]),
        select_ids(&v1_table, &[updated]),
    );
    for col in ["name", "email", "created_at"] {
        assert_eq!(old.column_by_name(col), new.column_by_name(col), "{col}");
    }
    assert_ne!(old, new);

    let v1_state = last_state(&v1);
    assert_eq!(
        (v1_state.version, v1_state.rows, v1_state.complete),
        (1, RowsRead::Changed, true)
    );
    assert_eq!(v1_state.cursor, Some(t1));
    // Interrupted version 2, resumed after its first batch.
    let v2 = read_all(
        &src,
        "customers",
        SyncMode::Incremental,
        checkpoints(&v1).last(),
    )
    .await;
    let v2_cps = checkpoints(&v2);
    let v2_resumed = read_all(&src, "customers", SyncMode::Incremental, Some(&v2_cps[0])).await;
    let mut stitched = batches(&v2)[..1].to_vec();
    stitched.extend(batches(&v2_resumed));
    assert_eq!(
        table("customers", &stitched),
        table("customers", &batches(&v2))
    );
    assert_eq!(last_state(&v2_resumed).version, 2);
}

#[tokio::test]
async fn a_full_refresh_after_changes_equals_expected_rows() {
    let config = SampleConfig::new(3_000)
        .with_batch_size(1_000)
        .with_changes_per_run(40);
    let src = source(&config);
    let mut state: Option<Checkpoint> = None;
    for version in 0..3 {
        let messages = read_all(&src, "orders", SyncMode::FullRefresh, state.as_ref()).await;
        let got = table("orders", &batches(&messages));
        let expected = table(
            "orders",
            &expected_rows(&config, "orders", version).collect::<Vec<_>>(),
        );
        assert_eq!(got.num_rows(), 3_000 + 40 * version as usize);
        assert_eq!(got, expected, "version {version}");
        assert_eq!(last_state(&messages).version, version);
        state = checkpoints(&messages).pop();
    }
}

#[tokio::test]
async fn without_changes_incremental_is_up_to_date_and_full_refresh_rereads() {
    let config = SampleConfig::new(1_000);
    let src = source(&config);
    let first = read_all(&src, "products", SyncMode::Incremental, None).await;
    let done = checkpoints(&first).pop().unwrap();
    let again = read_all(&src, "products", SyncMode::Incremental, Some(&done)).await;
    assert_eq!(batches(&again).len(), 0);
    assert!(matches!(again[0], SourceMessage::Estimate { rows: 0 }));
    assert_eq!(checkpoints(&again), vec![done.clone()]);
    let full = read_all(&src, "products", SyncMode::FullRefresh, Some(&done)).await;
    assert_eq!(table("products", &batches(&full)).num_rows(), 10);
}

#[tokio::test]
async fn bad_cursor_state_and_stream_are_clear_errors() {
    let src = source(&SampleConfig::new(100));
    let mut stream = configured(&src, "orders", SyncMode::Incremental);
    stream.cursor_field = Some("created_at".into());
    let err = src.read(&stream, None).await.err().unwrap().to_string();
    assert_eq!(
        err,
        "invalid config at `cursor_field`: stream `orders` can only be read incrementally by \
         `updated_at`, not `created_at`; set `cursor_field: updated_at`"
    );

    let stream = configured(&src, "orders", SyncMode::FullRefresh);
    let garbage = Checkpoint::new(serde_json::json!({"page": 3}));
    let err = src
        .read(&stream, Some(&garbage))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("stream `orders`: the saved state is not a sample-source checkpoint"),
        "{err}"
    );
    assert!(err.contains("reset the stream's state"), "{err}");

    let mut unknown = stream.clone();
    unknown.descriptor.name = weft_core::StreamName::new("invoices").unwrap();
    let err = src.read(&unknown, None).await.err().unwrap().to_string();
    assert!(err.contains("stream `invoices` not found"), "{err}");
}

#[tokio::test]
async fn the_factory_parses_config_and_discovers_three_streams() {
    let ctx = ConnectorContext {
        project_dir: std::env::temp_dir(),
    };
    let factory = SampleSourceFactory;
    assert_eq!(factory.name(), "sample");
    let src = factory
        .build(&serde_json::json!({"scale": 300, "seed": 1}), &ctx)
        .unwrap();
    src.check().await.unwrap();
    let catalog = src.discover().await.unwrap();
    let names: Vec<_> = catalog.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["customers", "orders", "products"]);
    let orders = catalog.stream("orders").unwrap();
    assert_eq!(orders.row_estimate, Some(300));
    assert_eq!(orders.primary_key, ["id"]);
    assert_eq!(orders.cursor_candidates, ["updated_at"]);
    assert!(!orders.schema.field_with_name("id").unwrap().is_nullable());
    assert!(orders.schema.field_with_name("note").unwrap().is_nullable());

    let err = factory
        .build(&serde_json::json!({"batch_size": 0}), &ctx)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid config at `batch_size`: must be at least 1"
    );
}

#[test]
fn dropping_the_stream_stops_generation() {
    // 50M rows take many seconds to generate; dropping after one batch must not wait for them.
    let src = source(&SampleConfig::new(50_000_000).with_batch_size(10_000));
    let stream = configured(&src, "orders", SyncMode::FullRefresh);
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for _ in 0..3 {
            let mut messages = src.read(&stream, None).await.unwrap();
            let _ = messages.next().await;
            let _ = messages.next().await;
        }
    });
    // Dropping a runtime waits for its blocking tasks: a quick drop shows the generators
    // stopped.
    drop(runtime);
    let elapsed = started.elapsed();
    assert!(elapsed < std::time::Duration::from_secs(5), "{elapsed:?}");
}

/// Generation speed of `orders`; run with `cargo test --release -- --ignored throughput`.
#[test]
#[ignore]
fn throughput() {
    let config = SampleConfig::new(5_000_000);
    let started = std::time::Instant::now();
    let rows: usize = expected_rows(&config, "orders", 0)
        .map(|b| b.num_rows())
        .sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "orders: {rows} rows in {secs:.2}s = {:.1}M rows/s",
        rows as f64 / secs / 1e6
    );
}
