//! The retry budget: retries of requests that may already have reached a
//! server are limited, so a sick pool does not turn into a retry storm.

use std::time::Instant;

/// A token bucket against retry storms: every request deposits 0.2 of a
/// retry and 10 retries a second are always allowed, up to 100 saved.
#[derive(Debug)]
pub struct RetryBudget {
    state: std::sync::Mutex<(f64, Instant)>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            state: std::sync::Mutex::new((10.0, Instant::now())),
        }
    }
}

impl RetryBudget {
    const PER_REQUEST: f64 = 0.2;
    const PER_SECOND: f64 = 10.0;
    const MAX: f64 = 100.0;

    /// Called for every request.
    pub fn deposit(&self) {
        let mut s = self.state.lock().expect("budget lock");
        s.0 = (s.0 + Self::PER_REQUEST).min(Self::MAX);
    }

    /// Takes one retry; false when the budget is spent.
    pub fn withdraw(&self) -> bool {
        let mut s = self.state.lock().expect("budget lock");
        let now = Instant::now();
        s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * Self::PER_SECOND).min(Self::MAX);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
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
