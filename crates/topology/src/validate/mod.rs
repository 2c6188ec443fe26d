//! Checks a whole raw topology and builds the typed one, collecting every error.

use crate::diagnostic::{Diagnostic, TopologyError};
use crate::model::*;
use crate::raw::*;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

mod lb;
mod pools;

/// Collects diagnostics while validation walks the file.
pub(super) struct Checker<'a> {
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
    /// Who may change a running process (an admin request): every host's
    /// address. The one list both the load balancer and the database monitor use.
    pub(super) fn operators(&self) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self.hosts.values().copied().collect();
        ips.sort();
        ips.dedup();
        ips
    }

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
        .and_then(|lb| lb::load_balancer(&mut c, lb.get_ref(), web.as_ref()));
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

pub(super) fn valid_name(name: &str) -> bool {
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
        operators: c.operators(),
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
