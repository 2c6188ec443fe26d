//! The request path: rewrite headers, pick a server, forward, retry on another
//! server when that cannot duplicate anything.

use crate::access_log::{AccessLog, Tracked};
use crate::attempts::Attempts;
use crate::pool::{Group, Pool};
use crate::sticky;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;
use webinfra_proxy::{checks, headers, read_body, text_response, ResBody, Secure, UploadError};

/// Everything the request path needs, shared by all connections.
pub struct State {
    /// The current servers; a reload swaps in a new pool.
    pub pool: Arc<arc_swap::ArcSwap<Pool>>,
    /// Limits retries of requests that may have reached a server.
    pub retry_budget: crate::retry::RetryBudget,
}

pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ResBody> {
    let start = Instant::now();
    let mut req = req;
    // WebSocket and other protocol switches pass through (HTTP/1.1 only).
    let protocol = headers::upgrade_requested(req.headers());
    let client_upgrade = protocol.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, incoming) = req.into_parts();
    let request_id = headers::ensure_request_id(&mut parts.headers);
    if let Err((status, why)) = checks::request(&mut parts) {
        if let Some(suppressed) = webinfra_proxy::log_limit::allow() {
            tracing::warn!(id = %request_id, %peer, why, suppressed, "request refused");
        }
        // The body's framing is unknown: nothing after it on this connection can be trusted.
        let mut resp = text_response(status, why);
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        return finish(resp, &request_id);
    }
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some(p) = protocol {
        headers::keep_upgrade(&mut parts.headers, p);
    }
    let secure = parts.extensions.get::<Secure>().is_some();
    let pool = state.pool.load_full();
    if let Some(limiter) = &pool.rate_limiter {
        if let Some(refused) = limiter.refusal(peer.ip(), Instant::now()) {
            tracing::warn!(id = %request_id, %peer, "rate limited");
            return finish(pool.error_pages.apply(refused), &request_id);
        }
    }
    if let Some(tls) = pool
        .config
        .tls
        .as_ref()
        .filter(|t| t.redirect_http && !secure)
    {
        return finish(to_https(&parts, tls.listen.port()), &request_id);
    }
    headers::append_forwarded_for(&mut parts.headers, peer.ip());
    headers::set_forwarded_proto(&mut parts.headers, if secure { "https" } else { "http" });
    let group = route(&pool, &parts);
    headers::rules::apply_map(&mut parts.headers, &pool.config.request_headers);
    // A sticky cookie naming a server pins the request to it (a server of
    // the pool the request goes to); the server never sees it.
    let pinned = pool
        .config
        .sticky_cookie
        .as_deref()
        .and_then(|name| sticky::take(&mut parts.headers, name))
        .and_then(|server| group.servers.index_of(&server));
    let request = ClientRequest {
        parts,
        body: incoming,
        upgrade: client_upgrade,
        pinned,
        secure,
    };
    if pool.config.access_log {
        let span = tracing::info_span!("request", id = %request_id, %peer);
        forward(&state, (&pool, group), request, &request_id, start, peer)
            .instrument(span)
            .await
    } else {
        forward(&state, (&pool, group), request, &request_id, start, peer).await
    }
}

/// The pool's servers for the request (after [`checks::request`], the
/// `Host` field is the authority the server gets).
fn route<'p>(pool: &'p Pool, parts: &http::request::Parts) -> &'p Group {
    if !pool.routed() {
        return &pool.groups[0];
    }
    let host = parts
        .headers
        .get(http::header::HOST)
        .map(HeaderValue::as_bytes)
        .or(parts.uri.host().map(str::as_bytes))
        .unwrap_or_default();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    pool.route(host, target.as_bytes())
}

/// A client request on its way: head, body, and the client's side of a protocol switch.
struct ClientRequest {
    parts: http::request::Parts,
    body: Incoming,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// The server its sticky cookie names, if any.
    pinned: Option<usize>,
    /// It came over TLS.
    secure: bool,
}

async fn forward(
    state: &State,
    (pool, group): (&Pool, &Group),
    request: ClientRequest,
    request_id: &headers::RequestId,
    start: Instant,
    peer: SocketAddr,
) -> Response<ResBody> {
    let ClientRequest {
        mut parts,
        body: incoming,
        upgrade: mut client_upgrade,
        pinned,
        secure,
    } = request;
    let limits = &pool.config.clients;
    let mut body = match read_body(incoming, limits.max_body_bytes, limits.client_timeout).await {
        Ok(body) => body,
        Err(e) => return finish(e.response(), request_id),
    };
    if !body.is_empty() {
        // The body goes up in our framing, and 100 Continue came from us.
        headers::reframe_body(&mut parts.headers);
    }
    let servers = &group.servers;
    let mut attempts = Attempts::new(
        state,
        (pool, group),
        peer.ip(),
        (&parts.method, parts.uri.path().as_bytes()),
        pinned,
        start,
    );
    loop {
        let (i, in_flight) = match attempts.admit().await {
            Ok(admitted) => admitted,
            Err(resp) => return finish(resp, request_id),
        };
        let upstream = &servers.upstreams[i];
        let tried = &attempts.tried;
        let sent = group.clients[i]
            .send_body(
                upstream,
                &parts.method,
                &parts.uri,
                &parts.headers,
                &mut body,
                Some(&|| servers.gone(i, tried)),
            )
            .await;
        match sent {
            Ok(resp) if resp.body().broken_start() => {
                return finish(attempts.invalid(i), request_id);
            }
            Ok(resp) => {
                attempts.answered(i, resp.status().as_u16());
                let (mut rparts, mut rbody) = resp.into_parts();
                if rparts.status == StatusCode::SWITCHING_PROTOCOLS {
                    // Only an upgrade request gets here (the client refuses a
                    // 101 otherwise): join the two connections.
                    let protocol = rparts.headers.get(http::header::UPGRADE).cloned();
                    let resp = match (rbody.take_upgraded(), client_upgrade.take(), protocol) {
                        (Some((stream, early)), Some(client), Some(protocol)) => {
                            headers::strip_hop_by_hop(&mut rparts.headers);
                            headers::keep_upgrade(&mut rparts.headers, protocol);
                            tracing::info!(server = %upstream.name, "protocol switched: tunnel open");
                            crate::tunnel::spawn(
                                client,
                                stream,
                                early,
                                in_flight,
                                upstream.name.clone(),
                                pool.config.clients.tunnel_timeout,
                            );
                            Response::from_parts(rparts, webinfra_proxy::full(Bytes::new()))
                        }
                        _ => text_response(
                            StatusCode::BAD_GATEWAY,
                            format!(
                                "502 Bad Gateway: {} switched protocols without an Upgrade header",
                                upstream.name
                            ),
                        ),
                    };
                    return finish(resp, request_id);
                }
                headers::strip_hop_by_hop(&mut rparts.headers);
                headers::rules::apply_map(&mut rparts.headers, &pool.config.response_headers);
                if let Some(age) = pool.config.tls.as_ref().and_then(|t| t.hsts_max_age_s) {
                    if secure
                        && !rparts
                            .headers
                            .contains_key(http::header::STRICT_TRANSPORT_SECURITY)
                    {
                        if let Ok(v) = HeaderValue::from_str(&format!("max-age={age}")) {
                            rparts
                                .headers
                                .insert(http::header::STRICT_TRANSPORT_SECURITY, v);
                        }
                    }
                }
                if let Some(cookie) = pool.config.sticky_cookie.as_deref() {
                    if pinned != Some(i) {
                        sticky::set(&mut rparts.headers, cookie, &upstream.name, secure);
                    }
                }
                let log = pool.config.access_log.then(|| {
                    AccessLog::new(
                        request_id.clone(),
                        peer,
                        parts.method.clone(),
                        parts.uri.path().to_string(),
                        (group.name.clone(), upstream.name.clone()),
                        rparts.status.as_u16(),
                        attempts.tried.len(),
                        start,
                        attempts.queued_ms,
                    )
                });
                let tracked = Tracked::new(rbody, in_flight, log);
                return finish(
                    Response::from_parts(rparts, http_body_util::BodyExt::boxed_unsync(tracked)),
                    request_id,
                );
            }
            Err(UploadError::Client(e)) => {
                tracing::warn!(error = %e, server = %upstream.name, "request body failed");
                return finish(e.response(), request_id);
            }
            Err(UploadError::Upstream(e)) => {
                // A streamed body that began to go up cannot be sent again.
                let resendable = body.resendable();
                if let Some(resp) = attempts.failed(i, in_flight, e, resendable) {
                    return finish(resp, request_id);
                }
            }
        }
    }
}

/// A permanent redirect of a plain HTTP request to the same URL over HTTPS
/// (308: the method and body are kept).
fn to_https(parts: &http::request::Parts, port: u16) -> Response<ResBody> {
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(parts.uri.host())
        .unwrap_or("localhost");
    // The name without its port (an IPv6 literal keeps its brackets).
    let authority = host.parse::<http::uri::Authority>().ok();
    let name = authority.as_ref().map_or(host, |a| a.host());
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = if port == 443 {
        format!("https://{name}{path}")
    } else {
        format!("https://{name}:{port}{path}")
    };
    let mut resp = text_response(
        StatusCode::PERMANENT_REDIRECT,
        format!("308 Permanent Redirect: {location}"),
    );
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            resp.headers_mut().insert(http::header::LOCATION, v);
            resp
        }
        Err(_) => text_response(StatusCode::BAD_REQUEST, "400 Bad Request: invalid Host"),
    }
}

/// Echoes the request id to the client, like every tier's logs carry it.
fn finish(mut resp: Response<ResBody>, request_id: &headers::RequestId) -> Response<ResBody> {
    resp.headers_mut()
        .insert(headers::REQUEST_ID, request_id.0.clone());
    resp
}
