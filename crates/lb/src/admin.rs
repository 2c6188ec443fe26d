//! The load balancer's admin address: `/healthz` and `/servers` (JSON health),
//! `/stats` (JSON counters), `/metrics` (Prometheus text), `/` (HTML stats page).

use crate::stats;
use crate::ServerSet;
use http::StatusCode;
use std::sync::Arc;
use tokio::net::TcpListener;
use webinfra_proxy::{full, json_response, text_response, ResBody};

pub async fn run(
    listener: TcpListener,
    servers: Arc<ServerSet>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    webinfra_proxy::serve(
        listener,
        move |req, _peer| {
            let servers = servers.clone();
            async move {
                match req.uri().path() {
                    "/healthz" | "/servers" => {
                        // ok: every server up; degraded: some; down: none (503).
                        let up = servers.up().len();
                        let (code, status) = match up {
                            0 => (StatusCode::SERVICE_UNAVAILABLE, "down"),
                            n if n == servers.upstreams.len() => (StatusCode::OK, "ok"),
                            _ => (StatusCode::OK, "degraded"),
                        };
                        let mut body = servers.status_json();
                        body["status"] = status.into();
                        body["role"] = "load-balancer".into();
                        json_response(code, &body)
                    }
                    "/stats" => json_response(StatusCode::OK, &servers.status_json()),
                    "/metrics" => typed(
                        "text/plain; version=0.0.4",
                        stats::prometheus(&servers.rows()),
                    ),
                    "/" | "/stats.html" => {
                        typed("text/html; charset=utf-8", stats::html(&servers.rows()))
                    }
                    _ => text_response(StatusCode::NOT_FOUND, "404 Not Found"),
                }
            }
        },
        shutdown,
    )
    .await;
}

fn typed(content_type: &'static str, body: String) -> http::Response<ResBody> {
    http::Response::builder()
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(full(body))
        .expect("valid response")
}
