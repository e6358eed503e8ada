//! What `weft product show` says about a product's place in the mesh: its lineage up and
//! down, the grants it gives and the one it reads through, and its last runs with the
//! governance audit of each (the policy digest and the transformation per column).

use serde_json::{json, Value};
use weft_mesh::{GrantedStream, Mapper, Product, Project};
use weft_state::StateStore;

use crate::exit::Failure;

/// How many of the product's latest runs `show` lists.
const RUNS_SHOWN: usize = 5;

/// `{origin, upstream: [{product, streams, depth}], downstream: [...]}`.
pub fn lineage(project: &Project, product: &Product) -> Value {
    serde_json::to_value(weft_mesh::lineage(project, product)).expect("lineage is JSON")
}

/// A mapper as the catalog words it.
fn describe(m: &Mapper) -> String {
    match m {
        Mapper::Select(c) => format!("select {}", c.join(", ")),
        Mapper::Drop(c) => format!("drop {}", c.join(", ")),
        Mapper::Rename { from, to } => format!("rename {from} to {to}"),
        Mapper::Hash { column, .. } => format!("hash {column}"),
        Mapper::Mask {
            column, keep_last, ..
        } => format!("mask {column} (keep last {keep_last})"),
        Mapper::Encrypt { column } => format!("encrypt {column}"),
        Mapper::KeyedHash { column } => format!("keyed hash {column}"),
        Mapper::Filter { column, op, value } => match value {
            Some(v) => format!("{column} {op} {v}"),
            None => format!("{column} {op}"),
        },
        Mapper::AnyOf(alternatives) => format!(
            "any of ({})",
            alternatives
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

fn granted_stream(s: &GrantedStream) -> Value {
    json!({
        "name": s.name,
        "columns": s.columns,
        "rows": s.filter.iter().map(describe).collect::<Vec<_>>(),
        "transform": s.transform.iter().map(describe).collect::<Vec<_>>(),
    })
}

/// `{given: [{to, streams}], received: [{from, streams} | {from, error}]}`: the grants this
/// product's file gives, and the grant its upstream gives this product's domain.
pub fn grants(project: &Project, product: &Product) -> Value {
    let given: Vec<Value> = product
        .grants
        .iter()
        .map(|g| {
            json!({
                "to": g.to,
                "streams": g.streams.iter().map(granted_stream).collect::<Vec<_>>(),
            })
        })
        .collect();
    let received: Vec<Value> = match (&product.upstream, weft_mesh::access(project, product)) {
        (Some(up), Err(denied)) => vec![json!({
            "from": up.product.to_string(),
            "error": denied.message,
        })],
        (_, Ok(Some(access))) => access
            .grant
            .map(|g| {
                json!({
                    "from": access.upstream.label(),
                    "streams": g
                        .streams
                        .iter()
                        .filter(|s| product.stream(s.name.as_str()).is_some())
                        .map(granted_stream)
                        .collect::<Vec<_>>(),
                })
            })
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    json!({ "given": given, "received": received })
}

/// The product's latest runs, newest first: `[{run_id, status, started_at, rows, streams:
/// [{stream, status, rows, policy_digest, columns: [{column, action, rule}]}]}]`.
pub fn runs(state: Option<&dyn StateStore>, product: &Product) -> Result<Value, Failure> {
    let Some(state) = state else {
        return Ok(json!([]));
    };
    let mut out = Vec::new();
    for run in state.runs(1_000).map_err(Failure::failed)? {
        let mine: Vec<_> = run
            .streams
            .iter()
            .filter(|s| s.key.domain == product.domain && s.key.product == product.name)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let audits = state.policy_audits(&run.run_id).map_err(Failure::failed)?;
        let streams: Vec<Value> = mine
            .iter()
            .map(|s| {
                let key = s.key.to_string();
                let audit: Value = audits
                    .iter()
                    .find(|(k, _)| *k == key)
                    .and_then(|(_, a)| serde_json::from_str(a).ok())
                    .unwrap_or(Value::Null);
                json!({
                    "stream": s.key.stream,
                    "status": s.status.to_string(),
                    "rows": s.rows,
                    "policy_digest": audit["policy_digest"],
                    "columns": audit["columns"],
                })
            })
            .collect();
        let rows: u64 = mine.iter().map(|s| s.rows).sum();
        out.push(json!({
            "run_id": run.run_id,
            "status": run.status.to_string(),
            "started_at": run.started_at.to_rfc3339(),
            "rows": rows,
            "streams": streams,
        }));
        if out.len() == RUNS_SHOWN {
            break;
        }
    }
    Ok(Value::Array(out))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn links(v: &Value) -> String {
    let items: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let streams: Vec<String> = l["streams"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let product = &l["product"];
            format!(
                "{}/{} ({})",
                text(&product["domain"]),
                text(&product["product"]),
                streams.join(", ")
            )
        })
        .collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(" ← ")
    }
}

/// `upstream`, `downstream` and `grants …` rows of the facts table.
pub fn facts(doc: &Value) -> Vec<(String, String)> {
    let lineage = &doc["lineage"];
    let mut upstream = links(&lineage["upstream"]);
    upstream = if upstream == "none" {
        format!("source: {}", text(&lineage["origin"]))
    } else {
        format!("{upstream} ← source: {}", text(&lineage["origin"]))
    };
    let downstream = links(&lineage["downstream"]).replace(" ← ", ", ");
    let grant_text = |g: &Value, who: &str| -> String {
        if let Some(e) = g["error"].as_str() {
            return format!("{}: refused: {e}", text(&g[who]));
        }
        let streams: Vec<String> = g["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let mut parts = Vec::new();
                if let Some(c) = s["columns"].as_array() {
                    parts.push(format!(
                        "columns {}",
                        c.iter().map(text).collect::<Vec<_>>().join(", ")
                    ));
                }
                let list = |k: &str| {
                    s[k].as_array()
                        .into_iter()
                        .flatten()
                        .map(text)
                        .collect::<Vec<_>>()
                };
                let rows = list("rows");
                if !rows.is_empty() {
                    parts.push(format!("rows where {}", rows.join(" and ")));
                }
                let transform = list("transform");
                if !transform.is_empty() {
                    parts.push(transform.join(", "));
                }
                if parts.is_empty() {
                    text(&s["name"])
                } else {
                    format!("{} ({})", text(&s["name"]), parts.join("; "))
                }
            })
            .collect();
        format!("{}: {}", text(&g[who]), streams.join(", "))
    };
    let list = |k: &str, who: &str| -> String {
        let items: Vec<String> = doc["grants"][k]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| grant_text(g, who))
            .collect();
        if items.is_empty() {
            "none".into()
        } else {
            items.join("\n")
        }
    };
    vec![
        ("upstream".into(), upstream),
        ("downstream".into(), downstream),
        ("grants given".into(), list("given", "to")),
        ("grants received".into(), list("received", "from")),
    ]
}

/// The runs section of the text output.
pub fn print_runs(doc: &Value) {
    let runs = doc["runs"].as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        println!("\nruns: none yet");
        return;
    }
    println!("\nlast runs");
    let mut table = crate::output::table(["run", "started (UTC)", "status", "rows", "governance"]);
    for r in &runs {
        let governance: Vec<String> = r["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let digest = text(&s["policy_digest"]);
                let columns: Vec<String> = s["columns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        format!(
                            "{} {} ({})",
                            text(&c["column"]),
                            text(&c["action"]),
                            text(&c["rule"])
                        )
                    })
                    .collect();
                format!(
                    "{}: policy {}{}",
                    text(&s["stream"]),
                    if digest.is_empty() {
                        "none".to_string()
                    } else {
                        digest.chars().take(12).collect()
                    },
                    if columns.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", columns.join(", "))
                    }
                )
            })
            .collect();
        table.add_row([
            text(&r["run_id"]),
            r["started_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| crate::output::timestamp(t.with_timezone(&chrono::Utc)))
                .unwrap_or_else(|| text(&r["started_at"])),
            text(&r["status"]),
            text(&r["rows"]),
            governance.join("\n"),
        ]);
    }
    println!("{}", crate::output::fit(table));
}
