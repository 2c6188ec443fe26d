//! Header rewriting on the way through a proxy: hop-by-hop headers, the
//! `X-Forwarded-*` family and the request id; [`raw`] does the same for
//! heads passed on as bytes (the fast lane).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

pub mod raw;
pub mod rules;

/// The request id header, generated at the edge and passed to every tier.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Appended with each proxy's client address.
pub const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The scheme the client used at the edge.
pub const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// Which server answered.
pub const SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// Headers that describe one connection and must not be forwarded (RFC 9110
/// 7.6.1). `Trailer` is not one of them: it tells the far end which trailer
/// fields follow the body, and trailers are passed on.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// The hop-by-hop names, lowercase.
pub(crate) const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including any named in `Connection`. A
/// request's `TE: trailers` goes on as just that: we pass trailers through,
/// so the next hop may send them (other codings in `TE` are ours to refuse).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the fields finds the few hop-by-hop names present (most
    // messages carry none, or only `Connection`) and reads the two whose
    // values matter, without a lookup per name.
    let mut present: [Option<HeaderName>; 7] = Default::default();
    let mut found = 0;
    let mut named: Vec<HeaderName> = Vec::new();
    let mut trailers = false;
    for (name, value) in headers.iter() {
        if !is_hop_by_hop(name) {
            continue;
        }
        if found < present.len() && !present[..found].iter().flatten().any(|n| n == name) {
            present[found] = Some(name.clone());
            found += 1;
        }
        let tokens = value
            .as_bytes()
            .split(|b| *b == b',')
            .map(<[u8]>::trim_ascii);
        if name == header::CONNECTION {
            // `Connection: keep-alive` and `close` name nothing else.
            named.extend(
                tokens
                    .filter(|t| {
                        !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive")
                    })
                    .filter_map(|t| HeaderName::from_bytes(t).ok())
                    .filter(|n| !is_hop_by_hop(n)),
            );
        } else if name == header::TE {
            trailers |= tokens
                .into_iter()
                .any(|t| t.eq_ignore_ascii_case(b"trailers"));
        }
    }
    for name in named.iter().chain(present[..found].iter().flatten()) {
        headers.remove(name);
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The protocol an HTTP/1.1 request asks to switch to (`Connection: upgrade`
/// with `Upgrade: websocket`, say), if it asks. `h2c` is never passed on:
/// a tunnel of HTTP/2 to the server would carry requests we never see
/// ("h2c smuggling"); like HAProxy, such a request is served as plain HTTP/1.1.
pub fn upgrade_requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
        .filter(|p| {
            !p.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().to_ascii_lowercase().starts_with(b"h2c"))
        })
}

/// Puts back the two headers of a protocol switch after hop-by-hop stripping.
pub fn keep_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Prepares the headers of a request whose body we send in our own framing
/// (its length, or chunked, is set when sending) after answering any
/// `Expect: 100-continue` ourselves.
pub fn reframe_body(headers: &mut HeaderMap) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::EXPECT);
}

/// Appends `client` to `X-Forwarded-For` (one comma-separated value, like HAProxy's `option forwardfor`).
pub fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let mut ip = [0u8; 64];
    let ip = write_ip(&mut ip, client);
    // Earlier hops' lines, in order (a client may send several); one lookup.
    let lines = headers.get_all(&FORWARDED_FOR);
    let earlier = || {
        lines
            .iter()
            .map(|prev| prev.as_bytes().trim_ascii())
            .filter(|prev| !prev.is_empty())
    };
    // Exactly as long as the value: the bytes become the header value
    // without another allocation.
    let len = earlier().map(|p| p.len() + 2).sum::<usize>() + ip.len();
    let mut value = Vec::with_capacity(len);
    for prev in earlier() {
        value.extend_from_slice(prev);
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(ip);
    // `insert` replaces every earlier X-Forwarded-For line.
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        headers.insert(FORWARDED_FOR, v);
    }
}

/// `ip` as text in `buf` (IPv4 by hand: the formatter is slow for a
/// per-request header; IPv6 through `Display`).
pub(crate) fn write_ip(buf: &mut [u8; 64], ip: IpAddr) -> &[u8] {
    let mut n = 0;
    match ip {
        IpAddr::V4(v4) => {
            let mut push = |b: u8| {
                buf[n] = b;
                n += 1;
            };
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    push(b'.');
                }
                if octet >= 100 {
                    push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    push(b'0' + octet / 10 % 10);
                }
                push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(_) => {
            use std::io::Write as _;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{ip}");
            n = cursor.position() as usize;
        }
    }
    &buf[..n]
}

/// Sets `X-Forwarded-Proto` at the edge (the load balancer knows the scheme).
pub fn set_forwarded_proto(headers: &mut HeaderMap, proto: &'static str) {
    headers.insert(FORWARDED_PROTO, HeaderValue::from_static(proto));
}

/// Keeps a well-formed incoming `X-Request-Id` or replaces it with a new one; returns it.
pub fn ensure_request_id(headers: &mut HeaderMap) -> RequestId {
    if let Some(id) = headers.get(&REQUEST_ID) {
        if id.to_str().is_ok_and(valid_request_id) {
            return RequestId(id.clone());
        }
    }
    // Shared from the start: the clones below cost no allocation.
    let id = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(new_request_id_bytes()))
        .expect("hex is a valid header value");
    headers.insert(REQUEST_ID, id.clone());
    RequestId(id)
}

/// A request's id, as carried in `X-Request-Id` (cheap to clone, prints as text).
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.to_str().unwrap_or("-"))
    }
}

/// A new random request id: 32 lowercase hex digits.
pub(crate) fn new_request_id_bytes() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = rand::random::<u128>();
    let mut out = [0u8; 32];
    for b in out.iter_mut().rev() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    out
}

pub(crate) fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TE, "gzip, trailers;q=1".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
        h.insert(header::TE, "gzip, trailers".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h[header::TE], "trailers");
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, "10.0.0.1".parse().unwrap());
        append_forwarded_for(&mut h, "127.0.0.1".parse().unwrap());
        assert_eq!(h[&FORWARDED_FOR], "10.0.0.1, 127.0.0.1");
        // Several lines are one list, in order.
        h.append(FORWARDED_FOR, "10.0.0.9".parse().unwrap());
        append_forwarded_for(&mut h, "127.0.0.2".parse().unwrap());
        assert_eq!(h.get_all(&FORWARDED_FOR).iter().count(), 1);
        assert_eq!(
            h[&FORWARDED_FOR],
            "10.0.0.1, 127.0.0.1, 10.0.0.9, 127.0.0.2"
        );
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.200.1.19",
            "::1",
            "2001:db8::7",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let mut h = HeaderMap::new();
            append_forwarded_for(&mut h, ip.parse().unwrap());
            assert_eq!(h[&FORWARDED_FOR], ip);
        }
    }

    #[test]
    fn new_request_ids_are_32_hex_digits_and_distinct() {
        let ids: std::collections::HashSet<[u8; 32]> =
            (0..10_000).map(|_| new_request_id_bytes()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            let text = std::str::from_utf8(id).unwrap();
            let n = u128::from_str_radix(text, 16).unwrap();
            assert_eq!(format!("{n:032x}"), text);
        }
    }

    #[test]
    fn request_id_kept_when_valid_replaced_when_not() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, "abc-123".parse().unwrap());
        assert_eq!(ensure_request_id(&mut h).to_string(), "abc-123");
        h.insert(REQUEST_ID, "bad id with spaces".parse().unwrap());
        let id = ensure_request_id(&mut h).to_string();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_eq!(h[&REQUEST_ID], id.as_str());
    }
}
