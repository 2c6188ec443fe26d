//! The fast lane: plain HTTP/1.1 `GET` and `HEAD` requests served without
//! hyper's server and without header maps.
//!
//! Nearly all traffic through a load balancer is such requests over
//! keep-alive connections. For them a proxy need not build a header map on
//! either side: the lane reads the request head in the connection's buffer
//! in one pass ([`request`], [`crate::scan`]), hands the service a [`RawRequest`]
//! borrowing it, and writes the [`Answer`] the service returns -- a head as
//! bytes and a body -- with its own framing ([`write`]). Measured on
//! `bench/instructions`, this takes the load balancer from about 27,700 to
//! about 13,200 user-space instructions per request.
//!
//! The lane takes a request only when nothing about it is unusual
//! ([`request::parse`]) and the service is open for it ([`Lane::open`]); at
//! the first request it does not take, the connection and every byte read
//! so far go to hyper ([`Rewind`]), which serves it from then on. So
//! refusals, bodies, upgrades, HTTP/1.0 and HTTP/2 behave exactly as on the
//! general path. The client timeouts are the socket's ([`crate::idle`]),
//! the same for both; at shutdown an idle connection closes at once and a
//! busy one after its response, which says `connection: close`. Over TLS
//! the lane runs on the decrypted stream (an HTTP/2 connection's preface is
//! not a plain request, so it goes to hyper at once).

pub mod request;
mod rewind;
mod write;

use crate::idle::Tracker;
use bytes::{Buf, BytesMut};
use request::Parsed;
pub use request::RawRequest;
pub use rewind::Rewind;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
pub use write::{Answer, AnswerBody, AnswerFraming};

/// Bytes asked for per read.
const READ_SIZE: usize = 8 * 1024;

/// A service that serves plain requests as bytes.
pub trait Lane: Clone + Send + Sync + 'static {
    /// Whether the lane takes requests now on a connection that is over
    /// TLS or not (`secure`): its configuration may need the general path,
    /// and a reload may change that.
    fn open(&self, secure: bool) -> bool;

    /// Serves one plain request from `peer` (over TLS: `secure`), writing
    /// the answer's head into `scratch.head`.
    fn serve<'a>(
        &'a self,
        req: RawRequest<'a>,
        client: Client,
        scratch: &'a mut Scratch,
    ) -> impl Future<Output = Answer> + Send + 'a;
}

/// Who sent a request.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// The client's address.
    pub peer: SocketAddr,
    /// The connection is over TLS.
    pub secure: bool,
}

/// Buffers a connection keeps from one request to the next (both empty
/// when a request is handed to the service), so a request costs no
/// allocation for them.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The service's own use: e.g. the request head as it goes on.
    pub request: Vec<u8>,
    /// The answer's status line and fields, each line ending in CRLF: no
    /// framing field, no `Connection`, no blank line (the lane adds them).
    pub head: Vec<u8>,
}

/// No fast lane: every request goes to hyper.
#[derive(Clone, Copy, Debug)]
pub struct NoLane;

impl Lane for NoLane {
    fn open(&self, _: bool) -> bool {
        false
    }

    fn serve<'a>(
        &'a self,
        _: RawRequest<'a>,
        _: Client,
        _: &'a mut Scratch,
    ) -> impl Future<Output = Answer> + Send + 'a {
        std::future::pending()
    }
}

/// How a connection left the lane.
pub enum Ended<I> {
    /// It is closed (or broken).
    Closed,
    /// hyper takes it over, starting with the bytes already read.
    Handoff(Rewind<I>),
}

/// A listener's shutdown, as connections in the lane see it.
#[derive(Debug, Default)]
pub struct Drain {
    on: AtomicBool,
    notify: Notify,
}

impl Drain {
    /// The listener is shutting down: idle connections close now, busy
    /// ones after their response.
    pub fn start(&self) {
        self.on.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }
}

/// Serves `io` until it closes or a request needs hyper, or `drain` starts.
pub async fn serve<I, L>(
    mut io: I,
    lane: &L,
    client: Client,
    tracker: &Tracker,
    drain: &Drain,
) -> Ended<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
    L: Lane,
{
    // Registered once for the connection's life, before the first look.
    let drained = drain.notify.notified();
    tokio::pin!(drained);
    drained.as_mut().enable();
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut fields = Vec::new();
    let mut scratch = Scratch {
        request: Vec::with_capacity(1024),
        head: Vec::with_capacity(READ_SIZE),
    };
    loop {
        let (len, method, target) = loop {
            if !buf.is_empty() {
                match request::parse(&buf, &mut fields) {
                    Parsed::Plain {
                        len,
                        method,
                        target,
                    } if lane.open(client.secure) => break (len, method, target),
                    Parsed::Partial => {}
                    _ => return Ended::Handoff(Rewind::new(buf.freeze(), io)),
                }
            }
            let idle = buf.is_empty();
            if idle && drain.on() {
                return close(io).await;
            }
            crate::read_buf::make_room(&mut buf, READ_SIZE);
            let read = if idle {
                tokio::select! {
                    biased;
                    read = io.read_buf(&mut buf) => Some(read),
                    _ = &mut drained => None,
                }
            } else {
                Some(io.read_buf(&mut buf).await)
            };
            let Some(read) = read else {
                return close(io).await;
            };
            match read {
                Ok(0) if buf.is_empty() => return close(io).await,
                // A head cut short: hyper says what it gets.
                Ok(0) => return Ended::Handoff(Rewind::new(buf.freeze(), io)),
                Ok(_) => {}
                // Timeouts (the socket's) and resets end the connection quietly, as in hyper.
                Err(e) => {
                    tracing::debug!(peer = %client.peer, error = %e, "connection read failed");
                    return close(io).await;
                }
            }
        };
        tracker.start();
        let head_request = method == http::Method::HEAD;
        scratch.request.clear();
        scratch.head.clear();
        let req = request::request(&buf[..len], &fields, method, target);
        let answer = lane.serve(req, client, &mut scratch).await;
        buf.advance(len);
        let last = drain.on();
        let written = write::answer(&mut io, answer, head_request, last, &mut scratch.head).await;
        tracker.finish();
        match written {
            Ok(()) if !last => {}
            Ok(()) => return close(io).await,
            Err(e) => {
                tracing::debug!(peer = %client.peer, error = %e, "response failed");
                return close(io).await;
            }
        }
    }
}

/// Ends the connection (the socket's lingering close).
async fn close<I: AsyncWrite + Unpin>(mut io: I) -> Ended<I> {
    let _ = io.shutdown().await;
    Ended::Closed
}
