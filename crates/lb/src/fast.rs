//! The load balancer's fast lane ([`webinfra_proxy::lane`]): a plain
//! keep-alive HTTP/1.1 `GET` or `HEAD`, over HTTP or HTTPS, is forwarded as
//! bytes -- its head rewritten once into the server's ([`headers::raw`]),
//! the server's head into the client's -- with the same server choice,
//! retries, counters and passive health as the general path ([`Attempts`]).
//!
//! The lane is open while the configuration allows it (`fast_lane`, on by
//! default) and, on plain HTTP, does not redirect to HTTPS. It applies the
//! rate limit and the sticky cookie ([`crate::sticky`]) as the general path
//! does. Over HTTPS it marks requests
//! `X-Forwarded-Proto: https` and adds the configured
//! `Strict-Transport-Security`. Requests it does not take go through
//! [`crate::handler`]. The access log is written the same way on both.

use crate::access_log::{AccessLog, Tracked};
use crate::attempts::Attempts;
use crate::handler::State;
use crate::pool::{Group, Pool};
use arc_swap::cache::Cache;
use arc_swap::ArcSwap;
use http::Response;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;
use webinfra_proxy::client::ResponseTimer;
use webinfra_proxy::headers::raw::{Kind, RawId};
use webinfra_proxy::headers::{self, RequestId};
use webinfra_proxy::lane::{Answer, AnswerBody, Client, Interim, Lane, RawRequest, Scratch};
use webinfra_proxy::ResBody;

/// The lane, sharing the general path's state. Each connection's clone
/// keeps the pool it last used and checks it is still the current one (a
/// plain load of the pointer) instead of taking a reference to it per
/// request: taking one is four locked instructions, about 10 ns each under
/// load here. After a reload a connection takes the new pool at its next
/// request; until then (or its close) it keeps the old one alive, its
/// health checks stopped ([`Pool::retire`]).
pub struct Fast {
    state: Arc<State>,
    pool: Cache<Arc<ArcSwap<Pool>>, Arc<Pool>>,
    /// The connection's response timer: armed once and moved on only when
    /// it fires early, its waker handed to tokio once for the connection.
    timer: ResponseTimer,
}

impl Clone for Fast {
    /// A connection's lane: the same pool, a timer of its own.
    fn clone(&self) -> Self {
        Fast {
            state: self.state.clone(),
            pool: self.pool.clone(),
            timer: ResponseTimer::default(),
        }
    }
}

impl Fast {
    /// The lane over `state`.
    pub fn new(state: Arc<State>) -> Self {
        Fast {
            pool: Cache::new(state.pool.clone()),
            state,
            timer: ResponseTimer::default(),
        }
    }
}

impl Lane for Fast {
    fn open(&mut self, secure: bool) -> bool {
        let config = &self.pool.load().config;
        config.fast_lane && (secure || !config.tls.as_ref().is_some_and(|t| t.redirect_http))
    }

    fn serve<'a>(
        &'a mut self,
        req: RawRequest<'a>,
        client: Client,
        scratch: &'a mut Scratch,
        interim: &'a Interim,
    ) -> impl Future<Output = Answer> + Send + 'a {
        let Fast { state, pool, timer } = self;
        forward(state, pool.load(), (timer, interim), req, client, scratch)
    }
}

async fn forward(
    state: &State,
    pool: &Pool,
    (timer, interim): (&mut ResponseTimer, &Interim),
    req: RawRequest<'_>,
    client: Client,
    scratch: &mut Scratch,
) -> Answer {
    let start = Instant::now();
    let peer = client.peer;
    let proto = if client.secure { "https" } else { "http" };
    let group = match pool.routed() {
        false => &pool.groups[0],
        true => {
            let host = req.fields().find(|f| f.0 == Kind::Host);
            pool.route(host.map_or(&[][..], |(_, _, value)| value), req.target)
        }
    };
    // A sticky cookie naming a server pins the request to it (a server of
    // the pool the request goes to); the server never sees it.
    let sticky = pool.config.sticky_cookie.as_deref().and_then(|name| {
        let cookies = req.fields().filter(|f| f.0 == Kind::Cookie);
        crate::sticky::split(cookies.map(|(_, _, value)| value), name)
    });
    let pinned = sticky
        .as_ref()
        .and_then(|(server, _)| group.servers.index_of(server));
    let cookies = sticky.as_ref().map(|(_, kept)| kept.as_slice());
    let id = headers::raw::request_head(&req, peer.ip(), proto, cookies, &mut scratch.request);
    if !pool.config.request_headers.is_empty() {
        headers::rules::apply_raw(&mut scratch.request, &pool.config.request_headers);
    }
    if let Some(limiter) = &pool.rate_limiter {
        if let Some(refused) = limiter.refusal(peer.ip(), start) {
            tracing::warn!(id = %String::from_utf8_lossy(id.as_bytes()), %peer, "rate limited");
            return general(pool.error_pages.apply(refused), &id, &mut scratch.head);
        }
    }
    // With an access log, warnings carry the request's id and client, as on
    // the general path. One await either way: the attempt's future is large,
    // and each place it could be awaited would hold a copy of it.
    let span = if pool.config.access_log {
        tracing::info_span!("request", id = %String::from_utf8_lossy(id.as_bytes()), %peer)
    } else {
        tracing::Span::none()
    };
    attempt(
        state,
        (pool, group, timer, interim),
        (&req, pinned),
        &id,
        client,
        scratch,
        start,
    )
    .instrument(span)
    .await
}

/// Sends the request in `scratch` to a server, again to another as
/// [`Attempts`] allows, and makes the answer.
async fn attempt(
    state: &State,
    (pool, group, timer, interim): (&Pool, &Group, &mut ResponseTimer, &Interim),
    (req, pinned): (&RawRequest<'_>, Option<usize>),
    id: &RawId<'_>,
    client: Client,
    scratch: &mut Scratch,
    start: Instant,
) -> Answer {
    let peer = client.peer;
    let head = &scratch.request;
    let mut attempts = Attempts::new(
        state,
        (pool, group),
        peer.ip(),
        (&req.method, req.target),
        pinned,
        start,
    );
    loop {
        let (i, in_flight) = match attempts.admit().await {
            Ok(admitted) => admitted,
            Err(resp) => return general(resp, id, &mut scratch.head),
        };
        let upstream = &group.servers.upstreams[i];
        let (servers, tried) = (&group.servers, &attempts.tried);
        let gone = || servers.gone(i, tried);
        // Awaited where it is made: a future kept in a variable across the
        // await would take its room in this one twice.
        match group.clients[i]
            .send_raw(
                upstream,
                head,
                &req.method,
                (attempts.attempt, Some(&gone)),
                (timer, interim),
            )
            .await
        {
            Ok((_, body)) if body.broken_start() => {
                return general(attempts.invalid(i), id, &mut scratch.head);
            }
            Ok((resp, mut body)) => {
                let status = resp.status.as_u16();
                attempts.answered(i, status);
                let framing =
                    headers::raw::response_head(&resp, &req.method, id, &mut scratch.head);
                let rules = &pool.config.response_headers;
                if !rules.is_empty() {
                    headers::rules::apply_raw(&mut scratch.head, rules);
                }
                if client.secure {
                    hsts(pool, &mut scratch.head);
                }
                if let Some(cookie) = pool.config.sticky_cookie.as_deref() {
                    if pinned != Some(i) {
                        let (server, secure) = (&upstream.name, client.secure);
                        crate::sticky::set_raw(&mut scratch.head, cookie, server, secure);
                    }
                }
                let log = pool.config.access_log.then(|| {
                    let path = req.target.split(|b| *b == b'?').next().unwrap_or_default();
                    AccessLog::new(
                        RequestId(id.value()),
                        peer,
                        req.method.clone(),
                        String::from_utf8_lossy(path).into_owned(),
                        (group.name.clone(), upstream.name.clone()),
                        status,
                        attempts.tried.len(),
                        start,
                        attempts.queued_ms,
                    )
                });
                // A body that came whole with the head leaves the server free
                // at once; any other (and any to be logged when it is done)
                // keeps its slot until it is read.
                let whole = if log.is_none() {
                    body.take_whole()
                } else {
                    None
                };
                let body = match whole {
                    Some(whole) => AnswerBody::Whole(whole),
                    None => AnswerBody::Stream(http_body_util::BodyExt::boxed_unsync(
                        Tracked::new(body, in_flight, log),
                    )),
                };
                return Answer {
                    date: !resp.has_date,
                    framing,
                    body,
                };
            }
            Err(e) => {
                if let Some(resp) = attempts.failed(i, in_flight, e, true) {
                    return general(resp, id, &mut scratch.head);
                }
            }
        }
    }
}

/// Adds `Strict-Transport-Security` to a response over HTTPS when it is
/// configured and the head as passed on has none, as the general path does.
fn hsts(pool: &Pool, head: &mut Vec<u8>) {
    let Some(age) = pool.config.tls.as_ref().and_then(|t| t.hsts_max_age_s) else {
        return;
    };
    if !headers::raw::has_field(head, b"strict-transport-security") {
        let _ = write!(head, "strict-transport-security: max-age={age}\r\n");
    }
}

/// A response built the general way, with the request id, as an answer.
fn general(mut resp: Response<ResBody>, id: &RawId<'_>, head: &mut Vec<u8>) -> Answer {
    resp.headers_mut().insert(headers::REQUEST_ID, id.value());
    Answer::from_response(resp, head)
}
