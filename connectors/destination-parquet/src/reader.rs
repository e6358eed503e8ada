//! The lake read back: [`LakeReader`], a [`Source`] of the published streams of one product,
//! for products that read another product (`source: { product: finance/revenue }`).
//!
//! A read pins the stream's published version (it resolves the stream's symlink once and opens
//! every file that version lists before yielding a row), so a publish racing it can neither
//! mix versions nor pull files away. Progress is by file: data files are immutable and named
//! once (`part-<seq>-<uuid>`), and a version keeps the files of the one before it that did not
//! change (hard links), so the checkpoint lists the files read (and the rows read of the
//! current one) and an incremental read reads only the files it has not read. A compaction
//! (`append_dedup`) rewrites the files holding changed keys: their rows come again, which
//! an `append_dedup` consumer settles by key; an `append` consumer of such a stream is refused.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::{Deserialize, Serialize};
use weft_core::arrow_array::RecordBatch;
use weft_core::arrow_schema::{DataType, Field, Schema, SchemaRef};
use weft_core::{
    Catalog, Checkpoint, ConfiguredStream, ConnectorError, DomainName, MessageStream, ProductName,
    Result, Source, SourceMessage, StreamDescriptor, StreamName, SyncMode, WriteMode,
};

use crate::layout::{self, WEFT_DIR};
use crate::manifest::{read_manifest, Manifest};

/// Rows per batch read back.
const BATCH_ROWS: usize = 32 * 1024;

/// The published streams of one product of a lake, as a source.
#[derive(Debug, Clone)]
pub struct LakeReader {
    root: PathBuf,
    domain: DomainName,
    product: ProductName,
}

/// A read's position: the published version it read, the files of it read completely and
/// the rows read of the one in progress. Names the product and stream, so it is the record
/// of what a consumer's run read (its lineage).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ReadState {
    /// `domain/product/stream` read.
    #[serde(default)]
    upstream: String,
    /// The upstream's manifest version read.
    version: u64,
    /// Data files read completely.
    files: BTreeSet<String>,
    /// The file being read and the rows of it already yielded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current: Option<(String, u64)>,
    /// The read covered every file of `version`.
    complete: bool,
}

impl LakeReader {
    pub fn new(root: PathBuf, domain: DomainName, product: ProductName) -> Self {
        Self {
            root,
            domain,
            product,
        }
    }

    fn label(&self, stream: &StreamName) -> String {
        format!("{}/{}/{stream}", self.domain, self.product)
    }

    fn product_dir(&self) -> PathBuf {
        self.root
            .join(self.domain.as_str())
            .join(self.product.as_str())
    }

    fn stream_dir(&self, stream: &StreamName) -> PathBuf {
        layout::stream_dir(&self.root, &self.domain, &self.product, stream)
    }
}

/// The published version folder a stream path points at, and its manifest.
fn published(label: &str, stream_dir: &Path) -> Result<Option<(PathBuf, Manifest)>> {
    let version = match std::fs::canonicalize(stream_dir) {
        Ok(v) => v,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ConnectorError::io("reading", stream_dir, e)),
    };
    let manifest = read_manifest(&version)?;
    Ok(manifest.map(|m| (version, m)))
        .map_err(|e: ConnectorError| ConnectorError::Other(format!("{label}: {e}")))
}

/// The Arrow schema a manifest records.
fn schema_of(label: &str, manifest: &Manifest) -> Result<SchemaRef> {
    let fields = manifest
        .fields
        .iter()
        .map(|c| {
            DataType::from_str(&c.data_type)
                .map(|t| Field::new(&c.name, t, c.nullable))
                .map_err(|e| {
                    ConnectorError::Schema(format!(
                        "{label}: column `{}` has type {:?} in the lake manifest, which this weft cannot read ({e})",
                        c.name, c.data_type
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

#[async_trait]
impl Source for LakeReader {
    async fn check(&self) -> Result<()> {
        let dir = self.product_dir();
        if dir.is_dir() {
            Ok(())
        } else {
            Err(ConnectorError::Other(format!(
                "product `{}/{}` has nothing in the lake yet ({} does not exist); sync it first",
                self.domain,
                self.product,
                dir.display()
            )))
        }
    }

    async fn discover(&self) -> Result<Catalog> {
        let reader = self.clone();
        tokio::task::spawn_blocking(move || reader.discover_blocking())
            .await
            .map_err(|e| ConnectorError::Other(format!("reading the lake: {e}")))?
    }

    async fn read(
        &self,
        stream: &ConfiguredStream,
        state: Option<&Checkpoint>,
    ) -> Result<MessageStream> {
        let name = stream.name().clone();
        let label = self.label(&name);
        if stream.sync_mode == SyncMode::Cdc {
            return Err(ConnectorError::Unsupported(format!(
                "{label}: a product is read in full_refresh or incremental mode, not cdc"
            )));
        }
        let state: Option<ReadState> = state.map(|c| c.decode()).transpose().map_err(|e| {
            ConnectorError::Other(format!(
                "{label}: the saved state is not a product-read checkpoint ({e}); reset the stream (`weft sync reset`) to read the product again"
            ))
        })?;
        let dir = self.stream_dir(&name);
        let Some((version_dir, manifest)) = published(&label, &dir)? else {
            return Err(ConnectorError::Other(format!(
                "{label} has no published data yet; sync it first"
            )));
        };
        if stream.sync_mode == SyncMode::Incremental
            && manifest.write_mode == WriteMode::AppendDedup
            && stream.write_mode == WriteMode::Append
        {
            return Err(ConnectorError::Unsupported(format!(
                "{label} is kept as `append_dedup`: settling it rewrites files, whose rows an incremental read meets again; write this stream as `append_dedup` to settle them by key too"
            )));
        }
        let plan = plan_read(&label, stream.sync_mode, &manifest, state)?;
        let schema = stream.descriptor.schema.clone();
        // Every file is opened now: a publish deleting this version's folder later cannot
        // take them away mid-read.
        let mut opened = Vec::new();
        for (file, skip) in &plan.todo {
            let path = version_dir.join(file);
            let handle = File::open(&path).map_err(|e| ConnectorError::io("opening", &path, e))?;
            opened.push((file.clone(), *skip, handle));
        }
        let rows: u64 = plan.todo_rows;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<SourceMessage>>(2);
        tokio::task::spawn_blocking(move || {
            let send = |msg| tx.blocking_send(msg).is_ok();
            if !send(Ok(SourceMessage::Estimate { rows })) {
                return;
            }
            if let Err(e) = read_files(&label, opened, plan.state, &schema, &send) {
                send(Err(e));
            }
        });
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }
}

impl LakeReader {
    fn discover_blocking(&self) -> Result<Catalog> {
        let dir = self.product_dir();
        let mut names = Vec::new();
        match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ConnectorError::io("listing", &dir, e)),
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|e| ConnectorError::io("listing", &dir, e))?;
                    let Ok(name) = entry.file_name().into_string() else {
                        continue;
                    };
                    if name == WEFT_DIR || name.starts_with('.') {
                        continue;
                    }
                    if let Ok(stream) = StreamName::new(name.as_str()) {
                        names.push(stream);
                    }
                }
            }
        }
        names.sort();
        let mut streams = Vec::new();
        for name in names {
            let label = self.label(&name);
            let Some((_, manifest)) = published(&label, &self.stream_dir(&name))? else {
                continue;
            };
            let mut modes = vec![SyncMode::FullRefresh];
            if matches!(
                manifest.write_mode,
                WriteMode::Append | WriteMode::AppendDedup
            ) {
                modes.push(SyncMode::Incremental);
            }
            streams.push(StreamDescriptor {
                schema: schema_of(&label, &manifest)?,
                primary_key: Vec::new(),
                cursor_candidates: Vec::new(),
                source_defined_cursor: None,
                supported_sync_modes: modes,
                row_estimate: Some(manifest.files.iter().map(|f| f.rows).sum()),
                name,
            });
        }
        Ok(Catalog { streams })
    }
}

struct ReadPlan {
    /// Files to read, in commit order, with the rows of each already yielded.
    todo: Vec<(String, u64)>,
    todo_rows: u64,
    /// The position before the first of them.
    state: ReadState,
}

/// What a read reads: everything (a new full read), or the files not read yet (an
/// incremental read, or a full read resuming).
fn plan_read(
    label: &str,
    mode: SyncMode,
    manifest: &Manifest,
    state: Option<ReadState>,
) -> Result<ReadPlan> {
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    let mut state = match (mode, state) {
        (SyncMode::FullRefresh, Some(s)) if s.complete => ReadState::default(),
        (SyncMode::FullRefresh, Some(s)) => {
            // A resumed full read must finish the version it started: its rows are staged.
            let gone = s
                .files
                .iter()
                .chain(s.current.iter().map(|(f, _)| f))
                .any(|f| !listed.contains(f.as_str()));
            if gone && s.version != manifest.version {
                return Err(ConnectorError::Other(format!(
                    "{label} published version {} while this stream's interrupted full read of version {} was staged; reset the stream (`weft sync reset`) to read the new version from the start",
                    manifest.version, s.version
                )));
            }
            s
        }
        (_, Some(s)) => s,
        (_, None) => ReadState::default(),
    };
    state.upstream = label.to_string();
    state.complete = false;
    // Files a compaction or an overwrite replaced are forgotten (their rows are in new files).
    state.files.retain(|f| listed.contains(f.as_str()));
    let mut todo = Vec::new();
    let mut todo_rows = 0;
    for file in &manifest.files {
        if state.files.contains(&file.path) {
            continue;
        }
        let skip = match &state.current {
            Some((f, rows)) if *f == file.path => *rows,
            _ => 0,
        };
        todo_rows += file.rows.saturating_sub(skip);
        todo.push((file.path.clone(), skip));
    }
    state.version = manifest.version;
    Ok(ReadPlan {
        todo,
        todo_rows,
        state,
    })
}

/// Reads the opened files into `schema` (columns by name, widened where a file predates a
/// widening, null where it predates a column), a checkpoint after every batch.
fn read_files(
    label: &str,
    files: Vec<(String, u64, File)>,
    mut state: ReadState,
    schema: &SchemaRef,
    send: &impl Fn(Result<SourceMessage>) -> bool,
) -> Result<()> {
    let fills = crate::evolution::Fills::default();
    for (name, skip, file) in files {
        let err = |e: &dyn std::fmt::Display| {
            ConnectorError::Other(format!("{label}: reading {name}: {e}"))
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(&e))?;
        let file_schema = builder.schema().clone();
        let roots: Vec<usize> = schema
            .fields()
            .iter()
            .filter_map(|f| file_schema.index_of(f.name()).ok())
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_projection(mask)
            .with_offset(skip as usize)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| err(&e))?;
        let mut rows = skip;
        for batch in reader {
            let batch = batch.map_err(|e| err(&e))?;
            let columns = crate::evolution::conform(&batch, schema, &fills)?;
            let out = RecordBatch::try_new(schema.clone(), columns).map_err(|e| err(&e))?;
            rows += out.num_rows() as u64;
            state.current = Some((name.clone(), rows));
            if !send(Ok(SourceMessage::Records(out)))
                || !send(Ok(SourceMessage::Checkpoint(Checkpoint::encode(&state))))
            {
                return Ok(());
            }
        }
        state.current = None;
        state.files.insert(name);
    }
    state.complete = true;
    send(Ok(SourceMessage::Checkpoint(Checkpoint::encode(&state))));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::DataFile;

    fn manifest(version: u64, files: &[&str]) -> Manifest {
        let mut m = Manifest::empty(WriteMode::Append, "run");
        m.version = version;
        m.files = files
            .iter()
            .map(|f| DataFile {
                path: f.to_string(),
                rows: 10,
                bytes: 1,
                compacted: false,
            })
            .collect();
        m
    }

    #[test]
    fn an_incremental_read_reads_only_new_files_and_resumes_mid_file() {
        let first = plan_read("p", SyncMode::Incremental, &manifest(1, &["a", "b"]), None).unwrap();
        assert_eq!(first.todo, vec![("a".to_string(), 0), ("b".to_string(), 0)]);
        let mut state = first.state;
        state.files.insert("a".into());
        state.current = Some(("b".into(), 4));
        let next = plan_read(
            "p",
            SyncMode::Incremental,
            &manifest(2, &["a", "b", "c"]),
            Some(state),
        )
        .unwrap();
        assert_eq!(next.todo, vec![("b".to_string(), 4), ("c".to_string(), 0)]);
        assert_eq!(next.todo_rows, 16);
        assert_eq!(next.state.version, 2);
    }

    #[test]
    fn a_complete_full_read_starts_over_and_an_interrupted_one_must_finish_its_version() {
        let mut state = ReadState {
            version: 1,
            files: ["a".to_string()].into(),
            complete: true,
            ..Default::default()
        };
        let again = plan_read(
            "p",
            SyncMode::FullRefresh,
            &manifest(1, &["a"]),
            Some(state.clone()),
        )
        .unwrap();
        assert_eq!(again.todo.len(), 1);
        state.complete = false;
        let err = plan_read(
            "f/p/s",
            SyncMode::FullRefresh,
            &manifest(2, &["x"]),
            Some(state),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("published version 2 while this stream's interrupted full read of version 1 was staged"), "{err}");
    }
}
