//! Sends requests to upstream servers over pooled keep-alive connections.
//!
//! HTTP/1.1 is spoken directly ([`crate::wire`]): the request is written and
//! the response head read by the task serving the client, and the response
//! body ([`UpstreamBody`]) is read from the connection as the client takes
//! it, so a proxied request costs no extra task, channel or wake-up. Errors
//! carry the upstream they came from and whether anything may have reached
//! it, so callers can retry on another server without ever sending a
//! non-idempotent request twice.

pub use crate::error::{ProxyError, ProxyErrorKind};
use crate::lane::Interim;
use crate::pipeline::Baton;
use crate::pool::Pool;
use crate::timer::Timer;
use crate::upstream_body::{Conn, UpstreamBody};
use crate::wire::{self, RawHead, RequestFraming};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Response, Uri};
use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// Room for a response head, asked for per connection.
const READ_BUF: usize = 8 * 1024;

/// Bodies up to this size are written together with the head, in one write.
const COALESCE_BODY: usize = 16 * 1024;

/// How often a request waiting for its response asks its [`Watch`].
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Asked every [`WATCH_EVERY`] while a request that may be sent again
/// ([`idempotent`](crate::error::idempotent)) waits for its response: true
/// when its server has been marked down (and another can take the request).
/// The request is then given up on there ([`ProxyErrorKind::Abandoned`])
/// and its connection closed -- HAProxy's `on-marked-down
/// shutdown-sessions`, for the requests that can be answered elsewhere. A
/// server that hangs (a frozen process) would otherwise hold them for the
/// whole response timeout. A write that may have reached the server is
/// never given up on: its answer may still come.
pub type Watch<'a> = Option<&'a (dyn Fn() -> bool + Sync)>;

/// An upstream server: a name for messages and logs, and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host name, e.g. `server-01`.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// One pool of idle connections per upstream address: the first found
/// without a lock (a load balancer's client has one upstream, found per
/// request), any others in a list.
#[derive(Default)]
struct Pools {
    first: OnceLock<(SocketAddr, Arc<Pool>)>,
    rest: Mutex<Vec<(SocketAddr, Arc<Pool>)>>,
}

/// A pooled HTTP/1.1 client for upstream servers.
#[derive(Clone)]
pub struct UpstreamClient {
    pools: Arc<Pools>,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    /// Bodiless `GET`s and `HEAD`s sent with [`send_raw`](Self::send_raw)
    /// that arrive together share a connection ([`crate::pipeline`]).
    pipelining: bool,
}

/// A caller's own response timer, kept from one request to the next (the
/// load balancer's fast lane keeps one per client connection): its task
/// hands tokio its waker once, not once per request as it must with a
/// pooled connection's timer, which a different task uses each time.
#[derive(Debug, Default)]
pub struct ResponseTimer(Option<Timer>);

/// How one exchange on one connection failed.
pub(crate) enum Failure {
    /// A reused connection the server had closed: nothing was processed.
    Stale,
    /// Anything else, after the request may have been sent.
    Failed(String),
}

impl UpstreamClient {
    /// A client with the given connect and response-header timeouts.
    pub fn new(connect_timeout: Duration, response_timeout: Duration) -> Self {
        UpstreamClient {
            pools: Default::default(),
            connect_timeout,
            response_timeout,
            pipelining: false,
        }
    }

    /// With `on`, pipelines the bodiless `GET`s and `HEAD`s that
    /// [`send_raw`](Self::send_raw) is given together ([`crate::pipeline`]).
    pub fn pipelining(mut self, on: bool) -> Self {
        self.pipelining = on;
        self
    }

    /// Whether it pipelines (see [`pipelining`](Self::pipelining)).
    pub fn pipelines(&self) -> bool {
        self.pipelining
    }

    /// The pool for `addr`: borrowed for the first address this client
    /// met (a load balancer's client has only that one), shared for others.
    pub(crate) fn pool(&self, addr: SocketAddr) -> Cow<'_, Arc<Pool>> {
        let new = || Arc::new(Pool::new(POOL_IDLE_TIMEOUT));
        let (first, pool) = self.pools.first.get_or_init(|| (addr, new()));
        if *first == addr {
            return Cow::Borrowed(pool);
        }
        let mut rest = self.pools.rest.lock().expect("pools lock");
        if let Some((_, p)) = rest.iter().find(|(a, _)| *a == addr) {
            return Cow::Owned(p.clone());
        }
        let pool = new();
        rest.push((addr, pool.clone()));
        Cow::Owned(pool)
    }

    /// Sends `req` (origin-form URI, complete body) to `upstream` and returns
    /// its response head; the body streams from the connection.
    pub async fn send(
        &self,
        upstream: &Upstream,
        req: http::Request<Bytes>,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let (parts, body) = req.into_parts();
        self.send_parts(
            upstream,
            &parts.method,
            &parts.uri,
            &parts.headers,
            &body,
            None,
        )
        .await
    }

    /// [`send`](Self::send) from borrowed parts, so a caller that may retry
    /// elsewhere keeps its request without copying it; `watch`: see [`Watch`].
    pub async fn send_parts(
        &self,
        upstream: &Upstream,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
        watch: Watch<'_>,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let mut bytes = head_for(
            upstream,
            method,
            uri,
            headers,
            RequestFraming::Length(body.len() as u64),
        );
        let separate_body = if body.len() <= COALESCE_BODY {
            bytes.extend_from_slice(body);
            None
        } else {
            Some(body.clone())
        };
        let upgrade = headers.contains_key(http::header::UPGRADE);
        let out = (separate_body.as_ref(), method, upgrade, false);
        let now = std::time::Instant::now();
        let (raw, body) = self
            .send_head(upstream, &bytes, out, (now, watch), (None, None))
            .await?;
        into_response(raw, body).map_err(|d| fail(upstream, ProxyErrorKind::Reset, d))
    }

    /// Sends `head`, a complete request head as bytes (a `GET` or `HEAD`:
    /// no body), to `upstream` and returns the response head as read, for a
    /// caller that passes it on as bytes; the body streams from the connection.
    /// `started`: when the caller began this attempt (the response timeout
    /// runs from it), read once by the caller for its own use too; `timer`:
    /// the caller's, kept from one request to the next; `watch`: see
    /// [`Watch`]; `interim`: where interim (1xx) responses go as they come.
    pub fn send_raw<'a>(
        &'a self,
        upstream: &'a Upstream,
        head: &'a [u8],
        method: &'a Method,
        (started, watch): (std::time::Instant, Watch<'a>),
        (timer, interim): (&'a mut ResponseTimer, &'a Interim),
    ) -> impl Future<Output = Result<(RawHead, UpstreamBody), ProxyError>> + Send + 'a {
        // `send_head`'s own future: no wrapper to move it into.
        let pipelined = self.pipelining && matches!(*method, Method::GET | Method::HEAD);
        self.send_head(
            upstream,
            head,
            (None, method, false, pipelined),
            (started, watch),
            (Some(timer), Some(interim)),
        )
    }

    /// Writes a serialised request (`body`: when not in `head`) on a pooled
    /// or new connection and reads the response head, within the response timeout.
    /// `(body, method, upgrade)`: see [`Outgoing`]; `pipelined`: it may
    /// share a connection ([`crate::pipeline`]); `now`: when the attempt
    /// started, the one clock reading for the pool, the timeout and the
    /// connection's idle time; `watch`: see [`Watch`]; `kept`: the caller's
    /// own response timer, else the pooled connection's (or a new one) is
    /// used and kept with it; `interim`: where interim responses go (else
    /// they are dropped).
    async fn send_head(
        &self,
        upstream: &Upstream,
        head: &[u8],
        (body, method, upgrade, pipelined): (Option<&Bytes>, &Method, bool, bool),
        (now, watch): (std::time::Instant, Watch<'_>),
        (kept, interim): (Option<&mut ResponseTimer>, Option<&Interim>),
    ) -> Result<(RawHead, UpstreamBody), ProxyError> {
        let fail = |kind, detail| fail(upstream, kind, detail);
        let pool = self.pool(upstream.addr);
        let out = Outgoing {
            head,
            body,
            method,
            upgrade,
            idle_timeout: self.response_timeout,
            pool: &pool,
            started: now,
            interim,
        };
        let deadline = tokio::time::Instant::from_std(now + self.response_timeout);
        let watch = watch.filter(|_| crate::error::idempotent(method));
        // The timer's next stop: the deadline, or before it the next look at
        // the watch.
        let mut stop = match watch {
            Some(_) => deadline.min(tokio::time::Instant::from_std(now + WATCH_EVERY)),
            None => deadline,
        };
        // A pipelined request takes its connection from the pool itself.
        let idle = if pipelined { None } else { pool.take(now) };
        let (pooled, conn_timer) = match idle {
            Some((stream, buf, timer)) => (Some((stream, buf)), timer),
            None => (None, None),
        };
        // The caller's timer, or the pooled connection's (reused: no lock),
        // or a new one.
        let mut own = None;
        let timer = match kept {
            Some(kept) => kept.0.get_or_insert_with(|| Timer::at(stop)),
            None => own.insert(conn_timer.unwrap_or_else(|| Timer::at(stop))),
        };
        // Both futures are polled where they are made: `select!` would move
        // the exchange (hundreds of bytes) into a tuple first. The exchange
        // goes first, as it nearly always ends the wait.
        let mut exchange = std::pin::pin!(async {
            if pipelined {
                match crate::pipeline::send(self, upstream, &out, now).await? {
                    Ok(resp) => return Ok(resp),
                    // Sent again on a connection of its own.
                    Err(Failure::Stale) => {}
                    Err(Failure::Failed(d)) => return Err(fail(ProxyErrorKind::Reset, d)),
                }
            }
            if let Some((stream, buf)) = pooled {
                match exchange(stream, buf, &out, true).await {
                    Ok(resp) => return Ok(resp),
                    Err(Failure::Stale) => {}
                    Err(Failure::Failed(d)) => return Err(fail(ProxyErrorKind::Reset, d)),
                }
            }
            let stream = self.connect(upstream).await?;
            let buf = BytesMut::with_capacity(READ_BUF);
            match exchange(stream, buf, &out, false).await {
                Ok(resp) => Ok(resp),
                Err(Failure::Stale) => Err(fail(ProxyErrorKind::Reset, "connection closed".into())),
                Err(Failure::Failed(d)) => Err(fail(ProxyErrorKind::Reset, d)),
            }
        });
        // The timer (a pooled connection's may be armed for its last
        // request's instant) is moved only if it fires early: with a watch,
        // about once a second per connection under steady traffic.
        let result = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = exchange.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            loop {
                std::task::ready!(timer.poll_until(cx, stop));
                if stop >= deadline {
                    let waited = format!("waited {:?}", self.response_timeout);
                    return Poll::Ready(Err(fail(ProxyErrorKind::Timeout, waited)));
                }
                if watch.is_some_and(|gone| gone()) {
                    let waited = format!("after {:?}", now.elapsed());
                    return Poll::Ready(Err(fail(ProxyErrorKind::Abandoned, waited)));
                }
                stop = deadline.min(stop + WATCH_EVERY);
            }
        })
        .await;
        let (head, mut body) = result?;
        body.keep_timer(own);
        Ok((head, body))
    }

    /// A new connection to `upstream`, within the connect timeout.
    pub(crate) async fn connect(&self, upstream: &Upstream) -> Result<TcpStream, ProxyError> {
        match tokio::time::timeout(self.connect_timeout, TcpStream::connect(upstream.addr)).await {
            Err(_) => Err(fail(
                upstream,
                ProxyErrorKind::ConnectTimeout,
                format!("no connection within {:?}", self.connect_timeout),
            )),
            Ok(Err(e)) => Err(fail(upstream, ProxyErrorKind::Connect, e.to_string())),
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
        }
    }
}

pub(crate) fn fail(upstream: &Upstream, kind: ProxyErrorKind, detail: String) -> ProxyError {
    ProxyError {
        upstream: upstream.clone(),
        kind,
        detail,
    }
}

/// The request head for `upstream`: origin-form path, and a `Host` when the
/// client sent none.
pub(crate) fn head_for(
    upstream: &Upstream,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    framing: RequestFraming,
) -> BytesMut {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let host = if headers.contains_key(http::header::HOST) {
        String::new()
    } else {
        match uri.authority() {
            Some(a) => a.as_str().to_string(),
            None => upstream.addr.to_string(),
        }
    };
    wire::request_head(method, path, headers, &host, framing)
}

/// One request, ready to be written on any connection to its upstream.
pub(crate) struct Outgoing<'a> {
    /// The serialised head (with the body when small).
    pub head: &'a [u8],
    /// The body, when it is written separately.
    pub body: Option<&'a Bytes>,
    pub method: &'a Method,
    /// It asked to switch protocols: a 101 is a valid answer.
    pub upgrade: bool,
    /// Longest silence from the server mid-body (the response timeout).
    pub idle_timeout: Duration,
    /// Where the connection goes back afterwards.
    pub pool: &'a Arc<Pool>,
    /// When the request started.
    pub started: std::time::Instant,
    /// Where interim responses go.
    pub interim: Option<&'a Interim>,
}

/// Writes the request on `stream` (`reused`: from the pool) and reads the
/// response head into `buf` (the connection's, empty).
async fn exchange(
    mut stream: TcpStream,
    mut buf: BytesMut,
    out: &Outgoing<'_>,
    reused: bool,
) -> Result<(RawHead, UpstreamBody), Failure> {
    let Outgoing {
        head,
        body,
        method,
        upgrade,
        idle_timeout,
        pool,
        started,
        interim,
    } = *out;
    // A reused connection that fails before any response byte was closed by
    // the server while idle; only requests safe to repeat are tried again.
    let idempotent = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    let stale = |e: String| {
        if reused && idempotent {
            Failure::Stale
        } else {
            Failure::Failed(e)
        }
    };
    let written = match body {
        None => stream.write_all(head).await,
        Some(b) => match stream.write_all(head).await {
            Ok(()) => stream.write_all(b).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = written {
        return Err(stale(e.to_string()));
    }
    let head = Head {
        method,
        upgrade,
        idle_timeout,
        pool,
        started,
        keep_alive: true,
        interim,
    };
    crate::read_buf::make_room(&mut buf, READ_BUF);
    read_raw_head(stream, buf, &head, stale, None).await
}

/// What reading a response head needs to know about its request.
pub(crate) struct Head<'a> {
    pub method: &'a Method,
    /// It asked to switch protocols: a 101 is a valid answer.
    pub upgrade: bool,
    /// Longest silence from the server mid-body.
    pub idle_timeout: Duration,
    /// Where the connection goes back afterwards.
    pub pool: &'a Arc<Pool>,
    /// When the request started.
    pub started: std::time::Instant,
    /// False when the connection cannot carry another request whatever the
    /// server says (e.g. a request body was cut short).
    pub keep_alive: bool,
    /// Where interim responses go (else they are dropped).
    pub interim: Option<&'a Interim>,
}

/// [`read_raw_head`], with the head's fields in a [`HeaderMap`].
pub(crate) async fn read_head(
    stream: TcpStream,
    buf: BytesMut,
    head: &Head<'_>,
    stale: impl Fn(String) -> Failure,
) -> Result<Response<UpstreamBody>, Failure> {
    let (raw, body) = read_raw_head(stream, buf, head, stale, None).await?;
    into_response(raw, body).map_err(Failure::Failed)
}

/// A response from a head as read and its body.
fn into_response(raw: RawHead, body: UpstreamBody) -> Result<Response<UpstreamBody>, String> {
    let mut resp = Response::new(body);
    *resp.status_mut() = raw.status;
    *resp.headers_mut() = raw.headers()?;
    Ok(resp)
}

/// Reads the response head from `stream` (`buf` holds bytes already read);
/// `stale` turns a failure before any byte into the caller's kind of failure;
/// `baton`: the request's place in a batch of pipelined requests, which the
/// body passes on when it ends.
pub(crate) async fn read_raw_head(
    mut stream: TcpStream,
    mut buf: BytesMut,
    head: &Head<'_>,
    stale: impl Fn(String) -> Failure,
    baton: Option<Baton>,
) -> Result<(RawHead, UpstreamBody), Failure> {
    let Head {
        method,
        upgrade,
        idle_timeout,
        pool,
        started,
        keep_alive,
        interim,
    } = *head;
    loop {
        match wire::parse_head(&mut buf, method) {
            Err(e) => return Err(Failure::Failed(e)),
            Ok(Some(h)) if h.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                if !upgrade {
                    return Err(Failure::Failed("unexpected 101 Switching Protocols".into()));
                }
                let conn = Conn {
                    stream,
                    buf,
                    pool: pool.clone(),
                    keep_alive: false,
                    started,
                    idle_timeout,
                    timer: None,
                    baton: None,
                };
                return Ok((h, UpstreamBody::upgraded(conn)));
            }
            Ok(Some(h)) if h.status.is_informational() => {
                // 100 Continue, 103 Early Hints: the final response follows.
                if let Some(interim) = interim {
                    interim.push(&h);
                }
                continue;
            }
            Ok(Some(h)) => {
                let conn = Conn {
                    stream,
                    buf,
                    pool: pool.clone(),
                    keep_alive: h.keep_alive && keep_alive,
                    started,
                    idle_timeout,
                    timer: None,
                    baton,
                };
                let body = UpstreamBody::new(h.framing, conn);
                return Ok((h, body));
            }
            Ok(None) => {}
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) if buf.is_empty() => {
                return Err(stale(
                    "the server closed the connection without responding".into(),
                ))
            }
            Ok(0) => {
                return Err(Failure::Failed(
                    "the server closed the connection mid-response".into(),
                ))
            }
            Ok(_) => {}
            Err(e) if buf.is_empty() => return Err(stale(e.to_string())),
            Err(e) => return Err(Failure::Failed(e.to_string())),
        }
    }
}
