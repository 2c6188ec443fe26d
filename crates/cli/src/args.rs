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

/// Where the stack's topology and state live: the same two flags on every
/// command that works on a stack, anywhere on its line.
#[derive(Debug, clap::Args, Clone)]
pub struct StackFlags {
    /// Topology file (default: the one the state dir's stack was started
    /// from, else topologies/foobar.toml).
    #[arg(long, short = 't', global = true, env = "WEBINFRA_TOPOLOGY")]
    pub topology: Option<PathBuf>,
    /// Directory for data, logs and credentials; kept between runs.
    #[arg(
        long,
        short = 's',
        global = true,
        default_value = ".webinfra",
        env = "WEBINFRA_STATE_DIR"
    )]
    pub state_dir: PathBuf,
}

/// The topology and state dir a command works on, resolved.
#[derive(Debug, Clone)]
pub struct StackArgs {
    /// The topology file.
    pub topology: PathBuf,
    /// The state dir.
    pub state_dir: PathBuf,
}

/// The file in a state dir naming the topology its stack was started from.
pub const REMEMBERED_TOPOLOGY: &str = "topology.path";

impl StackFlags {
    /// `-t` (or `$WEBINFRA_TOPOLOGY`) when given; else the topology the
    /// state dir's stack was started from (`up` remembers it); else the default.
    pub fn resolve(self) -> StackArgs {
        let remembered = || {
            let text = std::fs::read_to_string(self.state_dir.join(REMEMBERED_TOPOLOGY)).ok()?;
            let path = PathBuf::from(text.trim_end_matches('\n'));
            path.is_file().then_some(path)
        };
        let topology = self
            .topology
            .clone()
            .or_else(remembered)
            .unwrap_or_else(|| PathBuf::from(webinfra_topology::DEFAULT_TOPOLOGY));
        StackArgs {
            topology,
            state_dir: self.state_dir,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the stack: every role as its own process, MariaDB provisioned.
    Up {
        #[command(flatten)]
        stack: StackFlags,
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
        stack: StackFlags,
    },
    /// Show every component: role, address, pid, health, database replication.
    Status {
        #[command(flatten)]
        stack: StackFlags,
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
        stack: StackFlags,
    },
    /// Stop a component or a host's components (SIGTERM, like a clean shutdown).
    Stop {
        /// Component or host name.
        name: String,
        #[command(flatten)]
        stack: StackFlags,
    },
    /// The database tier: status, switchover, failover, rejoin.
    Db {
        #[command(flatten)]
        stack: StackFlags,
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Take a load-balanced server out of rotation or put it back.
    Lb {
        #[command(flatten)]
        stack: StackFlags,
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
        stack: StackFlags,
    },
    /// Run one role in the foreground (what `up` starts for each component).
    Run {
        /// load-balancer (lb), web, app, database (db) or db-monitor (monitor).
        role: String,
        /// The host whose share of the role to run.
        #[arg(long)]
        host: Option<String>,
        #[command(flatten)]
        stack: StackFlags,
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
