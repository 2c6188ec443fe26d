//! A raw HTTP/1.1 server on 127.0.0.1:0 for tests that need exact bytes or
//! misbehaviour no real server shows (hanging up after a request, sending
//! trailers it may not send): each connection runs on a thread of its own
//! and is handed to the test's function request after request.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Serves each connection with `serve(reader, writer)` until it returns
/// false or the connection ends; threads live as long as the test process.
pub fn start<F>(serve: F) -> SocketAddr
where
    F: Fn(&mut BufReader<TcpStream>, &mut TcpStream) -> bool + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = std::sync::Arc::new(serve);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let serve = serve.clone();
            std::thread::spawn(move || {
                let Ok(mut out) = stream.try_clone() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                while serve(&mut reader, &mut out) {}
            });
        }
    });
    addr
}

/// The next request or response head's lines, CRLF taken off, up to the
/// blank line; None when the connection ended first.
pub fn read_head(reader: &mut impl BufRead) -> Option<Vec<String>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if line == "\r\n" {
            return Some(head);
        }
        head.push(line.trim_end().to_string());
    }
}
