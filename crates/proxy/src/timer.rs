//! A timer that hands its task's waker to tokio once per wait, not once per
//! poll.
//!
//! tokio's `Sleep` stores the polling task's waker on every poll: two
//! compare-and-swaps on the timer's waker slot, a clone of the waker and a
//! drop of the one it replaces -- four atomic operations, each a full
//! barrier. A connection polls its timer every time it waits for its
//! socket, and a task that waits twice per request paid that twice per
//! request for a timer that almost never fires.
//!
//! [`Timer`] remembers which waker its `Sleep` holds (the waker's data and
//! vtable addresses, no clone) and polls the `Sleep` only when the waker
//! differs, when the `Sleep` has fired or after a [`reset`](Timer::reset).
//! Otherwise the waker tokio holds already wakes this task: `Waker::will_wake`
//! compares the same two addresses, and they cannot belong to another task
//! while tokio holds a clone of this one (a clone keeps its task alive). A
//! `Sleep` that fires gives its waker up and reads as elapsed, so the next
//! poll goes through to tokio.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};

/// Which waker a poll came with: its data and vtable addresses, what
/// `Waker::will_wake` compares. Equal ids wake the same task while the
/// waker with the first one is alive (held by whoever it was given to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WakerId(usize, usize);

impl WakerId {
    /// The id of `cx`'s waker.
    pub fn of(cx: &Context<'_>) -> WakerId {
        let waker = cx.waker();
        WakerId(waker.data() as usize, waker.vtable() as *const _ as usize)
    }
}

/// A `Sleep` and the waker it holds.
#[derive(Debug)]
pub(crate) struct Timer {
    sleep: Pin<Box<Sleep>>,
    /// The waker `sleep` holds, when it holds one that was not taken by its firing.
    holds: Option<WakerId>,
}

impl Timer {
    /// A timer for `deadline`.
    pub fn at(deadline: Instant) -> Self {
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            holds: None,
        }
    }

    /// When it fires.
    pub fn deadline(&self) -> Instant {
        self.sleep.deadline()
    }

    /// Moves it to `deadline`; the next poll registers the waker again.
    pub fn reset(&mut self, deadline: Instant) {
        self.sleep.as_mut().reset(deadline);
        self.holds = None;
    }

    /// Ready once the deadline passed.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let me = WakerId::of(cx);
        if self.holds == Some(me) && !self.sleep.is_elapsed() {
            return Poll::Pending;
        }
        let polled = self.sleep.as_mut().poll(cx);
        self.holds = polled.is_pending().then_some(me);
        polled
    }

    /// Ready once `deadline` passed. The timer may be armed for another
    /// instant (from an earlier request): later, it is moved back now;
    /// earlier, it is left there -- moving a timer costs more than the one
    /// early wake-up in a timeout's length -- and moved on when it fires.
    pub fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        if self.deadline() > deadline {
            self.reset(deadline);
        }
        loop {
            std::task::ready!(self.poll(cx));
            if self.deadline() >= deadline {
                return Poll::Ready(());
            }
            self.reset(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};
    use std::time::Duration;

    /// Counts its wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    /// Polls `timer` with `waker` until it is ready, up to `deadline` from now.
    async fn ready_within(timer: &mut Timer, waker: &Waker, deadline: Duration) -> bool {
        let end = std::time::Instant::now() + deadline;
        while std::time::Instant::now() < end {
            if timer.poll(&mut Context::from_waker(waker)).is_ready() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    #[tokio::test]
    async fn the_task_that_polled_last_is_woken_and_the_timer_fires() {
        let (first, first_waker) = waker();
        let (second, second_waker) = waker();
        let mut timer = Timer::at(Instant::now() + Duration::from_millis(60));
        // Polled by one task, then by another: the second must be the one woken.
        assert!(timer
            .poll(&mut Context::from_waker(&first_waker))
            .is_pending());
        assert!(timer
            .poll(&mut Context::from_waker(&first_waker))
            .is_pending());
        assert!(timer
            .poll(&mut Context::from_waker(&second_waker))
            .is_pending());
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while second.0.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            second.0.load(Ordering::SeqCst),
            1,
            "the last poller is woken"
        );
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert!(timer
            .poll(&mut Context::from_waker(&second_waker))
            .is_ready());
    }

    #[tokio::test]
    async fn a_reset_timer_fires_at_its_new_deadline_and_wakes_again() {
        let (count, waker) = waker();
        let mut timer = Timer::at(Instant::now() + Duration::from_millis(20));
        assert!(ready_within(&mut timer, &waker, Duration::from_secs(5)).await);
        let woken = count.0.load(Ordering::SeqCst);
        assert!(woken >= 1, "woken when it fired");
        // Fired, then moved on: polled by the same waker, it must register
        // that waker again, or nothing wakes the task at the new deadline.
        timer.reset(Instant::now() + Duration::from_millis(20));
        assert!(timer.poll(&mut Context::from_waker(&waker)).is_pending());
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while count.0.load(Ordering::SeqCst) == woken && std::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(count.0.load(Ordering::SeqCst), woken + 1, "woken again");
        assert!(timer.poll(&mut Context::from_waker(&waker)).is_ready());
    }
}
