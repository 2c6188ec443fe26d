//! The whole foobar.com stack, started once for this test binary on
//! 127.77.1.0/24, exercised through the load balancer like a user would.
//! Tests take a lock so the round-robin order is not disturbed by a neighbour.

use serde_json::json;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use webinfra_test_support::{http, mariadb, poll, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_webinfra");

fn stack() -> (&'static Stack, MutexGuard<'static, ()>) {
    static STACK: OnceLock<Stack> = OnceLock::new();
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    (
        STACK.get_or_init(|| Stack::start(BIN.as_ref(), 77, 1)),
        guard,
    )
}

fn post(stack: &Stack, author: &str, text: &str) -> http::Response {
    http::post_json(
        stack.site(),
        "/api/messages",
        &json!({ "author": author, "text": text }),
    )
    .unwrap()
}

#[test]
fn round_robin_alternates_between_the_two_servers() {
    let (stack, _serial) = stack();
    let served: Vec<String> = (0..10)
        .map(|_| {
            let r = http::get(stack.site(), "/api/messages").unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            r.header("x-served-by").unwrap().to_string()
        })
        .collect();
    for pair in served.windows(2) {
        assert_ne!(pair[0], pair[1], "not alternating: {served:?}");
    }
    assert_eq!(
        served.iter().filter(|s| *s == "server-01").count(),
        5,
        "{served:?}"
    );
    assert_eq!(
        served.iter().filter(|s| *s == "server-02").count(),
        5,
        "{served:?}"
    );
}

#[test]
fn one_keep_alive_connection_is_balanced_request_by_request() {
    // A browser's connection: plain GETs and a HEAD (the load balancer's
    // fast lane), a POST with a body in the middle (its general path), on
    // one connection; every answer whole, each request balanced on its own.
    let (stack, _serial) = stack();
    let post: &[u8] = br#"{"author":"kai","text":"kept alive"}"#;
    let requests: [(&str, &str, &[u8]); 6] = [
        ("GET", "/api/messages?limit=1", b""),
        ("GET", "/", b""),
        ("POST", "/api/messages", post),
        ("GET", "/api/messages?limit=1", b""),
        ("HEAD", "/", b""),
        ("GET", "/api/messages?limit=1", b""),
    ];
    let answers = http::keep_alive(stack.site(), &requests).unwrap();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 201, 200, 200, 200]);
    assert!(
        answers[0].json()["messages"].is_array(),
        "{}",
        answers[0].text()
    );
    assert!(answers[1].text().contains("<html"), "{}", answers[1].text());
    assert!(answers[4].body.is_empty(), "HEAD has no body");
    let mut ids: Vec<&str> = answers
        .iter()
        .map(|a| a.header("x-request-id").expect("a request id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), answers.len(), "one id per request: {ids:?}");
    let served: Vec<&str> = answers
        .iter()
        .map(|a| a.header("x-served-by").expect("x-served-by"))
        .collect();
    for pair in served.windows(2) {
        assert_ne!(pair[0], pair[1], "not balanced per request: {served:?}");
    }
}

#[test]
fn a_write_goes_to_the_primary_and_is_read_back_from_the_replica() {
    let (stack, _serial) = stack();
    let r = post(stack, "ann", "replicate me");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("x-db-node"), Some("db-01"));
    let id = r.json()["id"].as_u64().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/messages/{id}").as_str())
    );

    let read = poll(
        "the message to be readable from db-02",
        Duration::from_secs(10),
        || {
            let r = http::get(stack.site(), &format!("/api/messages/{id}")).unwrap();
            (r.status == 200 && r.header("x-db-node") == Some("db-02")).then_some(r)
        },
    );
    assert_eq!(read.json()["text"], "replicate me");
    assert_eq!(read.json()["author"], "ann");

    let password = stack.app_password();
    for node in [1, 2] {
        let out = mariadb::query(
            stack.db(node),
            "webinfra_app",
            &password,
            &format!("SELECT author, text FROM foobar.messages WHERE id = {id}"),
        );
        assert!(out.ok, "db-0{node}: {}", out.stderr);
        assert_eq!(out.stdout.trim(), "ann\treplicate me", "db-0{node}");
    }
    let listed = http::get(stack.site(), "/api/messages?limit=100").unwrap();
    let ids: Vec<u64> = listed.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert!(ids.contains(&id), "{ids:?}");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
}

#[test]
fn the_replica_refuses_a_write_with_the_application_credentials() {
    let (stack, _serial) = stack();
    let password = stack.app_password();
    let insert = "INSERT INTO foobar.messages (author, text) VALUES ('mallory', 'direct')";
    let out = mariadb::query(stack.db(2), "webinfra_app", &password, insert);
    assert!(!out.ok, "the replica accepted a write");
    assert!(
        out.stderr.contains("read-only") || out.stderr.contains("1290"),
        "{}",
        out.stderr
    );
    let out = mariadb::query(stack.db(1), "webinfra_app", &password, "SELECT 1");
    assert!(
        out.ok,
        "the same credentials work on the primary: {}",
        out.stderr
    );
}

#[test]
fn the_application_user_has_only_its_schema() {
    let (stack, _serial) = stack();
    let out = mariadb::query(
        stack.db(1),
        "webinfra_app",
        &stack.app_password(),
        "SELECT user FROM mysql.user",
    );
    assert!(!out.ok, "the application user can read mysql.user");
    let out = mariadb::query(stack.db(1), "root", "", "SELECT 1");
    assert!(!out.ok, "root logs in over TCP without a password");
}

/// (what, headers, body, expected status).
type BadCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u16);

#[test]
fn bad_api_input_gets_a_json_4xx_and_stores_nothing() {
    let (stack, _serial) = stack();
    let count = || {
        let out = mariadb::query(
            stack.db(1),
            "webinfra_app",
            &stack.app_password(),
            "SELECT COUNT(*) FROM foobar.messages",
        );
        assert!(out.ok, "{}", out.stderr);
        out.stdout.trim().to_string()
    };
    let before = count();
    let json_type = [("Content-Type", "application/json")];
    let long_text = "x".repeat(1001);
    let huge = format!("{{\"author\":\"a\",\"text\":\"{}\"}}", "y".repeat(20_000));
    let cases: Vec<BadCase> = vec![
        (
            "no content type",
            vec![],
            r#"{"author":"a","text":"b"}"#.into(),
            415,
        ),
        (
            "form content type",
            vec![("Content-Type", "text/plain")],
            r#"{"author":"a","text":"b"}"#.into(),
            415,
        ),
        (
            "malformed JSON",
            json_type.to_vec(),
            r#"{"author":"a","#.into(),
            400,
        ),
        (
            "missing text",
            json_type.to_vec(),
            r#"{"author":"a"}"#.into(),
            422,
        ),
        (
            "wrong type",
            json_type.to_vec(),
            r#"{"author":5,"text":"b"}"#.into(),
            422,
        ),
        (
            "unknown field",
            json_type.to_vec(),
            r#"{"author":"a","text":"b","admin":true}"#.into(),
            422,
        ),
        (
            "empty author",
            json_type.to_vec(),
            r#"{"author":"  ","text":"b"}"#.into(),
            422,
        ),
        (
            "text too long",
            json_type.to_vec(),
            format!(r#"{{"author":"a","text":"{long_text}"}}"#),
            422,
        ),
        ("body too large", json_type.to_vec(), huge, 413),
    ];
    for (what, headers, body, status) in cases {
        let r = http::request(
            stack.site(),
            "POST",
            "/api/messages",
            &headers,
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert!(
            r.header("content-type")
                .unwrap_or("")
                .starts_with("application/json"),
            "{what}"
        );
        assert!(
            r.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {}",
            r.text()
        );
    }
    for (path, status) in [
        ("/api/messages/999999999", 404),
        ("/api/messages/abc", 404),
        ("/api/messages?limit=0", 400),
        ("/api/messages?limit=x", 400),
        ("/api/nothing", 404),
    ] {
        let r = http::get(stack.site(), path).unwrap();
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(r.json()["error"].is_string(), "{path}");
    }
    let r = http::request(stack.site(), "DELETE", "/api/messages", &[], b"").unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(count(), before, "bad input stored a message");
}

#[test]
fn a_malformed_request_is_rejected_at_the_load_balancer() {
    let (stack, _serial) = stack();
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let r = http::send_raw(stack.site(), raw).unwrap();
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(raw));
        assert!(r.header("x-served-by").is_none(), "reached a server");
    }
    // Content-Length with chunked: normalised as RFC 9112 6.3 says (the
    // chunked framing wins, Content-Length is dropped before forwarding).
    let raw = b"POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1d\r\n{\"author\":\"te\",\"text\":\"smug\"}\r\n0\r\n\r\n";
    let r = http::send_raw(stack.site(), raw).unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["text"], "smug");
    // Too many or too large headers: 431, before anything reaches a server.
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge = format!("X-Big: {}\r\n", "a".repeat(70_000));
    for extra in [many, huge] {
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
        let r = http::send_raw(stack.site(), raw.as_bytes()).unwrap();
        assert_eq!(r.status, 431);
        assert!(r.header("x-served-by").is_none(), "reached a server");
    }
    let raw = b"POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n";
    let r = http::send_raw(stack.site(), raw).unwrap();
    assert_eq!(r.status, 501);
    assert!(r.header("x-served-by").is_none(), "reached a server");
}

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
fn the_request_id_reaches_every_tier_and_their_logs() {
    let (stack, _serial) = stack();
    let id = format!("test-{}", std::process::id());
    let r = http::request(
        stack.site(),
        "GET",
        "/api/messages",
        &[("X-Request-Id", &id)],
        b"",
    )
    .unwrap();
    assert_eq!(r.header("x-request-id"), Some(id.as_str()));
    let server = r.header("x-served-by").unwrap().to_string();
    for log in [
        "lb-01-load-balancer.log".to_string(),
        format!("{server}-web.log"),
        format!("{server}-app.log"),
    ] {
        let path = stack.state_dir.join("logs").join(&log);
        poll(&format!("{id} in {log}"), Duration::from_secs(5), || {
            std::fs::read_to_string(&path)
                .ok()?
                .contains(&id)
                .then_some(())
        });
    }
    let generated = http::get(stack.site(), "/api/messages").unwrap();
    assert_eq!(generated.header("x-request-id").map(str::len), Some(32));
}

#[test]
fn https_is_served_on_the_self_signed_certificate_with_http2() {
    let (stack, _serial) = stack();
    let ca = stack.state_dir.join("lb-01/tls/certificate.pem");
    let site = stack.secure_site();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .arg("--cacert")
        .arg(&ca)
        .arg("--resolve")
        .arg(format!("www.foobar.com:{}:{}", site.port(), site.ip()))
        .arg(format!(
            "https://www.foobar.com:{}/api/messages",
            site.port()
        ))
        .output()
        .expect("curl is installed");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn http2_prior_knowledge_is_served() {
    let (stack, _serial) = stack();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .arg(format!("http://{}/api/messages", stack.site()))
        .output()
        .expect("curl is installed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 2");
}

#[test]
fn read_your_writes_a_post_then_an_immediate_get_never_404s() {
    let (stack, _serial) = stack();
    for i in 0..100 {
        let r = post(stack, "ryw", &format!("ryw {i}"));
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["id"].as_u64().unwrap();
        let cookie = r
            .header("set-cookie")
            .expect("a GTID cookie")
            .split(';')
            .next()
            .unwrap()
            .to_string();
        assert!(cookie.starts_with("wi_gtid=0-"), "{cookie}");
        let path = format!("/api/messages/{id}");
        // A browser sends the cookie back: a replica answers once it has the write.
        let with = http::request(stack.site(), "GET", &path, &[("Cookie", &cookie)], b"").unwrap();
        assert_eq!(
            with.status,
            200,
            "with the cookie, round {i}: {}",
            with.text()
        );
        // curl does not: a miss on a replica is checked on the primary before a 404.
        let without = http::get(stack.site(), &path).unwrap();
        assert_eq!(
            without.status,
            200,
            "without the cookie, round {i}: {}",
            without.text()
        );
        let listed = http::request(
            stack.site(),
            "GET",
            "/api/messages?limit=1",
            &[("Cookie", &cookie)],
            b"",
        )
        .unwrap();
        assert_eq!(
            listed.json()["messages"][0]["id"].as_u64(),
            Some(id),
            "round {i}"
        );
    }
}

#[test]
fn webinfra_lb_drain_takes_a_server_out_and_enable_puts_it_back() {
    let (stack, _serial) = stack();
    let out = stack.webinfra(&["lb", "drain", "server-01"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                http::get(stack.site(), "/api/messages")
                    .unwrap()
                    .header("x-served-by")
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert!(by(6).iter().all(|s| s == "server-02"));
    assert!(stack
        .webinfra(&["lb", "enable", "server-01"])
        .status
        .success());
    assert!(by(6).iter().any(|s| s == "server-01"));
    let bad = stack.webinfra(&["lb", "drain", "server-09"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no server named server-09"));
    // Weights change the same way (and go back to the file's at a reload).
    let out = stack.webinfra(&["lb", "weight", "server-01", "3"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("server-01: weight 3 (was 1)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stack
        .webinfra(&["lb", "weight", "server-01", "1"])
        .status
        .success());
    assert_eq!(
        stack.webinfra(&["lb", "weight", "server-01"]).status.code(),
        Some(2)
    );
}
