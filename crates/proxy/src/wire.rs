//! HTTP/1.1 on the upstream side, written and read directly: the request
//! head is serialised once into bytes (so a retry re-sends the same bytes),
//! the response head is parsed with httparse, and its framing decided the
//! RFC 9112 way (section 6.3).

use bytes::{BufMut, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::mem::MaybeUninit;

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

/// Parses a response head at the start of `buf` and takes it off `buf`:
/// Ok(None) when more bytes are needed (nothing is taken), Err with a reason
/// when the server sent something invalid. Header values point into the
/// head's bytes (one shared buffer, no copy per value).
pub fn parse_response(buf: &mut BytesMut, method: &Method) -> Result<Option<ResponseHead>, String> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let parse = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots,
    );
    let len = match parse {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD => {
            return Err(format!(
                "response head larger than {MAX_RESPONSE_HEAD} bytes"
            ))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("invalid response: {e}")),
    };
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| format!("invalid status {code}"))?;
    let http10 = parsed.version == Some(0);
    // Where names and values sit; read once the head is split off as shared bytes.
    let count = parsed.headers.len();
    let mut values = [(0u32, 0u32); MAX_RESPONSE_HEADERS];
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        (start as u32, (start + s.len()) as u32)
    };
    let mut names = [(0u32, 0u32); MAX_RESPONSE_HEADERS];
    for ((h, name), value) in parsed.headers.iter().zip(&mut names).zip(&mut values) {
        *name = at(h.name.as_bytes());
        *value = at(h.value);
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    let (mut close, mut keep_alive_token, mut transfer_encoding) = (false, false, false);
    // The Content-Length, read on the way (an error is kept for the framing).
    let mut length: Result<Option<u64>, String> = Ok(None);
    for (&(name_from, name_to), &(from, to)) in names[..count].iter().zip(&values[..count]) {
        let (from, to) = (from as usize, to as usize);
        let raw_name = &head[name_from as usize..name_to as usize];
        let name = header_name(raw_name).map_err(|_| {
            format!(
                "invalid header name {:?}",
                String::from_utf8_lossy(raw_name)
            )
        })?;
        let raw = &head[from..to];
        if name == header::CONNECTION {
            for token in raw.split(|b| *b == b',').map(|t| t.trim_ascii()) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name == header::TRANSFER_ENCODING {
            transfer_encoding = true;
        } else if name == header::CONTENT_LENGTH {
            length = length.and_then(|mut l| add_length(&mut l, raw).map(|()| l));
        }
        let value = HeaderValue::from_maybe_shared(head.slice(from..to))
            .map_err(|_| format!("invalid value in header {name}"))?;
        headers.append(name, value);
    }
    let mut keep_alive = if http10 { keep_alive_token } else { true } && !close;
    let framing = framing(status, &headers, method, transfer_encoding, length)?;
    if framing == Framing::Close {
        keep_alive = false;
    }
    // RFC 9112 6.3: Transfer-Encoding overrides Content-Length, which must
    // not be forwarded; a server that sends both does not get the
    // connection back (it may be trying to split responses).
    if transfer_encoding && headers.remove(header::CONTENT_LENGTH).is_some() {
        keep_alive = false;
    }
    Ok(Some(ResponseHead {
        status,
        headers,
        framing,
        keep_alive,
        len,
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
/// `transfer_encoding`: whether the head has that header at all; `length`:
/// its `Content-Length`, as read.
fn framing(
    status: StatusCode,
    headers: &HeaderMap,
    method: &Method,
    transfer_encoding: bool,
    length: Result<Option<u64>, String>,
) -> Result<Framing, String> {
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    if transfer_encoding {
        return transfer_coding(headers);
    }
    length.map(length_framing)
}

/// A response with `Transfer-Encoding`: chunked, or nothing we can pass on.
fn transfer_coding(headers: &HeaderMap) -> Result<Framing, String> {
    let codings: Vec<&[u8]> = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|c| c.trim_ascii())
        .filter(|c| !c.is_empty())
        .collect();
    match codings[..] {
        // An empty field: as if there were none.
        [] => content_length(headers),
        // Chunked wins over any Content-Length.
        [only] if only.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
        // gzip and friends as transfer codings: we would have to decode
        // them, or pass on a body whose coding nothing declares (HAProxy: 502).
        _ => Err("a transfer coding other than chunked".into()),
    }
}

/// A response delimited by `Content-Length`, or by the end of the connection.
fn content_length(headers: &HeaderMap) -> Result<Framing, String> {
    let mut length: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        add_length(&mut length, v.as_bytes())?;
    }
    Ok(length_framing(length))
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
