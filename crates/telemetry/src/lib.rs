//! Logging for every webinfra process: one `tracing` subscriber writing to stderr.
//!
//! The supervisor sends each process's stderr to its own log file, so a line
//! needs no process name; spans carry the request id and peer address.
//! `RUST_LOG` overrides the default `info` level.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber; call once at process start.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,hyper=warn,mysql_async=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}
