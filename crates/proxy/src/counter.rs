//! Counters shared between tasks, updated without a locked instruction
//! while the process does all its work on one thread.
//!
//! A load balancer counts every request several times (responses by
//! class, a latency bucket, the sum of latencies, requests in flight, the
//! round-robin position). `fetch_add` is a locked read-modify-write, a full
//! barrier that waits for every store before it; on the benchmark's VM six
//! of them per request cost 5% of the load balancer's user time
//! (`bench/lb`). A role pinned to one CPU runs a single-threaded runtime
//! (`webinfra` picks it), so nothing else can update a counter between its
//! load and its store: then a plain load and store count the same. With
//! more threads every update stays a `fetch_add`/`fetch_sub`, as before.
//!
//! [`one_thread`] is called once, before the runtime starts any task, by
//! the process that picked the single-threaded runtime.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

static ONE_THREAD: AtomicBool = AtomicBool::new(false);

/// All counting happens on this thread from now on (a single-threaded
/// runtime, no other thread touching counters).
pub fn one_thread() {
    ONE_THREAD.store(true, Ordering::Relaxed);
}

fn single() -> bool {
    ONE_THREAD.load(Ordering::Relaxed)
}

/// An atomic integer a counter can live in.
pub trait Count {
    /// The integer.
    type Int;
    /// Adds `n` (wrapping); the value before. Every other update is this one.
    fn fetch_count(&self, n: Self::Int) -> Self::Int;
    /// Adds `n`.
    fn add(&self, n: Self::Int);
    /// Takes `n` away.
    fn sub(&self, n: Self::Int);
    /// Adds one; the value before.
    fn bump(&self) -> Self::Int;
}

macro_rules! count {
    ($atomic:ty, $int:ty) => {
        impl Count for $atomic {
            type Int = $int;

            #[inline]
            fn fetch_count(&self, n: $int) -> $int {
                if single() {
                    let v = self.load(Ordering::Relaxed);
                    self.store(v.wrapping_add(n), Ordering::Relaxed);
                    v
                } else {
                    self.fetch_add(n, Ordering::SeqCst)
                }
            }

            #[inline]
            fn add(&self, n: $int) {
                self.fetch_count(n);
            }

            #[inline]
            fn sub(&self, n: $int) {
                // Wrapping: adding the two's complement takes `n` away.
                self.fetch_count(n.wrapping_neg());
            }

            #[inline]
            fn bump(&self) -> $int {
                self.fetch_count(1)
            }
        }
    };
}

count!(AtomicU64, u64);
count!(AtomicUsize, usize);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_from_many_threads_add_up() {
        // The flag is process-wide and only ever set: this test runs
        // before any test sets it (none does in this crate).
        assert!(!single());
        let n = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let n = n.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        n.add(2);
                        n.sub(1);
                        n.bump();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(n.load(Ordering::SeqCst), 800_000);
    }
}
