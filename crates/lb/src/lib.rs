//! The load balancer role (HAProxy's place in the design).
//!
//! Clients connect to the site address; each request gets an `X-Request-Id`,
//! `X-Forwarded-For` and `X-Forwarded-Proto`, then goes to the next healthy
//! server picked by a [`Balancer`]. A failed connect is retried on the next
//! server, so losing a server fails no client request. [`health`] runs the
//! active checks in the background and publishes which servers are up; the
//! request path only reads that snapshot.

mod admin;
pub mod admission;
pub mod balance;
mod handler;
pub mod health;
pub mod pool;
pub mod retry;
pub mod stats;
mod tunnel;

pub use balance::{for_algorithm, Balancer, Load};
pub use health::{ServerSet, ServerStatus};

use arc_swap::ArcSwap;
use pool::Pool;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use webinfra_topology::LoadBalancer;

/// Reads the configuration anew (the topology file), or says why it cannot.
pub type ConfigSource = Arc<dyn Fn() -> Result<LoadBalancer, String> + Send + Sync>;

/// How the load balancer reloads: where the configuration comes from, and a
/// channel whose messages (SIGHUP) trigger a reload. `POST /reload` on the
/// admin address triggers one too.
pub struct Reload {
    /// Reads the new configuration.
    pub source: ConfigSource,
    /// One message per reload request.
    pub triggers: mpsc::Receiver<()>,
}

/// The running pools and the way to replace them; shared with the admin API.
pub(crate) struct Reloader {
    pub pools: Arc<ArcSwap<Pool>>,
    source: ConfigSource,
    lock: std::sync::Mutex<u64>,
}

impl Reloader {
    /// Reads the configuration and swaps in a new pool: the changes made, or why nothing changed.
    pub fn reload(&self) -> Result<(u64, Vec<String>), String> {
        let mut generation = self.lock.lock().expect("reload lock");
        let new = (self.source)().inspect_err(|e| {
            tracing::error!("reload refused, the running configuration stays: {e}")
        })?;
        *generation += 1;
        Ok((*generation, reload(&self.pools, new)))
    }

    /// How many reloads succeeded.
    pub fn generation(&self) -> u64 {
        *self.lock.lock().expect("reload lock")
    }
}

/// Runs the load balancer: `listener` takes client traffic, `admin` answers
/// `/healthz`, `/stats`, `/metrics` and the operator API. Every configuration
/// sent on `reloads` replaces the servers, algorithm, health check and queue
/// without touching a client connection. Returns when `shutdown` resolves and
/// requests drained.
pub async fn run(
    listener: TcpListener,
    admin: TcpListener,
    config: LoadBalancer,
    reload: Reload,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let options = webinfra_proxy::ServeOptions {
        header_timeout: config.clients.header_timeout,
        keep_alive_timeout: config.clients.keep_alive_timeout,
        max_connections: config.clients.max_connections,
        send_timeout: config.clients.client_timeout,
    };
    tracing::info!(listen = %config.listen, servers = config.servers.len(), "load balancer started");
    let pools = Arc::new(ArcSwap::from_pointee(Pool::new(config, None)));
    let state = Arc::new(handler::State {
        pool: pools.clone(),
        retry_budget: Default::default(),
    });
    let reloader = Arc::new(Reloader {
        pools: pools.clone(),
        source: reload.source,
        lock: Default::default(),
    });
    let mut triggers = reload.triggers;
    let reload_task = tokio::spawn({
        let reloader = reloader.clone();
        async move {
            while triggers.recv().await.is_some() {
                let _ = reloader.reload();
            }
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin_task = tokio::spawn(admin::run(admin, reloader, stop_rx));
    webinfra_proxy::serve_with(
        listener,
        options,
        move |req, peer| handler::handle(state.clone(), req, peer),
        shutdown,
    )
    .await;
    reload_task.abort();
    let _ = stop_tx.send(true);
    let _ = admin_task.await;
    tracing::info!("load balancer stopped");
}

/// Swaps in the pool for `new`; settings that need new listeners are kept and logged.
fn reload(pools: &ArcSwap<Pool>, mut new: LoadBalancer) -> Vec<String> {
    let old = pools.load_full();
    if new.listen != old.config.listen || new.admin != old.config.admin {
        tracing::warn!(
            "reload: listen and admin addresses change only at a restart; keeping {} and {}",
            old.config.listen,
            old.config.admin
        );
        new.listen = old.config.listen;
        new.admin = old.config.admin;
    }
    let fixed = (
        new.clients.max_connections,
        new.clients.header_timeout,
        new.clients.keep_alive_timeout,
        new.clients.client_timeout,
    );
    let running = (
        old.config.clients.max_connections,
        old.config.clients.header_timeout,
        old.config.clients.keep_alive_timeout,
        old.config.clients.client_timeout,
    );
    let mut changes = pool::describe_change(&old.config, &new);
    if fixed != running {
        changes.push("max_connections, header_timeout_ms, keep_alive_timeout_ms and client_timeout_ms change only at a restart: not applied".into());
        new.clients.max_connections = running.0;
        new.clients.header_timeout = running.1;
        new.clients.keep_alive_timeout = running.2;
        new.clients.client_timeout = running.3;
    }
    let pool = Pool::new(new, Some(&old));
    pools.store(Arc::new(pool));
    if changes.is_empty() {
        tracing::info!("reload: configuration unchanged");
    } else {
        tracing::info!(changes = %changes.join("; "), "reload: new configuration in use");
    }
    changes
}
