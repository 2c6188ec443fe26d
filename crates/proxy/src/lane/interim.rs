//! Interim responses (`1xx` but `101`) on their way to the client: a
//! server may send any number before its final response -- `103 Early
//! Hints` so that a browser starts loading a page's styles and scripts
//! while the server still works on the page, `102 Processing`, an
//! unasked-for `100 Continue` -- and a proxy must pass them on (RFC 9110
//! 15.2) unless it asked for them itself.
//!
//! The upstream client ([`crate::client`]) hands each one it reads to the
//! request's [`Interim`] ([`Interim::push`]), rewritten for the client
//! (hop-by-hop fields out, as for the final head); the lane writes what is
//! queued there while it waits for the final response ([`Interim::send`])
//! and before it writes that. Only the lane passes them on: hyper's server
//! (the general path, HTTP/2) has no way to send them, so there they are
//! dropped, as before.

use crate::wire::RawHead;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// Most bytes of interim heads kept for a client that does not read them:
/// further ones are dropped (they are only hints).
const MAX_QUEUED: usize = 64 * 1024;

/// The interim heads of one request not yet handed to the lane.
#[derive(Debug, Default)]
pub struct Interim {
    /// Something is queued: looked at without the lock.
    queued: AtomicBool,
    heads: Mutex<Vec<u8>>,
}

impl Interim {
    /// Queues `head` (an interim response as the server sent it) for the client.
    pub(crate) fn push(&self, head: &RawHead) {
        let mut heads = self.heads.lock().expect("interim heads");
        if heads.len() + head.bytes.len() <= MAX_QUEUED {
            crate::headers::raw::interim_head(head, &mut heads);
            self.queued.store(true, Ordering::Release);
        }
    }

    /// Moves what is queued to the end of `out`.
    fn take(&self, out: &mut Vec<u8>) {
        if self.queued.swap(false, Ordering::Acquire) {
            out.append(&mut self.heads.lock().expect("interim heads"));
        }
    }

    /// Writes what is queued (and what an earlier call left in `unsent`)
    /// to `io` as far as it takes it now; what it does not take stays in
    /// `unsent`. A write that fails empties it: the final answer's write
    /// meets the same error. With nothing to write (nearly always) it costs
    /// one load.
    pub(super) fn send<I: AsyncWrite + Unpin>(
        &self,
        io: &mut I,
        unsent: &mut Vec<u8>,
        cx: &mut Context<'_>,
    ) {
        if unsent.is_empty() && !self.queued.load(Ordering::Relaxed) {
            return;
        }
        self.take(unsent);
        while !unsent.is_empty() {
            match Pin::new(&mut *io).poll_write(cx, unsent) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    unsent.drain(..n);
                }
                Poll::Ready(_) => unsent.clear(),
                Poll::Pending => return,
            }
        }
        // Over TLS: the records out of rustls's buffer too.
        if let Poll::Ready(Err(_)) = Pin::new(io).poll_flush(cx) {
            unsent.clear();
        }
    }
}
