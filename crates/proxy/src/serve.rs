//! Accept loop shared by every webinfra HTTP server: HTTP/1.1 keep-alive and
//! HTTP/2 with prior knowledge on one port, or over TLS ([`serve_tls`]), a limit on open connections,
//! header, idle keep-alive and send timeouts ([`crate::idle`]), graceful shutdown.

use crate::body::ResBody;
use crate::idle::{Finishing, TimedIo, Tracker};
use crate::lane::{self, Drain, Ended, Lane, NoLane, Rewind};
use crate::tls::TlsConfig;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Counters of one listener, for stats pages and metrics.
#[derive(Debug, Default)]
pub struct ListenerStats {
    open: AtomicUsize,
    accepted: AtomicU64,
    handshake_failures: AtomicU64,
}

impl ListenerStats {
    /// Client connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Client connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed or timed out (HTTPS listeners).
    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.load(Ordering::Relaxed)
    }
}

/// Counts a connection open until dropped.
struct Open(Arc<ListenerStats>);

impl Open {
    fn new(stats: &Arc<ListenerStats>) -> Self {
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        Open(stats.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Client-side limits of one listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long a client may take to send a request's headers (slowloris guard).
    pub header_timeout: Duration,
    /// How long an idle keep-alive connection may wait for its next request.
    pub keep_alive_timeout: Duration,
    /// Most connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// How long a response may wait for a client that does not read it.
    pub send_timeout: Duration,
    /// Where the listener's counters go.
    pub stats: Arc<ListenerStats>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            max_connections: 8192,
            send_timeout: Duration::from_secs(30),
            stats: Default::default(),
        }
    }
}
/// Most request headers accepted (more: 431, like HAProxy's `tune.http.maxhdr` 101).
pub(crate) const MAX_HEADERS: usize = 100;
/// Largest request head accepted, in bytes (larger: 431).
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long in-flight requests get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `handler` on `listener` with the default [`ServeOptions`] until
/// `shutdown` resolves, then drains.
///
/// The handler gets each request with the client's address.
pub async fn serve<H, F>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ResBody>> + Send + 'static,
{
    serve_with(listener, ServeOptions::default(), handler, shutdown).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    options: ServeOptions,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ResBody>> + Send + 'static,
{
    serve_inner(listener, options, None, handler, NoLane, shutdown).await
}

/// [`serve_with`], with plain HTTP/1.1 `GET` and `HEAD` requests served by
/// `lane` while it is open ([`crate::lane`]); every other request, and the
/// rest of a connection after one, by `handler`.
pub async fn serve_with_lane<H, F, L>(
    listener: TcpListener,
    options: ServeOptions,
    handler: H,
    lane: L,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ResBody>> + Send + 'static,
    L: Lane,
{
    serve_inner(listener, options, None, handler, lane, shutdown).await
}

/// [`serve_with_lane`] over TLS: each connection's handshake uses the
/// current `tls` configuration (ALPN picks HTTP/2 or HTTP/1.1), within the
/// header timeout; its requests carry the [`Secure`] extension (the lane's
/// are served as secure). `NoLane` for none.
pub async fn serve_tls<H, F, L>(
    listener: TcpListener,
    options: ServeOptions,
    tls: TlsConfig,
    handler: H,
    lane: L,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ResBody>> + Send + 'static,
    L: Lane,
{
    serve_inner(listener, options, Some(tls), handler, lane, shutdown).await
}

/// Marks a request that came over TLS (in its extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secure;

async fn serve_inner<H, F, L>(
    listener: TcpListener,
    options: ServeOptions,
    tls: Option<TlsConfig>,
    handler: H,
    lane: L,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ResBody>> + Send + 'static,
    L: Lane,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The header and keep-alive timeouts are TimedIo's.
        .header_read_timeout(None)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES)
        // A client that shuts its sending side after the request (`nc -N`,
        // some HTTP/1.0 tools) still gets its answer, as from nginx and HAProxy.
        .half_close(true)
        .keep_alive(true);
    // The same header budget over HTTP/2 as over HTTP/1.1 (hyper's own is 16 KiB).
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    // Tells connections in the fast lane that the listener is shutting down.
    let drain = Arc::new(Drain::default());
    let slots = Arc::new(Semaphore::new(options.max_connections));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let open = Open::new(&options.stats);
        let handler = handler.clone();
        let tracker = Arc::new(Tracker::default());
        let io = TimedIo::new(
            stream,
            tracker.clone(),
            options.header_timeout,
            options.keep_alive_timeout,
        )
        .with_send_timeout(options.send_timeout);
        let secure = tls.is_some();
        let io = if secure {
            io
        } else {
            io.with_timeout_answers(peer)
        };
        let mut lane = lane.clone();
        let draining = drain.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            tracker.start();
            if secure {
                req.extensions_mut().insert(Secure);
            }
            let fut = handler(req, peer);
            let tracker = tracker.clone();
            async move {
                let resp = fut.await;
                if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                    tracker.tunnel();
                }
                Ok::<_, Infallible>(resp.map(|body| Finishing::new(body, tracker)))
            }
        });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.as_ref().map(|t| t.load_full());
        // A task is as large as its largest state, for its whole life: the
        // TLS part and hyper's connection are boxed, so a plain connection in
        // the lane (nearly all, in a load balancer) holds only the lane's.
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    let client = lane::Client {
                        peer,
                        secure: false,
                    };
                    match first_in_lane(io, &mut lane, client, &draining).await {
                        Some(io) => {
                            let conn =
                                builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                            Box::pin(watcher.watch(conn.into_owned())).await
                        }
                        None => Ok(()),
                    }
                }
                Some(config) => {
                    Box::pin(async {
                        match TlsAcceptor::from(config).accept(io).await {
                            Ok(stream) => {
                                let client = lane::Client { peer, secure: true };
                                match first_in_lane(stream, &mut lane, client, &draining).await {
                                    Some(io) => {
                                        let conn = builder.serve_connection_with_upgrades(
                                            TokioIo::new(io),
                                            service,
                                        );
                                        watcher.watch(conn.into_owned()).await
                                    }
                                    None => Ok(()),
                                }
                            }
                            Err(e) => {
                                open.0.handshake_failures.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                Ok(())
                            }
                        }
                    })
                    .await
                }
            };
            if let Err(e) = served {
                log_connection_error(peer, &*e);
            }
            drop(open);
            drop(slot);
        });
    }
    drop(listener);
    drain.start();
    // Every connection gives its slot back when it ends, in either lane.
    let all = u32::try_from(options.max_connections).unwrap_or(u32::MAX);
    let drained = async {
        graceful.shutdown().await;
        let _ = slots.acquire_many(all).await;
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drained).await;
}

/// A connection's end by error: a request hyper refused itself (a malformed
/// head, one too large: it answered 400, 431 or 414) is a warning, with its
/// peer and reason, rate-limited ([`crate::log_limit`]); the rest (resets,
/// timeouts) are the client's business.
fn log_connection_error(peer: SocketAddr, e: &(dyn std::error::Error + 'static)) {
    let refused = e
        .downcast_ref::<hyper::Error>()
        .is_some_and(|h| h.is_parse() || h.is_parse_too_large());
    if !refused {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    } else if let Some(suppressed) = crate::log_limit::allow() {
        tracing::warn!(%peer, why = %e, suppressed, "request refused");
    }
}

/// Serves `io` in the fast lane while it is open; the connection for hyper
/// after that, or None when it ended there.
async fn first_in_lane<I, L>(
    io: I,
    lane: &mut L,
    client: lane::Client,
    drain: &Drain,
) -> Option<Rewind<I>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + lane::ReadReady + Unpin,
    L: Lane,
{
    if !lane.open(client.secure) {
        return Some(Rewind::new(Bytes::new(), io));
    }
    match lane::serve(io, lane, client, drain).await {
        Ended::Handoff(io) => Some(io),
        Ended::Closed => None,
    }
}

/// A shutdown future for [`serve`] that resolves once `stop` becomes true.
pub async fn until_true(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
