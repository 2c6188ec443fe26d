//! Header rewriting on the way through a proxy: hop-by-hop headers, the
//! `X-Forwarded-*` family and the request id.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

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
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including any named in `Connection`. A
/// request's `TE: trailers` goes on as just that: we pass trailers through,
/// so the next hop may send them (other codings in `TE` are ours to refuse).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one pass over the names is cheaper
    // than a lookup per hop-by-hop name.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let trailers = headers
        .get_all(header::TE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
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
    let mut value = String::new();
    // Earlier hops' lines, in order (a client may send several).
    for prev in headers.get_all(&FORWARDED_FOR).iter() {
        if let Ok(prev) = prev.to_str().map(str::trim) {
            if !prev.is_empty() {
                value.push_str(prev);
                value.push_str(", ");
            }
        }
    }
    use std::fmt::Write as _;
    let _ = write!(value, "{client}");
    // `insert` replaces every earlier X-Forwarded-For line.
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(FORWARDED_FOR, v);
    }
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
    let id = HeaderValue::from_bytes(&new_request_id_bytes()).expect("hex is a valid header value");
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
fn new_request_id_bytes() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = rand::random::<u128>();
    let mut out = [0u8; 32];
    for b in out.iter_mut().rev() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    out
}

fn valid_request_id(id: &str) -> bool {
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
