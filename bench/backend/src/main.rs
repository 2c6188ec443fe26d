//! The backends of the load balancer benchmark: one process answering
//! `GET`/`HEAD /small` (12 bytes) and `/4k` (4,096 bytes) on every address it
//! is given, keep-alive, with the fields nginx sends for a static file
//! (Server, Date, Content-Type, Content-Length, Last-Modified, Connection,
//! ETag, Accept-Ranges), so a proxy parses and forwards the same head as in
//! front of nginx. Another path gets 404; another method 405 and the
//! connection closed (its body is not read). HTTP/1.0 closes unless it asks
//! for keep-alive, HTTP/1.1 when it asks to close.
//!
//! It is not a web server. It exists because the benchmark's load side --
//! wrk and the backends, sharing one core -- was its bottleneck: with nginx
//! (even with `open_file_cache`) as the backends, a forwarder that does no
//! HTTP at all served barely more than HAProxy, so a proxy that does less
//! work per request could not show it. This one does about the least a
//! backend can (one read, one write per request).
//!
//!     backend ADDRESS...

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// A connection: bytes of requests not yet answered, answers not yet sent.
struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    close: bool,
}

fn main() {
    let addrs: Vec<SocketAddr> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("an address:port"))
        .collect();
    if addrs.is_empty() {
        eprintln!("usage: backend ADDRESS...");
        std::process::exit(2);
    }
    let mut poll = Poll::new().expect("epoll");
    let mut listeners = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        let mut l = TcpListener::bind(*a).expect("bind");
        poll.registry()
            .register(&mut l, Token(usize::MAX - i), Interest::READABLE)
            .expect("register");
        listeners.push(l);
    }
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut date = Date::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            assert_eq!(e.kind(), ErrorKind::Interrupted, "poll: {e}");
            continue;
        }
        date.refresh();
        for event in events.iter() {
            let t = event.token().0;
            if t > usize::MAX - listeners.len() - 1 {
                let l = &listeners[usize::MAX - t];
                while let Ok((mut stream, _)) = l.accept() {
                    let _ = stream.set_nodelay(true);
                    let slot = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    poll.registry()
                        .register(
                            &mut stream,
                            Token(slot),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .expect("register");
                    conns[slot] = Some(Conn {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        close: false,
                    });
                }
                continue;
            }
            let Some(conn) = conns[t].as_mut() else {
                continue;
            };
            if serve(conn, &mut buf, &date).is_err() {
                let mut c = conns[t].take().expect("open");
                let _ = poll.registry().deregister(&mut c.stream);
            }
        }
    }
}

/// Reads what the client sent, answers every whole request head in it and
/// writes as much as the socket takes. Err: the connection is done.
fn serve(conn: &mut Conn, buf: &mut [u8], date: &Date) -> Result<(), ()> {
    loop {
        match conn.stream.read(buf) {
            Ok(0) => return Err(()),
            Ok(n) => {
                conn.input.extend_from_slice(&buf[..n]);
                if n < buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
    let mut used = 0;
    while let Some(end) = find(&conn.input[used..], b"\r\n\r\n") {
        let head = &conn.input[used..used + end + 4];
        answer(head, date, &mut conn.output, &mut conn.close);
        used += end + 4;
        if conn.close {
            break;
        }
    }
    conn.input.drain(..used);
    if conn.input.len() > 64 * 1024 {
        return Err(());
    }
    while !conn.output.is_empty() {
        match conn.stream.write(&conn.output) {
            Ok(n) => {
                conn.output.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
    if conn.close {
        return Err(());
    }
    Ok(())
}

const SMALL: &[u8] = b"hello world\n";
const FOUR_K: &[u8] = &[b'x'; 4096];
const LAST_MODIFIED: &str = "Tue, 01 Dec 2026 00:00:00 GMT";

/// Appends the response to one request head.
fn answer(head: &[u8], date: &Date, out: &mut Vec<u8>, close: &mut bool) {
    let line_end = find(head, b"\r\n").unwrap_or(head.len());
    let mut words = head[..line_end].split(|b| *b == b' ');
    let (method, path, version) = (words.next(), words.next(), words.next());
    *close = if version == Some(b"HTTP/1.0") {
        !connection_says(head, b"keep-alive")
    } else {
        connection_says(head, b"close")
    };
    let (status, body): (&str, &[u8]) = match (method, path) {
        (Some(b"GET" | b"HEAD"), Some(b"/small")) => ("200 OK", SMALL),
        (Some(b"GET" | b"HEAD"), Some(b"/4k")) => ("200 OK", FOUR_K),
        (Some(b"GET" | b"HEAD"), _) => ("404 Not Found", b"not found\n"),
        // A request body would be read as the next head: answer and close.
        _ => {
            *close = true;
            ("405 Method Not Allowed", b"method not allowed\n")
        }
    };
    let connection = if *close { "close" } else { "keep-alive" };
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nServer: bench-backend\r\nDate: {}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nLast-Modified: {LAST_MODIFIED}\r\nConnection: {connection}\r\n\
         ETag: \"6b0f3bd0-{:x}\"\r\nAccept-Ranges: bytes\r\n\r\n",
        date.text,
        body.len(),
        body.len()
    );
    if method != Some(b"HEAD") {
        out.extend_from_slice(body);
    }
}

/// Whether a `Connection` field of `head` lists `token`.
fn connection_says(head: &[u8], token: &[u8]) -> bool {
    head.split(|b| *b == b'\n').skip(1).any(|line| {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return false;
        };
        line[..colon].eq_ignore_ascii_case(b"connection")
            && line[colon + 1..]
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `Date` field's value, remade when the second changes.
#[derive(Default)]
struct Date {
    second: u64,
    text: String,
}

impl Date {
    fn refresh(&mut self) {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
    }
}
