//! Stopping and starting the stack keeps every message, in the foreground
//! (SIGTERM) and detached (`up --detach`, `down`). Own block: 127.77.3.0/24.

use serde_json::json;
use std::time::Duration;
use webinfra_test_support::{http, poll, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webinfra");

/// Pids of every process whose command line mentions `needle` (the stack's
/// own state dir), mariadbd included. Only read, never signalled by name.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn up_stop_up_keeps_the_data_and_down_stops_a_detached_stack() {
    let mut stack = Stack::start(BIN.as_ref(), 77, 3);
    let state = stack.state_dir.display().to_string();
    let r = http::post_json(
        stack.site(),
        "/api/messages",
        &json!({"author": "eve", "text": "still here?"}),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_u64().unwrap();

    assert_eq!(stack.stop(), Some(0), "up exits 0 after SIGTERM");
    let left = processes_mentioning(&state);
    assert!(left.is_empty(), "processes left after stop: {left:?}");
    assert!(
        http::get(stack.site(), "/").is_err(),
        "the site still answers"
    );
    for node in ["db-01", "db-02"] {
        let log = std::fs::read_to_string(stack.state_dir.join(node).join("mariadb/mariadb.err"))
            .unwrap();
        assert!(
            log.trim_end().ends_with("Shutdown complete"),
            "{node} did not shut down cleanly:\n{log}"
        );
    }

    stack.up();
    let r = http::get(stack.site(), &format!("/api/messages/{id}")).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["text"], "still here?");
    let r = http::post_json(
        stack.site(),
        "/api/messages",
        &json!({"author": "eve", "text": "second life"}),
    )
    .unwrap();
    assert_eq!(r.status, 201);
    let second = r.json()["id"].as_u64().unwrap();
    assert!(second > id);
    poll(
        "the new message on the replica",
        Duration::from_secs(10),
        || {
            let r = http::get(stack.site(), &format!("/api/messages/{second}")).unwrap();
            (r.status == 200 && r.header("x-db-node") == Some("db-02")).then_some(())
        },
    );
    assert_eq!(stack.stop(), Some(0));

    // Detached: `up --detach` returns once healthy; `down` stops everything.
    let guard = DownOnDrop(&stack);
    let out = stack.webinfra(&["up", "--detach"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is up: http://"));
    let r = http::get(stack.site(), &format!("/api/messages/{second}")).unwrap();
    assert_eq!(r.status, 200);
    let again = stack.webinfra(&["up"]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "a second `up` on the same state dir is refused"
    );
    let out = stack.webinfra(&["down"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(guard);
    let left = processes_mentioning(&state);
    assert!(left.is_empty(), "processes left after down: {left:?}");
}

/// Stops a detached stack even if the test fails half-way.
struct DownOnDrop<'a>(&'a Stack);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.webinfra(&["down"]);
    }
}
