//! `[load_balancer.response_headers]`: fields set on or removed from every
//! server response, alike in the fast lane and on the general path.

mod common;

use common::{lane_get, Lb};
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
