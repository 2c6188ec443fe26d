//! Upstream failures: which server, how, and whether the request may have
//! reached it (so a retry never duplicates a write).

use crate::client::Upstream;
use http::Method;
use std::fmt;

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
    /// Given up while waiting for the response: the server was marked down
    /// meanwhile (see [`Watch`](crate::client::Watch)). Asked only for
    /// requests that may be sent again after reaching a server.
    Abandoned,
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
            ProxyErrorKind::Abandoned => "given up on (marked down while the request waited)",
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
            ProxyErrorKind::Reset | ProxyErrorKind::Abandoned => idempotent(method),
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

/// A method whose request may be sent again after it reached a server (RFC
/// 9110 9.2.2; TRACE aside, which a proxy does not repeat).
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}
