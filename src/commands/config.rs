//! `weft config schema|validate`.
//!
//! `validate` checks everything that can be checked without connecting — the files and their
//! layout (by loading the project), every connector's config (by building it), schedules — and
//! prints what it found per domain, so "valid" means `weft sync run` will not reject the
//! configuration. `--connect` adds each connector's `check`.

use std::path::PathBuf;
use std::process::ExitCode;

use weft_core::ConnectorContext;
use weft_mesh::Project;

use crate::cli::{ConfigCommand, SchemaKind};
use crate::exit::Failure;
use crate::logging;
use crate::registry::registry;

pub async fn run(project: Option<PathBuf>, cmd: ConfigCommand) -> Result<ExitCode, Failure> {
    match cmd {
        ConfigCommand::Schema { kind } => {
            let schema = match kind {
                SchemaKind::Product => weft_mesh::product_json_schema(),
                SchemaKind::Project => weft_mesh::project_json_schema(),
                SchemaKind::Domain => weft_mesh::domain_json_schema(),
            };
            println!("{}", serde_json::to_string_pretty(&schema).expect("JSON"));
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Validate { connect } => validate(project, connect).await,
    }
}

async fn validate(project: Option<PathBuf>, connect: bool) -> Result<ExitCode, Failure> {
    let project = super::load_project(project)?;
    let registry = registry();
    print_summary(&project);
    for warning in &project.warnings {
        eprintln!("warning: {warning}");
    }
    let problems = weft_engine::check_connectors(&project, &registry);
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {}", logging::redact(&problem.to_string()));
        }
        return Err(Failure::config(format!(
            "{} problem(s) found; fix them and run `weft config validate` again",
            problems.len()
        )));
    }
    let streams: usize = project.products.iter().map(|p| p.streams.len()).sum();
    println!(
        "valid: {} domain(s), {} product(s), {} stream(s)",
        project.domains().len(),
        project.products.len(),
        streams
    );
    if !connect {
        return Ok(ExitCode::SUCCESS);
    }
    let failed = check_all(&project).await;
    if failed > 0 {
        return Err(Failure::failed(format!(
            "{failed} connector check(s) failed"
        )));
    }
    Ok(ExitCode::SUCCESS)
}

/// What the project holds, per domain: products, their connectors, schedule and streams.
fn print_summary(project: &Project) {
    println!(
        "project {} (state {})",
        project.root.display(),
        project.relative(&project.settings.state_path).display()
    );
    for domain in project.domains() {
        let products: Vec<_> = project
            .products
            .iter()
            .filter(|p| &p.domain == domain)
            .collect();
        println!(
            "domain {domain} ({}): {} product(s), owners {}{}",
            project.relative(&domain.file).display(),
            products.len(),
            domain.owners.join(", "),
            domain
                .contact
                .as_ref()
                .map_or_else(String::new, |c| format!(", contact {c}"))
        );
        for product in products {
            let schedule = product.schedule.as_ref().map_or_else(
                || "no schedule".to_string(),
                |s| match s.next_after(chrono::Utc::now()) {
                    Some(next) => {
                        format!(
                            "schedule \"{s}\" (next {} UTC)",
                            crate::output::timestamp(next)
                        )
                    }
                    None => format!("schedule \"{s}\""),
                },
            );
            println!(
                "  {} ({}): {} -> {}, {}",
                product.name,
                project.relative(&product.file).display(),
                product.source.connector,
                product.destination.connector,
                schedule
            );
            for stream in &product.streams {
                println!("    {}: {} / {}", stream.name, stream.mode, stream.write);
            }
        }
    }
}

/// Runs every product's source check and every distinct destination's check; returns how many
/// failed.
async fn check_all(project: &Project) -> usize {
    let registry = registry();
    let ctx = ConnectorContext {
        project_dir: project.root.clone(),
    };
    let mut failed = 0;
    let mut destinations_checked: Vec<(String, serde_json::Value)> = Vec::new();
    for product in &project.products {
        let label = product.label();
        // Configs were validated above, so building cannot fail here.
        let outcome = match weft_engine::build_source(project, product, &registry, &ctx) {
            Ok(source) => source.check().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        failed += report_check(
            &format!("{label} source `{}`", product.source.connector),
            outcome,
        );

        let key = (
            product.destination.connector.clone(),
            product.destination.config.clone(),
        );
        if destinations_checked.contains(&key) {
            continue;
        }
        destinations_checked.push(key);
        let outcome = match registry.build_destination(
            &product.destination.connector,
            &product.destination.config,
            &ctx,
        ) {
            Ok(destination) => destination.check().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        failed += report_check(
            &format!("{label} destination `{}`", product.destination.connector),
            outcome,
        );
    }
    failed
}

fn report_check(label: &str, outcome: Result<(), String>) -> usize {
    match outcome {
        Ok(()) => {
            println!("{label}: check succeeded");
            0
        }
        Err(e) => {
            eprintln!("error: {label}: check failed: {}", logging::redact(&e));
            1
        }
    }
}
