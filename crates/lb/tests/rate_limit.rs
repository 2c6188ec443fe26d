//! `[load_balancer.rate_limit]`: each client address gets `burst` requests
//! at once and `requests_per_s` after that; over it, a 429 with
//! `Retry-After`, and the request never reaches a server. Other addresses
//! are not affected, and the bucket refills with time.

mod common;

use common::{wait_until, Lb};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;
use webinfra_test_support::http::connect_from;
use webinfra_topology::RateLimit;

/// One GET from `source` (a 127.0.0.0/8 address): status and `Retry-After`.
fn get_from(source: &str, site: SocketAddr) -> (u16, Option<String>) {
    let mut s = connect_from(source.parse().unwrap(), site).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let retry = out
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .map(String::from);
    (status, retry)
}

#[test]
fn a_client_over_its_rate_gets_429_and_others_are_served() {
    let lb = Lb::start(&["a"], |cfg| {
        cfg.rate_limit = Some(RateLimit {
            per_second: 1,
            burst: 5,
        })
    });
    let served: Vec<u16> = (0..8).map(|_| get_from("127.0.0.1", lb.site).0).collect();
    assert_eq!(served, [200, 200, 200, 200, 200, 429, 429, 429]);
    let (status, retry) = get_from("127.0.0.1", lb.site);
    assert_eq!((status, retry.as_deref()), (429, Some("1")));
    assert_eq!(
        lb.backend("a").record.count(),
        5,
        "refused requests never reach the server"
    );
    // Another address has its own bucket.
    assert_eq!(get_from("127.0.0.2", lb.site).0, 200);
    let stats = lb.stats();
    assert_eq!(stats["rate_limited"], 4);
    let metrics = webinfra_test_support::http::get(lb.admin, "/metrics")
        .unwrap()
        .text();
    assert!(
        metrics.contains("webinfra_lb_rate_limited_total 4"),
        "{metrics}"
    );
    let page = webinfra_test_support::http::get(lb.admin, "/")
        .unwrap()
        .text();
    assert!(page.contains("refused by the rate limit: 4"), "{page}");
    // A token comes back within a second.
    wait_until(Duration::from_secs(5), "a token back", || {
        get_from("127.0.0.1", lb.site).0 == 200
    });
}
