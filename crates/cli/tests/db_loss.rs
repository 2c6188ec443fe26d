//! Losing database nodes (kill -9 of `mariadbd`): reads fall back to the
//! primary when the replica is gone; writes fail loudly (503 + Retry-After)
//! when the primary is gone, never with a false success. Own block: 127.77.5.0/24.

use serde_json::json;
use std::time::Duration;
use webinfra_test_support::{http, kill9, poll, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webinfra");

fn kill_mariadbd(stack: &Stack, node: &str) {
    let pid_file = stack.state_dir.join(node).join("mariadb/run/mariadb.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert!(kill9(pid.trim().parse().unwrap()), "kill -9 {pid}");
}

#[test]
fn losing_the_replica_moves_reads_to_the_primary_and_losing_the_primary_fails_writes_loudly() {
    let stack = Stack::start(BIN.as_ref(), 77, 5);
    let post = |text: &str| {
        http::post_json(
            stack.site(),
            "/api/messages",
            &json!({"author": "dba", "text": text}),
        )
        .unwrap()
    };
    assert_eq!(post("before").status, 201);

    kill_mariadbd(&stack, "db-02");
    for _ in 0..10 {
        let r = http::get(stack.site(), "/api/messages").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-db-node"), Some("db-01"));
    }
    let r = post("replica down");
    assert_eq!(
        r.status,
        201,
        "writes do not need the replica: {}",
        r.text()
    );

    kill_mariadbd(&stack, "db-01");
    let r = post("nobody home");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        r.json()["error"].as_str().unwrap().contains("not stored"),
        "{}",
        r.text()
    );

    // The replica comes back first. It missed "replica down", so it must not
    // be promoted in the primary's place: that write would be lost.
    let out = stack.webinfra(&["start", "db-02"]);
    assert!(out.status.success());
    stack.wait_promotion_refused("db-02");
    assert_eq!(stack.primary().as_deref(), Some("db-01"));
    // The primary back too: the failed write is nowhere, the others are.
    let out = stack.webinfra(&["start", "db-01"]);
    assert!(out.status.success());
    poll(
        "every stored message, and only those, to be served again",
        Duration::from_secs(60),
        || {
            let r = http::get(stack.site(), "/api/messages?limit=100").ok()?;
            if r.status != 200 {
                return None;
            }
            let texts: Vec<String> = r.json()["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|m| m["text"].as_str().map(String::from))
                .collect();
            assert!(
                !texts.iter().any(|t| t == "nobody home"),
                "a failed write appeared: {texts:?}"
            );
            (texts == ["replica down", "before"]).then_some(())
        },
    );
}
