//! CDC against real PostgreSQL servers: a private cluster with `wal_level=logical` per test
//! (skipped with a notice where one cannot start, never in CI), and the shared server (wal_level
//! replica) for the wal_level error. Every test applies the emitted change rows to a model
//! (key → row text, keeping unchanged TOASTed values) and compares it with the table.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::*;
use futures::StreamExt;
use weft_core::{
    ChangeOp, Checkpoint, ConfiguredStream, MessageStream, Source, SourceMessage, SyncMode,
    WriteMode,
};
use weft_source_postgres::{PostgresConfig, PostgresSource, Secret, Transport};
use weft_testkit::pg::{ClusterOptions, PgTestDb, PrivateCluster};

const DB: &str = "app";

fn cluster() -> Option<PrivateCluster> {
    let c = PrivateCluster::start(ClusterOptions::default())?;
    c.sql("postgres", &format!("CREATE DATABASE {DB}"));
    // The private cluster runs with synchronous_commit=off, where a commit returns before its
    // WAL is flushed; a read flushes it before catching up (tested on its own by
    // `changes_committed_right_before_a_read_are_in_it`); the other tests commit synchronously.
    c.sql("postgres", "ALTER SYSTEM SET synchronous_commit = on");
    c.sql("postgres", "SELECT pg_reload_conf()");
    Some(c)
}

tokio::task_local! {
    /// The transport a scenario runs with (see [`both_transports!`]).
    static TRANSPORT: Transport;
}

/// `WEFT_TEST_CDC_TRANSPORT=poll|stream`: only that transport's runs of each scenario.
fn only_transport() -> Option<Transport> {
    match std::env::var("WEFT_TEST_CDC_TRANSPORT").as_deref() {
        Ok("poll") => Some(Transport::Poll),
        Ok("stream") => Some(Transport::Stream),
        Ok(other) => panic!("WEFT_TEST_CDC_TRANSPORT={other}: use poll or stream"),
        Err(_) => None,
    }
}

/// The transport under test: the scenario's, else `WEFT_TEST_CDC_TRANSPORT`, else the
/// config's default.
fn transport() -> Transport {
    TRANSPORT.try_with(|t| *t).unwrap_or_else(|_| {
        only_transport().unwrap_or(PostgresConfig::new("h", 1, "u", "d").replication.transport)
    })
}

/// Runs each scenario once per transport: `<scenario>::poll` and `<scenario>::stream`.
macro_rules! both_transports {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn poll() {
                if only_transport().is_some_and(|t| t != Transport::Poll) {
                    return;
                }
                TRANSPORT.scope(Transport::Poll, super::$name()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stream() {
                if only_transport().is_some_and(|t| t != Transport::Stream) {
                    return;
                }
                TRANSPORT.scope(Transport::Stream, super::$name()).await
            }
        }
    )*};
}

both_transports!(
    snapshot_hands_over_to_the_slot_without_gap_or_overlap,
    every_kind_of_change_applies_in_order,
    resuming_from_a_mid_stream_checkpoint_duplicates_nothing,
    an_idle_table_does_not_pin_wal,
    following_reads_schema_changes_and_stops_at_a_dropped_column,
    a_crash_mid_snapshot_resumes_and_converges,
    a_key_change_never_loses_an_untouched_toasted_value,
    a_lost_connection_or_a_busy_slot_stops_the_read_clearly,
    following_acks_move_the_slot_while_the_table_is_idle,
    changes_committed_right_before_a_read_are_in_it,
    following_confirms_applied_positions_promptly,
);

fn config(c: &PrivateCluster) -> PostgresConfig {
    let mut cfg = PostgresConfig::new(&c.host, c.port, &c.user, DB);
    cfg.password = Some(Secret::new(c.password()));
    cfg.replication.transport = transport();
    cfg
}

async fn configured(source: &PostgresSource, name: &str, pipeline: &str) -> ConfiguredStream {
    let catalog = source.discover().await.unwrap();
    let descriptor = catalog
        .stream(name)
        .unwrap_or_else(|| panic!("{name} in {:?}", catalog.streams))
        .clone();
    assert!(descriptor.supported_sync_modes.contains(&SyncMode::Cdc));
    ConfiguredStream {
        primary_key: descriptor.primary_key.clone(),
        descriptor,
        sync_mode: SyncMode::Cdc,
        write_mode: WriteMode::AppendDedup,
        cursor_field: None,
        pipeline_id: pipeline.into(),
        follow: false,
    }
}

/// Reads to the end.
async fn read_all(
    source: &PostgresSource,
    stream: &ConfiguredStream,
    state: Option<&Checkpoint>,
) -> Vec<SourceMessage> {
    let mut messages = source.read(stream, state).await.unwrap();
    let mut all = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(60), messages.next())
        .await
        .expect("the read stalled")
    {
        all.push(m.unwrap_or_else(|e| panic!("{e}")));
    }
    assert!(
        matches!(all.last(), Some(SourceMessage::Checkpoint(_))),
        "a finished read ends with a checkpoint"
    );
    all
}

async fn read_err(
    source: &PostgresSource,
    stream: &ConfiguredStream,
    state: Option<&Checkpoint>,
) -> String {
    match source.read(stream, state).await {
        Err(e) => e.to_string(),
        Ok(mut messages) => {
            while let Some(m) = messages.next().await {
                if let Err(e) = m {
                    return e.to_string();
                }
            }
            panic!("the read succeeded")
        }
    }
}

async fn next(messages: &mut MessageStream) -> weft_core::Result<SourceMessage> {
    tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .expect("the follow read stalled")
        .expect("the follow read ended")
}

fn last_checkpoint(messages: &[SourceMessage]) -> Checkpoint {
    messages
        .iter()
        .rev()
        .find_map(|m| match m {
            SourceMessage::Checkpoint(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap()
}

fn lsn_of(cp: &Checkpoint) -> u64 {
    let text = cp.position()["lsn"].as_str().unwrap().to_string();
    parse_lsn(&text)
}

fn parse_lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').unwrap();
    u64::from_str_radix(hi, 16).unwrap() << 32 | u64::from_str_radix(lo, 16).unwrap()
}

fn show(a: &dyn Array, i: usize) -> String {
    if a.is_null(i) {
        return "NULL".into();
    }
    match a.data_type() {
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i).to_string(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Utf8 => {
            let s = a.as_string::<i32>().value(i);
            if s.len() > 1000 {
                // Large values compare by length and ends (as the SQL side renders them).
                format!("{}:{}{}", s.len(), &s[..10], &s[s.len() - 10..])
            } else {
                s.to_string()
            }
        }
        other => panic!("no formatter for {other}"),
    }
}

/// The table as the destination would hold it: key (first column) → cells.
#[derive(Default, Debug)]
struct Model {
    rows: BTreeMap<i64, Vec<String>>,
    /// Every change applied: (op, key, position, ordinal).
    log: Vec<(ChangeOp, Option<i64>, u64, u64)>,
    schema_changes: usize,
    /// Apply like a current-state destination replaying changes (upserts, deletes of missing
    /// keys ignored) instead of failing on overlaps.
    lenient: bool,
}

impl Model {
    /// Applies messages; an insert of a key already present (an overlap) or an update or
    /// delete of a missing key (a gap) fails the test.
    fn apply(&mut self, messages: &[SourceMessage]) {
        let mut last_pos = 0u64;
        for m in messages {
            match m {
                SourceMessage::Changes(c) => {
                    c.validate().unwrap();
                    for i in 0..c.len() {
                        let key_col = c.rows.column(0);
                        let key = (!key_col.is_null(i))
                            .then(|| key_col.as_primitive::<Int64Type>().value(i));
                        let pos = c.positions.value(i);
                        assert!(pos >= last_pos, "positions go back: {pos} after {last_pos}");
                        last_pos = pos;
                        self.log.push((c.op(i), key, pos, c.ordinals.value(i)));
                        let cells = |old: Option<&Vec<String>>| -> Vec<String> {
                            (0..c.rows.num_columns())
                                .map(|j| {
                                    let name = c.rows.schema().field(j).name().clone();
                                    if c.is_unchanged(&name, i) {
                                        old.expect("an unchanged value of a known row")[j].clone()
                                    } else {
                                        show(c.rows.column(j).as_ref(), i)
                                    }
                                })
                                .collect()
                        };
                        match c.op(i) {
                            ChangeOp::Insert => {
                                let key = key.unwrap();
                                let row = cells(None);
                                assert!(
                                    self.rows.insert(key, row).is_none() || self.lenient,
                                    "overlap: key {key} inserted twice"
                                );
                            }
                            ChangeOp::Update => {
                                let key = key.unwrap();
                                let old = self.rows.get(&key);
                                assert!(
                                    old.is_some() || self.lenient,
                                    "gap: update of missing key {key}"
                                );
                                let row = cells(old);
                                self.rows.insert(key, row);
                            }
                            ChangeOp::Delete => {
                                let key = key.unwrap();
                                assert!(
                                    self.rows.remove(&key).is_some() || self.lenient,
                                    "gap: delete of missing key {key}"
                                );
                            }
                            ChangeOp::Truncate => self.rows.clear(),
                        }
                    }
                }
                SourceMessage::SchemaChange(_) => self.schema_changes += 1,
                SourceMessage::Records(_) => panic!("CDC yields change rows, not records"),
                _ => {}
            }
        }
    }

    fn render(&self) -> String {
        self.rows
            .values()
            .map(|r| r.join("|"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The table rendered like [`Model::render`].
fn table_text(c: &PrivateCluster, select: &str) -> String {
    c.sql(DB, select)
}

/// Compares the model with the table, printing only the lines that differ.
fn assert_same(model: &Model, c: &PrivateCluster, select: &str) {
    let ours = model.render();
    let theirs = table_text(c, select);
    if ours != theirs {
        let a: std::collections::BTreeSet<&str> = ours.lines().collect();
        let b: std::collections::BTreeSet<&str> = theirs.lines().collect();
        let only_model: Vec<_> = a.difference(&b).take(20).collect();
        let only_table: Vec<_> = b.difference(&a).take(20).collect();
        panic!("model and table differ\nonly in the model: {only_model:?}\nonly in the table: {only_table:?}");
    }
}

const SELECT_T: &str =
    "SELECT id, coalesce(note, 'NULL'), coalesce(n::text, 'NULL') FROM t ORDER BY id";

async fn client(c: &PrivateCluster) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "host={} port={} user={} password={} dbname={DB}",
            c.host,
            c.port,
            c.user,
            c.password()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    client
}

fn slot_column(c: &PrivateCluster, column: &str) -> String {
    c.sql(
        DB,
        &format!("SELECT {column} FROM pg_replication_slots WHERE slot_type = 'logical'"),
    )
}

async fn snapshot_hands_over_to_the_slot_without_gap_or_overlap() {
    let Some(c) = cluster() else { return };
    c.sql(
        DB,
        "CREATE TABLE t (id int8 PRIMARY KEY, note text, n int4);
         INSERT INTO t SELECT i, 'row ' || i, i % 7 FROM generate_series(1, 5000) i;",
    );
    let mut cfg = config(&c);
    cfg.range_rows = 1000;
    cfg.batch_size = 700;
    cfg.parallelism = 3;
    let source = PostgresSource::new(cfg).unwrap();
    let stream = configured(&source, "public.t", "shop.orders.t").await;

    // A writer commits small transactions the whole time the first read sets up, copies and
    // streams: some land between the slot's creation and the snapshot.
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicI64::new(100_000));
    let writer = {
        let (stop, next) = (stop.clone(), next.clone());
        let client = client(&c).await;
        tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let id = next.fetch_add(1, Ordering::Relaxed);
                client
                    .batch_execute(&format!(
                        "INSERT INTO t VALUES ({id}, 'new', 1);
                         UPDATE t SET n = n + 1 WHERE id = {};
                         DELETE FROM t WHERE id = {}",
                        1 + i % 5000,
                        2500 + i
                    ))
                    .await
                    .unwrap();
                i += 1;
            }
            i
        })
    };
    // Wait for transactions, not for time: a few before the first read, a few after it.
    let started = |n: i64| {
        let next = next.clone();
        async move {
            while next.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    started(100_003).await;
    let first = read_all(&source, &stream, None).await;
    started(next.load(Ordering::Relaxed) + 3).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 5, "the writer ran ({writes} transactions)");

    let mut model = Model::default();
    model.apply(&first);
    let snapshot_rows = model
        .log
        .iter()
        .filter(|(op, ..)| *op == ChangeOp::Insert)
        .count();
    assert!(snapshot_rows >= 2500, "{snapshot_rows}");
    let cps: Vec<&Checkpoint> = first
        .iter()
        .filter_map(|m| match m {
            SourceMessage::Checkpoint(c) => Some(c),
            _ => None,
        })
        .collect();
    assert!(cps.iter().any(|c| c.position()["phase"] == "snapshot"));
    assert_eq!(cps.last().unwrap().position()["phase"], "stream");

    // Catch up on what the writer did after the first read's end position.
    let cp = last_checkpoint(&first);
    source.ack(&stream, &cp).await.unwrap();
    let second = read_all(&source, &stream, Some(&cp)).await;
    model.apply(&second);
    assert_same(&model, &c, SELECT_T);
    assert!(lsn_of(&last_checkpoint(&second)) >= lsn_of(&cp));
}

async fn every_kind_of_change_applies_in_order() {
    let Some(c) = cluster() else { return };
    c.sql(
        DB,
        "CREATE TABLE t (id int8 PRIMARY KEY, note text, n int4, big text);
         ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL;
         INSERT INTO t VALUES (1, 'one', 1, NULL), (2, 'two', 2, NULL);",
    );
    let source = PostgresSource::new(config(&c)).unwrap();
    let stream = configured(&source, "public.t", "shop.orders.t").await;
    let first = read_all(&source, &stream, None).await;
    let mut model = Model::default();
    model.apply(&first);
    let cp = last_checkpoint(&first);
    source.ack(&stream, &cp).await.unwrap();
    let confirmed = parse_lsn(&slot_column(&c, "confirmed_flush_lsn"));
    assert_eq!(
        confirmed,
        lsn_of(&cp),
        "ack advanced the slot to the checkpoint"
    );

    // Each c.sql is one transaction (psql sends the statements as one query).
    c.sql(DB, "INSERT INTO t VALUES (3, 'three', 3, NULL)");
    c.sql(DB, "UPDATE t SET note = 'uno' WHERE id = 1");
    c.sql(DB, "UPDATE t SET id = 20, note = 'twenty' WHERE id = 2");
    c.sql(DB, "DELETE FROM t WHERE id = 3");
    c.sql(
        DB,
        "BEGIN; INSERT INTO t VALUES (999, 'rolled back', 0, NULL); ROLLBACK;",
    );
    c.sql(
        DB,
        "INSERT INTO t VALUES (4, 'four', 4, NULL); INSERT INTO t VALUES (5, 'five', 5, NULL);",
    );
    // A big random value, stored out of line, then an update that leaves it alone.
    c.sql(
        DB,
        "UPDATE t SET big = (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 4000)) WHERE id = 4",
    );
    c.sql(DB, "UPDATE t SET n = 44 WHERE id = 4");
    let select = "SELECT id, coalesce(note, 'NULL'), coalesce(n::text, 'NULL'),
                  CASE WHEN big IS NULL THEN 'NULL' ELSE length(big) || ':' || left(big, 10) || right(big, 10) END
                  FROM t ORDER BY id";
    let second = read_all(&source, &stream, Some(&cp)).await;
    model.apply(&second);
    assert_same(&model, &c, select);

    let changes: Vec<_> = model.log[2..]
        .iter()
        .map(|(op, k, _, o)| (*op, *k, *o))
        .collect();
    use ChangeOp::*;
    assert_eq!(
        changes,
        vec![
            (Insert, Some(3), 0),
            (Update, Some(1), 0),
            (Delete, Some(2), 0),
            (Insert, Some(20), 1),
            (Delete, Some(3), 0),
            (Insert, Some(4), 0),
            (Insert, Some(5), 1),
            (Update, Some(4), 0),
            (Update, Some(4), 0),
        ],
        "one row per change; a key change is a delete then an insert; nothing of the rollback"
    );
    let unchanged_flagged = second.iter().any(|m| match m {
        SourceMessage::Changes(c) => (0..c.len()).any(|i| c.is_unchanged("big", i)),
        _ => false,
    });
    assert!(
        unchanged_flagged,
        "the untouched TOASTed value is flagged unchanged"
    );
    // Positions: one per transaction, increasing; the delete and insert of the key change share it.
    let (_, _, p_del, _) = model.log[4];
    let (_, _, p_ins, _) = model.log[5];
    assert_eq!(p_del, p_ins);

    // Truncate: one all-null row.
    let cp2 = last_checkpoint(&second);
    source.ack(&stream, &cp2).await.unwrap();
    c.sql(
        DB,
        "TRUNCATE t; INSERT INTO t VALUES (7, 'seven', 7, NULL);",
    );
    let third = read_all(&source, &stream, Some(&cp2)).await;
    model.apply(&third);
    assert_same(&model, &c, select);
    assert!(model
        .log
        .iter()
        .any(|(op, k, ..)| *op == Truncate && k.is_none()));

    // lag_bytes and reset.
    let lag = source.lag_bytes(&stream).await.unwrap();
    assert!(lag.is_some());
    source.reset(&stream).await.unwrap();
    assert_eq!(slot_column(&c, "count(*)"), "0");
    assert_eq!(c.sql(DB, "SELECT count(*) FROM pg_publication"), "0");
    assert_eq!(source.lag_bytes(&stream).await.unwrap(), None);
}

async fn resuming_from_a_mid_stream_checkpoint_duplicates_nothing() {
    let Some(c) = cluster() else { return };
    c.sql(
        DB,
        "CREATE TABLE t (id int8 PRIMARY KEY, note text, n int4)",
    );
    // One transaction per poll, and no acks in between (the reader must re-decode and skip
    // what it already yielded).
    let mut cfg = config(&c);
    cfg.replication.poll_changes = 1;
    let source = PostgresSource::new(cfg).unwrap();
    let stream = configured(&source, "public.t", "shop.orders.t").await;
    let first = read_all(&source, &stream, None).await;
    let cp0 = last_checkpoint(&first);
    // A following read: each insert, then the checkpoint that covers it.
    let mut follow = stream.clone();
    follow.follow = true;
    let mut messages = source.read(&follow, Some(&cp0)).await.unwrap();
    let mut second = Vec::new();
    let mut covering = Vec::new();
    for i in 1..=4 {
        c.sql(DB, &format!("INSERT INTO t VALUES ({i}, 'x', {i})"));
        let mut seen = None;
        loop {
            let m = next(&mut messages).await.unwrap();
            match &m {
                SourceMessage::Changes(ch) => {
                    for j in 0..ch.len() {
                        let key = ch.rows.column(0).as_primitive::<Int64Type>().value(j);
                        if key == i {
                            seen = Some(ch.positions.value(j));
                        }
                    }
                }
                SourceMessage::Checkpoint(cp) if seen.is_some_and(|p| lsn_of(cp) >= p) => {
                    covering.push(cp.clone());
                    second.push(m);
                    break;
                }
                _ => {}
            }
            second.push(m);
        }
    }
    drop(messages);
    let mut all = Model::default();
    all.apply(&second);
    assert_eq!(all.log.len(), 4, "each insert once: {:?}", all.log);
    // Resume after the second transaction: exactly the last two again.
    let mid = &covering[1];
    let third = read_all(&source, &stream, Some(mid)).await;
    let mut rest = Model::default();
    rest.apply(&third);
    let keys: Vec<Option<i64>> = rest.log.iter().map(|l| l.1).collect();
    assert_eq!(keys, vec![Some(3), Some(4)]);
    let expected: Vec<_> = all
        .log
        .iter()
        .filter(|l| l.2 > lsn_of(mid))
        .cloned()
        .collect();
    assert_eq!(rest.log, expected);
}

async fn an_idle_table_does_not_pin_wal() {
    let Some(c) = cluster() else { return };
    c.sql(
        DB,
        "CREATE TABLE t (id int8 PRIMARY KEY, note text, n int4);
         CREATE TABLE other (id serial PRIMARY KEY, pad text);",
    );
    let source = PostgresSource::new(config(&c)).unwrap();
    let stream = configured(&source, "public.t", "shop.orders.t").await;
    let first = read_all(&source, &stream, None).await;
    let cp = last_checkpoint(&first);
    source.ack(&stream, &cp).await.unwrap();
    // About 20 MB of unrelated, incompressible writes.
    c.sql(
        DB,
        "INSERT INTO other (pad) SELECT (SELECT string_agg(md5(random()::text || i || j), '') FROM generate_series(1, 64) j)
         FROM generate_series(1, 10000) i",
    );
    c.sql(DB, "CHECKPOINT");
    let before = parse_lsn(&c.sql(DB, "SELECT pg_current_wal_lsn()"));
    let written = before - lsn_of(&cp);
    assert!(written > 10 << 20, "{written} bytes of WAL written");
    let second = read_all(&source, &stream, Some(&cp)).await;
    assert!(
        !second
            .iter()
            .any(|m| matches!(m, SourceMessage::Changes(_))),
        "no changes of the watched table"
    );
    let last = last_checkpoint(&second);
    assert!(
        lsn_of(&last) >= before,
        "the final checkpoint passes the unrelated writes"
    );
    source.ack(&stream, &last).await.unwrap();
    let retained: i64 = c
        .sql(
            DB,
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 FROM pg_replication_slots",
        )
        .parse()
        .unwrap();
    // The slot's restart point follows the server's running-transactions records, so it
    // trails the acked position a little; it must not hold the unrelated writes.
    assert!(
        retained < 4 << 20,
        "the slot retains {retained} bytes of WAL of {written} written"
    );
    let lag = source.lag_bytes(&stream).await.unwrap().unwrap();
    assert!(lag < 1 << 20, "lag {lag}");
}

async fn following_reads_schema_changes_and_stops_at_a_dropped_column() {
    let Some(c) = cluster() else { return };
    c.sql(
        DB,
        "CREATE TABLE t (id int8 PRIMARY KEY, note text, n int4);
         INSERT INTO t VALUES (1, 'a', 1);",
    );
    let source = PostgresSource::new(config(&c)).unwrap();
    let mut stream = configured(&source, "public.t", "shop.orders.t").await;
    stream.follow = true;
    let mut messages: MessageStream = source.read(&stream, None).await.unwrap();
    let mut got = Vec::new();
    // The snapshot, up to the stream-phase checkpoint.
    loop {
        let m = next(&mut messages).await.unwrap();
        let done = matches!(&m, SourceMessage::Checkpoint(c) if c.position()["phase"] == "stream");
        got.push(m);
        if done {
            break;
        }
    }
    c.sql(
        DB,
        "INSERT INTO t VALUES (2, 'b', 2);
         ALTER TABLE t ADD COLUMN extra int4;
         INSERT INTO t VALUES (3, 'c', 3, 7);",
    );
    let mut schema_change = None;
    while !got
        .iter()
        .any(|m| matches!(m, SourceMessage::Changes(c) if c.rows.num_columns() == 4))
    {
        let m = next(&mut messages)
            .await
            .unwrap_or_else(|e| panic!("waiting for the wider rows: {e}"));
        if let SourceMessage::SchemaChange(s) = &m {
            schema_change = Some(s.clone());
        }
        got.push(m);
    }
    let schema = schema_change.expect("a schema change before the wider rows");
    assert_eq!(schema.fields().len(), 4);
    assert_eq!(schema.field(3).name(), "extra");
    let wide = got
        .iter()
        .find_map(|m| match m {
            SourceMessage::Changes(c) if c.rows.num_columns() == 4 => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(wide.rows.column(3).as_primitive::<Int32Type>().value(0), 7);
    // Idle: the follow read checkpoints at the server's position.
    let mut idle_cp = false;
    for _ in 0..20 {
        if let SourceMessage::Checkpoint(_) = next(&mut messages).await.unwrap() {
            idle_cp = true;
            break;
        }
    }
    assert!(idle_cp);

    c.sql(
        DB,
        "ALTER TABLE t DROP COLUMN note; INSERT INTO t VALUES (4, 4, 8);",
    );
    let err = loop {
        match next(&mut messages).await {
            Err(e) => break e.to_string(),
            Ok(_) => continue,
        }
    };
    assert!(err.contains("column `note` was dropped"), "{err}");
    assert!(err.contains("weft sync reset shop/orders/t"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_errors_say_what_to_run() {
    // wal_level=replica on the shared server.
    let db = PgTestDb::create("cdc_wal");
    db.sql("CREATE TABLE t (id int8 PRIMARY KEY)");
    let source =
        PostgresSource::new(PostgresConfig::new(&db.host, db.port, &db.user, &db.name)).unwrap();
    let stream = configured(&source, "public.t", "shop.orders.t").await;
    let err = read_err(&source, &stream, None).await;
    assert!(
        err.contains("CDC needs wal_level=logical (it is `replica`)")
            && err.contains("ALTER SYSTEM SET wal_level = logical"),
        "{err}"
    );

    let Some(c) = cluster() else { return };
    c.sql(
        DB,
        "CREATE TABLE t (id int8 PRIMARY KEY, note text);
         CREATE TABLE nopk (a int4, b text);
         CREATE TABLE other (id int8 PRIMARY KEY);
         CREATE ROLE reader LOGIN PASSWORD 'reader-pw';
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader;",
    );
    // A role without REPLICATION.
    let mut cfg = config(&c);
    cfg.user = "reader".into();
    cfg.password = Some(Secret::new("reader-pw"));
    let plain = PostgresSource::new(cfg).unwrap();
    let stream = configured(&plain, "public.t", "shop.orders.t").await;
    let err = read_err(&plain, &stream, None).await;
    assert!(err.contains(r#"ALTER ROLE "reader" REPLICATION"#), "{err}");

    // No primary key, replica identity default.
    let source = PostgresSource::new(config(&c)).unwrap();
    let nopk = configured(&source, "public.nopk", "shop.orders.nopk").await;
    let err = read_err(&source, &nopk, None).await;
    assert!(
        err.contains(r#"ALTER TABLE "public"."nopk" REPLICA IDENTITY FULL"#),
        "{err}"
    );
    // …which works once set.
    c.sql(
        DB,
        "ALTER TABLE nopk REPLICA IDENTITY FULL; INSERT INTO nopk VALUES (1, 'x')",
    );
    let ok = read_all(&source, &nopk, None).await;
    source.reset(&nopk).await.unwrap();
    assert!(ok.iter().any(|m| matches!(m, SourceMessage::Changes(_))));

    // The slot dropped between runs.
    let stream = configured(&source, "public.t", "shop.orders.t").await;
    let first = read_all(&source, &stream, None).await;
    let cp = last_checkpoint(&first);
    let slot = cp.position()["slot"].as_str().unwrap().to_string();
    c.sql(DB, &format!("SELECT pg_drop_replication_slot('{slot}')"));
    let err = read_err(&source, &stream, Some(&cp)).await;
    assert!(
        err.contains(&format!("the replication slot {slot} was dropped"))
            && err.contains("weft sync reset shop/orders/t"),
        "{err}"
    );
    source.reset(&stream).await.unwrap();

    // The publication edited by hand.
    let first = read_all(&source, &stream, None).await;
    let cp = last_checkpoint(&first);
    let publication = cp.position()["publication"].as_str().unwrap().to_string();
    c.sql(
        DB,
        &format!("ALTER PUBLICATION {publication} ADD TABLE other"),
    );
    let err = read_err(&source, &stream, Some(&cp)).await;
    assert!(
        err.contains(&format!("publication {publication} publishes"))
            && err.contains("instead of")
            && err.contains("ALTER PUBLICATION"),
        "{err}"
    );
}

async fn a_crash_mid_snapshot_resumes_and_converges() {
    let Some(c) = cluster() else { return };
    c.sql(
        DB,
        "CREATE TABLE t (id int8 PRIMARY KEY, note text, n int4);
         INSERT INTO t SELECT i, 'row ' || i, 0 FROM generate_series(1, 5000) i;",
    );
    let mut cfg = config(&c);
    cfg.range_rows = 1000;
    cfg.batch_size = 400;
    cfg.parallelism = 1;
    let source = PostgresSource::new(cfg).unwrap();
    let stream = configured(&source, "public.t", "shop.orders.t").await;
    // Read until the second snapshot checkpoint, then drop the read (a crash).
    let mut messages = source.read(&stream, None).await.unwrap();
    let mut got = Vec::new();
    let mut seen = 0;
    while seen < 2 {
        let m = next(&mut messages).await.unwrap();
        if let SourceMessage::Checkpoint(cp) = &m {
            assert_eq!(cp.position()["phase"], "snapshot");
            seen += 1;
        }
        got.push(m);
    }
    drop(messages);
    let cp = last_checkpoint(&got);
    assert!(cp.position()["ranges"].as_array().unwrap().len() >= 5);
    let mut model = Model {
        lenient: true,
        ..Model::default()
    };
    model.apply(&got);
    assert_eq!(model.rows.len(), 800);

    // Changes to rows already copied and not copied yet, between the crash and the resume.
    c.sql(DB, "UPDATE t SET n = 1 WHERE id IN (1, 700, 4000)");
    c.sql(DB, "DELETE FROM t WHERE id IN (2, 4001)");
    c.sql(DB, "INSERT INTO t VALUES (6000, 'new', 2)");
    let rest = read_all(&source, &stream, Some(&cp)).await;
    assert_eq!(last_checkpoint(&rest).position()["phase"], "stream");
    model.apply(&rest);
    assert_same(&model, &c, SELECT_T);
    // The resumed copy continued after the checkpoint: no snapshot row of the first 800 again.
    let consistent = parse_lsn(cp.position()["consistent_lsn"].as_str().unwrap());
    let snapshot_keys: Vec<i64> = rest
        .iter()
        .filter_map(|m| match m {
            SourceMessage::Changes(c) => Some(c),
            _ => None,
        })
        .flat_map(|c| {
            (0..c.len())
                .filter(|&i| c.positions.value(i) == consistent)
                .map(|i| c.rows.column(0).as_primitive::<Int64Type>().value(i))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(snapshot_keys.len() >= 4000, "{}", snapshot_keys.len());
    assert!(snapshot_keys.iter().all(|k| *k > 800), "re-copied rows");
}

/// 128 kB of random text (stored out of line with STORAGE EXTERNAL).
const BIG: &str = "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 4000))";

const SELECT_BIG: &str = "SELECT id, coalesce(note, 'NULL'), coalesce(n::text, 'NULL'),
    CASE WHEN big IS NULL THEN 'NULL' ELSE length(big) || ':' || left(big, 10) || right(big, 10) END
    FROM t ORDER BY id";

async fn a_key_change_never_loses_an_untouched_toasted_value() {
    let Some(c) = cluster() else { return };
    c.sql(
        DB,
        "CREATE TABLE t (id int8 PRIMARY KEY, note text, n int4, big text);
         ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL;
         INSERT INTO t VALUES (1, 'one', 1, NULL);",
    );
    let source = PostgresSource::new(config(&c)).unwrap();
    let stream = configured(&source, "public.t", "shop.orders.t").await;
    let first = read_all(&source, &stream, None).await;
    let cp = last_checkpoint(&first);
    source.ack(&stream, &cp).await.unwrap();
    c.sql(DB, &format!("UPDATE t SET big = {BIG} WHERE id = 1"));
    // REPLICA IDENTITY DEFAULT: the new row flags `big` unchanged and the old tuple is the
    // key only: the value cannot reach key 2.
    c.sql(DB, "UPDATE t SET id = 2 WHERE id = 1");
    let err = read_err(&source, &stream, Some(&cp)).await;
    assert!(
        err.contains("public") && err.contains("`big`"),
        "names the table and column: {err}"
    );
    assert!(
        err.contains(r#"ALTER TABLE "public"."t" REPLICA IDENTITY FULL"#)
            && err.contains("weft sync reset shop/orders/t"),
        "says the way out: {err}"
    );
    // The way out: REPLICA IDENTITY FULL and a new snapshot.
    c.sql(DB, "ALTER TABLE t REPLICA IDENTITY FULL");
    source.reset(&stream).await.unwrap();
    let first = read_all(&source, &stream, None).await;
    let mut model = Model::default();
    model.apply(&first);
    let cp = last_checkpoint(&first);
    source.ack(&stream, &cp).await.unwrap();
    c.sql(DB, "UPDATE t SET id = 3 WHERE id = 2");
    let second = read_all(&source, &stream, Some(&cp)).await;
    model.apply(&second);
    // The insert of key 3 carries the value itself (the model would panic on an unchanged
    // flag for a new key).
    assert_same(&model, &c, SELECT_BIG);
    assert!(model.rows[&3][3].starts_with("128000:"), "{:?}", model.rows);
}

async fn a_lost_connection_or_a_busy_slot_stops_the_read_clearly() {
    let Some(c) = cluster() else { return };
    c.sql(
        DB,
        "CREATE TABLE t (id int8 PRIMARY KEY, note text, n int4);
         INSERT INTO t VALUES (1, 'a', 1);",
    );
    let source = PostgresSource::new(config(&c)).unwrap();
    let mut stream = configured(&source, "public.t", "shop.orders.t").await;
    let first = read_all(&source, &stream, None).await;
    let cp = last_checkpoint(&first);
    source.ack(&stream, &cp).await.unwrap();

    // The slot held by another replication session.
    let slot = cp.position()["slot"].as_str().unwrap().to_string();
    let mut holder = pgwire_replication::ReplicationClient::connect(
        pgwire_replication::ReplicationConfig::new(
            c.host.clone(),
            c.user.clone(),
            c.password(),
            DB,
            slot.clone(),
            slot.clone(),
        )
        .with_port(c.port),
    )
    .await
    .unwrap();
    holder.wait_started().await.unwrap();
    let err = read_err(&source, &stream, Some(&cp)).await;
    assert!(err.contains("is in use by another session"), "{err}");
    holder.shutdown().await.unwrap();
    drop(holder);
    // Polls for the event; the bound is a safety net for a loaded machine.
    for _ in 0..600 {
        if slot_column(&c, "active") == "f" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The connection killed mid-stream (following): an error, never a partial transaction.
    stream.follow = true;
    let mut messages = source.read(&stream, Some(&cp)).await.unwrap();
    c.sql(DB, "INSERT INTO t VALUES (2, 'b', 2)");
    let mut got = Vec::new();
    while !got.iter().any(|m| matches!(m, SourceMessage::Changes(_))) {
        got.push(next(&mut messages).await.unwrap());
    }
    let victim = match transport() {
        // The walsender (stream), or the session peeking (poll: wait for one to show up).
        Transport::Stream => "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots",
        Transport::Poll => {
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'weft' AND query LIKE '%peek_binary_changes%'"
        }
    };
    let err = loop {
        c.sql(DB, victim);
        match tokio::time::timeout(Duration::from_millis(300), messages.next()).await {
            Err(_) => continue,
            Ok(None) => panic!("the follow read ended without an error"),
            Ok(Some(Err(e))) => break e.to_string(),
            Ok(Some(Ok(m))) => got.push(m),
        }
    };
    assert!(
        err.contains("stream `public.t`") && (err.contains("lost") || err.contains("terminat")),
        "{err}"
    );
    // What was yielded is whole transactions only, and a new read converges.
    let mut model = Model {
        lenient: true,
        ..Model::default()
    };
    model.apply(&first);
    model.apply(&got);
    let rest = read_all(
        &source,
        &configured(&source, "public.t", "shop.orders.t").await,
        Some(&cp),
    )
    .await;
    model.apply(&rest);
    assert_same(&model, &c, SELECT_T);
}

async fn following_acks_move_the_slot_while_the_table_is_idle() {
    let Some(c) = cluster() else { return };
    c.sql(
        DB,
        "CREATE TABLE t (id int8 PRIMARY KEY, note text, n int4);
         CREATE TABLE other (id serial PRIMARY KEY, pad text);
         INSERT INTO t VALUES (1, 'a', 1);",
    );
    let source = PostgresSource::new(config(&c)).unwrap();
    let mut stream = configured(&source, "public.t", "shop.orders.t").await;
    stream.follow = true;
    let mut messages = source.read(&stream, None).await.unwrap();
    let confirmed = || parse_lsn(&slot_column(&c, "confirmed_flush_lsn"));
    let start = confirmed();
    // Unrelated writes only: the read checkpoints past them, and an ack moves the slot
    // while the read runs.
    c.sql(
        DB,
        "INSERT INTO other (pad) SELECT repeat(md5(i::text), 20) FROM generate_series(1, 20000) i",
    );
    let written = parse_lsn(&c.sql(DB, "SELECT pg_current_wal_flush_lsn()"));
    let cp = loop {
        if let SourceMessage::Checkpoint(cp) = next(&mut messages).await.unwrap() {
            if cp.position()["phase"] == "stream" && lsn_of(&cp) >= written {
                break cp;
            }
        }
    };
    assert_eq!(confirmed(), start, "nothing moves the slot before the ack");
    source.ack(&stream, &cp).await.unwrap();
    let mut moved = false;
    // The stream transport reports acks with its status updates (at least every 10s): wait
    // for the event with room for a loaded machine.
    for _ in 0..600 {
        if confirmed() >= lsn_of(&cp) {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(moved, "the slot follows the ack while the read runs");
    assert!(confirmed() <= lsn_of(&cp), "never past the ack");
    // Still reading.
    c.sql(DB, "INSERT INTO t VALUES (2, 'b', 2)");
    loop {
        if let SourceMessage::Changes(ch) = next(&mut messages).await.unwrap() {
            assert_eq!(ch.rows.column(0).as_primitive::<Int64Type>().value(0), 2);
            break;
        }
    }
}

/// Throughput of draining 200k changes (1000 transactions of 200 rows): run with
/// `--ignored --nocapture` under each `WEFT_TEST_CDC_TRANSPORT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn drain_rate() {
    let Some(c) = cluster() else { return };
    c.sql(
        DB,
        "CREATE TABLE t (id int8 PRIMARY KEY, note text, n int4)",
    );
    let source = PostgresSource::new(config(&c)).unwrap();
    let stream = configured(&source, "public.t", "shop.orders.t").await;
    let first = read_all(&source, &stream, None).await;
    let cp = last_checkpoint(&first);
    source.ack(&stream, &cp).await.unwrap();
    c.sql(
        DB,
        "DO $$ BEGIN FOR b IN 0..999 LOOP
           INSERT INTO t SELECT b * 200 + i, 'row ' || i, i FROM generate_series(1, 200) i;
           COMMIT;
         END LOOP; END $$",
    );
    let started = std::time::Instant::now();
    let second = read_all(&source, &stream, Some(&cp)).await;
    let secs = started.elapsed().as_secs_f64();
    let rows: usize = second
        .iter()
        .map(|m| match m {
            SourceMessage::Changes(ch) => ch.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(rows, 200_000);
    eprintln!(
        "{:?}: {rows} changes in {secs:.2} s = {:.0} changes/s",
        transport(),
        rows as f64 / secs
    );
}

/// A run catches up to everything committed before it started, also on a server with
/// `synchronous_commit=off` (the private cluster's own setting), where a commit returns
/// before its WAL is flushed and logical decoding cannot read it yet. Stopping at the flush
/// position taken at the start made the run right after such commits yield none of them
/// (they came one run late): rounds of changes committed right before a read, the model
/// compared with the table after every read.
async fn changes_committed_right_before_a_read_are_in_it() {
    let Some(c) = PrivateCluster::start(ClusterOptions::default()) else {
        return;
    };
    c.sql("postgres", &format!("CREATE DATABASE {DB}"));
    assert_eq!(c.sql(DB, "SHOW synchronous_commit"), "off");
    c.sql(
        DB,
        "CREATE TABLE t (id int8 PRIMARY KEY, note text, n int4);
         INSERT INTO t SELECT i, 'seed ' || i, 0 FROM generate_series(1, 20000) i;",
    );
    let source = PostgresSource::new(config(&c)).unwrap();
    let stream = configured(&source, "public.t", "shop.orders.t").await;
    let writer = client(&c).await;
    let mut model = Model::default();
    let first = read_all(&source, &stream, None).await;
    model.apply(&first);
    assert_same(&model, &c, SELECT_T);
    let mut cp = last_checkpoint(&first);
    source.ack(&stream, &cp).await.unwrap();
    for round in 0..5i64 {
        // Three transactions, as an application would commit them, right before the read.
        let base = 100_000 + round * 1000;
        for sql in [
            format!("UPDATE t SET n = n + 1 WHERE id % 37 = {round}"),
            format!("INSERT INTO t SELECT i, 'new', {round} FROM generate_series({base}, {base} + 999) i"),
            format!("DELETE FROM t WHERE id % 50 = {round} + 1"),
        ] {
            writer.batch_execute(&sql).await.unwrap();
        }
        let read = read_all(&source, &stream, Some(&cp)).await;
        model.apply(&read);
        assert_same(&model, &c, SELECT_T);
        cp = last_checkpoint(&read);
        source.ack(&stream, &cp).await.unwrap();
        assert_eq!(slot_column(&c, "confirmed_flush_lsn"), cp.position()["lsn"]);
    }
}

/// #15 item 9: a following read whose checkpoints are all acked keeps the slot's confirmed
/// position close to the server's WAL position: after a burst of changes, and under
/// unrelated writes to a table outside the publication, the confirmed lag drops below 16 MB
/// within a few seconds. The lag seen in #15 was the engine's (a checkpoint waited for the next
/// message, see `cdc_e2e`'s follow test); this is the source's part of the promise: every
/// position it checkpoints, once acked, reaches the slot promptly on both transports.
async fn following_confirms_applied_positions_promptly() {
    const GOAL: i64 = 16 << 20;
    let Some(c) = cluster() else { return };
    c.sql(
        DB,
        "CREATE TABLE t (id int8 PRIMARY KEY, note text, n int4);
         CREATE TABLE other (id serial PRIMARY KEY, pad text);",
    );
    let source = PostgresSource::new(config(&c)).unwrap();
    let mut stream = configured(&source, "public.t", "shop.orders.t").await;
    stream.follow = true;
    let mut messages = source.read(&stream, None).await.unwrap();
    let db = client(&c).await;
    // The snapshot (empty table), acked.
    drain_until(
        &source,
        &stream,
        &mut messages,
        Duration::from_secs(5),
        0,
        &db,
    )
    .await;

    // A burst of about 40 MB of changes to the watched table, in 20 transactions.
    c.sql(
        DB,
        "DO $$ BEGIN FOR b IN 0..19 LOOP
           INSERT INTO t SELECT b * 1000 + i,
             (SELECT string_agg(md5(random()::text || i || j), '') FROM generate_series(1, 60) j), i
           FROM generate_series(1, 1000) i;
           COMMIT;
         END LOOP; END $$",
    );
    let burst_end = parse_lsn(&c.sql(DB, "SELECT pg_current_wal_lsn()"));
    let mut read = 0;
    // Everything read and applied first (so the wait below starts at the last applied change).
    while read < 20_000 {
        match next(&mut messages).await.unwrap() {
            SourceMessage::Checkpoint(cp) => source.ack(&stream, &cp).await.unwrap(),
            SourceMessage::Changes(ch) => read += ch.len(),
            _ => {}
        }
    }
    let started = std::time::Instant::now();
    let (after_burst, more) = drain_until(
        &source,
        &stream,
        &mut messages,
        Duration::from_secs(8),
        burst_end,
        &db,
    )
    .await;
    assert_eq!(more, 0, "no changes after the burst");
    assert!(
        after_burst < GOAL,
        "after a burst of {} bytes of WAL, all of it applied and acked, the slot's confirmed \
         position is {after_burst} bytes behind after {:?}",
        burst_end,
        started.elapsed()
    );
    let confirmed = parse_lsn(&slot_column(&c, "confirmed_flush_lsn"));
    assert!(confirmed >= burst_end, "the burst is confirmed");

    // Unrelated write noise (about 2 MB every 100 ms for 3 s on a table outside the
    // publication): the confirmed position keeps up.
    let noise_db = client(&c).await;
    let noise = tokio::spawn(async move {
        for _ in 0..30 {
            noise_db
                .batch_execute(
                    "INSERT INTO other (pad) SELECT (SELECT string_agg(md5(random()::text || i || j), '') \
                     FROM generate_series(1, 32) j) FROM generate_series(1, 1000) i",
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut peak = 0;
    while !noise.is_finished() {
        let (l, rows) = drain_until(
            &source,
            &stream,
            &mut messages,
            Duration::from_millis(300),
            0,
            &db,
        )
        .await;
        assert_eq!(rows, 0, "no changes of the watched table");
        peak = peak.max(l);
    }
    noise.await.unwrap();
    let (after_noise, _) = drain_until(
        &source,
        &stream,
        &mut messages,
        Duration::from_secs(5),
        0,
        &db,
    )
    .await;
    assert!(
        after_noise < GOAL,
        "after the noise, the confirmed position is {after_noise} bytes behind"
    );
    assert!(
        peak < 4 * GOAL,
        "under noise the confirmed lag peaked at {peak} bytes"
    );
}

/// Reads on (as the engine does), acking every checkpoint, and looks at the slot every
/// 100 ms until its confirmed lag is below 16 MB and its confirmed position at least
/// `confirmed_from`, or `within` passed; returns the lag seen last and the number of changes
/// read.
async fn drain_until(
    source: &PostgresSource,
    stream: &ConfiguredStream,
    messages: &mut MessageStream,
    within: Duration,
    confirmed_from: u64,
    db: &tokio_postgres::Client,
) -> (i64, usize) {
    let deadline = tokio::time::Instant::now() + within;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut rows = 0;
    loop {
        tokio::select! {
            m = messages.next() => match m.expect("the follow read ended").unwrap() {
                SourceMessage::Checkpoint(cp) => source.ack(stream, &cp).await.unwrap(),
                SourceMessage::Changes(ch) => rows += ch.len(),
                _ => {}
            },
            _ = tick.tick() => {
                let row = db
                    .query_one(
                        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8, \
                         confirmed_flush_lsn::text FROM pg_replication_slots \
                         WHERE slot_type = 'logical'",
                        &[],
                    )
                    .await
                    .unwrap();
                let lag: i64 = row.get(0);
                let confirmed = parse_lsn(row.get(1));
                if (lag < 16 << 20 && confirmed >= confirmed_from)
                    || tokio::time::Instant::now() >= deadline
                {
                    return (lag, rows);
                }
            }
        }
    }
}
