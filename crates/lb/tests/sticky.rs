//! Session persistence by cookie (`sticky_cookie`): a client that carries
//! the cookie keeps its server, the server never sees the cookie, a draining
//! server keeps its sessions, and a server that is down or in maintenance
//! hands them to another (with a new cookie).

mod common;

use common::Lb;
use webinfra_test_support::http::{request, Response};

fn sticky() -> Lb {
    Lb::start(&["a", "b"], |cfg| {
        cfg.sticky_cookie = Some("SERVERID".into())
    })
}

fn get(lb: &Lb, cookie: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", *c)).collect();
    request(lb.site, "GET", "/", &headers, b"").unwrap()
}

/// The server a response pins the client to, from its `Set-Cookie`.
fn pinned_to(r: &Response) -> Option<String> {
    let v = r.header("set-cookie")?;
    let (pair, _) = v.split_once(';')?;
    pair.strip_prefix("SERVERID=").map(String::from)
}

#[test]
fn a_client_with_the_cookie_keeps_its_server_which_never_sees_the_cookie() {
    let lb = sticky();
    let first = get(&lb, None);
    let server = pinned_to(&first).expect("a Set-Cookie on the first response");
    assert_eq!(
        first.text(),
        server,
        "the cookie names the server that answered"
    );
    assert_eq!(first.header("cache-control"), Some("private"));
    let cookie = format!("session=xyz; SERVERID={server}");
    for _ in 0..6 {
        let r = get(&lb, Some(&cookie));
        assert_eq!(r.text(), server);
        assert_eq!(
            r.header("set-cookie"),
            None,
            "already pinned: no new cookie"
        );
    }
    let seen = lb.backend(&server).record.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 7);
    assert_eq!(seen[1].header("cookie"), Some("session=xyz"));
    // Without the cookie, round robin as usual.
    let other = if server == "a" { "b" } else { "a" };
    assert_eq!(get(&lb, None).text(), other);
}

#[test]
fn a_draining_server_keeps_its_sessions_and_a_disabled_one_hands_them_over() {
    let lb = sticky();
    let admin = |action: &str| {
        let r = request(lb.admin, "POST", &format!("/servers/a/{action}"), &[], b"").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    };
    admin("drain");
    assert_eq!(
        get(&lb, Some("SERVERID=a")).text(),
        "a",
        "draining: sessions stay"
    );
    assert_eq!(get(&lb, None).text(), "b", "draining: no new ones");
    admin("disable");
    let moved = get(&lb, Some("SERVERID=a"));
    assert_eq!(moved.text(), "b");
    assert_eq!(pinned_to(&moved).as_deref(), Some("b"));
}

#[test]
fn a_server_that_is_down_hands_its_sessions_to_another() {
    let lb = sticky();
    lb.backend("a").stop.send(true).unwrap();
    // The connect to a fails: the request goes to b and the client is re-pinned.
    let moved = get(&lb, Some("SERVERID=a"));
    assert_eq!((moved.status, moved.text().as_str()), (200, "b"));
    assert_eq!(pinned_to(&moved).as_deref(), Some("b"));
    // A cookie naming no server is ignored.
    let r = get(&lb, Some("SERVERID=nobody"));
    assert_eq!((r.status, pinned_to(&r).as_deref()), (200, Some("b")));
}
