//! Probing a component's `/healthz`: a fresh connection, a short timeout, JSON back.
//! Used by the supervisor (readiness, `status`) and by a database node asking
//! the monitor who the primary is.

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// What a probe saw.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `ok`, or what the component says it is (`starting`, `degraded`), or `down`.
    pub status: String,
    /// The component's JSON answer, if any.
    pub body: Option<serde_json::Value>,
    /// Why it is not ok, in words.
    pub detail: Option<String>,
}

impl Health {
    /// True when the component answered 200 with status ok.
    pub fn ok(&self) -> bool {
        self.status == "ok"
    }

    fn down(detail: String) -> Health {
        Health {
            status: "down".into(),
            body: None,
            detail: Some(detail),
        }
    }
}

/// GETs `http://addr/healthz` within `timeout`.
pub async fn probe(addr: SocketAddr, timeout: Duration) -> Health {
    match tokio::time::timeout(timeout, fetch(addr, http::Method::GET, "/healthz")).await {
        Ok(Ok((code, body))) => {
            let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
            let said = json
                .as_ref()
                .and_then(|j| j.get("status"))
                .and_then(|s| s.as_str())
                .map(str::to_string);
            let detail = json
                .as_ref()
                .and_then(|j| j.get("detail"))
                .and_then(|s| s.as_str())
                .map(str::to_string);
            let status = match (code, said) {
                (200, Some(s)) => s,
                (200, None) => "ok".into(),
                (_, Some(s)) if s != "ok" => s,
                (code, _) => format!("http {code}"),
            };
            Health {
                status,
                body: json,
                detail,
            }
        }
        Ok(Err(e)) => Health::down(e),
        Err(_) => Health::down(format!("no answer within {timeout:?}")),
    }
}

/// Sends `method path` (no body) to `addr` and returns the status and the JSON body.
pub async fn call(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Option<serde_json::Value>), String> {
    match tokio::time::timeout(timeout, fetch(addr, method, path)).await {
        Ok(Ok((code, body))) => Ok((code, serde_json::from_slice(&body).ok())),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn fetch(addr: SocketAddr, method: http::Method, path: &str) -> Result<(u16, Bytes), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .expect("valid request");
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((code, body))
}
