//! The load balancer in front of plain HTTP backends, in-process on
//! 127.0.0.1:0: weights, backups and stickiness as a client sees them.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use webinfra_test_support::http as client;
use webinfra_topology::{Algorithm, Backend, HealthCheck, LoadBalancer};

/// A backend that answers every request with its name; stops when `stop` fires.
async fn backend(
    name: &'static str,
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => r.unwrap(),
            _ = stop.changed() => return,
        };
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |_req| async move {
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(name))))
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! { _ = conn => {}, _ = stop.changed() => {} }
        });
    }
}

/// A load balancer over backends named `a`, `b`, ... with the given (weight, backup).
struct Setup {
    site: SocketAddr,
    admin: SocketAddr,
    stops: Vec<tokio::sync::watch::Sender<bool>>,
    _runtime: std::thread::JoinHandle<()>,
}

fn start(algorithm: Algorithm, servers: &[(u32, bool)]) -> Setup {
    let (tx, rx) = std::sync::mpsc::channel();
    let servers = servers.to_vec();
    let runtime = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let names = ["a", "b", "c"];
            let mut backends = Vec::new();
            let mut stops = Vec::new();
            for (i, (weight, backup)) in servers.iter().enumerate() {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                backends.push(Backend {
                    name: names[i].into(),
                    addr: l.local_addr().unwrap(),
                    weight: *weight,
                    backup: *backup,
                });
                stops.push(stop_tx);
                tokio::spawn(backend(names[i], l, stop_rx));
            }
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let site = listener.local_addr().unwrap();
            let admin_addr = admin.local_addr().unwrap();
            let config = LoadBalancer {
                host: "lb".into(),
                listen: site,
                admin: admin.local_addr().unwrap(),
                algorithm,
                servers: backends,
                health_check: HealthCheck {
                    path: "/".into(),
                    interval: Duration::from_secs(30),
                    timeout: Duration::from_secs(1),
                    rise: 2,
                    fall: 3,
                },
                access_log: false,
            };
            tx.send((site, admin_addr, stops)).unwrap();
            webinfra_lb::run(listener, admin, config, std::future::pending()).await;
        });
    });
    let (site, admin, stops) = rx.recv().unwrap();
    Setup {
        site,
        admin,
        stops,
        _runtime: runtime,
    }
}

fn served(site: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for _ in 0..n {
        let r = client::get(site, "/").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        *count.entry(r.text()).or_insert(0) += 1;
    }
    count
}

#[test]
fn weighted_round_robin_follows_the_weights() {
    let s = start(Algorithm::WeightedRoundRobin, &[(3, false), (1, false)]);
    let count = served(s.site, 40);
    assert_eq!((count["a"], count["b"]), (30, 10));
    // The same counts, as Prometheus and JSON stats.
    let metrics = client::get(s.admin, "/metrics").unwrap().text();
    assert!(
        metrics.contains("webinfra_lb_responses_total{server=\"a\",class=\"2xx\"} 30"),
        "{metrics}"
    );
    assert!(
        metrics.contains("webinfra_lb_response_seconds_count{server=\"b\"} 10"),
        "{metrics}"
    );
    let stats = client::get(s.admin, "/stats").unwrap().json();
    assert_eq!(stats["servers"][0]["stats"]["requests"], 30);
    assert_eq!(stats["servers"][0]["weight"], 3);
    let page = client::get(s.admin, "/").unwrap();
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().contains("<td>a</td>"));
}

#[test]
fn a_backup_serves_only_when_the_others_are_down() {
    let s = start(Algorithm::RoundRobin, &[(1, false), (1, true)]);
    assert_eq!(served(s.site, 10).get("a"), Some(&10));
    s.stops[0].send(true).unwrap();
    // The first request after the loss is retried on the backup: none fails.
    let count = served(s.site, 10);
    assert_eq!(count.get("b"), Some(&10), "{count:?}");
}

#[test]
fn source_hash_keeps_a_client_on_one_server() {
    let s = start(Algorithm::SourceHash, &[(1, false), (1, false), (1, false)]);
    let count = served(s.site, 20);
    assert_eq!(count.len(), 1, "{count:?}");
}

#[test]
fn drained_and_disabled_servers_get_no_requests_until_enabled() {
    let s = start(Algorithm::RoundRobin, &[(1, false), (1, false)]);
    let post = |path: &str| client::request(s.admin, "POST", path, &[], b"").unwrap();
    assert_eq!(post("/servers/a/drain").status, 200);
    assert_eq!(served(s.site, 6).get("b"), Some(&6));
    assert_eq!(post("/servers/a/enable").status, 200);
    assert_eq!(post("/servers/b/disable").status, 200);
    assert_eq!(served(s.site, 6).get("a"), Some(&6));
    let stats = client::get(s.admin, "/stats").unwrap().json();
    assert_eq!(stats["servers"][1]["admin"], "MAINT");
    assert_eq!(post("/servers/b/enable").status, 200);
    assert_eq!(served(s.site, 6).len(), 2);
    assert_eq!(post("/servers/zz/drain").status, 404);
}
