//! Cross-site request refusal (CSRF): a state-changing request that a
//! browser sent on behalf of another site's page is refused with 403, so a
//! page elsewhere (or a `file://` page) cannot post to the board in its
//! visitor's name. The same rules as Go's `http.CrossOriginProtection`:
//!
//! - `GET`, `HEAD` and `OPTIONS` change nothing and always pass;
//! - a browser's `Sec-Fetch-Site` decides when present: `same-origin` (our
//!   own form) and `none` (the user typed or bookmarked it) pass, anything
//!   else (`cross-site`, `same-site`) is refused;
//! - else an `Origin` must name the request's own `Host` (any scheme: TLS
//!   ends at the load balancer); `Origin: null` (a sandboxed or `file://`
//!   page) is refused;
//! - a request with neither is not from a browser that would attach the
//!   user's cookies to a forged form, and passes (curl, scripts, the API's
//!   clients).
//!
//! No token is needed, so the form keeps working without JavaScript.

use axum::http::{header, HeaderMap, Method};

/// Why `method` with `headers` is refused as cross-site, or `None` when it may go on.
pub fn refusal(method: &Method, headers: &HeaderMap) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => None,
            other => Some(format!(
                "a cross-site request (Sec-Fetch-Site: {}) may not change anything",
                String::from_utf8_lossy(other)
            )),
        };
    }
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("null");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    match origin_host {
        Some(o) if !host.is_empty() && o.eq_ignore_ascii_case(host) => None,
        _ => Some(format!(
            "a request from another origin ({origin}) may not change anything on {host}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, fields: &[(&'static str, &'static str)]) -> bool {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "www.foobar.com:8080".parse().unwrap());
        for (k, v) in fields {
            h.insert(*k, v.parse().unwrap());
        }
        refusal(&method, &h).is_none()
    }

    #[test]
    fn cross_site_form_posts_are_refused() {
        assert!(!check(Method::POST, &[("sec-fetch-site", "cross-site")]));
        assert!(!check(Method::POST, &[("sec-fetch-site", "same-site")]));
        assert!(!check(Method::POST, &[("origin", "null")]));
        assert!(!check(Method::POST, &[("origin", "http://evil.example")]));
        assert!(!check(
            Method::POST,
            &[("origin", "http://www.foobar.com:8080.evil.example")]
        ));
        assert!(!check(
            Method::DELETE,
            &[("origin", "https://evil.example")]
        ));
    }

    #[test]
    fn our_own_form_and_non_browser_clients_pass() {
        assert!(check(Method::POST, &[("sec-fetch-site", "same-origin")]));
        assert!(check(Method::POST, &[("sec-fetch-site", "none")]));
        assert!(check(
            Method::POST,
            &[("origin", "http://www.foobar.com:8080")]
        ));
        assert!(check(
            Method::POST,
            &[("origin", "https://WWW.foobar.com:8080")]
        ));
        assert!(check(Method::POST, &[]));
        assert!(check(Method::GET, &[("sec-fetch-site", "cross-site")]));
    }
}
