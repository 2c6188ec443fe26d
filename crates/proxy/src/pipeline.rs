//! HTTP/1.1 pipelining to an upstream: the bodiless `GET`s and `HEAD`s that
//! arrive together, from any clients, share one connection and one write.
//!
//! The first request for a server opens a [`Batch`] and lets the rest of the
//! event-loop turn run; requests for the same server meanwhile join it (up
//! to [`MAX_SLOTS`] requests, [`MAX_BYTES`] of heads), and the first then
//! writes them all at once. The server answers in order (RFC 9112 9.3.2),
//! so the connection is read by one request at a time, in order: each reads
//! its own response head and body as it would on a connection of its own
//! and then hands the connection, with any bytes of the next responses
//! already read, to the next ([`Baton`]); the last puts it back in the pool.
//! Under load one system call then carries many requests each way between
//! the proxy and a server, where each request would take two.
//!
//! A request never waits behind an older one: a batch closes before it is
//! written, so only requests that arrived together share it (a slow answer
//! delays those, the price of sharing). When the connection fails or closes
//! before a request's answer began, or an earlier request gave up on its
//! turn, that request is sent again on a connection of its own
//! ([`Failure::Stale`](crate::client::Failure)): only `GET` and `HEAD`
//! without a body are pipelined, and both may be repeated.

use crate::client::{read_raw_head, Failure, Head, Outgoing, ProxyError, Upstream, UpstreamClient};
use crate::pool::Pool;
use crate::upstream_body::UpstreamBody;
use crate::wire::RawHead;
use bytes::BytesMut;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Most requests in one batch.
pub(crate) const MAX_SLOTS: usize = 32;
/// Most bytes of request heads in one batch.
pub(crate) const MAX_BYTES: usize = 32 * 1024;

/// Room for the answers to a batch, asked for per read: a batch's answers
/// come in one read rather than a few per read.
const READ_BUF: usize = 32 * 1024;

/// A connection between two requests of a batch: the socket, bytes read
/// past the last response, its timer.
pub(crate) type Held = (TcpStream, BytesMut, crate::pool::Timer);

/// Requests sharing one connection to one server.
#[derive(Default)]
pub(crate) struct Batch {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Still taking requests (not written yet).
    open: bool,
    /// The heads of the requests, in order.
    out: Vec<u8>,
    /// How many requests it holds.
    slots: usize,
    /// Whose turn it is to read its response.
    turn: usize,
    /// The connection, while it waits for `turn`'s request to take it.
    conn: Option<Held>,
    /// The connection is gone: the requests after `turn` are sent again alone.
    broken: bool,
    /// Each waiting request's waker, by slot.
    wakers: Vec<Option<Waker>>,
}

impl Batch {
    /// A new open batch holding `head` as its first request.
    pub(crate) fn open(head: &[u8]) -> Arc<Batch> {
        let mut out = Vec::with_capacity(head.len() * 4);
        out.extend_from_slice(head);
        Arc::new(Batch {
            inner: Mutex::new(Inner {
                open: true,
                out,
                slots: 1,
                ..Inner::default()
            }),
        })
    }

    /// Adds `head` if the batch is still open and has room: its slot.
    pub(crate) fn join(&self, head: &[u8]) -> Option<usize> {
        let mut inner = self.lock();
        let full = inner.slots >= MAX_SLOTS || inner.out.len() + head.len() > MAX_BYTES;
        // Broken before it was written: its first request gave up.
        if !inner.open || inner.broken || full {
            return None;
        }
        inner.out.extend_from_slice(head);
        inner.slots += 1;
        Some(inner.slots - 1)
    }

    /// Takes no more requests: the bytes to write.
    pub(crate) fn close(&self) -> Vec<u8> {
        let mut inner = self.lock();
        inner.open = false;
        std::mem::take(&mut inner.out)
    }

    /// Requests in the batch (all of them once it is closed).
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.lock().slots
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("batch lock")
    }

    /// The connection, for `slot` on its turn; None when it broke first.
    pub(crate) async fn turn(&self, slot: usize) -> Option<Held> {
        std::future::poll_fn(|cx| {
            let mut inner = self.lock();
            if inner.broken {
                return Poll::Ready(None);
            }
            if inner.turn == slot {
                if let Some(held) = inner.conn.take() {
                    return Poll::Ready(Some(held));
                }
            }
            if inner.wakers.len() <= slot {
                inner.wakers.resize(slot + 1, None);
            }
            let waker = &mut inner.wakers[slot];
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// `slot` is done with the connection, which can carry more: the next
    /// request's turn, or back to `pool` after the last (if nothing is left
    /// unread in it).
    fn pass(&self, slot: usize, held: Held, pool: &Arc<Pool>, since: std::time::Instant) {
        let mut inner = self.lock();
        debug_assert_eq!(inner.turn, slot);
        inner.turn = slot + 1;
        if inner.broken {
            return;
        }
        if inner.turn < inner.slots {
            inner.conn = Some(held);
            let next = inner.turn;
            if let Some(waker) = inner.wakers.get_mut(next).and_then(Option::take) {
                drop(inner);
                waker.wake();
            }
            return;
        }
        drop(inner);
        let (stream, buf, timer) = held;
        if buf.is_empty() {
            pool.put(stream, since, buf, timer);
        }
    }

    /// `slot` gave up (or its connection failed or will close): if its turn
    /// has not passed, the requests still waiting are each sent again on a
    /// connection of their own.
    fn abandon(&self, slot: usize) {
        let mut inner = self.lock();
        if inner.turn > slot || inner.broken {
            return;
        }
        inner.broken = true;
        inner.conn = None;
        let wakers = std::mem::take(&mut inner.wakers);
        drop(inner);
        wakers.into_iter().flatten().for_each(Waker::wake);
    }
}

/// One request's place in a batch. Dropped before its connection is passed
/// on ([`Baton::pass`]) -- the request gave up waiting, its response failed,
/// the server will close -- it breaks the batch for the requests after it.
pub(crate) struct Baton {
    batch: Arc<Batch>,
    slot: usize,
    passed: bool,
}

impl Baton {
    pub(crate) fn new(batch: Arc<Batch>, slot: usize) -> Self {
        Baton {
            batch,
            slot,
            passed: false,
        }
    }

    pub(crate) fn batch(&self) -> &Arc<Batch> {
        &self.batch
    }

    /// The response was read whole and the connection can carry more.
    pub(crate) fn pass(mut self, held: Held, pool: &Arc<Pool>, since: std::time::Instant) {
        self.batch.pass(self.slot, held, pool, since);
        self.passed = true;
    }
}

impl Drop for Baton {
    fn drop(&mut self) {
        if !self.passed {
            self.batch.abandon(self.slot);
        }
    }
}

/// Sends `out` in a batch of pipelined requests (see the module) and
/// reads its response head on its turn. `Ok(Err(Failure::Stale))`: the
/// connection failed or closed before the response began (or a request
/// before it gave up): the caller sends it again on a connection of its own.
pub(crate) async fn send(
    client: &UpstreamClient,
    upstream: &Upstream,
    out: &Outgoing<'_>,
    now: std::time::Instant,
) -> Result<Result<(RawHead, UpstreamBody), Failure>, ProxyError> {
    let pool = out.pool;
    let (batch, slot) = pool.join(out.head);
    let baton = Baton::new(batch, slot);
    let (stream, mut buf) = if slot == 0 {
        let (mut stream, buf) = match pool.take(now) {
            Some((stream, buf, _)) => (stream, buf),
            None => (
                client.connect(upstream).await?,
                BytesMut::with_capacity(READ_BUF),
            ),
        };
        // The rest of this turn runs first: its requests for this
        // server join the batch.
        tokio::task::yield_now().await;
        let bytes = pool.close(baton.batch());
        if stream.write_all(&bytes).await.is_err() {
            return Ok(Err(Failure::Stale));
        }
        (stream, buf)
    } else {
        match baton.batch().turn(slot).await {
            Some((stream, buf, _)) => (stream, buf),
            None => return Ok(Err(Failure::Stale)),
        }
    };
    let head = Head {
        method: out.method,
        upgrade: false,
        idle_timeout: out.idle_timeout,
        pool,
        started: out.started,
        keep_alive: true,
        interim: out.interim,
    };
    crate::read_buf::make_room(&mut buf, READ_BUF);
    let read = read_raw_head(stream, buf, &head, |_| Failure::Stale, Some(baton)).await;
    Ok(match read {
        Ok((head, mut body)) => match body.fill(READ_BUF).await {
            Ok(()) => Ok((head, body)),
            Err(e) => Err(Failure::Failed(e)),
        },
        Err(e) => Err(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_requests_until_closed_or_full() {
        let batch = Batch::open(b"GET /0 HTTP/1.1\r\n\r\n");
        assert_eq!(batch.join(b"GET /1 HTTP/1.1\r\n\r\n"), Some(1));
        assert_eq!(
            batch.close(),
            b"GET /0 HTTP/1.1\r\n\r\nGET /1 HTTP/1.1\r\n\r\n"
        );
        assert_eq!(batch.join(b"GET /2 HTTP/1.1\r\n\r\n"), None, "closed");
        let full = Batch::open(b"x");
        for slot in 1..MAX_SLOTS {
            assert_eq!(full.join(b"x"), Some(slot));
        }
        assert_eq!(full.join(b"x"), None, "full");
        assert_eq!(full.slots(), MAX_SLOTS);
        let big = Batch::open(&[b'x'; MAX_BYTES - 10]);
        assert_eq!(big.join(&[b'x'; 11]), None, "too many bytes");
    }

    #[tokio::test]
    async fn a_request_that_gives_up_breaks_the_batch_for_those_after_it() {
        let batch = Batch::open(b"a");
        batch.join(b"b");
        batch.join(b"c");
        batch.close();
        let first = Baton::new(batch.clone(), 0);
        let waiting = tokio::spawn({
            let batch = batch.clone();
            async move { batch.turn(2).await.is_none() }
        });
        drop(first);
        assert!(waiting.await.unwrap(), "the third sees the batch broken");
        assert!(batch.turn(1).await.is_none());
    }

    #[test]
    fn a_batch_whose_first_request_gave_up_before_writing_it_takes_no_more() {
        let batch = Batch::open(b"a");
        drop(Baton::new(batch.clone(), 0));
        assert_eq!(batch.join(b"b"), None);
    }
}
