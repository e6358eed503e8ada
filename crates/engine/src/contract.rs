//! Product contracts in the engine: the contract a product would lock today (from its
//! source's catalog and its config, through planning, so the columns are those the product
//! store receives), the enforcement of the locked contract at every sync, and the metadata the
//! destination records with the data.

use std::collections::BTreeMap;

use weft_core::{sql_type, Catalog, ColumnMetadata, ProductMetadata};
use weft_mesh::{
    contract::diff_stream, Change, ChangeKind, Contract, ContractColumn, ContractStream,
    ContractVersion, FieldMeta, FilterOp, Mapper, OnChange, Product, Project, StreamConfig,
};

use crate::error::EngineError;
use crate::plan::{plan_stream, PlanScope, StreamPlan};
use crate::registry::Registry;

/// The product's `fields:` metadata by destination column name (followed through renames;
/// columns the mappers remove are left out).
fn output_fields<'a>(
    config: &'a StreamConfig,
    plan: &StreamPlan,
) -> BTreeMap<String, &'a FieldMeta> {
    config
        .fields
        .iter()
        .filter_map(|(column, meta)| {
            plan.mappers
                .output_name(column)
                .map(|out| (out.to_string(), meta))
        })
        .collect()
}

/// One stream's contract as planned now.
pub(crate) fn stream_contract(config: &StreamConfig, plan: &StreamPlan) -> ContractStream {
    let fields = output_fields(config, plan);
    let destination = &plan.destination_stream;
    ContractStream {
        name: config.name.to_string(),
        description: config.description.clone(),
        primary_key: destination.primary_key.clone(),
        cursor: destination.cursor_field.clone(),
        columns: plan
            .mappers
            .output_schema()
            .fields()
            .iter()
            .map(|f| {
                let meta = fields.get(f.name());
                ContractColumn {
                    name: f.name().clone(),
                    data_type: sql_type(f.data_type()),
                    nullable: f.is_nullable(),
                    description: meta.and_then(|m| m.description.clone()),
                    tags: meta.map(|m| m.tags.clone()).unwrap_or_default(),
                }
            })
            .collect(),
    }
}

/// The contract the product would lock now, at `version`, from its source's `catalog`.
pub fn product_contract(
    project: &Project,
    product: &Product,
    catalog: &Catalog,
    version: ContractVersion,
) -> Result<Contract, EngineError> {
    let file = project.relative(&product.file).display().to_string();
    // The contract describes what the product store receives: after the policy's forced
    // transformations too.
    let governance = crate::governance::Governance::load(project)?;
    // A product reading another product plans its streams as they run: the grant's columns,
    // filter and mappers in front of its own (which `govern` expects).
    let configs =
        crate::validate::effective_streams(project, product).map_err(EngineError::Config)?;
    let mut streams = Vec::new();
    for config in &configs {
        let plan = governance
            .govern(product, config, catalog)
            .and_then(|(governed, _)| {
                plan_stream(&governed, catalog, &PlanScope::default(), governance.keys())
            })
            .map_err(|message| EngineError::Plan {
                file: file.clone(),
                stream: config.name.to_string(),
                message,
            })?;
        streams.push(stream_contract(config, &plan));
    }
    Ok(Contract {
        product: product.label(),
        version,
        owner: product.owner.clone(),
        description: product.description.clone(),
        classification: product.classification.clone(),
        freshness: product
            .freshness
            .map(|d| humantime::format_duration(d).to_string()),
        streams,
    })
}

/// Discovers the product's source and returns the contract it would lock now.
pub async fn current_contract(
    project: &Project,
    product: &Product,
    registry: &Registry,
    version: ContractVersion,
) -> Result<Contract, EngineError> {
    let ctx = weft_core::ConnectorContext {
        project_dir: project.root.clone(),
    };
    // For a product reading another product: the upstream's store read back.
    let source = crate::validate::build_source(project, product, registry, &ctx)
        .map_err(EngineError::Config)?;
    let catalog = source
        .discover()
        .await
        .map_err(|source| EngineError::Connector {
            what: format!(
                "{}: source discovery",
                project.relative(&product.file).display()
            ),
            source,
        })?;
    product_contract(project, product, &catalog, version)
}

/// What the destination records with a stream's data.
pub(crate) fn metadata(
    product: &Product,
    config: &StreamConfig,
    plan: &StreamPlan,
) -> ProductMetadata {
    ProductMetadata {
        owner: product.owner.clone(),
        description: product.description.clone(),
        contract_version: product
            .locked_contract
            .as_ref()
            .map(|c| c.version.to_string()),
        stream_description: config.description.clone(),
        columns: output_fields(config, plan)
            .into_iter()
            .map(|(column, meta)| {
                (
                    column,
                    ColumnMetadata {
                        description: meta.description.clone(),
                        tags: meta.tags.clone(),
                    },
                )
            })
            .collect(),
    }
}

/// A planned stream that passed its contract, and the drift it was let through with.
pub(crate) struct Enforced {
    pub plan: StreamPlan,
    /// Additive differences written anyway (`evolve`), to re-lock; empty when none.
    pub drift: Vec<Change>,
}

/// Checks the mapped schema a stream changed to mid-stream (CDC, `--follow`) against the
/// product's locked contract, as planning checked the first: breaking changes and, unless the
/// product's `on_change` is `evolve`, added columns stop the stream (`discard_*` cannot drop a
/// column the planned mappers keep; the next run plans the discard).
pub(crate) fn check_mid_stream(
    project: &Project,
    product: &Product,
    config: &StreamConfig,
    destination: &weft_core::ConfiguredStream,
    output: &weft_core::arrow_schema::Schema,
) -> Result<(), String> {
    let Some(locked) = &product.locked_contract else {
        return Ok(());
    };
    let Some(locked_stream) = locked.stream(config.name.as_str()) else {
        return Ok(()); // planning decided on a stream the contract lacks
    };
    let current = ContractStream {
        name: config.name.to_string(),
        description: None,
        primary_key: destination.primary_key.clone(),
        cursor: destination.cursor_field.clone(),
        columns: output
            .fields()
            .iter()
            .map(|f| ContractColumn {
                name: f.name().clone(),
                data_type: sql_type(f.data_type()),
                nullable: f.is_nullable(),
                description: None,
                tags: Vec::new(),
            })
            .collect(),
    };
    let changes: Vec<Change> = diff_stream(locked_stream, &current)
        .into_iter()
        .filter(|c| c.kind != ChangeKind::Metadata)
        .collect();
    let file = project
        .relative(&product.contract_file)
        .display()
        .to_string();
    let text = |changes: &[&Change]| {
        changes
            .iter()
            .map(|c| {
                c.to_string()
                    .split_once(": ")
                    .map_or(c.to_string(), |(_, rest)| rest.to_string())
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let breaking: Vec<&Change> = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Breaking)
        .collect();
    let label = product.label();
    if !breaking.is_empty() {
        return Err(format!(
            "breaking change against contract {} ({file}): {}; nothing of the new shape was written. If consumers can accept it, lock a new major version with `weft product contract {label} --major` and tell them; otherwise restore the source",
            locked.version,
            text(&breaking)
        ));
    }
    let policy = product.contract.on_change;
    if changes.is_empty() || policy == OnChange::Evolve {
        if !changes.is_empty() {
            tracing::warn!(
                "{}: stream `{}` drifts from its locked contract mid-stream: {}; handled per `on_change: evolve`. Re-lock with `weft product contract {label}`",
                project.relative(&product.file).display(),
                config.name,
                text(&changes.iter().collect::<Vec<_>>())
            );
        }
        return Ok(());
    }
    Err(format!(
        "the source now differs from contract {} ({file}) and the product's `on_change: {policy}` refuses it mid-stream: {}; nothing of the new shape was written. Lock the change with `weft product contract {label}` (version {}), or undo it in the source; {}",
        locked.version,
        text(&changes.iter().collect::<Vec<_>>()),
        locked.version.next_minor(),
        if policy == OnChange::Freeze {
            "the next run refuses it too"
        } else {
            "the next run plans the discard"
        }
    ))
}

/// Checks a planned stream against the product's locked contract, per its `on_change`:
/// breaking changes always fail; additive ones evolve (reported as drift), fail (`freeze`), or
/// have their new columns left out of the data (`discard_value`) together with the rows that
/// carry a value in them (`discard_row`), by re-planning with the mappers that do it. `Err` is
/// the message for the run report: the differences and what to do.
pub(crate) fn enforce(
    project: &Project,
    product: &Product,
    config: &StreamConfig,
    plan: StreamPlan,
    catalog: &Catalog,
    scope: &PlanScope,
    keys: &weft_governance::Keys,
) -> Result<Enforced, String> {
    let Some(locked) = &product.locked_contract else {
        return Ok(Enforced {
            plan,
            drift: vec![],
        });
    };
    let file = project
        .relative(&product.contract_file)
        .display()
        .to_string();
    let label = product.label();
    let policy = product.contract.on_change;
    let current = stream_contract(config, &plan);
    let list = |changes: &[&Change]| {
        changes
            .iter()
            .map(|c| {
                c.to_string()
                    .split_once(": ")
                    .map_or(c.to_string(), |(_, rest)| rest.to_string())
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let Some(locked_stream) = locked.stream(config.name.as_str()) else {
        let change = Change {
            kind: ChangeKind::Additive,
            stream: Some(config.name.to_string()),
            column: None,
            change: "new stream, not in the contract".into(),
        };
        if policy == OnChange::Evolve {
            return Ok(Enforced {
                plan,
                drift: vec![change],
            });
        }
        return Err(format!(
            "the stream is not in contract {} ({file}) and the product's `on_change: {policy}` refuses it; nothing was written. Lock it with `weft product contract {label}`",
            locked.version
        ));
    };
    let changes: Vec<Change> = diff_stream(locked_stream, &current)
        .into_iter()
        .filter(|c| c.kind != ChangeKind::Metadata)
        .collect();
    let breaking: Vec<&Change> = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Breaking)
        .collect();
    if !breaking.is_empty() {
        return Err(format!(
            "breaking change against contract {} ({file}): {}; nothing was written. If consumers can accept it, lock a new major version with `weft product contract {label} --major` and tell them; otherwise restore the source",
            locked.version,
            list(&breaking)
        ));
    }
    if changes.is_empty() {
        return Ok(Enforced {
            plan,
            drift: vec![],
        });
    }
    let additive: Vec<&Change> = changes.iter().collect();
    let new_columns: Vec<String> = current
        .columns
        .iter()
        .filter(|c| locked_stream.column(&c.name).is_none())
        .map(|c| c.name.clone())
        .collect();
    match policy {
        OnChange::Evolve => Ok(Enforced {
            plan,
            drift: changes,
        }),
        OnChange::Freeze => Err(format!(
            "the source differs from contract {} ({file}) and the product's `on_change: freeze` refuses any difference: {}; nothing was written. Lock the change with `weft product contract {label}` (version {}), or undo it in the source",
            locked.version,
            list(&additive),
            locked.version.next_minor()
        )),
        OnChange::DiscardValue | OnChange::DiscardRow if new_columns.is_empty() => Ok(Enforced {
            plan,
            drift: changes,
        }),
        OnChange::DiscardRow if config.mode == weft_core::SyncMode::Cdc => Err(format!(
            "the source has columns contract {} ({file}) does not: {}; `on_change: discard_row` is not supported on cdc streams (a discarded row would need a delete); use `discard_value` or `freeze`, or lock the change with `weft product contract {label}`",
            locked.version,
            new_columns.join(", ")
        )),
        OnChange::DiscardValue | OnChange::DiscardRow => {
            let mut discarding = config.clone();
            if policy == OnChange::DiscardRow {
                discarding
                    .mappers
                    .extend(new_columns.iter().map(|c| Mapper::Filter {
                        column: c.clone(),
                        op: FilterOp::IsNull,
                        value: None,
                    }));
            }
            discarding.mappers.push(Mapper::Drop(new_columns));
            let plan = plan_stream(&discarding, catalog, scope, keys)?;
            Ok(Enforced {
                plan,
                drift: changes,
            })
        }
    }
}
