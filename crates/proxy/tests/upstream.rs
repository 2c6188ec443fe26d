//! The upstream client against servers that answer with exact bytes, on
//! 127.0.0.1:0: every response framing, interim responses, connection reuse
//! and what happens when a server closes a pooled connection.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use webinfra_proxy::{ProxyErrorKind, Upstream, UpstreamClient};

/// Reads one request head (and a body of `content-length`) off `s`; None at EOF.
async fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some(head + &String::from_utf8_lossy(&body))
}

/// A server that answers each request on a connection with the next of
/// `answers` (then closes if `close_after`), counting connections.
async fn server(answers: Vec<&'static str>, close_after: bool) -> (Upstream, Arc<AtomicUsize>) {
    let (up, conns, _) = server_counting_closes(answers, close_after).await;
    (up, conns)
}

/// [`server`], also counting the connections it has closed.
async fn server_counting_closes(
    answers: Vec<&'static str>,
    close_after: bool,
) -> (Upstream, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let closes = Arc::new(AtomicUsize::new(0));
    let count = conns.clone();
    let closed = closes.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let answers = answers.clone();
            let closed = closed.clone();
            tokio::spawn(async move {
                for a in answers {
                    if read_request(&mut s).await.is_none() {
                        return;
                    }
                    s.write_all(a.as_bytes()).await.unwrap();
                }
                if !close_after {
                    let _ = read_request(&mut s).await;
                }
                drop(s);
                closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (
        Upstream {
            name: "s".into(),
            addr,
        },
        conns,
        closes,
    )
}

fn client() -> UpstreamClient {
    UpstreamClient::new(Duration::from_secs(1), Duration::from_secs(2))
}

fn get(path: &str) -> Request<Bytes> {
    Request::get(path).body(Bytes::new()).unwrap()
}

async fn body_of(
    resp: http::Response<webinfra_proxy::UpstreamBody>,
) -> Result<Bytes, std::io::Error> {
    resp.into_body().collect().await.map(|c| c.to_bytes())
}

#[tokio::test]
async fn content_length_chunked_and_close_delimited_bodies() {
    let (up, _) = server(
        vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
        ],
        false,
    )
    .await;
    let c = client();
    assert_eq!(
        body_of(c.send(&up, get("/a")).await.unwrap())
            .await
            .unwrap(),
        "hello"
    );
    let r = c.send(&up, get("/b")).await.unwrap();
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    assert_eq!(body_of(r).await.unwrap(), "hello world");
    let (up, _) = server(vec!["HTTP/1.1 200 OK\r\n\r\nuntil the end"], true).await;
    assert_eq!(
        body_of(c.send(&up, get("/")).await.unwrap()).await.unwrap(),
        "until the end"
    );
}

#[tokio::test]
async fn chunked_wins_over_content_length_which_is_not_passed_on() {
    // RFC 9112 6.3: Transfer-Encoding overrides Content-Length, and a proxy
    // must drop the Content-Length before forwarding (a client given both
    // a length of 40 and a 3-byte body got nothing at all). A server that
    // sends both does not get its connection back.
    let (up, conns) = server(
        vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ],
        false,
    )
    .await;
    let c = client();
    let r = c.send(&up, get("/both")).await.unwrap();
    assert_eq!(r.headers().get("content-length"), None);
    assert_eq!(body_of(r).await.unwrap(), "abc");
    // Reused, the connection would answer "ok"; a new one starts over.
    let r = c.send(&up, get("/next")).await.unwrap();
    assert_eq!(
        body_of(r).await.unwrap(),
        "abc",
        "the connection was reused"
    );
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn keep_alive_connections_are_reused_and_close_is_honoured() {
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let (up, conns) = server(vec![ok, ok, ok], false).await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(
            body_of(c.send(&up, get("/")).await.unwrap()).await.unwrap(),
            "ok"
        );
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "one connection for three requests"
    );
    let close = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    let (up, conns) = server(vec![close, close], false).await;
    for _ in 0..2 {
        assert_eq!(
            body_of(c.send(&up, get("/")).await.unwrap()).await.unwrap(),
            "ok"
        );
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        2,
        "Connection: close is not reused"
    );
}

#[tokio::test]
async fn no_body_for_head_204_and_304_and_interim_responses_are_skipped() {
    let (up, conns) = server(
        vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
        ],
        false,
    )
    .await;
    let c = client();
    let head = Request::head("/").body(Bytes::new()).unwrap();
    let r = c.send(&up, head).await.unwrap();
    assert_eq!(r.headers()["content-length"], "9");
    assert_eq!(body_of(r).await.unwrap(), "");
    assert_eq!(c.send(&up, get("/")).await.unwrap().status(), 204);
    let r = c.send(&up, get("/")).await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers()["etag"].to_str().unwrap()),
        (304, "\"x\"")
    );
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_request_body_and_its_length_reach_the_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let req = read_request(&mut s).await.unwrap();
        s.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        req
    });
    let up = Upstream {
        name: "s".into(),
        addr,
    };
    let mut req = Request::post("/m?x=1")
        .body(Bytes::from_static(b"{\"a\":1}"))
        .unwrap();
    req.headers_mut()
        .insert("transfer-encoding", "chunked".parse().unwrap());
    req.headers_mut()
        .insert("host", "www.foobar.com".parse().unwrap());
    assert_eq!(client().send(&up, req).await.unwrap().status(), 201);
    let seen = seen.await.unwrap();
    assert!(
        seen.starts_with("POST /m?x=1 HTTP/1.1\r\nhost: www.foobar.com\r\n"),
        "{seen}"
    );
    assert!(
        seen.contains("content-length: 7\r\n") && !seen.contains("transfer-encoding"),
        "{seen}"
    );
    assert!(seen.ends_with("\r\n\r\n{\"a\":1}"), "{seen}");
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_not_used() {
    // The server answers one request per connection, then closes without
    // saying so (no Connection: close), like an idle timeout.
    let (up, conns, closes) =
        server_counting_closes(vec!["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], true).await;
    let c = client();
    for (i, method) in [Method::GET, Method::GET, Method::POST]
        .into_iter()
        .enumerate()
    {
        // On loopback the FIN has arrived once the server's close returned.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while closes.load(Ordering::SeqCst) < i {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not close"
            );
            tokio::task::yield_now().await;
        }
        let req = Request::builder()
            .method(method)
            .uri("/")
            .body(Bytes::new())
            .unwrap();
        let r = c.send(&up, req).await.unwrap();
        assert_eq!(body_of(r).await.unwrap(), "ok");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn broken_responses_are_errors_that_say_what_was_wrong() {
    let c = client();
    for (answer, words) in [
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            "Content-Length",
        ),
        ("HTTP/1.1 2000 OK\r\n\r\n", "invalid"),
        ("garbage\r\n\r\n", "invalid"),
        // Passed on, the gzip-coded body would reach the client undeclared.
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "transfer coding other than chunked",
        ),
    ] {
        let (up, _) = server(vec![answer], true).await;
        let e = c.send(&up, get("/")).await.unwrap_err();
        assert_eq!(e.kind, ProxyErrorKind::Reset, "{e}");
        assert!(e.to_string().contains(words), "{e}");
    }
    // A body cut short is an error for whoever reads it.
    let (up, _) = server(
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"],
        true,
    )
    .await;
    assert!(body_of(c.send(&up, get("/")).await.unwrap()).await.is_err());
    let (up, _) = server(
        vec!["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
        true,
    )
    .await;
    assert!(body_of(c.send(&up, get("/")).await.unwrap()).await.is_err());
}

#[tokio::test]
async fn a_server_silent_mid_body_for_the_response_timeout_fails_the_body() {
    // Half the body, then nothing (the connection stays open).
    let (up, _) = server(
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"],
        false,
    )
    .await;
    let c = UpstreamClient::new(Duration::from_secs(1), Duration::from_millis(300));
    let started = tokio::time::Instant::now();
    let r = c.send(&up, get("/")).await.unwrap();
    let e = body_of(r).await.unwrap_err();
    assert!(e.to_string().contains("sent nothing"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
}
