//! Request bodies on their way upstream.
//!
//! A small body (up to [`KEEP_WHOLE`]) is read whole before a server is
//! picked, so the request can still be sent to another server when the first
//! one fails. A larger or open-ended body streams: the start is read, a new
//! connection is made (a failed connect is still retried elsewhere, nothing
//! of the body has been lost), then the rest is copied as the client sends
//! it, so memory stays bounded whatever the upload's size. While the body
//! goes up, the server may answer early (413, 401...): that answer reaches
//! the client instead of a 502, and the connection is not reused.
//!
//! The client side is held to the body timeout (silence mid-body: 408), a
//! minimum rate once that long has passed ([`MIN_BODY_RATE`]: a client
//! trickling a byte now and then is a 408 too, like Apache's
//! `mod_reqtimeout`), and the body limit (413), checked as the bytes arrive.

use crate::client::{fail, head_for, read_head, Failure, Head, UpstreamClient, Watch};
use crate::error::{ProxyError, ProxyErrorKind};
use crate::upstream_body::UpstreamBody;
use crate::wire::{self, RequestFraming};
use crate::Upstream;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use std::fmt::Display;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bodies up to this size are read whole before a server is picked.
pub const KEEP_WHOLE: usize = 64 * 1024;

/// The slowest a request body may arrive, in bytes a second on average,
/// once the body timeout has passed since it began: each byte buys
/// 1/`MIN_BODY_RATE` s more (Apache's `mod_reqtimeout` `body=20,MinRate=500`).
/// Without it a client sending a byte just inside every timeout holds its
/// connection, and a server's slot, as long as it likes.
pub const MIN_BODY_RATE: u64 = 500;

/// How a body is arriving: when it began and how much of it came.
struct Pace {
    /// The longest silence, and the grace before the rate counts.
    timeout: Duration,
    begun: tokio::time::Instant,
    received: u64,
}

impl Pace {
    fn new(timeout: Duration) -> Pace {
        Pace {
            timeout,
            begun: tokio::time::Instant::now(),
            received: 0,
        }
    }

    /// How long the next bytes may take: the silence timeout, or less when
    /// the body is that close to falling below the minimum rate.
    fn allowance(&self) -> Duration {
        let earned = Duration::from_millis(self.received.saturating_mul(1000) / MIN_BODY_RATE);
        let deadline = self.begun + self.timeout + earned;
        deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(self.timeout)
    }
}

/// Why a client's request body could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Longer than the body limit.
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    /// The client went silent mid-body for the body timeout.
    #[error("no request body bytes for {0:?}")]
    Timeout(Duration),
    /// The body came slower than [`MIN_BODY_RATE`] on average.
    #[error("request body slower than {MIN_BODY_RATE} bytes/s ({0} bytes in {1:?})")]
    TooSlow(u64, Duration),
    /// The body ended early or was malformed.
    #[error("request body broken: {0}")]
    Broken(String),
}

impl BodyError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout(_) | BodyError::TooSlow(..) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The client's answer. The rest of its body was not read, so the
    /// connection closes after it.
    pub fn response(&self) -> Response<crate::ResBody> {
        let status = self.status();
        let reason = status.canonical_reason().unwrap_or("");
        let mut resp =
            crate::text_response(status, format!("{} {reason}: {self}", status.as_u16()));
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        resp
    }
}

/// A request body as far as it has been read.
pub enum RequestBody<B> {
    /// All of it (often empty).
    Whole(Bytes),
    /// Too large to keep: its start, and the rest still to come.
    Streaming(Upload<B>),
}

impl<B> RequestBody<B> {
    /// True for a request without a body.
    pub fn is_empty(&self) -> bool {
        matches!(self, RequestBody::Whole(b) if b.is_empty())
    }

    /// False once part of a streamed body went to a server: the request can
    /// be sent nowhere else.
    pub fn resendable(&self) -> bool {
        !matches!(self, RequestBody::Streaming(u) if u.begun)
    }
}

/// A body that streams to the server.
pub struct Upload<B> {
    /// What was read before a server was picked.
    start: Bytes,
    rest: B,
    /// The declared length, or None: sent chunked.
    length: Option<u64>,
    limit: u64,
    pace: Pace,
    /// Bytes of `rest` have been taken: the request can no longer be re-sent.
    begun: bool,
}

/// How a streamed request failed.
#[derive(Debug)]
pub enum UploadError {
    /// The server failed (the request was sent elsewhere only if
    /// [`Upload::begun`] is false and the error allows it).
    Upstream(ProxyError),
    /// The client's body failed; the server's connection was dropped.
    Client(BodyError),
}

/// Reads `body` whole if it is at most [`KEEP_WHOLE`] bytes, else its start.
/// `limit` is the largest body accepted, `timeout` the longest silence.
pub async fn read_body<B>(
    mut body: B,
    limit: u64,
    timeout: Duration,
) -> Result<RequestBody<B>, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    if body.is_end_stream() {
        return Ok(RequestBody::Whole(Bytes::new()));
    }
    let length = body.size_hint().exact();
    if length.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut kept = BytesMut::new();
    let mut pace = Pace::new(timeout);
    while kept.len() < KEEP_WHOLE {
        match next_data(&mut body, &mut pace).await? {
            None => return Ok(RequestBody::Whole(kept.freeze())),
            Some(data) if kept.is_empty() && body.is_end_stream() => {
                return within(data.len() as u64, limit).map(|()| RequestBody::Whole(data))
            }
            Some(data) => {
                within((kept.len() + data.len()) as u64, limit)?;
                kept.extend_from_slice(&data);
            }
        }
    }
    if body.is_end_stream() {
        return Ok(RequestBody::Whole(kept.freeze()));
    }
    Ok(RequestBody::Streaming(Upload {
        start: kept.freeze(),
        rest: body,
        length,
        limit,
        pace,
        begun: false,
    }))
}

fn within(n: u64, limit: u64) -> Result<(), BodyError> {
    if n > limit {
        Err(BodyError::TooLarge(limit))
    } else {
        Ok(())
    }
}

/// The next data frame (trailers are dropped), None at the end; held to
/// the silence timeout and the minimum rate of `pace`.
async fn next_data<B>(body: &mut B, pace: &mut Pace) -> Result<Option<Bytes>, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    loop {
        let allowance = pace.allowance();
        match tokio::time::timeout(allowance, body.frame()).await {
            Err(_) if allowance < pace.timeout => {
                return Err(BodyError::TooSlow(pace.received, pace.begun.elapsed()))
            }
            Err(_) => return Err(BodyError::Timeout(pace.timeout)),
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(BodyError::Broken(e.to_string())),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if !data.is_empty() {
                        pace.received += data.len() as u64;
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

/// How the body upload ended, when it did not fail.
enum Sent {
    /// All of it is with the server (which may have begun its answer).
    Complete(BytesMut),
    /// The server answered before it had all of it: its answer starts here.
    Early(BytesMut),
}

impl UpstreamClient {
    /// Sends a request with its body as [`read_body`] left it: a whole body
    /// over a pooled connection ([`UpstreamClient::send_parts`], `watch`d),
    /// a streaming one with [`UpstreamClient::send_upload`] (it cannot be
    /// sent again, so it is never given up on).
    pub async fn send_body<B>(
        &self,
        upstream: &Upstream,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &mut RequestBody<B>,
        watch: Watch<'_>,
    ) -> Result<Response<UpstreamBody>, UploadError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Display,
    {
        match body {
            RequestBody::Whole(payload) => self
                .send_parts(upstream, method, uri, headers, payload, watch)
                .await
                .map_err(UploadError::Upstream),
            RequestBody::Streaming(upload) => {
                self.send_upload(upstream, method, uri, headers, upload)
                    .await
            }
        }
    }

    /// Sends a request whose body streams (see the module docs) on a new
    /// connection, and returns the response head; its body streams too.
    pub async fn send_upload<B>(
        &self,
        upstream: &Upstream,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &mut Upload<B>,
    ) -> Result<Response<UpstreamBody>, UploadError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Display,
    {
        let framing = match body.length {
            Some(n) => RequestFraming::Length(n),
            None => RequestFraming::Chunked,
        };
        let mut head = head_for(upstream, method, uri, headers, framing);
        // A pooled connection may have been closed by the server a moment
        // ago, and this body cannot be sent twice: a new connection, always.
        let mut stream = self
            .connect(upstream)
            .await
            .map_err(UploadError::Upstream)?;
        let started = std::time::Instant::now();
        frame_into(&mut head, &body.start, framing);
        let timeout = self.response_timeout;
        let sent = pump(&mut stream, head, body, framing, method, timeout).await;
        let failed = |kind, detail| UploadError::Upstream(fail(upstream, kind, detail));
        let (buf, keep_alive) = match sent {
            Ok(Sent::Complete(buf)) => (buf, true),
            Ok(Sent::Early(buf)) => (buf, false),
            Err(Pumped::Client(e)) => return Err(UploadError::Client(e)),
            Err(Pumped::Stalled) => {
                return Err(failed(
                    ProxyErrorKind::Timeout,
                    format!("the server took no body bytes for {timeout:?}"),
                ))
            }
            Err(Pumped::Upstream(e)) => {
                // It may have answered and closed before reading everything.
                match read_answer(&mut stream, timeout).await {
                    Some(buf) => (buf, false),
                    None => return Err(failed(ProxyErrorKind::Reset, e)),
                }
            }
        };
        let pool = self.pool(upstream.addr);
        let head = Head {
            method,
            upgrade: false,
            idle_timeout: timeout,
            pool: &pool,
            started,
            keep_alive,
            // Interim responses to an upload (e.g. 100 Continue) are hyper's to send.
            interim: None,
        };
        let read = read_head(stream, buf, &head, Failure::Failed);
        match tokio::time::timeout(timeout, read).await {
            Err(_) => Err(failed(
                ProxyErrorKind::Timeout,
                format!("waited {timeout:?}"),
            )),
            Ok(Err(Failure::Failed(d))) => Err(failed(ProxyErrorKind::Reset, d)),
            Ok(Err(Failure::Stale)) => Err(failed(
                ProxyErrorKind::Reset,
                "the server closed the connection without responding".into(),
            )),
            Ok(Ok(resp)) => Ok(resp),
        }
    }
}

/// How copying the body failed.
enum Pumped {
    Client(BodyError),
    /// The server stopped taking bytes for the response timeout.
    Stalled,
    /// Writing to the server failed.
    Upstream(String),
}

/// Appends `data` to `out` in the body's framing.
fn frame_into(out: &mut BytesMut, data: &[u8], framing: RequestFraming) {
    if data.is_empty() {
        return;
    }
    if framing == RequestFraming::Chunked {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// Writes `first` (head and the body's start), then the rest of the body as
/// it arrives, while watching for an early answer from the server.
async fn pump<B>(
    stream: &mut TcpStream,
    first: BytesMut,
    body: &mut Upload<B>,
    framing: RequestFraming,
    method: &Method,
    timeout: Duration,
) -> Result<Sent, Pumped>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    let (mut rd, mut wr) = stream.split();
    let send = async {
        let mut total = body.start.len() as u64;
        let mut out = first;
        loop {
            put(&mut wr, &out, timeout).await?;
            out.clear();
            let Some(data) = next_data(&mut body.rest, &mut body.pace)
                .await
                .map_err(Pumped::Client)?
            else {
                break;
            };
            body.begun = true;
            total += data.len() as u64;
            within(total, body.limit).map_err(Pumped::Client)?;
            frame_into(&mut out, &data, framing);
        }
        if body.length.is_some_and(|n| n != total) {
            return Err(Pumped::Client(BodyError::Broken(format!(
                "{total} bytes instead of the declared {}",
                body.length.unwrap_or_default()
            ))));
        }
        if framing == RequestFraming::Chunked {
            put(&mut wr, b"0\r\n\r\n", timeout).await?;
        }
        Ok(())
    };
    tokio::pin!(send);
    let mut early = BytesMut::with_capacity(8 * 1024);
    loop {
        let read = tokio::select! {
            sent = &mut send => return sent.map(|()| Sent::Complete(early)),
            read = rd.read_buf(&mut early) => read,
        };
        match read {
            Ok(0) | Err(_) if early.is_empty() => {
                return Err(Pumped::Upstream(
                    "the server closed the connection mid-body".into(),
                ))
            }
            Ok(0) | Err(_) => return Ok(Sent::Early(early)),
            Ok(_) => {
                // Parsed on a copy: a final answer goes back whole, to be read again.
                let mut rest = early.clone();
                match wire::parse_response(&mut rest, method) {
                    // 100 Continue and the like: the server wants the body.
                    Ok(Some(h))
                        if h.status.is_informational()
                            && h.status != StatusCode::SWITCHING_PROTOCOLS =>
                    {
                        early = rest;
                    }
                    Ok(Some(_)) | Err(_) => return Ok(Sent::Early(early)),
                    Ok(None) => {}
                }
            }
        }
    }
}

/// Writes `bytes` to the server, which must take them within `timeout`.
async fn put(
    wr: &mut tokio::net::tcp::WriteHalf<'_>,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), Pumped> {
    match tokio::time::timeout(timeout, wr.write_all(bytes)).await {
        Err(_) => Err(Pumped::Stalled),
        Ok(Err(e)) => Err(Pumped::Upstream(e.to_string())),
        Ok(Ok(())) => Ok(()),
    }
}

/// After a failed write: whatever answer the server sent before closing.
async fn read_answer(stream: &mut TcpStream, timeout: Duration) -> Option<BytesMut> {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let read = async {
        loop {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) if buf.len() >= wire::MAX_RESPONSE_HEAD => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    (!buf.is_empty()).then_some(buf)
}
