//! Protocol switches (WebSocket and any other `Upgrade`): once the server
//! answered 101, the client's and the server's connections are joined and
//! bytes copied both ways until either side closes. The request keeps its
//! server slot (`max_connections`, least-connections) for the tunnel's life.

use crate::health::InFlight;
use bytes::BytesMut;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Joins the client (once hyper hands its connection over) and `server`;
/// `early` are bytes the server sent right after its 101.
pub fn spawn(
    client: OnUpgrade,
    mut server: TcpStream,
    early: BytesMut,
    slot: InFlight,
    name: String,
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
        match tokio::io::copy_bidirectional(&mut client, &mut server).await {
            Ok((up, down)) => {
                tracing::debug!(server = %name, up, down, "tunnel closed")
            }
            Err(e) => tracing::debug!(server = %name, error = %e, "tunnel ended"),
        }
    });
}
