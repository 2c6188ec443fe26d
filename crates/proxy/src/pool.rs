//! Idle keep-alive connections to one upstream, most recently used first.
//!
//! A connection is handed out only if it is younger than the idle timeout and
//! the server has not closed it meanwhile (the reactor already knows: a closed
//! or chatty idle socket is readable, a healthy one is not), so a request is
//! rarely written into a connection the server just gave up. Each keeps its
//! read buffer, so a request on a pooled connection allocates none.

use bytes::BytesMut;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Most idle connections kept per upstream.
const MAX_IDLE: usize = 256;
/// A read buffer that grew past this (a huge response head) is not kept with
/// its idle connection: the next request starts with a fresh one.
const MAX_KEPT_BUF: usize = 64 * 1024;

/// A connection's response timer, kept with it from one request to the
/// next: arming a new one takes the timer wheel's lock twice (in and out),
/// and a kept one is moved only when it fires early (`client::until`).
pub(crate) type Timer = Option<crate::timer::Timer>;

/// An idle connection: the socket, when its last request started, its read
/// buffer (empty) and its timer.
type Idle = (TcpStream, Instant, BytesMut, Timer);

/// The idle connections to one upstream.
pub(crate) struct Pool {
    idle: Mutex<Vec<Idle>>,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
            idle_timeout,
        }
    }

    /// The most recently used live idle connection, if any, as of `now`,
    /// with its (empty) read buffer and its timer.
    pub fn take(&self, now: Instant) -> Option<(TcpStream, BytesMut, Timer)> {
        loop {
            let (stream, since, buf, timer) = self.idle.lock().expect("pool lock").pop()?;
            if now.saturating_duration_since(since) < self.idle_timeout && still_open(&stream) {
                return Some((stream, buf, timer));
            }
        }
    }

    /// Keeps `stream` for the next request; `since` is when its last request
    /// started (a little before it went idle, so idle time is never
    /// underestimated); `buf` is its read buffer, empty.
    pub fn put(&self, stream: TcpStream, since: Instant, mut buf: BytesMut, timer: Timer) {
        if buf.capacity() > MAX_KEPT_BUF {
            buf = BytesMut::new();
        }
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < MAX_IDLE {
            idle.push((stream, since, buf, timer));
        }
    }
}

/// True when an idle connection has nothing to read: no close, no stray
/// bytes. The reactor's readiness is read without registering a waker
/// (`try_io` calls its closure only when the socket is marked readable):
/// registering one takes the socket's waiter lock and replaces the task's
/// waker, which the exchange then puts back.
fn still_open(stream: &TcpStream) -> bool {
    match stream.try_io(Interest::READABLE, || Ok(())) {
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        // Marked readable, which may be stale: look.
        Ok(()) => {
            let mut byte = [0u8; 1];
            matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_connection_keeps_its_buffer_unless_it_grew_huge() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::new(Duration::from_secs(60));
        let mut held = Vec::new();
        for size in [8 * 1024, 1024 * 1024] {
            let stream = TcpStream::connect(addr).await.unwrap();
            held.push(listener.accept().await.unwrap().0);
            pool.put(stream, Instant::now(), BytesMut::with_capacity(size), None);
            let (_, buf, _) = pool.take(Instant::now()).expect("the connection is live");
            if size <= MAX_KEPT_BUF {
                assert!(buf.capacity() >= size, "kept");
            } else {
                assert_eq!(buf.capacity(), 0, "dropped");
            }
        }
    }
}
