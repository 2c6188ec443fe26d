//! What the load balancer does with requests: balancing per request and per
//! connection, refusals, request ids through every tier, HTTPS and HTTP/2,
//! drain and enable.

use crate::stack;
use std::time::Duration;
use webinfra_test_support::{http, poll};

#[test]
fn round_robin_alternates_between_the_two_servers() {
    let (stack, _serial) = stack();
    let served: Vec<String> = (0..10)
        .map(|_| {
            let r = http::get(stack.site(), "/api/messages").unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            r.header("x-served-by").unwrap().to_string()
        })
        .collect();
    for pair in served.windows(2) {
        assert_ne!(pair[0], pair[1], "not alternating: {served:?}");
    }
    assert_eq!(
        served.iter().filter(|s| *s == "server-01").count(),
        5,
        "{served:?}"
    );
    assert_eq!(
        served.iter().filter(|s| *s == "server-02").count(),
        5,
        "{served:?}"
    );
}

#[test]
fn one_keep_alive_connection_is_balanced_request_by_request() {
    // A browser's connection: plain GETs and a HEAD (the load balancer's
    // fast lane), a POST with a body in the middle (its general path), on
    // one connection; every answer whole, each request balanced on its own.
    let (stack, _serial) = stack();
    let post: &[u8] = br#"{"author":"kai","text":"kept alive"}"#;
    let requests: [(&str, &str, &[u8]); 6] = [
        ("GET", "/api/messages?limit=1", b""),
        ("GET", "/", b""),
        ("POST", "/api/messages", post),
        ("GET", "/api/messages?limit=1", b""),
        ("HEAD", "/", b""),
        ("GET", "/api/messages?limit=1", b""),
    ];
    let answers = http::keep_alive(stack.site(), &requests).unwrap();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 201, 200, 200, 200]);
    assert!(
        answers[0].json()["messages"].is_array(),
        "{}",
        answers[0].text()
    );
    assert!(answers[1].text().contains("<html"), "{}", answers[1].text());
    assert!(answers[4].body.is_empty(), "HEAD has no body");
    let mut ids: Vec<&str> = answers
        .iter()
        .map(|a| a.header("x-request-id").expect("a request id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), answers.len(), "one id per request: {ids:?}");
    let served: Vec<&str> = answers
        .iter()
        .map(|a| a.header("x-served-by").expect("x-served-by"))
        .collect();
    for pair in served.windows(2) {
        assert_ne!(pair[0], pair[1], "not balanced per request: {served:?}");
    }
}

#[test]
fn a_malformed_request_is_rejected_at_the_load_balancer() {
    let (stack, _serial) = stack();
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let r = http::send_raw(stack.site(), raw).unwrap();
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(raw));
        assert!(r.header("x-served-by").is_none(), "reached a server");
    }
    // Content-Length with chunked: normalised as RFC 9112 6.3 says (the
    // chunked framing wins, Content-Length is dropped before forwarding).
    let raw = b"POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1d\r\n{\"author\":\"te\",\"text\":\"smug\"}\r\n0\r\n\r\n";
    let r = http::send_raw(stack.site(), raw).unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["text"], "smug");
    // Too many or too large headers: 431, before anything reaches a server.
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge = format!("X-Big: {}\r\n", "a".repeat(70_000));
    for extra in [many, huge] {
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
        let r = http::send_raw(stack.site(), raw.as_bytes()).unwrap();
        assert_eq!(r.status, 431);
        assert!(r.header("x-served-by").is_none(), "reached a server");
    }
    let raw = b"POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n";
    let r = http::send_raw(stack.site(), raw).unwrap();
    assert_eq!(r.status, 501);
    assert!(r.header("x-served-by").is_none(), "reached a server");
}

#[test]
fn the_request_id_reaches_every_tier_and_their_logs() {
    let (stack, _serial) = stack();
    let id = format!("test-{}", std::process::id());
    let r = http::request(
        stack.site(),
        "GET",
        "/api/messages",
        &[("X-Request-Id", &id)],
        b"",
    )
    .unwrap();
    assert_eq!(r.header("x-request-id"), Some(id.as_str()));
    let server = r.header("x-served-by").unwrap().to_string();
    for log in [
        "lb-01-load-balancer.log".to_string(),
        format!("{server}-web.log"),
        format!("{server}-app.log"),
    ] {
        let path = stack.state_dir.join("logs").join(&log);
        poll(&format!("{id} in {log}"), Duration::from_secs(5), || {
            std::fs::read_to_string(&path)
                .ok()?
                .contains(&id)
                .then_some(())
        });
    }
    let generated = http::get(stack.site(), "/api/messages").unwrap();
    assert_eq!(generated.header("x-request-id").map(str::len), Some(32));
}

#[test]
fn https_is_served_on_the_self_signed_certificate_with_http2() {
    let (stack, _serial) = stack();
    let ca = stack.state_dir.join("lb-01/tls/ca.pem");
    let site = stack.secure_site();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .arg("--cacert")
        .arg(&ca)
        .arg("--resolve")
        .arg(format!("www.foobar.com:{}:{}", site.port(), site.ip()))
        .arg(format!(
            "https://www.foobar.com:{}/api/messages",
            site.port()
        ))
        .output()
        .expect("curl is installed");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn http2_prior_knowledge_is_served() {
    let (stack, _serial) = stack();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .arg(format!("http://{}/api/messages", stack.site()))
        .output()
        .expect("curl is installed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 2");
}

#[test]
fn webinfra_lb_drain_takes_a_server_out_and_enable_puts_it_back() {
    let (stack, _serial) = stack();
    let out = stack.webinfra(&["lb", "drain", "server-01"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                http::get(stack.site(), "/api/messages")
                    .unwrap()
                    .header("x-served-by")
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert!(by(6).iter().all(|s| s == "server-02"));
    assert!(stack
        .webinfra(&["lb", "enable", "server-01"])
        .status
        .success());
    assert!(by(6).iter().any(|s| s == "server-01"));
    // Bad input exits 2: a server that does not exist, a weight out of
    // range, a weight under round robin (which would ignore it).
    let bad = stack.webinfra(&["lb", "drain", "server-09"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no server named server-09"));
    let out = stack.webinfra(&["lb", "weight", "server-01", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("round-robin, which ignores weights"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stack
            .webinfra(&["lb", "weight", "server-01", "500"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        stack.webinfra(&["lb", "weight", "server-01"]).status.code(),
        Some(2)
    );
}

#[test]
fn commands_given_only_the_state_dir_find_the_stacks_topology() {
    let (stack, _serial) = stack();
    let only_s = |args: &[&str]| {
        std::process::Command::new(crate::BIN)
            .args(args)
            .arg("-s")
            .arg(&stack.state_dir)
            .env_remove("WEBINFRA_TOPOLOGY")
            .env_remove("WEBINFRA_STATE_DIR")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap()
    };
    let out = only_s(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("127.77.1.11:18000"), "{table}");
    let out = only_s(&["lb", "enable", "server-01"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = only_s(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `start` on a running component says so.
    let out = only_s(&["start", "server-01/web"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("server-01/web is already running"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn every_refused_request_is_logged_with_its_peer_and_reason() {
    let (stack, _serial) = stack();
    let client = stack.ip(203);
    let refused: [&[u8]; 5] = [
        // hyper's own refusals (a malformed head, one too large) ...
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
        // ... the proxy's checks ...
        b"GET http://x/ HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
        // ... and the fast lane's.
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    ];
    for raw in refused {
        let r = http::send_raw_from(client, stack.site(), raw).unwrap();
        assert!(
            (400..=505).contains(&r.status),
            "{:?}: {}",
            String::from_utf8_lossy(raw),
            r.status
        );
    }
    poll(
        "a warning per refusal, naming the client",
        Duration::from_secs(10),
        || {
            let lines = stack
                .log("lb-01", "load-balancer")
                .lines()
                .filter(|l| l.contains("request refused") && l.contains("127.77.1.203"))
                .count();
            (lines >= refused.len()).then_some(())
        },
    );
}
