//! Admin addresses: changes only from the topology's hosts, each logged with its source.

use crate::stack;
use std::time::Duration;
use webinfra_test_support::{http, poll};

#[test]
fn the_database_monitor_refuses_changes_from_an_address_that_is_no_host() {
    let (stack, _serial) = stack();
    let primary = stack.primary();
    // 127.77.1.200 is in the stack's block but names no host of its topology.
    let stranger = stack.ip(200);
    for path in ["/switchover", "/failover", "/rejoin/db-02"] {
        let r = http::request_from(stranger, stack.monitor(), "POST", path, &[], b"").unwrap();
        assert_eq!(r.status, 403, "POST {path}: {}", r.text());
        assert!(r.text().contains("127.77.1.200"), "{}", r.text());
    }
    assert_eq!(
        stack.primary(),
        primary,
        "a refused request moved the primary"
    );
    // Reading stays open to anyone.
    let r = http::request_from(stranger, stack.monitor(), "GET", "/cluster", &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // A host of the topology (lb-01's own address) is let through (an unknown node: 404).
    let r = http::request_from(
        stack.ip(1),
        stack.monitor(),
        "POST",
        "/rejoin/db-09",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    poll(
        "the refusals and the accepted request in the monitor's log, with their sources",
        Duration::from_secs(10),
        || {
            let log = stack.log("lb-01", "db-monitor");
            let refused = log
                .lines()
                .filter(|l| l.contains("admin request refused") && l.contains("127.77.1.200"))
                .count();
            let accepted = log
                .lines()
                .any(|l| l.contains("admin request accepted") && l.contains("127.77.1.1:"));
            (refused >= 3 && accepted).then_some(())
        },
    );
}

#[test]
fn the_load_balancer_refuses_changes_from_an_address_that_is_no_host_and_logs_them() {
    let (stack, _serial) = stack();
    let stranger = stack.ip(201);
    let r = http::request_from(
        stranger,
        stack.lb_admin(),
        "POST",
        "/servers/server-01/disable",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    poll(
        "the refusal in the load balancer's log",
        Duration::from_secs(10),
        || {
            stack
                .log("lb-01", "load-balancer")
                .lines()
                .any(|l| l.contains("admin request refused") && l.contains("127.77.1.201"))
                .then_some(())
        },
    );
}

#[test]
fn a_rotated_log_is_reopened_on_sigusr1() {
    let (stack, _serial) = stack();
    let logs = stack.state_dir.join("logs");
    let log = logs.join("lb-01-load-balancer.log");
    let rotated = logs.join("lb-01-load-balancer.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // logrotate's postrotate: SIGUSR1 to the supervisor, which passes it on.
    let pid: u32 = std::fs::read_to_string(stack.state_dir.join("supervisor.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(webinfra_process::signal(pid, webinfra_process::SIGUSR1));
    poll(
        "a new log of the old name, written to",
        Duration::from_secs(10),
        || {
            // A request's access log line goes to the reopened file.
            let _ = http::get(stack.site(), "/healthz-after-rotation");
            let text = std::fs::read_to_string(&log).ok()?;
            (text.contains("log reopened") && text.contains("/healthz-after-rotation"))
                .then_some(())
        },
    );
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        !old.contains("/healthz-after-rotation"),
        "the rotated file is still written"
    );
    // Every component was told, not only the load balancer.
    for (host, role) in [
        ("server-01", "web"),
        ("server-02", "app"),
        ("db-01", "database"),
        ("lb-01", "db-monitor"),
    ] {
        let reopened = logs.join(format!("{host}-{role}.log"));
        poll(
            &format!("{host}/{role} reopened its log"),
            Duration::from_secs(10),
            || {
                std::fs::read_to_string(&reopened)
                    .ok()?
                    .contains("log reopened")
                    .then_some(())
            },
        );
    }
}
