//! Checks a whole raw topology and builds the typed one, collecting every error.

use crate::diagnostic::{Diagnostic, TopologyError};
use crate::model::*;
use crate::raw::*;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Collects diagnostics while validation walks the file.
struct Checker<'a> {
    src: &'a str,
    file: &'a str,
    errors: Vec<Diagnostic>,
    hosts: HashMap<String, IpAddr>,
    /// address:port -> the key that claimed it first.
    listeners: HashMap<SocketAddr, String>,
    /// Addresses given to more than one host (already reported; listener
    /// clashes on them would only repeat that error).
    shared_addresses: std::collections::HashSet<IpAddr>,
}

impl Checker<'_> {
    fn error(&mut self, span: std::ops::Range<usize>, key: &str, message: String) {
        self.errors
            .push(Diagnostic::at(self.src, self.file, span, key, message));
    }

    /// Resolves a host reference, reporting unknown names.
    fn host_ref(&mut self, name: &S<String>, key: &str) -> Option<IpAddr> {
        match self.hosts.get(name.get_ref()) {
            Some(ip) => Some(*ip),
            None => {
                let known: Vec<&str> = self.hosts.keys().map(String::as_str).collect();
                let mut known = known;
                known.sort();
                self.error(
                    name.span(),
                    key,
                    format!(
                        "no host named `{}` (hosts: {})",
                        name.get_ref(),
                        known.join(", ")
                    ),
                );
                None
            }
        }
    }

    /// Claims `ip:port` for `key`, reporting a second listener on the same address.
    fn listen(&mut self, ip: IpAddr, port: &S<u16>, key: &str, owner: &str) -> SocketAddr {
        let addr = SocketAddr::new(ip, *port.get_ref());
        if *port.get_ref() == 0 {
            self.error(port.span(), key, "port 0 is not a fixed port".into());
        }
        let claim = format!("{key} ({owner})");
        if self.shared_addresses.contains(&ip) {
            return addr;
        }
        if let Some(first) = self.listeners.get(&addr).cloned() {
            self.error(
                port.span(),
                key,
                format!("{addr} is already a listener of {first}"),
            );
        } else {
            self.listeners.insert(addr, claim);
        }
        addr
    }

    /// Resolves a list of host names, reporting unknown and repeated ones.
    fn host_list(&mut self, list: &S<Vec<S<String>>>, key: &str) -> Vec<String> {
        if list.get_ref().is_empty() {
            self.error(list.span(), key, "must name at least one host".into());
        }
        let mut out: Vec<String> = Vec::new();
        for name in list.get_ref() {
            if out.contains(name.get_ref()) {
                self.error(
                    name.span(),
                    key,
                    format!("host `{}` is listed twice", name.get_ref()),
                );
                continue;
            }
            if self.host_ref(name, key).is_some() {
                out.push(name.get_ref().clone());
            }
        }
        out
    }
}

pub fn validate(raw: RawTopology, src: &str, file: &str) -> Result<Topology, TopologyError> {
    let mut c = Checker {
        src,
        file,
        errors: Vec::new(),
        hosts: HashMap::new(),
        listeners: HashMap::new(),
        shared_addresses: Default::default(),
    };
    let hosts = hosts(&mut c, &raw.hosts);
    let site = raw
        .site
        .map(|s| s.name.into_inner())
        .unwrap_or_else(|| "www.foobar.com".into());
    // The monitor defaults to the load balancer's host: it must outlive the primary's.
    let lb_host = raw
        .load_balancer
        .as_ref()
        .map(|lb| lb.get_ref().host.get_ref().clone());
    let database = raw
        .database
        .as_ref()
        .and_then(|d| database(&mut c, d, lb_host.as_deref()));
    let app = raw.app.as_ref().map(|a| App {
        hosts: c.host_list(&a.get_ref().hosts, "app.hosts"),
        port: *a.get_ref().port.get_ref(),
    });
    if let Some(raw_app) = &raw.app {
        for h in app.iter().flat_map(|a| a.hosts.clone()) {
            let ip = c.hosts[&h];
            c.listen(ip, &raw_app.get_ref().port, "app.port", &h);
        }
        if raw.database.is_none() {
            c.error(
                raw_app.span(),
                "app",
                "the application needs a [database] section".into(),
            );
        }
    }
    let app_hosts: Vec<String> = raw
        .app
        .iter()
        .flat_map(|a| {
            a.get_ref()
                .hosts
                .get_ref()
                .iter()
                .map(|h| h.get_ref().clone())
        })
        .collect();
    let web = raw.web.as_ref().map(|w| web(&mut c, w, &app_hosts));
    let load_balancer = raw
        .load_balancer
        .as_ref()
        .and_then(|lb| load_balancer(&mut c, lb.get_ref(), web.as_ref()));
    if c.errors.is_empty() {
        Ok(Topology {
            source: None,
            site,
            hosts,
            load_balancer,
            web,
            app,
            database,
        })
    } else {
        c.errors.sort_by_key(|d| (d.line, d.column));
        c.errors.dedup();
        Err(TopologyError {
            diagnostics: c.errors,
        })
    }
}

fn hosts(c: &mut Checker, raw: &[RawHost]) -> Vec<Host> {
    let mut out = Vec::new();
    let mut by_addr: HashMap<IpAddr, String> = HashMap::new();
    for h in raw {
        let name = h.name.get_ref();
        if !valid_name(name) {
            c.error(
                h.name.span(),
                "host.name",
                format!("`{name}` is not a valid host name (letters, digits, '-', '_')"),
            );
            continue;
        }
        if c.hosts.contains_key(name) {
            c.error(
                h.name.span(),
                "host.name",
                format!("duplicate host name `{name}`"),
            );
            continue;
        }
        let ip = *h.address.get_ref();
        if let Some(other) = by_addr.get(&ip) {
            c.error(
                h.address.span(),
                "host.address",
                format!("{ip} is already the address of host `{other}`"),
            );
            c.shared_addresses.insert(ip);
        }
        by_addr.insert(ip, name.clone());
        c.hosts.insert(name.clone(), ip);
        out.push(Host {
            name: name.clone(),
            address: ip,
        });
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
}

fn database(c: &mut Checker, raw: &S<RawDatabase>, lb_host: Option<&str>) -> Option<Database> {
    let d = raw.get_ref();
    let Some(primary) = &d.primary else {
        let (span, key) = match &d.replicas {
            Some(r) => (r.span(), "database.replicas"),
            None => (raw.span(), "database"),
        };
        c.error(
            span,
            key,
            "replicas need a primary: add `primary = \"<host>\"` to [database]".into(),
        );
        return None;
    };
    let mut names = vec![(primary.clone(), DbRole::Primary)];
    if let Some(replicas) = &d.replicas {
        for r in replicas.get_ref() {
            if names.iter().any(|(n, _)| n.get_ref() == r.get_ref()) {
                c.error(
                    r.span(),
                    "database.replicas",
                    format!("`{}` is already a database node", r.get_ref()),
                );
            } else {
                names.push((r.clone(), DbRole::Replica));
            }
        }
    }
    let mut nodes = Vec::new();
    for (i, (name, role)) in names.iter().enumerate() {
        let key = match role {
            DbRole::Primary => "database.primary",
            DbRole::Replica => "database.replicas",
        };
        if let Some(ip) = c.host_ref(name, key) {
            let sql = c.listen(ip, &d.port, "database.port", name.get_ref());
            let admin = c.listen(ip, &d.admin_port, "database.admin_port", name.get_ref());
            nodes.push(DbNode {
                name: name.get_ref().clone(),
                role: *role,
                sql,
                admin,
                server_id: i as u32 + 1,
            });
        }
    }
    let schema = d
        .schema
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| "foobar".into());
    if !valid_name(&schema) || schema.contains('-') {
        let span = d.schema.as_ref().map_or(raw.span(), |s| s.span());
        c.error(
            span,
            "database.schema",
            format!("`{schema}` is not a valid schema name (letters, digits, '_')"),
        );
    }
    let monitor_host = match &d.monitor_host {
        Some(h) => c
            .host_ref(h, "database.monitor_host")
            .map(|_| h.get_ref().clone()),
        None => Some(
            lb_host
                .filter(|h| c.hosts.contains_key(*h))
                .unwrap_or(primary.get_ref())
                .to_string(),
        ),
    };
    let default_port = toml::Spanned::new(raw.span(), 9105u16);
    let port = d.monitor_port.as_ref().unwrap_or(&default_port);
    let monitor = monitor_host.as_ref().and_then(|h| {
        let ip = *c.hosts.get(h)?;
        Some(c.listen(ip, port, "database.monitor_port", h))
    });
    let max_replica_lag = match &d.max_replica_lag_ms {
        Some(v) if *v.get_ref() == 0 => {
            c.error(
                v.span(),
                "database.max_replica_lag_ms",
                "must be greater than 0".into(),
            );
            Duration::from_secs(2)
        }
        Some(v) => Duration::from_millis(*v.get_ref()),
        None => Duration::from_secs(2),
    };
    let (Some(monitor_host), Some(monitor)) = (monitor_host, monitor) else {
        return None;
    };
    (nodes.len() == names.len()).then_some(Database {
        nodes,
        schema,
        monitor_host,
        monitor,
        max_replica_lag,
    })
}

fn web(c: &mut Checker, raw: &S<RawWeb>, app_hosts: &[String]) -> Web {
    let w = raw.get_ref();
    let hosts = c.host_list(&w.hosts, "web.hosts");
    for h in &hosts {
        let ip = c.hosts[h];
        c.listen(ip, &w.port, "web.port", h);
    }
    for (name, raw_name) in hosts.iter().zip(w.hosts.get_ref()) {
        if !app_hosts.contains(name) {
            c.error(
                raw_name.span(),
                "web.hosts",
                format!(
                    "the web server on `{name}` proxies to the application on the same host, \
                     but `{name}` is not in app.hosts"
                ),
            );
        }
    }
    Web {
        hosts,
        port: *w.port.get_ref(),
        static_dir: w.static_dir.as_ref().map(|s| PathBuf::from(s.get_ref())),
    }
}

fn load_balancer(c: &mut Checker, lb: &RawLoadBalancer, web: Option<&Web>) -> Option<LoadBalancer> {
    let ip = c.host_ref(&lb.host, "load_balancer.host")?;
    let listen = c.listen(ip, &lb.port, "load_balancer.port", lb.host.get_ref());
    let admin = c.listen(
        ip,
        &lb.admin_port,
        "load_balancer.admin_port",
        lb.host.get_ref(),
    );
    let algorithm = match lb.algorithm.as_ref() {
        None => Algorithm::RoundRobin,
        Some(a) => match Algorithm::ALL
            .iter()
            .find(|(n, _)| *n == a.get_ref().as_str())
        {
            Some((_, alg)) => *alg,
            None => {
                let known: Vec<&str> = Algorithm::ALL.iter().map(|(n, _)| *n).collect();
                c.error(
                    a.span(),
                    "load_balancer.algorithm",
                    format!(
                        "unknown algorithm `{}` (known: {})",
                        a.get_ref(),
                        known.join(", ")
                    ),
                );
                Algorithm::RoundRobin
            }
        },
    };
    let mut servers: Vec<Backend> = Vec::new();
    if let Some(list) = &lb.servers {
        let names = c.host_list(list, "load_balancer.servers");
        for raw_name in list.get_ref() {
            let name = raw_name.get_ref();
            if !names.contains(name) {
                continue;
            }
            match web.filter(|w| w.hosts.contains(name)) {
                Some(w) => servers.push(Backend {
                    name: name.clone(),
                    addr: SocketAddr::new(c.hosts[name], w.port),
                    weight: 1,
                    backup: false,
                }),
                None => c.error(
                    raw_name.span(),
                    "load_balancer.servers",
                    format!("`{name}` runs no web server (add it to web.hosts, or list it as a [[load_balancer.backend]])"),
                ),
            }
        }
    }
    for b in &lb.backends {
        let (name, addr) = (b.name.get_ref(), *b.address.get_ref());
        if !valid_name(name) {
            c.error(
                b.name.span(),
                "load_balancer.backend.name",
                format!("`{name}` is not a valid name (letters, digits, '-', '_')"),
            );
        } else if servers.iter().any(|s| s.name == *name) {
            c.error(
                b.name.span(),
                "load_balancer.backend.name",
                format!("duplicate server name `{name}`"),
            );
        } else if let Some(other) = servers.iter().find(|s| s.addr == addr) {
            let other = other.name.clone();
            c.error(
                b.address.span(),
                "load_balancer.backend.address",
                format!("{addr} is already server `{other}`"),
            );
        } else {
            let weight = b.weight.as_ref().map_or(1, |w| *w.get_ref());
            if let Some(w) = b
                .weight
                .as_ref()
                .filter(|w| !(1..=256).contains(w.get_ref()))
            {
                c.error(
                    w.span(),
                    "load_balancer.backend.weight",
                    "must be between 1 and 256".into(),
                );
            }
            servers.push(Backend {
                name: name.clone(),
                addr,
                weight,
                backup: b.backup.as_ref().is_some_and(|x| *x.get_ref()),
            });
        }
    }
    if servers.iter().all(|s| s.backup) && !servers.is_empty() {
        c.error(
            0..0,
            "load_balancer",
            "every server is a backup: mark at least one `backup = false`".into(),
        );
    }
    if servers.is_empty() && c.errors.is_empty() {
        c.error(
            0..0,
            "load_balancer",
            "no servers: list web hosts in `servers` or add [[load_balancer.backend]] entries"
                .into(),
        );
    }
    let health_check = health_check(c, lb.health_check.as_ref());
    Some(LoadBalancer {
        host: lb.host.get_ref().clone(),
        listen,
        admin,
        algorithm,
        servers,
        health_check,
        access_log: lb.access_log.as_ref().is_none_or(|a| *a.get_ref()),
    })
}

fn health_check(c: &mut Checker, raw: Option<&RawHealthCheck>) -> HealthCheck {
    let mut hc = HealthCheck {
        path: "/healthz".into(),
        interval: Duration::from_millis(2000),
        timeout: Duration::from_millis(1000),
        rise: 2,
        fall: 3,
    };
    let Some(raw) = raw else { return hc };
    if let Some(p) = &raw.path {
        if !p.get_ref().starts_with('/') {
            c.error(
                p.span(),
                "load_balancer.health_check.path",
                "must start with '/'".into(),
            );
        }
        hc.path = p.get_ref().clone();
    }
    let positive = |c: &mut Checker, v: &S<u64>, key: &str| {
        if *v.get_ref() == 0 {
            c.error(v.span(), key, "must be greater than 0".into());
        }
        Duration::from_millis(*v.get_ref())
    };
    if let Some(v) = &raw.interval_ms {
        hc.interval = positive(c, v, "load_balancer.health_check.interval_ms");
    }
    if let Some(v) = &raw.timeout_ms {
        hc.timeout = positive(c, v, "load_balancer.health_check.timeout_ms");
    }
    for (v, key, slot) in [
        (&raw.rise, "load_balancer.health_check.rise", &mut hc.rise),
        (&raw.fall, "load_balancer.health_check.fall", &mut hc.fall),
    ] {
        if let Some(v) = v {
            if *v.get_ref() == 0 {
                c.error(v.span(), key, "must be at least 1".into());
            }
            *slot = *v.get_ref();
        }
    }
    hc
}
