//! The `weft` command line.

// First: its println!/eprintln! replace std's in every module declared after it.
#[macro_use]
mod stdio;

mod cli;
mod commands;
mod exit;
mod logging;
mod output;
mod registry;
mod signals;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let log_format = cli.log_format.unwrap_or(match cli.command {
        cli::Command::Daemon { .. } => cli::LogFormat::Json,
        _ => cli::LogFormat::Text,
    });
    logging::init(log_format, cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::Failure::runtime(e).code();
        }
    };
    let code = match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(failure) => {
            failure.print();
            failure.code()
        }
    };
    // A closed pipe is fine (the reader had what it wanted); any other lost output is not.
    match stdio::stdout_error() {
        Some(e) if code == ExitCode::SUCCESS => {
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
        _ => code,
    }
}
