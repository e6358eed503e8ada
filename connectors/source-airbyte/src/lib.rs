//! The `airbyte` source: any Airbyte-protocol source connector as a weft source, run as a
//! subprocess (no Docker). A connector is either an installed executable (`command`) or a PyPI
//! package (`package`), installed on first use into its own cached virtualenv.
//!
//! Each weft read runs the connector's `read` for one stream, with a configured catalog holding
//! just that stream and the Airbyte state saved in its checkpoint. RECORD lines become Arrow
//! batches, STATE messages become checkpoints after the records they cover, and the read
//! succeeds only when the connector exits cleanly: anything else fails the read with the
//! connector's own error and the stdout line, so nothing past the last STATE is committed.
//!
//! Modules: [`config`], `install` (virtualenvs), `process` (subprocess, watchdog, stderr),
//! `protocol` (messages, state, configured catalog), `session` (commands and their errors),
//! [`schema`] (JSON Schema → Arrow), `catalog` (streams), `catalog_cache` (catalogs reused
//! between runs, so a sync starts the connector once per stream, not also for `discover`),
//! `decode` (records → batches), [`read`], `redact` (secrets).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use weft_core::{
    parse_config, spec_of, Catalog, Checkpoint, ConfiguredStream, ConnectorContext, ConnectorError,
    MessageStream, Result, Source, SourceFactory, SourceMessage, SyncMode, WriteMode,
};

mod catalog;
mod catalog_cache;
pub mod config;
mod decode;
mod install;
mod process;
mod protocol;
pub mod read;
mod redact;
pub mod schema;
mod session;

pub use config::{AirbyteConfig, OffSchema, StreamOverride};
pub use install::{install_package, installed_packages, InstallReport, Installed};
pub use process::sweep_stale_inputs;
pub use read::AirbyteCheckpoint;
pub use schema::{EXTRA_COLUMN, JSON_TEXT, META_COLUMN};

use catalog::DiscoveredStream;
use catalog_cache::CatalogCache;
use config::Launch;
use process::Program;
use redact::Redactor;
use session::Connector;

/// Builds `airbyte` sources.
#[derive(Debug, Default, Clone, Copy)]
pub struct AirbyteSourceFactory;

impl SourceFactory for AirbyteSourceFactory {
    fn name(&self) -> &'static str {
        "airbyte"
    }
    fn description(&self) -> &'static str {
        "any Airbyte-protocol source run as a subprocess (PyPI packages in their own virtualenv)"
    }
    fn spec(&self) -> serde_json::Value {
        spec_of::<AirbyteConfig>()
    }
    fn build(&self, config: &serde_json::Value, ctx: &ConnectorContext) -> Result<Box<dyn Source>> {
        Ok(Box::new(AirbyteSource::new(parse_config(config)?, ctx)?))
    }
}

/// An Airbyte-protocol connector as a weft source.
pub struct AirbyteSource {
    config: AirbyteConfig,
    launch: Launch,
    project_dir: PathBuf,
    /// Every config string until the connector's spec is known, then its secrets only.
    redactor: Mutex<Redactor>,
    /// Resolved (and for packages installed) on first use.
    program: Mutex<Option<Program>>,
    /// The connector's catalog, discovered once per source (or taken from the catalog cache).
    streams: Mutex<Option<Arc<Vec<DiscoveredStream>>>>,
    /// The cache entry `streams` came from, dropped when a read fails.
    from_cache: Mutex<Option<CatalogCache>>,
}

impl AirbyteSource {
    pub fn new(config: AirbyteConfig, ctx: &ConnectorContext) -> Result<Self> {
        let launch = config.validate()?;
        Ok(Self {
            redactor: Mutex::new(Redactor::from_config(&config.config)),
            config,
            launch,
            project_dir: ctx.project_dir.clone(),
            program: Mutex::new(None),
            streams: Mutex::new(None),
            from_cache: Mutex::new(None),
        })
    }

    /// The connector, installing its package first if needed.
    async fn connector(&self) -> Result<Connector> {
        let cached = self.program.lock().expect("program lock").clone();
        let program = match cached {
            Some(p) => p,
            None => {
                let program = match &self.launch {
                    Launch::Command(argv) => {
                        let mut argv = argv.clone();
                        // A path with a folder is relative to the project; a bare name is
                        // looked up on PATH.
                        if argv[0].contains('/') {
                            argv[0] = self
                                .project_dir
                                .join(&argv[0])
                                .to_string_lossy()
                                .into_owned();
                        }
                        Program {
                            argv,
                            python: None,
                            cwd: Some(self.project_dir.clone()),
                        }
                    }
                    Launch::Package {
                        requirement,
                        python,
                    } => {
                        let (requirement, python) = (requirement.clone(), python.clone());
                        let installed = tokio::task::spawn_blocking(move || {
                            install::ensure_installed(&requirement, python.as_deref())
                        })
                        .await
                        .map_err(|e| ConnectorError::Other(format!("installing failed: {e}")))??;
                        Program {
                            argv: vec![installed.executable.to_string_lossy().into_owned()],
                            python: Some(installed.python),
                            cwd: Some(self.project_dir.clone()),
                        }
                    }
                };
                self.learn_secrets(&program).await;
                *self.program.lock().expect("program lock") = Some(program.clone());
                program
            }
        };
        Ok(self.connector_for(program))
    }

    fn connector_for(&self, program: Program) -> Connector {
        Connector {
            program,
            config: self.config.config.clone(),
            timeout: self.config.timeout,
            redactor: self.redactor.lock().expect("redactor lock").clone(),
            max_invalid_lines: self.config.max_invalid_lines,
        }
    }

    /// Narrows redaction to the secrets the connector's spec marks (the spec a package's
    /// install saved, else the connector's `spec`); while the spec is unknown every config
    /// string stays masked.
    async fn learn_secrets(&self, program: &Program) {
        let spec = match install::saved_spec(program) {
            Some(spec) => Some(spec),
            None => {
                let connector = self.connector_for(program.clone());
                match blocking(move || connector.spec()).await {
                    Ok(spec) => {
                        install::save_spec(program, &spec);
                        Some(spec)
                    }
                    Err(e) => {
                        tracing::debug!(connector = %program.label(), "no spec to tell secrets from other config values ({e}); every config string stays redacted");
                        None
                    }
                }
            }
        };
        if let Some(spec) = spec {
            *self.redactor.lock().expect("redactor lock") =
                Redactor::from_spec(&self.config.config, &spec);
        }
    }

    async fn discovered(&self) -> Result<Arc<Vec<DiscoveredStream>>> {
        if let Some(streams) = self.streams.lock().expect("streams lock").clone() {
            return Ok(streams);
        }
        let connector = self.connector().await?;
        if let Some(cache) = self.catalog_cache(&connector) {
            // A cached catalog that no longer maps (an override names a new stream) is
            // discovered afresh.
            if let Some(Ok(streams)) = cache
                .load()
                .map(|raw| catalog::map_catalog(&raw, &self.config.streams))
            {
                tracing::debug!(connector = %connector.program.label(), "using the cached catalog");
                let streams = Arc::new(streams);
                *self.streams.lock().expect("streams lock") = Some(streams.clone());
                *self.from_cache.lock().expect("cache lock") = Some(cache);
                return Ok(streams);
            }
        }
        self.discover_fresh().await
    }

    /// Runs the connector's `discover` (never the cache) and caches what it found.
    async fn discover_fresh(&self) -> Result<Arc<Vec<DiscoveredStream>>> {
        let connector = self.connector().await?;
        let cache = self.catalog_cache(&connector);
        let raw = blocking(move || connector.discover()).await?;
        let streams = Arc::new(catalog::map_catalog(&raw, &self.config.streams)?);
        if let Some(cache) = cache {
            cache.store(&raw);
        }
        *self.streams.lock().expect("streams lock") = Some(streams.clone());
        *self.from_cache.lock().expect("cache lock") = None;
        Ok(streams)
    }

    /// The catalog cache entry of this connector and config, if caching is on.
    fn catalog_cache(&self, connector: &Connector) -> Option<CatalogCache> {
        let root = install::cache_root().ok()?;
        CatalogCache::new(
            &root,
            &connector.program,
            &self.config.config,
            self.config.catalog_cache,
            matches!(self.launch, Launch::Command(_)),
        )
    }

    /// The catalog as the engine sees it, asking the connector (`weft connector discover`).
    pub async fn refresh_catalog(&self) -> Result<Catalog> {
        Ok(descriptors(&self.discover_fresh().await?))
    }

    /// The connector's own config spec (`spec`).
    pub async fn connector_spec(&self) -> Result<serde_json::Value> {
        let connector = self.connector().await?;
        blocking(move || connector.spec()).await
    }
}

fn descriptors(streams: &[DiscoveredStream]) -> Catalog {
    Catalog {
        streams: streams.iter().map(|s| s.descriptor.clone()).collect(),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConnectorError::Other(format!("the connector task failed: {e}")))?
}

#[async_trait]
impl Source for AirbyteSource {
    async fn check(&self) -> Result<()> {
        let connector = self.connector().await?;
        blocking(move || connector.check()).await
    }

    async fn discover(&self) -> Result<Catalog> {
        Ok(descriptors(&self.discovered().await?))
    }

    async fn read(
        &self,
        stream: &ConfiguredStream,
        state: Option<&Checkpoint>,
    ) -> Result<MessageStream> {
        let name = stream.name().as_str().to_string();
        let find = |streams: &[DiscoveredStream]| {
            streams
                .iter()
                .find(|s| s.descriptor.name.as_str() == name)
                .cloned()
        };
        let mut found = find(&self.discovered().await?);
        if found.is_none() && self.from_cache.lock().expect("cache lock").is_some() {
            found = find(&self.discover_fresh().await?);
        }
        let found = found.ok_or_else(|| ConnectorError::StreamNotFound(name.clone()))?;
        let incremental = match stream.sync_mode {
            SyncMode::FullRefresh => false,
            SyncMode::Incremental => true,
            SyncMode::Cdc => {
                return Err(ConnectorError::Unsupported(format!(
                    "stream `{name}`: Airbyte connectors read full_refresh or incremental; \
                     change-data capture runs inside the connector as incremental"
                )))
            }
        };
        let saved: Option<AirbyteCheckpoint> =
            state.map(|c| c.decode()).transpose().map_err(|e| {
                ConnectorError::Other(format!(
                    "stream `{name}`: the saved state is not an airbyte-source checkpoint ({e}); \
                     reset the stream's state to read it from the start"
                ))
            })?;
        let checkpoint_mid_read = incremental || found.resumable_full_refresh;
        let resume =
            match saved {
                // A completed full refresh starts over; an interrupted one resumes from its state
                // only when the connector can continue it.
                Some(s) if !incremental && s.complete => None,
                Some(_) if !checkpoint_mid_read => {
                    if stream.write_mode == WriteMode::Overwrite {
                        // Left by an earlier weft version, or from before the stream lost its
                        // resumability: finishing that generation would publish its rows twice.
                        return Err(ConnectorError::Other(format!(
                        "stream `{name}`: an interrupted full refresh is pending in the product \
                         store, but the connector cannot resume it (the stream is not \
                         resumable), so finishing it would publish rows twice; run `weft sync \
                         reset {}` to read it again from scratch",
                        // `domain.product.stream`; the stream name may hold dots itself.
                        stream.pipeline_id.splitn(3, '.').collect::<Vec<_>>().join("/")
                    )));
                    }
                    None
                }
                Some(s) => s.state,
                None => None,
            };
        let job = read::ReadJob {
            connector: self.connector().await?,
            stream: found.id.clone(),
            weft_name: name,
            raw_stream: found.raw.clone(),
            schema: found.descriptor.schema.clone(),
            incremental,
            checkpoint_mid_read,
            off_schema: self.config.off_schema,
            cursor_field: stream.cursor_field.clone(),
            destination_sync_mode: match stream.write_mode {
                WriteMode::Overwrite => "overwrite",
                WriteMode::Append => "append",
                WriteMode::AppendDedup => "append_dedup",
            },
            primary_key: stream.primary_key.clone(),
            state: resume,
            batch_size: self.config.batch_size,
            catalog_cache: self.from_cache.lock().expect("cache lock").clone(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<SourceMessage>>(4);
        let watch = tx.clone();
        tokio::task::spawn_blocking(move || {
            let mut send = |msg| tx.blocking_send(msg).is_ok();
            job.run(&mut send, Box::new(move || watch.is_closed()));
        });
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }

    fn describe_position(&self, checkpoint: &Checkpoint) -> weft_core::Position {
        match checkpoint.decode::<AirbyteCheckpoint>() {
            Ok(AirbyteCheckpoint {
                state: Some(state), ..
            }) => weft_core::Position::State { state },
            Ok(AirbyteCheckpoint {
                state: None,
                complete,
            }) => weft_core::Position::Progress { complete },
            Err(_) => weft_core::Position::Opaque {
                checkpoint: checkpoint.position().clone(),
            },
        }
    }

    /// Takes the stream's `stream_state` object, or a whole state message (`STREAM` for this
    /// stream, `GLOBAL`, or `LEGACY` with `data`), as the connector emits them.
    fn position_from_state(
        &self,
        stream: &ConfiguredStream,
        state: &serde_json::Value,
    ) -> Result<Checkpoint> {
        let name = stream.name().as_str();
        let discovered = self.streams.lock().expect("streams lock").clone();
        let id = discovered
            .iter()
            .flat_map(|s| s.iter())
            .find(|s| s.descriptor.name.as_str() == name)
            .map(|s| s.id.clone())
            .ok_or_else(|| ConnectorError::StreamNotFound(name.to_string()))?;
        let wrong = |why: String| {
            ConnectorError::config(
                "state",
                format!("stream `{name}`: {why}; give the stream's `stream_state` object, or a state message as the connector emits it"),
            )
        };
        let message = if state.get("type").is_some() {
            state.clone()
        } else if state.is_object() {
            serde_json::json!({
                "type": "STREAM",
                "stream": {
                    "stream_descriptor": match &id.namespace {
                        Some(ns) => serde_json::json!({"name": id.name, "namespace": ns}),
                        None => serde_json::json!({"name": id.name}),
                    },
                    "stream_state": state,
                }
            })
        } else {
            return Err(wrong("the state is not a JSON object".into()));
        };
        match protocol::classify_state(&message, &id).map_err(wrong)? {
            protocol::StateFor::Ours(body) => Ok(Checkpoint::encode(&AirbyteCheckpoint {
                state: Some(body),
                complete: false,
            })),
            protocol::StateFor::Other => Err(wrong(format!(
                "the state message is for another stream (the connector calls this one `{}`)",
                id.name
            ))),
        }
    }
}
