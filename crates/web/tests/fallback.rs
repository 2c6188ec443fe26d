//! When this host's application cannot take a request, the web server sends
//! it to another host's: always when nothing reached it (it cannot be
//! connected to), for idempotent methods also when its connection broke
//! before an answer; a request that may have reached an application is
//! never sent to a second one otherwise.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use webinfra_proxy::Upstream;
use webinfra_test_support::http::{get, request};
use webinfra_test_support::raw_server;

/// What a test application received: "METHOD PATH BODY" per request.
type Seen = Arc<Mutex<Vec<String>>>;

/// A raw HTTP/1.1 application on 127.0.0.1:0 that records each request and
/// answers with `name`, or, when `answer` is false, reads the whole request
/// and closes the connection without a word.
fn application(name: &'static str, answer: bool) -> (Upstream, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let addr = raw_server::start(move |r, out| {
        let Some(head) = raw_server::read_head(r) else {
            return false;
        };
        let length = head
            .iter()
            .filter_map(|h| h.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.trim().parse().unwrap());
        let mut body = vec![0u8; length];
        r.read_exact(&mut body).unwrap();
        let mut words = head[0].split(' ');
        let (method, path) = (words.next().unwrap(), words.next().unwrap());
        log.lock().unwrap().push(format!(
            "{method} {path} {}",
            String::from_utf8_lossy(&body)
        ));
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}",
            name.len()
        );
        answer && out.write_all(reply.as_bytes()).is_ok()
    });
    (
        Upstream {
            name: name.into(),
            addr,
        },
        seen,
    )
}

/// An address nothing listens on.
fn nobody() -> Upstream {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    Upstream {
        name: "gone".into(),
        addr,
    }
}

/// A web server in front of `app` with `fallbacks`, in a runtime of its own
/// (ended with the test process).
fn web(app: Upstream, fallbacks: Vec<Upstream>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let config = webinfra_web::WebConfig {
                server_name: "server-01".into(),
                app,
                fallbacks,
                // No static file is asked for.
                static_root: "/nonexistent".into(),
            };
            webinfra_web::run(listener, config, std::future::pending()).await;
        });
    });
    addr
}

#[test]
fn an_application_that_cannot_be_reached_hands_every_request_to_the_next() {
    let (b, b_seen) = application("b", true);
    let site = web(nobody(), vec![b]);
    let r = get(site, "/page").unwrap();
    assert_eq!((r.status, r.text()), (200, "b".to_string()));
    let r = request(site, "POST", "/api/messages", &[], b"hello").unwrap();
    assert_eq!((r.status, r.text()), (200, "b".to_string()));
    assert_eq!(r.header("x-served-by"), Some("server-01"));
    assert_eq!(
        *b_seen.lock().unwrap(),
        ["GET /page ", "POST /api/messages hello"]
    );
}

#[test]
fn a_request_that_reached_an_application_goes_again_only_if_idempotent() {
    let (a, a_seen) = application("a", false);
    let (b, b_seen) = application("b", true);
    let site = web(a, vec![b]);
    let r = request(site, "POST", "/api/messages", &[], b"once").unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(b_seen.lock().unwrap().is_empty(), "the POST was sent twice");
    let r = request(site, "PUT", "/api/thing", &[], b"twice is fine").unwrap();
    assert_eq!((r.status, r.text()), (200, "b".to_string()));
    assert_eq!(
        *a_seen.lock().unwrap(),
        ["POST /api/messages once", "PUT /api/thing twice is fine"]
    );
    assert_eq!(*b_seen.lock().unwrap(), ["PUT /api/thing twice is fine"]);
}

#[test]
fn with_every_application_gone_the_client_gets_a_502_naming_the_last() {
    let site = web(nobody(), vec![nobody()]);
    let r = get(site, "/page").unwrap();
    assert_eq!(r.status, 502);
    assert!(r.text().contains("gone"), "{}", r.text());
}
