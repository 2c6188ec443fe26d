//! What the load balancer does to what it forwards:
//! `[load_balancer.response_headers]` and `[load_balancer.request_headers]`
//! (`Name = "value"` sets a field on every server response or forwarded
//! request, `Name = ""` removes it; fields the load balancer owns are
//! refused) and
//! `[load_balancer.error_pages]` (bodies for its own 429, 502, 503 and
//! 504), each error with its line and key.

mod support;
use support::{assert_one, line_of};
use webinfra_topology::Topology;

const LB_ONLY: &str = include_str!("../../../topologies/lb-only.toml");

fn with_rules(rules: &str) -> String {
    format!("{LB_ONLY}\n[load_balancer.response_headers]\n{rules}\n")
}

#[test]
fn rules_set_and_remove_fields() {
    let src = with_rules("X-Frame-Options = \"DENY\"\nServer = \"\"");
    let lb = Topology::parse_str(&src, "t.toml")
        .unwrap()
        .load_balancer
        .unwrap();
    assert_eq!(
        lb.response_headers,
        [
            ("Server".to_string(), None),
            ("X-Frame-Options".to_string(), Some("DENY".to_string()))
        ]
    );
}

#[test]
fn the_load_balancers_own_fields_and_bad_names_or_values_are_refused() {
    let src = with_rules("Content-Length = \"5\"");
    let line = line_of(&src, "Content-Length = ");
    assert_one(
        &src,
        line,
        18,
        "load_balancer.response_headers.Content-Length",
        "own to write",
    );
    let src = with_rules("\"X Bad\" = \"1\"");
    let line = line_of(&src, "X Bad");
    assert_one(
        &src,
        line,
        11,
        "load_balancer.response_headers.X Bad",
        "not a field name",
    );
    let src = with_rules("X-Note = \"caf\u{e9}\"");
    let line = line_of(&src, "X-Note");
    assert_one(
        &src,
        line,
        10,
        "load_balancer.response_headers.X-Note",
        "printable ASCII",
    );
}

#[test]
fn error_pages_are_for_the_load_balancers_own_answers() {
    let src = format!("{LB_ONLY}\n[load_balancer.error_pages]\n503 = \"errors/503.html\"\n");
    let lb = Topology::parse_str(&src, "t.toml")
        .unwrap()
        .load_balancer
        .unwrap();
    assert_eq!(lb.error_pages, [(503, "errors/503.html".into())]);
    let src = format!("{LB_ONLY}\n[load_balancer.error_pages]\n404 = \"errors/404.html\"\n");
    let line = line_of(&src, "404 = ");
    assert_one(
        &src,
        line,
        7,
        "load_balancer.error_pages.404",
        "429, 502, 503 and 504",
    );
}

#[test]
fn request_rules_may_set_the_host_but_not_remove_it() {
    let src = format!(
        "{LB_ONLY}\n[load_balancer.request_headers]\nHost = \"internal.example\"\nX-Debug = \"\"\n"
    );
    let lb = Topology::parse_str(&src, "t.toml")
        .unwrap()
        .load_balancer
        .unwrap();
    assert_eq!(
        lb.request_headers,
        [
            ("Host".to_string(), Some("internal.example".to_string())),
            ("X-Debug".to_string(), None)
        ]
    );
    let src = format!("{LB_ONLY}\n[load_balancer.request_headers]\nHost = \"\"\n");
    let line = line_of(&src, "Host = ");
    assert_one(
        &src,
        line,
        8,
        "load_balancer.request_headers.Host",
        "needs its Host",
    );
    let src = format!("{LB_ONLY}\n[load_balancer.request_headers]\nExpect = \"100-continue\"\n");
    let line = line_of(&src, "Expect = ");
    assert_one(
        &src,
        line,
        10,
        "load_balancer.request_headers.Expect",
        "own to write",
    );
}
