//! The database monitor role (what MaxScale or orchestrator do, in one small
//! loop): it watches every MariaDB node, keeps exactly one writable primary,
//! fails over when the primary is confirmed dead, points the other nodes at
//! the primary (a returning former primary rejoins as a replica), keeps nodes
//! whose data diverged out, and moves the primary on request.
//!
//! [`monitor`] is the loop, [`actions`] the SQL it runs, [`state`] what it
//! remembers across restarts, [`api`] its HTTP interface.

pub mod actions;
mod api;
pub mod gtid;
pub mod monitor;
pub use webinfra_mariadb::probe;
pub mod state;

pub use monitor::{ClusterView, Monitor};

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use webinfra_topology::{Credentials, Database};

/// Runs the monitor until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    database: &Database,
    credentials: &Credentials,
    state_dir: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let monitor = Arc::new(Monitor::new(database, credentials, state_dir));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let looper = monitor.clone();
    let ticks = tokio::spawn(async move {
        let mut interval = tokio::time::interval(monitor::TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => looper.tick().await,
                _ = stop_rx.changed() => return,
            }
        }
    });
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "database monitor started");
    let operators = webinfra_proxy::Operators::new(database.operators.iter().copied());
    api::serve(listener, monitor.clone(), operators, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = ticks.await;
    monitor.disconnect().await;
    tracing::info!("database monitor stopped");
}
