//! Malformed and ambiguous requests (RFC 9112): each is refused with the
//! right 4xx/5xx and never reaches a server, or is normalised into one
//! unambiguous form before it does. Hop-by-hop headers are stripped both ways.

mod common;

use common::Lb;
use webinfra_test_support::http::send_raw;

/// Sends `raw` through a fresh load balancer with one backend; returns the
/// status and what the backend received.
/// (`send_raw` reads until the connection closes, so every case also shows
/// the connection is closed after a refusal.)
fn through(raw: &str) -> (u16, String, Vec<common::Seen>) {
    let lb = Lb::start(&["a"], |_| {});
    let r = send_raw(lb.site, raw.as_bytes()).expect("a response");
    let seen = lb.backend("a").record.seen.lock().unwrap().clone();
    (r.status, r.text(), seen)
}

fn assert_refused(raw: &str, status: u16) {
    let (got, body, seen) = through(raw);
    assert_eq!(got, status, "{raw:?} -> {body}");
    assert!(seen.is_empty(), "{raw:?} reached the server: {seen:?}");
}

#[test]
fn content_length_and_chunked_together_are_forwarded_as_the_chunked_body_only() {
    // RFC 9112 6.3: Transfer-Encoding overrides Content-Length; the server
    // must see one framing, not both (request smuggling), and the client
    // connection closes after the response (no `Connection: close` is sent:
    // `through` reads until the load balancer closes).
    let (status, _, seen) = through(
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"abc");
    assert_eq!(seen[0].header("content-length"), Some("3"));
    assert_eq!(seen[0].header("transfer-encoding"), None);
}

#[test]
fn differing_repeated_content_lengths_are_refused() {
    assert_refused(
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    );
}

#[test]
fn a_content_length_list_with_differing_values_is_refused() {
    assert_refused(
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\nabcd",
        400,
    );
}

#[test]
fn invalid_content_lengths_are_refused() {
    for cl in ["abc", "-1", "+3", "0x3", "3 3", ""] {
        assert_refused(
            &format!("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\nabc"),
            400,
        );
    }
}

#[test]
fn invalid_chunk_sizes_are_refused() {
    for chunk in [
        "zz\r\nabc\r\n0\r\n\r\n",
        "-3\r\nabc\r\n0\r\n\r\n",
        "3 3\r\nabc\r\n0\r\n\r\n",
        "ffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    ] {
        assert_refused(
            &format!("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}"),
            400,
        );
    }
}

#[test]
fn chunked_that_is_not_the_final_coding_is_refused() {
    // RFC 9112 6.3: the length cannot be determined: 400.
    assert_refused(
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        400,
    );
    assert_refused(
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        400,
    );
}

#[test]
fn connect_is_not_forwarded() {
    // A reverse proxy is no forward proxy: a tunnel to an address of the
    // client's choosing is refused (and the connection closed).
    assert_refused(
        "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
        501,
    );
}

#[test]
fn a_transfer_coding_other_than_chunked_is_not_implemented() {
    // RFC 9112 6.1: a coding the server does not understand: 501.
    assert_refused(
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    );
}

#[test]
fn whitespace_before_the_colon_is_refused() {
    // RFC 9112 5.1: MUST reject with 400.
    assert_refused(
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
        400,
    );
}

#[test]
fn bare_lf_line_ends_are_normalised() {
    // RFC 9112 2.2: a recipient MAY take a bare LF as a line end; the server
    // gets the request re-serialised with CRLF.
    let (status, _, seen) = through("GET /lf HTTP/1.1\nHost: a\nX-Test: 1\nConnection: close\n\n");
    assert_eq!(status, 200);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/lf");
    assert_eq!(seen[0].header("x-test"), Some("1"));
}

#[test]
fn obs_fold_is_refused() {
    // RFC 9112 5.2: a server MUST reject obs-fold in a request (or replace it).
    assert_refused(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
        400,
    );
}

#[test]
fn invalid_header_bytes_are_refused() {
    for line in [
        "X-Bad: a\u{0}b",
        "X-Bad: a\u{1}b",
        "X Bad: 1",
        "X-Bad\u{7f}: 1",
        "(x): 1",
    ] {
        assert_refused(&format!("GET / HTTP/1.1\r\nHost: a\r\n{line}\r\n\r\n"), 400);
    }
}

#[test]
fn hop_by_hop_request_headers_are_not_forwarded() {
    let (status, _, seen) = through(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Private\r\nX-Private: 1\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Sum\r\nUpgrade: websocket\r\nX-End-To-End: kept\r\n\r\n",
    );
    assert_eq!(status, 200);
    let s = &seen[0];
    for h in ["x-private", "keep-alive", "proxy-connection", "upgrade"] {
        assert_eq!(s.header(h), None, "{h} was forwarded: {:?}", s.headers);
    }
    assert_ne!(s.header("connection"), Some("close, X-Private"));
    assert_eq!(s.header("x-end-to-end"), Some("kept"));
    // TE is rewritten, not dropped: we pass trailers on (tests/trailers.rs);
    // Trailer is end-to-end.
    assert_eq!(s.header("te"), Some("trailers"));
    assert_eq!(s.header("trailer"), Some("X-Sum"));
}

#[test]
fn hop_by_hop_response_headers_are_not_returned() {
    let lb = Lb::start(&["a"], |_| {});
    let r = webinfra_test_support::http::get(lb.site, "/hop").unwrap();
    assert_eq!(r.status, 200);
    for h in ["x-internal", "keep-alive", "proxy-connection", "upgrade"] {
        assert_eq!(r.header(h), None, "{h} was returned: {:?}", r.headers);
    }
    assert_ne!(r.header("connection"), Some("x-internal"));
    assert_eq!(r.header("x-end-to-end"), Some("kept"));
}

#[test]
fn an_http11_request_without_host_is_refused() {
    // RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request with no Host.
    assert_refused("GET / HTTP/1.1\r\n\r\n", 400);
    // HTTP/1.0 had no Host; it is still served.
    let (status, _, seen) = through("GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(status, 200);
    assert_eq!(seen[0].path, "/old");
}

#[test]
fn more_than_one_host_or_an_invalid_host_is_refused() {
    // RFC 9112 3.2: two Host lines, or a value that is not host[:port],
    // could be read as different sites by different servers.
    assert_refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    for host in ["a b", "a/b", "u@a", "a:b", ""] {
        assert_refused(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"), 400);
    }
}

#[test]
fn an_absolute_target_s_authority_replaces_host() {
    // RFC 9112 3.2.2: with an absolute-form target the Host header is
    // ignored in favour of the target's authority; the server gets origin form.
    let (status, _, seen) =
        through("GET http://www.foobar.com:8080/p?q=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200);
    assert_eq!(seen[0].path, "/p");
    assert_eq!(seen[0].header("host"), Some("www.foobar.com:8080"));
}

#[test]
fn a_request_target_over_8_kib_is_414_and_one_just_under_is_forwarded() {
    // Like nginx's default request line limit (RFC 9110 15.5.15).
    let long = format!("/{}", "a".repeat(8 * 1024));
    assert_refused(&format!("GET {long} HTTP/1.1\r\nHost: a\r\n\r\n"), 414);
    let url = format!("http://www.foobar.com{long}");
    assert_refused(&format!("GET {url} HTTP/1.1\r\nHost: a\r\n\r\n"), 414);
    let fits = format!("/{}", "a".repeat(8 * 1024 - 1));
    let (status, _, seen) = through(&format!(
        "GET {fits} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(status, 200);
    assert_eq!(seen[0].path.len(), 8 * 1024);
}

#[test]
fn targets_that_are_not_a_path_or_an_http_url_are_refused() {
    assert_refused("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    for target in [
        "www.foobar.com:80",
        "ftp://www.foobar.com/x",
        "http://user@www.foobar.com/",
        "*",
    ] {
        assert_refused(&format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }
}

#[test]
fn a_later_http1_minor_version_is_read_as_http11() {
    // RFC 9112 2.3, as nginx and HAProxy do (httparse alone: 400), in the
    // fast lane and, for a request with a body, on hyper's path.
    let (status, body, seen) = through("GET /x HTTP/1.2\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen.len(), 1);
    let (status, body, seen) =
        through("POST /x HTTP/1.9\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"abc");
}

#[test]
fn http2_or_later_in_an_http1_request_line_is_505() {
    assert_refused("GET /x HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    assert_refused(
        "POST /x HTTP/3.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        505,
    );
}

#[test]
fn a_client_that_shuts_its_sending_side_after_the_request_is_answered() {
    // `printf 'GET / ...' | nc -N`: the request, then FIN. nginx and HAProxy
    // answer; the connection used to close with no response at all.
    use std::io::{Read, Write};
    let lb = Lb::start(&["a"], |_| {});
    let mut s = std::net::TcpStream::connect(lb.site).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET /half HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:?}");
    assert!(answer.ends_with("\r\n\r\na"), "{answer:?}");
}

#[test]
fn an_absolute_target_without_host_is_refused_in_http_1_1() {
    // RFC 9112 3.2: an HTTP/1.1 request without Host is a 400, whatever its target.
    assert_refused("GET http://a/x HTTP/1.1\r\n\r\n", 400);
}

#[test]
fn fields_that_read_as_framing_or_forwarding_with_underscores_are_not_forwarded() {
    // A CGI-style server reads `Transfer_Encoding` as `Transfer-Encoding`.
    let (status, _, seen) = through(
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 3\r\nX_Custom: kept\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(status, 200);
    assert_eq!(seen[0].header("transfer_encoding"), None, "{:?}", seen[0]);
    assert_eq!(seen[0].header("x_custom"), Some("kept"));
    assert_eq!(seen[0].body, b"abc");
    // In the fast lane's shape too (a plain keep-alive GET).
    let (status, _, seen) = through(
        "GET /y HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(seen[0].header("x_forwarded_for"), None, "{:?}", seen[0]);
}

#[test]
fn a_request_head_that_never_completes_gets_a_408() {
    use std::io::{Read, Write};
    let lb = Lb::start(&["a"], |cfg| {
        cfg.clients.header_timeout = std::time::Duration::from_millis(300)
    });
    let mut s = std::net::TcpStream::connect(lb.site).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Half: ")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert_eq!(lb.backend("a").record.count(), 0);
    // A connection that sent nothing is just closed: there is no request to answer.
    let mut idle = std::net::TcpStream::connect(lb.site).unwrap();
    idle.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut nothing = Vec::new();
    idle.read_to_end(&mut nothing).unwrap();
    assert!(
        nothing.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&nothing)
    );
}

#[test]
fn a_body_trickled_below_the_minimum_rate_is_a_408() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let lb = Lb::start(&["a"], |cfg| {
        cfg.clients.client_timeout = Duration::from_secs(1)
    });
    let mut s = std::net::TcpStream::connect(lb.site).unwrap();
    s.write_all(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    // A byte every 300 ms: never silent for the 1 s timeout, far below 500 bytes/s.
    s.set_nonblocking(true).unwrap();
    let begun = Instant::now();
    let mut answer = Vec::new();
    while begun.elapsed() < Duration::from_secs(8) {
        let _ = s.write_all(b"x");
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        if answer.ends_with(b"\n") && answer.starts_with(b"HTTP/1.1 ") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {:?}: {answer:?}",
        begun.elapsed()
    );
    assert!(
        begun.elapsed() < Duration::from_secs(5),
        "{:?}",
        begun.elapsed()
    );
    assert_eq!(lb.backend("a").record.count(), 0);
}
