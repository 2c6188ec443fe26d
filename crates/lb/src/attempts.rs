//! One request's attempts at the servers, the same for the general path
//! ([`crate::handler`]) and the fast lane ([`crate::fast`]): a server
//! admitted for each attempt, the servers tried left out of the next, a
//! failed connect always retried, a retry after the request may have been
//! sent only when the method allows it and the retry budget has room, and
//! the client told of the last failure or of why no server could take it.

use crate::admission::Refusal;
use crate::health::InFlight;
use crate::pool::{Group, Pool};
use http::{HeaderValue, Method, Response, StatusCode};
use std::net::IpAddr;
use std::time::Instant;
use webinfra_proxy::{text_response, ProxyError, ResBody};

/// Where a request stands in its attempts.
pub struct Attempts<'a> {
    pool: &'a Pool,
    /// The servers of the pool the request was routed to.
    group: &'a Group,
    retry_budget: &'a crate::retry::RetryBudget,
    client: IpAddr,
    method: &'a Method,
    /// The request's path, for messages.
    path: &'a [u8],
    /// The server a sticky cookie names, if any.
    pinned: Option<usize>,
    /// Servers that failed this request.
    pub tried: Vec<usize>,
    last_error: Option<Response<ResBody>>,
    /// Time spent waiting for a server slot (measured for the access log only).
    pub queued_ms: f64,
    /// When the current attempt started (the first one's is the request's).
    pub attempt: Instant,
}

impl<'a> Attempts<'a> {
    /// The first attempt of a request that arrived at `start`.
    pub fn new(
        state: &'a crate::handler::State,
        (pool, group): (&'a Pool, &'a Group),
        client: IpAddr,
        (method, path): (&'a Method, &'a [u8]),
        pinned: Option<usize>,
        start: Instant,
    ) -> Self {
        state.retry_budget.deposit();
        Attempts {
            pool,
            group,
            retry_budget: &state.retry_budget,
            client,
            method,
            path,
            pinned,
            tried: Vec::new(),
            last_error: None,
            queued_ms: 0.0,
            attempt: start,
        }
    }

    /// A server for the next attempt, or the response that says why there
    /// is none (after a failed attempt: that failure).
    pub async fn admit(&mut self) -> Result<(usize, InFlight), Response<ResBody>> {
        let (pool, group) = (self.pool, self.group);
        let asked = pool.config.access_log.then(Instant::now);
        let admitted = group
            .servers
            .admit(&self.tried, &*group.balancer, self.client, self.pinned)
            .await;
        self.queued_ms += asked.map_or(0.0, |t| crate::access_log::ms(t.elapsed()));
        if !self.tried.is_empty() {
            self.attempt = Instant::now();
        }
        admitted.map_err(|refusal| {
            let resp = match (refusal, self.last_error.take()) {
                (Refusal::NoServer, Some(e)) => e,
                _ => {
                    let why = refusal.reason(pool.config.clients.queue_timeout);
                    let why = match refusal {
                        // A default pool left empty (only pools have servers).
                        Refusal::NoServer if group.servers.upstreams.is_empty() => {
                            "no pool takes this request (its Host and path match none)".into()
                        }
                        _ if pool.routed() => format!("{why} (pool {})", group.name),
                        _ => why,
                    };
                    let mut r = text_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("503 Service Unavailable: {why}"),
                    );
                    r.headers_mut()
                        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                    r
                }
            };
            tracing::warn!(method = %self.method, path = %String::from_utf8_lossy(self.path), status = resp.status().as_u16(), ?refusal, "no server could answer");
            pool.error_pages.apply(resp)
        })
    }

    /// Server `i` sent a response that cannot be passed on (a chunked body
    /// broken from its first line): counted as its 502, its passive health
    /// told, and the client's 502.
    pub fn invalid(&self, i: usize) -> Response<ResBody> {
        self.answered(i, 502);
        let name = &self.group.servers.upstreams[i].name;
        tracing::warn!(server = %name, "invalid chunked body from the server");
        let resp = text_response(
            StatusCode::BAD_GATEWAY,
            format!("502 Bad Gateway: {name} sent an invalid response body"),
        );
        self.pool.error_pages.apply(resp)
    }

    /// Server `i` answered with `status`: counted, and its passive health told.
    pub fn answered(&self, i: usize, status: u16) {
        let servers = &self.group.servers;
        servers.stats[i].response(status, self.attempt.elapsed());
        servers.report_response(i, status);
    }

    /// Server `i` failed the request with `e`. Returns None when another
    /// server is to be tried (`resendable`: the request can be sent again
    /// at all), else the response for the client.
    pub fn failed(
        &mut self,
        i: usize,
        in_flight: InFlight,
        e: ProxyError,
        resendable: bool,
    ) -> Option<Response<ResBody>> {
        drop(in_flight);
        let servers = &self.group.servers;
        if e.nothing_sent() {
            servers.report_connect_failure(i, &e.detail);
        }
        tracing::warn!(error = %e, "upstream failed");
        self.tried.push(i);
        // A failed connect is always retried; a retry after the request
        // may have been sent spends the retry budget.
        let retry = resendable
            && e.retryable(self.method)
            && (e.nothing_sent() || self.retry_budget.withdraw());
        servers.stats[i].error(retry);
        let resp = text_response(
            e.status(),
            format!(
                "{} {}: {e}",
                e.status().as_u16(),
                e.status().canonical_reason().unwrap_or("")
            ),
        );
        if retry {
            self.last_error = Some(resp);
            None
        } else {
            Some(self.pool.error_pages.apply(resp))
        }
    }
}
