//! One generation of the load balancer's configuration: a [`Group`] of
//! servers per pool (the default one, and one per `[[load_balancer.pool]]`),
//! each with its servers' health, its algorithm and one upstream client per
//! server, and the rule that routes a request to one of them
//! ([`crate::route`]).
//!
//! A reload builds a new generation next to the old one and swaps it in: new
//! requests take the new one, requests in flight finish on the one they
//! started with, and the client connections are never touched. Servers that
//! keep their pool, name and address keep their health, operator state,
//! counters and pooled upstream connections.

use crate::error_pages::ErrorPages;
use crate::rate_limit::RateLimiter;
use crate::route;
use crate::{for_algorithm, Balancer, ServerSet};
use std::sync::Arc;
use webinfra_proxy::{Upstream, UpstreamClient};
use webinfra_topology::{Backend, LoadBalancer, ServerPool};

/// The servers and how to reach them, as of one load of the topology.
pub struct Pool {
    /// The configuration this pool was built from.
    pub config: LoadBalancer,
    /// The server groups: the default one (the servers outside any
    /// `[[load_balancer.pool]]`, named `default`) first, then each pool in
    /// file order.
    pub groups: Vec<Group>,
    /// Requests per client address, when limited (kept across a reload
    /// that does not change it).
    pub rate_limiter: Option<Arc<RateLimiter>>,
    /// The operator's bodies for the load balancer's own answers.
    pub error_pages: ErrorPages,
}

/// One pool's servers: their health, the algorithm, one upstream client
/// per server, and which requests the pool takes.
pub struct Group {
    /// The pool's name (`default` for the servers outside any pool).
    pub name: String,
    /// What it takes (empty for the default group, which takes the rest).
    takes: route::Takes,
    /// The servers and their health.
    pub servers: Arc<ServerSet>,
    /// Picks a server per request.
    pub balancer: Box<dyn Balancer>,
    /// The algorithm `balancer` runs.
    pub algorithm: webinfra_topology::Algorithm,
    /// One client per server (index as in `servers`), with its timeouts.
    pub clients: Vec<UpstreamClient>,
    /// The servers as configured (index as in `servers`).
    backends: Vec<Backend>,
    checks: tokio::task::JoinHandle<()>,
}

impl Pool {
    /// Builds the pool for `config` with its error pages (read from the
    /// files it names), taking over from `previous` what a reload keeps.
    pub fn new(config: LoadBalancer, previous: Option<&Pool>, error_pages: ErrorPages) -> Pool {
        let groups = pools_of(&config)
            .into_iter()
            .map(|spec| {
                let old = previous.and_then(|p| p.groups.iter().find(|g| g.name == spec.name));
                Group::new(spec, &config, old)
            })
            .collect();
        let rate_limiter = config.rate_limit.map(|limit| {
            previous
                .and_then(|old| old.rate_limiter.clone())
                .filter(|old| old.config == limit)
                .unwrap_or_else(|| Arc::new(RateLimiter::new(limit)))
        });
        Pool {
            config,
            groups,
            rate_limiter,
            error_pages,
        }
    }

    /// The group for a request to `host` (its `Host`, perhaps with a port)
    /// and `target` (its path and query): the first pool that takes it, else
    /// the default group.
    pub fn route(&self, host: &[u8], target: &[u8]) -> &Group {
        self.groups[1..]
            .iter()
            .find(|g| g.takes.matches(host, target))
            .unwrap_or(&self.groups[0])
    }

    /// True when requests are routed (some `[[load_balancer.pool]]`): else
    /// every request goes to the default group.
    pub fn routed(&self) -> bool {
        self.groups.len() > 1
    }

    /// The group holding the server named `name`, if any.
    pub fn group_of(&self, name: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.servers.index_of(name).is_some())
    }

    /// `next` took over: this pool's health checks stop now. Requests still
    /// on this one finish on it, and a keep-alive connection may hold it
    /// until its next request, but its servers are no longer this pool's
    /// to watch (a removed server is not probed any more, a kept one not
    /// twice); what `next` learns of them is what requests still here go by
    /// ([`ServerSet::gone`]). A group whose pool the reload removed keeps
    /// no successor: its servers are never "gone" for the requests on them.
    pub fn retire(&self, next: &Pool) {
        for g in &self.groups {
            g.checks.abort();
            if let Some(n) = next.groups.iter().find(|n| n.name == g.name) {
                g.servers.hand_over(n.servers.clone());
            }
        }
    }
}

impl Group {
    fn new(spec: ServerPool, config: &LoadBalancer, previous: Option<&Group>) -> Group {
        let upstreams: Vec<Upstream> = spec
            .servers
            .iter()
            .map(|s| Upstream {
                name: s.name.clone(),
                addr: s.addr,
            })
            .collect();
        let mut servers = ServerSet::with_options(
            upstreams.clone(),
            spec.servers.iter().map(|s| s.weight).collect(),
            spec.servers.iter().map(|s| s.backup).collect(),
            spec.health_check.clone(),
        )
        .with_limits(
            spec.servers.iter().map(|s| s.limits.clone()).collect(),
            config.clients.max_queue,
            config.clients.queue_timeout,
        );
        if let Some(old) = previous {
            servers.inherit(&old.servers);
        }
        let clients = spec
            .servers
            .iter()
            .zip(&upstreams)
            .map(|(server, upstream)| {
                let same = previous.and_then(|old| {
                    let j = old.servers.upstreams.iter().position(|u| u == upstream)?;
                    let client = &old.clients[j];
                    let same = old.backends[j].limits == server.limits
                        && client.pipelines() == spec.pipelining;
                    same.then(|| client.clone())
                });
                same.unwrap_or_else(|| {
                    UpstreamClient::new(
                        server.limits.connect_timeout,
                        server.limits.response_timeout,
                    )
                    .pipelining(spec.pipelining)
                })
            })
            .collect();
        let servers = Arc::new(servers);
        let checks = servers.clone().spawn_checks();
        Group {
            name: spec.name,
            takes: route::Takes::new(spec.hosts, spec.paths),
            balancer: for_algorithm(spec.algorithm),
            algorithm: spec.algorithm,
            servers,
            clients,
            backends: spec.servers,
            checks,
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.checks.abort();
    }
}

/// Every pool of `config`, the default one (named `default`) first.
pub fn pools_of(config: &LoadBalancer) -> Vec<ServerPool> {
    let default = ServerPool {
        name: "default".into(),
        hosts: Vec::new(),
        paths: Vec::new(),
        algorithm: config.algorithm,
        health_check: config.health_check.clone(),
        servers: config.servers.clone(),
        pipelining: config.pipelining,
    };
    std::iter::once(default)
        .chain(config.pools.iter().cloned())
        .collect()
}

/// What a reload changed, for the log and the `reload` answer.
pub fn describe_change(old: &LoadBalancer, new: &LoadBalancer) -> Vec<String> {
    let mut changes = Vec::new();
    // Every server with its pool's name: one moved to another pool has changed.
    let all = |c: &LoadBalancer| -> Vec<(String, Backend)> {
        pools_of(c)
            .into_iter()
            .flat_map(|p| p.servers.into_iter().map(move |s| (p.name.clone(), s)))
            .collect()
    };
    let (old_servers, new_servers) = (all(old), all(new));
    for s in &new_servers {
        match old_servers.iter().find(|o| o.1.name == s.1.name) {
            None => changes.push(format!("added server {} ({})", s.1.name, s.1.addr)),
            Some(o) if o != s => changes.push(format!("changed server {}", s.1.name)),
            Some(_) => {}
        }
    }
    for o in &old_servers {
        if !new_servers.iter().any(|s| s.1.name == o.1.name) {
            changes.push(format!("removed server {}", o.1.name));
        }
    }
    if old.algorithm != new.algorithm {
        changes.push(format!(
            "algorithm {} -> {}",
            old.algorithm.name(),
            new.algorithm.name()
        ));
    }
    if old.health_check != new.health_check {
        changes.push("changed health check".into());
    }
    let pool_rules = |p: &ServerPool| {
        (
            p.hosts.clone(),
            p.paths.clone(),
            p.algorithm,
            p.health_check.clone(),
        )
    };
    for p in &new.pools {
        match old.pools.iter().find(|o| o.name == p.name) {
            None => changes.push(format!("added pool {}", p.name)),
            Some(o) if pool_rules(o) != pool_rules(p) => {
                changes.push(format!("changed pool {}", p.name))
            }
            Some(_) => {}
        }
    }
    for o in &old.pools {
        if !new.pools.iter().any(|p| p.name == o.name) {
            changes.push(format!("removed pool {}", o.name));
        }
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
    if old.response_headers != new.response_headers {
        changes.push("changed response_headers".into());
    }
    if old.request_headers != new.request_headers {
        changes.push("changed request_headers".into());
    }
    if old.error_pages != new.error_pages {
        changes.push("changed error_pages".into());
    }
    if old.access_log != new.access_log {
        changes.push(format!("access_log = {}", new.access_log));
    }
    if old.fast_lane != new.fast_lane {
        changes.push(format!("fast_lane = {}", new.fast_lane));
    }
    if old.pipelining != new.pipelining {
        changes.push(format!("pipelining = {}", new.pipelining));
    }
    if let (Some(o), Some(n)) = (&old.tls, &new.tls) {
        if o.redirect_http != n.redirect_http {
            changes.push(format!("redirect_http = {}", n.redirect_http));
        }
        if o.hsts_max_age_s != n.hsts_max_age_s {
            changes.push(match n.hsts_max_age_s {
                Some(s) => format!("hsts_max_age_s = {s}"),
                None => "hsts_max_age_s removed (no Strict-Transport-Security)".into(),
            });
        }
        if (&o.certificate, &o.key, &o.more) != (&n.certificate, &n.key, &n.more) {
            changes.push("changed certificates".into());
        }
    }
    changes
}

/// Servers whose weight an operator set at run time (`lb weight`) and a
/// reload puts back to the file's: said, not done silently.
pub fn weights_reset(old: &Pool, new: &LoadBalancer) -> Vec<String> {
    let configured: Vec<(String, Backend)> = pools_of(new)
        .into_iter()
        .flat_map(|p| p.servers.into_iter().map(move |s| (p.name.clone(), s)))
        .collect();
    let mut said = Vec::new();
    for g in &old.groups {
        for (i, backend) in g.backends.iter().enumerate() {
            let running = crate::balance::Load::weight(&*g.servers, i);
            if running == backend.weight {
                continue;
            }
            if let Some((_, b)) = configured.iter().find(|(_, b)| b.name == backend.name) {
                said.push(format!(
                    "server {}: weight {running} (set at run time) back to the file's {}",
                    b.name, b.weight
                ));
            }
        }
    }
    said
}

#[cfg(test)]
mod tests {
    use super::describe_change;
    use webinfra_topology::{LoadBalancer, Topology};

    fn lb(extra_lb: &str, tls: &str) -> LoadBalancer {
        let src = format!(
            "[[host]]\nname = \"lb-01\"\naddress = \"127.0.0.1\"\n\n[load_balancer]\nhost = \"lb-01\"\nport = 8080\nadmin_port = 8404\n{extra_lb}\n\n[[load_balancer.backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n\n[load_balancer.tls]\nport = 8443\n{tls}\n"
        );
        Topology::parse_str(&src, "t.toml")
            .unwrap()
            .load_balancer
            .unwrap()
    }

    #[test]
    fn a_reload_names_algorithms_as_the_file_does_and_sees_tls_settings() {
        let changes = describe_change(&lb("", ""), &lb("algorithm = \"least-connections\"", ""));
        assert_eq!(changes, ["algorithm round-robin -> least-connections"]);
        let changes = describe_change(
            &lb("", ""),
            &lb("", "redirect_http = true\nhsts_max_age_s = 600"),
        );
        assert_eq!(changes, ["redirect_http = true", "hsts_max_age_s = 600"]);
        assert!(describe_change(&lb("", ""), &lb("", "")).is_empty());
    }
}
