//! The load balancer's admin address: `/healthz` and `/servers` (JSON).

use crate::ServerSet;
use http::{header, Response, StatusCode};
use std::sync::Arc;
use tokio::net::TcpListener;
use webinfra_proxy::{full, text_response, ResBody};

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
                        let mut body = servers.status_json();
                        body["status"] = "ok".into();
                        body["role"] = "load-balancer".into();
                        json(StatusCode::OK, body)
                    }
                    _ => text_response(StatusCode::NOT_FOUND, "404 Not Found"),
                }
            }
        },
        shutdown,
    )
    .await;
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<ResBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body.to_string()))
        .expect("valid response")
}
