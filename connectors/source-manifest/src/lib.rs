//! The `manifest` source: Airbyte declarative (low-code) manifests, run natively — no Python.
//!
//! A product names a manifest file in its project and the connector's config:
//! `source: { connector: manifest, config: { manifest: connectors/my_api.yaml, config: {...} } }`.
//! The manifest is pre-processed exactly as the CDK does it ([`manifest`]: references, default
//! types, `$parameters`), refused up front if it holds anything weft does not run (naming the
//! component's path), and the config is validated against its spec ([`spec`]).
//!
//! A read lists the stream's slices ([`slices`]: partitions × cursor windows) and walks each
//! slice's pages ([`read`], [`paginate`], [`request`], [`auth`], [`client`]), selecting records
//! ([`select`]) and decoding them into Arrow ([`decode`]). Each completed slice is a weft
//! checkpoint: for an incremental stream the CDK's own state (`{"<cursor_field>": value}`), so
//! states move between weft and the Python CDK; for a full refresh the number of slices done.
//! Templates are evaluated by [`interpolate`]. docs/manifest.md lists what is supported.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use weft_core::arrow_schema::SchemaRef;
use weft_core::{
    parse_config, spec_of, Catalog, Checkpoint, ConfiguredStream, ConnectorContext, ConnectorError,
    MessageStream, Result, Source, SourceFactory, SourceMessage, StreamDescriptor, StreamName,
    SyncMode,
};

pub mod auth;
pub mod client;
pub mod decode;
pub mod interpolate;
pub mod manifest;
pub mod package;
pub mod paginate;
pub mod read;
pub mod request;
pub mod select;
pub mod slices;
pub mod spec;
pub mod tester;

use manifest::model::{DeclarativeStream, SchemaLoader};
use manifest::{Manifest, ManifestError};

/// Rows per batch (a slice's last batch may be smaller).
const BATCH_ROWS: usize = 10_000;

/// What went wrong in the manifest source. Messages never hold config values.
#[derive(Debug, thiserror::Error)]
pub enum ManifestSourceError {
    #[error(transparent)]
    Load(#[from] ManifestError),
    #[error("the manifest: {0}")]
    Manifest(String),
    #[error("the connector config: {0}")]
    Config(String),
    #[error("{0}")]
    Http(String),
    #[error("authentication: {0}")]
    Auth(String),
    /// A published package could not be had (index, download, or not a manifest wheel).
    #[error("{0}")]
    Package(String),
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Interpolation(#[from] interpolate::InterpolationError),
    #[error("{0}")]
    Other(String),
}

impl From<ManifestSourceError> for ConnectorError {
    fn from(e: ManifestSourceError) -> Self {
        match e {
            ManifestSourceError::Load(_) | ManifestSourceError::Manifest(_) => {
                ConnectorError::config("manifest", e.to_string())
            }
            ManifestSourceError::Config(_) => ConnectorError::config("config", e.to_string()),
            other => ConnectorError::Other(other.to_string()),
        }
    }
}

/// The source's config in a product file: one of `manifest`, `package` or `wheel`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestConfig {
    /// The manifest (YAML), relative to the project folder.
    #[serde(default)]
    pub manifest: Option<PathBuf>,
    /// A published manifest connector, pinned: `airbyte-source-xyz==1.2.3`. Its wheel is
    /// downloaded from `index_url` once and its manifest, spec and schemas cached under the
    /// project's `.weft/manifests/`; no Python is involved.
    #[serde(default)]
    pub package: Option<String>,
    /// A manifest connector's wheel file already in the project (relative to its folder).
    #[serde(default)]
    pub wheel: Option<PathBuf>,
    /// With `package`: the package index's JSON API (default `https://pypi.org/pypi`).
    #[serde(default)]
    pub index_url: Option<String>,
    /// The connector's own config, validated against the manifest's spec.
    #[serde(default)]
    pub config: serde_json::Map<String, Value>,
}

/// Builds [`ManifestSource`]s; registered as `manifest`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ManifestSourceFactory;

impl SourceFactory for ManifestSourceFactory {
    fn name(&self) -> &'static str {
        "manifest"
    }

    fn description(&self) -> &'static str {
        "HTTP APIs described by an Airbyte declarative (low-code) manifest, run natively"
    }

    fn spec(&self) -> Value {
        spec_of::<ManifestConfig>()
    }

    fn build(&self, config: &Value, ctx: &ConnectorContext) -> Result<Box<dyn Source>> {
        let config: ManifestConfig = parse_config(config)?;
        let path = manifest_path(&config, ctx)?;
        Ok(Box::new(ManifestSource::open(
            &path,
            Value::Object(config.config),
        )?))
    }
}

/// The manifest file a config names: in the project, or unpacked from a package's wheel.
pub fn manifest_path(
    config: &ManifestConfig,
    ctx: &ConnectorContext,
) -> Result<PathBuf, ManifestSourceError> {
    let cache = ctx.project_dir.join(".weft").join("manifests");
    if config.index_url.is_some() && config.package.is_none() {
        return Err(ManifestSourceError::Config(
            "`index_url` goes with `package` (the index to download it from)".into(),
        ));
    }
    match (&config.manifest, &config.package, &config.wheel) {
        (Some(manifest), None, None) => Ok(ctx.resolve(manifest)),
        (None, Some(package), None) => package::manifest_of_package(
            &package::Requirement::parse(package)?,
            config.index_url.as_deref().unwrap_or(package::DEFAULT_INDEX),
            &cache,
        ),
        (None, None, Some(wheel)) => package::manifest_of_wheel(&ctx.resolve(wheel), &cache),
        _ => Err(ManifestSourceError::Config(
            "name exactly one of `manifest` (a YAML file in the project), `package` (a published connector, `airbyte-source-xyz==1.2.3`) or `wheel` (its wheel file)".into(),
        )),
    }
}

/// A loaded manifest with a validated config.
pub struct ManifestSource {
    manifest: Manifest,
    shared: Arc<read::Shared>,
    catalog: Catalog,
}

impl std::fmt::Debug for ManifestSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestSource")
            .field("dir", &self.manifest.dir)
            .finish_non_exhaustive()
    }
}

/// A full refresh's progress: slices are listed in the same order on every read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SliceProgress {
    complete: bool,
    slices_done: usize,
    /// The last completed slice's partition, checked on resume.
    #[serde(default)]
    last_slice: Value,
}

impl ManifestSource {
    /// Loads the manifest at `path`, validates `config` against its spec (defaults applied).
    pub fn open(path: &std::path::Path, config: Value) -> Result<Self, ManifestSourceError> {
        Self::open_observed(path, config, None)
    }

    /// [`ManifestSource::open`], with `observer` called for every HTTP exchange.
    pub fn open_observed(
        path: &std::path::Path,
        mut config: Value,
        observer: Option<client::Observer>,
    ) -> Result<Self, ManifestSourceError> {
        let manifest = Manifest::load(path)?;
        let spec = match &manifest.source.spec {
            Some(s) => Some(s.connection_specification.clone()),
            None => spec_beside(&manifest.dir)?,
        };
        if let Some(schema) = &spec {
            spec::apply_defaults(schema, &mut config);
            spec::validate(schema, &config)?;
        }
        let interp = Arc::new(interpolate::Interpolator::new());
        let mut http = client::Http::new(interp.clone(), config.clone())?;
        if let Some(observer) = observer {
            http = http.observed(observer);
        }
        let shared = Arc::new(read::Shared {
            interp,
            http,
            config,
        });
        let mut catalog = Catalog::default();
        for stream in &manifest.source.streams {
            catalog
                .streams
                .push(descriptor(&manifest, &shared, stream)?);
        }
        Ok(Self {
            manifest,
            shared,
            catalog,
        })
    }

    /// The manifest's spec (`connection_specification`), if it has one.
    pub fn connection_specification(&self) -> Option<&Value> {
        self.manifest
            .source
            .spec
            .as_ref()
            .map(|s| &s.connection_specification)
    }

    fn stream(&self, name: &str) -> Result<&DeclarativeStream, ConnectorError> {
        self.manifest
            .source
            .streams
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| ConnectorError::StreamNotFound(name.to_string()))
    }
}

/// `spec.json` / `spec.yaml` beside the manifest, as published wheels ship them.
fn spec_beside(dir: &std::path::Path) -> Result<Option<Value>, ManifestSourceError> {
    for name in ["spec.json", "spec.yaml", "spec.yml"] {
        let path = dir.join(name);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let v: Value = serde_saphyr::from_str(&text)
                .map_err(|e| ManifestSourceError::Manifest(format!("{}: {e}", path.display())))?;
            let spec = v
                .get("connectionSpecification")
                .or_else(|| v.get("connection_specification"))
                .cloned();
            return Ok(spec.or(Some(v)));
        }
    }
    Ok(None)
}

fn json_schema(
    manifest: &Manifest,
    shared: &read::Shared,
    stream: &DeclarativeStream,
) -> Result<Value, ManifestSourceError> {
    match &stream.schema_loader {
        Some(SchemaLoader::InlineSchemaLoader { schema }) => Ok(schema.clone()),
        Some(SchemaLoader::JsonFileSchemaLoader {
            file_path,
            parameters,
        }) => {
            let mut vars = interpolate::Vars::new();
            vars.insert("config".into(), shared.config.clone());
            vars.insert("parameters".into(), Value::Object(parameters.clone()));
            let candidates: Vec<PathBuf> = match file_path {
                Some(p) => vec![PathBuf::from(
                    shared
                        .interp
                        .eval_string(&Value::String(p.clone()), &vars)?,
                )],
                None => vec![PathBuf::from(format!("schemas/{}.json", stream.name))],
            };
            for rel in &candidates {
                // Wheels' paths (`./source_x/schemas/users.json`) are relative to the package;
                // a project keeps them beside the manifest, with or without the package folder.
                let mut tries = vec![manifest.dir.join(rel)];
                if let Some(name) = rel.file_name() {
                    tries.push(manifest.dir.join("schemas").join(name));
                }
                for path in tries {
                    if path.strip_prefix(&manifest.dir).is_ok_and(|p| {
                        p.components()
                            .any(|c| matches!(c, std::path::Component::ParentDir))
                    }) {
                        return Err(ManifestSourceError::Manifest(format!(
                            "stream `{}`: schema file `{}` is outside the manifest's folder",
                            stream.name,
                            rel.display()
                        )));
                    }
                    if let Ok(text) = std::fs::read_to_string(&path) {
                        return serde_json::from_str(&text).map_err(|e| {
                            ManifestSourceError::Manifest(format!("{}: {e}", path.display()))
                        });
                    }
                }
            }
            Err(ManifestSourceError::Manifest(format!(
                "stream `{}`: its JsonFileSchemaLoader's file `{}` is not beside the manifest in {} (nor in its `schemas/` folder)",
                stream.name,
                candidates[0].display(),
                manifest.dir.display()
            )))
        }
        // No loader at all: the CDK's default is a JSON file named after the stream.
        None => Ok(Value::Object(Default::default())),
    }
}

fn descriptor(
    manifest: &Manifest,
    shared: &read::Shared,
    stream: &DeclarativeStream,
) -> Result<StreamDescriptor, ManifestSourceError> {
    let name = StreamName::new(stream.name.clone()).map_err(|e| {
        ManifestSourceError::Manifest(format!("stream name `{}`: {e}", stream.name))
    })?;
    let schema = weft_core::json_schema::arrow_schema(&json_schema(manifest, shared, stream)?);
    let cursor = match &stream.incremental_sync {
        Some(c) => {
            let mut vars = interpolate::Vars::new();
            vars.insert("config".into(), shared.config.clone());
            vars.insert("parameters".into(), Value::Object(c.parameters.clone()));
            Some(shared.interp.eval_string(&c.cursor_field, &vars)?)
        }
        None => None,
    };
    let mut modes = vec![SyncMode::FullRefresh];
    if cursor.is_some() {
        modes.push(SyncMode::Incremental);
    }
    Ok(StreamDescriptor {
        name,
        schema,
        primary_key: stream.primary_key(),
        cursor_candidates: cursor.iter().cloned().collect(),
        source_defined_cursor: cursor,
        supported_sync_modes: modes,
        row_estimate: None,
    })
}

#[async_trait]
impl Source for ManifestSource {
    async fn check(&self) -> Result<()> {
        let names: Vec<String> = match &self.manifest.source.check {
            Some(c) if !c.stream_names.is_empty() => c.stream_names.clone(),
            _ => self
                .manifest
                .source
                .streams
                .iter()
                .take(1)
                .map(|s| s.name.clone())
                .collect(),
        };
        for name in names {
            let stream = self.stream(&name)?;
            let reader = read::StreamReader::new(&self.shared, stream)?;
            let cursor = reader.cursor()?;
            let slices = reader.slices(cursor.as_ref(), None).await?;
            if let Some(slice) = slices.first() {
                reader
                    .pages(slice)?
                    .next()
                    .await
                    .map_err(|e| ConnectorError::Other(format!("check stream `{name}`: {e}")))?;
            }
        }
        Ok(())
    }

    async fn discover(&self) -> Result<Catalog> {
        Ok(self.catalog.clone())
    }

    async fn read(
        &self,
        configured: &ConfiguredStream,
        state: Option<&Checkpoint>,
    ) -> Result<MessageStream> {
        let name = configured.name().as_str().to_string();
        self.stream(&name)?;
        let incremental = configured.sync_mode == SyncMode::Incremental;
        if incremental && self.stream(&name)?.incremental_sync.is_none() {
            return Err(ConnectorError::Unsupported(format!("stream `{name}` has no incremental_sync in its manifest: read it with `mode: full_refresh`")));
        }
        if incremental && self.stream(&name)?.retriever.partition_router.is_some() {
            return Err(ConnectorError::Unsupported(format!(
                "stream `{name}`: incremental reads of partitioned streams (per-partition state) are not supported yet; read it with `mode: full_refresh`"
            )));
        }
        let schema = configured.descriptor.schema.clone();
        let state = state.map(|c| c.position().clone());
        let (tx, mut rx) = mpsc::channel(4);
        let shared = self.shared.clone();
        let stream = self.stream(&name)?.clone();
        tokio::spawn(async move {
            let result = read_stream(&shared, &stream, schema, incremental, state, &tx).await;
            if let Err(e) = result {
                let _ = tx.send(Err(ConnectorError::from(e))).await;
            }
        });
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }
}

type Tx = mpsc::Sender<Result<SourceMessage>>;

async fn send(tx: &Tx, msg: SourceMessage) -> Result<(), ManifestSourceError> {
    // A closed channel: the engine dropped the read (cancelled); stop quietly.
    tx.send(Ok(msg))
        .await
        .map_err(|_| ManifestSourceError::Other("the read was dropped".into()))
}

async fn flush(
    tx: &Tx,
    builder: &mut decode::BatchBuilder,
    stream: &str,
) -> Result<(), ManifestSourceError> {
    if let Some(batch) = builder.finish().map_err(|e| {
        ManifestSourceError::Other(format!("stream `{stream}`: decoding records: {e}"))
    })? {
        send(tx, SourceMessage::Records(batch)).await?;
    }
    let nulled = builder.take_nulled();
    if nulled > 0 {
        send(tx, SourceMessage::OffSchema { values: nulled }).await?;
    }
    Ok(())
}

async fn read_stream(
    shared: &read::Shared,
    stream: &DeclarativeStream,
    schema: SchemaRef,
    incremental: bool,
    state: Option<Value>,
    tx: &Tx,
) -> Result<(), ManifestSourceError> {
    let reader = read::StreamReader::new(shared, stream)?;
    let cursor = reader.cursor()?;
    let mut latest = None;
    let mut skip = 0;
    let mut resumed: Option<SliceProgress> = None;
    if let Some(state) = &state {
        if incremental {
            let c = cursor.as_ref().expect("incremental streams have a cursor");
            latest = c.state_value(state)?;
        } else {
            let progress: SliceProgress = serde_json::from_value(state.clone()).map_err(|e| {
                ManifestSourceError::State(format!(
                    "stream `{}`: the saved state is not a manifest full-refresh checkpoint ({e}); reset the stream (`weft sync reset`)",
                    stream.name
                ))
            })?;
            if !progress.complete {
                skip = progress.slices_done;
                resumed = Some(progress);
            }
        }
    }
    let slices = reader
        .slices(cursor.as_ref(), if incremental { latest } else { None })
        .await?;
    if let Some(progress) = &resumed {
        let matches = skip <= slices.len()
            && (skip == 0 || partition_key(&slices[skip - 1]) == progress.last_slice);
        if !matches {
            return Err(ManifestSourceError::State(format!(
                "stream `{}`: the interrupted read's slices are not the ones the source lists now (slice {skip} differs); reset the stream (`weft sync reset`) to read it again from the start",
                stream.name
            )));
        }
    }
    let state_start = latest;
    let mut builder = decode::BatchBuilder::new(schema);
    let total = slices.len();
    for (i, slice) in slices.iter().enumerate().skip(skip) {
        let mut pages = reader.pages(slice)?;
        while let Some(records) = pages.next().await? {
            for record in records {
                if let Some(c) = &cursor {
                    if let Some(v) = c.record_value(&record) {
                        if c.client_side && state_start.is_some_and(|l| v < l) {
                            continue;
                        }
                        latest =
                            Some(latest.map_or(v, |l: chrono::DateTime<chrono::Utc>| l.max(v)));
                    }
                }
                builder.push(record);
                if builder.len() >= BATCH_ROWS {
                    flush(tx, &mut builder, &stream.name).await?;
                }
            }
        }
        flush(tx, &mut builder, &stream.name).await?;
        let checkpoint = if incremental {
            read::cursor_state(
                cursor.as_ref().expect("incremental streams have a cursor"),
                latest,
            )
        } else {
            serde_json::to_value(SliceProgress {
                complete: i + 1 == total,
                slices_done: i + 1,
                last_slice: partition_key(slice),
            })
            .expect("progress serialises")
        };
        send(tx, SourceMessage::Checkpoint(Checkpoint::new(checkpoint))).await?;
    }
    if skip >= total {
        // No slice left to read (nothing new, or a resumed read that had finished them all).
        let checkpoint = if incremental {
            read::cursor_state(
                cursor.as_ref().expect("incremental streams have a cursor"),
                latest,
            )
        } else {
            serde_json::to_value(SliceProgress {
                complete: true,
                slices_done: total,
                last_slice: Value::Null,
            })
            .expect("progress serialises")
        };
        send(tx, SourceMessage::Checkpoint(Checkpoint::new(checkpoint))).await?;
    }
    Ok(())
}

/// What identifies a slice across reads: its partition and its window's start (the last
/// window's end moves with the clock).
fn partition_key(slice: &slices::Slice) -> Value {
    let mut m = slice.partition.clone();
    if let Some((k, v)) = &slice.window_start {
        m.insert(k.clone(), v.clone());
    }
    Value::Object(m)
}
