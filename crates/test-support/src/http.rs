//! A deliberately small HTTP/1.1 client over a plain TCP socket: one request
//! per connection, so each request is independent, like separate users --
//! and [`keep_alive`], several requests one after another on one
//! connection, like a browser.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// A response as a client saw it.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked encoding removed, not decompressed).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Sends one request; `headers` are extra `(name, value)` pairs (a `Host`
/// among them replaces the default `www.foobar.com`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    send_raw(addr, &request_bytes(method, path, headers, body))
}

/// [`request`] from the client address `source` (a 127.0.0.0/8 address that is no host of the stack).
pub fn request_from(
    source: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let stream = connect_from(source, addr)?;
    exchange(stream, &request_bytes(method, path, headers, body))
}

fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        raw.push_str("Host: www.foobar.com\r\n");
    }
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Writes `bytes` as they are (for malformed requests) and parses the answer.
pub fn send_raw(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Response> {
    exchange(
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))?,
        bytes,
    )
}

/// [`send_raw`] from the client address `source`.
pub fn send_raw_from(source: IpAddr, addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Response> {
    exchange(connect_from(source, addr)?, bytes)
}

/// Writes `bytes` on `stream` and parses the answer, read to the end.
fn exchange(mut stream: TcpStream, bytes: &[u8]) -> std::io::Result<Response> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(bytes)?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf)?;
    parse(&buf)
}

/// A connection to `addr` from `source` (another 127.0.0.0/8 address, for a
/// test that needs a second client address).
pub fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

/// GET `path`.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    request(addr, "GET", path, &[], b"")
}

/// POST a JSON body to `path`.
pub fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> std::io::Result<Response> {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// Sends `requests` (method, path, body) one after another on one
/// keep-alive connection, each after the previous answer was read whole
/// (framed by its `Content-Length` or chunked encoding), and returns the
/// answers. The connection is closed after the last.
pub fn keep_alive(
    addr: SocketAddr,
    requests: &[(&str, &str, &[u8])],
) -> std::io::Result<Vec<Response>> {
    keep_alive_with(addr, &[], requests)
}

/// [`keep_alive`], each request with `headers` too.
pub fn keep_alive_with(
    addr: SocketAddr,
    headers: &[(&str, &str)],
    requests: &[(&str, &str, &[u8])],
) -> std::io::Result<Vec<Response>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    for (method, path, body) in requests {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: www.foobar.com\r\n");
        for (n, v) in headers {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() {
            raw.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        raw.push_str("\r\n");
        stream.write_all(raw.as_bytes())?;
        stream.write_all(body)?;
        let len = loop {
            if let Some(len) = message_len(&buf, *method == "HEAD")? {
                break len;
            }
            let mut chunk = [0u8; 16 * 1024];
            match stream.read(&mut chunk)? {
                0 => return Err(bad("connection closed before the answer was whole")),
                n => buf.extend_from_slice(&chunk[..n]),
            }
        };
        answers.push(parse(&buf[..len])?);
        buf.drain(..len);
    }
    Ok(answers)
}

/// The length of the whole response at the start of `buf`, once it is all
/// there (Content-Length or chunked without trailers; no body after HEAD,
/// 204 or 304).
fn message_len(buf: &[u8], head_only: bool) -> std::io::Result<Option<usize>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let start = end + 4;
    let head = parse(&buf[..start])?;
    if head_only || head.status == 204 || head.status == 304 {
        return Ok(Some(start));
    }
    if head
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        return chunked_len(&buf[start..]).map(|n| n.map(|n| start + n));
    }
    let len: usize = head
        .header("content-length")
        .ok_or_else(|| bad("a keep-alive answer without Content-Length or chunked"))?
        .parse()
        .map_err(|_| bad("bad Content-Length"))?;
    Ok((buf.len() >= start + len).then_some(start + len))
}

/// The length of a chunked body (no trailers) at the start of `data`, once
/// it is all there.
fn chunked_len(data: &[u8]) -> std::io::Result<Option<usize>> {
    // The empty line that ends a body without trailers follows the last chunk.
    Ok(walk_chunks(data, None)?.and_then(|end| (data.len() >= end + 2).then_some(end + 2)))
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

fn parse(buf: &[u8]) -> std::io::Result<Response> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad(&format!("no complete response head in {} bytes", buf.len())))?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    walk_chunks(data, Some(&mut out))?.ok_or_else(|| bad("truncated chunk"))?;
    Ok(out)
}

/// Walks the chunks at the start of `data` up to the last (size 0) chunk's
/// line, copying their data into `out` if given. Returns where that line
/// ends, or None when the chunks are not all there yet.
fn walk_chunks(data: &[u8], mut out: Option<&mut Vec<u8>>) -> std::io::Result<Option<usize>> {
    let mut at = 0;
    loop {
        let Some(line_end) = data[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&data[at..at + line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("bad chunk size"))?;
        at += line_end + 2;
        if size == 0 {
            return Ok(Some(at));
        }
        if data.len() < at + size + 2 {
            return Ok(None);
        }
        if let Some(out) = out.as_deref_mut() {
            out.extend_from_slice(&data[at..at + size]);
        }
        at += size + 2;
    }
}
