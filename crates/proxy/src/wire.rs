//! HTTP/1.1 on the upstream side, written and read directly: the request
//! head is serialised once into bytes (so a retry re-sends the same bytes),
//! the response head is parsed with httparse, and its framing decided the
//! RFC 9112 way (section 6.3).

use bytes::{BufMut, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

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

/// Parses a response head at the start of `buf`: Ok(None) when more bytes
/// are needed, Err with a reason when the server sent something invalid.
pub fn parse_response(buf: &[u8], method: &Method) -> Result<Option<ResponseHead>, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
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
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("invalid header name {:?}", h.name))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| format!("invalid value in header {}", h.name))?;
        headers.append(name, value);
    }
    let mut keep_alive = !http10;
    for v in headers.get_all(header::CONNECTION) {
        for token in v.as_bytes().split(|b| *b == b',').map(|t| t.trim_ascii()) {
            if token.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                keep_alive = true;
            }
        }
    }
    let framing = framing(status, &headers, method)?;
    if framing == Framing::Close {
        keep_alive = false;
    }
    // RFC 9112 6.3: Transfer-Encoding overrides Content-Length, which must
    // not be forwarded; a server that sends both does not get the
    // connection back (it may be trying to split responses).
    if headers.contains_key(header::TRANSFER_ENCODING)
        && headers.remove(header::CONTENT_LENGTH).is_some()
    {
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

/// RFC 9112 6.3, for a response to `method`.
fn framing(status: StatusCode, headers: &HeaderMap, method: &Method) -> Result<Framing, String> {
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    let codings: Vec<&[u8]> = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|c| c.trim_ascii())
        .filter(|c| !c.is_empty())
        .collect();
    match codings[..] {
        [] => {}
        // Chunked wins over any Content-Length.
        [only] if only.eq_ignore_ascii_case(b"chunked") => return Ok(Framing::Chunked),
        // gzip and friends as transfer codings: we would have to decode
        // them, or pass on a body whose coding nothing declares (HAProxy: 502).
        _ => return Err("a transfer coding other than chunked".into()),
    }
    let mut length: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|b| *b == b',') {
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
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<ResponseHead>, String> {
        parse_response(raw.as_bytes(), &Method::GET)
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
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            &Method::HEAD,
        );
        assert_eq!(head_req.unwrap().unwrap().framing, Framing::Empty);
    }
}
