//! Admission: which server takes a request now, and what a request does when
//! every server is at its `max_connections` (HAProxy's `maxconn`, `maxqueue`,
//! `timeout queue` and `slowstart`).
//!
//! A request takes a slot on its server (an [`InFlight`] guard, held until the
//! response body ends). When every usable server is full it waits in the
//! pool's bounded queue until a slot frees or the queue timeout passes; a full
//! queue or a timeout is a 503 with `Retry-After`, and nothing was sent. A
//! server that has just come back (health check or `enable`) is in slow start:
//! for `slow_start` it is offered new requests with a probability growing from
//! 0 to 1, so its share ramps up instead of jumping to a full share at once.

use crate::health::InFlight;
use crate::{Balancer, ServerSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Requests waiting for a server slot.
#[derive(Debug)]
pub struct Queue {
    max: usize,
    timeout: Duration,
    waiting: Arc<AtomicUsize>,
    /// Shared across reloads: a slot freed by a request of the old
    /// configuration wakes requests queued in the new one.
    freed: Arc<Notify>,
    /// Per server: the waiting requests that only it may take (pinned by
    /// a sticky cookie; HAProxy's per-server queue).
    for_server: Vec<AtomicUsize>,
}

impl Default for Queue {
    fn default() -> Self {
        let defaults = webinfra_topology::ClientLimits::default();
        Queue::new(defaults.max_queue, defaults.queue_timeout)
    }
}

impl Queue {
    /// A queue of at most `max` requests, each waiting at most `timeout`.
    pub fn new(max: usize, timeout: Duration) -> Self {
        Queue {
            max,
            timeout,
            waiting: Default::default(),
            freed: Default::default(),
            for_server: Vec::new(),
        }
    }

    /// The queue with a count of its own for each of `n` servers.
    pub(crate) fn with_servers(mut self, n: usize) -> Self {
        self.for_server = (0..n).map(|_| AtomicUsize::new(0)).collect();
        self
    }

    /// Requests waiting for server `i` in particular.
    pub fn for_server(&self, i: usize) -> usize {
        self.for_server
            .get(i)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// Shares `old`'s waiters and wake-ups (a reload keeps one queue).
    pub(crate) fn share_wakeups(&mut self, old: &Queue) {
        self.waiting = old.waiting.clone();
        self.freed = old.freed.clone();
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Called when a slot frees: wakes the waiting requests to try again.
    pub(crate) fn slot_freed(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }
}

/// Why a request got no server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No server is up (or every one was tried).
    NoServer,
    /// Every server is at its limit and the queue is full.
    QueueFull,
    /// Every server stayed at its limit for the whole queue timeout.
    QueueTimeout,
}

impl Refusal {
    /// The 503 body's reason.
    pub fn reason(self, queue_timeout: Duration) -> String {
        match self {
            Refusal::NoServer => "no server is up".into(),
            Refusal::QueueFull => {
                "every server is at its connection limit and the queue is full".into()
            }
            Refusal::QueueTimeout => format!(
                "every server stayed at its connection limit for {} ms (queue timeout)",
                queue_timeout.as_millis()
            ),
        }
    }
}

enum Pick {
    Server(usize, InFlight),
    NoneUp,
    Full,
}

impl ServerSet {
    /// Starts server `i`'s slow start, if it has one.
    pub(crate) fn start_ramp(&self, i: usize) {
        if self.limits[i].slow_start.is_zero() {
            return;
        }
        let now = self.epoch.elapsed().as_nanos().max(1) as u64;
        self.ramp_start[i].store(now, Ordering::Relaxed);
    }

    /// Server `i`'s share during slow start (0.0 to 1.0), or None once it is over.
    pub fn ramp(&self, i: usize) -> Option<f64> {
        let start = self.ramp_start[i].load(Ordering::Relaxed);
        if start == 0 {
            return None;
        }
        let elapsed = (self.epoch.elapsed().as_nanos() as u64).saturating_sub(start);
        let total = self.limits[i].slow_start.as_nanos() as u64;
        if elapsed >= total {
            self.ramp_start[i].store(0, Ordering::Relaxed);
            return None;
        }
        Some(elapsed as f64 / total as f64)
    }

    /// Picks a server with a free slot for a request from `client`, leaving out `tried`;
    /// waits in the queue while every usable server is full. A request
    /// `pinned` to a server (sticky cookie) goes to it while it is up and
    /// not in maintenance, waiting for a slot on it if it is full.
    pub async fn admit(
        self: &Arc<Self>,
        tried: &[usize],
        balancer: &dyn Balancer,
        client: IpAddr,
        pinned: Option<usize>,
    ) -> Result<(usize, InFlight), Refusal> {
        let pinned = pinned.filter(|i| !tried.contains(i) && self.keeps_sessions(*i));
        match self.try_pick(tried, balancer, client, pinned) {
            Pick::Server(i, guard) => return Ok((i, guard)),
            Pick::NoneUp => return Err(Refusal::NoServer),
            Pick::Full => {}
        }
        // Boxed: the wait's timer and notification would make every
        // request's future larger, and it is moved whole on each await.
        Box::pin(self.queued(tried, balancer, client, pinned)).await
    }

    /// [`admit`](Self::admit) once every usable server is full: a place in the queue.
    async fn queued(
        self: &Arc<Self>,
        tried: &[usize],
        balancer: &dyn Balancer,
        client: IpAddr,
        pinned: Option<usize>,
    ) -> Result<(usize, InFlight), Refusal> {
        let queue = &self.queue;
        if queue.waiting.fetch_add(1, Ordering::SeqCst) >= queue.max {
            queue.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::QueueFull);
        }
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&queue.waiting);
        let _leave_server = pinned.and_then(|i| queue.for_server.get(i)).map(|n| {
            n.fetch_add(1, Ordering::SeqCst);
            Leave(n)
        });
        let deadline = tokio::time::Instant::now() + queue.timeout;
        loop {
            let notified = queue.freed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a slot freed after the look wakes us.
            notified.as_mut().enable();
            match self.try_pick(tried, balancer, client, pinned) {
                Pick::Server(i, guard) => return Ok((i, guard)),
                Pick::NoneUp => return Err(Refusal::NoServer),
                Pick::Full => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Refusal::QueueTimeout);
            }
        }
    }

    fn try_pick(
        self: &Arc<Self>,
        tried: &[usize],
        balancer: &dyn Balancer,
        client: IpAddr,
        pinned: Option<usize>,
    ) -> Pick {
        if let Some(i) = pinned {
            return match self.start_request(i) {
                Some(guard) => Pick::Server(i, guard),
                None => Pick::Full,
            };
        }
        let mut candidates = self.candidates(tried);
        if candidates.is_empty() {
            return Pick::NoneUp;
        }
        self.slow_start_filter(&mut candidates);
        if self.limited {
            candidates.retain(|&mut i| {
                self.limits[i]
                    .max_connections
                    .is_none_or(|max| self.in_flight[i].load(Ordering::SeqCst) < max as usize)
            });
        }
        // Another request may take the last slot between the look and the take.
        while let Some(i) = balancer.pick(&candidates, client, &**self) {
            if let Some(guard) = self.start_request(i) {
                return Pick::Server(i, guard);
            }
            candidates.retain(|&mut c| c != i);
        }
        Pick::Full
    }

    /// Leaves out servers in slow start with probability 1 - their share,
    /// unless that would leave nothing.
    fn slow_start_filter(&self, candidates: &mut crate::health::Candidates) {
        if candidates
            .iter()
            .all(|&i| self.ramp_start[i].load(Ordering::Relaxed) == 0)
        {
            return;
        }
        let ramps: Vec<Option<f64>> = candidates.iter().map(|&i| self.ramp(i)).collect();
        let keep: crate::health::Candidates = candidates
            .iter()
            .zip(&ramps)
            .filter(|(_, r)| r.is_none_or(|share| rand::random::<f64>() < share))
            .map(|(i, _)| *i)
            .collect();
        if !keep.is_empty() {
            *candidates = keep;
        }
    }
}
