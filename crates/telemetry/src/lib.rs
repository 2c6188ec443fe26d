//! Logging for every webinfra process: one `tracing` subscriber writing to stderr.
//!
//! The supervisor sends each role process's stderr to its own log file, so a
//! line needs no process name; spans carry the request id and peer address.
//! `RUST_LOG` overrides the default level.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber with `default` as the level (`info`, `warn`, ...);
/// call once at process start.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},hyper=warn,mysql_async=warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
