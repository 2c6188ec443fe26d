//! HTTP/1.1 on the upstream side, written and read directly: the request
//! head is serialised once into bytes (so a retry re-sends the same bytes),
//! the response head is read in one pass by [`crate::scan`] (httparse's
//! rules), and its framing decided the RFC 9112 way (section 6.3).

use crate::headers::raw::{Field, Kind};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::cell::Cell;

/// Most response headers accepted from an upstream.
pub const MAX_RESPONSE_HEADERS: usize = 100;
/// Largest response head accepted from an upstream.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How a request body is delimited on the way upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// Exactly this many bytes (0: none).
    Length(u64),
    /// Chunked transfer coding: the length is not known in advance.
    Chunked,
}

/// Serialises a request head: `path` in origin form, `host` when the headers
/// have none, one framing header of our own (any `Content-Length` or
/// `Transfer-Encoding` in `headers` is left out, so the server can never
/// read the body's end differently from us).
pub fn request_head(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    host: &str,
    framing: RequestFraming,
) -> BytesMut {
    let mut out = BytesMut::with_capacity(256 + headers.len() * 32);
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(header::HOST) {
        out.put_slice(b"host: ");
        out.put_slice(host.as_bytes());
        out.put_slice(b"\r\n");
    }
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    match framing {
        RequestFraming::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
        // Like hyper: a length for any body, and for methods that normally carry one.
        RequestFraming::Length(n)
            if n > 0 || matches!(*method, Method::POST | Method::PUT | Method::PATCH) =>
        {
            out.put_slice(b"content-length: ");
            out.put_slice(n.to_string().as_bytes());
            out.put_slice(b"\r\n");
        }
        RequestFraming::Length(_) => {}
    }
    out.put_slice(b"\r\n");
    out
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status code.
    pub status: StatusCode,
    /// Headers as sent.
    pub headers: HeaderMap,
    /// Body framing.
    pub framing: Framing,
    /// Whether the connection may carry another request afterwards.
    pub keep_alive: bool,
    /// Bytes of `buf` the head took.
    pub len: usize,
}

/// A response head as the server sent it, read but not turned into a
/// [`HeaderMap`]: a proxy that passes the fields on as bytes never pays
/// for one.
#[derive(Debug)]
pub struct RawHead {
    /// Status code.
    pub status: StatusCode,
    /// The head's bytes, status line to blank line: a copy, so the
    /// connection's buffer is not shared (sharing it is two locked
    /// instructions per response, copying a head a few hundred bytes).
    pub bytes: Vec<u8>,
    /// Where each field's name and value sit in `bytes`.
    fields: Vec<Field>,
    /// Body framing.
    pub framing: Framing,
    /// Whether the connection may carry another request afterwards.
    pub keep_alive: bool,
    /// A `Transfer-Encoding` overrides the `Content-Length`, which is not passed on.
    pub(crate) drop_length: bool,
    /// It has a `Date` field.
    pub has_date: bool,
    /// A `Connection` field names other fields (to be removed with it).
    pub connection_names: bool,
}

thread_local! {
    /// A field list and a head buffer to reuse: a response head gives its
    /// own back when it is dropped, so reading a head costs no allocation.
    static SPARE_FIELDS: Cell<Vec<Field>> = const { Cell::new(Vec::new()) };
    static SPARE_BYTES: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

impl Drop for RawHead {
    fn drop(&mut self) {
        let fields = std::mem::take(&mut self.fields);
        if fields.capacity() <= MAX_RESPONSE_HEADERS {
            SPARE_FIELDS.set(fields);
        }
        let bytes = std::mem::take(&mut self.bytes);
        if bytes.capacity() <= MAX_RESPONSE_HEAD {
            SPARE_BYTES.set(bytes);
        }
    }
}

impl RawHead {
    /// The fields in order as sent, less a `Content-Length` that a
    /// `Transfer-Encoding` overrides (RFC 9112 6.3).
    pub fn fields(&self) -> impl Iterator<Item = (Kind, &[u8], &[u8])> {
        let b = &self.bytes;
        self.fields
            .iter()
            .filter(|f| !(self.drop_length && f.kind == Kind::ContentLength))
            .map(move |f| {
                let (name, value) = f.get(b);
                (f.kind, name, value)
            })
    }

    /// The head's bytes and where its fields are, all of them.
    pub(crate) fn parts(&self) -> (&[u8], &[Field]) {
        (&self.bytes, &self.fields)
    }

    /// The fields as a [`HeaderMap`] (values share one copy of the head).
    pub fn headers(&self) -> Result<HeaderMap, String> {
        let bytes = Bytes::copy_from_slice(&self.bytes);
        let mut headers = HeaderMap::with_capacity(self.fields.len());
        for f in &self.fields {
            if self.drop_length && f.kind == Kind::ContentLength {
                continue;
            }
            let (raw_name, _) = f.get(&self.bytes);
            let name = header_name(raw_name).map_err(|_| {
                format!(
                    "invalid header name {:?}",
                    String::from_utf8_lossy(raw_name)
                )
            })?;
            let (from, to) = f.value;
            let value = HeaderValue::from_maybe_shared(bytes.slice(from as usize..to as usize))
                .map_err(|_| format!("invalid value in header {name}"))?;
            headers.append(name, value);
        }
        Ok(headers)
    }
}

/// Parses a response head at the start of `buf` and takes it off `buf`:
/// Ok(None) when more bytes are needed (nothing is taken), Err with a reason
/// when the server sent something invalid. Header values point into the
/// head's bytes (one shared buffer, no copy per value).
pub fn parse_response(buf: &mut BytesMut, method: &Method) -> Result<Option<ResponseHead>, String> {
    let Some(raw) = parse_head(buf, method)? else {
        return Ok(None);
    };
    Ok(Some(ResponseHead {
        status: raw.status,
        headers: raw.headers()?,
        framing: raw.framing,
        keep_alive: raw.keep_alive,
        len: raw.bytes.len(),
    }))
}

/// [`parse_response`] without the [`HeaderMap`].
pub fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<RawHead>, String> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut fields = SPARE_FIELDS.take();
    fields.clear();
    let scanned = crate::scan::response(buf, &mut fields, MAX_RESPONSE_HEADERS);
    let (len, minor, code) = match scanned {
        Ok(Some(line)) => line,
        not_yet => {
            SPARE_FIELDS.set(fields);
            return match not_yet {
                Ok(None) if buf.len() >= MAX_RESPONSE_HEAD => Err(format!(
                    "response head larger than {MAX_RESPONSE_HEAD} bytes"
                )),
                Err(e) => Err(format!("invalid response: {e}")),
                _ => Ok(None),
            };
        }
    };
    let status = StatusCode::from_u16(code).map_err(|_| format!("invalid status {code}"))?;
    let http10 = minor == 0;
    let (mut close, mut keep_alive_token, mut has_date) = (false, false, false);
    let (mut has_length, mut connection_names) = (false, false);
    // The Content-Length, read on the way (an error is kept for the framing).
    let mut length: Result<Option<u64>, String> = Ok(None);
    let mut codings: Option<Vec<&[u8]>> = None;
    for field in &fields {
        let (_, raw) = field.get(buf);
        match field.kind {
            Kind::Connection => {
                for token in raw.split(|b| *b == b',').map(|t| t.trim_ascii()) {
                    let is_close = token.eq_ignore_ascii_case(b"close");
                    let is_keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
                    close |= is_close;
                    keep_alive_token |= is_keep_alive;
                    connection_names |= !token.is_empty() && !is_close && !is_keep_alive;
                }
            }
            Kind::TransferEncoding => codings.get_or_insert_with(Vec::new).extend(
                raw.split(|b| *b == b',')
                    .map(|c| c.trim_ascii())
                    .filter(|c| !c.is_empty()),
            ),
            Kind::ContentLength => {
                has_length = true;
                length = length.and_then(|mut l| add_length(&mut l, raw).map(|()| l));
            }
            Kind::Date => has_date = true,
            _ => {}
        }
    }
    let transfer_encoding = codings.is_some();
    let framing = framing(status, method, codings.as_deref(), length)?;
    let mut keep_alive = if http10 { keep_alive_token } else { true } && !close;
    if framing == Framing::Close {
        keep_alive = false;
    }
    // RFC 9112 6.3: Transfer-Encoding overrides Content-Length, which must
    // not be forwarded; a server that sends both does not get the
    // connection back (it may be trying to split responses).
    let drop_length = transfer_encoding && has_length;
    if drop_length {
        keep_alive = false;
    }
    let mut bytes = SPARE_BYTES.take();
    bytes.clear();
    bytes.extend_from_slice(&buf[..len]);
    buf.advance(len);
    Ok(Some(RawHead {
        status,
        bytes,
        fields,
        framing,
        keep_alive,
        drop_length,
        has_date,
        connection_names,
    }))
}

/// The name of a header as sent: the usual response headers in their usual
/// spellings without the general lookup, any other through it.
fn header_name(raw: &[u8]) -> Result<HeaderName, http::header::InvalidHeaderName> {
    Ok(match raw {
        b"Content-Type" | b"content-type" => header::CONTENT_TYPE,
        b"Content-Length" | b"content-length" => header::CONTENT_LENGTH,
        b"Date" | b"date" => header::DATE,
        b"Server" | b"server" => header::SERVER,
        b"Connection" | b"connection" => header::CONNECTION,
        b"Last-Modified" | b"last-modified" => header::LAST_MODIFIED,
        b"ETag" | b"etag" => header::ETAG,
        b"Accept-Ranges" | b"accept-ranges" => header::ACCEPT_RANGES,
        b"Cache-Control" | b"cache-control" => header::CACHE_CONTROL,
        b"Transfer-Encoding" | b"transfer-encoding" => header::TRANSFER_ENCODING,
        b"Content-Encoding" | b"content-encoding" => header::CONTENT_ENCODING,
        b"Vary" | b"vary" => header::VARY,
        b"Set-Cookie" | b"set-cookie" => header::SET_COOKIE,
        b"Location" | b"location" => header::LOCATION,
        b"Expires" | b"expires" => header::EXPIRES,
        _ => return HeaderName::from_bytes(raw),
    })
}

/// RFC 9112 6.3, for a response to `method`.
/// `codings`: the transfer codings named, if the head has `Transfer-Encoding`
/// at all; `length`: its `Content-Length`, as read.
fn framing(
    status: StatusCode,
    method: &Method,
    codings: Option<&[&[u8]]>,
    length: Result<Option<u64>, String>,
) -> Result<Framing, String> {
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    match codings {
        None => length.map(length_framing),
        // An empty field: as if there were none.
        Some([]) => length.map(length_framing),
        // Chunked wins over any Content-Length.
        Some([only]) if only.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
        // gzip and friends as transfer codings: we would have to decode
        // them, or pass on a body whose coding nothing declares (HAProxy: 502).
        Some(_) => Err("a transfer coding other than chunked".into()),
    }
}

/// Framing by a `Content-Length` (None: there was none).
fn length_framing(length: Option<u64>) -> Framing {
    match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    }
}

/// Adds one `Content-Length` field value (a list of equal lengths is one length).
fn add_length(length: &mut Option<u64>, value: &[u8]) -> Result<(), String> {
    for part in value.split(|b| *b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) || part.len() > 19 {
            return Err("invalid Content-Length".into());
        }
        let n: u64 = std::str::from_utf8(part)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("invalid Content-Length")?;
        if length.is_some_and(|l| l != n) {
            return Err("conflicting Content-Length values".into());
        }
        *length = Some(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<ResponseHead>, String> {
        parse_response(&mut BytesMut::from(raw), &Method::GET)
    }

    #[test]
    fn request_heads_carry_one_framing() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        h.insert("x-a", HeaderValue::from_static("1"));
        let head = request_head(
            &Method::POST,
            "/p?q=1",
            &h,
            "10.0.0.1:80",
            RequestFraming::Length(3),
        );
        assert_eq!(
            &head[..],
            b"POST /p?q=1 HTTP/1.1\r\nhost: 10.0.0.1:80\r\nx-a: 1\r\ncontent-length: 3\r\n\r\n"
        );
        let get = request_head(
            &Method::GET,
            "/",
            &HeaderMap::new(),
            "h",
            RequestFraming::Length(0),
        );
        assert_eq!(&get[..], b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        let chunked = request_head(&Method::PUT, "/u", &h, "h", RequestFraming::Chunked);
        assert_eq!(
            &chunked[..],
            b"PUT /u HTTP/1.1\r\nhost: h\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let head = |raw: &str| parse(raw).unwrap().unwrap();
        let r = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(
            (r.framing, r.keep_alive, r.len),
            (Framing::Length(5), true, 38)
        );
        let r = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.framing, Framing::Chunked);
        assert!(!r.headers.contains_key(header::CONTENT_LENGTH));
        assert!(!r.keep_alive);
        assert_eq!(head("HTTP/1.1 200 OK\r\n\r\n").framing, Framing::Close);
        assert!(!head("HTTP/1.1 200 OK\r\n\r\n").keep_alive);
        assert_eq!(
            head("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n").framing,
            Framing::Empty
        );
        let r = head("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
        assert!(!r.keep_alive);
        assert!(!head("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n").keep_alive);
        assert!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n").is_err()
        );
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n").is_err());
        assert!(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").is_err());
        assert!(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").is_err());
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
        let head_req = parse_response(
            &mut BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"[..]),
            &Method::HEAD,
        );
        assert_eq!(head_req.unwrap().unwrap().framing, Framing::Empty);
    }

    #[test]
    fn a_parsed_head_is_taken_off_the_buffer_and_the_body_stays() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 200 OK\r\nETag: \"a\"\r\nX-Odd:  v \r\nContent-Length: 5\r\n\r\nhel",
        );
        let h = parse_response(&mut buf, &Method::GET).unwrap().unwrap();
        assert_eq!(&buf[..], b"hel");
        assert_eq!(h.headers[header::ETAG], "\"a\"");
        assert_eq!(h.headers["x-odd"], "v");
        assert_eq!(h.headers.len(), 3);
        // Not complete yet: nothing is taken.
        let mut partial = BytesMut::from("HTTP/1.1 200 OK\r\nContent-");
        assert!(parse_response(&mut partial, &Method::GET)
            .unwrap()
            .is_none());
        assert_eq!(partial.len(), 25);
        assert!(parse_response(&mut BytesMut::new(), &Method::GET)
            .unwrap()
            .is_none());
    }
}
