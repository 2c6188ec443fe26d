//! Session persistence by cookie, like HAProxy's `cookie NAME insert
//! indirect nocache`: the load balancer names the server that answered in a
//! cookie of its own; a request carrying it goes back to that server while it
//! is up and not in maintenance (draining servers keep their sessions). The
//! cookie is taken out of the request before it is forwarded (the servers
//! never see it), and a response that sets it is marked `Cache-Control:
//! private` unless it says otherwise, so no shared cache keeps it.
//!
//! The general path works on header maps ([`take`], [`set`]), the fast
//! lane on bytes ([`split`], [`set_raw`]); both share the rules here.

use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

/// Removes cookie `name` from the request's `Cookie` headers; returns its value.
pub fn take(headers: &mut HeaderMap, name: &str) -> Option<String> {
    if !headers.contains_key(COOKIE) {
        return None;
    }
    let values = headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes);
    let (found, kept) = split(values, name)?;
    headers.remove(COOKIE);
    for k in kept {
        if let Ok(v) = HeaderValue::from_str(&k) {
            headers.append(COOKIE, v);
        }
    }
    Some(found)
}

/// Cookie `name` among a request's `Cookie` field values: its value, and
/// each field's other cookies (`; `-joined, empty fields left out). None
/// when it is not there, or when a value is not visible ASCII text (the
/// fields are then passed on as they are).
pub fn split<'v>(
    values: impl IntoIterator<Item = &'v [u8]>,
    name: &str,
) -> Option<(String, Vec<String>)> {
    let mut found = None;
    let mut kept: Vec<String> = Vec::new();
    for v in values {
        // What `HeaderValue::to_str` accepts (so valid UTF-8 too).
        if !v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return None;
        }
        let text = std::str::from_utf8(v).ok()?;
        let pairs: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .filter(|p| match p.split_once('=') {
                Some((n, v)) if n.trim() == name => {
                    found.get_or_insert_with(|| v.trim().trim_matches('"').to_string());
                    false
                }
                _ => true,
            })
            .collect();
        if !pairs.is_empty() {
            kept.push(pairs.join("; "));
        }
    }
    Some((found?, kept))
}

/// Pins the client to `server` (a server name: letters, digits, '-', '_').
pub fn set(headers: &mut HeaderMap, name: &str, server: &str, secure: bool) {
    if let Ok(v) = HeaderValue::from_str(&cookie(name, server, secure)) {
        headers.append(SET_COOKIE, v);
        if !headers.contains_key(CACHE_CONTROL) {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("private"));
        }
    }
}

/// [`set`] on a response head as bytes (lines ending in CRLF, no blank line).
pub fn set_raw(head: &mut Vec<u8>, name: &str, server: &str, secure: bool) {
    let cached = webinfra_proxy::headers::raw::has_field(head, b"cache-control");
    head.extend_from_slice(b"set-cookie: ");
    head.extend_from_slice(cookie(name, server, secure).as_bytes());
    head.extend_from_slice(b"\r\n");
    if !cached {
        head.extend_from_slice(b"cache-control: private\r\n");
    }
}

/// The `Set-Cookie` value that pins a client to `server`.
fn cookie(name: &str, server: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={server}; Path=/; HttpOnly; SameSite=Lax{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_taken_out_and_the_others_kept() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; SERVERID=s2; b=2".parse().unwrap());
        h.append(COOKIE, "c=3".parse().unwrap());
        assert_eq!(take(&mut h, "SERVERID").as_deref(), Some("s2"));
        let left: Vec<&str> = h
            .get_all(COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(left, ["a=1; b=2", "c=3"]);
        let mut only = HeaderMap::new();
        only.append(COOKIE, "SERVERID=s1".parse().unwrap());
        assert_eq!(take(&mut only, "SERVERID").as_deref(), Some("s1"));
        assert!(!only.contains_key(COOKIE));
        let mut none = HeaderMap::new();
        none.append(COOKIE, "SERVERIDX=1".parse().unwrap());
        assert_eq!(take(&mut none, "SERVERID"), None);
        assert_eq!(none.get(COOKIE).unwrap(), "SERVERIDX=1");
    }

    #[test]
    fn on_bytes_the_same_rules_hold() {
        let values: [&[u8]; 2] = [b"a=1; SERVERID=\"s2\"", b"SERVERID=s3"];
        let (found, kept) = split(values, "SERVERID").unwrap();
        assert_eq!((found.as_str(), kept), ("s2", vec!["a=1".to_string()]));
        assert!(split([b"a=1".as_slice()], "SERVERID").is_none());
        // A value that is not visible ASCII leaves every field as it was.
        assert!(split([b"SERVERID=s1".as_slice(), b"b=\xff"], "SERVERID").is_none());
        let mut head = b"HTTP/1.1 200 OK\r\nX-A: 1\r\n".to_vec();
        set_raw(&mut head, "SERVERID", "server-01", true);
        assert_eq!(
            head,
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\nset-cookie: SERVERID=server-01; Path=/; HttpOnly; SameSite=Lax; Secure\r\ncache-control: private\r\n"
        );
        let mut cached = b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\n".to_vec();
        set_raw(&mut cached, "SERVERID", "a", false);
        assert!(cached.ends_with(b"SameSite=Lax\r\n"), "{cached:?}");
    }

    #[test]
    fn setting_it_keeps_the_response_out_of_shared_caches() {
        let mut h = HeaderMap::new();
        set(&mut h, "SERVERID", "server-01", true);
        assert_eq!(
            h.get(SET_COOKIE).unwrap(),
            "SERVERID=server-01; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(h.get(CACHE_CONTROL).unwrap(), "private");
        let mut cached = HeaderMap::new();
        cached.insert(CACHE_CONTROL, "no-store".parse().unwrap());
        set(&mut cached, "SERVERID", "a", false);
        assert_eq!(cached.get(CACHE_CONTROL).unwrap(), "no-store");
    }
}
