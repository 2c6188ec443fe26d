//! A load balancer in front of in-process HTTP backends, all on 127.0.0.1:0,
//! in a runtime of its own that stops when the [`Lb`] is dropped.
//!
//! Backends answer by path: `/slow/MS` after MS milliseconds, `/status/N`
//! with status N, `/big/N` with N bytes, `/hop` with hop-by-hop headers a proxy must strip, anything
//! else with the backend's name. Each records what it received (health
//! checks aside: those are only counted) and how many requests it had in
//! flight at most, and can be frozen (requests, checks or both hang).

#![allow(dead_code)]

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use webinfra_topology::{
    Algorithm, Backend, ClientLimits, HealthCheck, LoadBalancer, ServerLimits,
};

/// A request as a backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What one backend saw.
#[derive(Debug, Default)]
pub struct Record {
    pub seen: Mutex<Vec<Seen>>,
    /// Health checks answered.
    pub checks: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// While set, requests hang once recorded: a frozen server (see [`Record::thaw`]).
    pub frozen: AtomicBool,
    /// While set, health checks hang once counted.
    pub frozen_checks: AtomicBool,
    thawed: tokio::sync::Notify,
}

impl Record {
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Unfreezes requests and checks: those hanging go on.
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
        self.frozen_checks.store(false, Ordering::SeqCst);
        self.thawed.notify_waiters();
    }

    /// Waits while `switch` is set.
    async fn hold(&self, switch: &AtomicBool) {
        loop {
            let thawed = self.thawed.notified();
            tokio::pin!(thawed);
            thawed.as_mut().enable();
            if !switch.load(Ordering::SeqCst) {
                return;
            }
            thawed.await;
        }
    }
}

async fn answer(
    name: &'static str,
    record: Arc<Record>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let check = parts
        .headers
        .get("user-agent")
        .is_some_and(|v| v == "webinfra-health-check");
    if check {
        // Checks are answered by path too, and counted, not recorded.
        record.checks.fetch_add(1, Ordering::SeqCst);
        record.hold(&record.frozen_checks).await;
        let mut resp = Response::new(Full::new(Bytes::from(name)));
        if let Some(code) = path.strip_prefix("/status/") {
            *resp.status_mut() = code.parse::<u16>().unwrap().try_into().unwrap();
        } else if let Some(site) = path.strip_prefix("/vhost/") {
            // Like a name-based virtual host: only its own Host is served.
            if parts.headers.get("host").is_none_or(|h| h != site) {
                *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
            }
        }
        return resp;
    }
    let now = record.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    record.max_in_flight.fetch_max(now, Ordering::SeqCst);
    record.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    });
    record.hold(&record.frozen).await;
    let mut resp = Response::new(Full::new(Bytes::from(name)));
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
    } else if let Some(code) = path.strip_prefix("/status/") {
        *resp.status_mut() = code.parse::<u16>().unwrap().try_into().unwrap();
    } else if let Some(n) = path.strip_prefix("/big/") {
        *resp.body_mut() = Full::new(Bytes::from(vec![b'x'; n.parse().unwrap()]));
    } else if path == "/hop" {
        let h = resp.headers_mut();
        h.insert("connection", "x-internal".parse().unwrap());
        h.insert("x-internal", "secret".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("trailer", "x-checksum".parse().unwrap());
        h.insert("x-end-to-end", "kept".parse().unwrap());
    }
    record.in_flight.fetch_sub(1, Ordering::SeqCst);
    resp
}

/// A backend: its address, its record, and a switch to stop it.
pub struct TestBackend {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub record: Arc<Record>,
    pub stop: tokio::sync::watch::Sender<bool>,
}

async fn backend(
    name: &'static str,
    listener: TcpListener,
    record: Arc<Record>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => r.unwrap(),
            _ = stop.changed() => return,
        };
        let mut stop = stop.clone();
        let record = record.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let record = record.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(name, record, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! { _ = conn => {}, _ = stop.changed() => {} }
        });
    }
}

/// The configuration `Lb::start` begins from: round robin over the
/// backends, checks every 30 s (so only passive detection acts), no access log.
pub fn config(backends: &[(&'static str, SocketAddr)]) -> LoadBalancer {
    LoadBalancer {
        host: "lb".into(),
        listen: "127.0.0.1:1".parse().unwrap(),
        admin: "127.0.0.1:2".parse().unwrap(),
        algorithm: Algorithm::RoundRobin,
        servers: backends
            .iter()
            .map(|(name, addr)| Backend {
                name: (*name).into(),
                addr: *addr,
                weight: 1,
                backup: false,
                limits: ServerLimits::default(),
            })
            .collect(),
        health_check: HealthCheck {
            path: "/".into(),
            host: None,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            expect_status: None,
        },
        pools: Vec::new(),
        response_headers: Vec::new(),
        request_headers: Vec::new(),
        error_pages: Vec::new(),
        access_log: false,
        fast_lane: true,
        pipelining: false,
        clients: ClientLimits::default(),
        tls: None,
        sticky_cookie: None,
        rate_limit: None,
        operators: Vec::new(),
    }
}

/// A running load balancer and its backends.
pub struct Lb {
    pub site: SocketAddr,
    /// The HTTPS address, when started with [`Lb::start_tls`].
    pub tls: Option<SocketAddr>,
    /// Where its certificate and key are (`certificate.pem`, `key.pem`).
    pub tls_dir: Option<tempfile::TempDir>,
    pub admin: SocketAddr,
    pub backends: Vec<TestBackend>,
    /// What the next reload reads (an Err is a broken topology file).
    pub next_config: Arc<Mutex<Result<LoadBalancer, String>>>,
    /// A SIGHUP.
    pub hangup: tokio::sync::mpsc::Sender<()>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    runtime: tokio::runtime::Handle,
}

impl Lb {
    /// Starts `names.len()` backends and a load balancer over them, configured by `tune`.
    pub fn start(
        names: &[&'static str],
        tune: impl FnOnce(&mut LoadBalancer) + Send + 'static,
    ) -> Lb {
        Lb::launch(names, None, tune)
    }

    /// [`Lb::start`] with HTTPS too, on a certificate for `localhost` written
    /// by [`write_certificate`] into a directory of its own.
    pub fn start_tls(
        names: &[&'static str],
        tune: impl FnOnce(&mut LoadBalancer) + Send + 'static,
    ) -> Lb {
        let dir = tempfile::tempdir().unwrap();
        write_certificate(dir.path());
        let mut lb = Lb::launch(names, Some(dir.path().to_path_buf()), tune);
        lb.tls_dir = Some(dir);
        lb
    }

    fn launch(
        names: &[&'static str],
        tls_dir: Option<std::path::PathBuf>,
        tune: impl FnOnce(&mut LoadBalancer) + Send + 'static,
    ) -> Lb {
        let (tx, rx) = std::sync::mpsc::channel();
        let names = names.to_vec();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let handle = rt.handle().clone();
            rt.block_on(async move {
                let mut backends = Vec::new();
                for name in names {
                    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let (stop, stop_rx) = tokio::sync::watch::channel(false);
                    let record = Arc::new(Record::default());
                    let addr = l.local_addr().unwrap();
                    tokio::spawn(backend(name, l, record.clone(), stop_rx));
                    backends.push(TestBackend {
                        name,
                        addr,
                        record,
                        stop,
                    });
                }
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let pairs: Vec<_> = backends.iter().map(|b| (b.name, b.addr)).collect();
                let mut cfg = config(&pairs);
                cfg.listen = listener.local_addr().unwrap();
                cfg.admin = admin.local_addr().unwrap();
                let tls_listener = match &tls_dir {
                    None => None,
                    Some(dir) => {
                        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                        cfg.tls = Some(webinfra_topology::Tls {
                            listen: l.local_addr().unwrap(),
                            certificate: Some(dir.join("certificate.pem")),
                            key: Some(dir.join("key.pem")),
                            redirect_http: false,
                            hsts_max_age_s: None,
                            more: Vec::new(),
                        });
                        Some(l)
                    }
                };
                tune(&mut cfg);
                let tls = tls_listener.map(|l| {
                    let t = webinfra_lb::tls::Tls::load(cfg.tls.as_ref().unwrap()).unwrap();
                    (l, t)
                });
                let next_config = Arc::new(Mutex::new(Ok(cfg.clone())));
                let source_cfg = next_config.clone();
                let source: webinfra_lb::ConfigSource =
                    Arc::new(move || source_cfg.lock().unwrap().clone());
                let (hangup, triggers) = tokio::sync::mpsc::channel(4);
                let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
                tx.send((
                    cfg.tls.as_ref().map(|t| t.listen),
                    cfg.listen,
                    cfg.admin,
                    backends,
                    next_config,
                    hangup,
                    shutdown,
                    handle,
                ))
                .unwrap();
                let reload = webinfra_lb::Reload { source, triggers };
                let listeners = webinfra_lb::Listeners {
                    site: listener,
                    tls,
                    admin,
                };
                webinfra_lb::run(listeners, cfg, reload, async move {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        let (tls, site, admin, backends, next_config, hangup, shutdown, runtime) =
            rx.recv().unwrap();
        Lb {
            site,
            tls,
            tls_dir: None,
            admin,
            backends,
            next_config,
            hangup,
            shutdown: Some(shutdown),
            thread: Some(thread),
            runtime,
        }
    }

    /// Backend `name`.
    pub fn backend(&self, name: &str) -> &TestBackend {
        self.backends.iter().find(|b| b.name == name).unwrap()
    }

    /// Runs `f` on the load balancer's runtime (e.g. to start another backend).
    pub fn block_on<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        let handle = self.runtime.clone();
        std::thread::scope(|s| s.spawn(|| handle.block_on(f)).join().unwrap())
    }

    /// The configuration the load balancer started with (or was last given).
    pub fn config(&self) -> LoadBalancer {
        self.next_config.lock().unwrap().clone().unwrap()
    }

    /// The admin `/stats` JSON.
    pub fn stats(&self) -> serde_json::Value {
        webinfra_test_support::http::get(self.admin, "/stats")
            .unwrap()
            .json()
    }
}

impl Lb {
    /// Tells the load balancer to shut down (stop taking connections,
    /// drain), leaving the backends up; dropping it waits for the end.
    pub fn begin_shutdown(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        for b in &self.backends {
            let _ = b.stop.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes a new self-signed certificate for `localhost` and 127.0.0.1 into
/// `dir` (`certificate.pem`, `key.pem`); returns the certificate (DER).
pub fn write_certificate(dir: &std::path::Path) -> Vec<u8> {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join("certificate.pem"), made.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), made.key_pair.serialize_pem()).unwrap();
    made.cert.der().to_vec()
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What the scripted backend answers, by path.
pub fn script(path: &str) -> (&'static [u8], bool) {
    let p = path.split('?').next().unwrap_or(path);
    let r: &'static [u8] = match p {
        "/nodate" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\nX-Sum: 9\r\n\r\n",
        "/close" => b"HTTP/1.1 200 OK\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nContent-Type: text/plain\r\n\r\nuntil the end",
        "/hop" => b"HTTP/1.1 200 OK\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nConnection: keep-alive, X-Internal\r\nX-Internal: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\nUpgrade: h2c\r\nTrailer: X-Checksum\r\nX-End: kept\r\nContent-Length: 2\r\n\r\nok",
        "/both" => b"HTTP/1.1 200 OK\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "/odd" => b"HTTP/1.1 200 OK\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nX-Empty:\r\nX-Spaced:   a  b  \r\nx-lower: v\r\nX-Request-Id: from-upstream\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
        "/204" => b"HTTP/1.1 204 No Content\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nX-A: 1\r\n\r\n",
        "/304" => b"HTTP/1.1 304 Not Modified\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nETag: \"e\"\r\n\r\n",
        "/http10" => b"HTTP/1.0 200 OK\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nContent-Length: 2\r\n\r\nok",
        "/204-length" => b"HTTP/1.1 204 No Content\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nContent-Length: 5\r\n\r\n",
        "/cached" => b"HTTP/1.1 200 OK\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nCache-Control: no-store\r\nContent-Length: 2\r\n\r\nok",
        "/cached-hop" => b"HTTP/1.1 200 OK\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nConnection: Cache-Control\r\nCache-Control: no-store\r\nContent-Length: 2\r\n\r\nok",
        "/sts-hop" => b"HTTP/1.1 200 OK\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nConnection: Strict-Transport-Security\r\nStrict-Transport-Security: max-age=1\r\nContent-Length: 2\r\n\r\nok",
        "/500" => b"HTTP/1.1 500 Internal Server Error\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nContent-Length: 4\r\n\r\nfail",
        "/bad-chunk" => b"HTTP/1.1 200 OK\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
        "/lf" => b"HTTP/1.1 200 OK\nDate: Wed, 02 Dec 2026 00:00:00 GMT\nX-Lf: 1\nContent-Length: 2\n\nok",
        _ => b"HTTP/1.1 200 OK\r\nServer: raw\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nETag: \"e\"\r\n\r\nhello",
    };
    let closes = p == "/close" || p == "/http10" || p == "/both";
    (r, closes)
}

/// A server on 127.0.0.1:0 that runs `serve` on each connection, in a
/// thread of its own (blocking reads and writes, as a test backend may
/// please).
pub fn thread_server(serve: impl Fn(std::net::TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let serve = serve.clone();
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

/// A backend that answers each request head with its script and records
/// the head as received.
pub fn scripted_backend() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let addr = thread_server(move |mut stream| {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                continue;
            };
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            let head = String::from_utf8(head).unwrap();
            let path = head.split(' ').nth(1).unwrap_or("/").to_string();
            let method = head.split(' ').next().unwrap_or("").to_string();
            if !head.contains("webinfra-health-check") {
                record.lock().unwrap().push(head);
            }
            let (resp, closes) = script(&path);
            let resp = if method == "HEAD" {
                // The same head, no body.
                let end = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
                &resp[..end + 4]
            } else {
                resp
            };
            if stream.write_all(resp).is_err() || closes {
                return;
            }
        }
    });
    (addr, seen)
}

/// One keep-alive GET (the fast lane takes it) on its own connection, read
/// by its `Content-Length`: the head (status line and fields) and the body.
pub fn lane_get(site: SocketAddr, host: &str, path: &str) -> (String, String) {
    lane_get_with(site, host, path, "")
}

/// [`lane_get`] with more field lines (`extra`, each ending in CRLF).
pub fn lane_get_with(site: SocketAddr, host: &str, path: &str, extra: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(site).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before an answer: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                let l = l.to_ascii_lowercase();
                l.strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("a Content-Length");
        if body.len() >= length {
            return (head.to_string(), body[..length].to_string());
        }
    }
}
