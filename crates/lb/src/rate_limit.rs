//! Requests per client address (`[load_balancer.rate_limit]`, like a
//! HAProxy stick table on `http_req_rate` or nginx's `limit_req`): a token
//! bucket per address, `burst` deep, refilled at `per_second`. A request
//! that finds its bucket empty gets `429 Too Many Requests` with a
//! `Retry-After`, and nothing reaches a server.
//!
//! The address is the TCP peer's; `X-Forwarded-For` is the client's word
//! and is not trusted. Buckets live in 16 shards, each behind its own lock;
//! a shard past [`SWEEP_AT`] addresses forgets, at most once a second, the
//! ones whose bucket has filled up again (they would start full anyway).

use http::{HeaderValue, Response, StatusCode};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use webinfra_proxy::{text_response, ResBody};
use webinfra_topology::RateLimit;

const SHARDS: usize = 16;
/// Addresses per shard before full buckets are swept out.
const SWEEP_AT: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Some of the addresses, and when full buckets were last swept out.
struct Shard {
    buckets: HashMap<IpAddr, Bucket>,
    swept: Option<Instant>,
}

/// The buckets of every client address.
pub struct RateLimiter {
    /// What it was built from (a reload keeps it when this is unchanged).
    pub config: RateLimit,
    rate: f64,
    burst: f64,
    shards: Vec<Mutex<Shard>>,
    /// Requests refused so far.
    refused: AtomicU64,
}

impl RateLimiter {
    pub fn new(config: RateLimit) -> Self {
        RateLimiter {
            config,
            rate: f64::from(config.per_second.max(1)),
            burst: f64::from(config.burst.max(1)),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        swept: None,
                    })
                })
                .collect(),
            refused: AtomicU64::new(0),
        }
    }

    /// Takes a token for `ip` at `now`; Err with how long until one is
    /// there when the bucket is empty.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut shard = self.shards[shard_of(ip)].lock().expect("rate limit lock");
        let due = shard
            .swept
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if shard.buckets.len() >= SWEEP_AT && due {
            let (rate, burst) = (self.rate, self.burst);
            shard
                .buckets
                .retain(|_, b| refill(b, now, rate, burst) < burst);
            shard.swept = Some(now);
        }
        let bucket = shard.buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let tokens = refill(bucket, now, self.rate, self.burst);
        // A refused request takes nothing: a client that keeps knocking
        // still gets its next token on time.
        let admitted = tokens >= 1.0;
        *bucket = Bucket {
            tokens: if admitted { tokens - 1.0 } else { tokens },
            at: now,
        };
        if admitted {
            return Ok(());
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        Err(Duration::from_secs_f64((1.0 - tokens) / self.rate))
    }

    /// [`admit`](Self::admit) for a request from `ip`: None when admitted,
    /// else the response it gets: 429, why, and when to try again (whole
    /// seconds, at least 1).
    pub fn refusal(&self, ip: IpAddr, now: Instant) -> Option<Response<ResBody>> {
        self.admit(ip, now).err().map(|wait| {
            let mut resp = text_response(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "429 Too Many Requests: {ip} is over {} requests/s (burst {})",
                    self.config.per_second, self.config.burst
                ),
            );
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            resp
        })
    }

    /// Requests refused since this limiter was made.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Tokens in `b` at `now`.
fn refill(b: &Bucket, now: Instant, rate: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + elapsed * rate).min(burst)
}

fn shard_of(ip: IpAddr) -> usize {
    let last = match ip {
        IpAddr::V4(v4) => v4.octets()[3],
        IpAddr::V6(v6) => v6.octets()[15],
    };
    usize::from(last) % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimit { per_second, burst })
    }

    #[test]
    fn a_burst_then_the_rate() {
        let l = limiter(2, 3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.admit(ip, t).is_ok());
        }
        let wait = l.admit(ip, t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Half a second later one more token is there, not two.
        let later = t + Duration::from_millis(500);
        assert!(l.admit(ip, later).is_ok());
        assert!(l.admit(ip, later).is_err());
        assert_eq!(l.refused(), 2);
        // Refusals take nothing: knocking every 100 ms still lets one
        // through each half second.
        let admitted = (1..=10)
            .filter(|i| l.admit(ip, later + Duration::from_millis(100 * i)).is_ok())
            .count();
        assert_eq!(admitted, 2);
        // Another address has its own bucket.
        assert!(l.admit("10.0.0.2".parse().unwrap(), t).is_ok());
    }

    #[test]
    fn full_buckets_are_forgotten_when_a_shard_is_crowded() {
        let l = limiter(10, 10);
        let t = Instant::now();
        for i in 0..(SWEEP_AT * SHARDS) as u32 {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            assert!(l.admit(ip, t).is_ok());
        }
        // A second later every bucket is full again: the next admits sweep.
        let later = t + Duration::from_secs(1);
        for shard in 0..SHARDS as u8 {
            let _ = l.admit(IpAddr::from([11, 0, 0, shard]), later);
        }
        let kept: usize = l
            .shards
            .iter()
            .map(|s| s.lock().unwrap().buckets.len())
            .sum();
        assert_eq!(kept, SHARDS);
    }
}
