//! Warnings that an attacker can cause (refused requests, refused admin
//! callers) are logged at most [`PER_SECOND`] a second per process; the
//! rest are counted and the count is logged with the next line let through
//! (its `suppressed` field), so a flood of bad requests cannot fill the
//! disk, and is still seen:
//!
//! ```ignore
//! if let Some(suppressed) = log_limit::allow() {
//!     tracing::warn!(%peer, why, suppressed, "request refused");
//! }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Lines let through per second.
pub const PER_SECOND: u32 = 20;

/// The current second's window: its start and the lines let through in it.
static WINDOW: Mutex<Option<(Instant, u32)>> = Mutex::new(None);
/// Lines held back since the last one let through.
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Whether a line may be written now; `Some(n)`: yes, and `n` were held back before it.
fn take(now: Instant) -> Option<u64> {
    let mut w = WINDOW.lock().unwrap_or_else(|e| e.into_inner());
    let (start, used) = w.get_or_insert((now, 0));
    if now.duration_since(*start).as_secs() >= 1 {
        (*start, *used) = (now, 0);
    }
    if *used >= PER_SECOND {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    *used += 1;
    Some(SUPPRESSED.swap(0, Ordering::Relaxed))
}

/// Whether a line may be written now: `Some(n)`, with `n` lines held back
/// since the last one (log it as a `suppressed` field), or `None`.
pub fn allow() -> Option<u64> {
    take(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flood_is_cut_to_a_share_per_second_and_counted() {
        let t0 = Instant::now() + Duration::from_secs(3600);
        let through = (0..1000).filter(|_| take(t0).is_some()).count();
        assert!(through <= PER_SECOND as usize, "{through}");
        let next = take(t0 + Duration::from_secs(1)).expect("a new second");
        assert!(next >= 1000 - PER_SECOND as u64, "held back: {next}");
    }
}
