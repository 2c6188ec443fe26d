//! The load balancer's admin address: `/healthz` and `/servers` (JSON health),
//! `/stats` (JSON counters, per server and per client listener), `/metrics` (Prometheus text), `/` (HTML stats page),
//! `POST /servers/NAME/drain|disable|enable`, `POST /servers/NAME/weight/N`
//! (until the next reload) and `POST /reload` (re-read the
//! topology file; answers the changes, or 422 with the file's errors). The
//! POSTs are taken only from 127.0.0.1, ::1 and the topology's hosts (403
//! otherwise).

use crate::stats;
use crate::Reloader;
use http::StatusCode;
use std::sync::Arc;
use tokio::net::TcpListener;
use webinfra_proxy::{full, json_response, text_response, ResBody};

pub async fn run(
    listener: TcpListener,
    reloader: Arc<Reloader>,
    listeners: Vec<stats::Listener>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let listeners = Arc::new(listeners);
    let shutdown = webinfra_proxy::serve::until_true(stop);
    webinfra_proxy::serve(
        listener,
        move |req, peer: std::net::SocketAddr| {
            let pool = reloader.pools.load_full();
            let limited = pool.rate_limiter.as_ref().map_or(0, |l| l.refused());
            let reloader = reloader.clone();
            let listeners = listeners.clone();
            async move {
                let path = req.uri().path().to_string();
                // Changes come only from this machine and the topology's hosts.
                if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
                    let operators = webinfra_proxy::Operators::new(pool.config.operators.iter().copied());
                    if let Some(refused) = operators.refusal("load-balancer", req.method(), &path, peer) {
                        return refused;
                    }
                }
                if req.method() == http::Method::POST && path == "/reload" {
                    return match reloader.reload() {
                        Ok((generation, changes)) => json_response(
                            StatusCode::OK,
                            &serde_json::json!({ "generation": generation, "changes": changes }),
                        ),
                        Err(e) => json_response(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            &serde_json::json!({ "error": e }),
                        ),
                    };
                }
                if req.method() == http::Method::POST {
                    // POST /servers/NAME/drain|disable|enable, /servers/NAME/weight/N
                    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
                    // The server's own pool; else the default one, which says it has no such server.
                    let name = parts.get(1).copied().unwrap_or_default();
                    let group = pool.group_of(name).unwrap_or(&pool.groups[0]);
                    let servers = group.servers.clone();
                    return match parts.as_slice() {
                        ["servers", name, "weight", _] if servers.index_of(name).is_some() && !group.algorithm.uses_weights() => json_response(
                            StatusCode::CONFLICT,
                            &serde_json::json!({ "error": format!(
                                "pool {} balances round-robin, which ignores weights: set algorithm = \"weighted-round-robin\" (or another) to use them",
                                group.name
                            ) }),
                        ),
                        ["servers", name, "weight", weight] => match servers.set_weight(name, weight) {
                            Ok((before, weight)) => json_response(
                                StatusCode::OK,
                                &serde_json::json!({ "server": name, "weight": weight, "before": before }),
                            ),
                            Err(e) if e.starts_with("no server") => json_response(
                                StatusCode::NOT_FOUND,
                                &serde_json::json!({ "error": e }),
                            ),
                            Err(e) => json_response(
                                StatusCode::BAD_REQUEST,
                                &serde_json::json!({ "error": e }),
                            ),
                        },
                        ["servers", name, action] => match servers.set_admin(name, action) {
                            Ok(()) => json_response(
                                StatusCode::OK,
                                &serde_json::json!({ "server": name, "action": action }),
                            ),
                            Err(e) => json_response(
                                StatusCode::NOT_FOUND,
                                &serde_json::json!({ "error": e }),
                            ),
                        },
                        _ => text_response(StatusCode::NOT_FOUND, "404 Not Found"),
                    };
                }
                let pools = pool_rows(&pool);
                let rows = || -> Vec<stats::Row> {
                    let groups = pool.groups.iter();
                    groups.flat_map(|g| g.servers.rows(&g.name)).collect()
                };
                match path.as_str() {
                    "/healthz" | "/servers" => {
                        // ok: every server up; degraded: some; down: none (503).
                        let up: usize = pools.iter().map(|p| p.up).sum();
                        let all: usize = pools.iter().map(|p| p.servers).sum();
                        let (code, status) = match up {
                            0 => (StatusCode::SERVICE_UNAVAILABLE, "down"),
                            n if n == all => (StatusCode::OK, "ok"),
                            _ => (StatusCode::OK, "degraded"),
                        };
                        let mut body = status_json(&pool, &pools);
                        body["status"] = status.into();
                        body["role"] = "load-balancer".into();
                        body["pid"] = std::process::id().into();
                        json_response(code, &body)
                    }
                    "/stats" => {
                        let mut body = status_json(&pool, &pools);
                        body["generation"] = reloader.generation().into();
                        body["rate_limited"] = limited.into();
                        body["listeners"] = listeners.iter().map(|l| l.json()).collect();
                        json_response(StatusCode::OK, &body)
                    }
                    "/metrics" => {
                        let queued = pools.iter().map(|p| p.queued).sum();
                        let mut text = stats::prometheus(&rows(), queued, &listeners);
                        text.push_str(&stats::pools_prometheus(&pools));
                        text.push_str(&stats::rate_limited(limited));
                        typed("text/plain; version=0.0.4", text)
                    }
                    "/" | "/stats.html" => typed(
                        "text/html; charset=utf-8",
                        stats::html(&rows(), &pools, limited, &listeners),
                    ),
                    _ => text_response(StatusCode::NOT_FOUND, "404 Not Found"),
                }
            }
        },
        shutdown,
    )
    .await;
}

/// Every group's servers as JSON (each naming its pool), the pools, and the requests queued.
fn status_json(pool: &crate::pool::Pool, pools: &[stats::PoolRow]) -> serde_json::Value {
    let servers: Vec<_> = pool
        .groups
        .iter()
        .flat_map(|g| g.servers.servers_json(&g.name))
        .collect();
    let queued: usize = pools.iter().map(|p| p.queued).sum();
    let pools: Vec<_> = pools.iter().map(stats::PoolRow::json).collect();
    serde_json::json!({ "servers": servers, "pools": pools, "queued": queued })
}

/// One summary per pool, the default one first.
fn pool_rows(pool: &crate::pool::Pool) -> Vec<stats::PoolRow> {
    pool.groups
        .iter()
        .map(|g| stats::PoolRow {
            name: g.name.clone(),
            servers: g.servers.upstreams.len(),
            up: g.servers.up().len(),
            queued: g.servers.queue.len(),
        })
        .collect()
}

fn typed(content_type: &'static str, body: String) -> http::Response<ResBody> {
    http::Response::builder()
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(full(body))
        .expect("valid response")
}
