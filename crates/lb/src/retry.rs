//! The retry budget: retries of requests that may already have reached a
//! server are limited, so a sick pool does not turn into a retry storm.
//! Every request deposits 0.2 of a retry (one atomic add on the hot path);
//! 10 retries a second are always allowed; at most 100 are saved.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Thousandths of a retry.
const PER_REQUEST: i64 = 200;
const PER_SECOND: f64 = 10_000.0;
const MAX: i64 = 100_000;
const ONE: i64 = 1_000;

/// A token bucket against retry storms.
#[derive(Debug)]
pub struct RetryBudget {
    milli: AtomicI64,
    last_refill: Mutex<Instant>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            milli: AtomicI64::new(10 * ONE),
            last_refill: Mutex::new(Instant::now()),
        }
    }
}

impl RetryBudget {
    /// Called for every request.
    pub fn deposit(&self) {
        if self.milli.load(Ordering::Relaxed) < MAX {
            self.milli.fetch_add(PER_REQUEST, Ordering::Relaxed);
        }
    }

    /// Takes one retry; false when the budget is spent.
    pub fn withdraw(&self) -> bool {
        {
            let mut last = self.last_refill.lock().expect("budget lock");
            let now = Instant::now();
            let refill = (now.duration_since(*last).as_secs_f64() * PER_SECOND) as i64;
            *last = now;
            let cur = self.milli.load(Ordering::Relaxed);
            self.milli
                .fetch_add(refill.min((MAX - cur).max(0)), Ordering::Relaxed);
        }
        self.milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v >= ONE).then_some(v - ONE)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_budget_runs_out_and_refills_with_traffic() {
        let b = RetryBudget::default();
        let granted = (0..50).filter(|_| b.withdraw()).count();
        assert!((10..=11).contains(&granted), "{granted}");
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.withdraw(), "10 requests buy 2 retries");
    }
}
