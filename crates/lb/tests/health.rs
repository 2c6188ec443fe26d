//! Active health checks as an operator configures them: the expected status
//! and the `Host` they are sent with; and what becomes of the requests a
//! server holds when its checks take it down.

mod common;

use common::{wait_until, Lb};
use std::sync::atomic::Ordering;
use std::time::Duration;
use webinfra_test_support::http::{keep_alive_with, request};

#[test]
fn a_server_answering_another_status_than_expected_is_taken_down() {
    // a and b answer /status/204 with 204: healthy by default (2xx), not
    // when the check expects 200.
    let lb = Lb::start(&["a", "b"], |cfg| {
        cfg.health_check.path = "/status/204".into();
        cfg.health_check.interval = Duration::from_millis(50);
        cfg.health_check.fall = 2;
    });
    wait_until(Duration::from_secs(5), "a check answered", || {
        lb.stats()["servers"][0]["last_check"] == "204 No Content"
    });
    assert_eq!(
        lb.stats()["servers"][0]["up"],
        true,
        "204 is healthy by default"
    );
    let mut strict = lb.config();
    strict.health_check.expect_status = Some(200);
    *lb.next_config.lock().unwrap() = Ok(strict);
    lb.block_on(lb.hangup.send(())).unwrap();
    wait_until(Duration::from_secs(5), "both servers down", || {
        let s = lb.stats();
        s["servers"][0]["up"] == false && s["servers"][1]["up"] == false
    });
    assert!(lb.stats()["servers"][0]["last_check"]
        .as_str()
        .unwrap()
        .contains("204"));
    let r = webinfra_test_support::http::get(lb.site, "/").unwrap();
    assert_eq!(r.status, 503);
}

#[test]
fn checks_can_name_the_host_a_virtual_host_server_expects() {
    // The servers serve /vhost/www.example.com only to that Host: checked
    // with their address as Host (the default) they are down.
    let lb = Lb::start(&["a"], |cfg| {
        cfg.health_check.path = "/vhost/www.example.com".into();
        cfg.health_check.interval = Duration::from_millis(50);
        cfg.health_check.fall = 1;
    });
    wait_until(Duration::from_secs(5), "a down by its check", || {
        lb.stats()["servers"][0]["up"] == false
    });
    assert!(lb.stats()["servers"][0]["last_check"]
        .as_str()
        .unwrap()
        .contains("404"));
    let mut named = lb.config();
    named.health_check.host = Some("www.example.com".into());
    *lb.next_config.lock().unwrap() = Ok(named);
    lb.block_on(lb.hangup.send(())).unwrap();
    wait_until(Duration::from_secs(5), "a up again", || {
        lb.stats()["servers"][0]["up"] == true
    });
    let r = webinfra_test_support::http::get(lb.site, "/").unwrap();
    assert_eq!((r.status, r.text()), (200, "a".to_string()));
}

/// The configuration `start` gives: checks every 100 ms that fail twice
/// within 200 ms each, a sticky cookie to pin requests to b, and a response
/// timeout far longer than the test's reads.
fn frozen_b_config(cfg: &mut webinfra_topology::LoadBalancer) {
    cfg.sticky_cookie = Some("SERVERID".into());
    cfg.health_check.interval = Duration::from_millis(100);
    cfg.health_check.timeout = Duration::from_millis(200);
    cfg.health_check.fall = 2;
    for s in &mut cfg.servers {
        s.limits.response_timeout = Duration::from_secs(120);
    }
}

/// A server that stops answering (a frozen process) holds the requests sent
/// to it. Once its checks take it down, those that may be sent again go to
/// another server -- a GET in the fast lane, a PUT on the general path --
/// while a POST, which may already have done its work there, keeps waiting
/// and gets the server's own answer when it comes back.
#[test]
fn a_server_marked_down_gives_up_the_requests_it_holds_that_can_go_elsewhere() {
    let lb = Lb::start(&["a", "b"], frozen_b_config);
    let (a, b) = (&lb.backend("a").record, &lb.backend("b").record);
    b.frozen.store(true, Ordering::SeqCst);
    let site = lb.site;
    let on_b = [("Cookie", "SERVERID=b")];
    let get = std::thread::spawn(move || keep_alive_with(site, &on_b, &[("GET", "/g", b"")]));
    let put = std::thread::spawn(move || request(site, "PUT", "/p", &on_b, b"{}"));
    let post = std::thread::spawn(move || request(site, "POST", "/w", &on_b, b"{}"));
    wait_until(Duration::from_secs(10), "three requests held by b", || {
        b.count() == 3
    });
    assert_eq!(a.count(), 0);
    // Now its checks hang too: b goes down.
    b.frozen_checks.store(true, Ordering::SeqCst);
    let get = get.join().unwrap().expect("the GET answered");
    assert_eq!((get[0].status, get[0].text()), (200, "a".to_string()));
    let put = put.join().unwrap().expect("the PUT answered");
    assert_eq!((put.status, put.text()), (200, "a".to_string()));
    assert_eq!(lb.stats()["servers"][1]["up"], false);
    let on_a: Vec<_> = a
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(
        on_a.len(),
        2,
        "only the GET and the PUT went to a: {on_a:?}"
    );
    assert!(!post.is_finished(), "the POST still waits for b");
    b.thaw();
    let post = post.join().unwrap().expect("the POST answered");
    assert_eq!((post.status, post.text()), (200, "b".to_string()));
    assert_eq!(a.count(), 2, "the POST was never sent to a");
}

/// The same across a reload: the request started on the configuration the
/// reload replaced, whose checks stopped; the new one's take b down.
#[test]
fn a_request_held_across_a_reload_is_given_up_when_the_new_checks_take_its_server_down() {
    let lb = Lb::start(&["a", "b"], frozen_b_config);
    let b = &lb.backend("b").record;
    b.frozen.store(true, Ordering::SeqCst);
    let site = lb.site;
    let get = std::thread::spawn(move || {
        keep_alive_with(site, &[("Cookie", "SERVERID=b")], &[("GET", "/g", b"")])
    });
    wait_until(Duration::from_secs(10), "the GET held by b", || {
        b.count() == 1
    });
    let r = request(lb.admin, "POST", "/reload", &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    b.frozen_checks.store(true, Ordering::SeqCst);
    let get = get.join().unwrap().expect("the GET answered");
    assert_eq!((get[0].status, get[0].text()), (200, "a".to_string()));
}
