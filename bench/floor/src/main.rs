//! The floor of the load balancer benchmark: a TCP forwarder with no HTTP in
//! it at all. Each client connection gets its own server connection (taking
//! the servers in turn) and bytes read on one side are written to the other,
//! one read per readiness edge. It is not a load balancer (no parsing, no
//! health, no limits, no keep-alive of its own); it shows what moving the
//! bytes of a proxied request costs on this machine, the part of every
//! proxy's CPU that no HTTP code can remove.
//!
//!     floor LISTEN SERVER...

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

const LISTENER: Token = Token(usize::MAX);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |a: &String| a.parse::<SocketAddr>().expect("an address:port");
    let (listen, servers): (SocketAddr, Vec<SocketAddr>) = match args.split_first() {
        Some((l, s)) if !s.is_empty() => (parse(l), s.iter().map(parse).collect()),
        _ => {
            eprintln!("usage: floor LISTEN SERVER...");
            std::process::exit(2);
        }
    };
    let mut poll = Poll::new().expect("epoll");
    let mut listener = TcpListener::bind(listen).expect("bind");
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .expect("register");
    // Socket 2k is a client, 2k+1 its server: a socket's peer is its index ^ 1.
    let mut sockets: Vec<Option<TcpStream>> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut next = 0;
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            assert_eq!(e.kind(), ErrorKind::Interrupted, "poll: {e}");
            continue;
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Ok((client, _)) = listener.accept() {
                    let server = std::net::TcpStream::connect(servers[next % servers.len()]);
                    next += 1;
                    let Ok(server) = server else { continue };
                    let _ = server.set_nonblocking(true);
                    let pair = [client, TcpStream::from_std(server)];
                    for mut s in pair {
                        let _ = s.set_nodelay(true);
                        let token = Token(sockets.len());
                        poll.registry()
                            .register(&mut s, token, Interest::READABLE)
                            .expect("register");
                        sockets.push(Some(s));
                    }
                }
                continue;
            }
            let (from, to) = (event.token().0, event.token().0 ^ 1);
            loop {
                let n = match sockets[from].as_mut().map(|s| s.read(&mut buf)) {
                    Some(Ok(n)) => n,
                    Some(Err(e)) if e.kind() == ErrorKind::WouldBlock => break,
                    Some(Err(e)) if e.kind() == ErrorKind::Interrupted => continue,
                    _ => 0,
                };
                // End or error on either side: both go.
                let written = n > 0
                    && sockets[to]
                        .as_mut()
                        .is_some_and(|s| write_all(s, &buf[..n]).is_ok());
                if !written {
                    sockets[from] = None;
                    sockets[to] = None;
                    break;
                }
                // A short read drained the socket: the next bytes bring a new edge.
                if n < buf.len() {
                    break;
                }
            }
        }
    }
}

/// Writes all of `bytes` to a non-blocking socket (the benchmark's responses
/// fit its buffer; a full one is waited out by spinning, which a real proxy
/// would not do).
fn write_all(s: &mut TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match s.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
