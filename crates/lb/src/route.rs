//! Which pool takes a request (HAProxy's `use_backend if { hdr(host) ... }
//! { path_beg ... }`): a `[[load_balancer.pool]]` takes the requests whose
//! `Host` is one of its `hosts` and whose path starts with one of its
//! `paths` (a list left out matches anything). Host names compare without
//! case, port or a final dot; `*.example.com` takes every name under
//! example.com (not example.com itself). Paths compare as bytes, as sent.

/// What one pool takes.
#[derive(Debug, Default)]
pub struct Takes {
    /// Names; `*.` patterns kept as the suffix from the dot.
    hosts: Vec<Host>,
    paths: Vec<Vec<u8>>,
}

#[derive(Debug)]
enum Host {
    Exact(Vec<u8>),
    /// `.example.com` for `*.example.com`.
    Under(Vec<u8>),
}

impl Takes {
    /// A pool taking `hosts` (`*.name` for any name under `name`; compared
    /// without case) and `paths` (prefixes); either empty: any.
    pub fn new(hosts: Vec<String>, paths: Vec<String>) -> Self {
        let hosts = hosts
            .into_iter()
            .map(|h| match h.strip_prefix('*') {
                Some(suffix) => Host::Under(suffix.as_bytes().to_vec()),
                None => Host::Exact(h.into_bytes()),
            })
            .collect();
        let paths = paths.into_iter().map(String::into_bytes).collect();
        Takes { hosts, paths }
    }

    /// True when a request for `host` (a `Host` value, perhaps with a
    /// port) and `target` (path and query) is this pool's.
    pub fn matches(&self, host: &[u8], target: &[u8]) -> bool {
        let name = name_of(host);
        let host_ok = self.hosts.is_empty()
            || self.hosts.iter().any(|h| match h {
                Host::Exact(n) => name.eq_ignore_ascii_case(n),
                Host::Under(suffix) => {
                    name.len() > suffix.len()
                        && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                }
            });
        host_ok && (self.paths.is_empty() || self.paths.iter().any(|p| target.starts_with(p)))
    }
}

/// The name in a `Host` value: without a port and a final dot (an IPv6
/// literal keeps its brackets).
fn name_of(host: &[u8]) -> &[u8] {
    let name = if host.first() == Some(&b'[') {
        match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.iter().position(|&b| b == b':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    name.strip_suffix(b".").unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn takes(hosts: &[&str], paths: &[&str]) -> Takes {
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Takes::new(own(hosts), own(paths))
    }

    #[test]
    fn hosts_match_without_case_port_or_final_dot() {
        let t = takes(&["api.example.com"], &[]);
        for yes in [
            "api.example.com",
            "API.Example.COM",
            "api.example.com:8080",
            "api.example.com.",
        ] {
            assert!(t.matches(yes.as_bytes(), b"/"), "{yes}");
        }
        for no in [
            "www.example.com",
            "api.example.com.evil",
            "xapi.example.com",
            "",
        ] {
            assert!(!t.matches(no.as_bytes(), b"/"), "{no}");
        }
    }

    #[test]
    fn a_wildcard_takes_every_name_under_it_but_not_itself() {
        let t = takes(&["*.example.com"], &[]);
        assert!(t.matches(b"a.example.com", b"/"));
        assert!(t.matches(b"a.b.EXAMPLE.com:443", b"/"));
        assert!(!t.matches(b"example.com", b"/"));
        assert!(!t.matches(b"badexample.com", b"/"));
    }

    #[test]
    fn paths_are_prefixes_and_both_lists_must_match() {
        let t = takes(&["www.example.com"], &["/api/", "/static"]);
        assert!(t.matches(b"www.example.com", b"/api/users?x=1"));
        assert!(t.matches(b"www.example.com", b"/static/app.css"));
        assert!(t.matches(b"www.example.com", b"/staticfiles"));
        assert!(!t.matches(b"www.example.com", b"/api"));
        assert!(!t.matches(b"other.example.com", b"/api/users"));
        let any_host = takes(&[], &["/api/"]);
        assert!(any_host.matches(b"anything", b"/api/x"));
        assert!(any_host.matches(b"[::1]:8080", b"/api/x"));
    }

    #[test]
    fn an_ipv6_literal_keeps_its_brackets() {
        assert_eq!(name_of(b"[::1]:8080"), b"[::1]");
        assert_eq!(name_of(b"[::1]"), b"[::1]");
        assert_eq!(name_of(b"example.com:80"), b"example.com");
    }
}
