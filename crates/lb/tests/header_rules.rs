//! `[load_balancer.response_headers]` and `[load_balancer.request_headers]`:
//! fields set on or removed from every server response and every forwarded
//! request, alike in the fast lane and on the general path.

mod common;

use common::{lane_get, lane_get_with, Lb};
use webinfra_test_support::http::request;

#[test]
fn rules_set_and_remove_fields_on_both_paths() {
    let lb = Lb::start(&["a"], |cfg| {
        cfg.response_headers = vec![
            ("X-Frame-Options".into(), Some("DENY".into())),
            // The backend's /hop answer carries `x-end-to-end: kept`.
            ("X-End-To-End".into(), None),
        ];
    });
    let (head, body) = lane_get(lb.site, "x", "/hop");
    assert_eq!(body, "a");
    let lower = head.to_ascii_lowercase();
    assert_eq!(
        lower.matches("x-frame-options: deny\r\n").count(),
        1,
        "{head}"
    );
    assert!(!lower.contains("x-end-to-end"), "{head}");
    // The general path (a POST with a body) answers alike.
    let r = request(lb.site, "POST", "/hop", &[], b"{}").unwrap();
    assert_eq!(r.text(), "a");
    let frame: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "x-frame-options")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(frame, ["DENY"]);
    assert!(r.header("x-end-to-end").is_none());
    // Without rules the field goes through.
    let plain = Lb::start(&["a"], |_| {});
    let (head, _) = lane_get(plain.site, "x", "/hop");
    assert!(
        head.to_ascii_lowercase().contains("x-end-to-end: kept"),
        "{head}"
    );
}

#[test]
fn request_rules_set_and_remove_fields_on_both_paths() {
    let lb = Lb::start(&["a"], |cfg| {
        cfg.request_headers = vec![
            ("X-Env".into(), Some("prod".into())),
            ("X-Debug".into(), None),
            ("Host".into(), Some("internal.example".into())),
        ];
    });
    let extra = "X-Debug: 1\r\nx-env: test\r\n";
    let (head, body) = lane_get_with(lb.site, "www.example.com", "/lane", extra);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "a");
    let r = request(
        lb.site,
        "POST",
        "/general",
        &[
            ("Host", "www.example.com"),
            ("X-Debug", "1"),
            ("X-Env", "test"),
        ],
        b"{}",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = lb.backend("a").record.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        let env: Vec<&str> = s
            .headers
            .iter()
            .filter(|(n, _)| n == "x-env")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(env, ["prod"], "{}", s.path);
        assert!(s.header("x-debug").is_none(), "{}", s.path);
        assert_eq!(s.header("host"), Some("internal.example"), "{}", s.path);
        // What the load balancer adds itself is still there.
        assert!(s.header("x-request-id").is_some() && s.header("x-forwarded-for").is_some());
    }
}
