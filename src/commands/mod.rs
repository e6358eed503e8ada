//! One module per top-level command.

mod config;
mod connector;
mod daemon;
mod discover;
mod domain;
mod init;
#[cfg(feature = "source-manifest")]
mod manifest_tool;
mod policy;
mod product;
mod product_links;
mod scaffold;
mod skeleton;
mod state;
mod sync;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use weft_mesh::Project;

use crate::cli::{Cli, Command};
use crate::exit::Failure;
use crate::logging;

pub async fn dispatch(cli: Cli) -> Result<ExitCode, Failure> {
    let project_arg = cli.project;
    let quiet = cli.quiet;
    match cli.command {
        Command::Init {
            dir,
            force,
            source,
            destination,
        } => init::run(&dir, force, source.as_deref(), destination.as_deref()),
        Command::Sync(cmd) => sync::run(project_arg, cmd, quiet).await,
        Command::State(cmd) => state::run(project_arg, cmd).await,
        Command::Connector(cmd) => connector::run(project_arg, cmd).await,
        Command::Config(cmd) => config::run(project_arg, cmd).await,
        Command::Policy(cmd) => policy::run(project_arg, cmd).await,
        Command::Product(cmd) => product::run(project_arg, cmd).await,
        Command::Domain(cmd) => domain::run(project_arg, cmd).await,
        Command::Daemon { listen } => daemon::run(project_arg, listen).await,
        Command::Token(cmd) => token::run(project_arg, cmd),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "weft", &mut script);
            print!("{}", String::from_utf8_lossy(&script));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Finds and loads the project, registering its secrets for redaction.
pub fn load_project(project_arg: Option<PathBuf>) -> Result<Project, Failure> {
    let root = match project_arg {
        Some(dir) => {
            if !dir.join("weft.yaml").is_file() {
                return Err(Failure::config(format!(
                    "{} holds no weft.yaml; create a project there with `weft init {}`",
                    dir.display(),
                    dir.display()
                )));
            }
            dir
        }
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| Failure::config(format!("cannot read the current folder: {e}")))?;
            Project::find_root(&cwd).map_err(Failure::config)?
        }
    };
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let project = Project::load(&root).map_err(Failure::config)?;
    logging::set_redactor(project.secrets.clone());
    Ok(project)
}

/// Asks `question` on a terminal and goes on with `action` only on `yes`; off a terminal
/// (cron, scripts) it fails with `refusal`, which names `--yes`.
pub(crate) fn confirm(action: &str, question: &str, refusal: String) -> Result<(), Failure> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(Failure::config(refusal));
    }
    eprint!("{question} Type `yes` to go on: ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Failure::config(format!("cannot read the answer: {e}")))?;
    if answer.trim().eq_ignore_ascii_case("yes") {
        Ok(())
    } else {
        Err(Failure::config(format!(
            "{action} not confirmed; nothing was changed"
        )))
    }
}
