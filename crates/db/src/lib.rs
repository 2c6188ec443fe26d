//! The database supervisor role: one process per database host that owns one
//! real `mariadbd`.
//!
//! On first start it initialises the data dir; every start it writes the
//! config, starts `mariadbd` as its child, provisions users and grants
//! ([`provision`]) and, on a replica, GTID replication from the primary. It
//! answers `/healthz` on the host's admin port with the node's role and
//! replication state ([`status`]). On SIGTERM it stops MariaDB cleanly; if it
//! is killed, MariaDB goes with it, like a lost machine.

mod admin;
pub mod mariadb;
pub use webinfra_mariadb::probe;
pub mod provision;
pub mod status;

use anyhow::Context;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use webinfra_topology::{Credentials, Database, DbNode};

/// Everything one database node needs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node.
    pub node: DbNode,
    /// The whole database tier (the primary to replicate from, the schema).
    pub database: Database,
    /// The node's own directory: config, data, socket, logs.
    pub dir: PathBuf,
    /// Passwords of the stack's users.
    pub credentials: Credentials,
    /// Addresses the application servers connect from.
    pub app_hosts: Vec<IpAddr>,
}

/// Runs the node until `shutdown` resolves (then stops MariaDB cleanly) or
/// MariaDB dies (an error).
pub async fn run(
    admin: TcpListener,
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let monitor = Arc::new(status::Monitor::new(&config));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin_task = tokio::spawn(admin::run(admin, monitor.clone(), stop_rx));

    let result = supervise(&config, &monitor, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = admin_task.await;
    result
}

async fn supervise(
    config: &NodeConfig,
    monitor: &status::Monitor,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let binaries = mariadb::Binaries::locate()?;
    let mut server = mariadb::Server::new(config, binaries)?;
    server.rejoining = replaced_as_primary(config).await;
    if server.rejoining {
        tracing::info!(node = %config.node.name, "another node is the primary: recovering as a replica");
    }
    server
        .prepare()
        .await
        .context("preparing the data directory")?;
    let mut child = server.start().await.context("starting mariadbd")?;
    tokio::pin!(shutdown);
    tokio::select! {
        ready = server.wait_ready(&mut child) => ready.context("waiting for mariadbd")?,
        _ = &mut shutdown => {
            server.stop(&mut child).await;
            return Ok(());
        }
    }
    provision::provision(&server, config)
        .await
        .context("provisioning users and replication")?;
    monitor.set_provisioned();
    tracing::info!(node = %config.node.name, role = config.node.role.as_str(), "mariadb ready");
    tokio::select! {
        exit = child.wait() => {
            let exit = exit.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            anyhow::bail!("mariadbd exited unexpectedly ({exit}); see {}", server.error_log().display())
        }
        _ = &mut shutdown => {
            server.stop(&mut child).await;
            Ok(())
        }
    }
}

/// Asks the database monitor whether another node is the primary now. When
/// the monitor cannot be asked, assume not: recovering everything keeps every
/// acknowledged write, and a divergence is caught (and reported) at rejoin.
async fn replaced_as_primary(config: &NodeConfig) -> bool {
    let health =
        webinfra_proxy::probe::probe(config.database.monitor, std::time::Duration::from_secs(1))
            .await;
    health
        .body
        .as_ref()
        .and_then(|b| b["primary"].as_str())
        .is_some_and(|p| p != config.node.name)
}
