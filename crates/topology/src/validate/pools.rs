//! Servers given by address (`[[load_balancer.backend]]`), the algorithm
//! that picks among them, and the pools that take the requests they match
//! (`[[load_balancer.pool]]`, HAProxy's `use_backend`): a request goes to
//! the first pool, in file order, whose `hosts` and `paths` it matches, and
//! to the default pool (the servers at the top) when none does.

use super::lb::{health_check, server_limits};
use super::{valid_name, Checker};
use crate::model::*;
use crate::raw::*;
use std::net::SocketAddr;

/// The algorithm `raw` names (ours or HAProxy's), round robin when absent.
pub(super) fn algorithm(c: &mut Checker, raw: Option<&S<String>>, key: &str) -> Algorithm {
    let Some(a) = raw else {
        return Algorithm::RoundRobin;
    };
    let all = Algorithm::ALL.iter().chain(Algorithm::HAPROXY.iter());
    if let Some((_, alg)) = all.into_iter().find(|(n, _)| *n == a.get_ref().as_str()) {
        return *alg;
    }
    let known: Vec<&str> = Algorithm::ALL.iter().map(|(n, _)| *n).collect();
    c.error(
        a.span(),
        key,
        format!(
            "unknown algorithm `{}` (known: {}; HAProxy's roundrobin, static-rr, leastconn, source and random work too)",
            a.get_ref(),
            known.join(", ")
        ),
    );
    Algorithm::RoundRobin
}

/// Where a server may not be: the load balancer's own listeners.
pub(super) struct Own(pub Vec<SocketAddr>);

/// Adds the servers of `list` (keys under `prefix`, e.g.
/// `load_balancer.backend`) to `servers`; `taken` holds every server name
/// of every pool so far (names are the admin API's handle: unique).
pub(super) fn backends(
    c: &mut Checker,
    list: &[RawBackend],
    prefix: &str,
    (defaults, own): (&ServerLimits, &Own),
    taken: &mut Vec<String>,
    servers: &mut Vec<Backend>,
) {
    let key = |k: &str| format!("{prefix}.{k}");
    for b in list {
        let name = b.name.get_ref();
        let addr = match backend_address(b.address.get_ref()) {
            Ok(addr) => addr,
            Err(why) => {
                c.error(b.address.span(), &key("address"), why);
                continue;
            }
        };
        if !valid_name(name) {
            c.error(
                b.name.span(),
                &key("name"),
                format!("`{name}` is not a valid name (letters, digits, '-', '_')"),
            );
        } else if taken.contains(name) {
            c.error(
                b.name.span(),
                &key("name"),
                format!("duplicate server name `{name}`"),
            );
        } else if own.0.contains(&addr) {
            c.error(
                b.address.span(),
                &key("address"),
                format!("{addr} is the load balancer's own listener (requests would loop)"),
            );
        } else if let Some(other) = servers.iter().find(|s| s.addr == addr) {
            let other = other.name.clone();
            c.error(
                b.address.span(),
                &key("address"),
                format!("{addr} is already server `{other}`"),
            );
        } else {
            let weight = b.weight.as_ref().map_or(1, |w| *w.get_ref());
            if let Some(w) = b
                .weight
                .as_ref()
                .filter(|w| !(1..=256).contains(w.get_ref()))
            {
                c.error(w.span(), &key("weight"), "must be between 1 and 256".into());
            }
            taken.push(name.clone());
            servers.push(Backend {
                name: name.clone(),
                addr,
                weight,
                backup: b.backup.as_ref().is_some_and(|x| *x.get_ref()),
                limits: server_limits(
                    c,
                    defaults.clone(),
                    [
                        (&b.connect_timeout_ms, &key("connect_timeout_ms")),
                        (&b.response_timeout_ms, &key("response_timeout_ms")),
                        (&b.max_connections, &key("max_connections")),
                        (&b.slow_start_ms, &key("slow_start_ms")),
                    ],
                ),
            });
        }
    }
}

/// Reports a pool whose servers are all backups (nothing would serve while they are all up).
pub(super) fn all_backup(
    c: &mut Checker,
    servers: &[Backend],
    span: std::ops::Range<usize>,
    key: &str,
) {
    if servers.iter().all(|s| s.backup) && !servers.is_empty() {
        c.error(
            span,
            key,
            "every server is a backup: mark at least one `backup = false`".into(),
        );
    }
}

/// The `[[load_balancer.pool]]` entries. A pool's health check starts from
/// the load balancer's (`base`); its own `[load_balancer.pool.health_check]`
/// keys replace those they name; its `pipelining`, when absent, is the load
/// balancer's.
pub(super) fn pools(
    c: &mut Checker,
    list: &[RawPool],
    (defaults, own): (&ServerLimits, &Own),
    (base, pipelining): (&HealthCheck, bool),
    taken: &mut Vec<String>,
) -> Vec<ServerPool> {
    let mut pools: Vec<ServerPool> = Vec::new();
    for p in list {
        let name = p.name.get_ref();
        if !valid_name(name) {
            c.error(
                p.name.span(),
                "load_balancer.pool.name",
                format!("`{name}` is not a valid name (letters, digits, '-', '_')"),
            );
        } else if name == "default" || pools.iter().any(|q| q.name == *name) {
            let why = if name == "default" {
                "`default` is the name of the servers outside any pool".to_string()
            } else {
                format!("duplicate pool name `{name}`")
            };
            c.error(p.name.span(), "load_balancer.pool.name", why);
        }
        let hosts = strings(
            c,
            p.hosts.as_ref(),
            "load_balancer.pool.hosts",
            host_pattern,
        );
        let paths = strings(c, p.paths.as_ref(), "load_balancer.pool.paths", path_prefix);
        if p.hosts.is_none() && p.paths.is_none() {
            c.error(
                p.name.span(),
                "load_balancer.pool",
                format!(
                    "pool `{name}` names no `hosts` and no `paths`: it would take every request"
                ),
            );
        }
        let mut servers = Vec::new();
        backends(
            c,
            &p.backends,
            "load_balancer.pool.backend",
            (defaults, own),
            taken,
            &mut servers,
        );
        if p.backends.is_empty() {
            c.error(
                p.name.span(),
                "load_balancer.pool",
                format!("pool `{name}` has no servers: add [[load_balancer.pool.backend]] entries after it"),
            );
        }
        all_backup(c, &servers, p.name.span(), "load_balancer.pool");
        if let Some(earlier) = pools.iter().find(|q| takes_all(q, &hosts, &paths)) {
            c.error(
                p.name.span(),
                "load_balancer.pool",
                format!(
                    "pool `{name}` can never be chosen: pool `{}` before it takes every request it would (move it first, or narrow `{}`)",
                    earlier.name, earlier.name
                ),
            );
        }
        pools.push(ServerPool {
            name: name.clone(),
            hosts,
            paths,
            algorithm: algorithm(c, p.algorithm.as_ref(), "load_balancer.pool.algorithm"),
            health_check: health_check(
                c,
                p.health_check.as_ref(),
                base,
                "load_balancer.pool.health_check",
            ),
            servers,
            pipelining: p.pipelining.as_ref().map_or(pipelining, |a| *a.get_ref()),
        });
    }
    pools
}

/// True when `earlier` takes every request a pool of `hosts` and `paths`
/// would (empty lists: any), so that pool, coming after it, is never chosen.
fn takes_all(earlier: &ServerPool, hosts: &[String], paths: &[String]) -> bool {
    let host_covered = |h: &String| {
        earlier.hosts.iter().any(|e| match e.strip_prefix('*') {
            // `*.example.com` covers `a.example.com` and `*.a.example.com`.
            Some(suffix) => match h.strip_prefix('*') {
                Some(under) => under.ends_with(suffix),
                None => h.ends_with(suffix),
            },
            None => e == h,
        })
    };
    let hosts_ok =
        earlier.hosts.is_empty() || (!hosts.is_empty() && hosts.iter().all(host_covered));
    let paths_ok = earlier.paths.is_empty()
        || (!paths.is_empty()
            && paths
                .iter()
                .all(|p| earlier.paths.iter().any(|e| p.starts_with(e))));
    hosts_ok && paths_ok
}

/// The strings of a list, each checked by `valid` (which may normalise it).
fn strings(
    c: &mut Checker,
    raw: Option<&S<Vec<S<String>>>>,
    key: &str,
    valid: fn(&str) -> Result<String, String>,
) -> Vec<String> {
    let Some(list) = raw else { return Vec::new() };
    if list.get_ref().is_empty() {
        c.error(
            list.span(),
            key,
            "is empty: name at least one, or leave the key out".into(),
        );
    }
    let mut out = Vec::new();
    for s in list.get_ref() {
        match valid(s.get_ref()) {
            Ok(v) => out.push(v),
            Err(why) => c.error(s.span(), key, why),
        }
    }
    out
}

/// A host name a pool takes, lowercased: `www.example.com`, or
/// `*.example.com` for any name under it.
fn host_pattern(s: &str) -> Result<String, String> {
    let name = s.strip_prefix("*.").unwrap_or(s);
    let ok = !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{s}` is not a host name (e.g. api.example.com, or *.example.com for any name under it; no port)"
        ))
    }
}

/// A path prefix a pool takes: starts with `/`, no query, no spaces.
fn path_prefix(s: &str) -> Result<String, String> {
    let ok = s.starts_with('/')
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a path prefix (it starts with '/', e.g. /api/; no query, no spaces)"
        ))
    }
}

/// A backend's address: `IP:PORT`, or `NAME:PORT` resolved once, now (as
/// HAProxy resolves server names at startup; a reload resolves again).
fn backend_address(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let example = "write IP:PORT or HOST:PORT, e.g. 127.0.0.1:8080";
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return match addr.port() {
            0 => Err(format!("`{text}`: port 0 is not a server's port")),
            _ => Ok(addr),
        };
    }
    if text.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("`{text}` has no port: {example}"));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("`{text}` has no port: {example}"));
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    if host.is_empty() || host.contains(['[', ']', ':', '/', ' ']) || !port_ok {
        return Err(format!("`{text}` is not an address: {example}"));
    }
    let mut found = (host, port.parse::<u16>().unwrap_or(0))
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?;
    let all: Vec<SocketAddr> = found.by_ref().collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .copied()
        .ok_or_else(|| format!("`{host}` resolves to no address"))
}
