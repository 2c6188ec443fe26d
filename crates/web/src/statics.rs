//! Static files the way nginx serves them: the right `Content-Type`, `ETag` and
//! `Last-Modified` with `304 Not Modified` on revalidation, single byte
//! ranges ([`crate::range`]), and gzip when the client accepts it. Contents
//! and their gzip form are cached in memory, keyed by the file's size and
//! modification time, so an edited file is picked up; files over 1 MiB are
//! not cached but read from disk as they are sent ([`crate::file_body`]).
//!
//! Unlike nginx (size + mtime), the `ETag` is a hash of the content, so the
//! same file on two servers behind the load balancer has the same `ETag` and a
//! revalidation answered by the other server is still a 304.

use crate::file_body::FileBody;
use crate::range::{self, Ranged};
use bytes::Bytes;
use flate2::{write::GzEncoder, Compression};
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use webinfra_proxy::body::BoxError;
use webinfra_proxy::{full, text_response, ResBody};

/// Files larger than this are sent from disk as they are read, not cached.
const MAX_CACHED: u64 = 1024 * 1024;

/// What a file's answer is made of.
enum Content {
    /// The file (or its gzip form), cached in memory.
    Memory(Bytes),
    /// A large file of this many bytes, read from disk when sent.
    File(u64),
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Content::Memory(b) => b.len() as u64,
            Content::File(n) => *n,
        }
    }
}

/// Files smaller than this are not worth compressing.
const MIN_GZIP_SIZE: usize = 256;

struct Cached {
    /// (size, mtime in ns) the entry was read at.
    stamp: (u64, u128),
    etag: String,
    raw: Bytes,
    gzip: Option<Bytes>,
}

/// A directory of static files.
pub struct StaticFiles {
    root: PathBuf,
    cache: Mutex<HashMap<PathBuf, Cached>>,
}

impl StaticFiles {
    /// Serves files below `root`.
    pub fn new(root: PathBuf) -> Self {
        StaticFiles {
            root,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Answers a request for `rel` (the path below the static prefix).
    pub async fn serve(&self, rel: &str, method: &Method, req: &HeaderMap) -> Response<ResBody> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let Some(path) = safe_join(&self.root, rel) else {
            return text_response(StatusCode::NOT_FOUND, "404 Not Found");
        };
        let meta = match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => m,
            _ => return text_response(StatusCode::NOT_FOUND, "404 Not Found"),
        };
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let nanos = modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mime = mime_guess::from_path(&path).first_or_octet_stream();
        let compressible = is_compressible(mime.essence_str());
        let (etag, content, gzip) = if meta.len() > MAX_CACHED {
            // Too large to keep: read from disk as sent, ETag from size and
            // mtime (nginx's), no gzip.
            let etag = format!("\"{:x}-{:x}\"", nanos / 1_000_000_000, meta.len());
            (etag, Content::File(meta.len()), None)
        } else {
            match self.load(&path, (meta.len(), nanos), compressible).await {
                Ok((etag, raw, gzip)) => (etag, Content::Memory(raw), gzip),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read static file");
                    return text_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "500 cannot read file",
                    );
                }
            }
        };
        let last_modified = httpdate::fmt_http_date(modified);
        // Ranges are of the file itself, never of its gzip form (like nginx).
        let ranged = range::ranged(req, content.len() as usize, &etag, &last_modified);
        // The gzip form is its own representation, with its own ETag.
        let (content, variant_etag, gzipped) = match gzip {
            Some(gz) if accepts_gzip(req) && ranged == Ranged::Whole => {
                let tag = format!("{}-gz\"", etag.trim_end_matches('"'));
                (Content::Memory(gz), tag, true)
            }
            _ => (content, etag.clone(), false),
        };
        let mut resp = Response::builder()
            .header(header::ETAG, &variant_etag)
            .header(header::LAST_MODIFIED, &last_modified);
        if compressible {
            resp = resp.header(header::VARY, "Accept-Encoding");
        }
        if !gzipped {
            resp = resp.header(header::ACCEPT_RANGES, "bytes");
        }
        if not_modified(req, &etag, &variant_etag, modified) {
            return resp
                .status(StatusCode::NOT_MODIFIED)
                .body(full(Bytes::new()))
                .expect("valid response");
        }
        let content_type = if mime.type_() == mime_guess::mime::TEXT {
            format!("{}; charset=utf-8", mime.essence_str())
        } else {
            mime.essence_str().to_string()
        };
        let total = content.len();
        let part = match ranged {
            Ranged::Whole => 0..total,
            Ranged::Part(r) => {
                resp = resp.status(StatusCode::PARTIAL_CONTENT).header(
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{total}", r.start, r.end - 1),
                );
                r.start as u64..r.end as u64
            }
            Ranged::Unsatisfiable => {
                return resp
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{total}"))
                    .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                    .body(full("416 Range Not Satisfiable"))
                    .expect("valid response");
            }
        };
        resp = resp
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, part.end - part.start);
        if gzipped {
            resp = resp.header(header::CONTENT_ENCODING, "gzip");
        }
        let body = match content {
            _ if method == Method::HEAD => full(Bytes::new()),
            Content::Memory(bytes) => full(bytes.slice(part.start as usize..part.end as usize)),
            Content::File(_) => {
                match FileBody::open(&path, part.start, part.end - part.start).await {
                    Ok(file) => file.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot read static file");
                        return text_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "500 cannot read file",
                        );
                    }
                }
            }
        };
        resp.body(body).expect("valid response")
    }

    async fn load(
        &self,
        path: &Path,
        stamp: (u64, u128),
        compressible: bool,
    ) -> std::io::Result<(String, Bytes, Option<Bytes>)> {
        if let Some(c) = self.cache.lock().expect("cache lock").get(path) {
            if c.stamp == stamp {
                return Ok((c.etag.clone(), c.raw.clone(), c.gzip.clone()));
            }
        }
        let raw = Bytes::from(tokio::fs::read(path).await?);
        let etag = format!("\"{:016x}-{:x}\"", content_hash(&raw), raw.len());
        let gzip = (compressible && raw.len() >= MIN_GZIP_SIZE).then(|| gzip(&raw));
        self.cache.lock().expect("cache lock").insert(
            path.to_path_buf(),
            Cached {
                stamp,
                etag: etag.clone(),
                raw: raw.clone(),
                gzip: gzip.clone(),
            },
        );
        Ok((etag, raw, gzip))
    }
}

/// FNV-1a: stable across processes and builds, so every server agrees.
fn content_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// Joins `rel` (percent-encoded, as in the URL) under `root`, refusing
/// anything that could leave it, before or after decoding.
fn safe_join(root: &Path, rel: &str) -> Option<PathBuf> {
    let rel = percent_decode(rel)?;
    if rel.is_empty() || rel.contains('\\') || rel.contains('\0') {
        return None;
    }
    let rel = Path::new(&rel);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

/// `%XX` escapes decoded (nginx serves `a%20b.css` from `a b.css`); None
/// for a broken escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn is_compressible(essence: &str) -> bool {
    essence.starts_with("text/")
        || matches!(
            essence,
            "application/javascript" | "application/json" | "image/svg+xml" | "application/xml"
        )
}

/// True when `Accept-Encoding` lists gzip (or `*`) with a non-zero q-value.
fn accepts_gzip(req: &HeaderMap) -> bool {
    req.get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
}

/// RFC 9110 13.1: `If-None-Match` wins over `If-Modified-Since`.
fn not_modified(req: &HeaderMap, etag: &str, variant: &str, modified: SystemTime) -> bool {
    if let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return inm.split(',').map(str::trim).any(|tag| {
            let tag = tag.trim_start_matches("W/");
            tag == "*" || tag == etag || tag == variant
        });
    }
    req.get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|since| {
            let secs = |t: SystemTime| {
                t.duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            };
            secs(modified) <= secs(since)
        })
}

fn gzip(raw: &[u8]) -> Bytes {
    let mut enc = GzEncoder::new(Vec::with_capacity(raw.len() / 2), Compression::default());
    enc.write_all(raw).expect("writing to a Vec cannot fail");
    Bytes::from(enc.finish().expect("writing to a Vec cannot fail"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_root() {
        let root = Path::new("/srv");
        assert_eq!(
            safe_join(root, "style.css"),
            Some(PathBuf::from("/srv/style.css"))
        );
        assert_eq!(safe_join(root, "../etc/passwd"), None);
        assert_eq!(safe_join(root, "a/../../x"), None);
        assert_eq!(safe_join(root, "/etc/passwd"), None);
        assert_eq!(safe_join(root, "%2e%2e/x"), None);
        assert_eq!(safe_join(root, "a%2f..%2f..%2fx"), None);
        assert_eq!(safe_join(root, "%00"), None);
        assert_eq!(safe_join(root, "a%zz"), None);
        assert_eq!(
            safe_join(root, "my%20file%C3%A9.css"),
            Some(PathBuf::from("/srv/my fileé.css"))
        );
    }

    #[test]
    fn gzip_acceptance_honours_q_zero() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, "br, gzip;q=0.5".parse().unwrap());
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, "gzip;q=0, br".parse().unwrap());
        assert!(!accepts_gzip(&h));
        h.remove(header::ACCEPT_ENCODING);
        assert!(!accepts_gzip(&h));
    }

    #[tokio::test]
    async fn etag_revalidation_and_gzip() {
        let dir = tempfile_dir("etag");
        std::fs::write(dir.join("a.css"), "body { color: red; }\n".repeat(40)).unwrap();
        let files = StaticFiles::new(dir.clone());
        let mut h = HeaderMap::new();
        let r = files.serve("a.css", &Method::GET, &h).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        let etag = r.headers()[header::ETAG].clone();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(files.serve("a.css", &Method::GET, &h).await.status(), 304);
        h.remove(header::IF_NONE_MATCH);
        h.insert(header::ACCEPT_ENCODING, "gzip".parse().unwrap());
        let r = files.serve("a.css", &Method::GET, &h).await;
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(
            files.serve("nope.css", &Method::GET, &h).await.status(),
            404
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    async fn body(r: Response<ResBody>) -> Bytes {
        use http_body_util::BodyExt;
        r.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn byte_ranges_of_the_file_itself() {
        let dir = tempfile_dir("range");
        let text: String = (0..100)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        std::fs::write(dir.join("v.txt"), text.repeat(10)).unwrap();
        let files = StaticFiles::new(dir.clone());
        let mut h = HeaderMap::new();
        let whole = files.serve("v.txt", &Method::GET, &h).await;
        assert_eq!(whole.headers()[header::ACCEPT_RANGES], "bytes");
        let etag = whole.headers()[header::ETAG].clone();
        // A range is served from the file even to a gzip client.
        h.insert(header::ACCEPT_ENCODING, "gzip".parse().unwrap());
        h.insert(header::RANGE, "bytes=26-29".parse().unwrap());
        let r = files.serve("v.txt", &Method::GET, &h).await;
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes 26-29/1000");
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "4");
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(body(r).await, "abcd");
        h.insert(header::RANGE, "bytes=-3".parse().unwrap());
        assert_eq!(
            body(files.serve("v.txt", &Method::GET, &h).await).await,
            "tuv"
        );
        h.insert(header::RANGE, "bytes=1000-".parse().unwrap());
        let r = files.serve("v.txt", &Method::GET, &h).await;
        assert_eq!(r.status(), 416);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */1000");
        // A stale If-Range gets the whole (here gzipped) file.
        h.insert(header::RANGE, "bytes=0-1".parse().unwrap());
        h.insert(header::IF_RANGE, "\"stale\"".parse().unwrap());
        let r = files.serve("v.txt", &Method::GET, &h).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        h.insert(header::IF_RANGE, etag);
        assert_eq!(files.serve("v.txt", &Method::GET, &h).await.status(), 206);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_large_file_is_sent_from_disk_with_ranges() {
        let dir = tempfile_dir("large");
        let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.join("big.bin"), &data).unwrap();
        let files = StaticFiles::new(dir.clone());
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, "gzip".parse().unwrap());
        let r = files.serve("big.bin", &Method::GET, &h).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[header::CONTENT_LENGTH],
            data.len().to_string().as_str()
        );
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(&body(r).await[..], &data[..]);
        assert!(files.cache.lock().unwrap().is_empty(), "not kept in memory");
        h.insert(header::RANGE, "bytes=2000000-2000009".parse().unwrap());
        let r = files.serve("big.bin", &Method::GET, &h).await;
        assert_eq!(r.status(), 206);
        assert_eq!(
            r.headers()[header::CONTENT_RANGE],
            "bytes 2000000-2000009/3145728"
        );
        assert_eq!(&body(r).await[..], &data[2_000_000..2_000_010]);
        let etag = files
            .serve("big.bin", &Method::HEAD, &HeaderMap::new())
            .await
            .headers()[header::ETAG]
            .clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(files.serve("big.bin", &Method::GET, &h).await.status(), 304);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("webinfra-statics-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
