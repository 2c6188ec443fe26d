//! WebSocket and other protocol switches through the load balancer: the 101
//! and the tunnel after it, which outlives the idle keep-alive timeout.

mod common;

use common::Lb;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A server that answers an upgrade with 101 (plus `hello` in the new
/// protocol), then echoes; it records the request head it got.
fn echo_server() -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_lowercase();
                if !head.starts_with("get /ws ") {
                    // A health check.
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                }
                let _ = tx.send(head);
                s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello").unwrap();
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn read_exactly(s: &mut TcpStream, n: usize) -> String {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap();
    String::from_utf8(buf).unwrap()
}

#[test]
fn an_upgrade_is_switched_and_the_tunnel_outlives_the_keep_alive_timeout() {
    let (addr, heads) = echo_server();
    let lb = Lb::start(&[], move |cfg| {
        cfg.servers = common::config(&[("ws", addr)]).servers;
        cfg.clients.keep_alive_timeout = Duration::from_millis(200);
    });
    let mut s = TcpStream::connect(lb.site).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed before the 101");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("upgrade: echo") && head.contains("connection: upgrade"),
        "{head}"
    );
    let seen = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        seen.contains("connection: upgrade") && seen.contains("upgrade: echo"),
        "{seen}"
    );
    assert_eq!(
        read_exactly(&mut s, 5),
        "hello",
        "bytes sent right after the 101 arrive"
    );
    s.write_all(b"ping").unwrap();
    assert_eq!(read_exactly(&mut s, 4), "ping");
    // Quiet for longer than the keep-alive timeout: a tunnel is not idle HTTP.
    std::thread::sleep(Duration::from_millis(500));
    s.write_all(b"pong").unwrap();
    assert_eq!(read_exactly(&mut s, 4), "pong");
    assert_eq!(
        lb.stats()["servers"][0]["in_flight"],
        1,
        "the tunnel holds its slot"
    );
}

#[test]
fn an_h2c_upgrade_is_never_passed_on() {
    // A tunnel of HTTP/2 straight to the server would carry requests the
    // load balancer never sees (h2c smuggling): served as plain HTTP/1.1.
    let lb = Lb::start(&["a"], |_| {});
    let r = webinfra_test_support::http::request(
        lb.site,
        "GET",
        "/",
        &[
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "a"));
    let seen = lb.backend("a").record.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.header("upgrade"), None);
    assert_eq!(seen.header("http2-settings"), None);
}

#[test]
fn an_upgrade_the_server_declines_is_a_plain_response() {
    let lb = Lb::start(&["a"], |_| {});
    let r = webinfra_test_support::http::request(
        lb.site,
        "GET",
        "/",
        &[("Connection", "Upgrade"), ("Upgrade", "websocket")],
        b"",
    )
    .unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "a"));
    let seen = lb.backend("a").record.seen.lock().unwrap()[0].clone();
    assert_eq!(
        seen.header("upgrade"),
        Some("websocket"),
        "the server is asked"
    );
}

#[test]
fn a_tunnel_silent_for_the_tunnel_timeout_is_closed_and_frees_its_slot() {
    let (addr, _heads) = echo_server();
    let lb = Lb::start(&[], move |cfg| {
        cfg.servers = common::config(&[("ws", addr)]).servers;
        cfg.clients.tunnel_timeout = Duration::from_millis(300);
    });
    let mut s = TcpStream::connect(lb.site).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"hello") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the tunnel opened");
        got.extend_from_slice(&buf[..n]);
    }
    // Silent both ways: the load balancer closes the tunnel.
    let started = std::time::Instant::now();
    assert_eq!(s.read(&mut buf).unwrap(), 0, "still open");
    assert!(started.elapsed() < Duration::from_secs(4));
    common::wait_until(Duration::from_secs(5), "slot freed", || {
        lb.stats()["servers"][0]["in_flight"] == 0
    });
}
