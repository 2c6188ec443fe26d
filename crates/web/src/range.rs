//! Byte ranges of a static file (RFC 9110 14), the way nginx serves them:
//! one range gets a `206 Partial Content`, a range past the end a `416`,
//! and anything else (several ranges, a unit other than bytes, a stale
//! `If-Range`) the whole file.

use http::{header, HeaderMap};
use std::ops::Range;

/// What to send for a request's `Range` against a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Ranged {
    /// The whole file (no usable single range was asked for).
    Whole,
    /// These bytes, as a 206.
    Part(Range<usize>),
    /// Nothing of the file: 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// The answer to `req`'s `Range` for a file of `len` bytes whose validators
/// are `etag` and `last_modified` (an HTTP date).
pub fn ranged(req: &HeaderMap, len: usize, etag: &str, last_modified: &str) -> Ranged {
    let Some(spec) = req.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ranged::Whole;
    };
    // If-Range: the range only if the file is still the one the client has.
    if let Some(v) = req.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if v != etag && v != last_modified {
            return Ranged::Whole;
        }
    }
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return Ranged::Whole;
    };
    if set.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let number = |s: &str| {
        (!s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let len64 = len as u64;
    let (start, end) = match (first.trim(), last.trim()) {
        // bytes=-N: the last N bytes.
        ("", n) => match number(n) {
            Some(0) => return Ranged::Unsatisfiable,
            Some(n) => (len64.saturating_sub(n), len64),
            None => return Ranged::Whole,
        },
        (a, "") => match number(a) {
            Some(a) => (a, len64),
            None => return Ranged::Whole,
        },
        (a, b) => match (number(a), number(b)) {
            (Some(a), Some(b)) if a <= b => (a, b.saturating_add(1).min(len64)),
            _ => return Ranged::Whole,
        },
    };
    if start >= len64 {
        return Ranged::Unsatisfiable;
    }
    Ranged::Part(start as usize..end as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(spec: &str, if_range: Option<&str>) -> Ranged {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, spec.parse().unwrap());
        if let Some(v) = if_range {
            h.insert(header::IF_RANGE, v.parse().unwrap());
        }
        ranged(&h, 100, "\"e\"", "Sun, 22 Nov 2026 10:00:00 GMT")
    }

    #[test]
    fn single_ranges() {
        assert_eq!(range("bytes=0-9", None), Ranged::Part(0..10));
        assert_eq!(range("bytes=90-", None), Ranged::Part(90..100));
        assert_eq!(range("bytes=-5", None), Ranged::Part(95..100));
        assert_eq!(range("bytes=-500", None), Ranged::Part(0..100));
        assert_eq!(range("bytes=50-5000", None), Ranged::Part(50..100));
        assert_eq!(range("bytes=100-", None), Ranged::Unsatisfiable);
        assert_eq!(range("bytes=-0", None), Ranged::Unsatisfiable);
    }

    #[test]
    fn anything_else_is_the_whole_file() {
        for spec in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-1",
            "bytes=x-",
            "bytes=-",
        ] {
            assert_eq!(range(spec, None), Ranged::Whole, "{spec}");
        }
        assert_eq!(range("bytes=0-9", Some("\"old\"")), Ranged::Whole);
        assert_eq!(range("bytes=0-9", Some("\"e\"")), Ranged::Part(0..10));
        assert_eq!(
            range("bytes=0-9", Some("Sun, 22 Nov 2026 10:00:00 GMT")),
            Ranged::Part(0..10)
        );
        assert_eq!(ranged(&HeaderMap::new(), 100, "\"e\"", ""), Ranged::Whole);
    }
}
