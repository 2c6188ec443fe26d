//! HTTP/1 heads read in one pass: a response's status line and the header
//! section of any head, checked by httparse's rules (its default
//! configuration, the one hyper uses) with httparse's errors, each field's
//! place and [`Kind`](crate::headers::raw::Kind) noted as it is read.
//!
//! httparse hands back name and value slices, which the proxy then walked
//! again to place and classify them; here that is one walk, and field
//! values are checked eight bytes at a time. The header section is most of
//! what parsing costs the proxy per request (`bench/instructions`). The
//! tests hold both functions to httparse on generated heads.

use crate::headers::raw::Field;
use httparse::Error;

/// A scan's outcome: what it read, `Ok(None)` when the head is not
/// complete yet, or the error httparse gives for it.
pub type Scanned<T> = Result<Option<T>, Error>;

/// tchar (RFC 9110 5.6.2): the bytes of a field name.
static TOKEN: [bool; 256] = crate::checks::byte_set(b"!#$%&'*+-.^_`|~");

/// A byte a field value or a reason phrase may hold: HTAB, SP, VCHAR, obs-text.
fn value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// The first index from `i` whose byte a value may not hold, or `buf.len()`.
fn value_end(buf: &[u8], mut i: usize) -> usize {
    while i + 16 <= buf.len() {
        let stop = simd::value_stops(&buf[i..i + 16]);
        if stop == 0 {
            i += 16;
            continue;
        }
        return i + stop.trailing_zeros() as usize;
    }
    i + buf[i..]
        .iter()
        .position(|b| !value_byte(*b))
        .unwrap_or(buf.len() - i)
}

/// The first index from `i` whose byte a name may not hold, or `buf.len()`.
fn name_end(buf: &[u8], mut i: usize) -> usize {
    while i + 16 <= buf.len() {
        let stop = simd::name_stops(&buf[i..i + 16]);
        if stop == 0 {
            i += 16;
            continue;
        }
        i += stop.trailing_zeros() as usize;
        if !TOKEN[usize::from(buf[i])] {
            return i;
        }
        // A tchar other than a letter, digit or dash: on past it.
        i += 1;
    }
    i + buf[i..]
        .iter()
        .position(|b| !TOKEN[usize::from(*b)])
        .unwrap_or(buf.len() - i)
}

/// Sixteen bytes at a time, as a bit per byte (bit `n` for byte `n`).
mod simd {
    /// The bytes a value may not hold: below 0x20 but HTAB, and DEL.
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    pub fn value_stops(bytes: &[u8]) -> u32 {
        use std::arch::x86_64::*;
        assert_eq!(bytes.len(), 16);
        // SAFETY: SSE2 is part of x86_64, and the load reads the sixteen
        // bytes of `bytes` (unaligned).
        unsafe {
            let v = _mm_loadu_si128(bytes.as_ptr().cast());
            let low = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
            let tab = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\t' as i8));
            let del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
            _mm_movemask_epi8(_mm_or_si128(_mm_andnot_si128(tab, low), del)) as u32
        }
    }

    /// The bytes that are not a letter, a digit or `-` (the usual bytes of
    /// a field name; the caller looks at any other itself).
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    pub fn name_stops(bytes: &[u8]) -> u32 {
        use std::arch::x86_64::*;
        assert_eq!(bytes.len(), 16);
        // SAFETY: as in `value_stops`.
        unsafe {
            let v = _mm_loadu_si128(bytes.as_ptr().cast());
            // Unsigned `x <= n` as `min(x, n) == x`.
            let at_most = |x, n: u8| _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(n as i8)), x);
            // Only the letters land in a..z once 0x20 is set.
            let lower = _mm_or_si128(v, _mm_set1_epi8(0x20));
            let letter = at_most(_mm_sub_epi8(lower, _mm_set1_epi8(b'a' as i8)), 25);
            let digit = at_most(_mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8)), 9);
            let dash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'-' as i8));
            let usual = _mm_or_si128(_mm_or_si128(letter, digit), dash);
            !(_mm_movemask_epi8(usual) as u32) & 0xffff
        }
    }

    /// Portable: the same answers a byte at a time.
    #[cfg(not(target_arch = "x86_64"))]
    pub fn value_stops(bytes: &[u8]) -> u32 {
        bytes
            .iter()
            .enumerate()
            .fold(0, |m, (n, b)| m | (u32::from(!super::value_byte(*b)) << n))
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn name_stops(bytes: &[u8]) -> u32 {
        bytes.iter().enumerate().fold(0, |m, (n, b)| {
            let usual = b.is_ascii_alphanumeric() || *b == b'-';
            m | (u32::from(!usual) << n)
        })
    }
}

/// The line end at `i`, CRLF or a bare LF: the index after it; `bad` when
/// something else is there.
fn line_end(buf: &[u8], i: usize, bad: Error) -> Scanned<usize> {
    match buf.get(i) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(i + 1)),
        Some(b'\r') => match buf.get(i + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some(i + 2)),
            Some(_) => Err(bad),
        },
        Some(_) => Err(bad),
    }
}

/// A response head at the start of `buf`: its length, minor version and
/// status code; its fields are appended to `out` (at most `max`).
pub fn response(buf: &[u8], out: &mut Vec<Field>, max: usize) -> Scanned<(usize, u8, u16)> {
    let Some((line, minor, code)) = status_line(buf)? else {
        return Ok(None);
    };
    Ok(fields(buf, line, out, max)?.map(|len| (len, minor, code)))
}

/// A response's status line at the start of `buf`, after any empty lines
/// (which httparse skips too): the index after it, the minor version (0 or
/// 1) and the status code.
fn status_line(buf: &[u8]) -> Scanned<(usize, u8, u16)> {
    let mut i = 0;
    while matches!(buf.get(i), Some(b'\r' | b'\n')) {
        let Some(next) = line_end(buf, i, Error::NewLine)? else {
            return Ok(None);
        };
        i = next;
    }
    let rest = &buf[i..];
    let minor = match rest.get(..8) {
        Some(b"HTTP/1.0") => 0,
        Some(b"HTTP/1.1") => 1,
        Some(_) => return Err(Error::Version),
        None => {
            let n = rest.len().min(7);
            return if rest[..n] == b"HTTP/1."[..n] {
                Ok(None)
            } else {
                Err(Error::Version)
            };
        }
    };
    i += 8;
    match buf.get(i) {
        None => return Ok(None),
        Some(b' ') => i += 1,
        Some(_) => return Err(Error::Version),
    }
    let mut code = 0u16;
    for _ in 0..3 {
        match buf.get(i) {
            None => return Ok(None),
            Some(d @ b'0'..=b'9') => code = code * 10 + u16::from(d - b'0'),
            Some(_) => return Err(Error::Status),
        }
        i += 1;
    }
    match buf.get(i) {
        None => return Ok(None),
        // The reason phrase.
        Some(b' ') => i = value_end(buf, i + 1),
        Some(b'\r' | b'\n') => {}
        Some(_) => return Err(Error::Status),
    }
    Ok(line_end(buf, i, Error::Status)?.map(|end| (end, minor, code)))
}

/// The header fields from `i` up to the empty line that ends the head,
/// appended to `out` (an error when there are more than `max`): the index
/// after that line. Values are trimmed of the blanks around them.
pub fn fields(buf: &[u8], mut i: usize, out: &mut Vec<Field>, max: usize) -> Scanned<usize> {
    loop {
        match buf.get(i) {
            None => return Ok(None),
            Some(b'\r' | b'\n') => return line_end(buf, i, Error::NewLine),
            Some(b) if !TOKEN[usize::from(*b)] => return Err(Error::HeaderName),
            Some(_) => {}
        }
        let name = i;
        i = name_end(buf, i + 1);
        match buf.get(i) {
            None => return Ok(None),
            Some(b':') => {}
            Some(_) => return Err(Error::HeaderName),
        }
        let name_end = i;
        i += 1;
        while matches!(buf.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        let value = i;
        let mut value_to = value_end(buf, i);
        let Some(next) = line_end(buf, value_to, Error::HeaderValue)? else {
            return Ok(None);
        };
        while value_to > value && matches!(buf[value_to - 1], b' ' | b'\t') {
            value_to -= 1;
        }
        if out.len() == max {
            return Err(Error::TooManyHeaders);
        }
        out.push(Field::at(buf, &buf[name..name_end], &buf[value..value_to]));
        i = next;
    }
}

/// Heads made of likely and unlikely pieces, for the tests that hold a
/// reader to httparse (here and in [`crate::lane::request`]).
#[cfg(test)]
pub(crate) mod generate {
    use rand::rngs::StdRng;
    use rand::Rng;
    use std::ops::Range;

    /// Appends a number in `count` of `lines`, picked at random, each after
    /// a line end (one in six a bare LF).
    pub(crate) fn lines(rng: &mut StdRng, out: &mut Vec<u8>, lines: &[&str], count: Range<usize>) {
        for _ in 0..rng.random_range(count) {
            out.extend_from_slice(if rng.random_ratio(1, 6) {
                b"\n"
            } else {
                b"\r\n"
            });
            out.extend_from_slice(lines[rng.random_range(0..lines.len())].as_bytes());
        }
    }

    /// `buf` with a number in `edits` of `bytes` changed in, put in, a
    /// byte taken out, or its end cut off.
    pub(crate) fn mutate(
        rng: &mut StdRng,
        mut buf: Vec<u8>,
        bytes: &[u8],
        edits: Range<usize>,
    ) -> Vec<u8> {
        for _ in 0..rng.random_range(edits) {
            let at = rng.random_range(0..buf.len().max(1));
            let byte = bytes[rng.random_range(0..bytes.len())];
            match rng.random_range(0..4) {
                0 if at < buf.len() => buf[at] = byte,
                1 => buf.insert(at.min(buf.len()), byte),
                2 if at < buf.len() => drop(buf.remove(at)),
                _ => buf.truncate(at),
            }
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// What a head read to: its length, version, code and fields, or where it stopped.
    type Read = Result<Option<(usize, u8, u16, Vec<(Vec<u8>, Vec<u8>)>)>, Error>;

    fn ours(buf: &[u8], max: usize) -> Read {
        let mut out = Vec::new();
        let Some((len, minor, code)) = response(buf, &mut out, max)? else {
            return Ok(None);
        };
        let fields = out
            .iter()
            .map(|f| {
                let (n, v) = f.get(buf);
                (n.to_vec(), v.to_vec())
            })
            .collect();
        Ok(Some((len, minor, code, fields)))
    }

    fn httparse(buf: &[u8], max: usize) -> Read {
        let mut headers = vec![httparse::EMPTY_HEADER; max];
        let mut r = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = r.parse(buf)? else {
            return Ok(None);
        };
        let fields = r
            .headers
            .iter()
            .map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec()))
            .collect();
        Ok(Some((len, r.version.unwrap(), r.code.unwrap(), fields)))
    }

    /// A response head made of a few likely and unlikely pieces.
    fn head(rng: &mut StdRng) -> Vec<u8> {
        const LINES: &[&str] = &[
            "Content-Type: text/plain",
            "Content-Length: 12",
            "ETag: \"6b0f3bd0-c\"",
            "Date: Wed, 02 Dec 2026 09:40:28 GMT",
            "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "X-Empty:",
            "X-Blank:   ",
            "x-tab:\tv\t1 \t",
            "Set-Cookie: a=b; Path=/; HttpOnly",
            "X-Obs: caf\u{e9}",
            "A:b",
            "X-A-Rather_Long.Field-Name~1: v",
        ];
        const STATUS: &[&str] = &["HTTP/1.1 200 OK", "HTTP/1.0 404 Not Found", "HTTP/1.1 204"];
        let mut out = Vec::new();
        if rng.random_ratio(1, 8) {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(STATUS[rng.random_range(0..STATUS.len())].as_bytes());
        generate::lines(rng, &mut out, LINES, 0..6);
        out.extend_from_slice(b"\r\n\r\nbody");
        out
    }

    #[test]
    fn responses_read_as_httparse_reads_them() {
        let mut rng = StdRng::seed_from_u64(9112);
        let (mut complete, mut partial, mut errors) = (0, 0, 0);
        for _ in 0..200_000 {
            let fresh = head(&mut rng);
            let buf =
                generate::mutate(&mut rng, fresh, b"\r\n \t:\x00\x7f\x80\xffa0H/.1\x0b", 0..4);
            let max = if rng.random_ratio(1, 4) { 2 } else { 100 };
            let expected = httparse(&buf, max);
            assert_eq!(
                ours(&buf, max),
                expected,
                "{:?}",
                String::from_utf8_lossy(&buf)
            );
            match expected {
                Ok(Some(_)) => complete += 1,
                Ok(None) => partial += 1,
                Err(_) => errors += 1,
            }
        }
        // Every outcome was met many times.
        assert!(complete > 10_000 && partial > 10_000 && errors > 10_000);
    }

    /// Every byte in a name and in a value, short ones (read a byte at a
    /// time) and long ones at every place in a sixteen-byte block, read
    /// as httparse reads it.
    #[test]
    fn every_byte_is_read_as_httparse_reads_it() {
        for b in 0..=255u8 {
            for head in [
                [b"HTTP/1.1 200 OK\r\nA".as_slice(), &[b], b"b: v\r\n\r\n"].concat(),
                [b"HTTP/1.1 200 OK\r\nA: v".as_slice(), &[b], b"v\r\n\r\n"].concat(),
                [b"HTTP/1.1 200 O".as_slice(), &[b], b"K\r\n\r\n"].concat(),
            ] {
                assert_eq!(ours(&head, 4), httparse(&head, 4), "{head:?}");
            }
            for at in 0..40 {
                let long = [&b"x-long-name-1".repeat(4)[..at], &[b], b"q-1-long-tail"].concat();
                for head in [
                    [b"HTTP/1.1 200 OK\r\nA".as_slice(), &long, b": v\r\n\r\n"].concat(),
                    [b"HTTP/1.1 200 OK\r\nA: v".as_slice(), &long, b"\r\n\r\n"].concat(),
                ] {
                    assert_eq!(ours(&head, 4), httparse(&head, 4), "{head:?}");
                }
            }
        }
    }

    #[test]
    fn values_are_checked_sixteen_bytes_at_a_time_and_byte_by_byte() {
        let long = b"a value long enough for a few words";
        assert_eq!(value_end(long, 0), long.len());
        for (at, byte) in [(0, 0x00), (9, 0x1f), (16, 0x7f), (23, b'\r'), (34, b'\n')] {
            let mut v = long.to_vec();
            v[at] = byte;
            assert_eq!(value_end(&v, 0), at, "{byte:#x} at {at}");
        }
        let mut tab = long.to_vec();
        tab[3] = b'\t';
        tab[20] = 0x80;
        assert_eq!(value_end(&tab, 0), long.len());
        // A tab, then a byte that ends the value in the same sixteen.
        tab[5] = 0x01;
        assert_eq!(value_end(&tab, 0), 5);
        assert_eq!(value_end(b"ab\tc", 0), 4);
    }
}
