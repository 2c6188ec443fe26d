//! Losing a server: kill -9 both of server-01's processes under sequential
//! load through the load balancer. No client request may fail; once it is
//! started again, traffic returns to both servers. Losing only its
//! application fails no request either, nor does freezing its web server
//! (SIGSTOP). Own blocks: 127.77.2.0/24, 127.77.4.0/24 and 127.77.9.0/24.

use std::time::{Duration, Instant};
use webinfra_test_support::{freeze, http, kill9, poll, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webinfra");

/// The component `which` picks in `webinfra status --json` (null if none).
fn component(stack: &Stack, which: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let status = stack.status();
    let found = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| which(c));
    found.cloned().unwrap_or_default()
}

/// The component named `name`.
fn named(stack: &Stack, name: &str) -> serde_json::Value {
    component(stack, |c| c["name"] == name)
}

/// The load balancer's servers as it reports them (server-01 first).
fn lb_servers(stack: &Stack) -> serde_json::Value {
    component(stack, |c| c["role"] == "load-balancer")["info"]["servers"].clone()
}

#[test]
fn killing_server_01_fails_no_request_and_restarting_it_brings_traffic_back() {
    let stack = Stack::start(BIN.as_ref(), 77, 2);
    let get = || http::get(stack.site(), "/api/messages").expect("the load balancer answers");

    for _ in 0..20 {
        assert_eq!(get().status, 200);
    }
    let pids = stack.pids_of("server-01");
    assert_eq!(pids.len(), 2, "server-01 runs a web and an app server");
    for pid in &pids {
        assert!(kill9(*pid), "kill -9 {pid}");
    }

    // Bounded load: 300 requests or 20 s, whichever ends first.
    let start = Instant::now();
    let mut served = Vec::new();
    while served.len() < 300 && start.elapsed() < Duration::from_secs(20) {
        let r = get();
        assert_eq!(
            r.status,
            200,
            "request {} after the kill failed: {}",
            served.len(),
            r.text()
        );
        served.push(r.header("x-served-by").unwrap_or("").to_string());
    }
    assert!(
        served.len() >= 100,
        "only {} requests in 20 s",
        served.len()
    );
    assert!(served.iter().all(|s| s == "server-02"), "{served:?}");

    // The load balancer reports server-01 down within 2 s of the kill (it already is).
    let lb = lb_servers(&stack);
    assert_eq!(lb[0]["name"], "server-01");
    assert_eq!(lb[0]["up"], false, "{lb}");

    let out = stack.webinfra(&["start", "server-01"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    poll(
        "server-01 to answer through the load balancer again",
        Duration::from_secs(20),
        || {
            let r = get();
            assert_eq!(r.status, 200);
            (r.header("x-served-by") == Some("server-01")).then_some(())
        },
    );
    let served: Vec<String> = (0..10)
        .map(|_| get().header("x-served-by").unwrap().to_string())
        .collect();
    assert_eq!(
        served.iter().filter(|s| *s == "server-01").count(),
        5,
        "{served:?}"
    );
}

#[test]
fn losing_only_the_application_fails_no_request_and_takes_the_server_out_of_rotation() {
    let stack = Stack::start(BIN.as_ref(), 77, 4);
    let app_pid = named(&stack, "server-01/app")["pid"].as_u64().unwrap() as u32;
    let web = named(&stack, "server-01/web");
    let web_01: std::net::SocketAddr =
        format!("{}:{}", web["address"].as_str().unwrap(), web["port"])
            .parse()
            .unwrap();
    assert!(kill9(app_pid));
    // At once, before any check could notice: server-01's web server hands
    // what its application cannot take to server-02's, reads and writes.
    let r = http::get(web_01, "/api/messages").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let json = [("content-type", "application/json")];
    let message = br#"{"author":"test","text":"written after the crash"}"#;
    let r = http::request(web_01, "POST", "/api/messages", &json, message).unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    // The application that answered names its host.
    assert_eq!(r.header("x-served-by"), Some("server-02"));
    let lb_says_down = || lb_servers(&stack)[0]["up"] == false;
    // Health checks every 200 ms, fall 2: well within 2 s.
    poll(
        "the load balancer to take server-01 down",
        Duration::from_secs(2),
        || lb_says_down().then_some(()),
    );
    for _ in 0..50 {
        let r = http::get(stack.site(), "/api/messages").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-served-by"), Some("server-02"));
    }
}

#[test]
fn freezing_a_web_server_fails_no_request_and_it_serves_again_once_thawed() {
    let stack = Stack::start(BIN.as_ref(), 77, 9);
    let web_pid = named(&stack, "server-01/web")["pid"].as_u64().unwrap() as u32;
    let get = || http::get(stack.site(), "/api/messages").expect("the load balancer answers");
    let server_01 = || lb_servers(&stack)[0]["up"].clone();
    let frozen = freeze(web_pid);
    // Round robin sends one of the first two to the frozen server: it holds
    // it (its kernel still takes connections) until the checks take it
    // down, far sooner than the 60 s response timeout or the client's 30 s.
    for i in 0..20 {
        let r = get();
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.header("x-served-by"), Some("server-02"), "request {i}");
    }
    assert_eq!(server_01(), false);
    drop(frozen);
    poll("server-01 back up", Duration::from_secs(10), || {
        (server_01() == true).then_some(())
    });
    let served: Vec<_> = (0..10)
        .map(|_| get().header("x-served-by").unwrap_or("").to_string())
        .collect();
    assert!(served.iter().any(|s| s == "server-01"), "{served:?}");
}
