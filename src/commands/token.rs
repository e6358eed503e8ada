//! `weft token create | list | revoke`: the bearer tokens of the daemon's HTTP API.
//!
//! The token text is printed once, on stdout alone (so `TOKEN=$(weft token create …)`
//! works); the state store keeps only its SHA-256.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use weft_core::DomainName;
use weft_state::{NewToken, SqliteStateStore, StateStore, TokenScope};

use crate::cli::{OutputFormat, TokenCommand};
use crate::exit::Failure;
use crate::output::{fit, table, timestamp};

pub fn run(project_arg: Option<PathBuf>, cmd: TokenCommand) -> Result<ExitCode, Failure> {
    let project = super::load_project(project_arg)?;
    let store = SqliteStateStore::open(&project.settings.state_path).map_err(Failure::failed)?;
    match cmd {
        TokenCommand::Create {
            domain,
            admin,
            name,
        } => {
            let scope = if admin {
                TokenScope::Admin
            } else {
                let domain = domain.unwrap_or_default();
                let name = DomainName::new(domain.clone())
                    .map_err(|e| Failure::config(format!("--domain {domain:?}: {e}")))?;
                if !project.domains().iter().any(|d| d.name == name) {
                    let known: Vec<String> = project
                        .domains()
                        .iter()
                        .map(|d| d.name.to_string())
                        .collect();
                    return Err(Failure::config(format!(
                        "--domain {domain}: the project has no such domain (its domains: {})",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    )));
                }
                TokenScope::Domain(name)
            };
            let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
            let name = match name {
                Some(n) if n.trim().is_empty() => {
                    return Err(Failure::config("--name must not be empty"))
                }
                Some(n) => n,
                None => match &scope {
                    TokenScope::Admin => format!("admin-{id}"),
                    TokenScope::Domain(d) => format!("{d}-{id}"),
                },
            };
            let token = weft_api::tokens::generate();
            store
                .create_token(&NewToken {
                    id: id.clone(),
                    name: name.clone(),
                    scope: scope.clone(),
                    hash: weft_api::tokens::hash(&token),
                    created_at: Utc::now(),
                })
                .map_err(|e| match e {
                    weft_state::StateError::TokenNameTaken { .. } => Failure::config(e),
                    e => Failure::failed(e),
                })?;
            eprintln!("created token `{name}` (id {id}, scope {scope}); it is shown only now:");
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { format } => {
            let tokens = store.tokens().map_err(Failure::failed)?;
            match format {
                OutputFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&tokens).expect("JSON"))
                }
                OutputFormat::Table if tokens.is_empty() => {
                    println!("no tokens yet: `weft token create --domain D` makes one")
                }
                OutputFormat::Table => {
                    let mut t =
                        table(["name", "id", "scope", "created (UTC)", "last used", "state"]);
                    for tk in &tokens {
                        t.add_row([
                            tk.name.clone(),
                            tk.id.clone(),
                            tk.scope.to_string(),
                            timestamp(tk.created_at),
                            tk.last_used_at
                                .map(timestamp)
                                .unwrap_or_else(|| "never".into()),
                            match tk.revoked_at {
                                Some(at) => format!("revoked {}", timestamp(at)),
                                None => "live".into(),
                            },
                        ]);
                    }
                    println!("{}", fit(t));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { name } => {
            if store
                .revoke_token(&name, Utc::now())
                .map_err(Failure::failed)?
            {
                println!("revoked token `{name}`");
                Ok(ExitCode::SUCCESS)
            } else {
                Err(Failure::config(format!(
                    "no live token named or with id `{name}`; `weft token list` shows them"
                )))
            }
        }
    }
}
