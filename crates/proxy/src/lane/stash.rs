//! Buffers lent to connections only while they have a request in hand.
//!
//! A keep-alive connection spends most of its life waiting for its next
//! request. Like HAProxy (its buffer pools) and nginx (which frees an idle
//! keep-alive connection's header buffer), the lane gives an idle
//! connection's buffers back -- the read buffer, the field list and the
//! [`Scratch`] -- and takes a set again when the socket has something to
//! read ([`ReadReady`]). An idle connection holds no buffer, and under
//! load the few sets in use are the ones last used on this thread, still in
//! cache, instead of one cold set per connection.
//!
//! Each thread keeps the sets given back, most recent first, up to
//! [`MAX_KEPT`]; a set that grew past [`MAX_KEPT_BYTES`] (a huge head) is
//! freed instead.

use super::{Scratch, READ_SIZE};
use crate::headers::raw::Field;
use bytes::BytesMut;
use std::cell::RefCell;
use std::io;
use std::task::{Context, Poll};

/// Most sets one thread keeps for the next requests.
const MAX_KEPT: usize = 256;
/// A buffer grown past this is not kept.
const MAX_KEPT_BYTES: usize = 64 * 1024;

/// What a connection needs while it reads and serves a request.
#[derive(Debug)]
pub(super) struct Buffers {
    /// Bytes read from the client (empty when given back).
    pub read: BytesMut,
    /// The request head's fields, as [`super::request::parse`] finds them.
    pub fields: Vec<Field>,
    pub scratch: Scratch,
}

thread_local! {
    static KEPT: RefCell<Vec<Buffers>> = const { RefCell::new(Vec::new()) };
}

/// A set of buffers, empty: one this thread kept, or a new one.
pub(super) fn take() -> Buffers {
    // `try_with`: a thread tearing down its locals lends and keeps nothing.
    KEPT.try_with(|kept| kept.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| Buffers {
            read: BytesMut::with_capacity(READ_SIZE),
            fields: Vec::new(),
            scratch: Scratch {
                request: Vec::with_capacity(1024),
                head: Vec::with_capacity(READ_SIZE),
            },
        })
}

/// Gives `buffers` back for another connection; their read buffer must be
/// empty (nothing of the next request is in it).
pub(super) fn give(mut buffers: Buffers) {
    debug_assert!(buffers.read.is_empty());
    let Buffers {
        read,
        fields,
        scratch,
    } = &mut buffers;
    if read.capacity() > MAX_KEPT_BYTES
        || scratch.head.capacity() > MAX_KEPT_BYTES
        || scratch.request.capacity() > MAX_KEPT_BYTES
    {
        return;
    }
    fields.clear();
    scratch.head.clear();
    scratch.request.clear();
    let _ = KEPT.try_with(|kept| {
        let mut kept = kept.borrow_mut();
        if kept.len() < MAX_KEPT {
            kept.push(buffers);
        }
    });
}

/// The set a connection holds, if any; given back when the connection
/// lets it go or ends with nothing of a request in it.
#[derive(Debug, Default)]
pub(super) struct Lent(pub Option<Buffers>);

impl Lent {
    /// Gives the set back, if one is held (its read buffer empty).
    pub fn give_back(&mut self) {
        if let Some(buffers) = self.0.take() {
            give(buffers);
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if self.0.as_ref().is_some_and(|b| b.read.is_empty()) {
            self.give_back();
        }
    }
}

/// How many sets this thread keeps (for tests).
#[cfg(test)]
pub(super) fn kept() -> usize {
    KEPT.with(|kept| kept.borrow().len())
}

/// A connection that can tell when a read would not block without being
/// given a buffer to read into, so it can wait for its next request
/// holding none.
pub trait ReadReady {
    /// Ready when a read would return at once (data, the end, or an
    /// error); Pending otherwise, with `cx`'s waker registered. A stream
    /// that cannot tell is always ready: the lane then waits in the read,
    /// holding its buffers, as it would without this.
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// A request was read and is being served: no client timeout runs
    /// until [`served`](Self::served). (hyper's requests say the same
    /// through the connection's [`Tracker`](crate::idle::Tracker); the lane
    /// tells the socket itself, with no shared counter to touch.)
    fn serving(&mut self) {}

    /// Its response went out: the keep-alive timeout runs from the next wait.
    fn served(&mut self) {}
}

impl ReadReady for tokio::net::TcpStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

/// Over TLS: ready while rustls has something to give without reading
/// (decrypted bytes the socket no longer shows, the peer's close), else
/// when the socket is. rustls keeps its own buffers.
impl<T: ReadReady> ReadReady for tokio_rustls::server::TlsStream<T> {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (io, tls) = self.get_mut();
        if tls.wants_read() {
            io.poll_read_ready(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn serving(&mut self) {
        self.get_mut().0.serving();
    }

    fn served(&mut self) {
        self.get_mut().0.served();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_given_back_is_the_next_taken_cleared_and_a_grown_one_is_freed() {
        let mut set = take();
        set.scratch.head.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        set.scratch.request.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let head_at = set.scratch.head.as_ptr();
        give(set);
        assert_eq!(kept(), 1);
        let again = take();
        assert_eq!(again.scratch.head.as_ptr(), head_at, "the same set");
        assert!(again.scratch.head.is_empty() && again.scratch.request.is_empty());
        assert_eq!(kept(), 0);
        let mut grown = again;
        grown.scratch.head.reserve(MAX_KEPT_BYTES + 1);
        give(grown);
        assert_eq!(kept(), 0, "a set that grew past the limit is freed");
        let many: Vec<Buffers> = (0..MAX_KEPT + 10).map(|_| take()).collect();
        many.into_iter().for_each(give);
        assert_eq!(kept(), MAX_KEPT, "at most this many are kept");
    }
}
