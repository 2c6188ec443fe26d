//! `pipelining = true`: the lane's bodiless `GET`s and `HEAD`s that arrive
//! together share one connection and one write to their server, each client
//! still gets its own answer (lengths, chunked bodies, `HEAD`), requests a
//! server does not answer before closing are sent again, and a request
//! never waits behind one sent before it.

mod common;

use common::Lb;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webinfra_topology::{Algorithm, Backend, ServerLimits, ServerPool};

/// Requests sent together per round.
const CLIENTS: usize = 16;
/// Rounds at most before the load balancer must have batched some requests.
const ROUNDS: usize = 40;

/// What the backend saw: the most request heads that came in one read;
/// whether `/hold` has arrived, and whether it may be answered.
#[derive(Default)]
struct Seen {
    most_per_read: AtomicUsize,
    held: AtomicBool,
    release: AtomicBool,
}

/// A backend that answers every request head in a read, in order, in one
/// write: the body is the request's path (chunked for paths ending in `c`;
/// none for `HEAD`). With `close_first`, a read carrying more than one head
/// gets only its first answered, with `Connection: close`, and the
/// connection closed: the rest are the load balancer's to send again.
fn backend(close_first: bool) -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let record = seen.clone();
    let addr = common::thread_server(move |mut stream| {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            let mut heads = Vec::new();
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = buf.drain(..end + 4).collect();
                heads.push(String::from_utf8(head).unwrap());
            }
            record
                .most_per_read
                .fetch_max(heads.len(), Ordering::SeqCst);
            let closing = close_first && heads.len() > 1;
            let mut out = Vec::new();
            for head in heads.iter().take(if closing { 1 } else { usize::MAX }) {
                let mut words = head.split(' ');
                let (method, path) = (words.next().unwrap(), words.next().unwrap());
                if path == "/hold" {
                    record.held.store(true, Ordering::SeqCst);
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while !record.release.load(Ordering::SeqCst) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                let connection = if closing { "close" } else { "keep-alive" };
                let body = if path.ends_with('c') {
                    format!("{:x}\r\n{path}\r\n0\r\n\r\n", path.len())
                } else {
                    path.to_string()
                };
                let framing = if path.ends_with('c') {
                    "Transfer-Encoding: chunked".to_string()
                } else {
                    format!("Content-Length: {}", path.len())
                };
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\n{framing}\r\nConnection: {connection}\r\n\r\n"
                )
                .unwrap();
                if method != "HEAD" {
                    out.extend_from_slice(body.as_bytes());
                }
            }
            if stream.write_all(&out).is_err() || closing {
                return;
            }
        }
    });
    (addr, seen)
}

/// Server `name` at `addr`.
fn server(name: &str, addr: SocketAddr) -> Backend {
    Backend {
        name: name.into(),
        addr,
        weight: 1,
        backup: false,
        limits: ServerLimits::default(),
    }
}

/// A load balancer with pipelining over the one backend at `addr`.
fn start(addr: SocketAddr) -> Lb {
    Lb::start(&[], move |c| {
        c.pipelining = true;
        c.servers = vec![server("p", addr)];
    })
}

/// One response read from `s` for a request with `method`: its head and body
/// (a chunked body as sent: size line, data, last chunk).
fn read_response(s: &mut TcpStream, method: &str) -> (String, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            let body = String::from_utf8_lossy(&got[end + 4..]).into_owned();
            let length = head.lines().find_map(|l| {
                l.strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            });
            let done = match (method, length) {
                ("HEAD", _) => true,
                (_, Some(n)) => body.len() >= n,
                _ => body.ends_with("0\r\n\r\n"),
            };
            if done {
                return (head, body);
            }
        }
        let n = s.read(&mut buf).expect("an answer within 10 s");
        assert!(
            n > 0,
            "closed before an answer: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

/// Sends [`CLIENTS`] requests at once, each on its own connection, and
/// checks each client gets the answer to its own request.
fn round(site: SocketAddr, round: usize) {
    round_at(site, "/", round)
}

/// [`round`] with paths under `prefix`.
fn round_at(site: SocketAddr, prefix: &str, round: usize) {
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let s = TcpStream::connect(site).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    let requests: Vec<(&str, String)> = (0..CLIENTS)
        .map(|i| {
            let method = if i % 3 == 2 { "HEAD" } else { "GET" };
            let path = format!("{prefix}r{round}-{i}{}", if i % 4 == 1 { "c" } else { "" });
            (method, path)
        })
        .collect();
    for (s, (method, path)) in clients.iter_mut().zip(&requests) {
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    }
    for (s, (method, path)) in clients.iter_mut().zip(&requests) {
        let (head, body) = read_response(s, method);
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        match (*method, path.ends_with('c')) {
            ("HEAD", _) => assert_eq!(body, "", "{path}"),
            (_, true) => assert_eq!(body, format!("{:x}\r\n{path}\r\n0\r\n\r\n", path.len())),
            _ => assert_eq!(body, *path, "a client got another's answer"),
        }
    }
}

/// Rounds of requests sent together until the backend has seen more than
/// one request head in one read (at most [`ROUNDS`]).
fn until_batched(site: SocketAddr, seen: &Seen) {
    until_batched_at(site, "/", seen)
}

/// [`until_batched`] with paths under `prefix`.
fn until_batched_at(site: SocketAddr, prefix: &str, seen: &Seen) {
    for r in 0..ROUNDS {
        round_at(site, prefix, r);
        if seen.most_per_read.load(Ordering::SeqCst) > 1 {
            return;
        }
    }
    panic!("{ROUNDS} rounds of {CLIENTS} requests at once, never two in one write to the server");
}

#[test]
fn requests_that_arrive_together_share_one_write_and_each_client_gets_its_own_answer() {
    let (addr, seen) = backend(false);
    let lb = start(addr);
    until_batched(lb.site, &seen);
    // And more rounds, now that batches form, all answered right.
    for r in 0..5 {
        round(lb.site, ROUNDS + r);
    }
}

#[test]
fn pipelined_requests_a_server_closes_on_are_sent_again() {
    let (addr, seen) = backend(true);
    let lb = start(addr);
    // Each round checks every client got its own answer: those the server
    // dropped with its `Connection: close` were sent again.
    until_batched(lb.site, &seen);
    for r in 0..5 {
        round(lb.site, ROUNDS + r);
    }
}

#[test]
fn a_request_never_waits_behind_one_sent_before_it() {
    let (addr, seen) = backend(false);
    let lb = start(addr);
    let connect = || {
        let s = TcpStream::connect(lb.site).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    let mut slow = connect();
    write!(slow, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    common::wait_until(Duration::from_secs(10), "the server holds /hold", || {
        seen.held.load(Ordering::SeqCst)
    });
    // Answered while /hold's answer is still held: its batch was written
    // and closed, so this one goes on a connection of its own.
    let mut fast = connect();
    write!(fast, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut fast, "GET");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "/fast");
    assert!(!seen.release.load(Ordering::SeqCst));
    seen.release.store(true, Ordering::SeqCst);
    let (head, body) = read_response(&mut slow, "GET");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "/hold");
}

#[test]
fn a_reload_turns_pipelining_off_and_says_so() {
    let (addr, seen) = backend(false);
    let lb = start(addr);
    until_batched(lb.site, &seen);
    let mut next = lb.config();
    next.pipelining = false;
    *lb.next_config.lock().unwrap() = Ok(next);
    let reload =
        webinfra_test_support::http::request(lb.admin, "POST", "/reload", &[], b"").unwrap();
    assert_eq!(reload.status, 200, "{}", reload.text());
    let changes = reload.json()["changes"].to_string();
    assert!(changes.contains("pipelining = false"), "{changes}");
    seen.most_per_read.store(0, Ordering::SeqCst);
    for r in 0..10 {
        round(lb.site, 100 + r);
    }
    assert_eq!(
        seen.most_per_read.load(Ordering::SeqCst),
        1,
        "one request per write once pipelining is off"
    );
}

#[test]
fn a_pool_pipelines_by_its_own_key() {
    let (pooled, in_pool) = backend(false);
    let (plain, outside) = backend(false);
    let lb = Lb::start(&[], move |c| {
        c.servers = vec![server("d", plain)];
        c.pools.push(ServerPool {
            name: "static".into(),
            hosts: Vec::new(),
            paths: vec!["/s/".into()],
            algorithm: Algorithm::RoundRobin,
            health_check: c.health_check.clone(),
            servers: vec![server("s", pooled)],
            pipelining: true,
        });
    });
    until_batched_at(lb.site, "/s/", &in_pool);
    for r in 0..10 {
        round(lb.site, r);
    }
    assert_eq!(
        outside.most_per_read.load(Ordering::SeqCst),
        1,
        "the servers outside the pool get one request per write"
    );
}
