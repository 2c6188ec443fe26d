//! Reading a request head in the fast lane, and deciding whether the lane
//! may take it at all.
//!
//! Only the plainest request is taken: a complete `GET` or `HEAD` head in
//! HTTP/1.1 that httparse would read the same way with hyper's settings
//! (the fields are read by [`crate::scan`]; a test holds the lane to
//! httparse) and within hyper's limits as [`crate::serve`] sets them, an
//! origin-form target that [`crate::checks`] would pass (ASCII, at most
//! 8 KiB, a valid path-and-query), exactly one valid `Host`, no `Content-Length`,
//! `Transfer-Encoding`, `TE`, `Expect`, `Upgrade` or `HTTP2-Settings`, and a
//! `Connection` header, if any, that only says `keep-alive`. Anything else
//! -- a parse error, another method or version, a refusal -- goes to hyper
//! with the bytes read so far, so every refusal and every unusual request
//! is handled exactly as on the general path.

use crate::checks;
use crate::headers::raw::{Field, Kind};
use crate::scan;
use crate::serve::{MAX_HEADERS, MAX_HEAD_BYTES};
use http::Method;

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
    let scanned = match request_line(buf) {
        Line::Plain(method, target, at) => scan::fields(buf, at, fields, MAX_HEADERS)
            .map(|end| end.map(|len| (len, method, target))),
        Line::Partial => Ok(None),
        Line::Other => return Parsed::Other,
    };
    let (len, method, target) = match scanned {
        Ok(Some(head)) => head,
        Ok(None) if buf.len() < MAX_HEAD_BYTES => return Parsed::Partial,
        _ => return Parsed::Other,
    };
    if len > MAX_HEAD_BYTES {
        return Parsed::Other;
    }
    // What checks::request asks of a target, and what http's Uri accepts.
    let Some(kept) = plain_target(&buf[target.0..target.1]) else {
        return Parsed::Other;
    };
    let mut hosts = 0;
    for field in fields.iter() {
        let (name, value) = field.get(buf);
        let plain = match field.kind {
            Kind::Host => {
                hosts += 1;
                checks::valid_host(value)
            }
            Kind::Connection => value.eq_ignore_ascii_case(b"keep-alive"),
            Kind::ContentLength | Kind::TransferEncoding | Kind::Expect | Kind::Http2Settings => {
                false
            }
            // TE and Upgrade; Keep-Alive and Proxy-Connection are only dropped.
            Kind::HopByHop => {
                !(name.eq_ignore_ascii_case(b"te") || name.eq_ignore_ascii_case(b"upgrade"))
            }
            // `Transfer_Encoding` and the like: the general path drops them.
            Kind::Other => !checks::underscored(name),
            _ => true,
        };
        if !plain {
            return Parsed::Other;
        }
    }
    if hosts != 1 {
        return Parsed::Other;
    }
    Parsed::Plain {
        len,
        method,
        target: (target.0, target.0 + kept),
    }
}

/// The request line of a head the lane may take.
enum Line {
    /// `GET` or `HEAD`, the target's range, where the header fields start.
    Plain(Method, (usize, usize), usize),
    /// It may be one: more bytes are needed.
    Partial,
    /// Anything else (hyper reads it).
    Other,
}

/// The request line at the start of `buf`, if it is `GET` or `HEAD` of a
/// target of visible ASCII in HTTP/1.1: a strict part of what httparse
/// reads (which skips empty lines before it and takes other methods,
/// versions and bytes, all left to hyper here).
fn request_line(buf: &[u8]) -> Line {
    const VERSION: &[u8] = b"HTTP/1.1";
    let (method, from) = if buf.starts_with(b"GET ") {
        (Method::GET, 4)
    } else if buf.starts_with(b"HEAD ") {
        (Method::HEAD, 5)
    } else if b"GET ".starts_with(buf) || b"HEAD ".starts_with(buf) {
        return Line::Partial;
    } else {
        return Line::Other;
    };
    let mut i = from;
    while buf.get(i).is_some_and(|b| b.is_ascii_graphic()) {
        i += 1;
    }
    match buf.get(i) {
        None => return Line::Partial,
        Some(b' ') if i > from => {}
        Some(_) => return Line::Other,
    }
    let target = (from, i);
    let version = &buf[i + 1..];
    if version.len() < VERSION.len() {
        return if VERSION.starts_with(version) {
            Line::Partial
        } else {
            Line::Other
        };
    }
    if !version.starts_with(VERSION) {
        return Line::Other;
    }
    match buf.get(i + 1 + VERSION.len()..) {
        Some([]) | Some([b'\r']) => Line::Partial,
        Some([b'\n', ..]) => Line::Plain(method, target, i + 2 + VERSION.len()),
        Some([b'\r', b'\n', ..]) => Line::Plain(method, target, i + 3 + VERSION.len()),
        _ => Line::Other,
    }
}

/// What the request line at the start of a head says of its HTTP version,
/// looked at only for a head the lane did not take.
#[derive(Debug, PartialEq, Eq)]
pub enum Version {
    /// Anything hyper reads as it is (1.0, 1.1, HTTP/2's preface) or refuses.
    Usual,
    /// HTTP/1.x with x above 1: rewritten in place to HTTP/1.1.
    Newer,
    /// A major version above 1 in an HTTP/1 request line.
    Unsupported,
    /// The request line is not all there yet.
    Partial,
}

/// RFC 9112 2.3: a request in a later HTTP/1 minor version is read as
/// HTTP/1.1, its minor digit rewritten in `buf` (as nginx and HAProxy do;
/// httparse, and so hyper, would answer 400); a major version above 1 on
/// an HTTP/1 connection gets 505, as from nginx -- but for HTTP/2's
/// connection preface (`PRI * HTTP/2.0`), which hyper serves as h2c.
pub fn version(buf: &mut [u8]) -> Version {
    let Some(end) = buf.iter().position(|b| *b == b'\n') else {
        return if buf.len() < MAX_HEAD_BYTES {
            Version::Partial
        } else {
            Version::Usual
        };
    };
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some((rest, [b' ', b'H', b'T', b'T', b'P', b'/', major, b'.', minor])) = line
        .split_at_checked(line.len().saturating_sub(9))
        .filter(|(r, _)| !r.is_empty())
    else {
        return Version::Usual;
    };
    if !(major.is_ascii_digit() && minor.is_ascii_digit()) {
        return Version::Usual;
    }
    match (major, minor) {
        (b'1', b'2'..=b'9') => {
            let at = rest.len() + 8;
            buf[at] = b'1';
            Version::Newer
        }
        (b'2'..=b'9', _) if !line.starts_with(b"PRI * ") => Version::Unsupported,
        _ => Version::Usual,
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

/// How much of an origin-form target is forwarded, when
/// the general path would forward it unchanged.
fn plain_target(path: &[u8]) -> Option<usize> {
    if path.first() != Some(&b'/') || path.len() > checks::MAX_TARGET || !path.is_ascii() {
        return None;
    }
    // The usual bytes of a path and query (RFC 3986) are taken as they are;
    // anything else is left to http's parse, as on the general path.
    if path.iter().all(|b| TARGET[usize::from(*b)]) {
        return Some(path.len());
    }
    let parsed = http::uri::PathAndQuery::try_from(path).ok()?;
    // A fragment is dropped by the parse; anything else it changed is not plain.
    let kept = parsed.as_str().as_bytes();
    (path.starts_with(kept) && (kept.len() == path.len() || path[kept.len()] == b'#'))
        .then_some(kept.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_a_later_http1_is_rewritten_a_later_major_refused_the_preface_kept() {
        let check = |raw: &str, want: Version, after: &str| {
            let mut buf = raw.as_bytes().to_vec();
            assert_eq!(version(&mut buf), want, "{raw:?}");
            assert_eq!(String::from_utf8(buf).unwrap(), after);
        };
        let same = |raw: &str, want| check(raw, want, raw);
        check(
            "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
            Version::Newer,
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        );
        check(
            "POST /a HTTP/1.9\nX: HTTP/1.9\n",
            Version::Newer,
            "POST /a HTTP/1.1\nX: HTTP/1.9\n",
        );
        same("GET / HTTP/1.1\r\n", Version::Usual);
        same("GET / HTTP/1.0\r\n", Version::Usual);
        same("GET / HTTP/0.9\r\n", Version::Usual);
        same("GET / HTTP/2.0\r\n", Version::Unsupported);
        same("GET / HTTP/9.1\n", Version::Unsupported);
        same("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Version::Usual);
        same("GET / HTTP/1.10\r\n", Version::Usual);
        same("GET / HTTPS/1.2\r\n", Version::Usual);
        same(" HTTP/1.2\r\n", Version::Usual);
        same("GET / HTTP/1.2", Version::Partial);
    }

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
            let kept = plain_target(sent.as_bytes()).map(|n| &sent[..n]);
            assert_eq!(kept, expected, "{sent}");
        }
        assert_eq!(plain_target(b"/p?q#frag"), Some(4));
    }

    /// What the lane takes, httparse reads the same way; what it waits
    /// for, httparse waits for too (heads made of likely pieces, bytes
    /// changed, put in, taken out or cut off).
    #[test]
    fn the_lane_takes_only_what_httparse_reads_the_same() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        const LINES: &[&str] = &[
            "Host: x",
            "host:a.b:80",
            "Accept: */*",
            "User-Agent: curl/7.88.1",
            "Connection: keep-alive",
            "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa  ",
            "X-Empty:",
        ];
        const BYTES: &[u8] = b"\r\n \t:\x00\x7f\x80/?#GH1";
        let mut rng = StdRng::seed_from_u64(9110);
        let (mut plain, mut partial) = (0, 0);
        for _ in 0..100_000 {
            let mut buf = if rng.random_ratio(1, 2) {
                b"GET /a?b HTTP/1.1".to_vec()
            } else {
                b"HEAD / HTTP/1.1".to_vec()
            };
            scan::generate::lines(&mut rng, &mut buf, LINES, 1..4);
            buf.extend_from_slice(b"\r\n\r\n");
            let buf = scan::generate::mutate(&mut rng, buf, BYTES, 0..3);
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            let read = req.parse(&buf);
            let mut fields = Vec::new();
            match parse(&buf, &mut fields) {
                Parsed::Plain {
                    len,
                    method,
                    target,
                } => {
                    plain += 1;
                    assert_eq!(read, Ok(httparse::Status::Complete(len)));
                    assert_eq!(req.method, Some(method.as_str()));
                    assert!(req
                        .path
                        .unwrap()
                        .as_bytes()
                        .starts_with(&buf[target.0..target.1]));
                    let got: Vec<_> = fields.iter().map(|f| f.get(&buf)).collect();
                    let expected: Vec<_> = req
                        .headers
                        .iter()
                        .map(|h| (h.name.as_bytes(), h.value))
                        .collect();
                    assert_eq!(got, expected);
                }
                Parsed::Partial => {
                    partial += 1;
                    assert_eq!(
                        read,
                        Ok(httparse::Status::Partial),
                        "{:?}",
                        String::from_utf8_lossy(&buf)
                    );
                }
                Parsed::Other => {}
            }
        }
        assert!(plain > 10_000 && partial > 10_000, "{plain} {partial}");
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
