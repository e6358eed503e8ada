//! The `files` source: CSV and JSON Lines files matched by glob under a folder.
//!
//! Each configured stream is the set of files matching its glob, read in sorted path order and
//! decoded straight into Arrow by arrow-csv / arrow-json, with the schema inferred from the
//! first files (then `schema_overrides`). Every row gets `_file`, `_line` and
//! `_file_modified_at`; the primary key is (`_file`, `_line`).
//!
//! Incremental reads go by file: the state remembers each completely read file's size and
//! modification time, so a run reads only new or modified files (a modified file is re-read
//! whole), and resumes a file read halfway after its last checkpointed row.
//!
//! Modules: [`config`], `listing` (walk + glob), `schema` (inference, metadata columns),
//! `decode` (one file into batches, error reports), [`state`].

use std::path::PathBuf;

use async_trait::async_trait;
use weft_core::arrow_schema::SchemaRef;
use weft_core::{
    parse_config, spec_of, Catalog, Checkpoint, ConfiguredStream, ConnectorContext, ConnectorError,
    MessageStream, Result, Source, SourceFactory, SourceMessage, StreamDescriptor, SyncMode,
};

pub mod config;
mod decode;
mod listing;
mod schema;
pub mod state;
pub mod types;

pub use config::{FileFormat, FileStreamConfig, FilesConfig};
pub use schema::{FILE_COLUMN, LINE_COLUMN, MODIFIED_COLUMN};
pub use state::{FileStamp, FilesState, InProgress};

/// Builds [`FilesSource`]s; registered as `files`.
#[derive(Debug, Default, Clone, Copy)]
pub struct FilesSourceFactory;

impl SourceFactory for FilesSourceFactory {
    fn name(&self) -> &'static str {
        "files"
    }

    fn description(&self) -> &'static str {
        "CSV and JSON Lines files matched by glob"
    }

    fn spec(&self) -> serde_json::Value {
        spec_of::<FilesConfig>()
    }

    fn build(&self, config: &serde_json::Value, ctx: &ConnectorContext) -> Result<Box<dyn Source>> {
        Ok(Box::new(FilesSource::new(parse_config(config)?, ctx)?))
    }
}

/// The files source.
#[derive(Debug, Clone)]
pub struct FilesSource {
    streams: Vec<(FileStreamConfig, PathBuf)>,
}

impl FilesSource {
    pub fn new(config: FilesConfig, ctx: &ConnectorContext) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            streams: config
                .streams
                .into_iter()
                .map(|s| {
                    let root = ctx.resolve(&s.path);
                    (s, root)
                })
                .collect(),
        })
    }

    fn stream(&self, name: &str) -> Result<&(FileStreamConfig, PathBuf)> {
        self.streams
            .iter()
            .find(|(s, _)| s.name.as_str() == name)
            .ok_or_else(|| ConnectorError::StreamNotFound(name.to_string()))
    }

    fn describe(config: &FileStreamConfig, root: &std::path::Path) -> Result<StreamDescriptor> {
        let files = listing::list_files(root, &config.glob).map_err(|e| name_glob(config, e))?;
        if files.is_empty() {
            tracing::warn!(
                stream = %config.name,
                "no files match `{}` under {}; the stream has only its metadata and \
                 overridden columns until files arrive",
                config.glob,
                root.display()
            );
        }
        let data = schema::infer(config, &files).map_err(|e| in_stream(config, e))?;
        Ok(StreamDescriptor {
            name: config.name.clone(),
            schema: schema::with_metadata(&data),
            primary_key: vec![FILE_COLUMN.into(), LINE_COLUMN.into()],
            cursor_candidates: vec![MODIFIED_COLUMN.into()],
            source_defined_cursor: None,
            supported_sync_modes: vec![SyncMode::FullRefresh, SyncMode::Incremental],
            row_estimate: None,
        })
    }
}

/// Config errors from listing concern the stream's glob.
fn name_glob(config: &FileStreamConfig, err: ConnectorError) -> ConnectorError {
    match err {
        ConnectorError::Config { message, .. } => {
            ConnectorError::config(format!("streams.{}.glob", config.name), message)
        }
        other => other,
    }
}

/// Config errors from schema overrides name the stream.
fn in_stream(config: &FileStreamConfig, err: ConnectorError) -> ConnectorError {
    match err {
        ConnectorError::Config { field, message } => {
            ConnectorError::config(format!("streams.{}.{field}", config.name), message)
        }
        other => other,
    }
}

#[async_trait]
impl Source for FilesSource {
    fn describe_position(&self, checkpoint: &Checkpoint) -> weft_core::Position {
        match checkpoint.decode::<state::FilesState>() {
            Ok(state) => weft_core::Position::Files {
                done: state.done.len(),
                current_rows: state.current.as_ref().map_or(0, |c| c.rows),
                current: state.current.map(|c| c.file),
                complete: state.complete,
            },
            Err(_) => weft_core::Position::Opaque {
                checkpoint: checkpoint.position().clone(),
            },
        }
    }

    async fn check(&self) -> Result<()> {
        for (config, root) in &self.streams {
            let (config, root) = (config.clone(), root.clone());
            let files = tokio::task::spawn_blocking(move || {
                listing::list_files(&root, &config.glob)
                    .map_err(|e| name_glob(&config, e))
                    .map(|files| (files, config, root))
            })
            .await
            .map_err(|e| ConnectorError::Other(format!("listing files failed: {e}")))??;
            let (files, config, root) = files;
            if files.is_empty() {
                return Err(ConnectorError::Other(format!(
                    "stream `{}`: no files match `{}` under {}; check `path` and `glob`",
                    config.name,
                    config.glob,
                    root.display()
                )));
            }
        }
        Ok(())
    }

    async fn discover(&self) -> Result<Catalog> {
        let streams = self.streams.clone();
        tokio::task::spawn_blocking(move || {
            let streams = streams
                .iter()
                .map(|(config, root)| Self::describe(config, root))
                .collect::<Result<Vec<_>>>()?;
            Ok(Catalog { streams })
        })
        .await
        .map_err(|e| ConnectorError::Other(format!("discovering files failed: {e}")))?
    }

    async fn read(
        &self,
        stream: &ConfiguredStream,
        state: Option<&Checkpoint>,
    ) -> Result<MessageStream> {
        let (config, root) = self.stream(stream.name().as_str())?.clone();
        if stream.sync_mode == SyncMode::Cdc {
            return Err(ConnectorError::Unsupported(format!(
                "stream `{}`: the files source reads full_refresh or incremental, not cdc",
                config.name
            )));
        }
        let state: Option<FilesState> = state.map(|c| c.decode()).transpose().map_err(|e| {
            ConnectorError::Other(format!(
                "stream `{}`: the saved state is not a files-source checkpoint ({e}); reset \
                     the stream's state to read all files again",
                config.name
            ))
        })?;
        let requested = stream.descriptor.schema.clone();
        let mode = stream.sync_mode;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<SourceMessage>>(2);
        tokio::task::spawn_blocking(move || {
            let send = |msg| tx.blocking_send(msg).is_ok();
            // A panic must end the read with an error, never as a silently short stream.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // The engine may ask for fewer columns than the files hold (`columns`, dropped
                // ones): decode with the whole schema and hand on the requested columns.
                let full_schema = Self::describe(&config, &root)?.schema;
                if full_schema == requested {
                    return run(&config, &root, mode, state, full_schema, &send);
                }
                let project = |msg: Result<SourceMessage>| match msg {
                    Ok(SourceMessage::Records(batch)) => send(project_batch(batch, &requested)),
                    other => send(other),
                };
                run(&config, &root, mode, state, full_schema, &project)
            }));
            let err = match outcome {
                Ok(Ok(())) => return,
                Ok(Err(err)) => err,
                Err(_) => ConnectorError::Other(format!(
                    "stream `{}`: reading files failed unexpectedly (a bug in weft); the read \
                     stopped and can be retried",
                    config.name
                )),
            };
            send(Err(err));
        });
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }
}

/// The requested columns of a batch decoded with the whole schema.
fn project_batch(
    batch: weft_core::arrow_array::RecordBatch,
    requested: &SchemaRef,
) -> Result<SourceMessage> {
    let columns = requested
        .fields()
        .iter()
        .map(|f| {
            batch.column_by_name(f.name()).cloned().ok_or_else(|| {
                ConnectorError::Other(format!(
                    "column `{}` was asked for but the files do not have it (a bug in weft)",
                    f.name()
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    weft_core::arrow_array::RecordBatch::try_new(requested.clone(), columns)
        .map(SourceMessage::Records)
        .map_err(|e| ConnectorError::Other(format!("projecting the requested columns: {e}")))
}

/// One read, on a blocking thread. Returns early (Ok) when the reader went away.
fn run(
    config: &FileStreamConfig,
    root: &std::path::Path,
    mode: SyncMode,
    state: Option<FilesState>,
    full_schema: SchemaRef,
    send: &impl Fn(Result<SourceMessage>) -> bool,
) -> Result<()> {
    let files = listing::list_files(root, &config.glob).map_err(|e| name_glob(config, e))?;
    let data_schema = schema::data_part(&full_schema);
    let mut state = match (mode, state) {
        // A completed full refresh starts over; an interrupted one resumes.
        (SyncMode::FullRefresh, Some(s)) if s.complete => FilesState::default(),
        (_, Some(s)) => s,
        (_, None) => FilesState::default(),
    };
    state.complete = false;
    // Forget files that are gone, so a file coming back is read again.
    state
        .done
        .retain(|rel, _| files.iter().any(|f| &f.rel == rel));

    let todo: Vec<(&listing::FileEntry, u64)> = files
        .iter()
        .filter(|f| state.done.get(&f.rel) != Some(&FileStamp::of(f)))
        .map(|f| {
            let skip = match &state.current {
                Some(c) if c.file == f.rel && c.stamp == FileStamp::of(f) => c.rows,
                _ => 0,
            };
            (f, skip)
        })
        .collect();
    for (file, skip) in todo {
        let stamp = FileStamp::of(file);
        let mut stopped = false;
        let finished = decode::read_file(
            config,
            &data_schema,
            &full_schema,
            file,
            skip,
            |batch, rows| {
                state.current = Some(InProgress {
                    file: file.rel.clone(),
                    stamp,
                    rows,
                });
                let ok = send(Ok(SourceMessage::Records(batch)))
                    && send(Ok(SourceMessage::Checkpoint(Checkpoint::encode(&state))));
                stopped = !ok;
                ok
            },
        )?;
        if stopped || !finished {
            return Ok(());
        }
        state.current = None;
        state.done.insert(file.rel.clone(), stamp);
        if !send(Ok(SourceMessage::Checkpoint(Checkpoint::encode(&state)))) {
            return Ok(());
        }
    }
    state.complete = true;
    send(Ok(SourceMessage::Checkpoint(Checkpoint::encode(&state))));
    Ok(())
}
