//! Idle keep-alive connections to one upstream, most recently used first.
//!
//! A connection is handed out only if it is younger than the idle timeout and
//! the server has not closed it meanwhile (the reactor already knows: a closed
//! or chatty idle socket is readable, a healthy one is not), so a request is
//! rarely written into a connection the server just gave up. Each keeps its
//! read buffer, so a request on a pooled connection allocates none.
//!
//! While any connection is idle, a sweeper task closes those past the idle
//! timeout and those the server closed, twice per idle timeout (so an idle
//! connection lives at most one and a half times that long): when traffic
//! stops, the servers are not left holding connections nobody will use,
//! and closed ones do not linger here half-closed. It ends when the pool is
//! empty and starts again with the next connection kept.

use crate::pipeline::Batch;
use bytes::BytesMut;
use std::sync::{Arc, Mutex, Weak};
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
/// and a kept one is moved only when it fires early (`Timer::poll_until`).
pub(crate) type Timer = Option<crate::timer::Timer>;

/// An idle connection: the socket, when its last request started, its read
/// buffer (empty) and its timer.
type Idle = (TcpStream, Instant, BytesMut, Timer);

/// The idle connections to one upstream.
pub(crate) struct Pool {
    idle: Mutex<Kept>,
    idle_timeout: Duration,
}

/// The idle connections, most recently used last, whether a sweeper runs,
/// and the batch of pipelined requests still taking more ([`crate::pipeline`]).
#[derive(Default)]
struct Kept {
    conns: Vec<Idle>,
    swept: bool,
    open: Option<Arc<Batch>>,
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Self {
        Pool {
            idle: Mutex::new(Kept::default()),
            idle_timeout,
        }
    }

    /// Idle connections kept now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle.lock().expect("pool lock").conns.len()
    }

    /// The most recently used live idle connection, if any, as of `now`,
    /// with its (empty) read buffer and its timer.
    pub fn take(&self, now: Instant) -> Option<(TcpStream, BytesMut, Timer)> {
        loop {
            let (stream, since, buf, timer) = self.idle.lock().expect("pool lock").conns.pop()?;
            if self.usable(since, &stream, now) {
                return Some((stream, buf, timer));
            }
        }
    }

    /// Adds a request head to the open batch of pipelined requests, or
    /// opens one (slot 0, whose request writes the batch): its batch and slot.
    pub fn join(&self, head: &[u8]) -> (Arc<Batch>, usize) {
        let mut idle = self.idle.lock().expect("pool lock");
        if let Some(batch) = &idle.open {
            if let Some(slot) = batch.join(head) {
                return (batch.clone(), slot);
            }
        }
        let batch = Batch::open(head);
        idle.open = Some(batch.clone());
        (batch, 0)
    }

    /// Closes `batch` to more requests: the bytes of all of them.
    pub fn close(&self, batch: &Arc<Batch>) -> Vec<u8> {
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.open.as_ref().is_some_and(|b| Arc::ptr_eq(b, batch)) {
            idle.open = None;
        }
        drop(idle);
        batch.close()
    }

    /// Keeps `stream` for the next request; `since` is when its last request
    /// started (a little before it went idle, so idle time is never
    /// underestimated); `buf` is its read buffer, empty.
    #[inline]
    pub fn put(
        self: &Arc<Self>,
        stream: TcpStream,
        since: Instant,
        mut buf: BytesMut,
        timer: Timer,
    ) {
        if buf.capacity() > MAX_KEPT_BUF {
            buf = BytesMut::new();
        }
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.conns.len() < MAX_IDLE {
            idle.conns.push((stream, since, buf, timer));
            if !idle.swept {
                idle.swept = self.start_sweeping();
            }
        }
    }

    /// Starts the sweeper; false outside a runtime (nothing to run it:
    /// connections are still checked when taken). Out of line, so `put`
    /// stays small enough to inline into the request path.
    #[cold]
    #[inline(never)]
    fn start_sweeping(self: &Arc<Self>) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        runtime.spawn(sweep(Arc::downgrade(self), self.idle_timeout / 2));
        true
    }

    /// Young enough and not closed by the server.
    #[inline]
    fn usable(&self, since: Instant, stream: &TcpStream, now: Instant) -> bool {
        now.saturating_duration_since(since) < self.idle_timeout && still_open(stream)
    }
}

/// Closes `pool`'s stale idle connections every `every` while it has any
/// (and while it exists).
async fn sweep(pool: Weak<Pool>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut idle = pool.idle.lock().expect("pool lock");
        let (kept, stale): (Vec<Idle>, Vec<Idle>) = std::mem::take(&mut idle.conns)
            .into_iter()
            .partition(|(stream, since, _, _)| pool.usable(*since, stream, now));
        idle.conns = kept;
        let done = idle.conns.is_empty();
        idle.swept = !done;
        drop(idle);
        // Closed outside the lock: requests take and put meanwhile.
        drop(stale);
        if done {
            return;
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
        let pool = Arc::new(Pool::new(Duration::from_secs(60)));
        let mut held = Vec::new();
        for size in [8 * 1024, 1024 * 1024] {
            let (stream, server) = pair(&listener).await;
            held.push(server);
            pool.put(stream, Instant::now(), BytesMut::with_capacity(size), None);
            let (_, buf, _) = pool.take(Instant::now()).expect("the connection is live");
            if size <= MAX_KEPT_BUF {
                assert!(buf.capacity() >= size, "kept");
            } else {
                assert_eq!(buf.capacity(), 0, "dropped");
            }
        }
    }

    /// A connection to `listener`: the client's end and the server's.
    async fn pair(listener: &tokio::net::TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, server) = tokio::join!(client, listener.accept());
        (client.unwrap(), server.unwrap().0)
    }

    /// Reads from `server` until the connection ends, at most 5 s.
    async fn closed(server: &mut TcpStream) -> bool {
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), server.read(&mut byte));
        matches!(read.await, Ok(Ok(0)))
    }

    #[tokio::test]
    async fn idle_connections_are_closed_once_past_the_timeout_with_no_traffic() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Arc::new(Pool::new(Duration::from_millis(100)));
        let mut servers = Vec::new();
        for _ in 0..3 {
            let (stream, server) = pair(&listener).await;
            servers.push(server);
            pool.put(stream, Instant::now(), BytesMut::new(), None);
        }
        assert_eq!(pool.len(), 3);
        for server in &mut servers {
            assert!(
                closed(server).await,
                "the server sees the connection closed"
            );
        }
        assert_eq!(pool.len(), 0);
        // The sweeper ended with the pool empty; the next connection kept
        // starts it again.
        let (stream, mut server) = pair(&listener).await;
        pool.put(stream, Instant::now(), BytesMut::new(), None);
        assert!(closed(&mut server).await, "swept again");
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_swept_before_its_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // Swept every 2.5 s: the first sweep finds `live` young, `doomed` closed.
        let pool = Arc::new(Pool::new(Duration::from_secs(5)));
        let started = Instant::now();
        let (live, _live_server) = pair(&listener).await;
        let live_addr = live.local_addr().unwrap();
        pool.put(live, Instant::now(), BytesMut::new(), None);
        let (doomed, doomed_server) = pair(&listener).await;
        drop(doomed_server);
        pool.put(doomed, Instant::now(), BytesMut::new(), None);
        while pool.len() == 2 {
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "the closed one is still kept"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (kept, _, _) = pool.take(Instant::now()).expect("the live one is kept");
        assert_eq!(kept.local_addr().unwrap(), live_addr);
    }
}
