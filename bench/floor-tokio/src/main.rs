//! The floor of the load balancer benchmark on tokio: `bench/floor`'s
//! forwarder (no HTTP at all: each client connection gets its own server
//! connection, taking the servers in turn) run the way webinfra's load
//! balancer runs -- a current-thread tokio runtime, one task per client
//! connection -- and moving one keep-alive exchange at a time as its fast
//! lane does: one read of the request, written to the server, one read of
//! the response, written to the client. Against `bench/floor` (mio, no
//! tasks) it shows what the runtime itself costs per request; against
//! webinfra, what the HTTP on top of it costs.
//!
//!     floor-tokio LISTEN SERVER...

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |a: &String| a.parse::<SocketAddr>().expect("an address:port");
    let (listen, servers): (SocketAddr, Vec<SocketAddr>) = match args.split_first() {
        Some((l, s)) if !s.is_empty() => (parse(l), s.iter().map(parse).collect()),
        _ => {
            eprintln!("usage: floor-tokio LISTEN SERVER...");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind");
        let mut next = 0;
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let server = servers[next % servers.len()];
            next += 1;
            tokio::spawn(forward(client, server));
        }
    });
}

/// One client connection: each read from it goes to its server, and one
/// read of the server's answer back, until either side ends.
async fn forward(mut client: TcpStream, server: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(server).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if server.write_all(&buf[..n]).await.is_err() {
            return;
        }
        let n = match server.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if client.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
