//! Database failover through the whole stack (client -> load balancer -> web
//! -> app -> MariaDB), with real `mariadbd` kills and a primary that hangs.
//! Each test has its own stack on its own block (127.77.6-8.0/24 and
//! 127.77.10.0/24), so they run in parallel.

use std::collections::HashSet;
use std::time::{Duration, Instant};
use webinfra_test_support::load::{Write, Writers};
use webinfra_test_support::{freeze, http, kill9, mariadb, poll, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webinfra");

/// Every text stored on `node`, via the application's own credentials.
fn stored_texts(stack: &Stack, node: &str) -> HashSet<String> {
    let out = mariadb::query(
        stack.db_named(node),
        "webinfra_app",
        &stack.app_password(),
        "SELECT text FROM foobar.messages",
    );
    assert!(out.ok, "{node}: {}", out.stderr);
    out.stdout.lines().map(String::from).collect()
}

fn checksum(stack: &Stack, node: &str) -> String {
    let out = mariadb::query(
        stack.db_named(node),
        "webinfra_app",
        &stack.app_password(),
        "CHECKSUM TABLE foobar.messages",
    );
    assert!(out.ok, "{node}: {}", out.stderr);
    out.stdout.trim().to_string()
}

fn assert_no_acknowledged_write_lost(stack: &Stack, writes: &[Write]) {
    let primary = stack.primary().expect("a primary");
    let stored = stored_texts(stack, &primary);
    let acked: Vec<&Write> = writes.iter().filter(|w| w.status == 201).collect();
    let lost: Vec<&str> = acked
        .iter()
        .filter(|w| !stored.contains(&w.text))
        .map(|w| w.text.as_str())
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
}

/// Waits until both nodes have the same data and compares checksums.
fn assert_converged(stack: &Stack) {
    poll(
        "the replica to converge with the primary",
        Duration::from_secs(30),
        || {
            let c = stack.cluster();
            let nodes = c["nodes"].as_array()?.clone();
            let positions: HashSet<&str> = nodes
                .iter()
                .filter_map(|n| n["probe"]["gtid_current_pos"].as_str())
                .collect();
            let roles: Vec<&str> = nodes.iter().filter_map(|n| n["role"].as_str()).collect();
            (positions.len() == 1 && roles.contains(&"primary") && roles.contains(&"replica"))
                .then_some(())
        },
    );
    assert_eq!(
        checksum(stack, "db-01").split('\t').nth(1),
        checksum(stack, "db-02").split('\t').nth(1),
        "CHECKSUM TABLE differs"
    );
}

#[test]
fn killing_the_primary_under_write_load_five_times_loses_no_acknowledged_write() {
    let stack = Stack::start(BIN.as_ref(), 77, 6);
    let writers = Writers::start(stack.site(), 4, "kill");
    for round in 1..=5 {
        let before = writers.acknowledged();
        poll("writes to be flowing", Duration::from_secs(10), || {
            (writers.acknowledged() >= before + 50).then_some(())
        });
        let old = stack.primary().expect("a primary");
        assert!(kill9(stack.mariadbd_pid(&old)));
        let killed = Instant::now();
        // A write sent after the kill must be acknowledged within 2 s of it.
        let recovered = poll(
            "a write sent after the kill to succeed",
            Duration::from_secs(10),
            || {
                writers
                    .log()
                    .iter()
                    .find(|w| w.status == 201 && w.sent > killed)
                    .map(|w| w.answered.duration_since(killed))
            },
        );
        assert!(
            recovered <= Duration::from_secs(2),
            "round {round}: writes came back after {recovered:?}"
        );
        let new = poll("a new primary", Duration::from_secs(5), || {
            stack.primary().filter(|p| *p != old)
        });
        assert_ne!(new, old);
        let out = stack.webinfra(&["start", &old]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        poll(
            &format!("round {round}: {old} to rejoin as a replica"),
            Duration::from_secs(30),
            || (stack.role_of(&old).as_deref() == Some("replica")).then_some(()),
        );
    }
    let writes = writers.stop();
    assert!(writes.iter().filter(|w| w.status == 201).count() > 500);
    assert_no_acknowledged_write_lost(&stack, &writes);
    assert_converged(&stack);
}

/// A primary that hangs (SIGSTOP) under write load is replaced; when it
/// runs again, the commits it held finish on it -- a node now out of the
/// cluster -- and must not have been acknowledged.
#[test]
fn a_primary_that_hangs_through_a_failover_has_no_acknowledged_write_lost() {
    let stack = Stack::start(BIN.as_ref(), 77, 10);
    let writers = Writers::start(stack.site(), 4, "hang");
    poll("writes to be flowing", Duration::from_secs(10), || {
        (writers.acknowledged() >= 50).then_some(())
    });
    let old = stack.primary().expect("a primary");
    let frozen = freeze(stack.mariadbd_pid(&old));
    poll("a new primary", Duration::from_secs(30), || {
        stack.primary().filter(|p| *p != old)
    });
    // It runs again: what it held completes there.
    drop(frozen);
    let before = writers.acknowledged();
    poll("writes on the new primary", Duration::from_secs(20), || {
        (writers.acknowledged() >= before + 50).then_some(())
    });
    poll(
        &format!("{old} out of the primary's place"),
        Duration::from_secs(10),
        || (stack.role_of(&old).as_deref() != Some("primary")).then_some(()),
    );
    let writes = writers.stop();
    assert_no_acknowledged_write_lost(&stack, &writes);
}

#[test]
fn a_switchover_under_write_load_loses_nothing_and_pauses_writes_briefly() {
    let stack = Stack::start(BIN.as_ref(), 77, 7);
    let writers = Writers::start(stack.site(), 4, "switch");
    poll("writes to be flowing", Duration::from_secs(10), || {
        (writers.acknowledged() >= 100).then_some(())
    });
    for target in ["db-02", "db-01"] {
        let out = stack.webinfra(&["db", "switchover", "--to", target]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stack.primary().as_deref(), Some(target));
        let paused = stack.cluster()["last_failover"]["writes_paused_ms"]
            .as_u64()
            .unwrap();
        assert!(paused <= 1000, "writes paused {paused} ms");
        let before = writers.acknowledged();
        poll(
            "writes to flow to the new primary",
            Duration::from_secs(10),
            || (writers.acknowledged() >= before + 100).then_some(()),
        );
    }
    let writes = writers.stop();
    let failed: Vec<&Write> = writes.iter().filter(|w| w.status != 201).collect();
    assert!(
        failed.is_empty(),
        "{} writes failed during switchovers: {:?}",
        failed.len(),
        failed.first()
    );
    assert_no_acknowledged_write_lost(&stack, &writes);
    assert_converged(&stack);
}

#[test]
fn a_former_primary_that_diverged_is_kept_out_not_merged() {
    let stack = Stack::start(BIN.as_ref(), 77, 8);
    let post = |text: &str| {
        http::post_json(
            stack.site(),
            "/api/messages",
            &serde_json::json!({"author": "d", "text": text}),
        )
        .unwrap()
    };
    // The replica goes away; a write lands on the primary alone (async).
    assert!(stack.webinfra(&["stop", "db-02"]).status.success());
    let lonely = post("only on db-01");
    assert_eq!(lonely.status, 201);
    let lonely_id = lonely.json()["id"].as_u64().unwrap();
    // The primary goes away too and the replica comes back: it was not
    // replicating when the primary was lost, so it is not promoted on its own
    // (it lacks a write the primary acknowledged).
    assert!(stack.webinfra(&["stop", "db-01"]).status.success());
    assert!(stack.webinfra(&["start", "db-02"]).status.success());
    stack.wait_promotion_refused("db-02");
    assert_eq!(stack.primary().as_deref(), Some("db-01"));
    // The operator accepts the loss: `webinfra db failover` promotes it.
    let out = stack.webinfra(&["db", "failover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    poll("db-02 to be promoted", Duration::from_secs(30), || {
        (stack.primary().as_deref() == Some("db-02")).then_some(())
    });
    assert_eq!(post("on db-02").status, 201);
    // The old primary returns: it has a write the new primary never had.
    assert!(stack.webinfra(&["start", "db-01"]).status.success());
    poll(
        "db-01 to be reported diverged",
        Duration::from_secs(30),
        || (stack.role_of("db-01").as_deref() == Some("diverged")).then_some(()),
    );
    let cluster = stack.cluster();
    assert_eq!(cluster["status"], "degraded");
    assert_eq!(cluster["diverged"][0], "db-01");
    // Kept out: read-only, not replicating, and its write is not merged.
    let out = mariadb::query(
        stack.db(1),
        "webinfra_app",
        &stack.app_password(),
        "INSERT INTO foobar.messages (author, text) VALUES ('x', 'y')",
    );
    assert!(!out.ok, "the diverged node accepted a write");
    assert!(!stored_texts(&stack, "db-02").contains("only on db-01"));
    let r = http::get(stack.site(), &format!("/api/messages/{lonely_id}")).unwrap();
    assert!(
        r.status == 404 || r.json()["text"] != "only on db-01",
        "{}",
        r.text()
    );
}
