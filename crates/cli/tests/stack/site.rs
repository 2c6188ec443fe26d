//! What a user sees -- static files, the HTML board -- and `webinfra status`.

use crate::stack;
use std::time::Duration;
use webinfra_test_support::{http, poll};

#[test]
fn static_files_have_validators_gzip_and_revalidate_on_either_server() {
    let (stack, _serial) = stack();
    let r = http::get(stack.site(), "/static/style.css").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(r.text().contains("foobar.com message board"));
    let etag = r.header("etag").expect("an ETag").to_string();
    let last_modified = r
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    // Two requests through the load balancer: one per server, both revalidate.
    let mut servers = Vec::new();
    for _ in 0..2 {
        let r = http::request(
            stack.site(),
            "GET",
            "/static/style.css",
            &[("If-None-Match", &etag)],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 304, "served by {:?}", r.header("x-served-by"));
        assert!(r.body.is_empty());
        servers.push(r.header("x-served-by").unwrap().to_string());
    }
    servers.sort();
    assert_eq!(servers, ["server-01", "server-02"]);
    let r = http::request(
        stack.web(1),
        "GET",
        "/static/style.css",
        &[("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 304);
    assert!(!last_modified.is_empty());
    let r = http::request(
        stack.site(),
        "GET",
        "/static/style.css",
        &[("Accept-Encoding", "gzip, br")],
        b"",
    )
    .unwrap();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(&r.body[..2], &[0x1f, 0x8b], "a gzip stream");
    assert!(r.header("vary").unwrap_or("").contains("Accept-Encoding"));
    assert_eq!(
        http::get(stack.site(), "/static/missing.css")
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        http::get(stack.site(), "/static/../credentials.json")
            .unwrap()
            .status,
        404
    );
}

#[test]
fn the_html_board_lists_messages_and_takes_form_posts() {
    let (stack, _serial) = stack();
    let r = http::get(stack.site(), "/").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let page = r.text();
    assert!(
        page.contains("<form method=\"post\" action=\"/messages\">"),
        "{page}"
    );
    assert!(page.contains("href=\"/static/style.css\""));
    let r = http::request(
        stack.site(),
        "POST",
        "/messages",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"author=bob&text=%3Cb%3Ehi%3C%2Fb%3E+from+a+form",
    )
    .unwrap();
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/"));
    poll(
        "the posted message on the board",
        Duration::from_secs(10),
        || {
            let page = http::get(stack.site(), "/").unwrap().text();
            page.contains("&lt;b&gt;hi&lt;/b&gt; from a form")
                .then_some(())
        },
    );
    let r = http::request(
        stack.site(),
        "POST",
        "/messages",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"author=&text=x",
    )
    .unwrap();
    assert_eq!(r.status, 422);
    assert!(r.text().contains("role=\"alert\""));
}

#[test]
fn a_cross_site_form_post_is_refused_and_stores_nothing() {
    let (stack, _serial) = stack();
    // The board's form posted with one more field, as a browser sends it.
    let post_form = |extra: (&str, &str), body: &[u8]| {
        let fields = [("Content-Type", "application/x-www-form-urlencoded"), extra];
        http::request(stack.site(), "POST", "/messages", &fields, body).unwrap()
    };
    // A page on another site, and a file:// page, auto-submitting the board's form.
    for forged in [
        ("Sec-Fetch-Site", "cross-site"),
        ("Origin", "null"),
        ("Origin", "http://evil.example"),
    ] {
        let r = post_form(forged, b"author=mallory&text=forged+post");
        assert_eq!(r.status, 403, "{forged:?}: {}", r.text());
    }
    // The board's own form (the client's Host is www.foobar.com).
    for own in [
        ("Origin", "http://www.foobar.com"),
        ("Sec-Fetch-Site", "same-origin"),
    ] {
        let r = post_form(own, b"author=ann&text=same+origin+post");
        assert_eq!(r.status, 303, "{own:?}: {}", r.text());
    }
    let page = http::get(stack.site(), "/api/messages?limit=100")
        .unwrap()
        .text();
    assert!(!page.contains("forged post"), "a forged post was stored");
}

#[test]
fn status_lists_every_component_healthy_with_the_replication_state() {
    let (stack, _serial) = stack();
    let status = stack.status();
    assert_eq!(status["url"], format!("http://{}/", stack.site()));
    let comps = status["components"].as_array().unwrap();
    assert_eq!(comps.len(), 8);
    for c in comps {
        assert_eq!(c["health"], "ok", "{c}");
        assert_eq!(c["process"], "running", "{c}");
        assert!(c["pid"].as_u64().is_some_and(webinfra_process_alive), "{c}");
    }
    let db = |name: &str| comps.iter().find(|c| c["name"] == name).unwrap()["info"].clone();
    assert_eq!(db("db-01/database")["db_role"], "primary");
    assert_eq!(db("db-01/database")["read_only"], false);
    let replica = db("db-02/database");
    assert_eq!(replica["db_role"], "replica");
    assert_eq!(replica["read_only"], true);
    assert_eq!(replica["replication"]["io_running"], "Yes");
    assert_eq!(replica["replication"]["sql_running"], "Yes");
    let table = String::from_utf8(stack.webinfra(&["status"]).stdout).unwrap();
    assert!(
        table.contains("db-02/database") && table.contains("replica of"),
        "{table}"
    );
}

fn webinfra_process_alive(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn up_fails_naming_the_address_in_use_when_another_stack_holds_it() {
    let (stack, _serial) = stack();
    // The same topology from another state dir: every address is the running stack's.
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::BIN)
        .args(["up", "--detach", "-t"])
        .arg(&stack.topology)
        .arg("-s")
        .arg(other.path())
        .env_remove("WEBINFRA_STATE_DIR")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stdout.contains(" is up"), "{stdout}");
    assert!(
        stderr.contains("Address already in use") && stderr.contains("127.77.1."),
        "{stderr}"
    );
    // Nothing runs from that dir, whatever answers on the addresses.
    let out = std::process::Command::new(crate::BIN)
        .args(["status", "-t"])
        .arg(&stack.topology)
        .arg("-s")
        .arg(other.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no stack is running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The running stack is untouched.
    assert!(stack.status()["components"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["health"] == "ok"));
}
