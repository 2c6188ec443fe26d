//! `[[load_balancer.pool]]`: pools of servers for the requests whose Host
//! and path they match, each with its own algorithm and health check.

mod support;
use std::time::Duration;
use support::{assert_one, line_of};
use webinfra_topology::{Algorithm, Topology};

const LB_ONLY: &str = include_str!("../../../topologies/lb-only.toml");

const POOLS: &str = r#"
[[load_balancer.pool]]
name = "api"
hosts = ["API.example.com", "*.api.example.com"]
paths = ["/v1/", "/v2/"]
algorithm = "leastconn"
[load_balancer.pool.health_check]
path = "/v1/health"
fall = 1
[[load_balancer.pool.backend]]
name = "api-1"
address = "127.0.0.1:9101"
[[load_balancer.pool.backend]]
name = "api-2"
address = "127.0.0.1:9102"
backup = true

[[load_balancer.pool]]
name = "static"
paths = ["/assets/"]
[[load_balancer.pool.backend]]
name = "cdn-1"
address = "127.0.0.1:9001"
"#;

#[test]
fn pools_take_their_hosts_and_paths_with_their_own_algorithm_and_check() {
    let t = Topology::parse_str(&format!("{LB_ONLY}{POOLS}"), "t.toml").unwrap();
    let lb = t.load_balancer.unwrap();
    let names: Vec<&str> = lb.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["app-a", "app-b"], "the default pool");
    let [api, assets] = &lb.pools[..] else {
        panic!("two pools: {:?}", lb.pools)
    };
    assert_eq!(api.name, "api");
    assert_eq!(api.hosts, ["api.example.com", "*.api.example.com"]);
    assert_eq!(api.paths, ["/v1/", "/v2/"]);
    assert_eq!(api.algorithm, Algorithm::LeastConnections);
    // Its own keys over the load balancer's check (path "/", interval 2 s).
    assert_eq!(api.health_check.path, "/v1/health");
    assert_eq!(api.health_check.fall, 1);
    assert_eq!(api.health_check.interval, Duration::from_secs(2));
    let api_servers: Vec<(&str, bool)> = api
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.backup))
        .collect();
    assert_eq!(api_servers, [("api-1", false), ("api-2", true)]);
    assert_eq!(assets.algorithm, Algorithm::RoundRobin);
    assert!(assets.hosts.is_empty());
    assert_eq!(
        assets.health_check, lb.health_check,
        "no table: the load balancer's check"
    );
    // The same address may serve two pools (app-a is 127.0.0.1:9001 too).
    assert_eq!(assets.servers[0].addr.to_string(), "127.0.0.1:9001");
}

#[test]
fn a_pool_pipelines_by_its_own_key_else_by_the_load_balancers() {
    let pipelining = |src: &str| -> Vec<bool> {
        let t = Topology::parse_str(src, "t.toml").unwrap();
        let lb = t.load_balancer.unwrap();
        let mut all = vec![lb.pipelining];
        all.extend(lb.pools.iter().map(|p| p.pipelining));
        all
    };
    let static_on = POOLS.replace(
        "paths = [\"/assets/\"]",
        "paths = [\"/assets/\"]\npipelining = true",
    );
    assert_eq!(
        pipelining(&format!("{LB_ONLY}{static_on}")),
        [false, false, true]
    );
    let lb_on = LB_ONLY.replace("admin_port = 8404", "admin_port = 8404\npipelining = true");
    let api_off = POOLS.replace(
        "algorithm = \"leastconn\"",
        "algorithm = \"leastconn\"\npipelining = false",
    );
    assert_eq!(
        pipelining(&format!("{lb_on}{api_off}")),
        [true, false, true]
    );
    let bad = format!(
        "{LB_ONLY}{}",
        POOLS.replace(
            "paths = [\"/assets/\"]",
            "paths = [\"/assets/\"]\npipelining = \"yes\""
        )
    );
    assert_one(
        &bad,
        line_of(&bad, "pipelining"),
        14,
        "load_balancer.pool.pipelining",
        "invalid type",
    );
}

#[test]
fn only_pools_and_no_default_servers_is_a_valid_file() {
    let head = LB_ONLY.split("[[load_balancer.backend]]").next().unwrap();
    let t = Topology::parse_str(&format!("{head}{POOLS}"), "t.toml").unwrap();
    let lb = t.load_balancer.unwrap();
    assert!(lb.servers.is_empty());
    assert_eq!(lb.pools.len(), 2);
}

/// `LB_ONLY` with one pool whose body is `body`.
fn with_pool(body: &str) -> String {
    format!("{LB_ONLY}\n[[load_balancer.pool]]\n{body}\n")
}

const ONE_SERVER: &str =
    "[[load_balancer.pool.backend]]\nname = \"p-1\"\naddress = \"127.0.0.1:9201\"";

#[test]
fn a_pool_without_hosts_or_paths_would_take_everything() {
    let src = with_pool(&format!("name = \"all\"\n{ONE_SERVER}"));
    let line = line_of(&src, "name = \"all\"");
    assert_one(
        &src,
        line,
        8,
        "load_balancer.pool",
        "no `hosts` and no `paths`",
    );
}

#[test]
fn a_pool_without_servers_says_where_to_add_them() {
    let src = with_pool("name = \"empty\"\npaths = [\"/x/\"]");
    let line = line_of(&src, "name = \"empty\"");
    assert_one(
        &src,
        line,
        8,
        "load_balancer.pool",
        "[[load_balancer.pool.backend]]",
    );
}

#[test]
fn server_names_are_unique_across_pools() {
    let src = with_pool(
        "name = \"p\"\npaths = [\"/x/\"]\n[[load_balancer.pool.backend]]\nname = \"app-a\"\naddress = \"127.0.0.1:9301\"",
    );
    // The first `name = "app-a"` is the default pool's; the pool's is the last one.
    let lines: Vec<&str> = src.lines().collect();
    let line = lines.iter().rposition(|l| l.contains("\"app-a\"")).unwrap() + 1;
    assert_one(
        &src,
        line,
        8,
        "load_balancer.pool.backend.name",
        "duplicate server name `app-a`",
    );
}

#[test]
fn hosts_and_paths_must_be_names_and_prefixes() {
    let src = with_pool(&format!(
        "name = \"p\"\nhosts = [\"api.example.com:8080\"]\n{ONE_SERVER}"
    ));
    let line = line_of(&src, "hosts = [\"api.example.com:8080\"]");
    assert_one(&src, line, 10, "load_balancer.pool.hosts", "no port");
    let src = with_pool(&format!("name = \"p\"\npaths = [\"api/\"]\n{ONE_SERVER}"));
    let line = line_of(&src, "paths = [\"api/\"]");
    assert_one(
        &src,
        line,
        10,
        "load_balancer.pool.paths",
        "starts with '/'",
    );
    let src = with_pool(&format!("name = \"p\"\npaths = []\n{ONE_SERVER}"));
    let line = line_of(&src, "paths = []");
    assert_one(&src, line, 9, "load_balancer.pool.paths", "is empty");
}

#[test]
fn pool_names_are_unique_and_default_is_taken() {
    let src = with_pool(&format!(
        "name = \"default\"\npaths = [\"/x/\"]\n{ONE_SERVER}"
    ));
    let line = line_of(&src, "name = \"default\"");
    assert_one(
        &src,
        line,
        8,
        "load_balancer.pool.name",
        "servers outside any pool",
    );
}

#[test]
fn a_pools_keys_are_checked_like_the_load_balancers() {
    let src = with_pool(&format!(
        "name = \"p\"\npaths = [\"/x/\"]\nalgorithm = \"fastest\"\n{ONE_SERVER}"
    ));
    let line = line_of(&src, "fastest");
    assert_one(
        &src,
        line,
        13,
        "load_balancer.pool.algorithm",
        "unknown algorithm `fastest`",
    );
    let src = with_pool(&format!(
        "name = \"p\"\npaths = [\"/x/\"]\n[load_balancer.pool.health_check]\npath = \"x\"\n{ONE_SERVER}"
    ));
    let line = line_of(&src, "path = \"x\"");
    assert_one(
        &src,
        line,
        8,
        "load_balancer.pool.health_check.path",
        "starting with '/'",
    );
    let src = with_pool(&format!(
        "name = \"p\"\npaths = [\"/x/\"]\nweight = 2\n{ONE_SERVER}"
    ));
    let line = line_of(&src, "weight = 2");
    assert_one(&src, line, 1, "load_balancer.pool.weight", "unknown field");
}

#[test]
fn a_pool_an_earlier_one_covers_can_never_be_chosen() {
    let two = |first: &str, second: &str| {
        format!(
            "{LB_ONLY}\n[[load_balancer.pool]]\nname = \"a\"\n{first}\n[[load_balancer.pool.backend]]\nname = \"a-1\"\naddress = \"127.0.0.1:9301\"\n\n[[load_balancer.pool]]\nname = \"b\"\n{second}\n[[load_balancer.pool.backend]]\nname = \"b-1\"\naddress = \"127.0.0.1:9302\"\n"
        )
    };
    for (first, second) in [
        ("paths = [\"/api/\"]", "paths = [\"/api/v2/\"]"),
        (
            "hosts = [\"*.example.com\"]",
            "hosts = [\"shop.example.com\"]\npaths = [\"/x/\"]",
        ),
        (
            "hosts = [\"shop.example.com\"]",
            "hosts = [\"shop.example.com\"]",
        ),
        ("hosts = [\"*.example.com\"]", "hosts = [\"*.example.com\"]"),
        (
            "hosts = [\"*.example.com\"]",
            "hosts = [\"*.eu.example.com\"]",
        ),
    ] {
        let src = two(first, second);
        let line = line_of(&src, "name = \"b\"");
        assert_one(
            &src,
            line,
            8,
            "load_balancer.pool",
            "pool `b` can never be chosen: pool `a`",
        );
    }
    // Narrower first, wider after, or disjoint: both can be chosen.
    for (first, second) in [
        ("paths = [\"/api/v2/\"]", "paths = [\"/api/\"]"),
        (
            "hosts = [\"shop.example.com\"]",
            "hosts = [\"*.example.com\"]",
        ),
        ("hosts = [\"a.example.com\"]", "paths = [\"/a/\"]"),
        ("paths = [\"/a/\"]", "hosts = [\"a.example.com\"]"),
        ("hosts = [\"*.example.com\"]", "hosts = [\"example.com\"]"),
    ] {
        let src = two(first, second);
        assert!(
            Topology::parse_str(&src, "t.toml").is_ok(),
            "{first} then {second}"
        );
    }
}
