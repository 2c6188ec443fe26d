//! The load balancer in front of plain HTTP backends, in-process on
//! 127.0.0.1:0: weights, backups and stickiness as a client sees them.

mod common;

use common::Lb;
use std::collections::HashMap;
use std::net::SocketAddr;
use webinfra_test_support::http as client;
use webinfra_topology::Algorithm;

/// Backends `a`, `b`, ... with the given (weight, backup).
fn start(algorithm: Algorithm, servers: &[(u32, bool)]) -> Lb {
    let names = &["a", "b", "c"][..servers.len()];
    let servers = servers.to_vec();
    Lb::start(names, move |cfg| {
        cfg.algorithm = algorithm;
        for (s, (weight, backup)) in cfg.servers.iter_mut().zip(servers) {
            s.weight = weight;
            s.backup = backup;
        }
    })
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
    s.backends[0].stop.send(true).unwrap();
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

/// The server that answers a GET from `source` (another 127.0.0.0/8 address).
fn served_from(site: SocketAddr, source: std::net::IpAddr) -> String {
    use std::io::{Read, Write};
    let mut s = client::connect_from(source, site).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    got.split_once("\r\n\r\n").unwrap().1.to_string()
}

#[test]
fn source_hash_moves_only_the_clients_of_a_server_that_goes_down() {
    let s = start(Algorithm::SourceHash, &[(1, false), (1, false), (1, false)]);
    let clients: Vec<std::net::IpAddr> = (2..=31u8).map(|n| [127, 0, 0, n].into()).collect();
    let before: Vec<String> = clients.iter().map(|&c| served_from(s.site, c)).collect();
    for name in ["a", "b", "c"] {
        assert!(
            before.iter().any(|b| b == name),
            "30 clients, none on {name}: {before:?}"
        );
    }
    s.backends[1].stop.send(true).unwrap();
    // Each request is answered (the first to b retried elsewhere); only b's clients move.
    let after: Vec<String> = clients.iter().map(|&c| served_from(s.site, c)).collect();
    for (client, (b, a)) in clients.iter().zip(before.iter().zip(&after)) {
        match b.as_str() {
            "b" => assert_ne!(a, "b", "{client}"),
            _ => assert_eq!(a, b, "{client} moved though its server stayed up"),
        }
    }
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

#[test]
fn a_weight_set_at_runtime_holds_until_the_next_reload() {
    let s = start(Algorithm::WeightedRoundRobin, &[(1, false), (1, false)]);
    let post = |path: &str| client::request(s.admin, "POST", path, &[], b"").unwrap();
    let r = post("/servers/a/weight/3");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.json()["weight"].clone(), r.json()["before"].clone()),
        (3.into(), 1.into())
    );
    let count = served(s.site, 40);
    assert_eq!((count["a"], count["b"]), (30, 10));
    let metrics = client::get(s.admin, "/metrics").unwrap().text();
    assert!(
        metrics.contains("webinfra_lb_server_weight{server=\"a\"} 3"),
        "{metrics}"
    );
    assert_eq!(post("/servers/a/weight/0").status, 400);
    assert_eq!(post("/servers/a/weight/257").status, 400);
    assert_eq!(post("/servers/zz/weight/2").status, 404);
    // A reload sets the file's weights again.
    s.block_on(s.hangup.send(())).unwrap();
    common::wait_until(std::time::Duration::from_secs(5), "the reload", || {
        s.stats()["generation"] == 1
    });
    assert_eq!(s.stats()["servers"][0]["weight"], 1);
    let count = served(s.site, 40);
    assert_eq!((count["a"], count["b"]), (20, 20));
}
