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
