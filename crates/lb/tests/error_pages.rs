//! `[load_balancer.error_pages]`: the operator's bodies for the load
//! balancer's own 429, 502, 503 and 504, in the fast lane and on the
//! general path; a reload naming a page that cannot be read is refused.

mod common;

use common::{lane_get, Lb};
use std::path::PathBuf;
use webinfra_test_support::http::request;
use webinfra_topology::RateLimit;

/// A directory with `503.html` and `502.txt`.
fn pages() -> (tempfile::TempDir, Vec<(u16, PathBuf)>) {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("503.html");
    std::fs::write(&html, "<h1>Back soon</h1>\n").unwrap();
    let text = dir.path().join("502.txt");
    std::fs::write(&text, "the shop is restarting\n").unwrap();
    let limited = dir.path().join("429.json");
    std::fs::write(&limited, "{\"error\":\"slow down\"}").unwrap();
    (dir, vec![(503, html), (502, text), (429, limited)])
}

#[test]
fn the_load_balancers_own_answers_carry_the_operators_pages() {
    let (_dir, files) = pages();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let lb = Lb::start(&["a", "b"], move |cfg| {
        cfg.error_pages = files;
        // b is an address nobody listens on: its failure is a 502.
        cfg.servers[1].addr = dead;
        cfg.rate_limit = Some(RateLimit {
            per_second: 1,
            burst: 6,
        });
    });
    let post = |path: &str| request(lb.admin, "POST", path, &[], b"").unwrap();
    assert_eq!(post("/servers/a/disable").status, 200);
    // b's connect fails, nothing else is left: its 502, with the page.
    let (head, body) = lane_get(lb.site, "x", "/");
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; charset=utf-8"),
        "{head}"
    );
    assert_eq!(body, "the shop is restarting\n");
    // b is now down: no server at all, a 503 with the HTML page and Retry-After.
    let (head, body) = lane_get(lb.site, "x", "/");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(lower.contains("retry-after: 1"), "{head}");
    assert_eq!(body, "<h1>Back soon</h1>\n");
    // The general path answers alike.
    let r = request(lb.site, "POST", "/", &[], b"{}").unwrap();
    assert_eq!((r.status, r.text().as_str()), (503, "<h1>Back soon</h1>\n"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    // Past the rate limit (burst 6, all spent by now or soon): the 429 page.
    let limited = (0..10)
        .map(|_| request(lb.site, "GET", "/", &[], b"").unwrap())
        .find(|r| r.status == 429)
        .expect("a 429 within 10 requests");
    assert_eq!(limited.text(), "{\"error\":\"slow down\"}");
    assert_eq!(limited.header("content-type"), Some("application/json"));
    assert!(limited.header("retry-after").is_some());
}

#[test]
fn a_reload_naming_a_page_that_cannot_be_read_is_refused() {
    let (dir, files) = pages();
    let lb = Lb::start(&["a"], move |cfg| cfg.error_pages = files);
    {
        let mut next = lb.next_config.lock().unwrap();
        let cfg = next.as_mut().unwrap();
        cfg.error_pages = vec![(503, dir.path().join("gone.html"))];
    }
    let r = request(lb.admin, "POST", "/reload", &[], b"").unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("gone.html"), "{}", r.text());
    // The running pages stay.
    assert_eq!(
        request(lb.admin, "POST", "/servers/a/disable", &[], b"")
            .unwrap()
            .status,
        200
    );
    let (_, body) = lane_get(lb.site, "x", "/");
    assert_eq!(body, "<h1>Back soon</h1>\n");
}
