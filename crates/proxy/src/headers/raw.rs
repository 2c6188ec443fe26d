//! The rewriting of [`super`] for heads passed on as bytes: a plain
//! request's head for the server ([`request_head`]) and a server's response
//! head for the client ([`response_head`]), each written once into a
//! buffer, with the same result as the header-map functions give on the
//! general path (field names keep the case they were sent in).

use super::{new_request_id_bytes, valid_request_id, write_ip};
use crate::lane::{Answer, AnswerFraming, RawRequest};
use crate::wire::{Framing, RawHead};
use http::{HeaderValue, Method};
use std::net::IpAddr;

/// A request id as bytes: the client's when well-formed, else a new one.
#[derive(Clone, Copy)]
pub enum RawId<'a> {
    /// Made here.
    New([u8; 32]),
    /// The client's, in its request head.
    Given(&'a [u8]),
}

impl RawId<'_> {
    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            RawId::New(id) => id,
            RawId::Given(id) => id,
        }
    }

    /// The id as a header value (for a response built the general way).
    pub fn value(&self) -> HeaderValue {
        HeaderValue::from_bytes(self.as_bytes()).expect("a request id is a valid value")
    }
}

/// What a header field is to a proxy, worked out once per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Connection`.
    Connection,
    /// Another hop-by-hop field ([`super::HOP_BY_HOP`]) but `Transfer-Encoding`.
    HopByHop,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Content-Length`.
    ContentLength,
    /// `Host`.
    Host,
    /// `Date`.
    Date,
    /// `Expect`.
    Expect,
    /// `HTTP2-Settings`.
    Http2Settings,
    /// `X-Forwarded-For`.
    ForwardedFor,
    /// `X-Forwarded-Proto`.
    ForwardedProto,
    /// `X-Request-Id`.
    RequestId,
    /// `Trailer`.
    Trailer,
    /// `Cookie`.
    Cookie,
    /// Any other.
    Other,
}

/// The [`Kind`] of a field named `name`, a valid field name (tchars, as
/// [`crate::scan`] reads them): one comparison, chosen by length, eight
/// bytes at a time.
pub(crate) fn kind(name: &[u8]) -> Kind {
    let is = |s: &[u8]| same_name(name, s);
    match name.len() {
        2 if is(b"te") => Kind::HopByHop,
        4 if is(b"host") => Kind::Host,
        4 if is(b"date") => Kind::Date,
        6 if is(b"expect") => Kind::Expect,
        6 if is(b"cookie") => Kind::Cookie,
        7 if is(b"upgrade") => Kind::HopByHop,
        7 if is(b"trailer") => Kind::Trailer,
        10 if is(b"connection") => Kind::Connection,
        10 if is(b"keep-alive") => Kind::HopByHop,
        12 if is(b"x-request-id") => Kind::RequestId,
        14 if is(b"content-length") => Kind::ContentLength,
        14 if is(b"http2-settings") => Kind::Http2Settings,
        15 if is(b"x-forwarded-for") => Kind::ForwardedFor,
        16 if is(b"proxy-connection") => Kind::HopByHop,
        17 if is(b"transfer-encoding") => Kind::TransferEncoding,
        17 if is(b"x-forwarded-proto") => Kind::ForwardedProto,
        18 if is(b"proxy-authenticate") => Kind::HopByHop,
        _ => Kind::Other,
    }
}

/// Whether `name` (tchars) is `lower` (lowercase letters, digits and
/// dashes, as long as `name`) in any case. Setting bit 0x20 of every byte
/// makes a letter lowercase and leaves digits and `-` as they are; no other
/// tchar becomes one of them. Compared eight bytes at a time, the last
/// word overlapping the one before.
#[inline(always)]
fn same_name(name: &[u8], lower: &[u8]) -> bool {
    fn word(b: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    }
    const CASE: u64 = 0x2020_2020_2020_2020;
    let n = lower.len();
    if n <= 8 {
        let mask = u64::MAX >> (64 - 8 * n);
        return word(name) | (CASE & mask) == word(lower);
    }
    let mut i = 0;
    while i + 8 < n {
        if word(&name[i..i + 8]) | CASE != word(&lower[i..i + 8]) {
            return false;
        }
        i += 8;
    }
    word(&name[n - 8..]) | CASE == word(&lower[n - 8..])
}

impl Kind {
    /// Not passed on by a proxy (RFC 9110 7.6.1).
    pub fn hop_by_hop(self) -> bool {
        matches!(
            self,
            Kind::Connection | Kind::HopByHop | Kind::TransferEncoding
        )
    }
}

/// Where one header field sits in a head, and its [`Kind`].
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub(crate) name: (u32, u32),
    pub(crate) value: (u32, u32),
    /// What it is.
    pub kind: Kind,
}

impl Field {
    /// The field whose name and value are these slices of `head`.
    pub(crate) fn at(head: &[u8], name: &[u8], value: &[u8]) -> Field {
        let base = head.as_ptr() as usize;
        let n = (name.as_ptr() as usize - base) as u32;
        let v = (value.as_ptr() as usize - base) as u32;
        Field {
            name: (n, n + name.len() as u32),
            value: (v, v + value.len() as u32),
            kind: kind(name),
        }
    }

    /// Its name and value in `head`.
    pub fn get<'h>(&self, head: &'h [u8]) -> (&'h [u8], &'h [u8]) {
        (
            &head[self.name.0 as usize..self.name.1 as usize],
            &head[self.value.0 as usize..self.value.1 as usize],
        )
    }
}

/// Copies the lines of kept fields from a head into `out`, a run of
/// adjacent lines in one copy.
struct Lines<'h> {
    head: &'h [u8],
    run: Option<(usize, usize)>,
}

impl<'h> Lines<'h> {
    fn new(head: &'h [u8]) -> Self {
        Lines { head, run: None }
    }

    /// Copies field `f`'s line (as sent, when it ends in CRLF right after
    /// the value; else rebuilt with CRLF).
    fn keep(&mut self, f: &Field, out: &mut Vec<u8>) {
        let (start, end) = (f.name.0 as usize, f.value.1 as usize);
        if self.head.get(end..end + 2) == Some(b"\r\n") {
            match self.run {
                Some((from, to)) if to == start => self.run = Some((from, end + 2)),
                _ => {
                    self.flush(out);
                    self.run = Some((start, end + 2));
                }
            }
        } else {
            self.flush(out);
            out.extend_from_slice(&self.head[start..end]);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Copies what is pending.
    fn flush(&mut self, out: &mut Vec<u8>) {
        if let Some((from, to)) = self.run.take() {
            out.extend_from_slice(&self.head[from..to]);
        }
    }
}

/// Whether a head as [`response_head`] wrote it (status line, then one
/// field per CRLF line) has a field named `name` (any case).
pub fn has_field(head: &[u8], name: &[u8]) -> bool {
    head.split(|b| *b == b'\n').skip(1).any(|line| {
        line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name)
    })
}

#[inline(always)]
fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes the head of `req` as it goes to a server into `out`: its fields
/// less hop-by-hop ones, earlier `X-Forwarded-For` lines joined with
/// `client` appended, `X-Forwarded-Proto` set to `proto`, the request id
/// kept or made; with `cookies`, its `Cookie` fields replaced by these
/// values (e.g. with a load balancer's own cookie taken out). Returns the id.
pub fn request_head<'a>(
    req: &RawRequest<'a>,
    client: IpAddr,
    proto: &str,
    cookies: Option<&[String]>,
    out: &mut Vec<u8>,
) -> RawId<'a> {
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut id = None;
    let mut forwarded = false;
    let (head, fields) = req.parts();
    let mut lines = Lines::new(head);
    for f in fields {
        match f.kind {
            Kind::ForwardedFor => forwarded = true,
            Kind::RequestId => {
                let (_, value) = f.get(head);
                if id.is_none() && std::str::from_utf8(value).is_ok_and(valid_request_id) {
                    id = Some(RawId::Given(value));
                }
            }
            Kind::ForwardedProto => {}
            Kind::Cookie if cookies.is_some() => {}
            k if k.hop_by_hop() => {}
            _ => {
                lines.keep(f, out);
                continue;
            }
        }
        lines.flush(out);
    }
    lines.flush(out);
    for cookie in cookies.unwrap_or_default() {
        line(out, b"cookie", cookie.as_bytes());
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if forwarded {
        for (kind, _, value) in req.fields() {
            let value = value.trim_ascii();
            if kind == Kind::ForwardedFor && !value.is_empty() {
                out.extend_from_slice(value);
                out.extend_from_slice(b", ");
            }
        }
    }
    out.extend_from_slice(write_ip(&mut [0; 64], client));
    out.extend_from_slice(b"\r\n");
    line(out, b"x-forwarded-proto", proto.as_bytes());
    let id = id.unwrap_or_else(|| RawId::New(new_request_id_bytes()));
    line(out, b"x-request-id", id.as_bytes());
    out.extend_from_slice(b"\r\n");
    id
}

/// Writes the head of `resp` (to a `method` request) as it goes to the
/// client into `out` (no framing field, no blank line: see [`Answer`]): the
/// status line, its fields less hop-by-hop ones, those its `Connection`
/// names, its framing (the lane writes its own), any `X-Request-Id`, and a
/// `Trailer` where no chunked body could follow (as hyper leaves it out),
/// then `id`. Returns how the body is to be framed.
pub fn response_head(
    resp: &RawHead,
    method: &Method,
    id: &RawId<'_>,
    out: &mut Vec<u8>,
) -> AnswerFraming {
    Answer::status_line(resp.status, out);
    let status = resp.status;
    // A response without a body keeps its Content-Length (a HEAD's says
    // how long the GET's body is, a 304's the representation's), but for
    // the statuses that must not have one (RFC 9110 8.6: 1xx and 204); any
    // other gets the lane's own.
    let keep_length = resp.framing == Framing::Empty
        && !resp.drop_length
        && !(status.is_informational() || status == http::StatusCode::NO_CONTENT);
    let no_body = *method == Method::HEAD
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    end_to_end(resp, out, |kind| match kind {
        Kind::RequestId => true,
        Kind::ContentLength => !keep_length,
        Kind::Trailer => no_body,
        k => k.hop_by_hop(),
    });
    line(out, b"x-request-id", id.as_bytes());
    match resp.framing {
        Framing::Empty => AnswerFraming::None,
        Framing::Length(n) => AnswerFraming::Length(n),
        Framing::Chunked | Framing::Close => AnswerFraming::Chunked,
    }
}

/// An interim response (1xx but 101) as the client is to get it, whole
/// (status line, end-to-end fields, blank line), appended to `out`.
pub fn interim_head(resp: &RawHead, out: &mut Vec<u8>) {
    Answer::status_line(resp.status, out);
    end_to_end(resp, out, |kind| {
        matches!(kind, Kind::ContentLength | Kind::Trailer | Kind::RequestId) || kind.hop_by_hop()
    });
    out.extend_from_slice(b"\r\n");
}

/// Copies `resp`'s fields to `out` but those `skip` names by kind and
/// those its `Connection` field names (other than close and keep-alive).
fn end_to_end(resp: &RawHead, out: &mut Vec<u8>, skip: impl Fn(Kind) -> bool) {
    let mut named: Vec<&[u8]> = Vec::new();
    if resp.connection_names {
        for (kind, _, value) in resp.fields() {
            if kind == Kind::Connection {
                named.extend(value.split(|b| *b == b',').map(<[u8]>::trim_ascii));
            }
        }
    }
    let (head, fields) = resp.parts();
    let mut lines = Lines::new(head);
    for f in fields {
        if skip(f.kind)
            || (!named.is_empty() && named.iter().any(|n| n.eq_ignore_ascii_case(f.get(head).0)))
        {
            lines.flush(out);
        } else {
            lines.keep(f, out);
        }
    }
    lines.flush(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane::request::{self, Parsed};
    use bytes::BytesMut;

    fn upstream_head(raw: &str, client: &str) -> (String, Vec<u8>) {
        let mut fields = Vec::new();
        let Parsed::Plain { method, target, .. } = request::parse(raw.as_bytes(), &mut fields)
        else {
            panic!("not plain: {raw}")
        };
        let req = request::request(raw.as_bytes(), &fields, method, target);
        let mut out = Vec::new();
        let id = request_head(&req, client.parse().unwrap(), "http", None, &mut out);
        (String::from_utf8(out).unwrap(), id.as_bytes().to_vec())
    }

    /// Every known name in any case is its kind; a name one tchar away
    /// from one (every tchar at every place) is not.
    #[test]
    fn names_are_known_in_any_case_and_only_exactly() {
        const KNOWN: [(&str, Kind); 17] = [
            ("te", Kind::HopByHop),
            ("host", Kind::Host),
            ("date", Kind::Date),
            ("expect", Kind::Expect),
            ("cookie", Kind::Cookie),
            ("upgrade", Kind::HopByHop),
            ("trailer", Kind::Trailer),
            ("connection", Kind::Connection),
            ("keep-alive", Kind::HopByHop),
            ("x-request-id", Kind::RequestId),
            ("content-length", Kind::ContentLength),
            ("http2-settings", Kind::Http2Settings),
            ("x-forwarded-for", Kind::ForwardedFor),
            ("proxy-connection", Kind::HopByHop),
            ("transfer-encoding", Kind::TransferEncoding),
            ("x-forwarded-proto", Kind::ForwardedProto),
            ("proxy-authenticate", Kind::HopByHop),
        ];
        let tchars: Vec<u8> = (0..=255u8)
            .filter(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
            .collect();
        for (name, expected) in KNOWN {
            let upper = name.to_ascii_uppercase();
            let mixed: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            for n in [name, upper.as_str(), mixed.as_str()] {
                assert_eq!(kind(n.as_bytes()), expected, "{n}");
            }
            for at in 0..name.len() {
                for &t in &tchars {
                    let mut other = name.as_bytes().to_vec();
                    other[at] = t;
                    if !other.eq_ignore_ascii_case(name.as_bytes()) {
                        assert_eq!(
                            kind(&other),
                            Kind::Other,
                            "{:?}",
                            String::from_utf8_lossy(&other)
                        );
                    }
                }
            }
        }
        assert_eq!(kind(b"x"), Kind::Other);
    }

    #[test]
    fn a_field_is_found_in_a_written_head_by_its_name_in_any_case() {
        let head = b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nx-a: 1\r\n";
        assert!(has_field(head, b"cache-control"));
        assert!(has_field(head, b"X-A"));
        assert!(!has_field(head, b"x-"));
        assert!(!has_field(
            b"HTTP/1.1 200 Cache-Control: x\r\n",
            b"cache-control"
        ));
    }

    #[test]
    fn a_request_goes_up_with_forwarding_fields_and_without_hop_by_hop_ones() {
        let (head, id) = upstream_head(
            "GET /a?b HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\nKeep-Alive: 5\r\nConnection: keep-alive\r\nX-Forwarded-Proto: https\r\nx-forwarded-for: 10.0.0.2 \r\nAccept: */*\r\n\r\n",
            "192.168.1.20",
        );
        assert_eq!(id.len(), 32);
        assert_eq!(
            head,
            format!(
                "GET /a?b HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nx-forwarded-for: 10.0.0.1, 10.0.0.2, 192.168.1.20\r\nx-forwarded-proto: http\r\nx-request-id: {}\r\n\r\n",
                std::str::from_utf8(&id).unwrap()
            )
        );
    }

    #[test]
    fn a_well_formed_request_id_is_kept_and_a_bad_one_replaced() {
        let (head, id) = upstream_head(
            "HEAD / HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123\r\n\r\n",
            "::1",
        );
        assert_eq!(id, b"abc-123");
        assert!(head.starts_with("HEAD / HTTP/1.1\r\nHost: x\r\nx-forwarded-for: ::1\r\n"));
        assert!(head.ends_with("x-request-id: abc-123\r\n\r\n"), "{head}");
        let (head, id) = upstream_head(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: bad id\r\n\r\n",
            "::1",
        );
        assert_eq!(id.len(), 32);
        assert_eq!(head.matches("x-request-id").count(), 1);
        assert!(!head.contains("bad id"));
    }

    fn client_head(raw: &str, method: &Method) -> (String, AnswerFraming) {
        let resp = crate::wire::parse_head(&mut BytesMut::from(raw), method)
            .unwrap()
            .unwrap();
        let (_, id) = upstream_head(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: r1\r\n\r\n",
            "::1",
        );
        let mut out = Vec::new();
        let framing = response_head(&resp, method, &RawId::Given(&id), &mut out);
        (String::from_utf8(out).unwrap(), framing)
    }

    #[test]
    fn a_response_goes_back_without_hop_by_hop_fields_or_its_framing() {
        let (head, framing) = client_head(
            "HTTP/1.1 200 OK\r\nServer: s\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 5\r\nX-Request-Id: other\r\nETag: \"e\"\r\n\r\n",
            &Method::GET,
        );
        assert_eq!(framing, AnswerFraming::Length(5));
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nServer: s\r\nETag: \"e\"\r\nx-request-id: r1\r\n"
        );
        let (head, framing) = client_head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            &Method::GET,
        );
        assert_eq!(framing, AnswerFraming::Chunked);
        assert_eq!(head, "HTTP/1.1 200 OK\r\nx-request-id: r1\r\n");
        let (_, framing) = client_head("HTTP/1.1 200 OK\r\n\r\n", &Method::GET);
        assert_eq!(framing, AnswerFraming::Chunked, "until close: chunked");
    }

    #[test]
    fn a_response_without_a_body_keeps_its_length() {
        let (head, framing) = client_head(
            "HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n",
            &Method::HEAD,
        );
        assert_eq!(framing, AnswerFraming::None);
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nContent-Length: 4096\r\nx-request-id: r1\r\n"
        );
    }
}
