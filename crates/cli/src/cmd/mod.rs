//! One module per command; each returns the process exit code.

mod check;
mod control;
mod db;
mod lb;
mod run;
mod status;
mod up;

use crate::args::{Cli, Command};
use std::path::{Path, PathBuf};
use webinfra_topology::Topology;

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> i32 {
    match cli.command {
        Command::Check { file, topology } => {
            let file = file
                .or(topology)
                .or_else(|| std::env::var_os("WEBINFRA_TOPOLOGY").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(webinfra_topology::DEFAULT_TOPOLOGY));
            check::check(&file)
        }
        Command::Run { role, host, stack } => {
            run::run(&role, host.as_deref(), &stack.resolve()).await
        }
        Command::Up {
            stack,
            detach,
            hosts,
            exit_on_stdin_eof,
            background,
        } => {
            let mode = match (detach, background) {
                (true, _) => up::Mode::Detach,
                (false, true) => up::Mode::Background,
                (false, false) => up::Mode::Foreground {
                    stdin_eof: exit_on_stdin_eof,
                },
            };
            up::up(&stack.resolve(), mode, &hosts).await
        }
        Command::Db { stack, command } => db::db(&stack.resolve(), &command).await,
        Command::Lb {
            stack,
            action,
            server,
            value,
        } => lb::lb(&stack.resolve(), &action, &server, value.as_deref()).await,
        Command::Reload { stack } => lb::reload(&stack.resolve()).await,
        Command::Down { stack } => control::down(&stack.resolve()).await,
        Command::Status { stack, json } => status::status(&stack.resolve(), json).await,
        Command::Start { name, stack } => {
            control::start_stop(&stack.resolve().state_dir, "start", &name).await
        }
        Command::Stop { name, stack } => {
            control::start_stop(&stack.resolve().state_dir, "stop", &name).await
        }
    }
}

/// Loads a topology or prints its errors; Err carries the exit code.
fn load(path: &Path) -> Result<Topology, i32> {
    Topology::load(path).map_err(|e| {
        eprintln!("{e}");
        2
    })
}

/// Prints an error chain and returns exit code 1.
fn fail(e: anyhow::Error) -> i32 {
    eprintln!("webinfra: {e:#}");
    1
}
