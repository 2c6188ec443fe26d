//! Client-side timeouts of one connection, enforced on its socket: the idle
//! keep-alive timeout (from the end of a response to the first byte of the
//! next request), the header timeout (from that first byte, or from the
//! accept, to the whole head having been read), and the send timeout (a
//! client that takes none of its response for that long is dropped, so it
//! cannot hold a server's slot; tunnels are exempt).
//!
//! Closing is a lingering close, like nginx's: the write side is shut
//! (the client sees the end of the response), then whatever the client is
//! still sending -- typically the rest of a body we refused with a 413 or
//! 408 -- is read and dropped until it closes its side, goes quiet for
//! [`LINGER_TIMEOUT`] or [`LINGER_TIME`] is over (a connection closed for
//! one of the timeouts above does not linger). Closing with unread bytes
//! would make the kernel reset the connection, and a client that is still
//! writing would lose the response it has not read yet.
//!
//! hyper's requests are marked started and finished on a [`Tracker`] shared
//! with the connection's [`TimedIo`] (the fast lane, which owns the socket,
//! tells it directly: [`ReadReady::serving`]); while a request is in
//! progress neither timeout runs. When a deadline passes during a read, the read fails with
//! `TimedOut` and hyper closes the connection. Deadlines are only computed
//! and timers only armed when a read would block, so a busy keep-alive
//! connection costs one clock read per request; a timer already armed for
//! an earlier instant is left there and moved on only if it fires first.

use crate::lane::ReadReady;
use crate::timer::Timer;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Longest silence from a client while its connection is being closed.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a closing connection waits for the client to stop sending.
pub const LINGER_TIME: Duration = Duration::from_secs(10);

/// Requests started and finished on one connection.
#[derive(Debug, Default)]
pub struct Tracker {
    started: AtomicU64,
    finished: AtomicU64,
    tunnel: AtomicBool,
}

impl Tracker {
    /// A request's head has been read and handed to the service.
    pub fn start(&self) {
        self.started.fetch_add(1, Ordering::AcqRel);
    }

    /// The connection became a tunnel (101): busy until it closes, and only
    /// the tunnel's own idle timeout applies.
    pub fn tunnel(&self) {
        self.tunnel.store(true, Ordering::Release);
        self.start();
    }

    /// A request's response has been produced in full (its body dropped).
    pub fn finish(&self) {
        self.finished.fetch_add(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request.
    Waiting,
    /// Reading a request head.
    Head,
    /// A request is in progress.
    Busy,
}

/// A connection's socket with the client-side timeouts.
pub struct TimedIo<T> {
    inner: T,
    tracker: Arc<Tracker>,
    header_timeout: Duration,
    keep_alive_timeout: Duration,
    phase: Phase,
    /// `finished` when the phase was last worked out.
    seen_finished: u64,
    /// The phase's timeout, turned into a deadline only when a read would
    /// block (most heads arrive whole: no clock read for them).
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    timer: Timer,
    send_timeout: Option<Duration>,
    /// Runs while a write is blocked (made only then).
    send_stall: Option<Pin<Box<Sleep>>>,
    /// Closing: the write side is shut; the lingering close ends by then.
    closing: Option<Instant>,
    /// A timeout closed the connection: no lingering.
    timed_out: bool,
    /// Bytes of the request head in progress have arrived (a header timeout then gets a 408).
    head_begun: bool,
    /// Plain HTTP: this layer may answer a 408 itself (under TLS it may not);
    /// the client's address, for the log.
    answers_408: Option<std::net::SocketAddr>,
}

/// What a client whose request head never completed gets before the close
/// (HAProxy's and Apache's answer to `timeout http-request`).
const HEAD_TIMEOUT_ANSWER: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\n\
Content-Length: 62\r\nConnection: close\r\n\r\n408 Request Timeout: the request head did not arrive in time\r\n";

impl<T> TimedIo<T> {
    /// Wraps a just-accepted socket: the first request's head must arrive within `header_timeout`.
    pub fn new(
        inner: T,
        tracker: Arc<Tracker>,
        header_timeout: Duration,
        keep_alive_timeout: Duration,
    ) -> Self {
        let deadline = Instant::now() + header_timeout;
        TimedIo {
            inner,
            tracker,
            header_timeout,
            keep_alive_timeout,
            phase: Phase::Head,
            seen_finished: 0,
            timeout: None,
            deadline: Some(deadline),
            timer: Timer::at(deadline),
            send_timeout: None,
            send_stall: None,
            closing: None,
            timed_out: false,
            head_begun: false,
            answers_408: None,
        }
    }

    /// Plain HTTP from `peer`: a head cut off by the header timeout gets a
    /// `408` before the close (logged, rate-limited).
    pub fn with_timeout_answers(mut self, peer: std::net::SocketAddr) -> Self {
        self.answers_408 = Some(peer);
        self
    }

    /// Drops the connection when a write stays blocked for `timeout`.
    pub fn with_send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = Some(timeout);
        self
    }

    /// The error a timeout ends the connection with; it will not linger.
    fn timed_out(&mut self, what: &'static str) -> io::Error {
        self.timed_out = true;
        io::Error::new(io::ErrorKind::TimedOut, what)
    }

    /// A write's result, failed if the client has taken nothing for the send timeout.
    fn stalled<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if result.is_ready() {
            self.send_stall = None;
            return result;
        }
        let Some(timeout) = self.send_timeout else {
            return result;
        };
        if self.tracker.tunnel.load(Ordering::Acquire) {
            return result;
        }
        let stall = self
            .send_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(
                self.timed_out("send timeout: the client took none of its response")
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    /// After a write: a response that just ended starts the keep-alive
    /// timer now, registered with the connection's task, since hyper may
    /// already be parked in a read that started while the request was busy.
    fn arm_after_write(&mut self, cx: &mut Context<'_>) {
        self.update_phase();
        // A deadline already past is reported by the next read.
        let _ = self.poll_deadline(cx);
    }

    /// Turns the phase's timeout into a deadline, arms the timer for it and
    /// polls it: Ready once it passed, Pending while it has not (or there is none).
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(timeout) = self.timeout.take() {
            self.deadline = Some(Instant::now() + timeout);
        }
        let Some(deadline) = self.deadline else {
            return Poll::Pending;
        };
        // A timer armed for an earlier instant is left there and moved on
        // when it fires before the deadline.
        self.timer.poll_until(cx, deadline)
    }

    fn update_phase(&mut self) {
        let started = self.tracker.started.load(Ordering::Acquire);
        let finished = self.tracker.finished.load(Ordering::Acquire);
        if started != finished {
            self.phase = Phase::Busy;
            self.head_begun = false;
            self.timeout = None;
            self.deadline = None;
        } else if finished != self.seen_finished {
            self.seen_finished = finished;
            self.head_begun = false;
            self.phase = Phase::Waiting;
            self.timeout = Some(self.keep_alive_timeout);
            self.deadline = None;
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.update_phase();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got = buf.filled().len() > before;
                if this.phase == Phase::Waiting && got {
                    this.phase = Phase::Head;
                    this.timeout = Some(this.header_timeout);
                    this.deadline = None;
                }
                this.head_begun |= got && this.phase == Phase::Head;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let timed_out = this.poll_phase_deadline(cx);
                if timed_out.is_ready() && this.phase == Phase::Head && this.head_begun {
                    this.answer_head_timeout(cx);
                }
                timed_out
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> TimedIo<T> {
    /// A request head started and did not finish in time: on plain HTTP the
    /// client is told so (best effort: the socket's buffer takes it or not).
    fn answer_head_timeout(&mut self, cx: &mut Context<'_>) {
        let Some(peer) = self.answers_408 else {
            return;
        };
        let _ = Pin::new(&mut self.inner).poll_write(cx, HEAD_TIMEOUT_ANSWER);
        if let Some(suppressed) = crate::log_limit::allow() {
            tracing::warn!(%peer, why = "request head not complete within the header timeout (408)", suppressed, "request refused");
        }
    }
}

/// Waiting for a request without a buffer ([`crate::lane`]): the same
/// timeouts as a read.
impl<T: ReadReady> ReadReady for TimedIo<T> {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.update_phase();
        match self.inner.poll_read_ready(cx) {
            Poll::Pending => self.poll_phase_deadline(cx),
            ready => ready,
        }
    }

    fn serving(&mut self) {
        self.phase = Phase::Busy;
        self.head_begun = false;
        self.timeout = None;
        self.deadline = None;
    }

    fn served(&mut self) {
        self.phase = Phase::Waiting;
        self.timeout = Some(self.keep_alive_timeout);
        self.deadline = None;
    }
}

impl<T> TimedIo<T> {
    /// For a read that would block: the phase's timeout as an error once it passed.
    fn poll_phase_deadline<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        std::task::ready!(self.poll_deadline(cx));
        let what = match self.phase {
            Phase::Waiting => "idle keep-alive timeout",
            _ => "request header timeout",
        };
        Poll::Ready(Err(self.timed_out(what)))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> TimedIo<T> {
    /// The lingering part of a close (see the module docs): Ready when done.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut scratch = [0u8; 8192];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {
                    // More is coming: wait for it a while longer.
                    self.deadline = None;
                }
                Poll::Pending => {
                    let end = self.closing.expect("lingering only while closing");
                    if self.deadline.is_none() {
                        self.deadline = Some(end.min(Instant::now() + LINGER_TIMEOUT));
                    }
                    return self.poll_deadline(cx);
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.stalled(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.stalled(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if flushed.is_ready() {
            this.arm_after_write(cx);
        }
        this.stalled(cx, flushed)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closing.is_none() {
            match Pin::new(&mut this.inner).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            this.closing = Some(Instant::now() + LINGER_TIME);
            this.timeout = None;
            this.deadline = None;
        }
        if this.timed_out {
            return Poll::Ready(Ok(()));
        }
        this.poll_linger(cx).map(Ok)
    }
}

/// A response body that marks its request finished when it is dropped.
pub struct Finishing<B> {
    inner: B,
    tracker: Arc<Tracker>,
}

impl<B> Finishing<B> {
    /// Wraps `inner`; `tracker` hears when it is done.
    pub fn new(inner: B, tracker: Arc<Tracker>) -> Self {
        Finishing { inner, tracker }
    }
}

impl<B> Drop for Finishing<B> {
    fn drop(&mut self) {
        self.tracker.finish();
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Finishing<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
