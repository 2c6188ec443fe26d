//! Server selection: one small trait, one implementation per algorithm.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Picks the server for a request among the ones that are up.
pub trait Balancer: Send + Sync {
    /// Returns an index into `up` (the indices of servers currently up), or
    /// None when `up` is empty. Called once per request attempt.
    fn pick(&self, up: &[usize]) -> Option<usize>;
}

/// Each server that is up, in turn (HAProxy's `roundrobin`, unweighted).
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Balancer for RoundRobin {
    fn pick(&self, up: &[usize]) -> Option<usize> {
        if up.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Some(up[n % up.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_alternates_over_up_servers() {
        let rr = RoundRobin::default();
        let picks: Vec<_> = (0..4).map(|_| rr.pick(&[0, 2]).unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        assert_eq!(rr.pick(&[]), None);
    }
}
