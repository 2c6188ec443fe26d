//! Pools (`[[load_balancer.pool]]`, HAProxy's `use_backend`): a request goes
//! to the first pool whose hosts and paths it matches, else to the default
//! servers -- in the fast lane and on the general path alike -- and stays
//! there: a retry, a sticky cookie or a queue never takes it to another
//! pool's server.

mod common;

use common::{wait_until, Lb};
use std::net::SocketAddr;
use std::time::Duration;
use webinfra_test_support::http::{get, request, send_raw, Response};
use webinfra_topology::{Algorithm, LoadBalancer, ServerPool};

/// Moves the servers named `servers` out of the default pool into a new pool.
fn pool(cfg: &mut LoadBalancer, name: &str, hosts: &[&str], paths: &[&str], servers: &[&str]) {
    let (moved, kept) = cfg
        .servers
        .drain(..)
        .partition(|s| servers.contains(&s.name.as_str()));
    cfg.servers = kept;
    cfg.pools.push(ServerPool {
        name: name.into(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        algorithm: Algorithm::RoundRobin,
        health_check: cfg.health_check.clone(),
        servers: moved,
        pipelining: false,
    });
}

/// One keep-alive GET (the fast lane takes it): status and body.
fn lane_get(site: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let (head, body) = common::lane_get(site, host, path);
    (head[9..12].parse().unwrap(), body)
}

/// A POST with a body (the general path), `Connection: close`.
fn general_post(site: SocketAddr, host: &str, path: &str) -> Response {
    request(site, "POST", path, &[("Host", host)], b"{}").unwrap()
}

/// Four pools over five backends: `api` by host, `assets` by path, `wild`
/// by a wildcard host, `both` by host and path; `web` takes the rest.
fn four_pools(cfg: &mut LoadBalancer) {
    pool(cfg, "api", &["api.example.com"], &[], &["api"]);
    pool(cfg, "assets", &[], &["/assets/"], &["assets"]);
    pool(cfg, "wild", &["*.example.org"], &[], &["wild"]);
    pool(
        cfg,
        "both",
        &["shop.example.com"],
        &["/cart/", "/pay/"],
        &["both"],
    );
}

const ROUTES: [(&str, &str, &str); 11] = [
    ("www.example.com", "/", "web"),
    ("api.example.com", "/", "api"),
    ("API.Example.com:8080", "/v1/users?id=1", "api"),
    ("api.example.com.", "/x", "api"),
    ("www.example.com", "/assets/app.css", "assets"),
    // The first pool that matches, in file order: api before assets.
    ("api.example.com", "/assets/app.css", "api"),
    ("a.example.org", "/", "wild"),
    ("a.b.example.org", "/assets/x", "assets"),
    // A wildcard is for names under it, not the name itself.
    ("example.org", "/", "web"),
    ("shop.example.com", "/cart/1", "both"),
    ("shop.example.com", "/carts", "web"),
];

#[test]
fn each_request_goes_to_the_pool_its_host_and_path_match_on_both_paths() {
    for fast_lane in [true, false] {
        let lb = Lb::start(&["web", "api", "assets", "wild", "both"], move |cfg| {
            four_pools(cfg);
            cfg.fast_lane = fast_lane;
        });
        for (host, path, server) in ROUTES {
            assert_eq!(
                lane_get(lb.site, host, path),
                (200, server.to_string()),
                "GET {host}{path} (fast lane {fast_lane})"
            );
            let r = general_post(lb.site, host, path);
            assert_eq!(
                (r.status, r.text()),
                (200, server.to_string()),
                "POST {host}{path}"
            );
        }
        // An absolute URL's authority is the Host (RFC 9112 3.2.2).
        let r = send_raw(
            lb.site,
            b"GET http://api.example.com/x HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.text()), (200, "api".to_string()));
        // Each server saw only its own requests (two per route, one more for api).
        let seen = |name: &str| lb.backend(name).record.seen.lock().unwrap().len();
        let expected = |name: &str| 2 * ROUTES.iter().filter(|r| r.2 == name).count();
        assert_eq!(seen("web"), expected("web"));
        assert_eq!(seen("api"), expected("api") + 1);
        for name in ["assets", "wild", "both"] {
            assert_eq!(seen(name), expected(name), "{name}");
        }
    }
}

#[test]
fn a_pool_whose_servers_are_gone_fails_its_requests_and_never_borrows_another_pools() {
    // api's only server is an address nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let lb = Lb::start(&["web", "api"], move |cfg| {
        pool(cfg, "api", &["api.example.com"], &[], &["api"]);
        cfg.pools[0].servers[0].addr = dead;
    });
    let (status, body) = lane_get(lb.site, "api.example.com", "/");
    assert!(status == 502 || status == 503, "{status} {body}");
    assert!(!body.contains("web"), "{body}");
    let r = general_post(lb.site, "api.example.com", "/");
    assert!(
        r.status == 502 || r.status == 503,
        "{} {}",
        r.status,
        r.text()
    );
    assert!(lb.backend("web").record.seen.lock().unwrap().is_empty());
    // The default pool is not affected.
    assert_eq!(
        lane_get(lb.site, "www.example.com", "/"),
        (200, "web".into())
    );
    // The failed connect took api's server down: its pool says so.
    let metrics = get(lb.admin, "/metrics").unwrap().text();
    assert!(
        metrics.contains("webinfra_lb_pool_servers_up{pool=\"api\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("webinfra_lb_pool_servers_up{pool=\"default\"} 1\n"),
        "{metrics}"
    );
    assert_eq!(
        lb.stats()["pools"],
        serde_json::json!([
            { "name": "default", "servers": 1, "up": 1, "queued": 0 },
            { "name": "api", "servers": 1, "up": 0, "queued": 0 },
        ])
    );
    assert!(get(lb.admin, "/")
        .unwrap()
        .text()
        .contains("<span class=\"down\">api 0/1 up</span>"));
}

#[test]
fn with_only_pools_a_request_no_pool_takes_gets_503_saying_so() {
    let lb = Lb::start(&["api"], |cfg| {
        pool(cfg, "api", &["api.example.com"], &[], &["api"]);
    });
    assert_eq!(
        lane_get(lb.site, "api.example.com", "/"),
        (200, "api".into())
    );
    let (status, body) = lane_get(lb.site, "www.example.com", "/");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no pool takes this request"), "{body}");
    assert!(lb.backend("api").record.seen.lock().unwrap().len() == 1);
}

#[test]
fn a_sticky_cookie_naming_another_pools_server_is_not_followed() {
    let lb = Lb::start(&["web", "api-1", "api-2"], |cfg| {
        pool(cfg, "api", &["api.example.com"], &[], &["api-1", "api-2"]);
        cfg.sticky_cookie = Some("SERVERID".into());
    });
    for _ in 0..4 {
        let r = request(
            lb.site,
            "GET",
            "/",
            &[("Host", "api.example.com"), ("Cookie", "SERVERID=web")],
            b"",
        )
        .unwrap();
        assert!(r.text().starts_with("api-"), "{}", r.text());
    }
    let r = request(
        lb.site,
        "GET",
        "/",
        &[("Host", "api.example.com"), ("Cookie", "SERVERID=api-2")],
        b"",
    )
    .unwrap();
    assert_eq!(r.text(), "api-2");
    assert!(lb.backend("web").record.seen.lock().unwrap().is_empty());
}

#[test]
fn stats_name_each_servers_pool_and_the_admin_api_reaches_servers_in_pools() {
    let lb = Lb::start(&["web", "api"], |cfg| {
        pool(cfg, "api", &["api.example.com"], &[], &["api"]);
    });
    let stats = lb.stats();
    let pools: Vec<(String, String)> = stats["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["pool"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        pools,
        [
            ("web".into(), "default".into()),
            ("api".into(), "api".into())
        ]
    );
    let metrics = get(lb.admin, "/metrics").unwrap().text();
    assert!(
        metrics.contains("webinfra_lb_server_info{server=\"api\",pool=\"api\""),
        "{metrics}"
    );
    assert!(get(lb.admin, "/")
        .unwrap()
        .text()
        .contains("<td>api</td><td>api</td>"));
    // Disabling the pool's only server empties that pool, and only it.
    let r = request(lb.admin, "POST", "/servers/api/disable", &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let (status, body) = lane_get(lb.site, "api.example.com", "/");
    assert_eq!(
        (status, body.as_str()),
        (503, "503 Service Unavailable: no server is up (pool api)\n")
    );
    assert_eq!(
        lane_get(lb.site, "www.example.com", "/"),
        (200, "web".into())
    );
    let r = request(lb.admin, "POST", "/servers/nobody/disable", &[], b"").unwrap();
    assert_eq!(r.status, 404);
}

#[test]
fn a_reload_adds_a_pool_and_its_requests_follow_it_at_once() {
    let lb = Lb::start(&["web", "api"], |cfg| {
        // api is not serving at first.
        cfg.servers.truncate(1);
    });
    assert_eq!(
        lane_get(lb.site, "api.example.com", "/"),
        (200, "web".into())
    );
    let api = lb.backend("api").addr;
    {
        let mut next = lb.next_config.lock().unwrap();
        let cfg = next.as_mut().unwrap();
        let mut server = cfg.servers[0].clone();
        (server.name, server.addr) = ("api".into(), api);
        cfg.servers.push(server);
        pool(cfg, "api", &["api.example.com"], &[], &["api"]);
    }
    let r = request(lb.admin, "POST", "/reload", &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let changes = r.json()["changes"].to_string();
    assert!(
        changes.contains("added pool api") && changes.contains("added server api"),
        "{changes}"
    );
    assert_eq!(
        lane_get(lb.site, "api.example.com", "/"),
        (200, "api".into())
    );
    assert_eq!(
        lane_get(lb.site, "www.example.com", "/"),
        (200, "web".into())
    );
    wait_until(
        Duration::from_secs(5),
        "the stats list api in its pool",
        || {
            lb.stats()["servers"]
                .to_string()
                .contains("\"pool\":\"api\"")
        },
    );
}
