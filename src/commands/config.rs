//! `weft config schema|validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{ConfigCommand, SchemaKind};
use crate::exit::Failure;

pub fn run(project: Option<PathBuf>, cmd: ConfigCommand) -> Result<ExitCode, Failure> {
    match cmd {
        ConfigCommand::Schema { kind } => {
            let schema = match kind {
                SchemaKind::Product => weft_mesh::product_json_schema(),
                SchemaKind::Project => weft_mesh::project_json_schema(),
            };
            println!("{}", serde_json::to_string_pretty(&schema).expect("JSON"));
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Validate => {
            let project = super::load_project(project)?;
            println!(
                "{}: {} product(s), {} stream(s): valid",
                project.root.display(),
                project.products.len(),
                project
                    .products
                    .iter()
                    .map(|p| p.streams.len())
                    .sum::<usize>()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
