//! Trailer fields after a chunked response body reach a client that said it
//! takes them (`TE: trailers`, which is passed on to the server), and only
//! those the response announced in `Trailer`; others get the body alone.

mod common;

use common::Lb;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use webinfra_test_support::raw_server;

/// A raw server answering every request with a chunked body and a trailer
/// (`X-Checksum`, announced) plus one it may not send (`Content-Length`);
/// records each request's `TE` header.
fn trailer_server() -> (SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = raw_server::start(move |r, out| {
        let Some(head) = raw_server::read_head(r) else {
            return false;
        };
        let head: Vec<String> = head.iter().map(|h| h.to_ascii_lowercase()).collect();
        if !head.iter().any(|h| h.contains("webinfra-health-check")) {
            let te = head.iter().find_map(|h| h.strip_prefix("te: "));
            log.lock().unwrap().push(te.map(String::from));
        }
        let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: 5d41402a\r\nContent-Length: 99\r\n\r\n";
        out.write_all(answer.as_bytes()).is_ok()
    });
    (addr, seen)
}

fn through(te: &str) -> (String, Vec<Option<String>>) {
    let (addr, seen) = trailer_server();
    let lb = Lb::start(&["a"], move |cfg| cfg.servers[0].addr = addr);
    let mut s = TcpStream::connect(lb.site).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /t HTTP/1.1\r\nHost: a\r\n{te}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let log = seen.lock().unwrap().clone();
    (raw, log)
}

#[test]
fn a_client_that_takes_trailers_gets_the_announced_ones() {
    let (raw, seen) = through("TE: trailers\r\n");
    assert_eq!(
        seen,
        [Some("trailers".to_string())],
        "TE: trailers goes on to the server"
    );
    let tail = raw.split("\r\n0\r\n").nth(1).expect("a last chunk");
    assert!(
        tail.to_ascii_lowercase().contains("x-checksum: 5d41402a"),
        "{raw}"
    );
    assert!(
        !tail.to_ascii_lowercase().contains("content-length"),
        "{raw}"
    );
    assert!(
        raw.to_ascii_lowercase().contains("trailer: x-checksum"),
        "{raw}"
    );
}

#[test]
fn a_client_that_does_not_gets_the_body_alone() {
    let (raw, seen) = through("");
    assert_eq!(seen, [None]);
    assert!(raw.contains("\r\n5\r\nhello\r\n0\r\n\r\n"), "{raw}");
    assert!(!raw.to_ascii_lowercase().contains("x-checksum: "), "{raw}");
}
