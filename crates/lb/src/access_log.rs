//! The access log: one line per proxied request, written when its response
//! body is done, as HAProxy logs by default. Besides what was asked and who
//! answered it says how long the client waited for a server slot, for the
//! response head and in all, how many body bytes reached the client, and how
//! the transfer ended: `complete`, `client aborted` (the client went away
//! first) or `server failed: ...` (the server broke off mid-body).

use crate::health::InFlight;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use webinfra_proxy::body::BoxError;
use webinfra_proxy::headers::RequestId;
use webinfra_proxy::UpstreamBody;

/// Milliseconds to the microsecond (`0.387`, not `0.38679600000000003`).
pub(crate) fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The line being filled in; written when dropped.
pub(crate) struct AccessLog {
    pub id: RequestId,
    pub peer: SocketAddr,
    pub method: http::Method,
    pub path: String,
    /// The pool the request was routed to (`default` outside any pool).
    pub pool: String,
    pub server: String,
    pub status: u16,
    pub retries: usize,
    /// When the request arrived.
    pub start: Instant,
    /// Time spent waiting for a server slot.
    pub queued_ms: f64,
    /// Time to the response head.
    pub head_ms: f64,
    bytes: u64,
    end: Option<String>,
}

impl AccessLog {
    /// A line for a response whose head just arrived.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: RequestId,
        peer: SocketAddr,
        method: http::Method,
        path: String,
        (pool, server): (String, String),
        status: u16,
        retries: usize,
        start: Instant,
        queued_ms: f64,
    ) -> Self {
        AccessLog {
            id,
            peer,
            method,
            path,
            pool,
            server,
            status,
            retries,
            head_ms: ms(start.elapsed()),
            start,
            queued_ms,
            bytes: 0,
            end: None,
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        tracing::info!(
            id = %self.id,
            peer = %self.peer,
            method = %self.method,
            path = %self.path,
            pool = %self.pool,
            server = %self.server,
            status = self.status,
            retries = self.retries,
            queued_ms = self.queued_ms,
            head_ms = self.head_ms,
            ms = ms(self.start.elapsed()),
            bytes = self.bytes,
            end = self.end.as_deref().unwrap_or("client aborted"),
            "proxied"
        );
    }
}

/// A response body that keeps its server's in-flight count until it is
/// done, and fills in the access log line if there is one.
pub(crate) struct Tracked {
    inner: UpstreamBody,
    _in_flight: InFlight,
    log: Option<Box<AccessLog>>,
}

impl Tracked {
    pub fn new(inner: UpstreamBody, in_flight: InFlight, log: Option<AccessLog>) -> Self {
        let mut log = log.map(Box::new);
        if let Some(l) = log.as_mut().filter(|_| inner.is_end_stream()) {
            // No body (HEAD, 204, 304): done before it is ever polled.
            l.end = Some("complete".into());
        }
        Tracked {
            inner,
            _in_flight: in_flight,
            log,
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(log) = this.log.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    log.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                    // The last frame of a body of known length ends it:
                    // hyper does not poll again.
                    if this.inner.is_end_stream() {
                        log.end = Some("complete".into());
                    }
                }
                Poll::Ready(Some(Err(e))) => log.end = Some(format!("server failed: {e}")),
                Poll::Ready(None) => log.end = Some("complete".into()),
                Poll::Pending => {}
            }
        }
        polled.map_err(|e| Box::new(e) as BoxError)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
