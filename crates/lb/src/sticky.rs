//! Session persistence by cookie, like HAProxy's `cookie NAME insert
//! indirect nocache`: the load balancer names the server that answered in a
//! cookie of its own; a request carrying it goes back to that server while it
//! is up and not in maintenance (draining servers keep their sessions). The
//! cookie is taken out of the request before it is forwarded (the servers
//! never see it), and a response that sets it is marked `Cache-Control:
//! private` unless it says otherwise, so no shared cache keeps it.

use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

/// Removes cookie `name` from the request's `Cookie` headers; returns its value.
pub fn take(headers: &mut HeaderMap, name: &str) -> Option<String> {
    if !headers.contains_key(COOKIE) {
        return None;
    }
    let mut found = None;
    let mut kept: Vec<String> = Vec::new();
    for v in headers.get_all(COOKIE) {
        let Ok(text) = v.to_str() else {
            // Not text: leave the header as it was.
            return None;
        };
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
    found.as_ref()?;
    headers.remove(COOKIE);
    for k in kept {
        if let Ok(v) = HeaderValue::from_str(&k) {
            headers.append(COOKIE, v);
        }
    }
    found
}

/// Pins the client to `server` (a server name: letters, digits, '-', '_').
pub fn set(headers: &mut HeaderMap, name: &str, server: &str, secure: bool) {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!("{name}={server}; Path=/; HttpOnly; SameSite=Lax{secure}");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        headers.append(SET_COOKIE, v);
        if !headers.contains_key(CACHE_CONTROL) {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("private"));
        }
    }
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
