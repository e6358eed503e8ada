//! `weft product list|show|contract|diff`: the catalog from the command line, and the locked
//! contracts products publish (`domains/<domain>/<product>.contract.yaml`).

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde_json::json;
use weft_mesh::contract::{diff, next_version};
use weft_mesh::{Change, ChangeKind, Contract, ContractVersion, Product, Project};
use weft_state::{RunStatus, StateStore};

use crate::cli::{OutputFormat, ProductCommand};
use crate::exit::Failure;
use crate::output;
use crate::registry::registry;

pub async fn run(project: Option<PathBuf>, cmd: ProductCommand) -> Result<ExitCode, Failure> {
    let project = super::load_project(project)?;
    match cmd {
        ProductCommand::List { domain, format } => list(&project, domain.as_deref(), format),
        ProductCommand::Show { product, format } => show(&project, &product, format).await,
        ProductCommand::Contract { product, major } => lock(&project, &product, major).await,
        ProductCommand::Diff { product, format } => diff_command(&project, &product, format).await,
    }
}

/// The product a `domain/product` argument names, or a configuration error listing them.
fn find<'a>(project: &'a Project, label: &str) -> Result<&'a Product, Failure> {
    let found = label
        .split_once('/')
        .and_then(|(d, p)| project.product(d, p));
    found.ok_or_else(|| {
        let known: Vec<String> = project.products.iter().map(Product::label).collect();
        Failure::config(format!(
            "no product `{label}` in this project; name one as domain/product: {}",
            if known.is_empty() {
                "(there are none)".to_string()
            } else {
                known.join(", ")
            }
        ))
    })
}

/// The contract the product's source gives today, at `version`.
async fn current(
    project: &Project,
    product: &Product,
    version: ContractVersion,
) -> Result<Contract, Failure> {
    weft_engine::current_contract(project, product, &registry(), version)
        .await
        .map_err(|e| match e {
            weft_engine::EngineError::Plan { .. } | weft_engine::EngineError::Config(_) => {
                Failure::config(e)
            }
            e => Failure::failed(e),
        })
}

fn contract_rel(project: &Project, product: &Product) -> String {
    project
        .relative(&product.contract_file)
        .display()
        .to_string()
}

/// `weft product contract d/p [--major]`: writes the contract the source gives today.
async fn lock(project: &Project, label: &str, major: bool) -> Result<ExitCode, Failure> {
    let product = find(project, label)?;
    let file = contract_rel(project, product);
    let mut contract = current(project, product, ContractVersion::FIRST).await?;
    let message = match &product.locked_contract {
        None => format!("locked {label} contract {} in {file}", contract.version),
        Some(locked) => {
            let changes = diff(locked, &contract);
            let version = next_version(locked, &changes, major).map_err(|breaking| {
                Failure::config(format!(
                    "{label}: the source breaks contract {} ({file}): {}. Consumers must accept a breaking change: lock it as version {} with `weft product contract {label} --major` and tell them; or restore the source",
                    locked.version,
                    breaking.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("; "),
                    locked.version.next_major()
                ))
            })?;
            contract.version = version;
            if version == locked.version {
                println!("{label}: contract {version} ({file}) is up to date");
                return Ok(ExitCode::SUCCESS);
            }
            format!(
                "locked {label} contract {version} in {file} (was {}; {} change(s))",
                locked.version,
                changes.len()
            )
        }
    };
    std::fs::write(&product.contract_file, contract.to_yaml())
        .map_err(|e| Failure::failed(format!("cannot write {file}: {e}")))?;
    println!("{message}");
    Ok(ExitCode::SUCCESS)
}

/// `weft product diff d/p`: the locked contract against the source; exit 1 on a breaking
/// change (for CI), 0 when equal or only additive.
async fn diff_command(
    project: &Project,
    label: &str,
    format: OutputFormat,
) -> Result<ExitCode, Failure> {
    let product = find(project, label)?;
    let file = contract_rel(project, product);
    let Some(locked) = &product.locked_contract else {
        return Err(Failure::config(format!(
            "{label} has no locked contract ({file} does not exist); lock one with `weft product contract {label}`"
        )));
    };
    let now = current(project, product, locked.version).await?;
    let changes = diff(locked, &now);
    let breaking = changes.iter().any(|c| c.kind == ChangeKind::Breaking);
    match format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "product": label,
                "contract_file": file,
                "contract_version": locked.version.to_string(),
                "breaking": breaking,
                "changes": changes,
            }))
            .expect("JSON")
        ),
        OutputFormat::Table => print_diff(label, locked, &changes),
    }
    Ok(if breaking {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_diff(label: &str, locked: &Contract, changes: &[Change]) {
    if changes.is_empty() {
        println!("{label}: the source matches contract {}", locked.version);
        return;
    }
    let count = |k: ChangeKind| changes.iter().filter(|c| c.kind == k).count();
    println!(
        "{label}: contract {} vs the source: {} breaking, {} additive, {} metadata",
        locked.version,
        count(ChangeKind::Breaking),
        count(ChangeKind::Additive),
        count(ChangeKind::Metadata)
    );
    let mut table = output::table(["kind", "where", "change"]);
    for c in changes {
        let at = match (&c.stream, &c.column) {
            (Some(s), Some(col)) => format!("{s}.{col}"),
            (Some(s), None) => s.clone(),
            _ => "product".into(),
        };
        table.add_row([c.kind.as_str().to_string(), at, c.change.clone()]);
    }
    println!("{}", output::fit(table));
    if count(ChangeKind::Breaking) > 0 {
        println!(
            "Breaking: consumers must accept it. Lock it with `weft product contract {label} --major`, or restore the source."
        );
    } else {
        println!(
            "Re-lock with `weft product contract {label}` (version {}).",
            locked.version.next_minor()
        );
    }
}

/// `weft product list [--domain d]`.
fn list(
    project: &Project,
    domain: Option<&str>,
    format: OutputFormat,
) -> Result<ExitCode, Failure> {
    if let Some(d) = domain {
        if project.domain(d).is_none() {
            return Err(Failure::config(format!(
                "no domain `{d}` in this project; domains: {}",
                project
                    .domains()
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let products: Vec<&Product> = project
        .products
        .iter()
        .filter(|p| domain.is_none_or(|d| p.domain.as_str() == d))
        .collect();
    match format {
        OutputFormat::Json => {
            let items: Vec<_> = products
                .iter()
                .map(|p| {
                    json!({
                        "product": p.label(),
                        "domain": p.domain,
                        "name": p.name,
                        "owner": p.owner,
                        "description": p.description,
                        "classification": p.classification,
                        "contract_version": p.locked_contract.as_ref().map(|c| c.version.to_string()),
                        "streams": p.streams.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&items).expect("JSON"));
        }
        OutputFormat::Table => {
            let mut table = output::table(["product", "owner", "contract", "description"]);
            for p in &products {
                table.add_row([
                    p.label(),
                    p.owner.clone(),
                    version_text(p),
                    p.description.clone(),
                ]);
            }
            println!("{}", output::fit(table));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn version_text(p: &Product) -> String {
    p.locked_contract
        .as_ref()
        .map_or_else(|| "none".to_string(), |c| c.version.to_string())
}

/// The latest successful sync of every stream of the product, the oldest of them being the
/// product's (`None` when a stream never succeeded).
fn last_success(
    state: Option<&dyn StateStore>,
    product: &Product,
) -> Result<Option<DateTime<Utc>>, Failure> {
    let Some(state) = state else { return Ok(None) };
    let runs = state.runs(10_000).map_err(Failure::failed)?;
    let mut oldest: Option<DateTime<Utc>> = None;
    for stream in &product.streams {
        let latest = runs
            .iter()
            .flat_map(|r| &r.streams)
            .filter(|s| {
                s.status == RunStatus::Succeeded
                    && s.key.domain == product.domain
                    && s.key.product == product.name
                    && s.key.stream == stream.name
            })
            .map(|s| s.ended_at)
            .max();
        let Some(latest) = latest else {
            return Ok(None);
        };
        oldest = Some(oldest.map_or(latest, |o| o.min(latest)));
    }
    Ok(oldest)
}

/// `fresh` / `late` against the SLA, `never` synced, or `synced` when the product has no SLA.
pub fn freshness(
    last: Option<DateTime<Utc>>,
    sla: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> &'static str {
    match (last, sla) {
        (None, _) => "never",
        (Some(_), None) => "synced (no SLA)",
        (Some(at), Some(sla)) => {
            let age = (now - at).to_std().unwrap_or_default();
            if age <= sla {
                "fresh"
            } else {
                "late"
            }
        }
    }
}

/// The output column's name in the source: renames followed backwards.
fn source_name(stream: &weft_mesh::StreamConfig, column: &str) -> String {
    let mut name = column.to_string();
    for mapper in stream.mappers.iter().rev() {
        if let weft_mesh::Mapper::Rename { from, to } = mapper {
            if *to == name {
                name = from.clone();
            }
        }
    }
    name
}

/// `weft product show d/p`.
async fn show(project: &Project, label: &str, format: OutputFormat) -> Result<ExitCode, Failure> {
    let product = find(project, label)?;
    // The schema is the locked contract's; without one, what the source gives today.
    let (schema, schema_from, schema_error) = match &product.locked_contract {
        Some(c) => (Some(c.clone()), "contract", None),
        None => match current(project, product, ContractVersion::FIRST).await {
            Ok(c) => (Some(c), "source", None),
            Err(e) => (None, "source", Some(e.message().to_string())),
        },
    };
    let state = super::sync::existing_state(project)?;
    let last = last_success(state.as_deref(), product)?;
    let sla = product.freshness;
    let fresh = freshness(last, sla, Utc::now());
    // A product reading another product shows its streams as they run: the grant's columns,
    // filter and mappers in front of its own.
    let configs = weft_engine::effective_streams(project, product)
        .unwrap_or_else(|_| product.streams.clone());
    // What the policy forces is part of what a consumer gets; a policy that does not load is
    // `weft policy check`'s to explain, so the rest still shows.
    let policy = weft_governance::Policy::load(project)
        .inspect_err(|e| tracing::warn!("the governance policy does not load: {e}"))
        .ok();
    let streams: Vec<serde_json::Value> = configs
        .iter()
        .map(|s| {
            let contract = schema.as_ref().and_then(|c| c.stream(s.name.as_str()));
            let forced = match (&policy, contract) {
                (Some(policy), Some(cs)) => {
                    let columns: Vec<(String, String)> = cs
                        .columns
                        .iter()
                        .map(|c| (source_name(s, &c.name), c.data_type.clone()))
                        .collect();
                    policy.forced_on_columns(project, product, s, &columns)
                }
                _ => Vec::new(),
            };
            let columns: Vec<serde_json::Value> = contract
                .map(|cs| {
                    cs.columns
                        .iter()
                        .map(|col| {
                            let source = source_name(s, &col.name);
                            let policy: Vec<&weft_governance::ForcedAt> =
                                forced.iter().filter(|f| f.forced.column == source).collect();
                            json!({
                                "name": col.name,
                                "type": col.data_type,
                                "nullable": col.nullable,
                                "description": col.description,
                                "tags": col.tags,
                                "transformations": weft_mesh::catalog::column_transformations(s, &source),
                                "policy": policy,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "name": s.name,
                "description": s.description,
                "mode": s.mode.to_string(),
                "write": s.write.to_string(),
                "columns": columns,
            })
        })
        .collect();
    let doc = json!({
        "product": label,
        "owner": product.owner,
        "description": product.description,
        "classification": product.classification,
        "tags": product.tags,
        "file": project.relative(&product.file).display().to_string(),
        "contract": {
            "version": product.locked_contract.as_ref().map(|c| c.version.to_string()),
            "file": contract_rel(project, product),
            "on_change": product.contract.on_change.as_str(),
        },
        "schema_from": schema_from,
        "schema_error": schema_error,
        "freshness": {
            "status": fresh,
            "last_success": last.map(|t| t.to_rfc3339()),
            "sla": sla.map(|d| humantime::format_duration(d).to_string()),
        },
        "lineage": super::product_links::lineage(project, product),
        "grants": super::product_links::grants(project, product),
        "runs": super::product_links::runs(state.as_deref(), product)?,
        "streams": streams,
    });
    match format {
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
        }
        OutputFormat::Table => print_show(&doc),
    }
    Ok(ExitCode::SUCCESS)
}

/// A forced transformation as `product show` words it: `hash (policy pii-hash)`, `mask (keep
/// last 4) when shared (policy pii-shared)`.
fn policy_text(forced: &serde_json::Value) -> String {
    let action = forced["action"].as_str().unwrap_or("?");
    let mut text = match action {
        "mask" => format!("mask (keep last {})", forced["keep_last"]),
        other => other.to_string(),
    };
    if forced["scope"] == "when_shared" {
        text.push_str(" when shared");
    }
    text.push_str(&format!(
        " (policy {})",
        forced["rule"].as_str().unwrap_or("?")
    ));
    text
}

fn print_show(doc: &serde_json::Value) {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    println!("{}", text(&doc["product"]));
    let mut facts = output::table(["", ""]);
    facts.set_header(Vec::<String>::new());
    let contract = match doc["contract"]["version"].as_str() {
        Some(v) => format!(
            "{v} ({}, on_change: {})",
            text(&doc["contract"]["file"]),
            text(&doc["contract"]["on_change"])
        ),
        None => "none (lock one with `weft product contract`)".into(),
    };
    let last = doc["freshness"]["last_success"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            format!(
                ", last success {} UTC",
                output::timestamp(t.with_timezone(&Utc))
            )
        })
        .unwrap_or_default();
    for (k, v) in [
        ("owner", text(&doc["owner"])),
        ("description", text(&doc["description"])),
        (
            "classification",
            doc["classification"].as_str().unwrap_or("none").to_string(),
        ),
        ("contract", contract),
        (
            "freshness",
            format!("{}{last}", text(&doc["freshness"]["status"])),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .chain(super::product_links::facts(doc))
    {
        facts.add_row([k, v]);
    }
    println!("{}", output::fit(facts));
    if let Some(e) = doc["schema_error"].as_str() {
        println!("\nschema unknown: {e}");
    }
    for s in doc["streams"].as_array().into_iter().flatten() {
        let description = s["description"]
            .as_str()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        println!(
            "\nstream {} ({}, {}){description}",
            text(&s["name"]),
            text(&s["mode"]),
            text(&s["write"])
        );
        let mut table = output::table([
            "column",
            "type",
            "null",
            "tags",
            "transformation",
            "description",
        ]);
        for c in s["columns"].as_array().into_iter().flatten() {
            let list = |v: &serde_json::Value| {
                v.as_array()
                    .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            };
            let mut transformations = list(&c["transformations"]);
            for forced in c["policy"].as_array().into_iter().flatten() {
                if !transformations.is_empty() {
                    transformations.push_str(", ");
                }
                transformations.push_str(&policy_text(forced));
            }
            table.add_row([
                text(&c["name"]),
                text(&c["type"]),
                if c["nullable"] == false { "no" } else { "yes" }.to_string(),
                list(&c["tags"]),
                transformations,
                text(&c["description"]),
            ]);
        }
        println!("{}", output::fit(table));
    }
    super::product_links::print_runs(doc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_against_the_sla() {
        let now = Utc::now();
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(freshness(None, Some(hour), now), "never");
        assert_eq!(
            freshness(Some(now - chrono::Duration::minutes(5)), Some(hour), now),
            "fresh"
        );
        assert_eq!(
            freshness(Some(now - chrono::Duration::hours(2)), Some(hour), now),
            "late"
        );
        assert_eq!(freshness(Some(now), None, now), "synced (no SLA)");
    }
}
