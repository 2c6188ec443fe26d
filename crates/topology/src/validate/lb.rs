//! The `[load_balancer]` section: listeners, algorithm, servers, health
//! check, timeouts and limits.

use super::{pools, Checker};
use crate::model::*;
use crate::raw::*;
use std::net::SocketAddr;
use std::time::Duration;

pub(super) fn load_balancer(
    c: &mut Checker,
    lb: &RawLoadBalancer,
    web: Option<&Web>,
) -> Option<LoadBalancer> {
    let ip = c.host_ref(&lb.host, "load_balancer.host")?;
    let listen = c.listen(ip, &lb.port, "load_balancer.port", lb.host.get_ref());
    let admin = c.listen(
        ip,
        &lb.admin_port,
        "load_balancer.admin_port",
        lb.host.get_ref(),
    );
    let algorithm = pools::algorithm(c, lb.algorithm.as_ref(), "load_balancer.algorithm");
    let defaults = server_limits(
        c,
        ServerLimits::default(),
        [
            (&lb.connect_timeout_ms, "load_balancer.connect_timeout_ms"),
            (&lb.response_timeout_ms, "load_balancer.response_timeout_ms"),
            (
                &lb.server_max_connections,
                "load_balancer.server_max_connections",
            ),
            (&lb.slow_start_ms, "load_balancer.slow_start_ms"),
        ],
    );
    let mut servers: Vec<Backend> = Vec::new();
    if let Some(list) = &lb.servers {
        // Each entry's host, with the entry's span when it is only a name.
        let hosts: Vec<S<String>> = list
            .get_ref()
            .iter()
            .map(|s| match s.get_ref() {
                RawServer::Host(h) => S::new(s.span(), h.clone()),
                RawServer::Entry { host, .. } => host.clone(),
            })
            .collect();
        let names = c.host_list(&S::new(list.span(), hosts.clone()), "load_balancer.servers");
        for (raw_name, entry) in hosts.iter().zip(list.get_ref()) {
            let name = raw_name.get_ref();
            if !names.contains(name) {
                continue;
            }
            let (weight, backup) = match entry.get_ref() {
                RawServer::Host(_) => (1, false),
                RawServer::Entry { weight, backup, .. } => {
                    if let Some(w) = weight.as_ref().filter(|w| !(1..=256).contains(w.get_ref())) {
                        c.error(
                            w.span(),
                            "load_balancer.servers.weight",
                            "must be between 1 and 256".into(),
                        );
                    }
                    (
                        weight.as_ref().map_or(1, |w| *w.get_ref()),
                        backup.as_ref().is_some_and(|b| *b.get_ref()),
                    )
                }
            };
            match web.filter(|w| w.hosts.contains(name)) {
                Some(w) => servers.push(Backend {
                    name: name.clone(),
                    addr: SocketAddr::new(c.hosts[name], w.port),
                    weight,
                    backup,
                    limits: defaults.clone(),
                }),
                None => c.error(
                    raw_name.span(),
                    "load_balancer.servers",
                    format!("`{name}` runs no web server (add it to web.hosts, or list it as a [[load_balancer.backend]])"),
                ),
            }
        }
    }
    let mut own = vec![listen, admin];
    own.extend(
        lb.tls
            .as_ref()
            .map(|t| SocketAddr::new(ip, *t.port.get_ref())),
    );
    let own = pools::Own(own);
    let mut taken: Vec<String> = servers.iter().map(|s| s.name.clone()).collect();
    let limits = (&defaults, &own);
    pools::backends(
        c,
        &lb.backends,
        "load_balancer.backend",
        limits,
        &mut taken,
        &mut servers,
    );
    pools::all_backup(c, &servers, 0..0, "load_balancer");
    if servers.is_empty() && lb.pools.is_empty() && c.errors.is_empty() {
        c.error(
            0..0,
            "load_balancer",
            "no servers: list web hosts in `servers` or add [[load_balancer.backend]] entries"
                .into(),
        );
    }
    let health_check = health_check(
        c,
        lb.health_check.as_ref(),
        &HealthCheck::default(),
        "load_balancer.health_check",
    );
    let pipelining = lb.pipelining.as_ref().is_some_and(|a| *a.get_ref());
    let pools = pools::pools(
        c,
        &lb.pools,
        limits,
        (&health_check, pipelining),
        &mut taken,
    );
    let tls = lb.tls.as_ref().map(|t| tls(c, ip, t, lb.host.get_ref()));
    Some(LoadBalancer {
        host: lb.host.get_ref().clone(),
        listen,
        admin,
        algorithm,
        servers,
        health_check,
        pools,
        access_log: lb.access_log.as_ref().is_none_or(|a| *a.get_ref()),
        fast_lane: lb.fast_lane.as_ref().is_none_or(|a| *a.get_ref()),
        pipelining,
        clients: client_limits(c, lb),
        tls,
        operators: c.operators(),
        response_headers: header_rules(c, lb.response_headers.as_ref(), "response_headers"),
        request_headers: header_rules(c, lb.request_headers.as_ref(), "request_headers"),
        error_pages: error_pages(c, lb.error_pages.as_ref()),
        rate_limit: lb.rate_limit.as_ref().map(|r| {
            let per_second = *r.requests_per_s.get_ref();
            if per_second == 0 {
                c.error(
                    r.requests_per_s.span(),
                    "load_balancer.rate_limit.requests_per_s",
                    "must be at least 1".into(),
                );
            }
            let burst = r.burst.as_ref().map_or(per_second, |b| *b.get_ref());
            if let Some(b) = r.burst.as_ref().filter(|b| *b.get_ref() == 0) {
                c.error(
                    b.span(),
                    "load_balancer.rate_limit.burst",
                    "must be at least 1".into(),
                );
            }
            RateLimit { per_second, burst }
        }),
        sticky_cookie: lb.sticky_cookie.as_ref().map(|n| {
            let name = n.get_ref();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                c.error(
                    n.span(),
                    "load_balancer.sticky_cookie",
                    format!("`{name}` is not a cookie name (letters, digits, '-', '_')"),
                );
            }
            name.clone()
        }),
    })
}

fn tls(c: &mut Checker, ip: std::net::IpAddr, t: &RawTls, host: &str) -> Tls {
    let listen = c.listen(ip, &t.port, "load_balancer.tls.port", host);
    match (&t.certificate, &t.key) {
        (Some(v), None) | (None, Some(v)) => {
            let key = if t.key.is_some() {
                "key"
            } else {
                "certificate"
            };
            c.error(
                v.span(),
                &format!("load_balancer.tls.{key}"),
                "set both `certificate` and `key`, or neither (for a self-signed certificate)"
                    .into(),
            );
        }
        _ => {}
    }
    let path = |v: &Option<S<String>>| v.as_ref().map(|p| std::path::PathBuf::from(p.get_ref()));
    Tls {
        listen,
        certificate: path(&t.certificate),
        key: path(&t.key),
        redirect_http: t.redirect_http.as_ref().is_some_and(|r| *r.get_ref()),
        hsts_max_age_s: t.hsts_max_age_s.as_ref().map(|v| *v.get_ref()),
        more: t
            .certificates
            .iter()
            .map(|m| (m.certificate.get_ref().into(), m.key.get_ref().into()))
            .collect(),
    }
}

/// Fields the load balancer itself owns: framing, hop-by-hop, the date,
/// `Expect` and the request id. A rule may not set or remove them.
const OWN_FIELDS: [&str; 11] = [
    "expect",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "date",
    "x-request-id",
];

/// `[load_balancer.response_headers]` and `[load_balancer.request_headers]`
/// (`table`): `Name = "value"` sets a field on every server response or
/// forwarded request, `Name = ""` removes it (a request keeps its `Host`).
fn header_rules(
    c: &mut Checker,
    raw: Option<&std::collections::BTreeMap<String, S<String>>>,
    table: &str,
) -> Vec<(String, Option<String>)> {
    let mut rules = Vec::new();
    for (name, value) in raw.into_iter().flatten() {
        let key = format!("load_balancer.{table}.{name}");
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let v = value.get_ref().trim();
        if !token {
            c.error(
                value.span(),
                &key,
                format!("`{name}` is not a field name (letters, digits and !#$%&'*+-.^_`|~)"),
            );
        } else if OWN_FIELDS.contains(&name.to_ascii_lowercase().as_str()) {
            c.error(value.span(), &key, format!("`{name}` is the load balancer's own to write (framing, hop-by-hop, Date, X-Request-Id)"));
        } else if !v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
            c.error(
                value.span(),
                &key,
                "the value must be printable ASCII on one line".into(),
            );
        } else if v.is_empty() && name.eq_ignore_ascii_case("host") {
            let why = "a request needs its Host: set another, do not remove it";
            c.error(value.span(), &key, why.into());
        } else {
            rules.push((name.clone(), (!v.is_empty()).then(|| v.to_string())));
        }
    }
    rules
}

/// The statuses whose bodies `[load_balancer.error_pages]` may replace: the
/// load balancer's answers about its servers and the rate limit.
pub const ERROR_PAGE_STATUSES: [u16; 4] = [429, 502, 503, 504];

/// `[load_balancer.error_pages]`: `503 = "errors/503.html"`.
fn error_pages(
    c: &mut Checker,
    raw: Option<&std::collections::BTreeMap<String, S<String>>>,
) -> Vec<(u16, std::path::PathBuf)> {
    let mut pages = Vec::new();
    for (status, file) in raw.into_iter().flatten() {
        let key = format!("load_balancer.error_pages.{status}");
        match status.parse::<u16>() {
            Ok(code) if ERROR_PAGE_STATUSES.contains(&code) => {
                if file.get_ref().is_empty() {
                    c.error(file.span(), &key, "name a file (relative to this one)".into());
                }
                pages.push((code, file.get_ref().into()));
            }
            _ => c.error(
                file.span(),
                &key,
                format!("`{status}`: error pages are for 429, 502, 503 and 504 (the answers about servers and the rate limit)"),
            ),
        }
    }
    pages
}

/// Reports a zero and returns the value, for keys where 0 means nothing sensible.
fn positive(c: &mut Checker, v: &S<u64>, key: &str) -> u64 {
    if *v.get_ref() == 0 {
        c.error(v.span(), key, "must be greater than 0".into());
    }
    *v.get_ref()
}

/// `[connect_timeout_ms, response_timeout_ms, max_connections, slow_start_ms]` over `base`.
pub(super) fn server_limits(
    c: &mut Checker,
    base: ServerLimits,
    keys: [(&Option<S<u64>>, &str); 4],
) -> ServerLimits {
    let mut limits = base;
    let [connect, response, maxconn, slow] = keys;
    if let (Some(v), key) = connect {
        limits.connect_timeout = Duration::from_millis(positive(c, v, key));
    }
    if let (Some(v), key) = response {
        limits.response_timeout = Duration::from_millis(positive(c, v, key));
    }
    if let (Some(v), key) = maxconn {
        let n = positive(c, v, key);
        if n > u64::from(u32::MAX) {
            c.error(v.span(), key, "is too large".into());
        }
        limits.max_connections = Some(n.min(u64::from(u32::MAX)) as u32);
    }
    if let (Some(v), _) = slow {
        limits.slow_start = Duration::from_millis(*v.get_ref());
    }
    limits
}

fn client_limits(c: &mut Checker, lb: &RawLoadBalancer) -> ClientLimits {
    let mut limits = ClientLimits::default();
    if let Some(v) = &lb.max_connections {
        limits.max_connections = positive(c, v, "load_balancer.max_connections") as usize;
    }
    if let Some(v) = &lb.header_timeout_ms {
        limits.header_timeout =
            Duration::from_millis(positive(c, v, "load_balancer.header_timeout_ms"));
    }
    if let Some(v) = &lb.keep_alive_timeout_ms {
        limits.keep_alive_timeout =
            Duration::from_millis(positive(c, v, "load_balancer.keep_alive_timeout_ms"));
    }
    if let Some(v) = &lb.max_queue {
        // 0 is allowed: no queue, a request finding every server full gets 503 at once.
        limits.max_queue = *v.get_ref() as usize;
    }
    if let Some(v) = &lb.max_body_bytes {
        limits.max_body_bytes = positive(c, v, "load_balancer.max_body_bytes");
    }
    if let Some(v) = &lb.client_timeout_ms {
        limits.client_timeout =
            Duration::from_millis(positive(c, v, "load_balancer.client_timeout_ms"));
    }
    if let Some(v) = &lb.tunnel_timeout_ms {
        limits.tunnel_timeout =
            Duration::from_millis(positive(c, v, "load_balancer.tunnel_timeout_ms"));
    }
    if let Some(v) = &lb.queue_timeout_ms {
        limits.queue_timeout =
            Duration::from_millis(positive(c, v, "load_balancer.queue_timeout_ms"));
    }
    limits
}

/// The health check `raw` describes over `base` (the keys it names replace
/// base's), its keys under `prefix`.
pub(super) fn health_check(
    c: &mut Checker,
    raw: Option<&RawHealthCheck>,
    base: &HealthCheck,
    prefix: &str,
) -> HealthCheck {
    let mut hc = base.clone();
    let key = |k: &str| format!("{prefix}.{k}");
    let Some(raw) = raw else { return hc };
    if let Some(v) = &raw.expect_status {
        if !(100..=599).contains(v.get_ref()) {
            c.error(
                v.span(),
                &key("expect_status"),
                "must be an HTTP status (100-599)".into(),
            );
        }
        hc.expect_status = Some(*v.get_ref());
    }
    if let Some(p) = &raw.path {
        if !valid_path(p.get_ref()) {
            c.error(
                p.span(),
                &key("path"),
                "must be a path starting with '/' (an optional ?query; spaces and other unsafe bytes %-encoded)".into(),
            );
        }
        hc.path = p.get_ref().clone();
    }
    if let Some(h) = &raw.host {
        let name = h.get_ref();
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
        if !ok {
            c.error(
                h.span(),
                &key("host"),
                format!(
                    "`{name}` is not a host name (e.g. www.example.com or www.example.com:8080)"
                ),
            );
        }
        hc.host = Some(name.clone());
    }
    let positive = |c: &mut Checker, v: &S<u64>, key: &str| {
        if *v.get_ref() == 0 {
            c.error(v.span(), key, "must be greater than 0".into());
        }
        Duration::from_millis(*v.get_ref())
    };
    if let Some(v) = &raw.interval_ms {
        hc.interval = positive(c, v, &key("interval_ms"));
    }
    if let Some(v) = &raw.timeout_ms {
        hc.timeout = positive(c, v, &key("timeout_ms"));
    }
    for (v, name, slot) in [
        (&raw.rise, key("rise"), &mut hc.rise),
        (&raw.fall, key("fall"), &mut hc.fall),
    ] {
        if let Some(v) = v {
            if *v.get_ref() == 0 {
                c.error(v.span(), &name, "must be at least 1".into());
            }
            *slot = *v.get_ref();
        }
    }
    hc
}

/// An origin-form request target (RFC 9112 3.2.1): `/path[?query]` with only
/// the bytes RFC 3986 allows there, `%` starting a valid escape.
fn valid_path(p: &str) -> bool {
    let b = p.as_bytes();
    b.first() == Some(&b'/')
        && b.iter().enumerate().all(|(i, c)| match c {
            b'%' => b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit(),
            c => c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(c),
        })
}
