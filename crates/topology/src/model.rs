//! The typed topology: what every role reads once validation has passed.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// A validated topology.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Where it was loaded from (None when parsed from a string).
    pub source: Option<PathBuf>,
    /// The site's public name, e.g. `www.foobar.com`.
    pub site: String,
    /// Every host, in file order.
    pub hosts: Vec<Host>,
    /// The load balancer tier, when the file has one.
    pub load_balancer: Option<LoadBalancer>,
    /// The web server tier.
    pub web: Option<Web>,
    /// The application server tier.
    pub app: Option<App>,
    /// The MariaDB tier.
    pub database: Option<Database>,
}

/// A machine (on one box: a loopback address of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Unique name, e.g. `server-01`.
    pub name: String,
    /// The only address processes on this host bind.
    pub address: IpAddr,
}

/// How the load balancer picks a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Each healthy server in turn (`round-robin`, the default).
    RoundRobin,
    /// In turn, in proportion to the servers' weights, smoothly interleaved (`weighted-round-robin`).
    WeightedRoundRobin,
    /// The server with the fewest requests in flight for its weight (`least-connections`).
    LeastConnections,
    /// The less loaded (for its weight) of two servers picked at random (`power-of-two`).
    PowerOfTwo,
    /// The same client address always to the same server while it is up;
    /// servers take clients in proportion to their weights, and a server
    /// that goes down moves only its own clients (`source-hash`).
    SourceHash,
}

impl Algorithm {
    /// The algorithm's name in the topology file.
    pub fn name(self) -> &'static str {
        Algorithm::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .expect("every algorithm is in ALL")
    }

    /// Whether servers' weights change its choices (all but `round-robin`).
    pub fn uses_weights(self) -> bool {
        self != Algorithm::RoundRobin
    }

    /// Every algorithm with its name in the topology file.
    pub const ALL: [(&'static str, Algorithm); 5] = [
        ("round-robin", Algorithm::RoundRobin),
        ("weighted-round-robin", Algorithm::WeightedRoundRobin),
        ("least-connections", Algorithm::LeastConnections),
        ("power-of-two", Algorithm::PowerOfTwo),
        ("source-hash", Algorithm::SourceHash),
    ];
    /// HAProxy's `balance` names, taken as the closest of ours (HAProxy's
    /// round robin is weighted; its `random` draws two by default).
    pub const HAPROXY: [(&'static str, Algorithm); 5] = [
        ("roundrobin", Algorithm::WeightedRoundRobin),
        ("static-rr", Algorithm::WeightedRoundRobin),
        ("leastconn", Algorithm::LeastConnections),
        ("source", Algorithm::SourceHash),
        ("random", Algorithm::PowerOfTwo),
    ];
}

/// A pool of servers for the requests whose `Host` and path it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPool {
    /// Name in stats and logs.
    pub name: String,
    /// Host names it takes (lowercase, no port; `*.example.com` for any
    /// name under example.com); empty: any host.
    pub hosts: Vec<String>,
    /// Path prefixes it takes (each starting with `/`); empty: any path.
    pub paths: Vec<String>,
    /// Server selection algorithm.
    pub algorithm: Algorithm,
    /// Active health check of its servers.
    pub health_check: HealthCheck,
    /// Its servers, in file order.
    pub servers: Vec<Backend>,
    /// Pipelining to its servers (its own `pipelining`, else the load
    /// balancer's; see [`LoadBalancer::pipelining`]).
    pub pipelining: bool,
}

/// One server behind the load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Name in logs, stats and `X-Served-By`-style messages.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Share of traffic (1-256); every algorithm but `round-robin` uses it.
    pub weight: u32,
    /// Gets traffic only while no non-backup server is up (active-passive).
    pub backup: bool,
    /// Timeouts, connection limit and slow start.
    pub limits: ServerLimits,
}

/// Per-server limits (HAProxy's `timeout connect`, `timeout server`, `maxconn`, `slowstart`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// How long a TCP connect to the server may take.
    pub connect_timeout: Duration,
    /// How long the server may take to send its response headers, and stay
    /// silent in the middle of a response body.
    pub response_timeout: Duration,
    /// Most requests in flight to the server at once; more wait in the queue.
    pub max_connections: Option<u32>,
    /// A server that comes back ramps its share of new requests up over this long.
    pub slow_start: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(60),
            max_connections: None,
            slow_start: Duration::ZERO,
        }
    }
}

/// Active health check settings (HAProxy's `inter`, `timeout check`, `rise`,
/// `fall`, `http-check expect status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path (and query) requested with GET.
    pub path: String,
    /// `Host` of the check request; None: the server's address.
    pub host: Option<String>,
    /// Time between checks of one server.
    pub interval: Duration,
    /// How long one check may take.
    pub timeout: Duration,
    /// Consecutive successes that bring a down server back.
    pub rise: u32,
    /// Consecutive failures that take an up server down.
    pub fall: u32,
    /// The status a healthy server answers; None: any 2xx or 3xx.
    pub expect_status: Option<u16>,
}

impl Default for HealthCheck {
    /// HAProxy's defaults: every 2 s, rise 2, fall 3; `GET /healthz` within 1 s.
    fn default() -> Self {
        HealthCheck {
            path: "/healthz".into(),
            host: None,
            interval: Duration::from_millis(2000),
            timeout: Duration::from_millis(1000),
            rise: 2,
            fall: 3,
            expect_status: None,
        }
    }
}

/// The load balancer tier.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    /// Host it runs on.
    pub host: String,
    /// Where clients connect (the site).
    pub listen: SocketAddr,
    /// Admin address: `/healthz` and, later, stats.
    pub admin: SocketAddr,
    /// Server selection algorithm.
    pub algorithm: Algorithm,
    /// Backend servers, in file order.
    pub servers: Vec<Backend>,
    /// Active health check.
    pub health_check: HealthCheck,
    /// More pools, each taking the requests it matches (HAProxy's
    /// `use_backend`); `algorithm`, `servers` and `health_check` above are
    /// the default pool's, which takes the rest.
    pub pools: Vec<ServerPool>,
    /// Log every request (with its request id); off, like `access_log off` in nginx.
    pub access_log: bool,
    /// Plain keep-alive `GET`/`HEAD` requests forwarded as bytes (the fast
    /// lane, on by default); off, every request takes the general path.
    pub fast_lane: bool,
    /// Bodiless `GET`s and `HEAD`s in the fast lane that arrive together
    /// for the same server share one connection and one write (HTTP/1.1
    /// pipelining; off by default): fewer system calls each way, at the
    /// price of a slow answer delaying the others sent with it.
    pub pipelining: bool,
    /// Client connections and queueing.
    pub clients: ClientLimits,
    /// HTTPS, when configured.
    pub tls: Option<Tls>,
    /// Fields set on (a value) or removed from (None) every response a
    /// server sends (HAProxy's `http-response set-header` / `del-header`).
    pub response_headers: Vec<(String, Option<String>)>,
    /// Fields set on or removed from every request forwarded to a server
    /// (HAProxy's `http-request set-header` / `del-header`).
    pub request_headers: Vec<(String, Option<String>)>,
    /// Files whose content is the body of the load balancer's own `429`,
    /// `502`, `503` and `504` answers (HAProxy's `errorfile`), by status.
    pub error_pages: Vec<(u16, PathBuf)>,
    /// Session persistence by cookie (HAProxy's `cookie NAME insert indirect
    /// nocache`): the name of the cookie that pins a client to a server.
    pub sticky_cookie: Option<String>,
    /// Requests per second each client address may send (HAProxy's
    /// `http_req_rate` in a stick table, nginx's `limit_req`).
    pub rate_limit: Option<RateLimit>,
    /// Who may change things on the admin address (drain, disable, enable,
    /// reload): the topology's hosts. 127.0.0.1 and ::1 always may.
    pub operators: Vec<IpAddr>,
}

/// A token bucket per client address: `burst` requests at once, refilled
/// at `per_second`; a request finding it empty gets a 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed at once (the bucket's size).
    pub burst: u32,
}

/// TLS termination on the load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Where HTTPS clients connect.
    pub listen: SocketAddr,
    /// PEM certificate chain and private key; None for both: a self-signed
    /// certificate for the site, made on first start in the state directory.
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The plain HTTP port answers every request with a 308 to HTTPS.
    pub redirect_http: bool,
    /// `Strict-Transport-Security: max-age=N` on HTTPS responses (browsers
    /// then use HTTPS only, for N seconds); None: not sent.
    pub hsts_max_age_s: Option<u64>,
    /// More certificates (chain, key), each served to clients that ask
    /// (SNI) for a name it is valid for; the one above is served to the
    /// others.
    pub more: Vec<(PathBuf, PathBuf)>,
}

/// Limits on the client side (HAProxy's global `maxconn`, `timeout http-request`,
/// `timeout http-keep-alive`, `maxqueue`, `timeout queue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLimits {
    /// Most client connections open at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long an idle keep-alive connection waits for the next request.
    pub keep_alive_timeout: Duration,
    /// Most requests waiting for a server slot (`max_connections` of servers) at once; more get 503.
    pub max_queue: usize,
    /// How long a request waits for a server slot before a 503.
    pub queue_timeout: Duration,
    /// Largest request body accepted (larger: 413). Bodies up to 64 KiB are
    /// read whole (a request can still go to another server), larger ones
    /// stream, so this bounds the upload, not memory.
    pub max_body_bytes: u64,
    /// Longest silence from a client in the middle of a request: no body
    /// bytes arriving (408, nginx's `client_body_timeout`), or a response
    /// it does not read (the connection is closed, nginx's `send_timeout`).
    /// HAProxy's `timeout client`. Tunnels have `tunnel_timeout` instead.
    pub client_timeout: Duration,
    /// A WebSocket (or other upgraded) tunnel with no byte either way for
    /// this long is closed (HAProxy's `timeout tunnel`).
    pub tunnel_timeout: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_connections: 8192,
            header_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            max_queue: 1024,
            queue_timeout: Duration::from_secs(5),
            max_body_bytes: 10 * 1024 * 1024,
            client_timeout: Duration::from_secs(30),
            tunnel_timeout: Duration::from_secs(3600),
        }
    }
}

/// The web server tier.
#[derive(Debug, Clone)]
pub struct Web {
    /// Hosts running a web server.
    pub hosts: Vec<String>,
    /// Port it listens on, on each host's address.
    pub port: u16,
    /// Directory of static files; None means the application's built-in assets.
    pub static_dir: Option<PathBuf>,
}

/// The application server tier.
#[derive(Debug, Clone)]
pub struct App {
    /// Hosts running an application server.
    pub hosts: Vec<String>,
    /// Port it listens on, on each host's address.
    pub port: u16,
}

/// A database node's configured role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbRole {
    /// Takes all writes.
    Primary,
    /// Replicates from the primary and serves reads.
    Replica,
}

impl DbRole {
    /// `primary` or `replica`.
    pub fn as_str(self) -> &'static str {
        match self {
            DbRole::Primary => "primary",
            DbRole::Replica => "replica",
        }
    }
}

/// One MariaDB node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbNode {
    /// Host name, also the node's name (`db-01`).
    pub name: String,
    /// Configured role.
    pub role: DbRole,
    /// MariaDB's SQL address.
    pub sql: SocketAddr,
    /// The supervising webinfra process's admin address (`/healthz`).
    pub admin: SocketAddr,
    /// MariaDB `server-id`, unique within the cluster (1-based file order).
    pub server_id: u32,
}

/// The MariaDB tier.
#[derive(Debug, Clone)]
pub struct Database {
    /// Primary first, then replicas in file order.
    pub nodes: Vec<DbNode>,
    /// The application's schema (database) name.
    pub schema: String,
    /// Host of the database monitor (failover, rejoin, switchover).
    pub monitor_host: String,
    /// The monitor's HTTP address.
    pub monitor: SocketAddr,
    /// Replicas further behind than this serve no reads.
    pub max_replica_lag: Duration,
    /// Who may change things through the monitor (switchover, failover,
    /// rejoin): the topology's hosts. 127.0.0.1 and ::1 always may.
    pub operators: Vec<IpAddr>,
}

impl Database {
    /// The configured primary.
    pub fn primary(&self) -> &DbNode {
        &self.nodes[0]
    }

    /// The configured replicas.
    pub fn replicas(&self) -> &[DbNode] {
        &self.nodes[1..]
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&DbNode> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

impl Topology {
    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// `name`'s address with `port`. Panics on an unknown host: validation rules that out.
    pub fn addr(&self, name: &str, port: u16) -> SocketAddr {
        let host = self
            .host(name)
            .unwrap_or_else(|| panic!("unknown host {name}"));
        SocketAddr::new(host.address, port)
    }

    /// The site URL clients use.
    pub fn site_url(&self) -> Option<String> {
        self.load_balancer
            .as_ref()
            .map(|lb| format!("http://{}/", lb.listen))
    }

    /// The site's HTTPS URL, when the load balancer terminates TLS.
    pub fn secure_url(&self) -> Option<String> {
        let tls = self.load_balancer.as_ref()?.tls.as_ref()?;
        Some(format!("https://{}/", tls.listen))
    }

    /// The directory relative paths in the file are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.source
            .as_ref()
            .and_then(|p| p.parent().map(|d| d.to_path_buf()))
            .unwrap_or_else(|| PathBuf::from("."))
    }
}
