//! A load balancer process pinned to one CPU (`taskset -c 0`, as the
//! benchmark and a one-core deployment run it) picks tokio's
//! single-threaded runtime and counts without locked instructions
//! (`webinfra_proxy::counter`): every request must still be counted once,
//! from four clients at once, and nothing left in flight. On its own
//! 127.78.3.0/24 block.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use webinfra_test_support::{http, run_load_balancer};

const BIN: &str = env!("CARGO_BIN_EXE_webinfra");
const LB: &str = "127.78.3.1";
const CLIENTS: usize = 4;
const REQUESTS: usize = 250;

/// A keep-alive HTTP/1.1 server answering every request with `ok`.
fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.78.3.2:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    // One head (no body), then the answer.
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if reader.get_mut().write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// `count` keep-alive GETs on one connection to `site`, each answered `ok`.
fn client(site: SocketAddr, count: usize) {
    let answers = http::keep_alive(site, &vec![("GET", "/", &b""[..]); count]).unwrap();
    assert_eq!(answers.len(), count);
    for a in answers {
        assert_eq!((a.status, a.text()), (200, "ok".to_string()));
    }
}

/// The value of the metric line starting with `prefix` in `text`.
fn metric(text: &str, prefix: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

#[test]
fn pinned_to_one_cpu_every_request_is_counted_once() {
    let (a, b) = (server(), server());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lb.toml");
    std::fs::write(
        &file,
        format!(
            "[[host]]\nname = \"lb-01\"\naddress = \"{LB}\"\n\n[load_balancer]\nhost = \"lb-01\"\nport = 18080\nadmin_port = 18404\naccess_log = false\n\n[load_balancer.health_check]\npath = \"/\"\ninterval_ms = 60000\n\n[[load_balancer.backend]]\nname = \"a\"\naddress = \"{a}\"\n\n[[load_balancer.backend]]\nname = \"b\"\naddress = \"{b}\"\n"
        ),
    )
    .unwrap();
    let mut pinned = Command::new("taskset");
    pinned.args(["-c", "0", BIN]);
    let site: SocketAddr = format!("{LB}:18080").parse().unwrap();
    let admin: SocketAddr = format!("{LB}:18404").parse().unwrap();
    let _lb = run_load_balancer(pinned, &file, &dir.path().join("state"), site);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| std::thread::spawn(move || client(site, REQUESTS)))
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let text = http::get(admin, "/metrics").unwrap().text();
    let served: u64 = ["a", "b"]
        .iter()
        .map(|s| {
            metric(
                &text,
                &format!("webinfra_lb_responses_total{{server=\"{s}\",class=\"2xx\"}}"),
            )
        })
        .sum();
    // The first GET (readiness) and the clients' requests.
    assert_eq!(served, (CLIENTS * REQUESTS + 1) as u64, "{text}");
    for s in ["a", "b"] {
        let prefix = format!("webinfra_lb_server_in_flight{{server=\"{s}\"}}");
        assert_eq!(metric(&text, &prefix), 0, "{text}");
    }
    // Round robin over both: each took half, give or take the readiness GET.
    let a_count = metric(
        &text,
        "webinfra_lb_responses_total{server=\"a\",class=\"2xx\"}",
    );
    assert!(a_count.abs_diff(served - a_count) <= 1, "{text}");
}
