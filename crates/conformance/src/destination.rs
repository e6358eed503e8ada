//! The destination suite: [`DestinationSuite`] holds one destination to the contract of
//! [`weft_core::StreamWriter`], running its writer in a child process killed with SIGKILL.
//!
//! The child is the connector's own test binary, started again with the test's name and
//! `WEFT_CONFORMANCE_CHILD` set: the test calls [`WriterChild::from_env`] first thing and, in
//! the child, hands over to it.
//!
//! ```no_run
//! # async fn doc(reader: &dyn weft_conformance::VisibleRows) {
//! use weft_conformance::{DestinationSuite, Evolution, WriterChild};
//! # let factory: &'static dyn weft_core::DestinationFactory = unimplemented!();
//! # let ctx: weft_core::ConnectorContext = unimplemented!();
//! if let Some(child) = WriterChild::from_env() {
//!     child.run(factory).await; // never returns: the parent kills it
//! }
//! DestinationSuite::new(factory, serde_json::json!({"path": "/tmp/lake"}), ctx, reader)
//!     .evolution(Evolution { adds_columns: true, refuses_retype: true })
//!     .run("conformance")
//!     .await
//!     .unwrap_or_else(|faults| panic!("{faults}"));
//! # }
//! ```

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use weft_core::arrow_array::{Int64Array, RecordBatch, StringArray};
use weft_core::arrow_schema::{DataType, Field, Schema, SchemaRef};
use weft_core::{
    Checkpoint, ConnectorContext, Destination, DestinationFactory, StreamTarget, StreamWriter,
    SyncMode, WriteMode,
};

use crate::stream::TestStream;
use crate::table::{show_row, Diff, Row, Table};
use crate::{spec, Fault, Faults};

/// The environment variable that makes a test binary a writer child.
pub const CHILD_ENV: &str = "WEFT_CONFORMANCE_CHILD";

/// The line a writer child prints when it has done its steps and waits to be killed.
const READY: &str = "weft-conformance: ready";

/// How a reader of the product store sees a stream: the destination's own test supplies it,
/// reading the store independently of the writer (a Parquet reader, a SQL query).
#[async_trait]
pub trait VisibleRows: Send + Sync {
    /// Every row a reader of `target`'s product table sees now, with its columns; `None` when
    /// there is no table (nothing was ever published).
    async fn visible(&self, target: &StreamTarget) -> Result<Option<Table>, String>;
}

/// What the destination declares about schema changes between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evolution {
    /// A nullable column added to the stream is added to the table; earlier rows read NULL.
    /// When `false`, opening or writing with the new column must fail naming it.
    pub adds_columns: bool,
    /// A column whose type changed (text to integer) is refused, naming the column.
    pub refuses_retype: bool,
}

/// One step of a writer child (and of the in-process writer).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Step {
    Open(String),
    Write(Vec<i64>),
    Commit(u64),
    Finish(u64),
}

/// What the parent tells its writer child.
#[derive(Debug, Serialize, Deserialize)]
struct Scenario {
    config: Value,
    project_dir: PathBuf,
    stream: String,
    steps: Vec<Step>,
}

/// A test binary started as a writer child: it runs the steps it was given against the
/// destination, says so on stdout and waits to be killed.
pub struct WriterChild(Scenario);

impl WriterChild {
    /// `Some` when this process was started as a writer child by a [`DestinationSuite`].
    pub fn from_env() -> Option<Self> {
        let text = std::env::var(CHILD_ENV).ok()?;
        Some(Self(serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("{CHILD_ENV} does not hold a conformance scenario: {e}")
        })))
    }

    /// Runs the steps with `factory`'s destination, prints the ready line and never returns
    /// (the parent kills the process). A failing step exits with status 3 and its error.
    pub async fn run(self, factory: &dyn DestinationFactory) -> ! {
        let ctx = ConnectorContext {
            project_dir: self.0.project_dir.clone(),
        };
        let outcome = async {
            let dest = factory
                .build(&self.0.config, &ctx)
                .map_err(|e| e.to_string())?;
            let mut writer = None;
            run_steps(dest.as_ref(), &self.0.stream, &self.0.steps, &mut writer).await?;
            // Keep the writer alive (not dropped, not aborted) until the kill.
            Ok::<_, String>(writer)
        }
        .await;
        match outcome {
            Ok(writer) => {
                println!("{READY}");
                use std::io::Write;
                let _ = std::io::stdout().flush();
                loop {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    let _ = &writer;
                }
            }
            Err(err) => {
                println!("weft-conformance: child failed: {err}");
                std::process::exit(3)
            }
        }
    }
}

/// The suite's fixed data: `id` (key), `name` (NULL for every fifth id), `seq` (the cursor).
fn base_fields() -> Vec<Field> {
    vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("seq", DataType::Int64, false),
    ]
}

fn schema_with(extra: Option<Field>) -> SchemaRef {
    let mut fields = base_fields();
    fields.extend(extra);
    Arc::new(Schema::new(fields))
}

fn name_of(id: i64) -> Option<String> {
    (id % 5 != 0).then(|| format!("name-{id}"))
}

fn batch(schema: &SchemaRef, ids: &[i64]) -> Result<RecordBatch, String> {
    let mut columns: Vec<Arc<dyn weft_core::arrow_array::Array>> = vec![
        Arc::new(Int64Array::from(ids.to_vec())),
        Arc::new(StringArray::from(
            ids.iter().map(|i| name_of(*i)).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            ids.iter().map(|i| i * 10).collect::<Vec<_>>(),
        )),
    ];
    for f in schema.fields().iter().skip(3) {
        columns.push(match f.data_type() {
            DataType::Int64 => Arc::new(Int64Array::from(
                ids.iter().map(|i| i * 100).collect::<Vec<_>>(),
            )),
            _ => Arc::new(StringArray::from(
                ids.iter().map(|i| format!("x{i}")).collect::<Vec<_>>(),
            )),
        });
    }
    if schema.field(1).data_type() == &DataType::Int64 {
        columns[1] = Arc::new(Int64Array::from(ids.to_vec()));
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// The rows `ids` make, as `(id, name, seq)`.
fn rows(ids: impl IntoIterator<Item = i64>) -> Vec<Row> {
    ids.into_iter()
        .map(|id| {
            vec![
                Some(id.to_string()),
                name_of(id),
                Some((id * 10).to_string()),
            ]
        })
        .collect()
}

/// A writer child's steps: open in `mode`, then each batch of ids written and, where it has a
/// checkpoint number, committed with it; what was written after the last commit is still
/// uncommitted when the child is killed.
fn session(mode: &str, batches: &[(&[i64], Option<u64>)]) -> Vec<Step> {
    let mut steps = vec![Step::Open(mode.into())];
    for (ids, commit) in batches {
        steps.push(Step::Write(ids.to_vec()));
        steps.extend(commit.map(Step::Commit));
    }
    steps
}

/// Open in `mode`, write ids 1–3 and commit(1), write 4–6 and commit(2): the crash the replay
/// checks resume from.
fn commit_twice(mode: &str) -> Vec<Step> {
    session(mode, &[(&[1, 2, 3], Some(1)), (&[4, 5, 6], Some(2))])
}

fn checkpoint(n: u64) -> Checkpoint {
    Checkpoint::new(json!({ "conformance": n }))
}

/// The suite's streams: `conformance/kit/<stream>`, run id `conformance-<stream>`.
fn test_stream(stream: &str, schema: &SchemaRef, mode: WriteMode) -> TestStream {
    let dedup = mode == WriteMode::AppendDedup;
    let stream = TestStream::new("conformance", "kit", stream)
        .schema(schema.clone())
        .write(mode)
        .key(["id"])
        .run(format!("conformance-{stream}"));
    if dedup {
        stream.sync(SyncMode::Incremental).cursor("seq")
    } else {
        stream
    }
}

fn target(stream: &str) -> StreamTarget {
    test_stream(stream, &schema_with(None), WriteMode::Append).target()
}

fn mode_of(name: &str) -> WriteMode {
    match name {
        "overwrite" => WriteMode::Overwrite,
        "append_dedup" => WriteMode::AppendDedup,
        _ => WriteMode::Append,
    }
}

async fn open(
    dest: &dyn Destination,
    stream: &str,
    mode: WriteMode,
    schema: SchemaRef,
) -> Result<Box<dyn StreamWriter>, String> {
    test_stream(stream, &schema, mode)
        .open(dest)
        .await
        .map_err(|e| format!("open ({mode}) fails: {e}"))
}

async fn run_steps(
    dest: &dyn Destination,
    stream: &str,
    steps: &[Step],
    writer: &mut Option<Box<dyn StreamWriter>>,
) -> Result<(), String> {
    let schema = schema_with(None);
    for step in steps {
        match step {
            Step::Open(mode) => {
                *writer = Some(open(dest, stream, mode_of(mode), schema.clone()).await?)
            }
            Step::Write(ids) => {
                let w = writer.as_mut().ok_or("write before open")?;
                w.write(batch(&schema, ids)?)
                    .await
                    .map_err(|e| format!("write fails: {e}"))?
            }
            Step::Commit(n) => {
                let w = writer.as_mut().ok_or("commit before open")?;
                w.commit(&checkpoint(*n))
                    .await
                    .map_err(|e| format!("commit fails: {e}"))?
            }
            Step::Finish(n) => {
                let w = writer.as_mut().ok_or("finish before open")?;
                w.finish(&checkpoint(*n))
                    .await
                    .map_err(|e| format!("finish fails: {e}"))?
            }
        }
    }
    Ok(())
}

/// The destination suite for one connector and a store of its own (an empty folder, a fresh
/// database).
pub struct DestinationSuite<'a> {
    factory: &'a dyn DestinationFactory,
    config: Value,
    ctx: ConnectorContext,
    reader: &'a dyn VisibleRows,
    evolution: Evolution,
    child_limit: Duration,
}

type Check = Result<(), Fault>;

impl<'a> DestinationSuite<'a> {
    /// The suite for the destination `factory` builds from `config`; `reader` reads what a
    /// reader of the store sees.
    pub fn new(
        factory: &'a dyn DestinationFactory,
        config: Value,
        ctx: ConnectorContext,
        reader: &'a dyn VisibleRows,
    ) -> Self {
        Self {
            factory,
            config,
            ctx,
            reader,
            evolution: Evolution {
                adds_columns: true,
                refuses_retype: true,
            },
            child_limit: Duration::from_secs(300),
        }
    }

    /// What the destination declares about schema changes (default: adds columns, refuses
    /// retyped ones).
    pub fn evolution(mut self, evolution: Evolution) -> Self {
        self.evolution = evolution;
        self
    }

    /// Runs every check. `test_name` is the name of the calling test function (as `cargo test`
    /// filters it with `--exact`), which the writer children are started with.
    pub async fn run(self, test_name: &str) -> Result<(), Faults> {
        let mut faults = spec::check_configs(
            &self.factory.spec(),
            &self.config,
            |c| self.factory.build(c, &self.ctx),
            |d| d.check(),
        )
        .await;
        let dest = match self.factory.build(&self.config, &self.ctx) {
            Ok(d) => d,
            Err(err) => {
                faults.push(Fault::new(
                    "build",
                    format!("the fixture config does not build: {err}"),
                ));
                return Err(self.faults(faults));
            }
        };
        if let Err(err) = dest.check().await {
            faults.push(Fault::new(
                "check",
                format!("check fails on the fixture: {err}"),
            ));
        }
        let d = dest.as_ref();
        let checks: Vec<(&str, Check)> = vec![
            ("commit_durable", self.commit_durable(d, test_name).await),
            (
                "uncommitted_invisible",
                self.uncommitted_invisible(d, test_name).await,
            ),
            ("finish_atomic", self.finish_atomic(d, test_name).await),
            ("abort", self.abort(d).await),
            ("replay", self.replay(d, test_name).await),
            ("replay_dedup", self.replay_dedup(d, test_name).await),
            ("evolution", self.schema_evolution(d).await),
        ];
        faults.extend(checks.into_iter().filter_map(|(_, c)| c.err()));
        eprintln!(
            "conformance: destination `{}`: {} fault(s)",
            self.factory.name(),
            faults.len()
        );
        if faults.is_empty() {
            Ok(())
        } else {
            Err(self.faults(faults))
        }
    }

    fn faults(&self, faults: Vec<Fault>) -> Faults {
        Faults {
            connector: self.factory.name().to_string(),
            faults,
        }
    }

    /// Runs `steps` in a writer child and kills it (SIGKILL) once it says it is done.
    async fn in_child(
        &self,
        check: &'static str,
        test_name: &str,
        stream: &str,
        steps: Vec<Step>,
    ) -> Check {
        let scenario = Scenario {
            config: self.config.clone(),
            project_dir: self.ctx.project_dir.clone(),
            stream: stream.to_string(),
            steps,
        };
        let exe = std::env::current_exe()
            .map_err(|e| Fault::new(check, format!("no test binary: {e}")))?;
        let mut child = tokio::process::Command::new(exe)
            .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
            .env(
                CHILD_ENV,
                serde_json::to_string(&scenario).expect("a scenario serialises"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Fault::new(check, format!("cannot start the writer child: {e}")))?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut said = Vec::new();
        let ready = tokio::time::timeout(self.child_limit, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.ends_with(READY) {
                    return true;
                }
                said.push(line);
            }
            false
        })
        .await;
        let _ = child.kill().await;
        let _ = child.wait().await;
        match ready {
            Ok(true) => Ok(()),
            Ok(false) => Err(Fault::new(
                check,
                format!(
                    "the writer child of stream `{stream}` failed before it was killed (did the test call WriterChild::from_env() first, and is `{test_name}` its exact name?): {}",
                    said.join(" | ")
                ),
            )),
            Err(_) => Err(Fault::new(check, format!("the writer child of stream `{stream}` did not finish its steps within {:?}", self.child_limit))),
        }
    }

    async fn visible(&self, check: &'static str, stream: &str) -> Result<Vec<Row>, Fault> {
        let table =
            self.reader.visible(&target(stream)).await.map_err(|e| {
                Fault::new(check, format!("reading stream `{stream}` back fails: {e}"))
            })?;
        Ok(table
            .map(|t| t.project(&["id", "name", "seq"]))
            .unwrap_or_default())
    }

    /// Compares what a reader sees with `expected`, or fails with `what`.
    async fn expect_visible(
        &self,
        check: &'static str,
        stream: &str,
        expected: &[Row],
        what: &str,
    ) -> Check {
        let seen = self.visible(check, stream).await?;
        let diff = Diff::of(expected, &seen);
        if diff.is_empty() {
            return Ok(());
        }
        Err(Fault::new(
            check,
            format!(
                "stream `{stream}`: {what}: a reader sees {} row(s), expected {}: {}",
                seen.len(),
                expected.len(),
                diff.describe()
            ),
        ))
    }

    /// The checkpoint a freshly opened writer reports, checked against the last committed one.
    async fn stored_checkpoint(
        &self,
        dest: &dyn Destination,
        stream: &str,
        mode: WriteMode,
        last: u64,
    ) -> Result<Box<dyn StreamWriter>, Fault> {
        let writer = open(dest, stream, mode, schema_with(None))
            .await
            .map_err(|e| {
                Fault::new(
                    "stored_checkpoint",
                    format!("stream `{stream}`: reopening after a crash: {e}"),
                )
            })?;
        if writer.stores_checkpoints() {
            let stored = writer.committed_checkpoint();
            if stored != Some(checkpoint(last)) {
                return Err(Fault::new(
                    "stored_checkpoint",
                    format!(
                        "stream `{stream}`: after a crash the stored checkpoint is {}, but the last committed one was {}",
                        stored.map_or("none".into(), |c| c.position().to_string()),
                        checkpoint(last).position()
                    ),
                ));
            }
        }
        Ok(writer)
    }

    async fn commit_durable(&self, dest: &dyn Destination, test: &str) -> Check {
        let s = "durable";
        self.in_child(
            "commit_durable",
            test,
            s,
            session("append", &[(&[1, 2, 3], Some(1))]),
        )
        .await?;
        self.expect_visible("commit_durable", s, &rows(1..=3), "commit is not durable: after commit returned and the writer process was killed (SIGKILL)")
            .await?;
        let mut writer = self
            .stored_checkpoint(dest, s, WriteMode::Append, 1)
            .await?;
        let _ = writer.abort().await;
        Ok(())
    }

    async fn uncommitted_invisible(&self, dest: &dyn Destination, test: &str) -> Check {
        let c = "uncommitted_invisible";
        let s = "uncommitted";
        self.in_child(c, test, s, session("append", &[(&[1, 2], None)]))
            .await?;
        self.expect_visible(
            c,
            s,
            &[],
            "rows written but never committed show after the writer process was killed",
        )
        .await?;
        self.in_child(
            c,
            test,
            s,
            session("append", &[(&[1, 2, 3], Some(1)), (&[4, 5, 6], None)]),
        )
        .await?;
        self.expect_visible(
            c,
            s,
            &rows(1..=3),
            "rows written after the last commit show after the writer process was killed",
        )
        .await?;
        let mut w = self
            .stored_checkpoint(dest, s, WriteMode::Append, 1)
            .await?;
        let schema = schema_with(None);
        let step = async {
            w.write(batch(&schema, &[7])?)
                .await
                .map_err(|e| e.to_string())?;
            w.finish(&checkpoint(2)).await.map_err(|e| e.to_string())
        };
        step.await.map_err(|e| {
            Fault::new(
                c,
                format!("stream `{s}`: writing after recovery fails: {e}"),
            )
        })?;
        self.expect_visible(
            c,
            s,
            &rows([1, 2, 3, 7]),
            "open after a crash does not drop the uncommitted leftovers",
        )
        .await
    }

    async fn finish_atomic(&self, dest: &dyn Destination, test: &str) -> Check {
        let c = "finish_atomic";
        let s = "overwrite";
        let schema = schema_with(None);
        let fail = |e: String| Fault::new(c, format!("stream `{s}`: {e}"));
        let mut w = open(dest, s, WriteMode::Overwrite, schema.clone())
            .await
            .map_err(fail)?;
        w.write(batch(&schema, &[1, 2, 3]).map_err(fail)?)
            .await
            .map_err(|e| fail(e.to_string()))?;
        w.finish(&checkpoint(1))
            .await
            .map_err(|e| fail(e.to_string()))?;
        drop(w);
        self.expect_visible(
            c,
            s,
            &rows(1..=3),
            "finish of an overwrite did not publish the new table",
        )
        .await?;
        self.in_child(
            c,
            test,
            s,
            session("overwrite", &[(&[20, 21, 22], Some(2))]),
        )
        .await?;
        self.expect_visible(
            c,
            s,
            &rows(1..=3),
            "an overwrite killed after a commit, before finish, changed what readers see",
        )
        .await?;
        let mut w = open(dest, s, WriteMode::Overwrite, schema.clone())
            .await
            .map_err(fail)?;
        // Resume as the engine would: after the stored checkpoint, or from scratch.
        let stored = w.committed_checkpoint();
        let rest: Vec<i64> = if !w.stores_checkpoints()
            || stored.is_none()
            || stored == Some(checkpoint(1))
        {
            vec![20, 21, 22, 23]
        } else if stored == Some(checkpoint(2)) {
            vec![23]
        } else {
            let _ = w.abort().await;
            return Err(Fault::new(
                "stored_checkpoint",
                format!(
                    "stream `{s}`: an overwrite killed after commit(2) reopens with stored checkpoint {}, neither the last committed one nor the published table's",
                    stored.map_or("none".into(), |c| c.position().to_string())
                ),
            ));
        };
        w.write(batch(&schema, &rest).map_err(fail)?)
            .await
            .map_err(|e| fail(e.to_string()))?;
        w.commit(&checkpoint(3))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let early = self
            .expect_visible(c, s, &rows(1..=3), "an overwrite shows (part of) its new table after commit, before finish published it")
            .await;
        if early.is_err() {
            let _ = w.abort().await;
            return early;
        }
        w.finish(&checkpoint(4))
            .await
            .map_err(|e| fail(e.to_string()))?;
        drop(w);
        self.expect_visible(
            c,
            s,
            &rows(20..=23),
            "an overwrite resumed after a crash did not publish exactly its new table at finish",
        )
        .await
    }

    async fn abort(&self, dest: &dyn Destination) -> Check {
        let c = "abort";
        let schema = schema_with(None);
        for (s, mode) in [
            ("abort_append", WriteMode::Append),
            ("abort_overwrite", WriteMode::Overwrite),
        ] {
            let fail = |e: String| Fault::new(c, format!("stream `{s}`: {e}"));
            let mut w = open(dest, s, mode, schema.clone()).await.map_err(fail)?;
            w.write(batch(&schema, &[1, 2, 3]).map_err(fail)?)
                .await
                .map_err(|e| fail(e.to_string()))?;
            w.finish(&checkpoint(1))
                .await
                .map_err(|e| fail(e.to_string()))?;
            drop(w);
            let mut w = open(dest, s, mode, schema.clone()).await.map_err(fail)?;
            w.write(batch(&schema, &[4, 5]).map_err(fail)?)
                .await
                .map_err(|e| fail(e.to_string()))?;
            w.abort()
                .await
                .map_err(|e| fail(format!("abort fails: {e}")))?;
            drop(w);
            self.expect_visible(
                c,
                s,
                &rows(1..=3),
                &format!("abort ({mode}) left rows written since the last commit visible"),
            )
            .await?;
            let mut w = self.stored_checkpoint(dest, s, mode, 1).await?;
            let _ = w.abort().await;
        }
        Ok(())
    }

    async fn replay(&self, dest: &dyn Destination, test: &str) -> Check {
        let c = "replay";
        let s = "replay";
        let schema = schema_with(None);
        self.in_child(c, test, s, commit_twice("append")).await?;
        let fail = |e: String| Fault::new(c, format!("stream `{s}`: {e}"));
        let mut w = open(dest, s, WriteMode::Append, schema.clone())
            .await
            .map_err(fail)?;
        if !w.stores_checkpoints() {
            // The state store decides where an append resumes; nothing here to check.
            let _ = w.abort().await;
            return Ok(());
        }
        // The engine resumes from the stored checkpoint: replay what the source yields after it.
        let stored = w.committed_checkpoint();
        let replay: Vec<i64> = if stored == Some(checkpoint(2)) {
            vec![]
        } else if stored == Some(checkpoint(1)) {
            vec![4, 5, 6]
        } else {
            vec![1, 2, 3, 4, 5, 6]
        };
        if !replay.is_empty() {
            w.write(batch(&schema, &replay).map_err(fail)?)
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        w.finish(&checkpoint(3))
            .await
            .map_err(|e| fail(e.to_string()))?;
        drop(w);
        let seen = self.expect_visible(
            "replay_duplicates",
            s,
            &rows(1..=6),
            &format!(
                "the writer was killed after commit(2); it reopened with stored checkpoint {} and the rows after it were replayed",
                stored.as_ref().map_or("none".into(), |c| c.position().to_string())
            ),
        )
        .await;
        if stored != Some(checkpoint(2)) {
            return Err(Fault::new(
                "stored_checkpoint",
                format!(
                    "stream `{s}`: after a crash the stored checkpoint is {}, but the last committed one was {}{}",
                    stored.map_or("none".into(), |c| c.position().to_string()),
                    checkpoint(2).position(),
                    seen.err().map_or(String::new(), |f| format!("; so {}", f.message))
                ),
            ));
        }
        seen
    }

    async fn replay_dedup(&self, dest: &dyn Destination, test: &str) -> Check {
        let c = "replay_dedup";
        let s = "replay_dedup";
        let schema = schema_with(None);
        self.in_child(c, test, s, commit_twice("append_dedup"))
            .await?;
        let fail = |e: String| Fault::new(c, format!("stream `{s}`: {e}"));
        // A crash between the destination's commit and the state store: the engine replays the
        // last committed batch (from the older checkpoint).
        let mut w = open(dest, s, WriteMode::AppendDedup, schema.clone())
            .await
            .map_err(fail)?;
        w.write(batch(&schema, &[4, 5, 6]).map_err(fail)?)
            .await
            .map_err(|e| fail(e.to_string()))?;
        w.finish(&checkpoint(3))
            .await
            .map_err(|e| fail(e.to_string()))?;
        drop(w);
        self.expect_visible(c, s, &rows(1..=6), "replaying the last committed batch into an append_dedup stream after a crash (writer killed after commit(2)) does not settle to one row per key")
            .await
    }

    async fn schema_evolution(&self, dest: &dyn Destination) -> Check {
        let c = "evolution";
        let s = "evolution";
        let fail = |e: String| Fault::new(c, format!("stream `{s}`: {e}"));
        let base = schema_with(None);
        let mut w = open(dest, s, WriteMode::Append, base.clone())
            .await
            .map_err(fail)?;
        w.write(batch(&base, &[1, 2]).map_err(fail)?)
            .await
            .map_err(|e| fail(e.to_string()))?;
        w.finish(&checkpoint(1))
            .await
            .map_err(|e| fail(e.to_string()))?;
        drop(w);

        let wider = schema_with(Some(Field::new("extra", DataType::Int64, true)));
        let added = async {
            let mut w = open(dest, s, WriteMode::Append, wider.clone()).await?;
            let r = async {
                w.write(batch(&wider, &[3, 4])?)
                    .await
                    .map_err(|e| e.to_string())?;
                w.finish(&checkpoint(2)).await.map_err(|e| e.to_string())
            }
            .await;
            if r.is_err() {
                let _ = w.abort().await;
            }
            r
        }
        .await;
        match (added, self.evolution.adds_columns) {
            (Ok(()), true) => {
                let table = self.reader.visible(&target(s)).await.map_err(fail)?.unwrap_or_default();
                let seen = table.project(&["id", "extra"]);
                let want: Vec<Row> = vec![
                    vec![Some("1".into()), None],
                    vec![Some("2".into()), None],
                    vec![Some("3".into()), Some("300".into())],
                    vec![Some("4".into()), Some("400".into())],
                ];
                let diff = Diff::of(&want, &seen);
                if !diff.is_empty() {
                    return Err(fail(format!(
                        "after adding nullable column `extra`, (id, extra) reads {}; earlier rows should read NULL: {}",
                        seen.iter().map(show_row).collect::<Vec<_>>().join(" "),
                        diff.describe()
                    )));
                }
            }
            (Err(e), true) => return Err(fail(format!("the destination declares that it adds columns, but adding nullable column `extra` fails: {e}"))),
            (Ok(()), false) => return Err(fail("the destination declares that it refuses new columns, but adding `extra` succeeded".into())),
            (Err(e), false) if !crate::names(&e, "extra") => return Err(fail(format!("refusing new column `extra` does not name it: {e}"))),
            (Err(_), false) => {}
        }
        if self.evolution.refuses_retype {
            let retyped = Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("name", DataType::Int64, true),
                Field::new("seq", DataType::Int64, false),
            ]));
            let outcome = async {
                let mut w = open(dest, s, WriteMode::Append, retyped.clone()).await?;
                let r = async {
                    w.write(batch(&retyped, &[5])?)
                        .await
                        .map_err(|e| e.to_string())?;
                    w.finish(&checkpoint(3)).await.map_err(|e| e.to_string())
                }
                .await;
                if r.is_err() {
                    let _ = w.abort().await;
                }
                r
            }
            .await;
            match outcome {
                Ok(()) => return Err(fail("column `name` retyped from text to int64 was accepted; the destination declares it refuses retyped columns".into())),
                Err(e) if !crate::names(&e, "name") => return Err(fail(format!("refusing retyped column `name` does not name it: {e}"))),
                Err(_) => {}
            }
        }
        Ok(())
    }
}
