//! One generation of the load balancer's configuration: the servers with
//! their health, the algorithm and one upstream client per server.
//!
//! A reload builds a new pool next to the old one and swaps it in: new
//! requests take the new pool, requests in flight finish on the one they
//! started with, and the client connections are never touched. Servers that
//! keep their name and address keep their health, operator state, counters
//! and pooled upstream connections.

use crate::rate_limit::RateLimiter;
use crate::{for_algorithm, Balancer, ServerSet};
use std::sync::Arc;
use webinfra_proxy::{Upstream, UpstreamClient};
use webinfra_topology::LoadBalancer;

/// The servers and how to reach them, as of one load of the topology.
pub struct Pool {
    /// The configuration this pool was built from.
    pub config: LoadBalancer,
    /// The servers and their health.
    pub servers: Arc<ServerSet>,
    /// Picks a server per request.
    pub balancer: Box<dyn Balancer>,
    /// One client per server (index as in `servers`), with its timeouts.
    pub clients: Vec<UpstreamClient>,
    /// Requests per client address, when limited (kept across a reload
    /// that does not change it).
    pub rate_limiter: Option<Arc<RateLimiter>>,
    checks: tokio::task::JoinHandle<()>,
}

impl Pool {
    /// Builds the pool for `config`, taking over from `previous` what a reload keeps.
    pub fn new(config: LoadBalancer, previous: Option<&Pool>) -> Pool {
        let upstreams: Vec<Upstream> = config
            .servers
            .iter()
            .map(|s| Upstream {
                name: s.name.clone(),
                addr: s.addr,
            })
            .collect();
        let mut servers = ServerSet::with_options(
            upstreams.clone(),
            config.servers.iter().map(|s| s.weight).collect(),
            config.servers.iter().map(|s| s.backup).collect(),
            config.health_check.clone(),
        )
        .with_limits(
            config.servers.iter().map(|s| s.limits.clone()).collect(),
            config.clients.max_queue,
            config.clients.queue_timeout,
        );
        if let Some(old) = previous {
            servers.inherit(&old.servers);
        }
        let clients = config
            .servers
            .iter()
            .zip(&upstreams)
            .map(|(server, upstream)| {
                let same = previous.and_then(|old| {
                    let j = old.servers.upstreams.iter().position(|u| u == upstream)?;
                    (old.config.servers[j].limits == server.limits).then(|| old.clients[j].clone())
                });
                same.unwrap_or_else(|| {
                    UpstreamClient::new(
                        server.limits.connect_timeout,
                        server.limits.response_timeout,
                    )
                })
            })
            .collect();
        let rate_limiter = config.rate_limit.map(|limit| {
            previous
                .and_then(|old| old.rate_limiter.clone())
                .filter(|old| old.config == limit)
                .unwrap_or_else(|| Arc::new(RateLimiter::new(limit)))
        });
        let servers = Arc::new(servers);
        let checks = servers.clone().spawn_checks();
        Pool {
            balancer: for_algorithm(config.algorithm),
            config,
            servers,
            clients,
            rate_limiter,
            checks,
        }
    }

    /// `next` took over: this pool's health checks stop now. Requests still
    /// on this one finish on it, and a keep-alive connection may hold it
    /// until its next request, but its servers are no longer this pool's
    /// to watch (a removed server is not probed any more, a kept one not
    /// twice); what `next` learns of them is what requests still here go by
    /// ([`ServerSet::gone`]).
    pub fn retire(&self, next: &Pool) {
        self.checks.abort();
        self.servers.hand_over(next.servers.clone());
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.checks.abort();
    }
}

/// What a reload changed, for the log and the `reload` answer.
pub fn describe_change(old: &LoadBalancer, new: &LoadBalancer) -> Vec<String> {
    let mut changes = Vec::new();
    for s in &new.servers {
        match old.servers.iter().find(|o| o.name == s.name) {
            None => changes.push(format!("added server {} ({})", s.name, s.addr)),
            Some(o) if o != s => changes.push(format!("changed server {}", s.name)),
            Some(_) => {}
        }
    }
    for o in &old.servers {
        if !new.servers.iter().any(|s| s.name == o.name) {
            changes.push(format!("removed server {}", o.name));
        }
    }
    if old.algorithm != new.algorithm {
        changes.push(format!(
            "algorithm {:?} -> {:?}",
            old.algorithm, new.algorithm
        ));
    }
    if old.health_check != new.health_check {
        changes.push("changed health check".into());
    }
    if old.clients != new.clients {
        changes.push("changed client limits".into());
    }
    if old.sticky_cookie != new.sticky_cookie {
        changes.push(format!("sticky_cookie = {:?}", new.sticky_cookie));
    }
    if old.rate_limit != new.rate_limit {
        changes.push(match new.rate_limit {
            Some(r) => format!("rate_limit = {}/s, burst {}", r.per_second, r.burst),
            None => "rate_limit removed".into(),
        });
    }
    if old.access_log != new.access_log {
        changes.push(format!("access_log = {}", new.access_log));
    }
    changes
}
