//! Request bodies through the load balancer: large ones stream to the server
//! while the client is still sending, a server's early answer reaches the
//! client, a silent client gets 408, a body over the limit 413, and a
//! streamed body still goes to the next server when a connect fails.
//!
//! The servers here are raw TCP on 127.0.0.1:0, so a test sees exactly how
//! many body bytes reached a server and when.

mod common;

use common::{wait_until, Lb};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a raw server saw: body bytes so far (all requests) and one line per request.
#[derive(Default)]
struct Seen {
    bytes: AtomicU64,
    log: Mutex<Vec<String>>,
}

impl Seen {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// A server that reads bodies as they come (`Content-Length` or chunked),
/// counting bytes, and answers `<bytes> <sum of bytes>`; `/reject` answers
/// 413 at once and closes without reading the body. Health checks are
/// answered but not logged.
fn raw_server() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let seen = s.clone();
            std::thread::spawn(move || serve(stream, &seen));
        }
    });
    (addr, seen)
}

fn serve(stream: TcpStream, seen: &Seen) {
    let mut out = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_ascii_lowercase());
        }
        let path = head[0].split(' ').nth(1).unwrap_or("").to_string();
        let length = head
            .iter()
            .find_map(|h| h.strip_prefix("content-length: "))
            .map(|v| v.parse::<u64>().unwrap());
        let chunked = head.contains(&"transfer-encoding: chunked".to_string());
        if path == "/reject" {
            seen.log.lock().unwrap().push("rejected".into());
            let _ = out.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 20\r\nConnection: close\r\n\r\ntoo big for server!\n");
            return;
        }
        let (mut n, mut sum) = (0u64, 0u64);
        let mut take = |r: &mut BufReader<TcpStream>, want: u64| -> bool {
            let mut buf = [0u8; 16 * 1024];
            let mut left = want;
            while left > 0 {
                let len = left.min(buf.len() as u64) as usize;
                match r.read(&mut buf[..len]) {
                    Ok(0) | Err(_) => return false,
                    Ok(k) => {
                        n += k as u64;
                        sum += buf[..k].iter().map(|b| *b as u64).sum::<u64>();
                        seen.bytes.fetch_add(k as u64, Ordering::SeqCst);
                        left -= k as u64;
                    }
                }
            }
            true
        };
        let complete = if chunked {
            let mut ok = true;
            loop {
                let mut size = String::new();
                if r.read_line(&mut size).unwrap_or(0) == 0 {
                    ok = false;
                    break;
                }
                let size = u64::from_str_radix(size.trim(), 16).unwrap();
                let mut crlf = String::new();
                if size == 0 {
                    let _ = r.read_line(&mut crlf);
                    break;
                }
                if !take(&mut r, size) || r.read_line(&mut crlf).unwrap_or(0) == 0 {
                    ok = false;
                    break;
                }
            }
            ok
        } else {
            take(&mut r, length.unwrap_or(0))
        };
        let framing = if chunked { "chunked" } else { "length" };
        let check = head.contains(&"user-agent: webinfra-health-check".to_string());
        if check {
            let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            continue;
        }
        if !complete {
            seen.log.lock().unwrap().push(format!("cut after {n}"));
            return;
        }
        seen.log
            .lock()
            .unwrap()
            .push(format!("complete {framing} {n} {sum}"));
        let body = format!("{n} {sum}");
        let _ = write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
}

/// The body bytes the tests send: not all the same, so a sum catches reordering.
fn pattern(from: u64, len: usize) -> Vec<u8> {
    (from..from + len as u64).map(|i| (i % 251) as u8).collect()
}

fn sum(bytes: &[u8]) -> u64 {
    bytes.iter().map(|b| *b as u64).sum()
}

/// Reads one response (head, and a Content-Length body) from `s`.
fn read_response(s: &mut TcpStream) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let code = status.split(' ').nth(1).unwrap().parse().unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length: ") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    (code, String::from_utf8_lossy(&body).into_owned())
}

fn one_server(
    addr: SocketAddr,
    tune: impl FnOnce(&mut webinfra_topology::LoadBalancer) + Send + 'static,
) -> Lb {
    Lb::start(&["a"], move |cfg| {
        cfg.servers[0].addr = addr;
        tune(cfg);
    })
}

#[test]
fn a_large_body_reaches_the_server_while_the_client_is_still_sending_it() {
    let (addr, seen) = raw_server();
    let lb = one_server(addr, |cfg| cfg.clients.max_body_bytes = 64 << 20);
    let total = 8 << 20;
    let body = pattern(0, total);
    let mut c = TcpStream::connect(lb.site).unwrap();
    write!(
        c,
        "PUT /file HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n"
    )
    .unwrap();
    c.write_all(&body[..1 << 20]).unwrap();
    // A load balancer that buffered the body would not send any of it yet.
    wait_until(
        Duration::from_secs(10),
        "the first MiB at the server",
        || seen.bytes.load(Ordering::SeqCst) >= 512 << 10,
    );
    c.write_all(&body[1 << 20..]).unwrap();
    let (status, answer) = read_response(&mut c);
    assert_eq!((status, answer), (200, format!("{total} {}", sum(&body))));
    assert_eq!(
        seen.log(),
        vec![format!("complete length {total} {}", sum(&body))]
    );

    // Without a length the body goes up chunked, piece by piece.
    let mut c = TcpStream::connect(lb.site).unwrap();
    write!(
        c,
        "POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let piece = pattern(7, 100_000);
    let before = seen.bytes.load(Ordering::SeqCst);
    for i in 0..3u64 {
        write!(c, "{:x}\r\n", piece.len()).unwrap();
        c.write_all(&piece).unwrap();
        c.write_all(b"\r\n").unwrap();
        if i == 1 {
            wait_until(Duration::from_secs(10), "two chunks at the server", || {
                seen.bytes.load(Ordering::SeqCst) >= before + 100_000
            });
        }
    }
    c.write_all(b"0\r\n\r\n").unwrap();
    let (status, answer) = read_response(&mut c);
    assert_eq!(
        (status, answer),
        (200, format!("300000 {}", 3 * sum(&piece)))
    );
    assert_eq!(
        seen.log()[1],
        format!("complete chunked 300000 {}", 3 * sum(&piece))
    );
}

#[test]
fn a_server_that_answers_before_reading_the_body_is_heard_by_the_client() {
    let (addr, seen) = raw_server();
    let lb = one_server(addr, |cfg| cfg.clients.max_body_bytes = 64 << 20);
    let mut c = TcpStream::connect(lb.site).unwrap();
    write!(
        c,
        "POST /reject HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        32 << 20
    )
    .unwrap();
    let mut writer = c.try_clone().unwrap();
    // The client goes on sending until someone stops reading.
    let sender = std::thread::spawn(move || {
        let chunk = pattern(0, 256 << 10);
        for _ in 0..128 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let (status, answer) = read_response(&mut c);
    assert_eq!((status, answer.as_str()), (413, "too big for server!\n"));
    assert_eq!(seen.log(), vec!["rejected".to_string()]);
    drop(c);
    sender.join().unwrap();
}

#[test]
fn a_client_silent_mid_body_gets_408_and_the_server_never_sees_a_whole_request() {
    let (addr, seen) = raw_server();
    let lb = one_server(addr, |cfg| {
        cfg.clients.client_timeout = Duration::from_millis(300);
        cfg.clients.max_body_bytes = 64 << 20;
    });
    // Still being read whole: nothing reaches the server.
    let mut c = TcpStream::connect(lb.site).unwrap();
    c.write_all(b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
        .unwrap();
    let (status, answer) = read_response(&mut c);
    assert_eq!(status, 408, "{answer}");
    assert!(answer.contains("no request body bytes"), "{answer}");
    assert!(seen.log().is_empty());

    // Already streaming: the server's connection is cut mid-body.
    let mut c = TcpStream::connect(lb.site).unwrap();
    write!(
        c,
        "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        1 << 20
    )
    .unwrap();
    c.write_all(&pattern(0, 200_000)).unwrap();
    let (status, _) = read_response(&mut c);
    assert_eq!(status, 408);
    wait_until(
        Duration::from_secs(5),
        "the server's connection cut",
        || seen.log().len() == 1,
    );
    assert_eq!(seen.log(), vec!["cut after 200000".to_string()]);
}

#[test]
fn a_chunked_body_over_the_limit_is_cut_with_413() {
    let (addr, seen) = raw_server();
    let lb = one_server(addr, |cfg| cfg.clients.max_body_bytes = 256 << 10);
    let mut c = TcpStream::connect(lb.site).unwrap();
    c.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let mut writer = c.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let piece = pattern(0, 64 << 10);
        for _ in 0..16 {
            let chunk = [format!("{:x}\r\n", piece.len()).as_bytes(), &piece, b"\r\n"].concat();
            if writer.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let (status, answer) = read_response(&mut c);
    assert_eq!(status, 413, "{answer}");
    wait_until(
        Duration::from_secs(5),
        "the server's connection cut",
        || seen.log().len() == 1,
    );
    assert!(seen.log()[0].starts_with("cut after"), "{:?}", seen.log());
    assert!(seen.bytes.load(Ordering::SeqCst) <= 256 << 10);
    drop(c);
    sender.join().unwrap();
}

#[test]
fn a_streamed_body_goes_to_the_next_server_when_a_connect_fails() {
    let (addr, seen) = raw_server();
    // A port with nothing listening: the connect is refused.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let lb = Lb::start(&["dead", "live"], move |cfg| {
        cfg.servers[0].addr = closed;
        cfg.servers[1].addr = addr;
        cfg.clients.max_body_bytes = 64 << 20;
    });
    let body = pattern(3, 1 << 20);
    // Round robin: one of two requests picks the dead server first.
    for _ in 0..2 {
        let mut c = TcpStream::connect(lb.site).unwrap();
        write!(
            c,
            "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        c.write_all(&body).unwrap();
        let (status, answer) = read_response(&mut c);
        assert_eq!(
            (status, answer),
            (200, format!("{} {}", body.len(), sum(&body)))
        );
    }
    assert_eq!(seen.log().len(), 2);
    let dead = &lb.stats()["servers"][0]["stats"];
    assert_eq!(
        (dead["errors"].as_u64(), dead["retries"].as_u64()),
        (Some(1), Some(1)),
        "{dead}"
    );
}

#[test]
fn a_client_still_sending_a_refused_body_gets_its_answer() {
    let (addr, seen) = raw_server();
    let lb = one_server(addr, |cfg| cfg.clients.max_body_bytes = 1 << 20);
    let mut c = TcpStream::connect(lb.site).unwrap();
    write!(
        c,
        "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        32 << 20
    )
    .unwrap();
    // The 413 is sent at once; this client only reads once it has written
    // 8 MiB more. A load balancer that closed with those bytes unread would
    // reset the connection, and the client would never see the 413.
    c.write_all(&pattern(0, 8 << 20))
        .expect("the load balancer kept reading");
    let (status, answer) = read_response(&mut c);
    assert_eq!(status, 413, "{answer}");
    // It closed its side after the answer; once the client closes too, it is gone.
    drop(c);
    assert!(seen.log().is_empty());
}
