//! The tail wake-up protocol: tail readers wait for the published end to
//! pass their position; appenders wake them without a fence or a lock on the
//! append path when nobody waits.
//!
//! The publisher, holding the log's writer lock, publishes the new end and
//! then reads [`TailNotify::has_waiters`] (Relaxed); after releasing the
//! writer lock it calls [`TailNotify::wake`] if that said so. A waiter
//! ([`TailNotify::wait`]) checks `ready()` and registers (`waiters += 1`)
//! while holding the same writer lock, so the two critical sections are
//! ordered: either the publisher's comes first, and the waiter's `ready()`
//! sees the new end, or the waiter's does, and the publisher sees the
//! registration (the lock orders the Relaxed accesses) and will wake it.
//!
//! The wake itself must not be lost between the registration and the
//! condvar wait: the waiter takes `lock`, checks `ready()` again, and only
//! then waits (atomically releasing `lock`). A publisher that saw the
//! registration takes `lock` to notify: if it got `lock` before the waiter,
//! its publish happens-before the waiter's second `ready()`, which sees the
//! new end; if after, the waiter is already waiting and is woken.
//!
//! The writer lock and `lock` are never held together, so neither side
//! constrains the other's lock order: `wake` and `close` may be called with
//! or without the writer lock held (the log calls `wake` after releasing it,
//! to keep the writer's critical section short).
//!
//! The loom models in `loom_tests` check that no wake-up is lost.

use std::time::Instant;

use crate::sync::{AtomicBool, AtomicUsize, Condvar, Mutex, Ordering};

/// Why [`TailNotify::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    /// `ready()` held.
    Ready,
    /// The notifier was closed (and `ready()` did not hold).
    Closed,
    /// The deadline passed (and `ready()` did not hold).
    TimedOut,
}

/// Wakes tail readers when the published end moves or the log closes.
pub(crate) struct TailNotify {
    lock: Mutex<()>,
    cv: Condvar,
    /// Registered waiters. Incremented only under the log's writer lock;
    /// decremented without it (a stale non-zero count only costs a
    /// spurious wake).
    waiters: AtomicUsize,
    /// Set under `lock`; never cleared.
    closed: AtomicBool,
}

impl TailNotify {
    pub(crate) fn new() -> Self {
        TailNotify {
            lock: Mutex::new(()),
            cv: Condvar::new(),
            waiters: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Publisher side, called while holding the writer lock right after
    /// publishing: true if a waiter must be woken (Relaxed load: the writer
    /// lock orders it against registration).
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) > 0
    }

    /// Wakes every waiter (takes `lock`, notify_all). Called after
    /// releasing the writer lock when [`TailNotify::has_waiters`] said so.
    pub(crate) fn wake(&self) {
        let _g = self.lock.lock();
        self.cv.notify_all();
    }

    /// The log is closing: mark closed and wake everyone; later waits
    /// return at once (with [`WaitOutcome::Ready`] if `ready()` holds,
    /// [`WaitOutcome::Closed`] otherwise).
    pub(crate) fn close(&self) {
        let _g = self.lock.lock();
        self.closed.store(true, Ordering::Release);
        self.cv.notify_all();
    }

    /// Whether [`TailNotify::close`] was called.
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until `ready()` holds, the notifier is closed, or `deadline`
    /// passes (`None`: no deadline; callers compute deadlines with
    /// `checked_add` and pass `None` when it overflows). `writer` is the
    /// log's writer mutex: registration (waiters += 1) and the `ready()`
    /// check happen while holding it, so a publisher either sees the
    /// registration or the waiter sees the new end. Returns why it returned;
    /// `ready()` is checked first, so a ready waiter gets
    /// [`WaitOutcome::Ready`] even after a close. Never loses a wake-up.
    ///
    /// `ready()` must be cheap and must not lock `writer` (it runs under it).
    pub(crate) fn wait<W>(
        &self,
        writer: &Mutex<W>,
        ready: impl Fn() -> bool,
        deadline: Option<Instant>,
    ) -> WaitOutcome {
        loop {
            {
                let _w = writer.lock();
                if ready() {
                    return WaitOutcome::Ready;
                }
                self.waiters.fetch_add(1, Ordering::Relaxed);
            }
            let outcome = self.wait_registered(&ready, deadline);
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            if let Some(outcome) = outcome {
                return outcome;
            }
            // Woken (or a spurious wake-up): check again under the writer
            // lock, registering anew if still not ready.
        }
    }

    /// One wait of a registered waiter; `None` when woken before the
    /// deadline, to check again.
    fn wait_registered(
        &self,
        ready: &impl Fn() -> bool,
        deadline: Option<Instant>,
    ) -> Option<WaitOutcome> {
        let mut g = self.lock.lock();
        // A publisher that saw our registration may have woken us before
        // we took `lock`: then its end is visible here (see the module docs).
        if ready() {
            return Some(WaitOutcome::Ready);
        }
        if self.closed.load(Ordering::Acquire) {
            return Some(WaitOutcome::Closed);
        }
        let timed_out = match deadline {
            None => {
                self.cv.wait(&mut g);
                false
            }
            Some(d) => self.cv.wait_until(&mut g, d).timed_out(),
        };
        if !timed_out {
            return None;
        }
        Some(if ready() {
            WaitOutcome::Ready
        } else if self.closed.load(Ordering::Acquire) {
            WaitOutcome::Closed
        } else {
            WaitOutcome::TimedOut
        })
    }
}

/// The timed paths, which the loom models cannot check.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::{Arc, AtomicU64};
    use std::time::Duration;

    #[test]
    fn times_out_then_wakes_then_closes() {
        let writer = Arc::new(Mutex::new(()));
        let end = Arc::new(AtomicU64::new(0));
        let tn = Arc::new(TailNotify::new());
        let ready = |x| {
            let end = end.clone();
            move || end.load(Ordering::Acquire) >= x
        };

        // A deadline that passes: TimedOut, and the waiter deregistered.
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            tn.wait(&writer, ready(1), Some(deadline)),
            WaitOutcome::TimedOut
        );
        assert!(Instant::now() >= deadline);
        assert!(!tn.has_waiters());
        // A deadline already past, or a condition already true.
        assert_eq!(
            tn.wait(&writer, ready(1), Some(Instant::now())),
            WaitOutcome::TimedOut
        );
        assert_eq!(tn.wait(&writer, ready(0), None), WaitOutcome::Ready);

        // A publisher wakes a waiter with no deadline.
        let waiter = {
            let (writer, tn, ready) = (writer.clone(), tn.clone(), ready(2));
            std::thread::spawn(move || tn.wait(&writer, ready, None))
        };
        while !tn.has_waiters() {
            std::thread::yield_now();
        }
        for e in 1..=2 {
            let wake = {
                let _w = writer.lock();
                end.store(e, Ordering::Release);
                tn.has_waiters()
            };
            if wake {
                tn.wake();
            }
        }
        assert_eq!(waiter.join().unwrap(), WaitOutcome::Ready);

        // Close wakes a waiter with a far deadline; later waits return at once.
        let far = Instant::now().checked_add(Duration::from_secs(3600));
        let waiter = {
            let (writer, tn, ready) = (writer.clone(), tn.clone(), ready(3));
            std::thread::spawn(move || tn.wait(&writer, ready, far))
        };
        while !tn.has_waiters() {
            std::thread::yield_now();
        }
        tn.close();
        assert!(tn.is_closed());
        assert_eq!(waiter.join().unwrap(), WaitOutcome::Closed);
        assert_eq!(tn.wait(&writer, ready(3), None), WaitOutcome::Closed);
        assert_eq!(tn.wait(&writer, ready(2), None), WaitOutcome::Ready);
    }
}
