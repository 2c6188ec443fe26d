//! Command-line arguments; the doc comments here are the `--help` text.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// webinfra: the classic distributed web stack (load balancer, web servers,
/// application servers, MariaDB primary and replica) from one topology file.
#[derive(Debug, Parser)]
#[command(name = "webinfra", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the stack's topology and state live.
#[derive(Debug, clap::Args, Clone)]
pub struct StackArgs {
    /// Topology file.
    #[arg(long, short = 't', global = true, default_value = webinfra_topology::DEFAULT_TOPOLOGY, env = "WEBINFRA_TOPOLOGY")]
    pub topology: PathBuf,
    /// Directory for data, logs and credentials; kept between runs.
    #[arg(
        long,
        short = 's',
        default_value = ".webinfra",
        env = "WEBINFRA_STATE_DIR"
    )]
    pub state_dir: PathBuf,
}

/// Where a running stack keeps its state (for commands that need no topology).
#[derive(Debug, clap::Args, Clone)]
pub struct StateArgs {
    /// State directory of the stack.
    #[arg(
        long,
        short = 's',
        default_value = ".webinfra",
        env = "WEBINFRA_STATE_DIR"
    )]
    pub state_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the stack: every role as its own process, MariaDB provisioned.
    Up {
        #[command(flatten)]
        stack: StackArgs,
        /// Return once everything is healthy and leave the stack running.
        #[arg(long)]
        detach: bool,
        /// Run only the components of these hosts (one machine of many).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Stop the stack when standard input closes (used by tests).
        #[arg(long, hide = true)]
        exit_on_stdin_eof: bool,
        /// Start and supervise only; the `up --detach` that started this
        /// process waits for health and reports.
        #[arg(long, hide = true)]
        background: bool,
    },
    /// Stop a running stack (started with `up --detach` or in another shell).
    Down {
        #[command(flatten)]
        state: StateArgs,
    },
    /// Show every component: role, address, pid, health, database replication.
    Status {
        #[command(flatten)]
        stack: StackArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Validate a topology file; errors name the line, column and key.
    Check {
        /// The file to check (default: `-t`, then $WEBINFRA_TOPOLOGY, then
        /// the design's own file).
        file: Option<PathBuf>,
        /// The file to check, named as the other commands take it.
        #[arg(long, short = 't', conflicts_with = "file")]
        topology: Option<PathBuf>,
    },
    /// Start a stopped or dead component (`server-01/web`) or a host's components (`server-01`).
    Start {
        /// Component or host name.
        name: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Stop a component or a host's components (SIGTERM, like a clean shutdown).
    Stop {
        /// Component or host name.
        name: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// The database tier: status, switchover, failover, rejoin.
    Db {
        #[command(flatten)]
        stack: StackArgs,
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Take a load-balanced server out of rotation or put it back.
    Lb {
        #[command(flatten)]
        stack: StackArgs,
        /// drain (no new requests), disable (maintenance: no requests, no
        /// checks), enable, or weight (with a value, until the next reload).
        action: String,
        /// The server's name (a host in `servers`, or a backend's name, in any pool).
        server: String,
        /// The new weight (1-256), for `weight`.
        value: Option<String>,
    },
    /// Re-read the topology file in the running load balancer (like SIGHUP):
    /// servers, weights, algorithm, health check, limits; no connection is dropped.
    Reload {
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Run one role in the foreground (what `up` starts for each component).
    Run {
        /// load-balancer (lb), web, app or database (db).
        role: String,
        /// The host whose share of the role to run.
        #[arg(long)]
        host: Option<String>,
        #[command(flatten)]
        stack: StackArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Each node's role, GTID positions, lag, semi-sync state and the last failover.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Move the primary role with no lost writes (writes pause briefly).
    Switchover {
        /// The node to promote (default: the most advanced replica).
        #[arg(long)]
        to: Option<String>,
    },
    /// Promote the most advanced replica now (fencing the primary if it answers).
    Failover,
    /// Let a node that was kept out after diverging try to rejoin.
    Rejoin {
        /// The node.
        node: String,
    },
}
