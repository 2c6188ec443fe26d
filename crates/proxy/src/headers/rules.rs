//! Fields the operator sets on, or removes from, every request forwarded
//! and every response a server sends (HAProxy's `http-request` /
//! `http-response` `set-header` and `del-header`): a security header added,
//! a `Server` field taken out. A rule replaces every field of its name; one
//! without a value only removes them. The same rules on a header map (the
//! general path) and on a head kept as bytes (the fast lane), so both paths
//! forward alike.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// A field's name and its value; None: the field is removed.
pub type Rule = (String, Option<String>);

/// Applies `rules` to a header map.
pub fn apply_map(headers: &mut HeaderMap, rules: &[Rule]) {
    for (name, value) in rules {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        headers.remove(&name);
        if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, v);
        }
    }
}

/// Applies `rules` to `head`: a start line and field lines, each ending in
/// CRLF, with or without the blank line after them (the lane's request
/// head has it, its response head not yet).
pub fn apply_raw(head: &mut Vec<u8>, rules: &[Rule]) {
    let blank = head.ends_with(b"\r\n\r\n");
    if blank {
        head.truncate(head.len() - 2);
    }
    let start = head
        .iter()
        .position(|&b| b == b'\n')
        .map_or(head.len(), |i| i + 1);
    let named = |line: &[u8]| {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        rules
            .iter()
            .any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
    };
    let mut out = Vec::with_capacity(head.len() + 64);
    out.extend_from_slice(&head[..start]);
    for line in head[start..].split_inclusive(|&b| b == b'\n') {
        if !named(line) {
            out.extend_from_slice(line);
        }
    }
    for (name, value) in rules {
        if let Some(v) = value {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if blank {
        out.extend_from_slice(b"\r\n");
    }
    *head = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<Rule> {
        vec![
            ("X-Frame-Options".into(), Some("DENY".into())),
            ("server".into(), None),
        ]
    }

    #[test]
    fn a_raw_head_loses_every_field_of_a_rules_name_and_gets_its_value() {
        let mut head = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nx-frame-options: SAMEORIGIN\r\nX-Frame-Options: ALLOW\r\nx-servers: 2\r\n".to_vec();
        apply_raw(&mut head, &rules());
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 200 OK\r\nx-servers: 2\r\nX-Frame-Options: DENY\r\n"
        );
    }

    #[test]
    fn a_request_head_keeps_its_blank_line_last() {
        let mut head = b"GET / HTTP/1.1\r\nHost: a\r\nServer: x\r\n\r\n".to_vec();
        apply_raw(&mut head, &rules());
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET / HTTP/1.1\r\nHost: a\r\nX-Frame-Options: DENY\r\n\r\n"
        );
    }

    #[test]
    fn a_header_map_gets_the_same() {
        let mut h = HeaderMap::new();
        h.insert("server", "nginx".parse().unwrap());
        h.append("x-frame-options", "SAMEORIGIN".parse().unwrap());
        h.append("x-frame-options", "ALLOW".parse().unwrap());
        h.insert("x-servers", "2".parse().unwrap());
        apply_map(&mut h, &rules());
        assert!(h.get("server").is_none());
        let frame: Vec<_> = h.get_all("x-frame-options").iter().collect();
        assert_eq!(frame, ["DENY"]);
        assert_eq!(h["x-servers"], "2");
    }
}
