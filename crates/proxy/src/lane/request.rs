//! Reading a request head in the fast lane, and deciding whether the lane
//! may take it at all.
//!
//! Only the plainest request is taken: a complete `GET` or `HEAD` head in
//! HTTP/1.1 that httparse reads with hyper's settings and within hyper's
//! limits as [`crate::serve`] sets them, an origin-form target that
//! [`crate::checks`] would pass (ASCII, at most 8 KiB, a valid
//! path-and-query), exactly one valid `Host`, no `Content-Length`,
//! `Transfer-Encoding`, `TE`, `Expect`, `Upgrade` or `HTTP2-Settings`, and a
//! `Connection` header, if any, that only says `keep-alive`. Anything else
//! -- a parse error, another method or version, a refusal -- goes to hyper
//! with the bytes read so far, so every refusal and every unusual request
//! is handled exactly as on the general path.

use crate::checks;
use crate::headers::raw::{Field, Kind};
use crate::serve::{MAX_HEADERS, MAX_HEAD_BYTES};
use http::Method;
use std::mem::MaybeUninit;

/// A plain request's head, borrowed from the connection's buffer.
#[derive(Debug)]
pub struct RawRequest<'a> {
    /// `GET` or `HEAD`.
    pub method: Method,
    /// The path and query, as the general path would forward them (a
    /// `#fragment` is not part of it); ASCII.
    pub target: &'a [u8],
    head: &'a [u8],
    fields: &'a [Field],
}

impl<'a> RawRequest<'a> {
    /// The head's bytes and where its fields are.
    pub(crate) fn parts(&self) -> (&'a [u8], &'a [Field]) {
        (self.head, self.fields)
    }

    /// The header fields in order as sent: what each is, name and value.
    pub fn fields(&self) -> impl Iterator<Item = (Kind, &'a [u8], &'a [u8])> + '_ {
        let head = self.head;
        self.fields.iter().map(move |f| {
            let (name, value) = f.get(head);
            (f.kind, name, value)
        })
    }
}

/// What the bytes at the start of a connection's buffer are.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A plain request: its head is this many bytes, its fields are in the
    /// list passed in, its target at this range.
    Plain {
        len: usize,
        method: Method,
        target: (usize, usize),
    },
    /// The head is not complete yet.
    Partial,
    /// Anything else: hyper takes the connection over.
    Other,
}

/// Reads the request head at the start of `buf`, noting where its fields
/// sit in `fields` (cleared first).
pub fn parse(buf: &[u8], fields: &mut Vec<Field>) -> Parsed {
    fields.clear();
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => return Parsed::Partial,
        _ => return Parsed::Other,
    };
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Parsed::Other,
    };
    if len > MAX_HEAD_BYTES || req.version != Some(1) {
        return Parsed::Other;
    }
    let path = req.path.unwrap_or_default();
    // What checks::request asks of a target, and what http's Uri accepts.
    let Some(target) = plain_target(path) else {
        return Parsed::Other;
    };
    let mut hosts = 0;
    for h in req.headers.iter() {
        let field = Field::at(buf, h.name.as_bytes(), h.value);
        let plain = match field.kind {
            Kind::Host => {
                hosts += 1;
                checks::valid_host(h.value)
            }
            Kind::Connection => h.value.trim_ascii().eq_ignore_ascii_case(b"keep-alive"),
            Kind::ContentLength | Kind::TransferEncoding | Kind::Expect | Kind::Http2Settings => {
                false
            }
            // TE and Upgrade; Keep-Alive and Proxy-Connection are only dropped.
            Kind::HopByHop => {
                !(h.name.eq_ignore_ascii_case("te") || h.name.eq_ignore_ascii_case("upgrade"))
            }
            _ => true,
        };
        if !plain {
            return Parsed::Other;
        }
        fields.push(field);
    }
    if hosts != 1 {
        return Parsed::Other;
    }
    let from = path.as_ptr() as usize - buf.as_ptr() as usize;
    Parsed::Plain {
        len,
        method,
        target: (from, from + target.len()),
    }
}

/// A request built from `buf` and what [`parse`] said of it.
pub fn request<'a>(
    buf: &'a [u8],
    fields: &'a [Field],
    method: Method,
    target: (usize, usize),
) -> RawRequest<'a> {
    RawRequest {
        method,
        target: &buf[target.0..target.1],
        head: buf,
        fields,
    }
}

/// Bytes of a path and query (RFC 3986 3.3, 3.4): unreserved, sub-delims,
/// `:`, `@`, `/`, `?` and `%`.
const TARGET: [bool; 256] = checks::byte_set(b"-._~!$&'()*+,;=:@/?%");

/// The part of an origin-form target that is forwarded, when the general
/// path would forward it unchanged.
fn plain_target(path: &str) -> Option<&str> {
    if !path.starts_with('/') || path.len() > checks::MAX_TARGET || !path.is_ascii() {
        return None;
    }
    // The usual bytes of a path and query (RFC 3986) are taken as they are;
    // anything else is left to http's parse, as on the general path.
    if path.bytes().all(|b| TARGET[b as usize]) {
        return Some(path);
    }
    let parsed = http::uri::PathAndQuery::try_from(path).ok()?;
    // A fragment is dropped by the parse; anything else it changed is not plain.
    let kept = parsed.as_str();
    (path.starts_with(kept) && (kept.len() == path.len() || path.as_bytes()[kept.len()] == b'#'))
        .then(|| &path[..kept.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Parsed {
        parse(s.as_bytes(), &mut Vec::new())
    }

    #[test]
    fn a_plain_get_is_taken_with_its_fields() {
        let raw = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-One: 1\r\nx-one: 2\r\nConnection: Keep-Alive\r\n\r\nGET /next";
        let mut fields = Vec::new();
        let Parsed::Plain {
            len,
            method,
            target,
        } = parse(raw.as_bytes(), &mut fields)
        else {
            panic!("not taken")
        };
        assert_eq!(&raw[len..], "GET /next");
        let req = request(raw.as_bytes(), &fields, method, target);
        assert_eq!((&req.method, req.target), (&Method::GET, &b"/a?b=1"[..]));
        let got: Vec<_> = req.fields().collect();
        assert_eq!(
            got,
            [
                (Kind::Host, &b"Host"[..], &b"x"[..]),
                (Kind::Other, b"X-One", b"1"),
                (Kind::Other, b"x-one", b"2"),
                (Kind::Connection, b"Connection", b"Keep-Alive")
            ]
        );
    }

    #[test]
    fn a_fragment_is_not_forwarded_and_head_is_taken() {
        let raw = "HEAD /p?q#frag HTTP/1.1\r\nhost: x\r\n\r\n";
        let mut fields = Vec::new();
        let Parsed::Plain { method, target, .. } = parse(raw.as_bytes(), &mut fields) else {
            panic!("not taken")
        };
        let req = request(raw.as_bytes(), &fields, method, target);
        assert_eq!((req.method, req.target), (Method::HEAD, &b"/p?q"[..]));
    }

    #[test]
    fn a_target_is_forwarded_as_http_would_parse_it() {
        for sent in [
            "/a/b?c=d&e=%20f",
            "/~u/(x)*;p=1:2@h",
            "/a{b}|c^",
            "/p?q#frag",
            "/a\"b",
            "/a<b>",
            "/a\\b",
            "/a`b",
            "/a\u{7f}",
            "*",
        ] {
            let http = http::uri::PathAndQuery::try_from(sent)
                .ok()
                .filter(|_| sent.starts_with('/'));
            let expected = http.as_ref().map(|p| p.as_str());
            assert_eq!(plain_target(sent), expected, "{sent}");
        }
        assert_eq!(plain_target("/p?q#frag"), Some("/p?q"));
    }

    #[test]
    fn a_partial_head_waits() {
        assert_eq!(parse_str("GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial);
    }

    #[test]
    fn anything_unusual_goes_to_hyper() {
        for head in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: u@x\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "GET /\u{e9} HTTP/1.1\r\nHost: x\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert_eq!(parse_str(head), Parsed::Other, "{head:?}");
        }
        let long = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(checks::MAX_TARGET)
        );
        assert_eq!(parse_str(&long), Parsed::Other);
    }

    #[test]
    fn too_many_headers_or_too_large_a_head_go_to_hyper() {
        let many = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "a: b\r\n".repeat(MAX_HEADERS)
        );
        assert_eq!(parse_str(&many), Parsed::Other);
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nA: {}",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(parse_str(&huge), Parsed::Other);
    }
}
