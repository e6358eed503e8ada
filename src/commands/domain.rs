//! `weft domain list`: the declared domains (`domains/<domain>/domain.yaml`), their owners,
//! contact and products.

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
            let products = |d: &weft_mesh::Domain| -> Vec<String> {
                project
                    .products
                    .iter()
                    .filter(|p| p.domain == d.name)
                    .map(|p| p.name.to_string())
                    .collect()
            };
            match format {
                OutputFormat::Json => {
                    let domains: Vec<serde_json::Value> = project
                        .domains()
                        .iter()
                        .map(|d| {
                            json!({
                                "domain": d.name,
                                "owners": d.owners,
                                "description": d.description,
                                "contact": d.contact,
                                "products": products(d),
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&domains).expect("JSON"));
                }
                OutputFormat::Table => {
                    let mut table = output::table(["domain", "owners", "products", "description"]);
                    for d in project.domains() {
                        table.add_row([
                            d.name.to_string(),
                            d.owners.join(", "),
                            products(d).join(", "),
                            d.description.clone(),
                        ]);
                    }
                    println!("{}", output::fit(table));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
