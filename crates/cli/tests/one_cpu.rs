//! A load balancer process pinned to one CPU (`taskset -c 0`, as the
//! benchmark and a one-core deployment run it) picks tokio's
//! single-threaded runtime and counts without locked instructions
//! (`webinfra_proxy::counter`): every request must still be counted once,
//! from four clients at once, and nothing left in flight. On its own
//! 127.78.3.0/24 block.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;
use webinfra_test_support::{http, poll, KillOnDrop};

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
    let mut stream = TcpStream::connect(site).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let expected = b"HTTP/1.1 200 OK\r\n";
    for _ in 0..count {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n")
            .unwrap();
        // Read up to the body `ok` (the head has a content-length of 2).
        let mut got = Vec::new();
        let mut byte = [0u8; 512];
        while !(got.ends_with(b"\r\n\r\nok")) {
            let n = stream.read(&mut byte).unwrap();
            assert_ne!(n, 0, "closed after {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&byte[..n]);
        }
        assert!(
            got.starts_with(expected),
            "{}",
            String::from_utf8_lossy(&got)
        );
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
    let child = Command::new("taskset")
        .args(["-c", "0", BIN, "run", "load-balancer", "-t"])
        .arg(&file)
        .arg("-s")
        .arg(dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("taskset (util-linux) runs the load balancer on one CPU");
    let _lb = KillOnDrop(child);
    let site: SocketAddr = format!("{LB}:18080").parse().unwrap();
    let admin: SocketAddr = format!("{LB}:18404").parse().unwrap();
    poll("the load balancer", Duration::from_secs(20), || {
        http::get(site, "/").ok().filter(|r| r.status == 200)
    });
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
