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
//!
//! Between requests a connection holds no buffer: it waits for its socket
//! (over TLS, rustls) to have something to read, then borrows a set from
//! its thread ([`stash`]).
//! With the connection's task kept small (the rare parts of it boxed), an
//! idle keep-alive connection costs about 4.9 KB of memory instead of 31
//! (`bench/conns`).

mod interim;
pub mod request;
mod rewind;
mod stash;
mod write;

use crate::timer::WakerId;
use bytes::Buf;
pub use interim::Interim;
pub use request::RawRequest;
use request::{Parsed, Version};
pub use rewind::Rewind;
pub use stash::ReadReady;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
pub use write::{Answer, AnswerBody, AnswerFraming};

/// Bytes asked for per read.
const READ_SIZE: usize = 8 * 1024;

/// A service that serves plain requests as bytes. Each connection has its
/// own clone, so a lane may keep per-connection state (e.g. the current
/// configuration, looked up without a shared reference count).
pub trait Lane: Clone + Send + Sync + 'static {
    /// Whether the lane takes requests now on a connection that is over
    /// TLS or not (`secure`): its configuration may need the general path,
    /// and a reload may change that.
    fn open(&mut self, secure: bool) -> bool;

    /// Serves one plain request from `peer` (over TLS: `secure`), writing
    /// the answer's head into `scratch.head`; interim responses the server
    /// sends before its answer go to `interim`, and from there to the
    /// client at once.
    fn serve<'a>(
        &'a mut self,
        req: RawRequest<'a>,
        client: Client,
        scratch: &'a mut Scratch,
        interim: &'a Interim,
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

/// Buffers a request is served with (both empty when it is handed to the
/// service), lent from one request to the next ([`stash`]), so a request
/// costs no allocation for them.
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
    fn open(&mut self, _: bool) -> bool {
        false
    }

    fn serve<'a>(
        &'a mut self,
        _: RawRequest<'a>,
        _: Client,
        _: &'a mut Scratch,
        _: &'a Interim,
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
/// Between requests it holds no buffer ([`stash`]).
pub async fn serve<I, L>(mut io: I, lane: &mut L, client: Client, drain: &Drain) -> Ended<I>
where
    I: AsyncRead + AsyncWrite + ReadReady + Unpin,
    L: Lane,
{
    // Registered once for the connection's life, before the first look.
    let drained = drain.notify.notified();
    tokio::pin!(drained);
    drained.as_mut().enable();
    let mut drained_by = None;
    let mut held = stash::Lent::default();
    let interim = Interim::default();
    // Interim heads the client has not taken yet.
    let mut unsent = Vec::new();
    loop {
        let (len, method, target) = loop {
            if let Some(b) = held.0.as_mut().filter(|b| !b.read.is_empty()) {
                match request::parse(&b.read, &mut b.fields) {
                    Parsed::Plain {
                        len,
                        method,
                        target,
                    } if lane.open(client.secure) => break (len, method, target),
                    Parsed::Partial => {}
                    // Not the lane's: hyper's, once its version is one hyper reads.
                    _ => match request::version(&mut b.read) {
                        Version::Newer => continue,
                        Version::Partial => {}
                        Version::Unsupported => {
                            if let Some(suppressed) = crate::log_limit::allow() {
                                tracing::warn!(peer = %client.peer, why = "HTTP version not supported (505)", suppressed, "request refused");
                            }
                            return refuse(
                                held,
                                io,
                                http::StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                                "505 HTTP Version Not Supported: this connection speaks HTTP/1.0 and HTTP/1.1 \
                                 (HTTP/2 over TLS, or h2c with prior knowledge)\n",
                            )
                            .await;
                        }
                        Version::Usual => return handoff(held, io),
                    },
                }
            }
            let idle = held.0.as_ref().is_none_or(|b| b.read.is_empty());
            if idle {
                held.give_back();
                if drain.on() {
                    return close(io).await;
                }
                // The shutdown notice holds this task's waker from its
                // first poll on (the task's waker does not change), so it is
                // polled only then: each poll locks the notice's list.
                let ready = std::future::poll_fn(|cx| {
                    if let Poll::Ready(ready) = io.poll_read_ready(cx) {
                        return Poll::Ready(Some(ready));
                    }
                    let me = WakerId::of(cx);
                    if drain.on()
                        || (drained_by != Some(me) && drained.as_mut().poll(cx).is_ready())
                    {
                        return Poll::Ready(None);
                    }
                    drained_by = Some(me);
                    Poll::Pending
                })
                .await;
                match ready {
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        tracing::debug!(peer = %client.peer, error = %e, "connection read failed");
                        return close(io).await;
                    }
                    None => return close(io).await,
                }
            }
            let b = held.0.get_or_insert_with(stash::take);
            let buf = &mut b.read;
            crate::read_buf::make_room(buf, READ_SIZE);
            // Idle, the socket may still have had nothing to read after all.
            let read = if idle {
                tokio::select! {
                    biased;
                    read = io.read_buf(buf) => Some(read),
                    _ = &mut drained => None,
                }
            } else {
                Some(io.read_buf(buf).await)
            };
            let Some(read) = read else {
                return close(io).await;
            };
            match read {
                Ok(0) if buf.is_empty() => return close(io).await,
                // A head cut short: hyper says what it gets.
                Ok(0) => return handoff(held, io),
                Ok(_) => {}
                // A head cut off by the header timeout over TLS: the socket
                // below TLS cannot answer it (on plain HTTP it did), the lane can.
                Err(e)
                    if e.kind() == std::io::ErrorKind::TimedOut
                        && client.secure
                        && !buf.is_empty() =>
                {
                    if let Some(suppressed) = crate::log_limit::allow() {
                        tracing::warn!(peer = %client.peer, why = "request head not complete within the header timeout (408)", suppressed, "request refused");
                    }
                    return refuse(
                        held,
                        io,
                        http::StatusCode::REQUEST_TIMEOUT,
                        "408 Request Timeout: the request head did not arrive in time\n",
                    )
                    .await;
                }
                // Other timeouts and resets end the connection quietly, as in hyper.
                Err(e) => {
                    tracing::debug!(peer = %client.peer, error = %e, "connection read failed");
                    return close(io).await;
                }
            }
        };
        io.serving();
        let head_request = method == http::Method::HEAD;
        let b = held.0.as_mut().expect("a request was read into them");
        let scratch = &mut b.scratch;
        scratch.request.clear();
        scratch.head.clear();
        let req = request::request(&b.read[..len], &b.fields, method, target);
        let answer = {
            let mut serving = std::pin::pin!(lane.serve(req, client, scratch, &interim));
            std::future::poll_fn(|cx| {
                let answer = serving.as_mut().poll(cx);
                interim.send(&mut io, &mut unsent, cx);
                answer
            })
            .await
        };
        if !unsent.is_empty() {
            // The interim heads go out before the answer.
            let _ = io.write_all(&unsent).await;
            unsent.clear();
        }
        b.read.advance(len);
        let last = drain.on();
        let written = write::answer(&mut io, answer, head_request, last, &mut scratch.head).await;
        io.served();
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

/// hyper takes `io` over, starting with what was read into `held`.
fn handoff<I>(mut held: stash::Lent, io: I) -> Ended<I> {
    let read = held.0.take().map(|b| b.read.freeze()).unwrap_or_default();
    Ended::Handoff(Rewind::new(read, io))
}

/// Answers `status` with `body` and closes: what the lane refuses itself
/// (a version it does not speak, a head that did not arrive in time).
async fn refuse<I: AsyncWrite + Unpin>(
    held: stash::Lent,
    mut io: I,
    status: http::StatusCode,
    body: &'static str,
) -> Ended<I> {
    drop(held);
    let resp = crate::body::text_response(status, body);
    let mut head = Vec::new();
    let answer = Answer::from_response(resp, &mut head);
    let _ = write::answer(&mut io, answer, false, true, &mut head).await;
    close(io).await
}

/// Ends the connection (the socket's lingering close).
async fn close<I: AsyncWrite + Unpin>(mut io: I) -> Ended<I> {
    let _ = io.shutdown().await;
    Ended::Closed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// Answers every request with `ok`.
    #[derive(Clone)]
    struct Fixed;

    impl Lane for Fixed {
        fn open(&mut self, _: bool) -> bool {
            true
        }

        fn serve<'a>(
            &'a mut self,
            _: RawRequest<'a>,
            _: Client,
            scratch: &'a mut Scratch,
            _: &'a Interim,
        ) -> impl Future<Output = Answer> + Send + 'a {
            scratch.head.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            std::future::ready(Answer {
                date: false,
                framing: AnswerFraming::Length(2),
                body: AnswerBody::Whole(bytes::Bytes::from_static(b"ok")),
            })
        }
    }

    async fn exchange<C: AsyncRead + AsyncWrite + Unpin>(client: &mut C) {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\nok") {
            assert_ne!(client.read_buf(&mut got).await.unwrap(), 0, "closed");
        }
    }

    /// Serves one connection on `listener` in the lane (over TLS with
    /// `tls`), on this thread: true when it ended closed.
    fn server(
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> tokio::task::JoinHandle<bool> {
        tokio::spawn(async move {
            let (stream, peer) = listener.accept().await.unwrap();
            let drain = Drain::default();
            let client = Client {
                peer,
                secure: tls.is_some(),
            };
            let ended = match tls {
                None => serve(stream, &mut Fixed, client, &drain).await,
                Some(tls) => {
                    let stream = tls.accept(stream).await.unwrap();
                    match serve(stream, &mut Fixed, client, &drain).await {
                        Ended::Closed => Ended::Closed,
                        Ended::Handoff(_) => return false,
                    }
                }
            };
            matches!(ended, Ended::Closed)
        })
    }

    /// Two requests on `client`, each answered, and the connection's
    /// buffers back in the thread's stash whenever it waits.
    async fn idle_between_requests<C: AsyncRead + AsyncWrite + Unpin>(
        mut client: C,
        server: tokio::task::JoinHandle<bool>,
    ) {
        exchange(&mut client).await;
        assert_eq!(
            stash::kept(),
            1,
            "given back while waiting for the next request"
        );
        exchange(&mut client).await;
        assert_eq!(stash::kept(), 1, "the same set lent again");
        drop(client);
        assert!(server.await.unwrap(), "closed by the client");
        assert_eq!(stash::kept(), 1);
    }

    // One thread: the server task and this one share the thread's stash,
    // and the server runs until it waits again before the client goes on.
    #[tokio::test(flavor = "current_thread")]
    async fn an_idle_keep_alive_connection_holds_no_buffers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = server(listener, None);
        let client = TcpStream::connect(addr).await.unwrap();
        assert_eq!(stash::kept(), 0);
        idle_between_requests(client, server).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_idle_tls_connection_holds_no_buffers_either() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = rustls::pki_types::CertificateDer::from(made.cert.der().to_vec());
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(made.key_pair.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = server(listener, Some(Arc::new(server_config).into()));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let client = tokio_rustls::TlsConnector::from(Arc::new(client_config))
            .connect(name, tcp)
            .await
            .unwrap();
        idle_between_requests(client, server).await;
    }
}
