//! The load balancer role (HAProxy's place in the design).
//!
//! Clients connect to the site address; each request gets an `X-Request-Id`,
//! `X-Forwarded-For` and `X-Forwarded-Proto`, then goes to the next healthy
//! server picked by a [`Balancer`]. A failed connect is retried on the next
//! server, so losing a server fails no client request. [`health`] runs the
//! active checks in the background and publishes which servers are up; the
//! request path only reads that snapshot.

mod access_log;
mod admin;
pub mod admission;
mod attempts;
pub mod balance;
pub mod error_pages;
mod fast;
mod handler;
pub mod health;
pub mod pool;
pub mod rate_limit;
pub mod retry;
pub mod route;
pub mod stats;
pub mod sticky;
pub mod tls;
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

/// Where the load balancer listens: the site, HTTPS with its certificate
/// when configured, and the admin address.
pub struct Listeners {
    /// Plain HTTP clients.
    pub site: TcpListener,
    /// HTTPS clients, and the certificate ([`tls::Tls::load`]).
    pub tls: Option<(TcpListener, tls::Tls)>,
    /// The admin API.
    pub admin: TcpListener,
}

/// The running pools and the way to replace them; shared with the admin API.
pub(crate) struct Reloader {
    pub pools: Arc<ArcSwap<Pool>>,
    source: ConfigSource,
    lock: std::sync::Mutex<u64>,
    tls: Option<Arc<tls::Tls>>,
}

impl Reloader {
    /// Reads the configuration and swaps in a new pool: the changes made, or why nothing changed.
    pub fn reload(&self) -> Result<(u64, Vec<String>), String> {
        let mut generation = self.lock.lock().expect("reload lock");
        let refused =
            |e: &String| tracing::error!("reload refused, the running configuration stays: {e}");
        let new = (self.source)().inspect_err(refused)?;
        // A page that cannot be read refuses the whole reload too.
        let pages = error_pages::ErrorPages::load(&new).inspect_err(refused)?;
        // A certificate that cannot be used refuses the whole reload.
        let certificate = match (&self.tls, &new.tls) {
            (Some(running), Some(t)) => running.reload(t).inspect_err(refused)?,
            _ => None,
        };
        *generation += 1;
        let mut changes = reload(&self.pools, new, pages);
        changes.extend(certificate);
        Ok((*generation, changes))
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
    listeners: Listeners,
    config: LoadBalancer,
    reload: Reload,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let options = webinfra_proxy::ServeOptions {
        header_timeout: config.clients.header_timeout,
        keep_alive_timeout: config.clients.keep_alive_timeout,
        max_connections: config.clients.max_connections,
        send_timeout: config.clients.client_timeout,
        stats: Default::default(),
    };
    tracing::info!(listen = %config.listen, servers = config.servers.len(), "load balancer started");
    // `webinfra run` and `check` refuse a page that cannot be read; one
    // gone since is logged and left out.
    let pages = error_pages::ErrorPages::load(&config).unwrap_or_else(|e| {
        tracing::error!("{e}: the built-in answer is used");
        Default::default()
    });
    let pools = Arc::new(ArcSwap::from_pointee(Pool::new(config, None, pages)));
    let state = Arc::new(handler::State {
        pool: pools.clone(),
        retry_budget: Default::default(),
    });
    let Listeners { site, tls, admin } = listeners;
    let (tls_listener, tls) = match tls {
        Some((l, t)) => (Some(l), Some(Arc::new(t))),
        None => (None, None),
    };
    let tls_options = webinfra_proxy::ServeOptions {
        stats: Default::default(),
        ..options.clone()
    };
    let mut counted = vec![stats::Listener::new("http", &site, &options.stats)];
    if let Some(l) = &tls_listener {
        counted.push(stats::Listener::new("https", l, &tls_options.stats));
    }
    let reloader = Arc::new(Reloader {
        pools: pools.clone(),
        source: reload.source,
        lock: Default::default(),
        tls: tls.clone(),
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
    let admin_task = tokio::spawn(admin::run(admin, reloader, counted, stop_rx));
    let state_for_lane = state.clone();
    let handle = move |req, peer| handler::handle(state.clone(), req, peer);
    // HTTPS stops taking connections when plain HTTP does.
    let (tls_stop, tls_stopped) = tokio::sync::watch::channel(false);
    let tls_task = match (tls_listener, tls) {
        (Some(l), Some(t)) => {
            tracing::info!(listen = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "HTTPS on");
            Some(tokio::spawn(webinfra_proxy::serve_tls(
                l,
                tls_options,
                t.config(),
                handle.clone(),
                fast::Fast::new(state_for_lane.clone()),
                webinfra_proxy::serve::until_true(tls_stopped),
            )))
        }
        _ => None,
    };
    let shutdown = async move {
        shutdown.await;
        let _ = tls_stop.send(true);
    };
    let lane = fast::Fast::new(state_for_lane);
    webinfra_proxy::serve::serve_with_lane(site, options, handle, lane, shutdown).await;
    if let Some(t) = tls_task {
        let _ = t.await;
    }
    reload_task.abort();
    let _ = stop_tx.send(true);
    let _ = admin_task.await;
    tracing::info!("load balancer stopped");
}

/// Swaps in the pool for `new`; settings that need new listeners are kept and logged.
fn reload(
    pools: &ArcSwap<Pool>,
    mut new: LoadBalancer,
    pages: error_pages::ErrorPages,
) -> Vec<String> {
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
    changes.extend(pool::weights_reset(&old, &new));
    let https = |c: &LoadBalancer| c.tls.as_ref().map(|t| t.listen);
    if https(&new) != https(&old.config) {
        changes.push("HTTPS is turned on or off, or moved, only at a restart: not applied".into());
        new.tls = old.config.tls.clone();
    }
    if fixed != running {
        changes.push("max_connections, header_timeout_ms, keep_alive_timeout_ms and client_timeout_ms change only at a restart: not applied".into());
        new.clients.max_connections = running.0;
        new.clients.header_timeout = running.1;
        new.clients.keep_alive_timeout = running.2;
        new.clients.client_timeout = running.3;
    }
    let pool = Arc::new(Pool::new(new, Some(&old), pages));
    pools.store(pool.clone());
    old.retire(&pool);
    if changes.is_empty() {
        tracing::info!("reload: configuration unchanged");
    } else {
        tracing::info!(changes = %changes.join("; "), "reload: new configuration in use");
    }
    changes
}
