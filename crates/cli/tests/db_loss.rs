//! Losing database nodes (kill -9 of `mariadbd`): reads fall back to the
//! primary when the replica is gone; writes fail loudly (503 + Retry-After)
//! when the primary is gone, never with a false success. A replica that
//! hangs (SIGSTOP) fails no read. Own blocks: 127.77.5.0/24, 127.77.11.0/24.

use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use webinfra_test_support::{freeze, http, kill9, poll, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webinfra");

/// Posts a message as `dba`.
fn post(stack: &Stack, text: &str) -> http::Response {
    http::post_json(
        stack.site(),
        "/api/messages",
        &json!({"author": "dba", "text": text}),
    )
    .unwrap()
}

fn kill_mariadbd(stack: &Stack, node: &str) {
    let pid_file = stack.state_dir.join(node).join("mariadb/run/mariadb.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert!(kill9(pid.trim().parse().unwrap()), "kill -9 {pid}");
}

#[test]
fn losing_the_replica_moves_reads_to_the_primary_and_losing_the_primary_fails_writes_loudly() {
    let stack = Stack::start(BIN.as_ref(), 77, 5);
    let post = |text: &str| post(&stack, text);
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

#[test]
fn a_replica_that_hangs_under_read_load_fails_no_read() {
    let stack = Stack::start(BIN.as_ref(), 77, 11);
    let site = stack.site();
    let body = json!({"author": "dba", "text": "read me"});
    assert_eq!(
        http::post_json(site, "/api/messages", &body)
            .unwrap()
            .status,
        201
    );
    poll(
        "reads served by the replica",
        Duration::from_secs(10),
        || {
            let r = http::get(site, "/api/messages").ok()?;
            (r.header("x-db-node") == Some("db-02")).then_some(())
        },
    );
    // Four readers, each at most 5,000 reads, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
            std::thread::spawn(move || {
                for _ in 0..5_000 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match http::get(site, "/api/messages") {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => failed
                            .lock()
                            .unwrap()
                            .push(format!("{}: {}", r.status, r.text())),
                        Err(e) => failed.lock().unwrap().push(e.to_string()),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    poll("reads flowing", Duration::from_secs(10), || {
        (done.load(Ordering::Relaxed) >= 50).then_some(())
    });
    let frozen = freeze(stack.mariadbd_pid("db-02"));
    let before = done.load(Ordering::Relaxed);
    poll(
        "reads going on while the replica hangs",
        Duration::from_secs(20),
        || (done.load(Ordering::Relaxed) >= before + 200).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    drop(frozen);
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} reads failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}

#[test]
fn semi_sync_is_reported_off_while_no_replica_acknowledges() {
    let stack = Stack::start(BIN.as_ref(), 77, 12);
    let post = |text: &str| post(&stack, text);
    assert_eq!(post("acknowledged by db-02").status, 201);
    poll(
        "semi-sync on with db-02 acknowledging",
        Duration::from_secs(20),
        || {
            let c = stack.cluster();
            (c["semi_sync"] == true && c["semi_sync_clients"] == 1).then_some(())
        },
    );

    kill_mariadbd(&stack, "db-02");
    // Commits go on without a replica's acknowledgement: MariaDB counts them.
    assert_eq!(post("acknowledged by nobody").status, 201);
    let c = poll(
        "the monitor to report what MariaDB reports: no client, a commit without one",
        Duration::from_secs(20),
        || {
            let c = stack.cluster();
            (c["semi_sync_clients"] == 0 && c["semi_sync_no_tx"].as_u64() >= Some(1)).then_some(c)
        },
    );
    assert_eq!(c["semi_sync"], false, "{c:#}");
    let detail = c["semi_sync_detail"].as_str().unwrap();
    assert!(detail.starts_with("OFF"), "{detail}");
    let metrics = http::get(stack.monitor(), "/metrics").unwrap().text();
    assert!(
        metrics.contains("\nwebinfra_db_semi_sync_active 0\n")
            && metrics.contains("\nwebinfra_db_semi_sync_clients 0\n"),
        "{metrics}"
    );
    let out = stack.webinfra(&["db", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("semi-sync: OFF"), "{text}");
    let out = stack.webinfra(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("semi-sync OFF"), "{text}");

    // The replica back: it acknowledges again, and the report says so.
    assert!(stack.webinfra(&["start", "db-02"]).status.success());
    poll("semi-sync on again", Duration::from_secs(60), || {
        let c = stack.cluster();
        (c["semi_sync"] == true && c["semi_sync_clients"] == 1).then_some(())
    });
}
