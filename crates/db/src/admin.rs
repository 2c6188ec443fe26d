//! The database node's admin address: `/healthz` with the node's status as JSON.

use crate::status::Monitor;
use http::StatusCode;
use std::sync::Arc;
use tokio::net::TcpListener;
use webinfra_proxy::{json_response, text_response};

pub async fn run(
    listener: TcpListener,
    monitor: Arc<Monitor>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let shutdown = webinfra_proxy::serve::until_true(stop);
    webinfra_proxy::serve(
        listener,
        move |req, _peer| {
            let monitor = monitor.clone();
            async move {
                if req.uri().path() != "/healthz" {
                    return text_response(StatusCode::NOT_FOUND, "404 Not Found");
                }
                let status = monitor.status().await;
                let code = if status.status == "ok" {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                let mut body = serde_json::to_value(&status).expect("serialisable");
                body["pid"] = std::process::id().into();
                json_response(code, &body)
            }
        },
        shutdown,
    )
    .await;
}
