//! Server health: active HTTP checks in the background, passive marking on
//! connect failures, and a lock-free snapshot of which servers are up.
//!
//! Like HAProxy, every server starts up; `fall` consecutive failed checks take
//! it down, `rise` consecutive good ones bring it back. A failed connect from
//! the request path takes a server down at once, without waiting for a check.

mod checks;

use arc_swap::ArcSwap;
use serde_json::json;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use webinfra_proxy::counter::Count;
use webinfra_proxy::Upstream;
use webinfra_topology::{HealthCheck, ServerLimits};

const READY: u8 = 0;
const DRAIN: u8 = 1;
const MAINT: u8 = 2;

/// What the admin API reports for one server.
#[derive(Debug, Clone)]
pub struct ServerStatus {
    /// The server.
    pub upstream: Upstream,
    /// Whether it gets traffic.
    pub up: bool,
    /// Outcome of the last check, e.g. `200 OK` or `connection refused`.
    pub last_check: String,
}

struct Counters {
    up: bool,
    ok_streak: u32,
    fail_streak: u32,
    last_check: String,
}

/// Server indices a request may go to (see [`ServerSet::candidates`]).
pub type Candidates = smallvec::SmallVec<[usize; 16]>;

/// The backend servers of one pool and their health.
pub struct ServerSet {
    /// The servers, indexed as everywhere else in this crate.
    pub upstreams: Vec<Upstream>,
    /// Weights for weighted algorithms (changed at runtime by `set_weight`;
    /// a reload sets them from the file again).
    weights: Vec<AtomicU32>,
    /// Backup servers get traffic only while no other server is up.
    backup: Vec<bool>,
    /// Requests in flight per server (until the response body is done).
    /// (Shared with the set that replaces this one at a reload, so limits
    /// hold across the switch.)
    pub(crate) in_flight: Vec<Arc<AtomicUsize>>,
    /// Counters per server (shared with the set that replaces this one at a reload).
    pub stats: Vec<Arc<crate::stats::ServerStats>>,
    /// Connection limits, timeouts and slow start per server.
    pub limits: Vec<ServerLimits>,
    /// Whether any server has a connection limit (else admission is lock-free and waitless).
    pub(crate) limited: bool,
    /// Per server: when its slow start began, in ns since `epoch` (0: not ramping).
    pub(crate) ramp_start: Vec<AtomicU64>,
    pub(crate) epoch: Instant,
    /// The queue of requests waiting for a server slot.
    pub(crate) queue: crate::admission::Queue,
    /// Operator state per server: READY, DRAIN or MAINT.
    admin: Vec<AtomicU8>,
    /// Consecutive 500/502/504 responses per server (passive detection).
    server_errors: Vec<AtomicU32>,
    check: HealthCheck,
    counters: Mutex<Vec<Counters>>,
    /// Indices of servers that are up; read on every request.
    up: ArcSwap<Vec<usize>>,
    /// The set a reload replaced this one with (its checks go on watching
    /// the servers both have).
    successor: OnceLock<Arc<ServerSet>>,
}

impl ServerSet {
    /// A set where every server starts up, all weight 1, no backups.
    pub fn new(upstreams: Vec<Upstream>, check: HealthCheck) -> Self {
        let n = upstreams.len();
        Self::with_options(upstreams, vec![1; n], vec![false; n], check)
    }

    /// A set with weights and backup flags (one per server).
    pub fn with_options(
        upstreams: Vec<Upstream>,
        weights: Vec<u32>,
        backup: Vec<bool>,
        check: HealthCheck,
    ) -> Self {
        let counters = upstreams
            .iter()
            .map(|_| Counters {
                up: true,
                ok_streak: 0,
                fail_streak: 0,
                last_check: "not checked yet".into(),
            })
            .collect();
        let up = (0..upstreams.len()).collect();
        ServerSet {
            in_flight: upstreams.iter().map(|_| Default::default()).collect(),
            stats: upstreams.iter().map(|_| Default::default()).collect(),
            limits: upstreams.iter().map(|_| ServerLimits::default()).collect(),
            limited: false,
            ramp_start: upstreams.iter().map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            queue: Default::default(),
            admin: upstreams.iter().map(|_| AtomicU8::new(READY)).collect(),
            server_errors: upstreams.iter().map(|_| AtomicU32::new(0)).collect(),
            upstreams,
            weights: weights.into_iter().map(AtomicU32::new).collect(),
            backup,
            check,
            counters: Mutex::new(counters),
            up: ArcSwap::from_pointee(up),
            successor: OnceLock::new(),
        }
    }

    /// Sets each server's limits (one per server) and the queue for requests
    /// that find every server at its limit.
    pub fn with_limits(
        mut self,
        limits: Vec<ServerLimits>,
        max_queue: usize,
        queue_timeout: std::time::Duration,
    ) -> Self {
        assert_eq!(
            limits.len(),
            self.upstreams.len(),
            "one ServerLimits per server"
        );
        self.limited = limits.iter().any(|l| l.max_connections.is_some());
        self.limits = limits;
        self.queue = crate::admission::Queue::new(max_queue, queue_timeout)
            .with_servers(self.upstreams.len());
        self
    }

    /// Takes over what a reload must not forget from `old`, for every server
    /// with the same name and address: up or down, operator state, counters.
    pub fn inherit(&mut self, old: &ServerSet) {
        let old_counters = old.counters.lock().expect("health lock");
        let mut counters = self.counters.lock().expect("health lock");
        for (i, u) in self.upstreams.iter().enumerate() {
            let Some(j) = old.upstreams.iter().position(|o| o == u) else {
                continue;
            };
            let (o, c) = (&old_counters[j], &mut counters[i]);
            c.up = o.up;
            c.ok_streak = o.ok_streak;
            c.fail_streak = o.fail_streak;
            c.last_check = o.last_check.clone();
            self.admin[i].store(old.admin[j].load(Ordering::Relaxed), Ordering::Relaxed);
            self.stats[i] = old.stats[j].clone();
            self.in_flight[i] = old.in_flight[j].clone();
        }
        self.queue.share_wakeups(&old.queue);
        self.publish(&counters);
    }

    /// Indices of the servers currently up.
    pub fn up(&self) -> Arc<Vec<usize>> {
        self.up.load_full()
    }

    /// The servers a request may go to now, leaving out those in `tried`:
    /// every up, ready server that is not a backup, or, when none is left,
    /// the up backups (so a retry after the last active server failed still
    /// has somewhere to go). Held inline up to [`Candidates`]' size, so a
    /// request allocates nothing here.
    pub fn candidates(&self, tried: &[usize]) -> Candidates {
        let up = self.up.load();
        let mut out = Candidates::new();
        for backup in [false, true] {
            for &i in up.iter() {
                if self.backup[i] == backup
                    && !tried.contains(&i)
                    && self.admin[i].load(Ordering::Relaxed) == READY
                {
                    out.push(i);
                }
            }
            if !out.is_empty() {
                break;
            }
        }
        out
    }

    /// True when server `i` has been marked down (by its checks or by
    /// traffic) and another server can take a request that already tried
    /// those in `tried`: a request waiting on `i` is better sent there.
    /// After a reload the set that replaced this one answers (this one's
    /// checks have stopped); a server the reload removed is never gone:
    /// requests on it finish there.
    pub fn gone(&self, i: usize, tried: &[usize]) -> bool {
        if let Some(next) = self.successor.get() {
            let there = |k: usize| next.upstreams.iter().position(|u| *u == self.upstreams[k]);
            let Some(j) = there(i) else {
                return false;
            };
            let tried: Candidates = tried.iter().filter_map(|&k| there(k)).collect();
            return next.gone(j, &tried);
        }
        !self.up.load().contains(&i) && !self.candidates(tried).is_empty()
    }

    /// `next` replaced this set (a reload): see [`ServerSet::gone`].
    pub(crate) fn hand_over(&self, next: Arc<ServerSet>) {
        let _ = self.successor.set(next);
    }

    /// True when server `i` still takes requests pinned to it: up, and
    /// ready or draining (not in maintenance).
    pub fn keeps_sessions(&self, i: usize) -> bool {
        self.admin[i].load(Ordering::Relaxed) != MAINT && self.up().contains(&i)
    }

    /// The server named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.upstreams.iter().position(|u| u.name == name)
    }

    /// Sets server `name`'s operator state: `drain` (no new requests, checks
    /// go on), `disable` (maintenance: no requests, no checks) or `enable`.
    pub fn set_admin(&self, name: &str, action: &str) -> Result<(), String> {
        let i = self
            .index_of(name)
            .ok_or_else(|| format!("no server named {name}"))?;
        let state = match action {
            "drain" => DRAIN,
            "disable" => MAINT,
            "enable" => READY,
            other => return Err(format!("unknown action {other} (drain, disable, enable)")),
        };
        let before = self.admin[i].swap(state, Ordering::Relaxed);
        if state == READY && before != READY {
            self.start_ramp(i);
        }
        tracing::warn!(server = name, action, "operator changed the server's state");
        Ok(())
    }

    /// Sets a server's weight (1-256) until the next reload, like HAProxy's
    /// `set server ... weight`; returns the old and the new one.
    pub fn set_weight(&self, name: &str, weight: &str) -> Result<(u32, u32), String> {
        let i = self
            .index_of(name)
            .ok_or_else(|| format!("no server named {name}"))?;
        let weight: u32 = weight
            .parse()
            .ok()
            .filter(|w| (1..=256).contains(w))
            .ok_or_else(|| format!("weight `{weight}` is not a number from 1 to 256"))?;
        let before = self.weights[i].swap(weight, Ordering::Relaxed);
        tracing::warn!(
            server = name,
            before,
            weight,
            "operator changed the server's weight"
        );
        Ok((before, weight))
    }

    /// `READY`, `DRAIN` or `MAINT` for server `i`.
    pub fn admin_state(&self, i: usize) -> &'static str {
        match self.admin[i].load(Ordering::Relaxed) {
            DRAIN => "DRAIN",
            MAINT => "MAINT",
            _ => "READY",
        }
    }

    /// Counts a request to server `i` as in flight until the guard is dropped,
    /// or None when the server is at its `max_connections`.
    pub fn start_request(self: &Arc<Self>, i: usize) -> Option<InFlight> {
        match self.limits[i].max_connections {
            None => {
                self.in_flight[i].add(1);
            }
            Some(max) => {
                let max = max as usize;
                let mut cur = self.in_flight[i].load(Ordering::SeqCst);
                loop {
                    if cur >= max {
                        return None;
                    }
                    match self.in_flight[i].compare_exchange_weak(
                        cur,
                        cur + 1,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    ) {
                        Ok(_) => break,
                        Err(now) => cur = now,
                    }
                }
            }
        }
        Some(InFlight {
            set: self.clone(),
            i,
        })
    }

    /// Passive detection from real traffic: `fall` consecutive 500, 502 or 504
    /// responses take a server down at once (503 is an application's "retry
    /// later", not a broken server, and does not count).
    pub fn report_response(&self, i: usize, status: u16) {
        // Lock-free unless a server crosses the threshold.
        if !matches!(status, 500 | 502 | 504) {
            if self.server_errors[i].load(Ordering::Relaxed) != 0 {
                self.server_errors[i].store(0, Ordering::Relaxed);
            }
            return;
        }
        let errors = self.server_errors[i].fetch_add(1, Ordering::Relaxed) + 1;
        if errors < self.check.fall {
            return;
        }
        let mut counters = self.counters.lock().expect("health lock");
        let c = &mut counters[i];
        if c.up {
            c.up = false;
            c.ok_streak = 0;
            c.last_check = format!("{errors} consecutive {status} responses");
            tracing::warn!(server = %self.upstreams[i].name, status, "server DOWN (server errors in traffic)");
            self.publish(&counters);
        }
    }

    /// Takes server `i` down at once (a connection to it failed).
    pub fn report_connect_failure(&self, i: usize, detail: &str) {
        let mut counters = self.counters.lock().expect("health lock");
        let c = &mut counters[i];
        c.ok_streak = 0;
        c.fail_streak = c.fail_streak.max(self.check.fall);
        c.last_check = format!("connect failed: {detail}");
        if c.up {
            c.up = false;
            tracing::warn!(server = %self.upstreams[i].name, %detail, "server DOWN (connection failed)");
            self.publish(&counters);
        }
    }

    fn publish(&self, counters: &[Counters]) {
        let up = counters
            .iter()
            .enumerate()
            .filter(|(_, c)| c.up)
            .map(|(i, _)| i)
            .collect();
        self.up.store(Arc::new(up));
    }

    /// Every server's state, for the admin API.
    /// (In-flight counts are in [`ServerSet::status_json`].)
    pub fn status(&self) -> Vec<ServerStatus> {
        let counters = self.counters.lock().expect("health lock");
        self.upstreams
            .iter()
            .zip(counters.iter())
            .map(|(u, c)| ServerStatus {
                upstream: u.clone(),
                up: c.up,
                last_check: c.last_check.clone(),
            })
            .collect()
    }

    /// Every server's state and counters, for the stats renderers.
    pub fn rows(&self, pool: &str) -> Vec<crate::stats::Row> {
        self.status()
            .into_iter()
            .enumerate()
            .map(|(i, s)| crate::stats::Row {
                pool: pool.to_string(),
                name: s.upstream.name,
                address: s.upstream.addr.to_string(),
                up: s.up,
                admin: self.admin_state(i),
                in_flight: self.in_flight[i].load(Ordering::Relaxed),
                queued: self.queue.for_server(i),
                max_connections: self.limits[i].max_connections,
                weight: self.weights[i].load(Ordering::Relaxed),
                stats: self.stats[i].snapshot(),
            })
            .collect()
    }

    /// Each server's state as JSON, naming `pool`.
    pub fn servers_json(&self, pool: &str) -> Vec<serde_json::Value> {
        let servers: Vec<_> = self
            .status()
            .into_iter()
            .map(|s| {
                json!({
                    "name": s.upstream.name,
                    "address": s.upstream.addr.to_string(),
                    "up": s.up,
                    "last_check": s.last_check,
                })
            })
            .collect();
        let mut servers = servers;
        for (i, s) in servers.iter_mut().enumerate() {
            s["pool"] = pool.into();
            s["weight"] = self.weights[i].load(Ordering::Relaxed).into();
            s["backup"] = self.backup[i].into();
            s["in_flight"] = self.in_flight[i].load(Ordering::Relaxed).into();
            s["queued"] = self.queue.for_server(i).into();
            s["max_connections"] = self.limits[i].max_connections.into();
            s["slow_start"] = self.ramp(i).is_some().into();
            s["admin"] = self.admin_state(i).into();
            s["stats"] = serde_json::to_value(self.stats[i].snapshot()).expect("serialisable");
        }
        servers
    }
}

impl crate::balance::Load for ServerSet {
    fn in_flight(&self, i: usize) -> usize {
        self.in_flight[i].load(Ordering::Relaxed)
    }
    fn weight(&self, i: usize) -> u32 {
        self.weights[i].load(Ordering::Relaxed)
    }
    fn key(&self, i: usize) -> u64 {
        crate::balance::fnv1a(self.upstreams[i].name.as_bytes())
    }
}

/// A request in flight to one server; dropping it ends the request.
pub struct InFlight {
    set: Arc<ServerSet>,
    i: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set.in_flight[self.i].sub(1);
        if self.set.limited {
            self.set.queue.slot_freed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn set() -> ServerSet {
        let upstreams = (0..2)
            .map(|i| Upstream {
                name: format!("s{i}"),
                addr: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
            })
            .collect();
        ServerSet::new(
            upstreams,
            HealthCheck {
                path: "/".into(),
                host: None,
                interval: Duration::from_millis(10),
                timeout: Duration::from_millis(10),
                rise: 2,
                fall: 3,
                expect_status: None,
            },
        )
    }

    #[test]
    fn fall_failures_take_a_server_down_and_rise_successes_bring_it_back() {
        let s = set();
        s.record(1, Err("x".into()));
        s.record(1, Err("x".into()));
        assert_eq!(*s.up(), [0, 1]);
        s.record(1, Err("x".into()));
        assert_eq!(*s.up(), [0]);
        s.record(1, Ok("200".into()));
        assert_eq!(*s.up(), [0]);
        s.record(1, Ok("200".into()));
        assert_eq!(*s.up(), [0, 1]);
    }

    #[test]
    fn backups_serve_only_while_no_other_server_is_up() {
        let upstreams = set().upstreams;
        let s = ServerSet::with_options(upstreams, vec![1, 1], vec![false, true], set().check);
        assert_eq!(s.candidates(&[]).as_slice(), [0]);
        assert_eq!(
            s.candidates(&[0]).as_slice(),
            [1],
            "a retry after the active server failed goes to the backup"
        );
        s.report_connect_failure(0, "refused");
        assert_eq!(s.candidates(&[]).as_slice(), [1]);
    }

    #[test]
    fn a_server_is_gone_for_its_waiting_requests_only_while_another_can_take_them() {
        let s = set();
        assert!(!s.gone(0, &[]), "up");
        s.report_connect_failure(0, "refused");
        assert!(s.gone(0, &[]), "down, and s1 is up");
        assert!(!s.gone(0, &[1]), "s1 already failed this request");
        s.report_connect_failure(1, "refused");
        assert!(
            !s.gone(0, &[]),
            "no server left: better to wait for this one"
        );
    }

    #[test]
    fn after_a_reload_the_new_set_says_whether_a_server_is_gone() {
        let old = set();
        let next = Arc::new(set());
        old.hand_over(next.clone());
        next.report_connect_failure(0, "refused");
        assert!(old.gone(0, &[]), "down in the set in charge");
        assert!(!old.gone(0, &[1]), "tried indices carried over");
        // A reload that removed s0: requests on it finish there.
        let old = set();
        let check = old.check.clone();
        let without = ServerSet::new(vec![old.upstreams[1].clone()], check);
        old.hand_over(Arc::new(without));
        old.report_connect_failure(0, "refused");
        assert!(!old.gone(0, &[]));
    }

    #[test]
    fn consecutive_server_errors_take_a_server_down_but_503_does_not() {
        let s = set();
        for _ in 0..5 {
            s.report_response(0, 503);
        }
        assert_eq!(*s.up(), [0, 1]);
        s.report_response(0, 502);
        s.report_response(0, 500);
        s.report_response(0, 200);
        s.report_response(0, 504);
        s.report_response(0, 502);
        assert_eq!(*s.up(), [0, 1], "a success resets the count");
        s.report_response(0, 500);
        assert_eq!(*s.up(), [1]);
    }

    #[test]
    fn a_connect_failure_takes_a_server_down_at_once() {
        let s = set();
        s.report_connect_failure(0, "refused");
        assert_eq!(*s.up(), [1]);
        s.record(0, Ok("200".into()));
        s.record(0, Ok("200".into()));
        assert_eq!(*s.up(), [0, 1]);
    }
}
