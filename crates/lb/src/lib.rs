//! The load balancer role (HAProxy's place in the design).
//!
//! Clients connect to the site address; each request gets an `X-Request-Id`,
//! `X-Forwarded-For` and `X-Forwarded-Proto`, then goes to the next healthy
//! server picked by a [`Balancer`]. A failed connect is retried on the next
//! server, so losing a server fails no client request. [`health`] runs the
//! active checks in the background and publishes which servers are up; the
//! request path only reads that snapshot.

mod admin;
pub mod balance;
mod handler;
pub mod health;
pub mod retry;
pub mod stats;

pub use balance::{for_algorithm, Balancer, Load};
pub use health::{ServerSet, ServerStatus};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use webinfra_proxy::{Upstream, UpstreamClient};
use webinfra_topology::LoadBalancer;

/// Runs the load balancer: `listener` takes client traffic, `admin` answers
/// `/healthz` and `/servers`. Returns when `shutdown` resolves and requests drained.
pub async fn run(
    listener: TcpListener,
    admin: TcpListener,
    config: LoadBalancer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let upstreams: Vec<Upstream> = config
        .servers
        .iter()
        .map(|s| Upstream {
            name: s.name.clone(),
            addr: s.addr,
        })
        .collect();
    let servers = Arc::new(ServerSet::with_options(
        upstreams,
        config.servers.iter().map(|s| s.weight).collect(),
        config.servers.iter().map(|s| s.backup).collect(),
        config.health_check.clone(),
    ));
    let balancer: Arc<dyn Balancer> = Arc::from(for_algorithm(config.algorithm));
    let checks = servers.clone().spawn_checks();
    let state = Arc::new(handler::State {
        servers: servers.clone(),
        balancer,
        client: UpstreamClient::new(Duration::from_secs(2), Duration::from_secs(60)),
        access_log: config.access_log,
        retry_budget: Default::default(),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin_task = tokio::spawn(admin::run(admin, servers, stop_rx));
    tracing::info!(listen = %config.listen, servers = config.servers.len(), "load balancer started");
    webinfra_proxy::serve(
        listener,
        move |req, peer| handler::handle(state.clone(), req, peer),
        shutdown,
    )
    .await;
    let _ = stop_tx.send(true);
    let _ = admin_task.await;
    checks.abort();
    tracing::info!("load balancer stopped");
}
