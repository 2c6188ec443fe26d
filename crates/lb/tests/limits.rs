//! Limits and timeouts as a client sees them: per-server `max_connections`
//! with a bounded queue and queue timeout, slow start, connect and response
//! timeouts, the global connection limit, header and idle keep-alive timeouts.

mod common;

use common::{wait_until, Lb};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use webinfra_test_support::http::{get, send_raw};

/// Sends GET `path` on a new thread; joins to the response.
fn spawn_get(
    lb: &Lb,
    path: &str,
) -> std::thread::JoinHandle<webinfra_test_support::http::Response> {
    let (site, path) = (lb.site, path.to_string());
    std::thread::spawn(move || get(site, &path).unwrap())
}

fn in_flight(lb: &Lb) -> usize {
    lb.backends
        .iter()
        .map(|b| b.record.in_flight.load(Ordering::SeqCst))
        .sum()
}

#[test]
fn requests_beyond_max_connections_wait_in_the_queue_and_a_full_queue_is_a_503() {
    let lb = Lb::start(&["a", "b"], |cfg| {
        for s in &mut cfg.servers {
            s.limits.max_connections = Some(1);
        }
        cfg.clients.max_queue = 2;
        cfg.clients.queue_timeout = Duration::from_secs(10);
    });
    let busy: Vec<_> = (0..2).map(|_| spawn_get(&lb, "/slow/3000")).collect();
    wait_until(Duration::from_secs(5), "both servers busy", || {
        in_flight(&lb) == 2
    });
    let queued: Vec<_> = (0..2).map(|_| spawn_get(&lb, "/slow/10")).collect();
    wait_until(Duration::from_secs(5), "two requests queued", || {
        lb.stats()["queued"] == 2
    });
    // A fifth request finds both servers full and the queue full.
    let refused = get(lb.site, "/slow/10").unwrap();
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        refused.text().contains("queue is full"),
        "{}",
        refused.text()
    );
    for h in busy.into_iter().chain(queued) {
        assert_eq!(h.join().unwrap().status, 200);
    }
    for b in &lb.backends {
        assert_eq!(
            b.record.max_in_flight.load(Ordering::SeqCst),
            1,
            "server {} exceeded max_connections",
            b.name
        );
    }
    let total: usize = lb.backends.iter().map(|b| b.record.count()).sum();
    assert_eq!(total, 4, "the refused request reached no server");
}

#[test]
fn a_request_that_waits_longer_than_the_queue_timeout_gets_a_503() {
    let lb = Lb::start(&["a"], |cfg| {
        cfg.servers[0].limits.max_connections = Some(1);
        cfg.clients.queue_timeout = Duration::from_millis(200);
    });
    let busy = spawn_get(&lb, "/slow/2000");
    wait_until(Duration::from_secs(5), "the server busy", || {
        in_flight(&lb) == 1
    });
    let started = Instant::now();
    let r = get(lb.site, "/").unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("queue timeout"), "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "it waited for the slot instead"
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(busy.join().unwrap().status, 200);
    assert_eq!(lb.backend("a").record.count(), 1);
}

#[test]
fn a_server_slower_than_its_response_timeout_is_a_504_naming_it() {
    let lb = Lb::start(&["a"], |cfg| {
        cfg.servers[0].limits.response_timeout = Duration::from_millis(200);
    });
    let r = get(lb.site, "/slow/3000").unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("a (127.0.0.1:"), "{}", r.text());
    assert_eq!(get(lb.site, "/").unwrap().status, 200);
}

/// A listener whose accept queue is full and never accepted: a SYN to it is
/// dropped and the connect hangs, like a server behind a black hole.
fn black_hole() -> (std::net::TcpListener, Vec<TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let hole: std::net::TcpListener = socket.into();
    let addr = hole.local_addr().unwrap();
    let fill = (0..8)
        .map_while(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok())
        .collect();
    (hole, fill)
}

fn with_hole(cfg: &mut webinfra_topology::LoadBalancer, hole: std::net::SocketAddr) {
    let mut server = common::config(&[("hole", hole)]).servers.remove(0);
    server.limits.connect_timeout = Duration::from_millis(200);
    cfg.servers.insert(0, server);
}

#[test]
fn a_connect_that_does_not_complete_in_time_is_a_504() {
    let (hole, _fill) = black_hole();
    let addr = hole.local_addr().unwrap();
    let lb = Lb::start(&[], move |cfg| with_hole(cfg, addr));
    let started = Instant::now();
    let r = get(lb.site, "/").unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("connect timed out"), "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn after_a_connect_timeout_the_next_server_answers() {
    let (hole, _fill) = black_hole();
    let addr = hole.local_addr().unwrap();
    let lb = Lb::start(&["a"], move |cfg| with_hole(cfg, addr));
    // Round robin starts at the hole: the connect times out, `a` answers.
    let r = get(lb.site, "/").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "a"));
    assert_eq!(
        lb.stats()["servers"][0]["up"],
        false,
        "a connect timeout takes the server down"
    );
}

#[test]
fn a_server_back_from_maintenance_ramps_up_over_its_slow_start() {
    let lb = Lb::start(&["a", "b"], |cfg| {
        for s in &mut cfg.servers {
            s.limits.slow_start = Duration::from_secs(3);
        }
    });
    let post = |path: &str| {
        webinfra_test_support::http::request(lb.admin, "POST", path, &[], b"").unwrap()
    };
    assert_eq!(post("/servers/b/disable").status, 200);
    assert_eq!(post("/servers/b/enable").status, 200);
    // Early in its slow start b gets a small share, not round robin's half.
    let early_start = Instant::now();
    let mut early_b = 0;
    let mut early_n = 0;
    while early_start.elapsed() < Duration::from_millis(300) && early_n < 400 {
        if get(lb.site, "/").unwrap().text() == "b" {
            early_b += 1;
        }
        early_n += 1;
    }
    assert!(early_n >= 20, "too few requests to judge: {early_n}");
    assert!(
        early_b * 5 < early_n,
        "b got {early_b} of {early_n} requests in the first 300 ms of a 3 s slow start"
    );
    assert_eq!(lb.stats()["servers"][1]["slow_start"], true);
    wait_until(Duration::from_secs(10), "slow start over", || {
        lb.stats()["servers"][1]["slow_start"] == false
    });
    let b = (0..40)
        .filter(|_| get(lb.site, "/").unwrap().text() == "b")
        .count();
    assert_eq!(b, 20, "after slow start, round robin halves again");
}

/// Reads from `s` until EOF or `limit`; true when the server closed.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

fn read_response(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn an_idle_keep_alive_connection_is_closed_but_a_slow_head_gets_the_header_timeout() {
    let lb = Lb::start(&["a"], |cfg| {
        cfg.clients.keep_alive_timeout = Duration::from_millis(300);
        cfg.clients.header_timeout = Duration::from_secs(5);
    });
    // Idle after a response: closed after the keep-alive timeout.
    let mut s = TcpStream::connect(lb.site).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert!(read_response(&mut s).starts_with("HTTP/1.1 200"));
    let idle = Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(3)),
        "idle connection kept open"
    );
    assert!(idle.elapsed() >= Duration::from_millis(250));
    // A head that trickles in for longer than the keep-alive timeout (but
    // within the header timeout) is served.
    let mut s = TcpStream::connect(lb.site).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert!(read_response(&mut s).starts_with("HTTP/1.1 200"));
    for piece in [
        "GET / HT",
        "TP/1.1\r\n",
        "Host: a\r\n",
        "X-Slow: 1\r\n",
        "\r\n",
    ] {
        s.write_all(piece.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(read_response(&mut s).starts_with("HTTP/1.1 200"));
}

/// Timers are moved on lazily (a connection's keep-alive timer and a pooled
/// upstream connection's response timer stay armed for an earlier request's
/// instant): that instant passing must neither time out the request now in
/// progress nor close the connection idle since a later response.
#[test]
fn timeouts_run_from_the_latest_request_on_a_connection() {
    let lb = Lb::start(&["a"], |cfg| {
        cfg.clients.keep_alive_timeout = Duration::from_millis(1000);
        cfg.servers[0].limits.response_timeout = Duration::from_millis(800);
    });
    let mut s = TcpStream::connect(lb.site).unwrap();
    let ask = |s: &mut TcpStream, path: &str| {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .unwrap();
        read_response(s)
    };
    let first = Instant::now();
    assert!(ask(&mut s, "/").starts_with("HTTP/1.1 200"));
    // Answered 900 ms after the first request started: past its response
    // deadline, within this one's own.
    std::thread::sleep(Duration::from_millis(400));
    let slow = ask(&mut s, "/slow/500");
    assert!(slow.starts_with("HTTP/1.1 200"), "{slow}");
    assert!(first.elapsed() >= Duration::from_millis(800));
    // Idle for 400 ms: past 1000 ms after the first response, well within
    // 1000 ms of the last one.
    std::thread::sleep(Duration::from_millis(400));
    assert!(ask(&mut s, "/").starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut s, Duration::from_secs(3)));
    assert_eq!(lb.backend("a").record.count(), 3);
}

#[test]
fn a_slowloris_client_is_cut_off_at_the_header_timeout() {
    let lb = Lb::start(&["a"], |cfg| {
        cfg.clients.header_timeout = Duration::from_millis(400);
    });
    let mut s = TcpStream::connect(lb.site).unwrap();
    let started = Instant::now();
    let mut cut = false;
    s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    for i in 0..100 {
        // A valid head, one header every 50 ms, never finished.
        std::thread::sleep(Duration::from_millis(50));
        if s.write_all(format!("X-{i}: 1\r\n").as_bytes()).is_err() {
            cut = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    assert!(
        cut || closed_within(&mut s, Duration::from_secs(2)),
        "still open after 3 s"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(lb.backend("a").record.count(), 0);
}

#[test]
fn connections_beyond_the_global_limit_wait_until_one_closes() {
    let lb = Lb::start(&["a"], |cfg| {
        cfg.clients.max_connections = 2;
    });
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(lb.site).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            assert!(read_response(&mut s).starts_with("HTTP/1.1 200"));
            s
        })
        .collect();
    // The third connection is in the kernel's backlog: no answer yet.
    let mut third = TcpStream::connect(lb.site).unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        third.read(&mut buf).is_err(),
        "served beyond max_connections"
    );
    held.pop();
    assert!(read_response(&mut third).starts_with("HTTP/1.1 200"));
    drop(held);
    assert_eq!(
        send_raw(
            lb.site,
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        .unwrap()
        .status,
        200
    );
}

#[test]
fn a_body_over_max_body_bytes_is_a_413_and_reaches_no_server() {
    let lb = Lb::start(&["a"], |cfg| {
        cfg.clients.max_body_bytes = 100;
    });
    let post = |n: usize| {
        webinfra_test_support::http::request(lb.site, "POST", "/up", &[], &vec![b'x'; n]).unwrap()
    };
    assert_eq!(post(101).status, 413);
    assert_eq!(lb.backend("a").record.count(), 0);
    assert_eq!(post(100).status, 200);
    assert_eq!(
        lb.backend("a").record.seen.lock().unwrap()[0].body.len(),
        100
    );
}

#[test]
fn a_client_that_stops_reading_its_response_is_dropped_and_frees_the_server_slot() {
    let lb = Lb::start(&["a"], |cfg| {
        cfg.servers[0].limits.max_connections = Some(1);
        cfg.clients.client_timeout = Duration::from_millis(300);
        cfg.clients.queue_timeout = Duration::from_secs(10);
    });
    let total = 64 << 20;
    let mut stuck = TcpStream::connect(lb.site).unwrap();
    write!(stuck, "GET /big/{total} HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    wait_until(
        Duration::from_secs(10),
        "the big response under way",
        || lb.backend("a").record.count() == 1,
    );
    // The only slot is held by a response nobody reads, until the send timeout.
    let next = get(lb.site, "/").unwrap();
    assert_eq!(next.status, 200, "{}", next.text());
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    while let Ok(n @ 1..) = stuck.read(&mut buf) {
        got += n;
    }
    assert!(got < total, "the whole response went out ({got} bytes)");
}

#[test]
fn open_client_connections_are_counted_per_listener() {
    let lb = Lb::start(&["a"], |_| {});
    let open = |lb: &Lb| lb.stats()["listeners"][0]["open_connections"].as_u64();
    let held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(lb.site).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            assert!(read_response(&mut s).starts_with("HTTP/1.1 200"));
            s
        })
        .collect();
    assert_eq!(lb.stats()["listeners"][0]["name"], "http");
    assert_eq!(open(&lb), Some(3));
    drop(held);
    wait_until(
        Duration::from_secs(5),
        "the closed connections gone",
        || open(&lb) == Some(0),
    );
    assert_eq!(
        lb.stats()["listeners"][0]["connections_total"].as_u64(),
        Some(3),
        "(the admin address has counters of its own)"
    );
    let metrics = get(lb.admin, "/metrics").unwrap().text();
    assert!(
        metrics.contains("webinfra_lb_client_connections_total{listener=\"http\"} 3"),
        "{metrics}"
    );
}

#[test]
fn a_request_pinned_to_a_full_server_is_counted_in_that_servers_queue() {
    let lb = Lb::start(&["a", "b"], |cfg| {
        cfg.servers[0].limits.max_connections = Some(1);
        cfg.sticky_cookie = Some("SERVERID".into());
        cfg.clients.queue_timeout = Duration::from_secs(10);
    });
    let site = lb.site;
    let pinned_get = move |path: &'static str| {
        std::thread::spawn(move || {
            webinfra_test_support::http::request(
                site,
                "GET",
                path,
                &[("Cookie", "SERVERID=a")],
                b"",
            )
            .unwrap()
        })
    };
    let busy = pinned_get("/slow/2000");
    wait_until(Duration::from_secs(5), "a busy", || {
        lb.backend("a").record.in_flight.load(Ordering::SeqCst) == 1
    });
    let waiting = pinned_get("/slow/10");
    wait_until(Duration::from_secs(5), "one request queued for a", || {
        let servers = lb.stats()["servers"].clone();
        servers[0]["queued"] == 1 && servers[1]["queued"] == 0
    });
    let metrics = get(lb.admin, "/metrics").unwrap().text();
    assert!(
        metrics.contains("webinfra_lb_server_queued{server=\"a\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("webinfra_lb_queued_requests 1\n"),
        "{metrics}"
    );
    // b is free, but the pinned request waits for a and is served there.
    for h in [busy, waiting] {
        let r = h.join().unwrap();
        assert_eq!((r.status, r.text()), (200, "a".to_string()));
    }
    assert_eq!(lb.stats()["servers"][0]["queued"], 0);
    assert_eq!(lb.backend("b").record.count(), 0);
}
