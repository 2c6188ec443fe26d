//! The fast lane (plain keep-alive `GET`/`HEAD`, forwarded as bytes) does
//! what the general path does: the same requests, sent as raw bytes through
//! load balancers with the lane open (with and without an access log) and
//! one with it closed (`fast_lane = false`) -- in front of a
//! scripted backend, must reach the backend as the same request and come
//! back to the client as the same response (header names compared without
//! case, dates and request ids masked). Header case also shows which path
//! served: the lane keeps the server's spelling, hyper writes lowercase.
//! One difference is wanted: the lane passes interim responses (`103 Early
//! Hints`) on, which hyper's server cannot.

mod common;

use common::{scripted_backend, Lb};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A response as the client got it: status, fields (lowercase names,
/// sorted, dates and ids masked), body (chunks decoded).
#[derive(Debug, PartialEq, Eq)]
struct Got {
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A load balancer in front of a scripted backend; `lane`: whether the
/// fast lane is open; `log`: with an access log.
fn start_with(lane: bool, log: bool) -> (Lb, Arc<Mutex<Vec<String>>>) {
    let (addr, seen) = scripted_backend();
    let lb = Lb::start(&["a"], move |cfg| {
        cfg.servers[0].addr = addr;
        cfg.access_log = log;
        cfg.fast_lane = lane;
    });
    (lb, seen)
}

fn start(lane: bool) -> (Lb, Arc<Mutex<Vec<String>>>) {
    start_with(lane, false)
}

/// [`start`], with the sticky cookie `SERVERID`.
fn start_sticky(lane: bool) -> (Lb, Arc<Mutex<Vec<String>>>) {
    let (addr, seen) = scripted_backend();
    let lb = Lb::start(&["a"], move |cfg| {
        cfg.servers[0].addr = addr;
        cfg.fast_lane = lane;
        cfg.sticky_cookie = Some("SERVERID".into());
    });
    (lb, seen)
}

/// Sends `raw` and then a last request on the same connection, reads
/// until the load balancer closes, and returns the responses.
fn exchange(lb: &Lb, raw: &str, head: bool) -> (Vec<Got>, Vec<u8>) {
    let mut stream = TcpStream::connect(lb.site).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    stream
        .write_all(b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let mut rest = &bytes[..];
    let mut got = Vec::new();
    let mut heads = [head, false].into_iter();
    while !rest.is_empty() {
        let (g, used) = parse(rest, heads.next().unwrap_or(false));
        got.push(g);
        rest = &rest[used..];
    }
    (got, bytes)
}

/// One response at the start of `bytes`, and how many bytes it took.
fn parse(bytes: &[u8], head_request: bool) -> (Got, usize) {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut fields);
    let httparse::Status::Complete(mut at) = resp.parse(bytes).expect("a response head") else {
        panic!("cut short: {:?}", String::from_utf8_lossy(bytes))
    };
    let status = resp.code.unwrap();
    let mut fields: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            let name = h.name.to_ascii_lowercase();
            let value = match name.as_str() {
                "date" | "x-request-id" => "*".to_string(),
                _ => String::from_utf8_lossy(h.value).into_owned(),
            };
            (name, value)
        })
        .collect();
    fields.sort();
    let field = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if head_request || status == 204 || status == 304 {
    } else if field("transfer-encoding").is_some() {
        loop {
            let line_end = at + bytes[at..].windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&bytes[at..line_end]).unwrap(), 16)
                    .unwrap();
            at = line_end + 2;
            if size == 0 {
                // No trailers are sent to a client that did not ask for them.
                assert_eq!(&bytes[at..at + 2], b"\r\n");
                at += 2;
                break;
            }
            body.extend_from_slice(&bytes[at..at + size]);
            at += size + 2;
        }
    } else if let Some(n) = field("content-length") {
        let n: usize = n.parse().unwrap();
        body.extend_from_slice(&bytes[at..at + n]);
        at += n;
    } else {
        body.extend_from_slice(&bytes[at..]);
        at = bytes.len();
    }
    (
        Got {
            status,
            fields,
            body,
        },
        at,
    )
}

/// The request head a backend saw: request line and sorted fields, names
/// lowercase, the request id masked.
fn normalise(head: &str) -> (String, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap().to_string();
    let mut fields: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            let n = n.to_ascii_lowercase();
            let v = if n == "x-request-id" && v.trim().len() == 32 {
                "*".to_string()
            } else {
                v.trim().to_string()
            };
            (n, v)
        })
        .collect();
    fields.sort();
    (first, fields)
}

const REQUESTS: &[&str] = &[
    "GET /plain HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
    "HEAD /plain HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /plain?q=1&r=%20#frag HTTP/1.1\r\nHost: a:80\r\n\r\n",
    "GET /plain HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 10.0.0.2, 10.0.0.3\r\nX-Forwarded-Proto: https\r\nX-Request-Id: abc-1\r\nKeep-Alive: 30\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive\r\n\r\n",
    "GET /plain HTTP/1.1\r\nHost: a\r\nX-Request-Id: not valid\r\nX-Empty:\r\nX-Trailing: v  \r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n",
    "GET /plain HTTP/1.1\nHost: a\nX-Lf: 1\n\n",
    "GET /nodate HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /close HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /hop HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /both HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /odd HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /204 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /304 HTTP/1.1\r\nHost: a\r\n\r\n",
    "HEAD /chunked HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /http10 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /204-length HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /500 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /lf HTTP/1.1\r\nHost: a\r\n\r\n",
];

#[test]
fn the_lane_forwards_what_the_general_path_forwards_and_answers_the_same() {
    let (general, general_seen) = start(false);
    for log in [false, true] {
        let (fast, fast_seen) = start_with(true, log);
        compare(&fast, &fast_seen, &general, &general_seen, REQUESTS);
    }
}

/// Requests with and without the load balancer's sticky cookie, and
/// responses with and without their own `Cache-Control`.
const STICKY: &[&str] = &[
    "GET /plain HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /plain HTTP/1.1\r\nHost: a\r\nCookie: x=1; SERVERID=a; y=2\r\nCookie: z=3\r\n\r\n",
    "GET /plain HTTP/1.1\r\nHost: a\r\nCookie: SERVERID=\"gone\"\r\n\r\n",
    "GET /plain HTTP/1.1\r\nHost: a\r\nCookie: x=1;y=2\r\n\r\n",
    "GET /plain HTTP/1.1\r\nHost: a\r\nCookie: SERVERID=a\r\nCookie: SERVERID=b\r\n\r\n",
    "GET /cached HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /cached-hop HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /odd HTTP/1.1\r\nHost: a\r\n\r\n",
    "HEAD /plain HTTP/1.1\r\nHost: a\r\nCookie: SERVERID=a\r\n\r\n",
];

#[test]
fn with_a_sticky_cookie_the_lane_pins_and_sets_it_as_the_general_path_does() {
    let (general, general_seen) = start_sticky(false);
    let (fast, fast_seen) = start_sticky(true);
    compare(&fast, &fast_seen, &general, &general_seen, STICKY);
    // What the comparison held both paths to, for the first two.
    let field = |g: &Got, n: &str| {
        let values = g.fields.iter().filter(|(k, _)| k == n);
        values.map(|(_, v)| v.clone()).collect::<Vec<_>>()
    };
    let (got, _) = exchange(&fast, STICKY[0], false);
    assert_eq!(
        field(&got[0], "set-cookie"),
        ["SERVERID=a; Path=/; HttpOnly; SameSite=Lax"]
    );
    assert_eq!(field(&got[0], "cache-control"), ["private"]);
    fast_seen.lock().unwrap().clear();
    let (got, _) = exchange(&fast, STICKY[1], false);
    assert!(field(&got[0], "set-cookie").is_empty(), "{got:?}");
    let seen = fast_seen.lock().unwrap()[0].clone();
    assert!(
        seen.contains("cookie: x=1; y=2\r\ncookie: z=3\r\n"),
        "{seen}"
    );
    assert!(!seen.contains("SERVERID"), "{seen}");
}

#[test]
fn the_lane_sends_a_pinned_client_to_its_server() {
    let (a, a_seen) = scripted_backend();
    let (b, b_seen) = scripted_backend();
    let lb = Lb::start(&["a", "b"], move |cfg| {
        cfg.servers[0].addr = a;
        cfg.servers[1].addr = b;
        cfg.sticky_cookie = Some("SERVERID".into());
    });
    let get = "GET /plain HTTP/1.1\r\nHost: a\r\nCookie: SERVERID=b\r\n\r\n".repeat(4);
    let (got, bytes) = exchange(&lb, &get, false);
    assert_eq!(got.len(), 5);
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(
        text.matches("Server: raw").count(),
        4,
        "not in the lane: {text}"
    );
    assert!(!text.contains("SERVERID=b;"), "no cookie set again: {text}");
    assert_eq!(b_seen.lock().unwrap().len(), 4);
    // The last request (no cookie, `Connection: close`) went by the round robin.
    assert!(a_seen.lock().unwrap().len() <= 1);
}

/// A server's `103 Early Hints` reaches the client at once, while the
/// server is still working on its answer (RFC 9110 15.2: a proxy passes
/// interim responses on), its hop-by-hop fields taken out as from a final
/// head; then the answer follows on the same connection.
#[test]
fn the_lane_passes_early_hints_on_before_the_server_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The server answers /early only once the client has had the hints.
    let (hinted, hints_seen) = std::sync::mpsc::channel::<()>();
    let hints_seen = Arc::new(Mutex::new(hints_seen));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let (mut stream, hints_seen) = (stream.unwrap(), hints_seen.clone());
            std::thread::spawn(move || loop {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8];
                    if stream.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                if head.starts_with(b"GET /early ") {
                    let hints = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n";
                    stream.write_all(hints.as_bytes()).unwrap();
                    let seen = hints_seen.lock().unwrap();
                    if seen.recv_timeout(Duration::from_secs(20)).is_err() {
                        return;
                    }
                }
                let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if stream.write_all(ok).is_err() {
                    return;
                }
            });
        }
    });
    let lb = Lb::start(&["a"], move |cfg| cfg.servers[0].addr = addr);
    let mut client = TcpStream::connect(lb.site).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(b"GET /early HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        let read = client.read(&mut byte);
        assert!(
            matches!(read, Ok(1)),
            "no early hints before the answer ({read:?}), got {:?}",
            String::from_utf8_lossy(&got)
        );
        got.push(byte[0]);
    }
    assert_eq!(
        String::from_utf8_lossy(&got),
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    );
    hinted.send(()).unwrap();
    got.clear();
    while !got.ends_with(b"ok") {
        let mut chunk = [0u8; 1024];
        let n = client.read(&mut chunk).unwrap();
        assert_ne!(n, 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
}

fn compare(
    fast: &Lb,
    fast_seen: &Mutex<Vec<String>>,
    general: &Lb,
    general_seen: &Mutex<Vec<String>>,
    requests: &[&str],
) {
    for raw in requests {
        let head = raw.starts_with("HEAD");
        fast_seen.lock().unwrap().clear();
        general_seen.lock().unwrap().clear();
        let (by_lane, lane_bytes) = exchange(fast, raw, head);
        let (by_general, _) = exchange(general, raw, head);
        assert_eq!(by_lane, by_general, "{raw:?}: the client's answers differ");
        assert_eq!(by_lane.len(), 2, "{raw:?}: both requests answered");
        let lane_saw: Vec<_> = fast_seen
            .lock()
            .unwrap()
            .iter()
            .map(|h| normalise(h))
            .collect();
        let general_saw: Vec<_> = general_seen
            .lock()
            .unwrap()
            .iter()
            .map(|h| normalise(h))
            .collect();
        assert_eq!(
            lane_saw, general_saw,
            "{raw:?}: the server saw different requests"
        );
        // The lane served it: the server's spelling of its fields is kept.
        let text = String::from_utf8_lossy(&lane_bytes);
        if raw.contains("/plain") && !head {
            assert!(
                text.contains("Server: raw\r\n"),
                "{raw:?} not in the lane: {text}"
            );
        }
    }
}

#[test]
fn the_lane_answers_pipelined_requests_in_order_and_hands_a_post_to_hyper() {
    let (lb, seen) = start(true);
    let raw = "GET /plain?1 HTTP/1.1\r\nHost: a\r\n\r\nGET /nodate?2 HTTP/1.1\r\nHost: a\r\n\r\nPOST /plain?3 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /plain?4 HTTP/1.1\r\nHost: a\r\n\r\n";
    let (got, bytes) = exchange(&lb, raw, false);
    let bodies: Vec<_> = got
        .iter()
        .map(|g| String::from_utf8_lossy(&g.body).into_owned())
        .collect();
    assert_eq!(bodies, ["hello", "ok", "hello", "hello", "hello"]);
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(
        paths,
        ["/plain?1", "/nodate?2", "/plain?3", "/plain?4", "/last"]
    );
    // The first went through the lane, the ones after the POST through hyper.
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\nServer: raw\r\n"),
        "{text}"
    );
    assert_eq!(text.matches("Server: raw").count(), 1, "{text}");
    assert_eq!(text.matches("server: raw").count(), 3, "{text}");
}

#[test]
fn the_lane_applies_the_rate_limit_and_keeps_the_connection() {
    let (addr, seen) = scripted_backend();
    let lb = Lb::start(&["a"], move |cfg| {
        cfg.servers[0].addr = addr;
        cfg.rate_limit = Some(webinfra_topology::RateLimit {
            per_second: 1,
            burst: 3,
        });
    });
    let get = "GET / HTTP/1.1\r\nHost: a\r\n\r\n".repeat(5);
    let (got, bytes) = exchange(&lb, &get, false);
    let statuses: Vec<u16> = got.iter().map(|g| g.status).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    let text = String::from_utf8_lossy(&bytes);
    // The lane served the three (the server's spelling) and refused two on
    // the same connection; the last, `Connection: close`, went to hyper.
    assert_eq!(text.matches("Server: raw").count(), 3, "{text}");
    for refused in &got[3..] {
        let field = |n: &str| refused.fields.iter().any(|(k, v)| k == n && !v.is_empty());
        assert!(field("retry-after") && field("x-request-id"), "{refused:?}");
        assert!(String::from_utf8_lossy(&refused.body).contains("127.0.0.1 is over 1 requests/s"));
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "refused requests never reach the server"
    );
    assert_eq!(lb.stats()["rate_limited"], 3);
}

#[test]
fn a_server_that_fails_is_retried_and_its_failure_answered_by_the_lane() {
    // One server refuses connections: the lane retries on the other.
    let (addr, seen) = scripted_backend();
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let lb = Lb::start(&["a", "b"], move |cfg| {
        cfg.servers[0].addr = addr;
        cfg.servers[1].addr = dead;
    });
    for _ in 0..4 {
        let (got, _) = exchange(&lb, "GET /plain HTTP/1.1\r\nHost: a\r\n\r\n", false);
        assert_eq!(got[0].status, 200);
        assert_eq!(got[0].body, b"hello");
    }
    assert_eq!(seen.lock().unwrap().len(), 8);
    // With no server left, the client hears why, with the request id.
    let lb = Lb::start(&["a"], move |cfg| cfg.servers[0].addr = dead);
    let (got, bytes) = exchange(
        &lb,
        "GET /plain HTTP/1.1\r\nHost: a\r\nX-Request-Id: trace-7\r\n\r\n",
        false,
    );
    assert_eq!(got[0].status, 502, "{}", String::from_utf8_lossy(&bytes));
    assert!(String::from_utf8_lossy(&bytes).contains("x-request-id: trace-7\r\n"));
}

/// Reads one response with a `Content-Length` from `stream`.
fn read_one(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse().unwrap());
            if bytes.len() >= end + 4 + length {
                return String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn at_shutdown_an_idle_connection_closes_and_a_busy_one_after_its_response() {
    let mut lb = Lb::start(&["a"], |_| {});
    let connect = || {
        let s = TcpStream::connect(lb.site).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    let mut idle = connect();
    idle.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert!(read_one(&mut idle).starts_with("HTTP/1.1 200 OK\r\n"));
    let mut busy = connect();
    busy.write_all(b"GET /slow/500 HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let record = lb.backend("a").record.clone();
    common::wait_until(Duration::from_secs(5), "the request in flight", || {
        record.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 1
    });
    lb.begin_shutdown();
    // The idle one is closed at once (well before the 10 s drain limit).
    assert_eq!(idle.read(&mut [0u8; 64]).expect("closed, not timed out"), 0);
    // The busy one gets its response, which says it is the last, then the end.
    let text = read_one(&mut busy);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    assert!(text.ends_with("a"), "{text}");
    assert_eq!(busy.read(&mut [0u8; 64]).unwrap(), 0);
}

#[test]
fn a_chunked_body_broken_from_its_start_is_a_502_on_both_paths() {
    let (addr, _) = scripted_backend();
    let lb = Lb::start(&["a"], move |cfg| cfg.servers[0].addr = addr);
    // The lane: a 502 instead of a head and a cut connection, and the
    // connection serves the next request.
    let raw = "GET /bad-chunk HTTP/1.1\r\nHost: a\r\n\r\nGET /plain HTTP/1.1\r\nHost: a\r\n\r\n";
    let (got, bytes) = exchange(&lb, raw, false);
    let statuses: Vec<u16> = got.iter().map(|g| g.status).collect();
    assert_eq!(
        statuses,
        [502, 200, 200],
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(String::from_utf8_lossy(&got[0].body).contains("a sent an invalid response body"));
    // The general path (a POST) answers alike.
    let raw = "POST /bad-chunk HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok";
    let (got, _) = exchange(&lb, raw, false);
    assert_eq!(got[0].status, 502);
    // Both counted as the server's 5xx.
    assert_eq!(lb.stats()["servers"][0]["stats"]["responses"][4], 2);
}
