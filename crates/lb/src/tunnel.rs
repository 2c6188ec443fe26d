//! Protocol switches (WebSocket and any other `Upgrade`): once the server
//! answered 101, the client's and the server's connections are joined and
//! bytes copied both ways until both sides have closed (a side that closes
//! its half is passed on as a half-close), or nothing crossed either way for
//! the tunnel timeout. The request keeps its server slot (`max_connections`,
//! least-connections) for the tunnel's life.

use crate::health::InFlight;
use bytes::BytesMut;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Joins the client (once hyper hands its connection over) and `server`;
/// `early` are bytes the server sent right after its 101.
pub fn spawn(
    client: OnUpgrade,
    server: TcpStream,
    early: BytesMut,
    slot: InFlight,
    name: String,
    idle: Duration,
) {
    tokio::spawn(async move {
        let _slot = slot;
        let upgraded = match client.await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(server = %name, error = %e, "the client left before the tunnel opened");
                return;
            }
        };
        let mut client = TokioIo::new(upgraded);
        if !early.is_empty() && client.write_all(&early).await.is_err() {
            return;
        }
        match join(client, server, idle).await {
            Ok(()) => tracing::debug!(server = %name, "tunnel closed"),
            Err(e) => tracing::debug!(server = %name, error = %e, "tunnel ended"),
        }
    });
}

/// Copies both ways until both directions ended or `idle` passed with no byte.
async fn join<C>(client: C, mut server: TcpStream, idle: Duration) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = server.split();
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut client_open, mut server_open) = (true, true);
    while client_open || server_open {
        tokio::select! {
            n = cr.read(&mut up), if client_open => match n? {
                0 => {
                    client_open = false;
                    sw.shutdown().await?;
                }
                n => sw.write_all(&up[..n]).await?,
            },
            n = sr.read(&mut down), if server_open => match n? {
                0 => {
                    server_open = false;
                    cw.shutdown().await?;
                }
                n => cw.write_all(&down[..n]).await?,
            },
            _ = tokio::time::sleep(idle) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("nothing either way for {idle:?}"),
                ))
            }
        }
    }
    Ok(())
}
