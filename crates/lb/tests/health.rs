//! Active health checks as an operator configures them: the expected status
//! and the `Host` they are sent with.

mod common;

use common::{wait_until, Lb};
use std::time::Duration;

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
