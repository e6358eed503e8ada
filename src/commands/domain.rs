//! `weft domain list`: the project's domains, their products and owners.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use crate::cli::{DomainCommand, OutputFormat};
use crate::exit::Failure;
use crate::output;

pub async fn run(project: Option<PathBuf>, cmd: DomainCommand) -> Result<ExitCode, Failure> {
    let project = super::load_project(project)?;
    match cmd {
        DomainCommand::List { format } => {
            let domains: Vec<serde_json::Value> = project
                .domains()
                .into_iter()
                .map(|d| {
                    let products: Vec<_> =
                        project.products.iter().filter(|p| &p.domain == d).collect();
                    let mut owners: Vec<&str> = products.iter().map(|p| p.owner.as_str()).collect();
                    owners.sort();
                    owners.dedup();
                    json!({
                        "domain": d,
                        "products": products.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
                        "owners": owners,
                    })
                })
                .collect();
            match format {
                OutputFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&domains).expect("JSON"))
                }
                OutputFormat::Table => {
                    let mut table = output::table(["domain", "products", "owners"]);
                    let list = |v: &serde_json::Value| {
                        v.as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            })
                            .unwrap_or_default()
                    };
                    for d in &domains {
                        table.add_row([
                            d["domain"].as_str().unwrap_or("").to_string(),
                            list(&d["products"]),
                            list(&d["owners"]),
                        ]);
                    }
                    println!("{}", output::fit(table));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
