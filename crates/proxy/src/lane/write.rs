//! Writing an [`Answer`] on a client connection: the head with its framing
//! (and a `Date` when the head has none, as hyper adds), then the body --
//! as it is for a known length, chunked otherwise -- gathered into few
//! writes: a small response goes out in one, a whole body of 1 KiB or more
//! with its head in one vectored write (not copied behind it: on a 4 KiB
//! response that copy was an eighth of the load balancer's user time), and
//! a body that has nothing ready is never held back. Trailers are not sent: a plain request never
//! says `TE: trailers`.

use crate::body::ResBody;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Bytes gathered before they are written, while the body has more ready.
const WRITE_AT: usize = 64 * 1024;
/// Larger body frames are written from where they are instead of copied.
const COPY_AT: usize = 16 * 1024;
/// A whole body this large goes out with its head in one vectored write
/// instead of being copied after it (a copy costs more than the second
/// piece of a `writev`).
const GATHER_AT: usize = 1024;

/// A response to a plain request (its head is in the connection's
/// [`Scratch`](super::Scratch)).
pub struct Answer {
    /// Add a `Date` field (the head has none).
    pub date: bool,
    /// How the body is delimited.
    pub framing: AnswerFraming,
    /// The body (for a `HEAD` request it is not sent).
    pub body: AnswerBody,
}

/// An [`Answer`]'s body.
pub enum AnswerBody {
    /// All of it, at hand.
    Whole(Bytes),
    /// Read as it is written.
    Stream(ResBody),
}

/// How an [`Answer`]'s body is delimited on the client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerFraming {
    /// The head says all there is to say: no body follows (`HEAD`, 204,
    /// 304, or a `Content-Length: 0` already in the head).
    None,
    /// `Content-Length` of this many bytes.
    Length(u64),
    /// Chunked: the length is not known in advance.
    Chunked,
}

impl Answer {
    /// The status line for `status`, as hyper writes it.
    pub fn status_line(status: StatusCode, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// An answer for a response built the general way (errors, refusals),
    /// its head written into `head`.
    pub fn from_response(resp: Response<ResBody>, head: &mut Vec<u8>) -> Answer {
        let (parts, body) = resp.into_parts();
        Answer::status_line(parts.status, head);
        for (name, value) in &parts.headers {
            if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
                continue;
            }
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        let framing = match body.size_hint().exact() {
            _ if parts.status == StatusCode::NO_CONTENT
                || parts.status == StatusCode::NOT_MODIFIED =>
            {
                AnswerFraming::None
            }
            Some(n) => AnswerFraming::Length(n),
            None => AnswerFraming::Chunked,
        };
        Answer {
            date: !parts.headers.contains_key(http::header::DATE),
            framing,
            body: AnswerBody::Stream(body),
        }
    }
}

/// Writes `answer`, whose head is in `out`; `head_request`: the body is
/// not sent; `last`: the connection closes after it.
pub(super) async fn answer<I: AsyncWrite + Unpin>(
    io: &mut I,
    answer: Answer,
    head_request: bool,
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let Answer {
        date,
        framing,
        body,
    } = answer;
    if date {
        out.extend_from_slice(b"date: ");
        http_date(|d| out.extend_from_slice(d));
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        AnswerFraming::None => {}
        AnswerFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa(n, &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
        }
        AnswerFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if last {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let mut body = match body {
        AnswerBody::Stream(body) => body,
        AnswerBody::Whole(data) => {
            let plain = framing == AnswerFraming::Length(data.len() as u64);
            if !head_request && plain && data.len() >= GATHER_AT && io.is_write_vectored() {
                return write_both(io, out, &data).await;
            }
            if !head_request && framing != AnswerFraming::None {
                let chunked = framing == AnswerFraming::Chunked;
                put_data(io, out, data, chunked).await?;
                if chunked {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
            }
            return io.write_all(out).await;
        }
    };
    if head_request || framing == AnswerFraming::None || body.is_end_stream() {
        if framing == AnswerFraming::Chunked && !head_request {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        // The body is dropped unread: an upstream connection with one
        // still to come is not reused.
        return io.write_all(out).await;
    }
    let chunked = framing == AnswerFraming::Chunked;
    loop {
        // Waiting for more: what is gathered goes out first.
        let frame = {
            let mut next = pin!(body.frame());
            match std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    if !out.is_empty() {
                        io.write_all(out).await?;
                        out.clear();
                    }
                    next.await
                }
            }
        };
        let Some(frame) = frame else { break };
        // Trailers are not passed on: a plain request did not say `TE:
        // trailers` (hyper's rule too).
        if let Ok(data) = frame.map_err(io::Error::other)?.into_data() {
            put_data(io, out, data, chunked).await?;
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Adds one piece of body to what goes out (chunked: as one chunk).
async fn put_data<I: AsyncWrite + Unpin>(
    io: &mut I,
    out: &mut Vec<u8>,
    data: Bytes,
    chunked: bool,
) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    if chunked {
        let mut size = [0u8; 16];
        let n = hex(data.len(), &mut size);
        out.extend_from_slice(n);
        out.extend_from_slice(b"\r\n");
    }
    if data.len() >= COPY_AT {
        io.write_all(out).await?;
        out.clear();
        io.write_all(&data).await?;
    } else {
        out.extend_from_slice(&data);
    }
    if chunked {
        out.extend_from_slice(b"\r\n");
    }
    if out.len() >= WRITE_AT {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Writes `head` then `body`, gathered: one `writev` when the socket takes both.
async fn write_both<I: AsyncWrite + Unpin>(io: &mut I, head: &[u8], body: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < head.len() {
        let pieces = [io::IoSlice::new(&head[done..]), io::IoSlice::new(body)];
        let n = std::future::poll_fn(|cx| {
            std::pin::Pin::new(&mut *io).poll_write_vectored(cx, &pieces)
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    // What of the body the gathered writes took.
    let taken = done - head.len();
    io.write_all(&body[taken..]).await
}

/// `n` in decimal, in `buf`.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// `n` in lowercase hex, in `buf`.
fn hex(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            return &buf[i..];
        }
    }
}

thread_local! {
    /// The `Date` value of the current second, made once per second.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Calls `f` with the current time as an HTTP date (RFC 9110 5.6.7).
fn http_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() == 29 {
                cached.1.copy_from_slice(text.as_bytes());
                cached.0 = secs;
            }
        }
        f(&cached.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::full;
    use std::collections::VecDeque;

    /// Frames handed out one by one.
    struct Frames(VecDeque<http_body::Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = crate::body::BoxError;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    async fn written(
        (answer, mut head): (Answer, Vec<u8>),
        head_request: bool,
        last: bool,
    ) -> String {
        let mut io = Vec::new();
        super::answer(&mut io, answer, head_request, last, &mut head)
            .await
            .unwrap();
        String::from_utf8(io).unwrap()
    }

    fn raw(head: &str, framing: AnswerFraming, body: ResBody) -> (Answer, Vec<u8>) {
        let answer = Answer {
            date: false,
            framing,
            body: AnswerBody::Stream(body),
        };
        (answer, head.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn a_known_length_goes_out_with_its_head() {
        let a = raw(
            "HTTP/1.1 200 OK\r\nx-a: 1\r\n",
            AnswerFraming::Length(5),
            full("hello"),
        );
        assert_eq!(
            written(a, false, false).await,
            "HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 5\r\n\r\nhello"
        );
    }

    #[tokio::test]
    async fn a_head_request_gets_the_head_only_and_the_last_answer_says_close() {
        let a = raw(
            "HTTP/1.1 200 OK\r\n",
            AnswerFraming::Length(5),
            full("hello"),
        );
        assert_eq!(
            written(a, true, true).await,
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn an_unknown_length_is_chunked_without_trailers() {
        let frames = VecDeque::from([
            http_body::Frame::data(Bytes::from("hello")),
            http_body::Frame::data(Bytes::from(vec![b'x'; 20])),
            http_body::Frame::trailers({
                let mut t = http::HeaderMap::new();
                t.insert("x-sum", "1".parse().unwrap());
                t
            }),
        ]);
        let body = Frames(frames).boxed_unsync();
        let a = raw("HTTP/1.1 200 OK\r\n", AnswerFraming::Chunked, body);
        let out = written(a, false, false).await;
        assert_eq!(
            out,
            format!(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n14\r\n{}\r\n0\r\n\r\n",
                "x".repeat(20)
            )
        );
    }

    #[tokio::test]
    async fn a_general_response_keeps_its_fields_and_gets_a_date() {
        let resp = crate::body::text_response(StatusCode::BAD_GATEWAY, "no");
        let mut head = Vec::new();
        let answer = Answer::from_response(resp, &mut head);
        let out = written((answer, head), false, false).await;
        assert!(out.starts_with("HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\ncache-control: no-store\r\ndate: "), "{out}");
        assert!(
            out.ends_with(" GMT\r\ncontent-length: 3\r\n\r\nno\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_whole_body_goes_out_with_its_head() {
        let whole = |framing| {
            let answer = Answer {
                date: false,
                framing,
                body: AnswerBody::Whole(Bytes::from("hello")),
            };
            (answer, b"HTTP/1.1 200 OK\r\n".to_vec())
        };
        assert_eq!(
            written(whole(AnswerFraming::Length(5)), false, false).await,
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
        );
        assert_eq!(
            written(whole(AnswerFraming::Chunked), false, false).await,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        assert_eq!(
            written(whole(AnswerFraming::Length(5)), true, false).await,
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
        );
    }

    /// Takes at most `limit` bytes per write, vectored or not.
    struct Trickle {
        got: Vec<u8>,
        limit: usize,
        vectored: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.limit);
            self.got.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.vectored += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.limit - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_large_whole_body_is_gathered_with_its_head_however_the_socket_takes_it() {
        let body: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let expected = [
            b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n".as_slice(),
            &body,
        ]
        .concat();
        // All at once; the head in pieces; the head and part of the body, then the rest.
        for limit in [1 << 20, 7, 1000] {
            let mut io = Trickle {
                got: Vec::new(),
                limit,
                vectored: 0,
            };
            let answer = Answer {
                date: false,
                framing: AnswerFraming::Length(5000),
                body: AnswerBody::Whole(Bytes::from(body.clone())),
            };
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            super::answer(&mut io, answer, false, false, &mut head)
                .await
                .unwrap();
            assert_eq!(io.got, expected, "limit {limit}");
            assert!(io.vectored >= 1, "gathered, not copied");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(itoa(0, &mut [0; 20]), b"0");
        assert_eq!(itoa(u64::MAX, &mut [0; 20]), b"18446744073709551615");
        assert_eq!(hex(0, &mut [0; 16]), b"0");
        assert_eq!(hex(4096, &mut [0; 16]), b"1000");
    }
}
