//! Writes and reads through the application and the database tier.

use crate::{post, stack};
use std::time::Duration;
use webinfra_test_support::{http, mariadb, poll};

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
        (
            "a NUL in the text",
            json_type.to_vec(),
            r#"{"author":"a","text":"b\u0000c"}"#.into(),
            422,
        ),
        (
            "a right-to-left override in the author",
            json_type.to_vec(),
            r#"{"author":"\u202eann","text":"b"}"#.into(),
            422,
        ),
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
fn reads_reuse_pooled_connections_and_prepared_statements() {
    let (stack, _serial) = stack();
    let password = stack.app_password();
    let counters = || -> (u64, u64) {
        let out = mariadb::query(
            stack.db(2),
            "webinfra_app",
            &password,
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('Connections', 'Com_stmt_prepare')",
        );
        assert!(out.ok, "{}", out.stderr);
        let get = |name: &str| -> u64 {
            out.stdout
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in {}", out.stdout))
        };
        (get("Connections"), get("Com_stmt_prepare"))
    };
    let read = || {
        let r = http::get(stack.site(), "/api/messages").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-db-node"), Some("db-02"));
    };
    // Warm: each application server has its connections and statements.
    for _ in 0..50 {
        read();
    }
    let before = counters();
    let reads = 1000;
    for _ in 0..reads {
        read();
    }
    let after = counters();
    // The query above is one connection of its own; at most 1 per 100 reads beyond it.
    let connections = after.0 - before.0 - 1;
    let prepares = after.1 - before.1;
    assert!(
        connections <= reads / 100 && prepares <= reads / 100,
        "{reads} reads opened {connections} connections and prepared {prepares} statements on db-02"
    );
}
