//! Every topology error names the file, line, column and key at fault.

use webinfra_topology::{DbRole, RateLimit, Topology};

const FOOBAR: &str = include_str!("../../../topologies/foobar.toml");

mod support;
use support::{assert_one, errors, line_of};

/// The `[load_balancer.tls]` of a topology that must parse.
fn tls_of(src: &str) -> webinfra_topology::Tls {
    let lb = Topology::parse_str(src, "lb.toml").unwrap().load_balancer;
    lb.unwrap().tls.unwrap()
}

#[test]
fn the_shipped_topology_is_the_seed_design() {
    let t = Topology::parse_str(FOOBAR, "foobar.toml").unwrap();
    let lb = t.load_balancer.as_ref().unwrap();
    assert_eq!(lb.listen.to_string(), "127.0.0.1:8080");
    let servers: Vec<&str> = lb.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(servers, ["server-01", "server-02"]);
    let db = t.database.as_ref().unwrap();
    assert_eq!(db.primary().name, "db-01");
    assert_eq!(db.replicas().len(), 1);
    assert_eq!(db.replicas()[0].role, DbRole::Replica);
    assert_eq!(db.replicas()[0].sql.to_string(), "127.0.0.22:3306");
    assert_eq!(t.site_url().unwrap(), "http://127.0.0.1:8080/");
}

#[test]
fn unknown_key_is_named_with_its_table() {
    let src = FOOBAR.replace("port = 8000", "port = 8000\nportt = 8001");
    assert_one(
        &src,
        line_of(&src, "portt"),
        1,
        "web.portt",
        "unknown field",
    );
}

#[test]
fn wrong_value_type_names_the_key() {
    let src = FOOBAR.replace("port = 9000", "port = \"nine\"");
    let line = line_of(&src, "\"nine\"");
    assert_one(&src, line, 8, "app.port", "invalid type");
}

#[test]
fn duplicate_host_name() {
    let src = FOOBAR.replace("name = \"server-02\"", "name = \"server-01\"");
    let err = errors(&src);
    let d = err
        .diagnostics
        .iter()
        .find(|d| d.message.contains("duplicate host name"))
        .unwrap_or_else(|| panic!("{err}"));
    let line = src
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("name = \"server-01\""))
        .nth(1)
        .unwrap()
        .0
        + 1;
    assert_eq!((d.line, d.column, d.key.as_str()), (line, 8, "host.name"));
}

#[test]
fn two_listeners_on_one_address_and_port() {
    let src = FOOBAR.replace("port = 9000", "port = 8000");
    let err = errors(&src);
    let d = &err.diagnostics[0];
    assert_eq!(d.key, "web.port", "{err}");
    assert_eq!(d.line, line_of(&src, "port = 8000"));
    assert!(
        d.message
            .contains("127.0.0.11:8000 is already a listener of app.port"),
        "{err}"
    );
}

#[test]
fn lb_admin_port_equal_to_its_listener() {
    let src = FOOBAR.replace("admin_port = 8404", "admin_port = 8080");
    let line = line_of(&src, "admin_port = 8080");
    assert_one(
        &src,
        line,
        14,
        "load_balancer.admin_port",
        "already a listener",
    );
}

#[test]
fn role_naming_a_missing_host() {
    let src = FOOBAR.replacen("\nhost = \"lb-01\"", "\nhost = \"lb-09\"", 1);
    let line = line_of(&src, "lb-09");
    assert_one(&src, line, 8, "load_balancer.host", "no host named `lb-09`");
    let src = FOOBAR.replace("replicas = [\"db-02\"]", "replicas = [\"db-03\"]");
    let line = line_of(&src, "db-03");
    assert_one(&src, line, 13, "database.replicas", "no host named `db-03`");
}

#[test]
fn replica_without_a_primary() {
    let src = FOOBAR.replace("primary = \"db-01\"\n", "");
    let line = line_of(&src, "replicas = ");
    assert_one(
        &src,
        line,
        12,
        "database.replicas",
        "replicas need a primary",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let src = FOOBAR
        .replace("primary = \"db-01\"", "primary = \"db-09\"")
        .replace("algorithm = \"round-robin\"", "algorithm = \"fastest\"");
    let err = errors(&src);
    assert_eq!(err.diagnostics.len(), 2, "{err}");
    assert_eq!(err.diagnostics[0].key, "load_balancer.algorithm");
    assert_eq!(err.diagnostics[1].key, "database.primary");
}

#[test]
fn syntax_error_has_a_position() {
    let err = errors("[site\nname = 1\n");
    assert_eq!(err.diagnostics[0].line, 1, "{err}");
}

#[test]
fn missing_file_names_the_file() {
    let err = Topology::load("/nonexistent/topology.toml").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/topology.toml: cannot read"),
        "{err}"
    );
}

const LB_ONLY: &str = include_str!("../../../topologies/lb-only.toml");

#[test]
fn a_load_balancer_alone_in_front_of_backend_addresses() {
    let t = Topology::parse_str(LB_ONLY, "lb-only.toml").unwrap();
    let lb = t.load_balancer.unwrap();
    let servers: Vec<String> = lb
        .servers
        .iter()
        .map(|s| format!("{}={}", s.name, s.addr))
        .collect();
    assert_eq!(servers, ["app-a=127.0.0.1:9001", "app-b=127.0.0.1:9002"]);
    assert!(t.database.is_none() && t.web.is_none());
    assert!(lb.servers.iter().all(|s| s.weight == 1 && !s.backup));
}

#[test]
fn weights_backups_and_algorithms() {
    let src = LB_ONLY
        .replace(
            "address = \"127.0.0.1:9002\"",
            "address = \"127.0.0.1:9002\"\nweight = 3\nbackup = true",
        )
        .replace(
            "admin_port = 8404",
            "admin_port = 8404\nalgorithm = \"least-connections\"",
        );
    let t = Topology::parse_str(&src, "lb.toml").unwrap();
    let lb = t.load_balancer.unwrap();
    assert_eq!(lb.algorithm, webinfra_topology::Algorithm::LeastConnections);
    assert_eq!((lb.servers[1].weight, lb.servers[1].backup), (3, true));
    let bad = src.replace("weight = 3", "weight = 0");
    let line = line_of(&bad, "weight = 0");
    assert_one(
        &bad,
        line,
        10,
        "load_balancer.backend.weight",
        "between 1 and 256",
    );
    for (haproxy, ours) in [
        (
            "roundrobin",
            webinfra_topology::Algorithm::WeightedRoundRobin,
        ),
        ("leastconn", webinfra_topology::Algorithm::LeastConnections),
        ("source", webinfra_topology::Algorithm::SourceHash),
        ("random", webinfra_topology::Algorithm::PowerOfTwo),
    ] {
        let src = src.replace("least-connections", haproxy);
        let t = Topology::parse_str(&src, "lb.toml").unwrap();
        assert_eq!(t.load_balancer.unwrap().algorithm, ours, "{haproxy}");
    }
    let bad = src.replace("least-connections", "fastest");
    let err = errors(&bad);
    assert!(err.to_string().contains("known: round-robin, weighted-round-robin, least-connections, power-of-two, source-hash"), "{err}");
}

#[test]
fn two_backends_on_one_address() {
    let src = LB_ONLY.replace("127.0.0.1:9002", "127.0.0.1:9001");
    let lines: Vec<&str> = src.lines().collect();
    let line = lines
        .iter()
        .rposition(|l| l.contains("127.0.0.1:9001"))
        .unwrap()
        + 1;
    assert_one(
        &src,
        line,
        11,
        "load_balancer.backend.address",
        "already server `app-a`",
    );
}

#[test]
fn a_backend_may_be_named_by_host_name_and_bad_addresses_say_what_to_write() {
    // Names are resolved when the file is loaded, like HAProxy at startup.
    let src = LB_ONLY.replace("127.0.0.1:9002", "localhost:9002");
    let t = Topology::parse_str(&src, "lb.toml").unwrap();
    let addr = t.load_balancer.unwrap().servers[1].addr;
    assert!(addr.ip().is_loopback() && addr.port() == 9002, "{addr}");
    let line = line_of(LB_ONLY, "127.0.0.1:9002");
    for (address, words) in [
        ("127.0.0.1", "has no port: write IP:PORT or HOST:PORT"),
        ("127.0.0.1:0", "port 0"),
        ("127.0.0.1:http", "is not an address"),
        (
            "no-such-host.invalid:80",
            "cannot resolve `no-such-host.invalid`",
        ),
        ("127.0.0.1:8080", "the load balancer's own listener"),
    ] {
        let bad = LB_ONLY.replace("127.0.0.1:9002", address);
        assert_one(&bad, line, 11, "load_balancer.backend.address", words);
    }
}

#[test]
fn a_missing_key_is_named_in_its_table() {
    let src = LB_ONLY.replace("admin_port = 8404\n", "");
    let line = line_of(&src, "[load_balancer]");
    assert_one(
        &src,
        line,
        1,
        "load_balancer.admin_port",
        "missing field `admin_port`",
    );
}

#[test]
fn limits_and_timeouts_with_per_backend_overrides() {
    let src = LB_ONLY
        .replace(
            "admin_port = 8404",
            "admin_port = 8404\nmax_connections = 100\nheader_timeout_ms = 3000\nkeep_alive_timeout_ms = 1000\nmax_queue = 50\nqueue_timeout_ms = 700\nmax_body_bytes = 1000\nclient_timeout_ms = 4000\ntunnel_timeout_ms = 60000\nconnect_timeout_ms = 500\nresponse_timeout_ms = 9000\nserver_max_connections = 20\nslow_start_ms = 4000",
        )
        .replace(
            "address = \"127.0.0.1:9002\"",
            "address = \"127.0.0.1:9002\"\nmax_connections = 5\nresponse_timeout_ms = 100",
        );
    let lb = Topology::parse_str(&src, "lb.toml")
        .unwrap()
        .load_balancer
        .unwrap();
    let ms = std::time::Duration::from_millis;
    assert_eq!(lb.clients.max_connections, 100);
    assert_eq!(
        (lb.clients.header_timeout, lb.clients.keep_alive_timeout),
        (ms(3000), ms(1000))
    );
    assert_eq!(
        (lb.clients.max_queue, lb.clients.queue_timeout),
        (50, ms(700))
    );
    assert_eq!(
        (lb.clients.max_body_bytes, lb.clients.client_timeout),
        (1000, ms(4000))
    );
    let (a, b) = (&lb.servers[0].limits, &lb.servers[1].limits);
    assert_eq!(
        (
            a.max_connections,
            a.connect_timeout,
            a.response_timeout,
            a.slow_start
        ),
        (Some(20), ms(500), ms(9000), ms(4000))
    );
    assert_eq!(
        (b.max_connections, b.connect_timeout, b.response_timeout),
        (Some(5), ms(500), ms(100)),
        "a backend overrides the defaults it sets, and inherits the rest"
    );
    let bad = src.replace("queue_timeout_ms = 700", "queue_timeout_ms = 0");
    let line = line_of(&bad, "queue_timeout_ms = 0");
    assert_one(
        &bad,
        line,
        20,
        "load_balancer.queue_timeout_ms",
        "greater than 0",
    );
    let bad = src.replace("response_timeout_ms = 100", "response_timeout_ms = 0");
    let line = line_of(&bad, "response_timeout_ms = 0");
    assert_one(
        &bad,
        line,
        23,
        "load_balancer.backend.response_timeout_ms",
        "greater than 0",
    );
}

#[test]
fn a_health_check_may_expect_one_status() {
    let src = LB_ONLY.replace("path = \"/\"", "path = \"/\"\nexpect_status = 200");
    let lb = Topology::parse_str(&src, "lb.toml")
        .unwrap()
        .load_balancer
        .unwrap();
    assert_eq!(lb.health_check.expect_status, Some(200));
    let bad = src.replace("expect_status = 200", "expect_status = 700");
    let line = line_of(&bad, "expect_status = 700");
    assert_one(
        &bad,
        line,
        17,
        "load_balancer.health_check.expect_status",
        "100-599",
    );
}

#[test]
fn https_takes_a_port_and_both_files_or_neither() {
    let src = format!(
        "{LB_ONLY}\n[load_balancer.tls]\nport = 8443\ncertificate = \"certs/site.pem\"\nkey = \"certs/site.key\"\nredirect_http = true\nhsts_max_age_s = 600\n"
    );
    let tls = tls_of(&src);
    assert_eq!(tls.listen.to_string(), "127.0.0.1:8443");
    assert_eq!(
        (
            tls.certificate.unwrap(),
            tls.key.unwrap(),
            tls.redirect_http
        ),
        ("certs/site.pem".into(), "certs/site.key".into(), true)
    );
    // Neither file: a self-signed certificate, made by the load balancer.
    let bare = format!("{LB_ONLY}\n[load_balancer.tls]\nport = 8443\n");
    let tls = tls_of(&bare);
    assert_eq!(
        (tls.certificate, tls.key, tls.redirect_http),
        (None, None, false)
    );

    let half = format!("{bare}certificate = \"site.pem\"\n");
    assert_one(
        &half,
        line_of(&half, "certificate ="),
        15,
        "load_balancer.tls.certificate",
        "set both `certificate` and `key`, or neither",
    );
    let clash = format!("{LB_ONLY}\n[load_balancer.tls]\nport = 8404\n");
    assert_one(
        &clash,
        clash.lines().count(),
        8,
        "load_balancer.tls.port",
        "already a listener of load_balancer.admin_port",
    );
}

#[test]
fn a_sticky_cookie_needs_a_plain_name() {
    let src = LB_ONLY.replace(
        "admin_port = 8404",
        "admin_port = 8404\nsticky_cookie = \"SERVERID\"",
    );
    let lb = Topology::parse_str(&src, "lb.toml")
        .unwrap()
        .load_balancer
        .unwrap();
    assert_eq!(lb.sticky_cookie.as_deref(), Some("SERVERID"));
    let bad = LB_ONLY.replace(
        "admin_port = 8404",
        "admin_port = 8404\nsticky_cookie = \"a=b\"",
    );
    assert_one(
        &bad,
        line_of(&bad, "sticky_cookie"),
        17,
        "load_balancer.sticky_cookie",
        "is not a cookie name",
    );
}

/// The load balancer of a valid topology file.
fn lb(src: &str) -> webinfra_topology::LoadBalancer {
    Topology::parse_str(src, "lb.toml")
        .unwrap()
        .load_balancer
        .unwrap()
}

#[test]
fn the_fast_lane_is_on_unless_turned_off() {
    assert!(lb(LB_ONLY).fast_lane);
    let off = LB_ONLY.replace("admin_port = 8404", "admin_port = 8404\nfast_lane = false");
    assert!(!lb(&off).fast_lane);
    let bad = LB_ONLY.replace("admin_port = 8404", "admin_port = 8404\nfast_lane = \"no\"");
    assert_one(
        &bad,
        line_of(&bad, "fast_lane"),
        13,
        "load_balancer.fast_lane",
        "invalid type",
    );
}

#[test]
fn pipelining_is_off_unless_turned_on() {
    assert!(!lb(LB_ONLY).pipelining);
    let on = LB_ONLY.replace("admin_port = 8404", "admin_port = 8404\npipelining = true");
    assert!(lb(&on).pipelining);
    let bad = LB_ONLY.replace("admin_port = 8404", "admin_port = 8404\npipelining = 1");
    assert_one(
        &bad,
        line_of(&bad, "pipelining"),
        14,
        "load_balancer.pipelining",
        "invalid type",
    );
}

#[test]
fn a_rate_limit_needs_a_rate_and_its_burst_defaults_to_it() {
    let src = format!("{LB_ONLY}\n[load_balancer.rate_limit]\nrequests_per_s = 20\n");
    let lb = Topology::parse_str(&src, "lb.toml")
        .unwrap()
        .load_balancer
        .unwrap();
    assert_eq!(
        lb.rate_limit,
        Some(RateLimit {
            per_second: 20,
            burst: 20
        })
    );
    let zero = format!("{LB_ONLY}\n[load_balancer.rate_limit]\nrequests_per_s = 5\nburst = 0\n");
    assert_one(
        &zero,
        line_of(&zero, "burst ="),
        9,
        "load_balancer.rate_limit.burst",
        "must be at least 1",
    );
    let missing = format!("{LB_ONLY}\n[load_balancer.rate_limit]\nburst = 5\n");
    let err = Topology::parse_str(&missing, "lb.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("requests_per_s"), "{err}");
}

#[test]
fn a_health_check_path_must_be_sendable_and_may_name_its_host() {
    let src = LB_ONLY.replace(
        "path = \"/\"",
        "path = \"/health?full=1&x=%20\"\nhost = \"www.example.com:8080\"",
    );
    let hc = Topology::parse_str(&src, "lb.toml")
        .unwrap()
        .load_balancer
        .unwrap()
        .health_check;
    assert_eq!(hc.path, "/health?full=1&x=%20");
    assert_eq!(hc.host.as_deref(), Some("www.example.com:8080"));
    // A space would have made every check request fail to build.
    for path in ["/a b", "health", "/%zz", "/a\"b"] {
        let bad = LB_ONLY.replace("path = \"/\"", &format!("path = {path:?}"));
        let line = line_of(&bad, "path = ");
        assert_one(&bad, line, 8, "load_balancer.health_check.path", "a path");
    }
    let bad = src.replace("www.example.com:8080", "www example");
    let line = line_of(&bad, "host = \"www example\"");
    assert_one(
        &bad,
        line,
        8,
        "load_balancer.health_check.host",
        "not a host name",
    );
}

#[test]
fn https_can_serve_more_certificates_each_with_both_files() {
    let src = format!(
        "{LB_ONLY}\n[load_balancer.tls]\nport = 8443\ncertificate = \"site.pem\"\nkey = \"site.key\"\n\n[[load_balancer.tls.certificates]]\ncertificate = \"api.pem\"\nkey = \"api.key\"\n\n[[load_balancer.tls.certificates]]\ncertificate = \"shop.pem\"\nkey = \"shop.key\"\n"
    );
    let tls = tls_of(&src);
    assert_eq!(
        tls.more,
        [
            ("api.pem".into(), "api.key".into()),
            ("shop.pem".into(), "shop.key".into())
        ]
    );
    // Relative to the topology file, like the first pair.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    std::fs::write(&path, &src).unwrap();
    let tls = Topology::load(&path)
        .unwrap()
        .load_balancer
        .unwrap()
        .tls
        .unwrap();
    assert_eq!(tls.more[1].1, dir.path().join("shop.key"));

    let unknown = format!("{src}\n[[load_balancer.tls.certs]]\ncertificate = \"x\"\n");
    let line = unknown.lines().count() - 1;
    assert_one(
        &unknown,
        line,
        21,
        "load_balancer.tls.certs",
        "unknown field `certs`",
    );

    let half = src.replace("key = \"shop.key\"\n", "");
    let err = errors(&half);
    assert_eq!(err.diagnostics.len(), 1, "{err}");
    let d = &err.diagnostics[0];
    assert_eq!(
        d.line,
        line_of(&half, "certificate = \"shop.pem\"") - 1,
        "{err}"
    );
    assert!(d.message.contains("key"), "{err}");
}

#[test]
fn servers_named_by_host_take_a_weight_and_backup() {
    let src = FOOBAR.replace(
        "servers = [\"server-01\", \"server-02\"]",
        "servers = [\"server-01\", { host = \"server-02\", weight = 3, backup = true }]",
    );
    let t = Topology::parse_str(&src, "t.toml").unwrap();
    let lb = t.load_balancer.unwrap();
    let s: Vec<(&str, u32, bool)> = lb
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.weight, s.backup))
        .collect();
    assert_eq!(s, [("server-01", 1, false), ("server-02", 3, true)]);
    assert_eq!(lb.servers[1].addr.to_string(), "127.0.0.12:8000");
    // A misspelt key in an entry: its line and the key.
    let bad = src.replace("weight = 3", "wieght = 3");
    let err = errors(&bad).to_string();
    assert!(
        err.contains(&format!("t.toml:{}:", line_of(&bad, "wieght")))
            && err.contains("load_balancer.servers")
            && err.contains("wieght"),
        "{err}"
    );
    let bad = src.replace("weight = 3", "weight = 0");
    assert_one(
        &bad,
        line_of(&bad, "weight = 0"),
        bad.lines()
            .nth(line_of(&bad, "weight = 0") - 1)
            .unwrap()
            .find("weight = 0")
            .unwrap()
            + 10,
        "load_balancer.servers.weight",
        "between 1 and 256",
    );
}
