//! The web server role (nginx's place in the design), one per server host.
//!
//! It serves the application's static files itself ([`statics`]) and
//! reverse-proxies everything else to the application server on the same
//! host through the shared proxy engine. When that one cannot take a
//! request (it cannot be reached; for an idempotent method, its connection
//! also broke before an answer), the request goes to the other hosts'
//! application servers in turn, like nginx's `backup` servers with
//! `proxy_next_upstream error`: a request that may have reached an
//! application is never sent to a second one unless its method is
//! idempotent. So a crashed application costs no client request while the
//! load balancer's checks (this server's `/healthz` reports its own
//! application) take the server out. Every response carries `X-Served-By:
//! <host>` so a client can see which server answered.

pub mod file_body;
pub mod range;
pub mod statics;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use webinfra_proxy::{
    body, checks, full, headers, read_body, text_response, ResBody, UploadError, Upstream,
    UpstreamClient,
};

/// Largest request body passed to the application.
const MAX_BODY: u64 = 10 * 1024 * 1024;
/// Longest silence from a client in the middle of a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// What one web server needs to know.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// This host's name, sent as `X-Served-By`.
    pub server_name: String,
    /// The application server on this host.
    pub app: Upstream,
    /// The other hosts' application servers, tried in this order when
    /// `app` cannot take a request.
    pub fallbacks: Vec<Upstream>,
    /// Root of the static files, served under `/static/`.
    pub static_root: PathBuf,
}

struct State {
    config: WebConfig,
    statics: statics::StaticFiles,
    client: UpstreamClient,
    served_by: HeaderValue,
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn run(listener: TcpListener, config: WebConfig, shutdown: impl Future<Output = ()>) {
    let served_by = HeaderValue::from_str(&config.server_name).expect("host names are header-safe");
    let state = Arc::new(State {
        statics: statics::StaticFiles::new(config.static_root.clone()),
        client: UpstreamClient::new(Duration::from_secs(2), Duration::from_secs(60)),
        served_by,
        config,
    });
    tracing::info!(app = %state.config.app.addr, root = %state.config.static_root.display(), "web server started");
    webinfra_proxy::serve(
        listener,
        move |req, peer| {
            let state = state.clone();
            async move {
                let mut resp = handle(&state, req, peer).await;
                resp.headers_mut()
                    .entry(headers::SERVED_BY)
                    .or_insert_with(|| state.served_by.clone());
                resp
            }
        },
        shutdown,
    )
    .await;
    tracing::info!("web server stopped");
}

async fn handle(state: &State, req: Request<Incoming>, peer: SocketAddr) -> Response<ResBody> {
    let path = req.uri().path();
    if path == "/healthz" {
        return healthz(state).await;
    }
    if let Some(rel) = path.strip_prefix("/static/") {
        return state.statics.serve(rel, req.method(), req.headers()).await;
    }
    if path == "/favicon.ico" {
        return state
            .statics
            .serve("favicon.ico", req.method(), req.headers())
            .await;
    }
    proxy(state, req, peer).await
}

/// Healthy only when the application behind this web server is: the load
/// balancer's check then sees the whole server, not just its front half.
async fn healthz(state: &State) -> Response<ResBody> {
    let probe = Request::get("/healthz")
        .header(header::HOST, state.config.app.addr.to_string())
        .body(Bytes::new())
        .expect("valid request");
    let app = tokio::time::timeout(
        Duration::from_secs(1),
        state.client.send(&state.config.app, probe),
    )
    .await;
    let problem = match app {
        Ok(Ok(resp)) if resp.status().is_success() => None,
        Ok(Ok(resp)) => Some(format!("application answers {}", resp.status())),
        Ok(Err(e)) => Some(format!("application unreachable: {e}")),
        Err(_) => Some("application did not answer within 1 s".to_string()),
    };
    let (code, body) = match &problem {
        None => (
            StatusCode::OK,
            serde_json::json!({"status": "ok", "role": "web", "server": state.config.server_name, "pid": std::process::id()}),
        ),
        Some(p) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "degraded", "role": "web", "server": state.config.server_name, "detail": p, "pid": std::process::id()}),
        ),
    };
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body.to_string()))
        .expect("valid response")
}

async fn proxy(state: &State, req: Request<Incoming>, peer: SocketAddr) -> Response<ResBody> {
    let (mut parts, incoming) = req.into_parts();
    let request_id = headers::ensure_request_id(&mut parts.headers);
    if let Err((status, why)) = checks::request(&mut parts) {
        if let Some(suppressed) = webinfra_proxy::log_limit::allow() {
            tracing::warn!(id = %request_id, %peer, why, suppressed, "request refused");
        }
        return text_response(status, why);
    }
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::append_forwarded_for(&mut parts.headers, peer.ip());
    if !parts.headers.contains_key(headers::FORWARDED_PROTO) {
        headers::set_forwarded_proto(&mut parts.headers, "http");
    }
    let mut body = match read_body(incoming, MAX_BODY, BODY_TIMEOUT).await {
        Ok(body) => body,
        Err(e) => return e.response(),
    };
    if !body.is_empty() {
        headers::reframe_body(&mut parts.headers);
    }
    let (method, uri, head) = (&parts.method, &parts.uri, &parts.headers);
    let path = uri.path();
    let mut sent = state
        .client
        .send_body(&state.config.app, method, uri, head, &mut body, None)
        .await;
    for next in &state.config.fallbacks {
        let Err(UploadError::Upstream(e)) = &sent else {
            break;
        };
        if !(body.resendable() && e.retryable(method)) {
            break;
        }
        tracing::warn!(id = %request_id, %method, %path, error = %e, next = %next.name, "application failed, sending to another");
        sent = state
            .client
            .send_body(next, method, uri, head, &mut body, None)
            .await;
    }
    match sent {
        Ok(resp) => {
            let (mut rparts, rbody) = resp.into_parts();
            headers::strip_hop_by_hop(&mut rparts.headers);
            tracing::info!(id = %request_id, %method, %path, status = rparts.status.as_u16(), "proxied to app");
            Response::from_parts(rparts, body::stream(rbody))
        }
        Err(UploadError::Client(e)) => {
            tracing::warn!(id = %request_id, %method, %path, error = %e, "request body failed");
            e.response()
        }
        Err(UploadError::Upstream(e)) => {
            tracing::warn!(id = %request_id, %method, %path, error = %e, "application failed");
            text_response(
                e.status(),
                format!(
                    "{} {}: {e}",
                    e.status().as_u16(),
                    e.status().canonical_reason().unwrap_or("")
                ),
            )
        }
    }
}
