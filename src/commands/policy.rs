//! `weft policy check|decrypt`.
//!
//! `check` evaluates every product against the central policy and its domain's rules. Unless
//! `--offline`, it asks each source for its streams' columns (`discover`), so columns the
//! files do not name are checked too; a source that cannot be reached is reported and its
//! products are checked on the columns their files name.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use weft_core::ConnectorContext;
use weft_governance::{Policy, Severity, Violation};

use crate::cli::{OutputFormat, PolicyCommand};
use crate::exit::Failure;
use crate::registry::registry;

pub async fn run(project: Option<PathBuf>, cmd: PolicyCommand) -> Result<ExitCode, Failure> {
    let project = super::load_project(project)?;
    let policy = Policy::load(&project).map_err(Failure::config)?;
    match cmd {
        PolicyCommand::Check { format, offline } => check(&project, &policy, format, offline).await,
        PolicyCommand::Decrypt { values } => decrypt(&policy, values),
    }
}

async fn check(
    project: &weft_mesh::Project,
    policy: &Policy,
    format: OutputFormat,
    offline: bool,
) -> Result<ExitCode, Failure> {
    let registry = registry();
    let ctx = ConnectorContext {
        project_dir: project.root.clone(),
    };
    let mut violations: Vec<Violation> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for product in &project.products {
        let catalog = if offline {
            None
        } else {
            match registry.build_source(&product.source.connector, &product.source.config, &ctx) {
                Ok(source) => match source.discover().await {
                    Ok(catalog) => Some(catalog),
                    Err(e) => {
                        notes.push(format!(
                            "{}: source not discovered ({e}); checked the columns its file names",
                            product.label()
                        ));
                        None
                    }
                },
                Err(e) => return Err(Failure::config(e)),
            }
        };
        let schemas = |stream: &str| {
            catalog
                .as_ref()
                .and_then(|c| c.stream(stream))
                .map(|s| s.schema.as_ref().clone())
        };
        violations.extend(policy.check_product(project, product, &schemas));
    }
    let errors = violations
        .iter()
        .filter(|v| v.severity == Severity::Error)
        .count();
    let warnings = violations.len() - errors;
    match format {
        OutputFormat::Json => {
            let out = serde_json::json!({
                "policy_digest": policy.digest,
                "products": project.products.len(),
                "errors": errors,
                "warnings": warnings,
                "violations": violations,
                "notes": notes,
            });
            println!("{}", serde_json::to_string_pretty(&out).expect("JSON"));
        }
        OutputFormat::Table => {
            for v in &violations {
                println!("{v}");
            }
            for n in &notes {
                eprintln!("note: {n}");
            }
            println!(
                "{} product(s) checked against policy {}: {errors} error(s), {warnings} warning(s)",
                project.products.len(),
                &policy.digest[..12]
            );
        }
    }
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn decrypt(policy: &Policy, values: Vec<String>) -> Result<ExitCode, Failure> {
    let cipher = policy.keys.cipher().ok_or_else(|| {
        Failure::config(
            "governance.yaml sets no `keys.encrypt`, so there is nothing to decrypt with; add `keys: { encrypt: \"${WEFT_ENCRYPT_KEY}\" }` and set the variable",
        )
    })?;
    let values: Vec<String> = if values.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .filter(|l| !l.trim().is_empty())
            .collect()
    } else {
        values
    };
    for (i, value) in values.iter().enumerate() {
        let plain = cipher
            .decrypt(value)
            .map_err(|e| Failure::failed(format!("value #{}: {e}", i + 1)))?;
        println!("{}", String::from_utf8_lossy(&plain));
    }
    Ok(ExitCode::SUCCESS)
}
