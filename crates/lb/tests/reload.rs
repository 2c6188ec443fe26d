//! Reloading the configuration (SIGHUP, `POST /reload`) under load: no client
//! connection dropped, no request failed, in-flight requests finish where
//! they started, and new requests follow the new server list at once.

mod common;

use common::{wait_until, Lb};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webinfra_test_support::http::{get, request};

/// Client threads, the answers counted, the failures seen.
type Load = (
    Vec<std::thread::JoinHandle<()>>,
    Arc<AtomicUsize>,
    Arc<std::sync::Mutex<Vec<String>>>,
);

/// Keep-alive clients sending GETs on one connection each until `stop`,
/// at most 5,000 requests or 20 s each; counts answers and failures.
fn keep_alive_load(site: std::net::SocketAddr, clients: usize, stop: Arc<AtomicBool>) -> Load {
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles = (0..clients)
        .map(|_| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(site).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let started = Instant::now();
                let mut buf = vec![0u8; 4096];
                for _ in 0..5_000 {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(20) {
                        return;
                    }
                    if let Err(e) = s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") {
                        failures.lock().unwrap().push(format!("write: {e}"));
                        return;
                    }
                    // Backends answer with a one-letter name and Content-Length: 1.
                    let mut got = Vec::new();
                    while !(got.ends_with(b"\r\n\r\na")
                        || got.ends_with(b"\r\n\r\nb")
                        || got.ends_with(b"\r\n\r\nc"))
                    {
                        match s.read(&mut buf) {
                            Ok(0) => {
                                failures.lock().unwrap().push("connection closed".into());
                                return;
                            }
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                            Err(e) => {
                                failures.lock().unwrap().push(format!("read: {e}"));
                                return;
                            }
                        }
                    }
                    if !got.starts_with(b"HTTP/1.1 200") {
                        failures
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&got).into_owned());
                    }
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    (handles, ok, failures)
}

#[test]
fn a_reload_under_load_swaps_the_servers_and_drops_nothing() {
    let lb = Lb::start(&["a", "b", "c"], |cfg| {
        // Only a and b serve at first; c is the server the reload adds.
        cfg.servers.truncate(2);
        // The slow request below is pinned to b by this cookie.
        cfg.sticky_cookie = Some("SERVERID".into());
    });
    let all = common::config(
        &lb.backends
            .iter()
            .map(|b| (b.name, b.addr))
            .collect::<Vec<_>>(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (handles, ok, failures) = keep_alive_load(lb.site, 4, stop.clone());
    wait_until(Duration::from_secs(5), "load running", || {
        ok.load(Ordering::Relaxed) > 100
    });
    // A slow request in flight on b when b is removed.
    let site = lb.site;
    let slow = std::thread::spawn(move || {
        request(site, "GET", "/slow/1500", &[("Cookie", "SERVERID=b")], b"").unwrap()
    });
    wait_until(Duration::from_secs(5), "the slow request on b", || {
        lb.backend("b").record.in_flight.load(Ordering::SeqCst) > 0
    });
    // Reload: b removed, c added.
    {
        let mut next = lb.config();
        next.servers = vec![all.servers[0].clone(), all.servers[2].clone()];
        *lb.next_config.lock().unwrap() = Ok(next);
    }
    let reload = request(lb.admin, "POST", "/reload", &[], b"").unwrap();
    assert_eq!(reload.status, 200, "{}", reload.text());
    let changes = reload.json()["changes"].to_string();
    assert!(
        changes.contains("added server c") && changes.contains("removed server b"),
        "{changes}"
    );
    let before_c = ok.load(Ordering::Relaxed);
    wait_until(Duration::from_secs(5), "c serving", || {
        lb.backend("c").record.count() > 50 && ok.load(Ordering::Relaxed) > before_c + 100
    });
    let b_after = lb.backend("b").record.count();
    let slow = slow.join().unwrap();
    assert_eq!(slow.status, 200, "the in-flight request finishes");
    assert_eq!(slow.text(), "b", "where it started");
    // Nothing new reaches b once the reload answered.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(lb.backend("b").record.count(), b_after);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "failed during the reload: {failures:?}"
    );
    assert_eq!(lb.stats()["servers"].as_array().unwrap().len(), 2);
}

#[test]
fn a_reload_stops_the_old_health_checks_while_idle_connections_still_hold_it() {
    let lb = Lb::start(&["a", "b"], |cfg| {
        cfg.health_check.interval = Duration::from_millis(20);
    });
    // A keep-alive connection that served a request, then went idle: it
    // keeps the configuration it last used until its next request.
    let mut idle = TcpStream::connect(lb.site).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let exchange = |s: &mut TcpStream| {
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"\r\n\r\na") && !got.ends_with(b"\r\n\r\nb") {
            let n = s.read(&mut buf).unwrap();
            assert_ne!(n, 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        got
    };
    exchange(&mut idle);
    let b = &lb.backend("b").record;
    wait_until(Duration::from_secs(5), "b checked", || {
        b.checks.load(Ordering::SeqCst) >= 2
    });
    let mut next = lb.config();
    next.servers.truncate(1);
    *lb.next_config.lock().unwrap() = Ok(next);
    let reload = request(lb.admin, "POST", "/reload", &[], b"").unwrap();
    assert_eq!(reload.status, 200, "{}", reload.text());
    // At most the check already on its way when the reload answered.
    let b_at_reload = b.checks.load(Ordering::SeqCst) + 1;
    let a = &lb.backend("a").record;
    let a_at_reload = a.checks.load(Ordering::SeqCst);
    wait_until(Duration::from_secs(5), "a checked ten times more", || {
        a.checks.load(Ordering::SeqCst) >= a_at_reload + 10
    });
    assert!(
        b.checks.load(Ordering::SeqCst) <= b_at_reload,
        "the removed server is still checked: {} checks, {b_at_reload} at the reload",
        b.checks.load(Ordering::SeqCst)
    );
    // The idle connection goes on, on the new configuration.
    assert!(exchange(&mut idle).ends_with(b"\r\n\r\na"));
}

#[test]
fn a_broken_file_is_refused_and_the_running_configuration_stays() {
    let lb = Lb::start(&["a", "b"], |_| {});
    *lb.next_config.lock().unwrap() = Err(
        "topologies/x.toml:12:9: key `load_balancer.backend.weight`: must be between 1 and 256"
            .into(),
    );
    let r = request(lb.admin, "POST", "/reload", &[], b"").unwrap();
    assert_eq!(r.status, 422);
    assert!(r.json()["error"].as_str().unwrap().contains("x.toml:12:9"));
    let served: std::collections::HashSet<String> =
        (0..4).map(|_| get(lb.site, "/").unwrap().text()).collect();
    assert_eq!(served.len(), 2, "both servers still serve: {served:?}");
}

#[test]
fn a_hangup_reloads_and_keeps_the_health_of_unchanged_servers() {
    let lb = Lb::start(&["a", "b"], |_| {});
    lb.backend("b").stop.send(true).unwrap();
    // Passive detection takes b down on the first failed connect.
    for _ in 0..4 {
        assert_eq!(get(lb.site, "/").unwrap().status, 200);
    }
    assert_eq!(lb.stats()["servers"][1]["up"], false);
    let mut next = lb.config();
    next.algorithm = webinfra_topology::Algorithm::LeastConnections;
    *lb.next_config.lock().unwrap() = Ok(next);
    lb.block_on(lb.hangup.send(())).unwrap();
    wait_until(Duration::from_secs(5), "reloaded", || {
        get(lb.admin, "/stats").unwrap().json()["generation"] == 1
    });
    let stats = lb.stats();
    assert_eq!(stats["servers"][1]["up"], false, "b is still known down");
    assert!(
        stats["servers"][0]["stats"]["requests"].as_u64().unwrap() >= 4,
        "counters kept"
    );
}

#[test]
fn max_connections_hold_across_a_reload() {
    let lb = Lb::start(&["a"], |cfg| {
        cfg.servers[0].limits.max_connections = Some(1);
    });
    let site = lb.site;
    let first = std::thread::spawn(move || get(site, "/slow/1500").unwrap());
    wait_until(Duration::from_secs(5), "a busy", || {
        lb.backend("a").record.in_flight.load(Ordering::SeqCst) == 1
    });
    let r = request(lb.admin, "POST", "/reload", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    // The new configuration knows a's slot is taken: this one waits for it.
    let second = get(lb.site, "/slow/10").unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(first.join().unwrap().status, 200);
    assert_eq!(
        lb.backend("a").record.max_in_flight.load(Ordering::SeqCst),
        1,
        "the reload let a second request in"
    );
}

#[test]
fn changes_on_the_admin_address_come_only_from_the_topologys_hosts() {
    let lb = Lb::start(&["a"], |cfg| {
        cfg.operators = vec!["127.0.0.3".parse().unwrap()]
    });
    let post_from = |source: &str, path: &str| {
        let mut s =
            webinfra_test_support::http::connect_from(source.parse().unwrap(), lb.admin).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let refused = post_from("127.0.0.2", "/servers/a/disable");
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(refused.contains("not a host of the topology"), "{refused}");
    assert_eq!(
        lb.stats()["servers"][0]["admin"],
        "READY",
        "nothing changed"
    );
    // Reading stays open to all.
    assert_eq!(
        webinfra_test_support::http::get(lb.admin, "/stats")
            .unwrap()
            .status,
        200
    );
    assert!(post_from("127.0.0.3", "/servers/a/drain").starts_with("HTTP/1.1 200"));
    assert!(post_from("127.0.0.1", "/servers/a/enable").starts_with("HTTP/1.1 200"));
    assert_eq!(lb.stats()["servers"][0]["admin"], "READY");
}

#[test]
fn a_reload_says_it_puts_a_weight_set_at_run_time_back_and_round_robin_refuses_weights() {
    let lb = Lb::start(&["a", "b"], |cfg| {
        cfg.algorithm = webinfra_topology::Algorithm::WeightedRoundRobin
    });
    let set = request(lb.admin, "POST", "/servers/a/weight/7", &[], b"").unwrap();
    assert_eq!(set.status, 200, "{}", set.text());
    *lb.next_config.lock().unwrap() = Ok(lb.config());
    let reload = request(lb.admin, "POST", "/reload", &[], b"").unwrap();
    let changes = reload.json()["changes"].to_string();
    assert!(
        changes.contains("server a: weight 7 (set at run time) back to the file's 1"),
        "{changes}"
    );
    // Under round robin a weight would change nothing: refused, not ignored.
    let rr = Lb::start(&["a"], |_| {});
    let refused = request(rr.admin, "POST", "/servers/a/weight/3", &[], b"").unwrap();
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert!(refused.text().contains("round-robin"), "{}", refused.text());
    assert_eq!(rr.stats()["servers"][0]["weight"], 1);
}
