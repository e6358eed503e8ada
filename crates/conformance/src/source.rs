//! The source suite: [`SourceSuite`] holds one source, built from its test fixture's config, to
//! the contract of [`weft_core::Source`].
//!
//! ```no_run
//! # async fn doc() {
//! use weft_conformance::SourceSuite;
//! # let factory: &dyn weft_core::SourceFactory = unimplemented!();
//! # let ctx: weft_core::ConnectorContext = unimplemented!();
//! let report = SourceSuite::new(factory, serde_json::json!({"scale": 500}), ctx)
//!     .run()
//!     .await
//!     .unwrap_or_else(|faults| panic!("{faults}"));
//! assert!(report.checkpoints_resumed > 0);
//! # }
//! ```

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use weft_core::arrow_schema::SchemaRef;
use weft_core::{
    Catalog, Checkpoint, ConfiguredStream, ConnectorContext, Source, SourceFactory, SourceMessage,
    StreamDescriptor, SyncMode, WriteMode,
};

use crate::table::{show_row, Diff, Table};
use crate::{spec, Fault, Faults};

/// What a passing run checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceReport {
    /// Stream × mode combinations read.
    pub streams: usize,
    /// Reads made (from scratch, resumed, cancelled).
    pub reads: usize,
    /// Checkpoints a read resumed from and was compared.
    pub checkpoints_resumed: usize,
    /// Rows of the from-scratch reads.
    pub rows: usize,
}

/// The source suite for one connector and its test fixture.
pub struct SourceSuite<'a> {
    factory: &'a dyn SourceFactory,
    config: Value,
    ctx: ConnectorContext,
    streams: Option<Vec<String>>,
    modes: Vec<SyncMode>,
    read_limit: Duration,
    undecodable: Vec<Undecodable>,
}

/// A broken fixture: a config under which stream `stream` holds a value in `column` that the
/// connector cannot decode (text in a number column, a malformed timestamp).
#[derive(Debug, Clone)]
struct Undecodable {
    config: Value,
    stream: String,
    column: String,
}

/// Everything one read yielded, as the suite needs it.
#[derive(Debug, Default)]
struct Read {
    table: Table,
    /// Each checkpoint with how many rows were yielded before it.
    checkpoints: Vec<(Checkpoint, usize)>,
    /// Whether the last message was a checkpoint.
    ends_with_checkpoint: bool,
    /// Batches and checkpoints yielded.
    messages: usize,
}

impl<'a> SourceSuite<'a> {
    /// The suite for the source `factory` builds from `config` (the connector's own test
    /// fixture: small, a few checkpoints per stream, and unchanging while the suite runs).
    pub fn new(factory: &'a dyn SourceFactory, config: Value, ctx: ConnectorContext) -> Self {
        Self {
            factory,
            config,
            ctx,
            streams: None,
            modes: vec![SyncMode::FullRefresh, SyncMode::Incremental],
            read_limit: Duration::from_secs(300),
            undecodable: Vec::new(),
        }
    }

    /// Reads only these streams (default: every discovered stream).
    pub fn streams(mut self, streams: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.streams = Some(streams.into_iter().map(Into::into).collect());
        self
    }

    /// Reads in these modes where a stream supports them (default: full refresh and
    /// incremental; CDC needs a changing fixture, which the suite does not make).
    pub fn modes(mut self, modes: impl IntoIterator<Item = SyncMode>) -> Self {
        self.modes = modes.into_iter().collect();
        self
    }

    /// How long one read may take before it counts as hung (default 300 s).
    pub fn read_limit(mut self, limit: Duration) -> Self {
        self.read_limit = limit;
        self
    }

    /// Adds the undecodable-row check: built from `config` (the fixture with one bad value), a
    /// read of `stream` from scratch (full refresh where it has one) must fail, and its error must name the stream and `column`
    /// (quoted, as `` `amount` ``), so that whoever reads the error knows what to fix. A read
    /// that ends without an error, drops the row, or fails vaguely is a fault. May be given
    /// once per broken fixture.
    pub fn undecodable(
        mut self,
        config: Value,
        stream: impl Into<String>,
        column: impl Into<String>,
    ) -> Self {
        self.undecodable.push(Undecodable {
            config,
            stream: stream.into(),
            column: column.into(),
        });
        self
    }

    fn build(&self, config: &Value) -> weft_core::Result<Box<dyn Source>> {
        self.factory.build(config, &self.ctx)
    }

    /// Runs every check; all faults found, or what was checked.
    pub async fn run(self) -> Result<SourceReport, Faults> {
        let mut faults = Vec::new();
        let mut report = SourceReport::default();
        let name = self.factory.name().to_string();
        let fail = |faults: Vec<Fault>| Faults {
            connector: name.clone(),
            faults,
        };

        faults.extend(
            spec::check_configs(
                &self.factory.spec(),
                &self.config,
                |c| self.build(c),
                |s| s.check(),
            )
            .await,
        );
        let source = match self.build(&self.config) {
            Ok(s) => s,
            Err(err) => {
                faults.push(Fault::new(
                    "build",
                    format!("the fixture config does not build: {err}"),
                ));
                return Err(fail(faults));
            }
        };
        if let Err(err) = source.check().await {
            faults.push(Fault::new(
                "check",
                format!("check fails on the fixture: {err}"),
            ));
        }
        let catalog = match self.discover(source.as_ref(), &mut faults).await {
            Some(c) => c,
            None => return Err(fail(faults)),
        };
        for descriptor in &catalog.streams {
            if self
                .streams
                .as_ref()
                .is_some_and(|only| !only.iter().any(|s| s == descriptor.name.as_str()))
            {
                continue;
            }
            for mode in self.modes.iter().copied() {
                if !descriptor.supported_sync_modes.contains(&mode) {
                    continue;
                }
                let stream = configured(self.factory.name(), descriptor, mode);
                report.streams += 1;
                self.check_stream(source.as_ref(), &stream, &mut report, &mut faults)
                    .await;
            }
        }
        if let Some(only) = &self.streams {
            for s in only.iter().filter(|s| catalog.stream(s).is_none()) {
                faults.push(Fault::new(
                    "discover",
                    format!("stream `{s}` asked for by the test is not discovered"),
                ));
            }
        }
        for broken in &self.undecodable {
            report.reads += 1;
            if let Err(fault) = self.check_undecodable(broken).await {
                faults.push(fault);
            }
        }
        eprintln!(
            "conformance: source `{name}`: {} stream(s), {} read(s), {} checkpoint(s) resumed, {} row(s), {} fault(s)",
            report.streams,
            report.reads,
            report.checkpoints_resumed,
            report.rows,
            faults.len()
        );
        if faults.is_empty() {
            Ok(report)
        } else {
            Err(fail(faults))
        }
    }

    /// `discover` twice, and on a freshly built source: the same catalog, valid throughout.
    async fn discover(&self, source: &dyn Source, faults: &mut Vec<Fault>) -> Option<Catalog> {
        let catalog = match source.discover().await {
            Ok(c) => c,
            Err(err) => {
                faults.push(Fault::new(
                    "discover",
                    format!("discover fails on the fixture: {err}"),
                ));
                return None;
            }
        };
        let again = source.discover().await.ok();
        let fresh = match self.build(&self.config) {
            Ok(s) => s.discover().await.ok(),
            Err(_) => None,
        };
        for (what, other) in [
            ("a second discover", again),
            ("discover on a new source", fresh),
        ] {
            if other.as_ref() != Some(&catalog) {
                faults.push(Fault::new(
                    "discover",
                    format!(
                        "discover is not deterministic: {what} returned {} instead of {}",
                        other.map_or("an error".into(), |c| c.to_json().to_string()),
                        catalog.to_json()
                    ),
                ));
            }
        }
        if catalog.streams.is_empty() {
            faults.push(Fault::new(
                "discover",
                "the fixture's catalog has no streams",
            ));
        }
        for (i, s) in catalog.streams.iter().enumerate() {
            if catalog.streams[..i].iter().any(|o| o.name == s.name) {
                faults.push(Fault::new(
                    "discover",
                    format!("stream `{}` is listed twice", s.name),
                ));
            }
            faults.extend(descriptor_faults(s));
        }
        Some(catalog)
    }

    async fn check_stream(
        &self,
        source: &dyn Source,
        stream: &ConfiguredStream,
        report: &mut SourceReport,
        faults: &mut Vec<Fault>,
    ) {
        let label = format!("stream `{}` ({})", stream.name(), stream.sync_mode);
        let before = faults.len();
        let scratch = match self.read(source, stream, None, faults, &label).await {
            Some(r) => r,
            None => return,
        };
        report.reads += 1;
        report.rows += scratch.table.rows.len();
        if !scratch.ends_with_checkpoint {
            faults.push(Fault::new(
                "read_final_checkpoint",
                format!("{label}: a complete read from scratch does not end with a checkpoint"),
            ));
        }
        if faults.len() > before {
            return;
        }
        // Resume from every checkpoint: exactly the rows yielded after it.
        let last = scratch.checkpoints.len().saturating_sub(1);
        for (i, (cp, offset)) in scratch.checkpoints.iter().enumerate() {
            // A complete full refresh given back starts the next full read, by contract.
            if i == last && stream.sync_mode == SyncMode::FullRefresh {
                continue;
            }
            let Some(resumed) = self.read(source, stream, Some(cp), faults, &label).await else {
                continue;
            };
            report.reads += 1;
            report.checkpoints_resumed += 1;
            let expected = &scratch.table.rows[*offset..];
            let diff = Diff::of(expected, &resumed.table.rows);
            if diff.is_empty() {
                continue;
            }
            let next = scratch
                .checkpoints
                .get(i + 1)
                .map_or(scratch.table.rows.len(), |(_, o)| *o);
            let segment = &scratch.table.rows[*offset..next];
            // Losing exactly the rows yielded right after the checkpoint (more than one, or before any
            // row was yielded) is a checkpoint emitted before its rows; a single lost row is a loss.
            let before_rows = (segment.len() > 1 || *offset == 0) && diff.extra.is_empty();
            let fault = if before_rows && Diff::of(segment, &[]).missing == diff.missing {
                Fault::new(
                    "checkpoint_before_rows",
                    format!(
                        "{label}: checkpoint #{i} {} was emitted before its rows: resuming from it skips all {} row(s) the read yielded right after it (first {}); a checkpoint must follow the batches it covers",
                        cp.position(),
                        segment.len(),
                        show_row(&segment[0])
                    ),
                )
            } else if diff.extra.is_empty() {
                Fault::new(
                    "read_resume_loss",
                    format!(
                        "{label}: resuming from checkpoint #{i} {} (after {offset} of {} rows) loses rows: {}",
                        cp.position(),
                        scratch.table.rows.len(),
                        diff.describe()
                    ),
                )
            } else {
                Fault::new(
                    "read_resume_duplicates",
                    format!(
                        "{label}: resuming from checkpoint #{i} {} (after {offset} of {} rows) does not yield exactly the rows after it: {}",
                        cp.position(),
                        scratch.table.rows.len(),
                        diff.describe()
                    ),
                )
            };
            faults.push(fault);
        }
        self.check_cancellation(source, stream, &scratch, report, faults, &label)
            .await;
    }

    /// A read from scratch of the broken fixture's stream: it must fail naming stream and
    /// column.
    async fn check_undecodable(&self, broken: &Undecodable) -> Result<(), Fault> {
        let c = "undecodable_row";
        let (stream, column) = (&broken.stream, &broken.column);
        let what = format!(
            "stream `{stream}`: the broken fixture holds a value in column `{column}` the connector cannot decode"
        );
        let source = self
            .build(&broken.config)
            .map_err(|e| Fault::new(c, format!("{what}, but its config does not build: {e}")))?;
        let catalog = source
            .discover()
            .await
            .map_err(|e| Fault::new(c, format!("{what}, but discover fails on it: {e}")))?;
        let Some(descriptor) = catalog.stream(stream) else {
            return Err(Fault::new(
                c,
                format!("{what}, but the stream is not discovered from it"),
            ));
        };
        // A full refresh where the stream offers one (it reads every row), else its first mode.
        let mode = if descriptor
            .supported_sync_modes
            .contains(&SyncMode::FullRefresh)
        {
            SyncMode::FullRefresh
        } else {
            descriptor
                .supported_sync_modes
                .first()
                .copied()
                .unwrap_or(SyncMode::FullRefresh)
        };
        let configured = configured(self.factory.name(), descriptor, mode);
        let work = async {
            let mut messages = source.read(&configured, None).await?;
            let mut rows = 0;
            while let Some(message) = messages.next().await {
                if let SourceMessage::Records(batch) = message? {
                    rows += batch.num_rows();
                }
            }
            Ok::<_, weft_core::ConnectorError>(rows)
        };
        let outcome = tokio::time::timeout(self.read_limit, work)
            .await
            .map_err(|_| {
                Fault::new(
                    c,
                    format!("{what}; its read did not end within {:?}", self.read_limit),
                )
            })?;
        match outcome {
            Ok(rows) => Err(Fault::new(
                c,
                format!(
                    "{what}, but its read ended without an error after {rows} row(s): a row the connector cannot decode must fail the read, naming the stream and the column"
                ),
            )),
            Err(err) => {
                let text = err.to_string();
                let missing: Vec<&str> = [("the stream", stream), ("the column", column)]
                    .into_iter()
                    .filter(|(_, name)| !crate::names(&text, name))
                    .map(|(what, _)| what)
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(Fault::new(
                        c,
                        format!(
                            "{what}; the read fails, but its error does not name {}: {text}",
                            missing.join(" or ")
                        ),
                    ))
                }
            }
        }
    }

    /// Drops reads mid-way (the engine's cancellation: a future dropped at an await point),
    /// acknowledges the last checkpoint seen twice, and resumes from it: exactly the rest.
    async fn check_cancellation(
        &self,
        source: &dyn Source,
        stream: &ConfiguredStream,
        scratch: &Read,
        report: &mut SourceReport,
        faults: &mut Vec<Fault>,
        label: &str,
    ) {
        // The read future itself, dropped at its first await point.
        {
            let fut = source.read(stream, None);
            let mut fut = std::pin::pin!(fut);
            let _ = futures::poll!(fut.as_mut());
        }
        // Drop points: after each checkpoint and in between (at most ~20 reads).
        let total = scratch.messages;
        let step = total.div_ceil(20).max(1);
        for cut in (1..=total).step_by(step) {
            let mut messages = match source.read(stream, None).await {
                Ok(m) => m,
                Err(err) => {
                    faults.push(Fault::new(
                        "cancel",
                        format!("{label}: a read after a cancelled one fails: {err}"),
                    ));
                    return;
                }
            };
            report.reads += 1;
            let mut seen = 0;
            let mut last_cp = None;
            while seen < cut {
                match messages.next().await {
                    Some(Ok(SourceMessage::Checkpoint(cp))) => {
                        last_cp = Some(cp);
                        seen += 1;
                    }
                    Some(Ok(SourceMessage::Records(_))) => seen += 1,
                    Some(Ok(_)) => {}
                    Some(Err(err)) => {
                        faults.push(Fault::new(
                            "cancel",
                            format!("{label}: a read fails mid-way: {err}"),
                        ));
                        return;
                    }
                    None => break,
                }
            }
            drop(messages);
            let Some(cp) = last_cp else { continue };
            for attempt in ["first", "repeated"] {
                if let Err(err) = source.ack(stream, &cp).await {
                    faults.push(Fault::new(
                        "ack_idempotent",
                        format!("{label}: the {attempt} ack of checkpoint {} after a dropped read fails: {err}", cp.position()),
                    ));
                    return;
                }
            }
            let Some(offset) = scratch
                .checkpoints
                .iter()
                .find(|(c, _)| *c == cp)
                .map(|(_, o)| *o)
            else {
                continue;
            };
            if stream.sync_mode == SyncMode::FullRefresh && offset == scratch.table.rows.len() {
                continue;
            }
            let Some(resumed) = self.read(source, stream, Some(&cp), faults, label).await else {
                return;
            };
            report.reads += 1;
            let diff = Diff::of(&scratch.table.rows[offset..], &resumed.table.rows);
            if !diff.is_empty() {
                faults.push(Fault::new(
                    "cancel",
                    format!(
                        "{label}: after a read was dropped past checkpoint {} and it was acknowledged, resuming from it does not yield exactly the rest: {}",
                        cp.position(),
                        diff.describe()
                    ),
                ));
                return;
            }
        }
    }

    /// One whole read, checking each batch against the schema in force.
    async fn read(
        &self,
        source: &dyn Source,
        stream: &ConfiguredStream,
        state: Option<&Checkpoint>,
        faults: &mut Vec<Fault>,
        label: &str,
    ) -> Option<Read> {
        let from = state.map_or("from scratch".to_string(), |c| {
            format!("from checkpoint {}", c.position())
        });
        let work = async {
            let mut messages = source.read(stream, state).await.map_err(|e| {
                Fault::new("read", format!("{label}: read {from} fails to start: {e}"))
            })?;
            let mut schema: SchemaRef = stream.descriptor.schema.clone();
            let mut read = Read {
                table: Table::new(schema.fields().iter().map(|f| f.name().clone())),
                ..Read::default()
            };
            let mut batch_no = 0;
            while let Some(message) = messages.next().await {
                let message = message
                    .map_err(|e| Fault::new("read", format!("{label}: read {from} fails: {e}")))?;
                read.ends_with_checkpoint = matches!(message, SourceMessage::Checkpoint(_));
                if matches!(
                    message,
                    SourceMessage::Checkpoint(_) | SourceMessage::Records(_)
                ) {
                    read.messages += 1;
                }
                match message {
                    SourceMessage::Records(batch) => {
                        if let Some(why) = schema_mismatch(&schema, &batch) {
                            return Err(Fault::new(
                                "batch_schema",
                                format!("{label}: batch #{batch_no} of the read {from} does not match the declared schema: {why}"),
                            ));
                        }
                        batch_no += 1;
                        read.table
                            .push_batch(&batch)
                            .map_err(|e| Fault::new("batch_schema", format!("{label}: {e}")))?;
                    }
                    SourceMessage::Checkpoint(cp) => {
                        read.checkpoints.push((cp, read.table.rows.len()))
                    }
                    SourceMessage::SchemaChange(next) => {
                        for f in next.fields() {
                            if !read.table.columns.contains(f.name()) {
                                read.table.columns.push(f.name().clone());
                                read.table.rows.iter_mut().for_each(|r| r.push(None));
                            }
                        }
                        schema = next;
                    }
                    SourceMessage::Changes(_) => {
                        return Err(Fault::new(
                            "read",
                            format!(
                            "{label}: a {} read yields change batches, which only CDC reads may",
                            stream.sync_mode
                        ),
                        ))
                    }
                    SourceMessage::Estimate { .. } | SourceMessage::OffSchema { .. } => {}
                }
            }
            Ok(read)
        };
        match tokio::time::timeout(self.read_limit, work).await {
            Ok(Ok(read)) => Some(read),
            Ok(Err(fault)) => {
                faults.push(fault);
                None
            }
            Err(_) => {
                faults.push(Fault::new(
                    "read",
                    format!(
                        "{label}: read {from} did not end within {:?}",
                        self.read_limit
                    ),
                ));
                None
            }
        }
    }
}

/// The stream as a product would configure it for `mode`.
fn configured(connector: &str, descriptor: &StreamDescriptor, mode: SyncMode) -> ConfiguredStream {
    let cursor = (mode == SyncMode::Incremental)
        .then(|| {
            descriptor
                .source_defined_cursor
                .clone()
                .or_else(|| descriptor.cursor_candidates.first().cloned())
        })
        .flatten();
    ConfiguredStream {
        descriptor: descriptor.clone(),
        sync_mode: mode,
        write_mode: WriteMode::Append,
        cursor_field: cursor,
        primary_key: descriptor.primary_key.clone(),
        pipeline_id: format!("conformance.{connector}.{}", descriptor.name),
        follow: false,
    }
}

/// What is wrong with one discovered stream: duplicate or empty columns, keys and cursors not
/// in the schema, incremental without a cursor.
fn descriptor_faults(s: &StreamDescriptor) -> Vec<Fault> {
    let mut faults = Vec::new();
    let fields = s.schema.fields();
    let has = |c: &str| fields.iter().any(|f| f.name() == c);
    for (i, f) in fields.iter().enumerate() {
        if f.name().is_empty() {
            faults.push(Fault::new(
                "discover",
                format!("stream `{}`: column #{i} has an empty name", s.name),
            ));
        }
        if fields[..i].iter().any(|o| o.name() == f.name()) {
            faults.push(Fault::new(
                "discover",
                format!(
                    "stream `{}`: column `{}` is declared twice",
                    s.name,
                    f.name()
                ),
            ));
        }
    }
    for (what, cols) in [
        ("primary key column", &s.primary_key),
        ("cursor candidate", &s.cursor_candidates),
    ] {
        for c in cols.iter().filter(|c| !has(c)) {
            faults.push(Fault::new(
                "discover",
                format!(
                    "stream `{}`: {what} `{c}` is not a column of its schema",
                    s.name
                ),
            ));
        }
    }
    if let Some(c) = s.source_defined_cursor.as_deref().filter(|c| !has(c)) {
        faults.push(Fault::new(
            "discover",
            format!(
                "stream `{}`: source-defined cursor `{c}` is not a column of its schema",
                s.name
            ),
        ));
    }
    if s.supported_sync_modes.is_empty() {
        faults.push(Fault::new(
            "discover",
            format!("stream `{}` supports no sync mode", s.name),
        ));
    }
    if s.supported_sync_modes.contains(&SyncMode::Incremental)
        && s.cursor_candidates.is_empty()
        && s.source_defined_cursor.is_none()
    {
        faults.push(Fault::new(
            "discover",
            format!(
                "stream `{}` supports incremental reads but offers no cursor",
                s.name
            ),
        ));
    }
    faults
}

/// Why `batch` does not match `schema`, if it does not: columns by name and order, types, and
/// NULLs in non-nullable columns.
fn schema_mismatch(
    schema: &SchemaRef,
    batch: &weft_core::arrow_array::RecordBatch,
) -> Option<String> {
    let got = batch.schema();
    let names = |s: &SchemaRef| {
        s.fields()
            .iter()
            .map(|f| f.name().clone())
            .collect::<Vec<_>>()
    };
    if names(schema) != names(&got) {
        return Some(format!(
            "columns are {:?}, declared {:?}",
            names(&got),
            names(schema)
        ));
    }
    for (i, (want, have)) in schema.fields().iter().zip(got.fields()).enumerate() {
        if want.data_type() != have.data_type() {
            return Some(format!(
                "column `{}` is {}, declared {}",
                want.name(),
                have.data_type(),
                want.data_type()
            ));
        }
        let nulls = batch.column(i).null_count();
        if !want.is_nullable() && nulls > 0 {
            return Some(format!(
                "column `{}` is declared non-nullable but holds {nulls} NULL(s)",
                want.name()
            ));
        }
    }
    None
}
