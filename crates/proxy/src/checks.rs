//! What a request must pass before a proxy forwards it: a method a reverse
//! proxy serves, a request target (at most 8 KiB) and `Host` a server behind
//! us reads the same way we do (RFC 9112 3.2), and unambiguous body framing
//! (RFC 9112 6).
//!
//! A refusal is a status and a short reason; the caller answers with it and
//! closes the connection, since what follows the head cannot be trusted.

use http::header::{self, HeaderMap, HeaderValue};
use http::{request::Parts, Method, StatusCode, Version};

/// Why a request was refused: its status and a one-line body.
pub type Refusal = (StatusCode, &'static str);

/// Runs every check on `parts`, and gives an absolute-form or HTTP/2
/// request its target's authority as `Host` (RFC 9112 3.2.2, RFC 9113 8.3.1).
pub fn request(parts: &mut Parts) -> Result<(), Refusal> {
    method(&parts.method)?;
    target(parts)?;
    drop_underscored(&mut parts.headers);
    framing(&parts.headers)
}

/// Fields a proxy reads or writes itself (framing, hop-by-hop, forwarding,
/// the request id), lowercase: the names [`underscored`] protects.
const MANAGED: [&[u8]; 17] = [
    b"transfer-encoding",
    b"content-length",
    b"host",
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
    b"expect",
    b"cookie",
    b"forwarded",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-real-ip",
    b"x-request-id",
];

/// Whether `name` is a field the proxy manages written with `_` for `-`
/// (`Transfer_Encoding`, `X_Forwarded_For`). Servers behind a proxy that
/// read fields CGI-style (PHP, WSGI, Rack: `HTTP_TRANSFER_ENCODING`) take
/// `_` and `-` alike, so such a field would reach them as the real one,
/// unchecked; it is dropped, as nginx's `underscores_in_headers off` does.
pub fn underscored(name: &[u8]) -> bool {
    if name.len() > 17 || !has_underscore(name) {
        return false;
    }
    let mut dashed = [0u8; 17];
    for (d, b) in dashed.iter_mut().zip(name) {
        *d = if *b == b'_' {
            b'-'
        } else {
            b.to_ascii_lowercase()
        };
    }
    MANAGED.contains(&&dashed[..name.len()])
}

/// Whether `name` (at most 17 bytes) holds a `_`: on the fast lane's path
/// for every field, so eight bytes at a time (overlapping words, as
/// `headers::raw` compares names), not a byte loop.
#[inline]
fn has_underscore(name: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A word with a byte equal to `_` has a zero byte after the xor.
    let any = |at: usize| {
        let w = u64::from_le_bytes(name[at..at + 8].try_into().expect("8 bytes")) ^ (ONES * 0x5f);
        w.wrapping_sub(ONES) & !w & HIGH != 0
    };
    match name.len() {
        0..=7 => name.contains(&b'_'),
        n => any(0) || (n > 16 && any(8)) || any(n - 8),
    }
}

/// Removes every [`underscored`] field.
fn drop_underscored(headers: &mut HeaderMap) {
    let names: Vec<header::HeaderName> = headers
        .keys()
        .filter(|n| underscored(n.as_str().as_bytes()))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// Refuses methods a reverse proxy does not forward: `CONNECT` asks for a
/// tunnel to an address of the client's choosing (501).
pub fn method(method: &Method) -> Result<(), Refusal> {
    if method == Method::CONNECT {
        return Err((
            StatusCode::NOT_IMPLEMENTED,
            "501 Not Implemented: CONNECT is not supported by a reverse proxy",
        ));
    }
    Ok(())
}

/// Longest request target forwarded, in bytes; longer ones get 414. nginx
/// and Apache stop a request line at 8 KiB by default, so an application
/// behind a proxy rarely sees longer targets.
pub const MAX_TARGET: usize = 8 * 1024;

const BAD_TARGET: Refusal = (
    StatusCode::BAD_REQUEST,
    "400 Bad Request: the request target must be a path, an http(s) URL, or * for OPTIONS",
);

/// The request target and `Host`: one valid `Host` (required from HTTP/1.1
/// on), no user info, and an absolute target's authority wins over `Host`.
fn target(parts: &mut Parts) -> Result<(), Refusal> {
    let uri = &parts.uri;
    let length = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if length > MAX_TARGET {
        return Err((
            StatusCode::URI_TOO_LONG,
            "414 URI Too Long: the request target is over 8 KiB",
        ));
    }
    if uri.path() == "*" && parts.method != Method::OPTIONS {
        return Err(BAD_TARGET);
    }
    // RFC 3986: a URI is ASCII; clients percent-encode anything else. Raw
    // bytes above 0x7f could be decoded differently by a server behind us.
    if uri.path_and_query().is_some_and(|p| !p.as_str().is_ascii()) {
        return Err((
            StatusCode::BAD_REQUEST,
            "400 Bad Request: the request target must be ASCII (percent-encode other bytes)",
        ));
    }
    let hosts = parts.headers.get_all(header::HOST).iter().count();
    if hosts > 1 {
        return Err((
            StatusCode::BAD_REQUEST,
            "400 Bad Request: more than one Host header",
        ));
    }
    let Some(authority) = uri.authority() else {
        return match parts.headers.get(header::HOST) {
            Some(h) if valid_host(h.as_bytes()) => Ok(()),
            Some(_) => Err((StatusCode::BAD_REQUEST, "400 Bad Request: invalid Host")),
            None if parts.version >= Version::HTTP_11 => Err((
                StatusCode::BAD_REQUEST,
                "400 Bad Request: an HTTP/1.1 request needs a Host header",
            )),
            None => Ok(()),
        };
    };
    // RFC 9112 3.2: an HTTP/1.1 request carries Host even with an absolute
    // target (HTTP/2 has :authority instead).
    if parts.version == Version::HTTP_11 && hosts == 0 {
        return Err((
            StatusCode::BAD_REQUEST,
            "400 Bad Request: an HTTP/1.1 request needs a Host header, even with an absolute target",
        ));
    }
    // Authority-form is only for CONNECT, refused above.
    let scheme = uri.scheme_str().unwrap_or("");
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(BAD_TARGET);
    }
    if !valid_host(authority.as_str().as_bytes()) {
        return Err((
            StatusCode::BAD_REQUEST,
            "400 Bad Request: invalid authority in the request target (user info is not allowed)",
        ));
    }
    let value = HeaderValue::from_str(authority.as_str()).map_err(|_| BAD_TARGET)?;
    if parts.version == Version::HTTP_2 {
        // RFC 9113 8.3.1: a Host naming another authority is malformed.
        if let Some(h) = parts.headers.get(header::HOST) {
            if !h.as_bytes().eq_ignore_ascii_case(value.as_bytes()) {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "400 Bad Request: Host differs from :authority",
                ));
            }
        }
    }
    parts.headers.insert(header::HOST, value);
    Ok(())
}

/// The bytes of a reg-name (RFC 3986 3.2.2): unreserved, sub-delims, `%`.
const REG_NAME: [bool; 256] = byte_set(b"-._~%!$&'()*+,;=");

/// A lookup table of the ASCII letters and digits and `extra`.
pub(crate) const fn byte_set(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// `uri-host [ ":" port ]` (RFC 9110 7.2, RFC 3986 3.2.2): a bracketed IP
/// literal or a non-empty reg-name, digits for the port; no user info.
pub(crate) fn valid_host(v: &[u8]) -> bool {
    let (host, rest) = if v.first() == Some(&b'[') {
        match v.iter().position(|b| *b == b']') {
            Some(end) => v.split_at(end + 1),
            None => return false,
        }
    } else {
        match v.iter().position(|b| *b == b':') {
            Some(i) => v.split_at(i),
            None => (v, &[][..]),
        }
    };
    let host_ok = if let Some(literal) = host.strip_prefix(b"[") {
        let literal = &literal[..literal.len() - 1];
        !literal.is_empty()
            && literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b":.vV".contains(b))
    } else {
        !host.is_empty() && host.iter().all(|b| REG_NAME[*b as usize])
    };
    let port_ok = match rest.split_first() {
        None => true,
        Some((b':', port)) => port.len() <= 5 && port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    host_ok && port_ok
}

/// Refuses request framing a server behind us could read differently
/// (request smuggling): `Content-Length` together with `Transfer-Encoding`
/// is a 400, a transfer coding other than `chunked` is a 501 (we do not
/// implement it, and stripping it would change the body's meaning).
pub fn framing(headers: &HeaderMap) -> Result<(), Refusal> {
    let te: Vec<&[u8]> = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if te.is_empty() {
        return Ok(());
    }
    if headers.contains_key(header::CONTENT_LENGTH) {
        return Err((
            StatusCode::BAD_REQUEST,
            "400 Bad Request: both Content-Length and Transfer-Encoding",
        ));
    }
    let codings: Vec<&[u8]> = te
        .iter()
        .flat_map(|v| v.split(|b| *b == b','))
        .map(|c| c.trim_ascii())
        .filter(|c| !c.is_empty())
        .collect();
    let chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
    // RFC 9112 6.3: chunked must be the final coding, and applied once.
    let times = codings.iter().filter(|c| chunked(c)).count();
    if !codings.last().is_some_and(|c| chunked(c)) || times > 1 {
        return Err((
            StatusCode::BAD_REQUEST,
            "400 Bad Request: chunked must be the final transfer coding, applied once",
        ));
    }
    if codings.len() > 1 {
        return Err((
            StatusCode::NOT_IMPLEMENTED,
            "501 Not Implemented: only the chunked transfer coding is supported",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_that_could_smuggle_is_refused() {
        let mut h = HeaderMap::new();
        assert!(framing(&h).is_ok());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert!(framing(&h).is_ok());
        h.insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        assert_eq!(framing(&h).unwrap_err().0, 400);
        h.remove(header::CONTENT_LENGTH);
        h.insert(header::TRANSFER_ENCODING, "gzip, chunked".parse().unwrap());
        assert_eq!(framing(&h).unwrap_err().0, 501);
    }

    #[test]
    fn hosts() {
        for ok in [
            "a",
            "www.foobar.com",
            "www.foobar.com:8080",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8443",
            "xn--bcher-kva.example",
            "a:",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", ":80", "a b", "a/b", "u@a", "a:b", "a:123456", "[::1", "[]", "[::1]x", "a\\b",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    fn parts(raw_target: &str, version: Version, hosts: &[&str]) -> Parts {
        let mut b = http::Request::builder()
            .method(Method::GET)
            .uri(raw_target)
            .version(version);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn fields_that_read_as_framing_with_underscores_are_dropped() {
        assert!(underscored(b"Transfer_Encoding"));
        assert!(underscored(b"content_length"));
        assert!(underscored(b"X_Forwarded_For"));
        assert!(underscored(b"x-request_id"));
        assert!(!underscored(b"X_Custom_Header"));
        assert!(!underscored(b"Transfer-Encoding"));
        for (name, has) in [
            ("te", false),
            ("t_", true),
            ("user-agent", false),
            ("user_agent", true),
            ("x-forwarded-prot_", true),
            ("_-forwarded-proto", true),
            ("x-forwarded_proto", true),
            ("accept-encoding", false),
            ("abcdefgh", false),
            ("abcdefg_", true),
        ] {
            assert_eq!(has_underscore(name.as_bytes()), has, "{name}");
        }
        let mut p = parts("/", Version::HTTP_11, &["a"]);
        p.headers
            .insert("transfer_encoding", "chunked".parse().unwrap());
        p.headers.insert("content-length", "5".parse().unwrap());
        p.headers.insert("x_custom", "kept".parse().unwrap());
        assert!(request(&mut p).is_ok());
        assert!(!p.headers.contains_key("transfer_encoding"));
        assert_eq!(p.headers["x_custom"], "kept");
    }

    #[test]
    fn host_rules() {
        let check = |t, v, h: &[&str]| request(&mut parts(t, v, h)).map_err(|e| e.0.as_u16());
        assert_eq!(check("/", Version::HTTP_11, &["a"]), Ok(()));
        assert_eq!(check("/", Version::HTTP_11, &[]), Err(400));
        assert_eq!(check("/", Version::HTTP_10, &[]), Ok(()));
        assert_eq!(check("/", Version::HTTP_11, &["a", "b"]), Err(400));
        assert_eq!(check("/", Version::HTTP_11, &["a b"]), Err(400));
        assert_eq!(check("*", Version::HTTP_11, &["a"]), Err(400));
        assert_eq!(check("a:80", Version::HTTP_11, &["a"]), Err(400));
        assert_eq!(check("ftp://a/x", Version::HTTP_11, &["a"]), Err(400));
        assert_eq!(check("http://u@a/x", Version::HTTP_11, &["a"]), Err(400));
        assert_eq!(check("https://b/", Version::HTTP_2, &["c"]), Err(400));
        assert_eq!(check("https://b/", Version::HTTP_2, &["B"]), Ok(()));
        // An absolute target does not stand in for Host in HTTP/1.1 (RFC 9112 3.2).
        assert_eq!(check("http://b/x", Version::HTTP_11, &[]), Err(400));
        assert_eq!(check("http://b/x", Version::HTTP_10, &[]), Ok(()));
        assert_eq!(check("https://b/", Version::HTTP_2, &[]), Ok(()));
    }

    #[test]
    fn the_target_authority_becomes_the_host() {
        let mut p = parts("http://b.example:81/x?y", Version::HTTP_11, &["a"]);
        assert!(request(&mut p).is_ok());
        assert_eq!(p.headers[header::HOST], "b.example:81");
        let mut p = parts("https://b.example/", Version::HTTP_2, &[]);
        assert!(request(&mut p).is_ok());
        assert_eq!(p.headers[header::HOST], "b.example");
        let mut p = http::Request::options("*").body(()).unwrap().into_parts().0;
        p.headers.insert(header::HOST, "a".parse().unwrap());
        assert!(request(&mut p).is_ok());
    }
}
