//! Active health checks: one loop per server, an HTTP `GET` of the
//! configured path every `interval` on a fresh connection, within
//! `timeout`; `fall` failures in a row take a server down, `rise` successes
//! bring it back (with slow start).

use super::{ServerSet, MAINT};
use bytes::Bytes;
use http::{header, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;

impl ServerSet {
    /// Starts one check loop per server; abort the handle to stop them.
    pub fn spawn_checks(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..self.upstreams.len() {
                let set = self.clone();
                tasks.spawn(async move { set.check_loop(i).await });
            }
            while tasks.join_next().await.is_some() {}
        })
    }

    async fn check_loop(&self, i: usize) {
        let mut next = Instant::now();
        loop {
            next += self.check.interval;
            if self.admin[i].load(Ordering::Relaxed) == MAINT {
                tokio::time::sleep_until(next.into()).await;
                continue;
            }
            let result = match tokio::time::timeout(self.check.timeout, self.check_once(i)).await {
                Ok(r) => r,
                Err(_) => Err(format!("timed out after {:?}", self.check.timeout)),
            };
            self.record(i, result);
            tokio::time::sleep_until(next.into()).await;
            if Instant::now() > next + self.check.interval {
                next = Instant::now();
            }
        }
    }

    /// One check: a fresh connection, `GET path`; healthy is the expected
    /// status, or any 2xx or 3xx.
    async fn check_once(&self, i: usize) -> Result<String, String> {
        let upstream = &self.upstreams[i];
        let stream = TcpStream::connect(upstream.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let host = match &self.check.host {
            Some(h) => h.clone(),
            None => upstream.addr.to_string(),
        };
        let req = Request::get(&self.check.path)
            .header(header::HOST, host)
            .header(header::USER_AGENT, "webinfra-health-check")
            .header(header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .expect("valid check request");
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let healthy = match self.check.expect_status {
            Some(expected) => status.as_u16() == expected,
            None => status.is_success() || status.is_redirection(),
        };
        if healthy {
            Ok(status.to_string())
        } else {
            Err(format!("status {status}"))
        }
    }

    /// One check's outcome for server `i`: counted, and the server taken
    /// down or brought back when a streak reaches `fall` or `rise`.
    pub(super) fn record(&self, i: usize, result: Result<String, String>) {
        let mut counters = self.counters.lock().expect("health lock");
        let c = &mut counters[i];
        let server = &self.upstreams[i].name;
        match result {
            Ok(what) => {
                c.ok_streak += 1;
                c.fail_streak = 0;
                c.last_check = what;
                if !c.up && c.ok_streak >= self.check.rise {
                    c.up = true;
                    self.start_ramp(i);
                    tracing::info!(%server, "server UP");
                    self.publish(&counters);
                }
            }
            Err(what) => {
                c.fail_streak += 1;
                c.ok_streak = 0;
                c.last_check = what.clone();
                if c.up && c.fail_streak >= self.check.fall {
                    c.up = false;
                    tracing::warn!(%server, reason = %what, "server DOWN (health check)");
                    self.publish(&counters);
                }
            }
        }
    }
}
