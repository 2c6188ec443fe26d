//! Sends requests to upstream servers over pooled keep-alive connections.
//!
//! Errors carry the upstream they came from and whether anything may have
//! reached it, so callers can decide to retry on another server without ever
//! sending a non-idempotent request twice.

use bytes::Bytes;
use http::{header, Method, Request, Response, Uri, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// An upstream server: a name for messages and logs, and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host name, e.g. `server-01`.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// What went wrong talking to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyErrorKind {
    /// No connection could be made: nothing was sent, always safe to retry.
    Connect,
    /// The connect did not finish within the connect timeout: nothing was sent.
    ConnectTimeout,
    /// The connection failed after the request may have been sent.
    Reset,
    /// No response headers within the response timeout.
    Timeout,
}

/// An upstream failure, naming the upstream.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ProxyError {
    /// Which upstream failed.
    pub upstream: Upstream,
    /// How it failed.
    pub kind: ProxyErrorKind,
    /// The underlying cause, for messages.
    pub detail: String,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ProxyErrorKind::Connect => "cannot connect",
            ProxyErrorKind::ConnectTimeout => "connect timed out",
            ProxyErrorKind::Reset => "connection failed mid-request",
            ProxyErrorKind::Timeout => "no response in time",
        };
        write!(
            f,
            "{} ({}): {what}: {}",
            self.upstream.name, self.upstream.addr, self.detail
        )
    }
}

impl ProxyError {
    /// True when the request may be sent again to another server: nothing was
    /// sent, or the method is idempotent and no response was received.
    pub fn retryable(&self, method: &Method) -> bool {
        match self.kind {
            ProxyErrorKind::Connect | ProxyErrorKind::ConnectTimeout => true,
            ProxyErrorKind::Reset => matches!(
                *method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
            ),
            ProxyErrorKind::Timeout => false,
        }
    }

    /// True when the request never left: the connection could not be made.
    pub fn nothing_sent(&self) -> bool {
        matches!(
            self.kind,
            ProxyErrorKind::Connect | ProxyErrorKind::ConnectTimeout
        )
    }

    /// The status a client should see: 504 for a timeout, else 502.
    pub fn status(&self) -> http::StatusCode {
        match self.kind {
            ProxyErrorKind::Timeout | ProxyErrorKind::ConnectTimeout => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }
}

/// A pooled HTTP/1.1 client for upstream servers.
#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<HttpConnector, Full<Bytes>>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl UpstreamClient {
    /// A client with the given connect and response-header timeouts.
    pub fn new(connect_timeout: Duration, response_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            // Below the usual 5 s idle timeout of servers (ours, Node's...):
            // a pooled connection is dropped here before the server may close
            // it under a request in flight.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(256)
            .build(connector);
        UpstreamClient {
            client,
            connect_timeout,
            response_timeout,
        }
    }

    /// Sends `req` (origin-form URI) to `upstream` and returns its response headers.
    pub async fn send(
        &self,
        upstream: &Upstream,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let uri: Uri = format!("http://{}{}", upstream.addr, path)
            .parse()
            .map_err(|e: http::uri::InvalidUri| ProxyError {
                upstream: upstream.clone(),
                kind: ProxyErrorKind::Connect,
                detail: e.to_string(),
            })?;
        if !req.headers().contains_key(header::HOST) {
            if let Some(authority) = req.uri().authority() {
                if let Ok(v) = authority.as_str().parse() {
                    req.headers_mut().insert(header::HOST, v);
                }
            }
        }
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        let fail = |kind, detail: String| ProxyError {
            upstream: upstream.clone(),
            kind,
            detail,
        };
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(fail(
                ProxyErrorKind::Timeout,
                format!("waited {:?}", self.response_timeout),
            )),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_connect() && timed_out(&e) => Err(fail(
                ProxyErrorKind::ConnectTimeout,
                format!("no connection within {:?}", self.connect_timeout),
            )),
            Ok(Err(e)) if e.is_connect() => Err(fail(ProxyErrorKind::Connect, root_cause(&e))),
            Ok(Err(e)) => Err(fail(ProxyErrorKind::Reset, root_cause(&e))),
        }
    }
}

/// True when a connect error was the connect timeout.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
