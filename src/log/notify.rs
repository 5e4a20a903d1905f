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
//! **Async waiters** ([`TailNotify::poll_wait`], behind
//! [`Tail::next_async`](crate::Tail::next_async)) take the same two steps,
//! with a [`Waker`] in place of the condvar wait: they count themselves
//! under the writer lock, then, under `lock`, check `ready()` again and
//! store their waker in `lock`'s list. [`TailNotify::wake`] (and `close`)
//! drains that list under `lock` and wakes each waker after releasing it;
//! so either the wake's section comes first (and the second `ready()` sees
//! the publish) or the waker is in the list it drains. Counting is exact:
//! a stored waker counts once in `waiters` until whoever takes it out of the
//! list (a wake, or [`TailNotify::cancel`] when the future resolves or is
//! dropped) gives the count back, under `lock`, so a dropped future leaves
//! neither a waker nor a count behind.
//!
//! The writer lock and `lock` are never held together, so neither side
//! constrains the other's lock order: `wake` and `close` may be called with
//! or without the writer lock held (the log calls `wake` after releasing it,
//! to keep the writer's critical section short). No waker is woken or
//! dropped while `lock` is held: a waker may run arbitrary code (poll the
//! future again, inline).
//!
//! The loom models in `loom_tests` check that no wake-up is lost.

use std::task::{Poll, Waker};
use std::time::Instant;

use crate::sync::{AtomicBool, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};

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

/// The wakers of async waiters, under [`TailNotify`]'s `lock`.
#[derive(Default)]
struct Wakers {
    /// (registration, waker): one entry per pending future at most.
    list: Vec<(u64, Waker)>,
    /// The next registration number handed out.
    next_id: u64,
}

impl Wakers {
    fn position(&self, id: u64) -> Option<usize> {
        self.list.iter().position(|&(i, _)| i == id)
    }
}

/// An async waiter's registration: `Some(id)` once it stored a waker (which
/// a wake may have taken out of the list since). Held by the waiting future;
/// handed back to [`TailNotify::cancel`] when it resolves or is dropped.
pub(crate) type Registration = Option<u64>;

/// Wakes tail readers when the published end moves or the log closes.
pub(crate) struct TailNotify {
    lock: Mutex<Wakers>,
    cv: Condvar,
    /// Registered waiters: blocked threads, wakers in `lock`'s list, and
    /// async waiters between their two steps. Incremented only under the
    /// log's writer lock; decremented without it (a stale non-zero count
    /// only costs a spurious wake), each increment exactly once.
    waiters: AtomicUsize,
    /// Set under `lock`; never cleared.
    closed: AtomicBool,
}

impl TailNotify {
    pub(crate) fn new() -> Self {
        TailNotify {
            lock: Mutex::new(Wakers::default()),
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

    /// Wakes every waiter (takes `lock`, notify_all, and takes every
    /// stored waker out of the list to wake it after releasing `lock`).
    /// Called after releasing the writer lock when
    /// [`TailNotify::has_waiters`] said so.
    pub(crate) fn wake(&self) {
        let g = self.lock.lock();
        self.cv.notify_all();
        Self::wake_all(self.drain(g));
    }

    /// The log is closing: mark closed and wake everyone; later waits
    /// return at once (with [`WaitOutcome::Ready`] if `ready()` holds,
    /// [`WaitOutcome::Closed`] otherwise).
    pub(crate) fn close(&self) {
        let g = self.lock.lock();
        self.closed.store(true, Ordering::Release);
        self.cv.notify_all();
        Self::wake_all(self.drain(g));
    }

    /// Takes every stored waker out of the list, gives back their counts,
    /// and releases `lock`.
    fn drain(&self, mut g: MutexGuard<'_, Wakers>) -> Vec<(u64, Waker)> {
        let list = std::mem::take(&mut g.list);
        if !list.is_empty() {
            self.waiters.fetch_sub(list.len(), Ordering::Relaxed);
        }
        drop(g);
        list
    }

    /// Wakes wakers taken out of the list (never under `lock`).
    fn wake_all(list: Vec<(u64, Waker)>) {
        for (_, w) in list {
            w.wake();
        }
    }

    /// The async form of [`TailNotify::wait`], for a future's `poll`:
    /// `Ready(Ready)` if `ready()` holds, `Ready(Closed)` if the notifier is
    /// closed (and `ready()` does not hold), both with `reg` given back;
    /// otherwise `Pending`, with `waker` stored under `reg` (replacing the
    /// waker an earlier poll stored), to be woken by the next
    /// [`TailNotify::wake`] or [`TailNotify::close`]. Never loses a
    /// wake-up (see the module docs). The future must hand `reg` to
    /// [`TailNotify::cancel`] if it is dropped while `Pending`.
    ///
    /// `ready()` must be cheap and must not lock `writer` (it runs under it).
    pub(crate) fn poll_wait<W>(
        &self,
        writer: &Mutex<W>,
        ready: impl Fn() -> bool,
        reg: &mut Registration,
        waker: &Waker,
    ) -> Poll<WaitOutcome> {
        {
            let _w = writer.lock();
            if ready() {
                drop(_w);
                self.cancel(reg);
                return Poll::Ready(WaitOutcome::Ready);
            }
            // This attempt's count, given back below unless it becomes the
            // count of a newly stored waker.
            self.waiters.fetch_add(1, Ordering::Relaxed);
        }
        let mut g = self.lock.lock();
        // A publisher that saw our count may have drained the list before
        // we took `lock`: then its end is visible here.
        let outcome = if ready() {
            Some(WaitOutcome::Ready)
        } else if self.closed.load(Ordering::Acquire) {
            Some(WaitOutcome::Closed)
        } else {
            None
        };
        let Some(outcome) = outcome else {
            let id = match *reg {
                Some(id) => id,
                None => {
                    let id = g.next_id;
                    g.next_id = id.wrapping_add(1);
                    *reg = Some(id);
                    id
                }
            };
            let old = match g.position(id) {
                // Still stored (no wake since the last poll): it already
                // counts; this attempt's count goes back.
                Some(i) => {
                    self.waiters.fetch_sub(1, Ordering::Relaxed);
                    let slot = &mut g.list[i].1;
                    (!slot.will_wake(waker)).then(|| std::mem::replace(slot, waker.clone()))
                }
                None => {
                    g.list.push((id, waker.clone()));
                    None
                }
            };
            drop(g);
            drop(old);
            return Poll::Pending;
        };
        let old = reg.take().and_then(|id| g.position(id)).map(|i| {
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            g.list.swap_remove(i)
        });
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        drop(g);
        drop(old);
        Poll::Ready(outcome)
    }

    /// Gives back an async waiter's registration: its waker leaves the
    /// list (unless a wake took it already, and gave back its count). For a
    /// future that resolves, or is dropped while pending.
    pub(crate) fn cancel(&self, reg: &mut Registration) {
        let Some(id) = reg.take() else {
            return;
        };
        let mut g = self.lock.lock();
        let old = g.position(id).map(|i| {
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            g.list.swap_remove(i)
        });
        drop(g);
        drop(old);
    }

    /// Wakers stored now.
    #[cfg(test)]
    pub(crate) fn stored_wakers(&self) -> usize {
        self.lock.lock().list.len()
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

    /// Counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (std::sync::Arc<Count>, Waker) {
        let c = std::sync::Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn an_async_waiter_counts_once_and_leaves_nothing_behind() {
        let writer = Mutex::new(());
        let end = AtomicU64::new(0);
        let tn = TailNotify::new();
        let end = &end;
        let ready = |x| move || end.load(Ordering::Acquire) >= x;
        let (c, waker) = counting();
        let (d, other) = counting();
        let mut reg = None;

        // Polled three times, with a new waker once: one registration, one
        // count, the latest waker.
        for w in [&waker, &waker, &other] {
            assert!(tn.poll_wait(&writer, ready(1), &mut reg, w).is_pending());
            assert_eq!((tn.stored_wakers(), tn.waiters.load(Ordering::SeqCst)), (1, 1));
        }
        // A publish wakes it (the latest waker only) and drains it.
        end.store(1, Ordering::Release);
        assert!(tn.has_waiters());
        tn.wake();
        assert_eq!((c.0.load(Ordering::SeqCst), d.0.load(Ordering::SeqCst)), (0, 1));
        assert_eq!(tn.stored_wakers(), 0);
        assert!(!tn.has_waiters());
        // Polled after the wake: ready, and the registration given back.
        assert_eq!(
            tn.poll_wait(&writer, ready(1), &mut reg, &waker),
            Poll::Ready(WaitOutcome::Ready)
        );
        assert_eq!(reg, None);

        // Registered, then cancelled (a dropped future): nothing left, and
        // a later wake wakes nothing.
        assert!(tn.poll_wait(&writer, ready(2), &mut reg, &waker).is_pending());
        tn.cancel(&mut reg);
        assert_eq!((reg, tn.stored_wakers()), (None, 0));
        assert!(!tn.has_waiters());
        tn.wake();
        assert_eq!(c.0.load(Ordering::SeqCst), 0);
        tn.cancel(&mut reg); // nothing to give back: a no-op

        // Registered, then closed: woken, and the next poll says Closed.
        assert!(tn.poll_wait(&writer, ready(2), &mut reg, &waker).is_pending());
        tn.close();
        assert_eq!(c.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            tn.poll_wait(&writer, ready(2), &mut reg, &waker),
            Poll::Ready(WaitOutcome::Closed)
        );
        assert_eq!((reg, tn.stored_wakers()), (None, 0));
        assert!(!tn.has_waiters());
    }
}
