//! Per-server counters, HAProxy-stats style: requests, responses by class,
//! errors, retries, and a latency histogram (time to response headers).
//! Lock-free atomics on the request path; rendered as JSON, Prometheus text
//! and an HTML page by the admin address.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use webinfra_proxy::counter::Count;
use webinfra_proxy::ListenerStats;

/// Histogram bucket upper bounds, in milliseconds.
pub const BUCKETS_MS: [f64; 12] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

/// Counters of one server.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Responses received, by class: 1xx, 2xx, 3xx, 4xx, 5xx.
    responses: [AtomicU64; 5],
    /// Connect failures, resets and timeouts.
    errors: AtomicU64,
    /// Requests sent again to another server after failing on this one.
    retries: AtomicU64,
    /// Cumulative-by-render histogram: counts per bucket (last = +Inf).
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    /// Sum of latencies, in microseconds.
    latency_sum_us: AtomicU64,
}

/// A point-in-time copy, for rendering.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Snapshot {
    /// Responses received.
    pub requests: u64,
    /// By class, 1xx to 5xx.
    pub responses: [u64; 5],
    /// Connect failures, resets and timeouts.
    pub errors: u64,
    /// Requests retried elsewhere after failing here.
    pub retries: u64,
    /// Non-cumulative counts per bucket (last = over 5 s).
    pub latency_buckets: Vec<u64>,
    /// Sum of latencies in seconds.
    pub latency_sum_seconds: f64,
}

impl ServerStats {
    /// Records a response with `status` after `latency`.
    pub fn response(&self, status: u16, latency: Duration) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses[class].add(1);
        let ms = latency.as_secs_f64() * 1000.0;
        let bucket = BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BUCKETS_MS.len());
        self.buckets[bucket].add(1);
        self.latency_sum_us.add(latency.as_micros() as u64);
    }

    /// Records a failed attempt; `retried` when the request went on to another server.
    pub fn error(&self, retried: bool) {
        self.errors.add(1);
        if retried {
            self.retries.add(1);
        }
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> Snapshot {
        let responses: [u64; 5] =
            std::array::from_fn(|i| self.responses[i].load(Ordering::Relaxed));
        Snapshot {
            requests: responses.iter().sum(),
            responses,
            errors: self.errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            latency_buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            latency_sum_seconds: self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// One server's line for rendering.
pub struct Row {
    /// The pool it serves (`default` outside any `[[load_balancer.pool]]`).
    pub pool: String,
    /// Server name.
    pub name: String,
    /// Address.
    pub address: String,
    /// Up or down.
    pub up: bool,
    /// Operator state: READY, DRAIN or MAINT.
    pub admin: &'static str,
    /// Requests in flight.
    pub in_flight: usize,
    /// Requests waiting for it in particular (pinned by a sticky cookie).
    pub queued: usize,
    /// Its `max_connections`, if it has one.
    pub max_connections: Option<u32>,
    /// Its weight now (the file's, or one set at runtime).
    pub weight: u32,
    /// Counters.
    pub stats: Snapshot,
}

/// One pool's summary: its servers, how many are up, requests queued.
pub struct PoolRow {
    /// The pool's name (`default` for the servers outside any pool).
    pub name: String,
    /// Its servers.
    pub servers: usize,
    /// Those its health checks (or traffic) say are up.
    pub up: usize,
    /// Requests waiting for a slot on one of its servers.
    pub queued: usize,
}

impl PoolRow {
    /// As JSON, for `/stats`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "servers": self.servers,
            "up": self.up,
            "queued": self.queued,
        })
    }
}

/// Per pool: servers and servers up, as Prometheus text (an alert on
/// `webinfra_lb_pool_servers_up == 0` catches a site whose pool is out while
/// the others serve).
pub fn pools_prometheus(pools: &[PoolRow]) -> String {
    let mut out = String::new();
    type Gauge = (&'static str, &'static str, fn(&PoolRow) -> usize);
    let gauges: [Gauge; 3] = [
        ("webinfra_lb_pool_servers", "Servers in the pool.", |p| {
            p.servers
        }),
        (
            "webinfra_lb_pool_servers_up",
            "Servers in the pool that are up.",
            |p| p.up,
        ),
        (
            "webinfra_lb_pool_queued_requests",
            "Requests waiting for a slot on one of the pool's servers.",
            |p| p.queued,
        ),
    ];
    for (name, help, value) in gauges {
        metric(&mut out, name, "gauge", help);
        for p in pools {
            out.push_str(&format!("{name}{{pool=\"{}\"}} {}\n", p.name, value(p)));
        }
    }
    out
}

/// A client-facing listener and its counters.
pub struct Listener {
    /// `http` or `https`.
    pub name: &'static str,
    pub address: String,
    pub stats: Arc<ListenerStats>,
}

impl Listener {
    pub fn new(
        name: &'static str,
        l: &tokio::net::TcpListener,
        stats: &Arc<ListenerStats>,
    ) -> Self {
        Listener {
            name,
            address: l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            stats: stats.clone(),
        }
    }

    /// For `/stats`.
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "name": self.name,
            "address": self.address,
            "open_connections": self.stats.open(),
            "connections_total": self.stats.accepted(),
        });
        if self.name == "https" {
            v["tls_handshake_failures"] = self.stats.handshake_failures().into();
        }
        v
    }
}

/// Prometheus text exposition format; `queued` is the queues' length.
pub fn prometheus(rows: &[Row], queued: usize, listeners: &[Listener]) -> String {
    let mut out = String::new();
    metric(
        &mut out,
        "webinfra_lb_client_connections",
        "gauge",
        "Client connections open, by listener.",
    );
    for l in listeners {
        out.push_str(&format!(
            "webinfra_lb_client_connections{{listener=\"{}\"}} {}\n",
            l.name,
            l.stats.open()
        ));
    }
    metric(
        &mut out,
        "webinfra_lb_client_connections_total",
        "counter",
        "Client connections accepted, by listener.",
    );
    for l in listeners {
        out.push_str(&format!(
            "webinfra_lb_client_connections_total{{listener=\"{}\"}} {}\n",
            l.name,
            l.stats.accepted()
        ));
    }
    if listeners.iter().any(|l| l.name == "https") {
        metric(
            &mut out,
            "webinfra_lb_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out.",
        );
        for l in listeners.iter().filter(|l| l.name == "https") {
            out.push_str(&format!(
                "webinfra_lb_tls_handshake_failures_total {}\n",
                l.stats.handshake_failures()
            ));
        }
    }
    metric(
        &mut out,
        "webinfra_lb_queued_requests",
        "gauge",
        "Requests waiting for a server below its max_connections.",
    );
    out.push_str(&format!("webinfra_lb_queued_requests {queued}\n"));
    metric(
        &mut out,
        "webinfra_lb_server_info",
        "gauge",
        "1 per server, naming its pool and address.",
    );
    for r in rows {
        out.push_str(&format!(
            "webinfra_lb_server_info{{server=\"{}\",pool=\"{}\",address=\"{}\"}} 1\n",
            r.name, r.pool, r.address
        ));
    }
    metric(
        &mut out,
        "webinfra_lb_server_max_connections",
        "gauge",
        "The server's max_connections (servers without one are not listed).",
    );
    for r in rows {
        if let Some(max) = r.max_connections {
            out.push_str(&format!(
                "webinfra_lb_server_max_connections{{server=\"{}\"}} {max}\n",
                r.name
            ));
        }
    }
    metric(
        &mut out,
        "webinfra_lb_server_weight",
        "gauge",
        "The server's weight for the weighted algorithms.",
    );
    for r in rows {
        out.push_str(&format!(
            "webinfra_lb_server_weight{{server=\"{}\"}} {}\n",
            r.name, r.weight
        ));
    }
    metric(
        &mut out,
        "webinfra_lb_server_up",
        "gauge",
        "1 when the server gets traffic.",
    );
    for r in rows {
        out.push_str(&format!(
            "webinfra_lb_server_up{{server=\"{}\"}} {}\n",
            r.name,
            u8::from(r.up)
        ));
    }
    metric(
        &mut out,
        "webinfra_lb_server_in_flight",
        "gauge",
        "Requests in flight.",
    );
    for r in rows {
        out.push_str(&format!(
            "webinfra_lb_server_in_flight{{server=\"{}\"}} {}\n",
            r.name, r.in_flight
        ));
    }
    metric(
        &mut out,
        "webinfra_lb_server_queued",
        "gauge",
        "Requests waiting for this server in particular (pinned by a sticky cookie).",
    );
    for r in rows {
        out.push_str(&format!(
            "webinfra_lb_server_queued{{server=\"{}\"}} {}\n",
            r.name, r.queued
        ));
    }
    metric(
        &mut out,
        "webinfra_lb_responses_total",
        "counter",
        "Responses received, by status class.",
    );
    for r in rows {
        for (i, n) in r.stats.responses.iter().enumerate() {
            out.push_str(&format!(
                "webinfra_lb_responses_total{{server=\"{}\",class=\"{}xx\"}} {n}\n",
                r.name,
                i + 1
            ));
        }
    }
    metric(
        &mut out,
        "webinfra_lb_errors_total",
        "counter",
        "Connect failures, resets and timeouts.",
    );
    for r in rows {
        out.push_str(&format!(
            "webinfra_lb_errors_total{{server=\"{}\"}} {}\n",
            r.name, r.stats.errors
        ));
    }
    metric(
        &mut out,
        "webinfra_lb_retries_total",
        "counter",
        "Requests retried on another server.",
    );
    for r in rows {
        out.push_str(&format!(
            "webinfra_lb_retries_total{{server=\"{}\"}} {}\n",
            r.name, r.stats.retries
        ));
    }
    metric(
        &mut out,
        "webinfra_lb_response_seconds",
        "histogram",
        "Time to response headers.",
    );
    for r in rows {
        let mut cumulative = 0;
        for (i, n) in r.stats.latency_buckets.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS_MS
                .get(i)
                .map(|ms| format!("{}", ms / 1000.0))
                .unwrap_or_else(|| "+Inf".into());
            out.push_str(&format!(
                "webinfra_lb_response_seconds_bucket{{server=\"{}\",le=\"{le}\"}} {cumulative}\n",
                r.name
            ));
        }
        out.push_str(&format!(
            "webinfra_lb_response_seconds_sum{{server=\"{}\"}} {}\nwebinfra_lb_response_seconds_count{{server=\"{}\"}} {cumulative}\n",
            r.name, r.stats.latency_sum_seconds, r.name
        ));
    }
    out
}

/// A small HTML page like HAProxy's stats page; `rate_limited`: requests
/// refused by the rate limit.
pub fn html(rows: &[Row], pools: &[PoolRow], rate_limited: u64, listeners: &[Listener]) -> String {
    let queued: usize = pools.iter().map(|p| p.queued).sum();
    let mut body = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <title>webinfra load balancer</title><style>body{font:14px system-ui,sans-serif;margin:1.5rem}\
         table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right;white-space:nowrap}\
         td:first-child,th:first-child{text-align:left}.up{background:#d1fae5}.down{background:#fee2e2}</style></head>\
         <body><h1>webinfra load balancer</h1>",
    );
    body.push_str("<p>client connections open:");
    for l in listeners {
        body.push_str(&format!(
            " {} {} ({} since start)",
            l.name,
            l.stats.open(),
            l.stats.accepted()
        ));
    }
    body.push_str(&format!(
        "</p><p>requests queued for a server slot: {queued}; refused by the rate limit: {rate_limited}</p>"
    ));
    if pools.len() > 1 {
        body.push_str("<p>pools:");
        for p in pools {
            body.push_str(&format!(
                " <span class=\"{}\">{} {}/{} up</span>",
                if p.up == 0 { "down" } else { "up" },
                p.name,
                p.up,
                p.servers
            ));
        }
        body.push_str("</p>");
    }
    body.push_str(
        "<table><tr><th>server</th><th>pool</th><th>address</th><th>state</th><th>weight</th><th>in flight</th><th>queued</th>\
         <th>requests</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>errors</th><th>retries</th><th>avg ms</th></tr>",
    );
    for r in rows {
        let s = &r.stats;
        let in_flight = match r.max_connections {
            Some(max) => format!("{}/{max}", r.in_flight),
            None => r.in_flight.to_string(),
        };
        let avg = if s.requests > 0 {
            s.latency_sum_seconds * 1000.0 / s.requests as f64
        } else {
            0.0
        };
        body.push_str(&format!(
            "<tr class=\"{cls}\"><td>{}</td><td>{}</td><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{avg:.2}</td></tr>",
            r.name, r.pool, r.address, r.weight, in_flight, r.queued, s.requests, s.responses[1], s.responses[2], s.responses[3], s.responses[4], s.errors, s.retries,
            cls = if r.up && r.admin == "READY" { "up" } else { "down" },
            state = match (r.admin, r.up) {
                ("READY", true) => "UP",
                ("READY", false) => "DOWN",
                (admin, _) => admin,
            },
        ));
    }
    body.push_str("</table><p>Also as <a href=\"/stats\">JSON</a> and <a href=\"/metrics\">Prometheus text</a>.</p></body></html>\n");
    body
}

/// A metric's `# HELP` and `# TYPE` lines.
fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
}

/// The rate limit's refusals as Prometheus text.
pub fn rate_limited(refused: u64) -> String {
    let mut out = String::new();
    metric(
        &mut out,
        "webinfra_lb_rate_limited_total",
        "counter",
        "Requests refused with 429 by the per-address rate limit.",
    );
    out.push_str(&format!("webinfra_lb_rate_limited_total {refused}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_class_and_bucket() {
        let s = ServerStats::default();
        s.response(200, Duration::from_micros(500));
        s.response(503, Duration::from_millis(30));
        s.error(true);
        let snap = s.snapshot();
        assert_eq!(snap.requests, 2);
        assert_eq!(snap.responses, [0, 1, 0, 0, 1]);
        assert_eq!((snap.errors, snap.retries), (1, 1));
        assert_eq!(snap.latency_buckets[0], 1);
        assert_eq!(snap.latency_buckets[5], 1);
        let text = prometheus(
            &[Row {
                pool: "api".into(),
                name: "a".into(),
                address: "x".into(),
                up: true,
                admin: "READY",
                in_flight: 0,
                queued: 2,
                max_connections: Some(7),
                weight: 3,
                stats: snap,
            }],
            3,
            &[],
        );
        assert!(text.contains("webinfra_lb_queued_requests 3"));
        assert!(text.contains("webinfra_lb_server_queued{server=\"a\"} 2"));
        assert!(text.contains("webinfra_lb_server_info{server=\"a\",pool=\"api\",address=\"x\"} 1"));
        assert!(text.contains("webinfra_lb_server_max_connections{server=\"a\"} 7"));
        assert!(text.contains("webinfra_lb_server_weight{server=\"a\"} 3"));
        assert!(text.contains("webinfra_lb_responses_total{server=\"a\",class=\"5xx\"} 1"));
        assert!(text.contains("webinfra_lb_response_seconds_bucket{server=\"a\",le=\"+Inf\"} 2"));
        assert!(text.contains("webinfra_lb_response_seconds_count{server=\"a\"} 2"));
    }
}
