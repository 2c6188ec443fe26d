//! `[load_balancer.response_headers]`: `Name = "value"` sets a field on
//! every server response, `Name = ""` removes it; fields the load balancer
//! owns are refused, with the line and key.

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
