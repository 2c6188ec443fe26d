//! An upstream response body read straight from the upstream connection,
//! inside the task that serves the client: no connection task and no
//! channel in between. When the body ends cleanly on a keep-alive
//! connection, the connection goes back to its pool; a body dropped early
//! closes it.

use crate::pool::Pool;
use crate::wire::Framing;
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::net::TcpStream;

/// A whole body shorter than this is copied out of the connection's buffer
/// rather than shared with it.
const COPY_UNDER: usize = 1024;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Most trailer fields passed on; more are dropped.
const MAX_TRAILERS: usize = 32;
/// Fields that must not come in a trailer (RFC 9110 6.5.1: framing,
/// routing, representation metadata, hop-by-hop); they are dropped.
const NOT_IN_TRAILERS: [&str; 14] = [
    "content-length",
    "transfer-encoding",
    "trailer",
    "te",
    "connection",
    "keep-alive",
    "upgrade",
    "host",
    "content-type",
    "content-encoding",
    "content-range",
    "cache-control",
    "set-cookie",
    "www-authenticate",
];

/// Reads more bytes from `stream` into `buf`; Ok(0) at end of stream.
pub(crate) fn poll_fill(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < 2048 {
        buf.reserve(16 * 1024);
    }
    // `read_buf` holds no state of its own, so a fresh one per poll is fine.
    let read = tokio::io::AsyncReadExt::read_buf(stream, buf);
    tokio::pin!(read);
    read.poll(cx)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    Close,
    Done,
    /// A 101 answer to an upgrade: the connection now carries another protocol.
    Upgraded,
}

/// A connection whose response body is being read.
pub(crate) struct Conn {
    pub stream: TcpStream,
    /// Bytes read past the response head.
    pub buf: BytesMut,
    /// Where the connection goes back when the body ends cleanly.
    pub pool: Arc<Pool>,
    /// Whether the server allows another request on it.
    pub keep_alive: bool,
    /// When its request started.
    pub started: std::time::Instant,
    /// Longest silence from the server in the middle of a body.
    pub idle_timeout: std::time::Duration,
    /// Its response timer, going back to the pool with it.
    pub timer: crate::pool::Timer,
    /// Its request's place in a batch of pipelined requests: the connection
    /// goes on to the next one ([`crate::pipeline`]).
    pub baton: Option<crate::pipeline::Baton>,
}

/// The body of an upstream response.
pub struct UpstreamBody {
    state: State,
    conn: Option<Conn>,
    /// Runs while a read waits (made only then: most bodies arrive with the head).
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Trailer fields of a chunked body, passed on after its data.
    trailers: Option<http::HeaderMap>,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl UpstreamBody {
    /// The body of a 101 answer: empty, and the connection is kept for [`Self::take_upgraded`].
    pub(crate) fn upgraded(conn: Conn) -> Self {
        UpstreamBody {
            state: State::Upgraded,
            conn: Some(conn),
            stall: None,
            trailers: None,
        }
    }

    /// After a 101 Switching Protocols: the upstream connection and any bytes
    /// of the new protocol already read. None for any other response.
    pub fn take_upgraded(&mut self) -> Option<(TcpStream, BytesMut)> {
        if self.state != State::Upgraded {
            return None;
        }
        self.state = State::Done;
        self.conn.take().map(|c| (c.stream, c.buf))
    }

    pub(crate) fn new(framing: Framing, conn: Conn) -> Self {
        let state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        let mut body = UpstreamBody {
            state,
            conn: Some(conn),
            stall: None,
            trailers: None,
        };
        if state == State::Done {
            body.finish();
        }
        body
    }

    /// The whole body, when it has a known length and came with the head
    /// (most small responses; an empty body too): the connection goes back
    /// to its pool at once. None when it is still to be read.
    pub fn take_whole(&mut self) -> Option<Bytes> {
        match self.state {
            State::Done => Some(Bytes::new()),
            State::Length(n) => {
                let conn = self.conn.as_mut()?;
                if (conn.buf.len() as u64) < n {
                    return None;
                }
                // A small body is copied: sharing the buffer costs two
                // locked instructions, more than copying up to 1 KiB.
                let n = n as usize;
                let data = if n < COPY_UNDER {
                    let data = Bytes::copy_from_slice(&conn.buf[..n]);
                    conn.buf.advance(n);
                    data
                } else {
                    conn.buf.split_to(n).freeze()
                };
                self.finish();
                Some(data)
            }
            _ => None,
        }
    }

    /// Reads on until a body of known length up to `limit` bytes is all in
    /// the buffer, for [`take_whole`](Self::take_whole): a pipelined answer
    /// often comes partly in one read and partly in the next, and streaming
    /// it would cost the client a write per part.
    pub(crate) async fn fill(&mut self, limit: usize) -> Result<(), String> {
        let (State::Length(n), Some(conn)) = (self.state, self.conn.as_mut()) else {
            return Ok(());
        };
        if n > limit as u64 {
            return Ok(());
        }
        while (conn.buf.len() as u64) < n {
            let read = std::future::poll_fn(|cx| poll_fill(&mut conn.stream, &mut conn.buf, cx));
            match read.await {
                Ok(0) => return Err("the server closed the connection mid-body".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    /// True when a chunked body's first chunk-size line, already read with
    /// the head, is not one: the server's answer cannot be passed on, and
    /// nothing of it has been yet (a proxy answers 502, as HAProxy does,
    /// rather than a head followed by a cut connection).
    pub fn broken_start(&self) -> bool {
        let Some(conn) = self.conn.as_ref() else {
            return false;
        };
        self.state == State::ChunkSize
            && conn
                .buf
                .windows(2)
                .position(|w| w == b"\r\n")
                .is_some_and(|end| chunk_size(&conn.buf[..end]).is_none())
    }

    /// Gives the connection its response timer back, to keep for the next request.
    pub(crate) fn keep_timer(&mut self, timer: crate::pool::Timer) {
        if let Some(conn) = self.conn.as_mut() {
            conn.timer = timer;
        }
    }

    /// The body is complete: a clean keep-alive connection goes back to its pool.
    fn finish(&mut self) {
        let clean = self.state != State::Close;
        self.state = State::Done;
        let Some(conn) = self.conn.take() else {
            return;
        };
        let Conn {
            stream,
            buf,
            pool,
            keep_alive,
            started,
            timer,
            baton,
            ..
        } = conn;
        match baton {
            Some(baton) if clean && keep_alive => baton.pass((stream, buf, timer), &pool, started),
            // Dropped: the requests after it are sent again.
            Some(_) => {}
            None if clean && keep_alive && buf.is_empty() => pool.put(stream, started, buf, timer),
            None => {}
        }
    }

    fn fail(&mut self, what: &str) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.state = State::Done;
        self.conn = None;
        Poll::Ready(Some(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            what.to_string(),
        ))))
    }
}

/// Takes one CRLF-ended line off `buf`, without its line end.
fn take_line(buf: &mut BytesMut) -> Option<BytesMut> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = buf.split_to(end);
    let _ = buf.split_to(2);
    Some(line)
}

/// One trailer line into `map`, unless it is malformed, not allowed in a
/// trailer, or one too many.
fn add_trailer(map: &mut http::HeaderMap, line: &[u8]) {
    let Some(colon) = line.iter().position(|b| *b == b':') else {
        return;
    };
    let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
    let (Ok(name), Ok(value)) = (
        http::HeaderName::from_bytes(name),
        http::HeaderValue::from_bytes(value),
    ) else {
        return;
    };
    if map.len() < MAX_TRAILERS && !NOT_IN_TRAILERS.contains(&name.as_str()) {
        map.append(name, value);
    }
}

/// A chunk-size line: hex digits, then optional `;extensions`.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|b| *b == b';').next()?.trim_ascii_end();
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            // Data available for the current state?
            match this.state {
                State::Done | State::Upgraded => return Poll::Ready(None),
                State::Length(rem) | State::ChunkData(rem) if !conn.buf.is_empty() => {
                    let n = rem.min(conn.buf.len() as u64);
                    let data = conn.buf.split_to(n as usize).freeze();
                    let left = rem - n;
                    match this.state {
                        State::Length(_) if left == 0 => this.finish(),
                        State::Length(_) => this.state = State::Length(left),
                        _ if left == 0 => this.state = State::ChunkEnd,
                        _ => this.state = State::ChunkData(left),
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Close if !conn.buf.is_empty() => {
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::ChunkSize => {
                    if let Some(line) = take_line(&mut conn.buf) {
                        match chunk_size(&line) {
                            Some(0) => this.state = State::Trailers,
                            Some(n) => this.state = State::ChunkData(n),
                            None => return this.fail("invalid chunk size from upstream"),
                        }
                        continue;
                    }
                }
                State::ChunkEnd if conn.buf.len() >= 2 => {
                    if &conn.buf[..2] != b"\r\n" {
                        return this.fail("chunk data not followed by CRLF");
                    }
                    let _ = conn.buf.split_to(2);
                    this.state = State::ChunkSize;
                    continue;
                }
                State::Trailers => {
                    // Trailer fields, then the empty line that ends the body.
                    if let Some(line) = take_line(&mut conn.buf) {
                        if line.is_empty() {
                            this.finish();
                            let trailers = this.trailers.take().filter(|t| !t.is_empty());
                            return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                        }
                        add_trailer(this.trailers.get_or_insert_with(Default::default), &line);
                        continue;
                    }
                }
                _ => {}
            }
            if matches!(this.state, State::ChunkSize | State::Trailers) && conn.buf.len() > MAX_LINE
            {
                return this.fail("chunk-size or trailer line too long");
            }
            // Need more bytes.
            let conn = this.conn.as_mut().expect("checked above");
            let filled = match poll_fill(&mut conn.stream, &mut conn.buf, cx) {
                Poll::Ready(r) => {
                    this.stall = None;
                    r
                }
                Poll::Pending => {
                    let wait = conn.idle_timeout;
                    let stall = this
                        .stall
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
                    ready!(stall.as_mut().poll(cx));
                    let what = format!("the server sent nothing for {wait:?} mid-body");
                    return this.fail(&what);
                }
            };
            match filled {
                Ok(0) if this.state == State::Close => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail("upstream closed the connection mid-body"),
                Ok(_) => {}
                Err(e) => {
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Upgraded)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done | State::Upgraded => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_keep_end_to_end_fields_only() {
        let mut map = http::HeaderMap::new();
        for line in [
            &b"X-Checksum: abc"[..],
            b"grpc-status:0",
            b"Content-Length: 5",
            b"no colon",
            b"bad name: 1",
        ] {
            add_trailer(&mut map, line);
        }
        assert_eq!(map.len(), 2, "{map:?}");
        assert_eq!(map["x-checksum"], "abc");
        assert_eq!(map["grpc-status"], "0");
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"zz"), None);
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"0;ext=1"), Some(0));
        assert_eq!(chunk_size(b"zz"), None);
        assert_eq!(chunk_size(b""), None);
        assert_eq!(chunk_size(b"-1"), None);
        assert_eq!(chunk_size(b"ffffffffffffffffff"), None);
    }
}
