//! The application server role: the foobar.com message board.
//!
//! An HTML page at `/` ([`pages`]) and a JSON API under `/api/messages`
//! ([`api`]). Writes go to the primary, reads to a replica (to the primary
//! when no replica answers) -- [`router`] owns that routing. The schema is
//! migrated on the primary at start-up ([`schema`]), serialised by a
//! MariaDB lock so two application servers can start at once.

pub mod api;
pub mod assets;
mod error;
mod origin;
mod pages;
pub mod router;
pub mod schema;
mod text;

use axum::http::{HeaderName, HeaderValue};
use axum::Router;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use webinfra_topology::{Credentials, Database};

/// `X-DB-Node`: which database node the response's data came from.
pub const DB_NODE: HeaderName = HeaderName::from_static("x-db-node");
/// `X-Served-By`: which server answered.
pub const SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// What one application server needs.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// This host's name (`X-Served-By`).
    pub server_name: String,
    /// The database tier.
    pub database: Database,
    /// Passwords (the application user's is used).
    pub credentials: Credentials,
}

/// Shared by every handler.
pub struct AppState {
    /// This host's name.
    pub server_name: String,
    /// Database routing.
    pub db: Arc<router::Db>,
    /// Set once the schema is migrated.
    pub ready: AtomicBool,
}

/// Serves the application on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: AppConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Arc::new(AppState {
        server_name: config.server_name.clone(),
        db: Arc::new(router::Db::new(&config.database, &config.credentials)),
        ready: AtomicBool::new(false),
    });
    let discovery = tokio::spawn(state.db.clone().discover_forever());
    let migrator = tokio::spawn(schema::migrate_until_done(state.clone()));
    tracing::info!(addr = %listener.local_addr()?, "application server started");
    let result = axum::serve(listener, routes(state.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    migrator.abort();
    discovery.abort();
    state.db.disconnect().await;
    tracing::info!("application server stopped");
    result
}

/// All routes, with `X-Served-By` on every response.
pub fn routes(state: Arc<AppState>) -> Router {
    let served_by = HeaderValue::from_str(&state.server_name).expect("host names are header-safe");
    Router::new()
        .route("/", axum::routing::get(pages::index))
        .route("/messages", axum::routing::post(pages::post_form))
        .route("/healthz", axum::routing::get(healthz))
        .merge(api::routes())
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn(same_origin))
        .layer(axum::middleware::from_fn(log_request))
        .layer(axum::middleware::map_response(
            move |mut resp: axum::response::Response| {
                let served_by = served_by.clone();
                async move {
                    resp.headers_mut().insert(SERVED_BY, served_by);
                    resp
                }
            },
        ))
        .with_state(state)
}

/// Logs every request with the request id the load balancer assigned.
async fn log_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    if path != "/healthz" {
        tracing::info!(
            %id,
            %method,
            %path,
            status = resp.status().as_u16(),
            ms = start.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    }
    resp
}

/// Refuses a cross-site request that would change something ([`origin`]), logged with its source.
async fn same_origin(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(why) = origin::refusal(req.method(), req.headers()) else {
        return next.run(req).await;
    };
    let from = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::warn!(method = %req.method(), path = %req.uri().path(), forwarded_for = from, why, "cross-site request refused");
    if req.uri().path().starts_with("/api/") {
        return error::ApiError::new(axum::http::StatusCode::FORBIDDEN, why).into_response();
    }
    let page = format!(
        "<!doctype html><title>Refused</title><p>Refused: {}. <a href=\"/\">Post from the board itself</a></p>\n",
        why.replace('&', "&amp;").replace('<', "&lt;")
    );
    (
        axum::http::StatusCode::FORBIDDEN,
        axum::response::Html(page),
    )
        .into_response()
}

async fn healthz(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ready = state.ready.load(Ordering::Acquire);
    let body = serde_json::json!({
        "status": if ready { "ok" } else { "starting" },
        "role": "app",
        "pid": std::process::id(),
        "server": state.server_name,
        "detail": if ready { None } else { Some("waiting for the database schema") },
    });
    let code = if ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}
