//! Operations on streams outside a run: `weft sync reset` (forget a stream everywhere) and the
//! replication lag `weft sync status` shows for CDC streams.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use weft_core::{
    Catalog, ConfiguredStream, ConnectorContext, Destination, Source, StreamDescriptor,
    StreamTarget, SyncMode,
};
use weft_mesh::{Project, Selection, StreamConfig};
use weft_state::{StateStore, StreamKey};

use crate::error::EngineError;
use crate::plan::{plan_stream, PlanScope};
use crate::registry::Registry;

/// The id sources name server-side resources after: `domain.product.stream@<project id>`
/// (see [`project_id`]), so two projects with the same domain, product and stream names never
/// share a replication slot.
pub(crate) fn pipeline_id(project_id: &str, key: &StreamKey) -> String {
    format!("{}.{}.{}@{project_id}", key.domain, key.product, key.stream)
}

/// 12 hex digits of the SHA-256 of the project's canonical root path. **Decision:** derived
/// from the path rather than stored, so it needs no state; a moved project gets a new id, and
/// its CDC streams keep the slots their checkpoints name.
pub(crate) fn project_id(root: &Path) -> String {
    let canonical = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let digest = Sha256::digest(canonical.to_string_lossy().as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// One selected stream with its product's connectors.
struct Handle {
    key: StreamKey,
    pipeline_id: String,
    config: StreamConfig,
    source: Arc<dyn Source>,
    destination: Arc<dyn Destination>,
}

fn handles(
    project: &Project,
    selections: &[Selection<'_>],
    registry: &Registry,
) -> Result<Vec<Handle>, EngineError> {
    let ctx = ConnectorContext {
        project_dir: project.root.clone(),
    };
    let project_id = project_id(&project.root);
    let mut out = Vec::new();
    for selection in selections {
        let product = selection.product;
        let source: Arc<dyn Source> = Arc::from(
            crate::validate::build_source(project, product, registry, &ctx)
                .map_err(EngineError::Config)?,
        );
        let configs =
            crate::validate::effective_streams(project, product).map_err(EngineError::Config)?;
        let destination: Arc<dyn Destination> = Arc::from(registry.build_destination(
            &product.destination.connector,
            &product.destination.config,
            &ctx,
        )?);
        for stream in configs
            .iter()
            .filter(|s| selection.streams.contains(&s.name))
        {
            let key = StreamKey {
                domain: product.domain.clone(),
                product: product.name.clone(),
                stream: stream.name.clone(),
            };
            out.push(Handle {
                pipeline_id: pipeline_id(&project_id, &key),
                key,
                config: stream.clone(),
                source: source.clone(),
                destination: destination.clone(),
            });
        }
    }
    Ok(out)
}

/// The streams as source and destination see them; when the source no longer offers the stream
/// (its table was dropped), a bare description that still names it, so its resources can go.
fn configured(handle: &Handle, catalog: Option<&Catalog>) -> (ConfiguredStream, ConfiguredStream) {
    let scope = PlanScope {
        pipeline_id: handle.pipeline_id.clone(),
        follow: false,
    };
    if let Some(plan) =
        catalog.and_then(|c| plan_stream(&handle.config, c, &scope, &Default::default()).ok())
    {
        return (plan.source_stream, plan.destination_stream);
    }
    let bare = ConfiguredStream {
        descriptor: StreamDescriptor {
            name: handle.config.name.clone(),
            schema: Arc::new(arrow::datatypes::Schema::empty()),
            primary_key: vec![],
            cursor_candidates: vec![],
            source_defined_cursor: None,
            supported_sync_modes: vec![],
            row_estimate: None,
        },
        sync_mode: handle.config.mode,
        write_mode: handle.config.write,
        cursor_field: handle.config.cursor.clone(),
        primary_key: handle.config.primary_key.clone().unwrap_or_default(),
        pipeline_id: scope.pipeline_id,
        follow: false,
    };
    (bare.clone(), bare)
}

/// What `reset` did to one stream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResetReport {
    /// `domain/product/stream`.
    pub stream: String,
    /// The state store held a checkpoint for it.
    pub had_state: bool,
    /// Problems met; the parts that worked stay done, and a rerun finishes the rest.
    pub errors: Vec<String>,
}

/// Forgets the selected streams: the source drops what it holds for them (replication slots,
/// publications), the destination drops their product tables with the checkpoints stored
/// there, and the state store forgets their checkpoints. The next run reads them from scratch.
pub async fn reset(
    project: &Project,
    selections: &[Selection<'_>],
    registry: &Registry,
    state: Arc<dyn StateStore>,
) -> Result<Vec<ResetReport>, EngineError> {
    let mut reports = Vec::new();
    let mut catalogs: Vec<(usize, Option<Catalog>)> = Vec::new();
    for handle in handles(project, selections, registry)? {
        // One discovery per source instance (streams of a product share it).
        let id = Arc::as_ptr(&handle.source) as *const () as usize;
        if !catalogs.iter().any(|(i, _)| *i == id) {
            catalogs.push((id, handle.source.discover().await.ok()));
        }
        let catalog = catalogs
            .iter()
            .find(|(i, _)| *i == id)
            .and_then(|(_, c)| c.as_ref());
        let (source_stream, destination_stream) = configured(&handle, catalog);
        let mut errors = Vec::new();
        if source_stream.sync_mode == SyncMode::Cdc {
            if let Err(e) = handle.source.reset(&source_stream).await {
                errors.push(format!("source: {e}"));
            }
        }
        let target = StreamTarget {
            domain: handle.key.domain.clone(),
            product: handle.key.product.clone(),
            stream: handle.key.stream.clone(),
            run_id: "reset".into(),
            metadata: Default::default(),
        };
        if let Err(e) = handle.destination.reset(&target, &destination_stream).await {
            errors.push(format!("destination: {e}"));
        }
        let had_state = state.delete_state(&handle.key)?;
        reports.push(ResetReport {
            stream: handle.key.to_string(),
            had_state,
            errors,
        });
    }
    Ok(reports)
}

/// Bytes each selected CDC stream's replication position is behind its source's log; `Err`
/// holds why it could not be asked. Streams in other modes are left out.
pub async fn cdc_lags(
    project: &Project,
    selections: &[Selection<'_>],
    registry: &Registry,
) -> Result<Vec<(StreamKey, Result<Option<u64>, String>)>, EngineError> {
    let mut out = Vec::new();
    for handle in handles(project, selections, registry)? {
        if handle.config.mode != SyncMode::Cdc {
            continue;
        }
        let (stream, _) = configured(&handle, None);
        let lag = handle
            .source
            .lag_bytes(&stream)
            .await
            .map_err(|e| e.to_string());
        out.push((handle.key, lag));
    }
    Ok(out)
}
