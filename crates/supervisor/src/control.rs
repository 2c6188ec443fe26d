//! The supervisor's control socket, `<state-dir>/supervisor.sock`: a small
//! HTTP API for `status`, `start`, `stop` and `down` from another shell.
//!
//! `GET /status`, `POST /start/NAME`, `POST /stop/NAME` (NAME: a component
//! like `server-01/web`, or a host like `server-01`), `POST /shutdown`.

use crate::components::select;
use crate::Supervisor;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

/// The control socket of the stack whose state dir is `state_dir`.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("supervisor.sock")
}

/// Serves the control API until the process exits; `shutdown` is notified on `POST /shutdown`.
pub async fn serve(listener: UnixListener, sup: Arc<Supervisor>, shutdown: Arc<Notify>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let sup = sup.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let sup = sup.clone();
                let shutdown = shutdown.clone();
                async move { Ok::<_, Infallible>(handle(req, &sup, &shutdown).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    sup: &Arc<Supervisor>,
    shutdown: &Notify,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let reply = |code: StatusCode, body: Value| {
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("valid response")
    };
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/status") => reply(
            StatusCode::OK,
            json!({ "pid": std::process::id(), "components": sup.states() }),
        ),
        (Method::POST, "/shutdown") => {
            shutdown.notify_one();
            reply(StatusCode::OK, json!({ "shutting_down": true }))
        }
        (Method::POST, p) if p.starts_with("/start/") || p.starts_with("/stop/") => {
            let (verb, name) = p[1..].split_once('/').expect("checked prefix");
            let names: Vec<String> = select(sup.specs(), name)
                .iter()
                .map(|c| c.name.clone())
                .collect();
            if names.is_empty() {
                return reply(
                    StatusCode::NOT_FOUND,
                    json!({ "error": format!("no component or host named {name}") }),
                );
            }
            // What was done, and what was already so (running, or not running).
            let (mut done, mut already) = (Vec::new(), Vec::new());
            for n in &names {
                let result = if verb == "start" {
                    sup.start(n)
                } else {
                    Ok(sup.stop(n).await)
                };
                match result {
                    Ok(true) => done.push(n.clone()),
                    Ok(false) => already.push(n.clone()),
                    Err(e) => {
                        return reply(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            json!({ "error": format!("{e:#}") }),
                        )
                    }
                }
            }
            reply(StatusCode::OK, json!({ verb: done, "already": already }))
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            json!({ "error": "unknown control request" }),
        ),
    }
}

/// Sends a control request to the supervisor of `state_dir`.
pub async fn request(state_dir: &Path, method: Method, path: &str) -> anyhow::Result<(u16, Value)> {
    let sock = socket_path(state_dir);
    let stream = UnixStream::connect(&sock)
        .await
        .map_err(|e| anyhow::anyhow!("no stack is running from {} ({e})", state_dir.display()))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "webinfra")
        .body(Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((code, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}
