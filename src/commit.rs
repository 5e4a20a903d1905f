//! Commit notification: being told when an append is durable, without
//! blocking a thread on it (DESIGN.md §8, "Commit notification").
//!
//! Waiters register the LSN that must be durable (an append's end) and a
//! callback. After every sync that completes, the thread that ran it (or
//! waited for it) delivers the callbacks whose LSN the sync covered, in LSN
//! order; one thread delivers at a time, so callbacks never overlap and
//! never run out of order. A failed sync fails every waiter not yet
//! durable, and so does a log that closes with waiters past its end: the
//! failure is recorded under the lock and delivered like the rest, after
//! the `Ok`s of what is durable, by whichever thread delivers. A callback
//! that panics is caught.
//!
//! [`Durable`] is a runtime-agnostic future over the same list: it resolves
//! once its LSN is durable, whatever executor polls it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::replay::Lsn;
// The waiter list goes through the facade, so the loom models explore it;
// `Durable` stays on `parking_lot` and `std` (its waker needs `std`'s `Arc`
// and parks a real thread).
use crate::sync::{fence, AtomicBool, Mutex, Ordering};

/// A callback run once its LSN is durable (or the log failed).
pub(crate) type Callback = Box<dyn FnOnce(Result<()>) + Send + 'static>;

/// Why waiters can no longer be satisfied.
#[derive(Clone)]
enum Failed {
    Poisoned(String),
    Closed,
}

impl Failed {
    fn error(&self) -> Error {
        match self {
            Failed::Poisoned(cause) => Error::Poisoned {
                cause: cause.clone(),
            },
            Failed::Closed => Error::Closed,
        }
    }
}

#[derive(Default)]
struct State {
    /// Waiters by (LSN, registration number): LSN order, then the order
    /// they registered in.
    waiters: BTreeMap<(Lsn, u64), Callback>,
    next_id: u64,
    /// A thread is running callbacks; others leave the work to it.
    delivering: bool,
    failed: Option<Failed>,
}

/// The waiters of one log.
#[derive(Default)]
pub(crate) struct DurableNotify {
    state: Mutex<State>,
    /// Waiters registered: a sync checks this (after a fence, see
    /// [`DurableNotify::deliver`]) before taking the lock.
    pending: AtomicBool,
}

impl DurableNotify {
    /// Registers `f` to run once everything below `lsn` is durable.
    /// `synced` reads the durable end; the callback may run before this
    /// returns (on this thread) if `lsn` is durable already, or the log
    /// has failed.
    pub fn register(&self, lsn: Lsn, f: Callback, synced: impl Fn() -> Lsn) {
        {
            let mut st = self.state.lock();
            let id = st.next_id;
            st.next_id += 1;
            st.waiters.insert((lsn, id), f);
            self.pending.store(true, Ordering::SeqCst);
        }
        // The sync that covers `lsn` may have completed before the waiter
        // was inserted, and seen no waiter: deliver here in that case.
        self.deliver(synced);
    }

    /// Runs every callback whose LSN is durable now, in LSN order; once
    /// the log has failed, then fails the rest, in LSN order too. One
    /// thread at a time runs callbacks, Ok and Err alike.
    pub fn deliver(&self, synced: impl Fn() -> Lsn) {
        // A sync stores its end (`GroupCommit`'s `Release` store), then
        // loads `pending` here; a registration stores `pending` (under the
        // lock), then, here, loads `pending` and `synced()`. Without a
        // full fence between each store and the later load this is the
        // store-buffering pattern, and the memory model lets both loads
        // read the old value (SeqCst on `pending` alone does not forbid
        // it; the loom model `loom_durable_register_races_sync` found it):
        // the sync sees `pending` false and returns, the registration
        // reads the end from before the sync and finds nothing ready, and
        // the waiter is left for a sync that may never come. With this
        // fence on both paths, whichever fence comes second in the SeqCst
        // order sees the other side's store: the sync finds the waiter, or
        // the registration finds the sync's end.
        fence(Ordering::SeqCst);
        if !self.pending.load(Ordering::SeqCst) {
            return;
        }
        let mut st = self.state.lock();
        if st.delivering {
            // The delivering thread reads `synced` (and `failed`) again
            // before it stops.
            return;
        }
        st.delivering = true;
        loop {
            let durable = synced();
            let rest = st.waiters.split_off(&(durable.saturating_add(1), 0));
            let ready = std::mem::replace(&mut st.waiters, rest);
            // What a completed sync covered is durable, failure or not.
            let (batch, failed) = match st.failed.clone() {
                Some(f) if ready.is_empty() => (std::mem::take(&mut st.waiters), Some(f)),
                _ => (ready, None),
            };
            if batch.is_empty() {
                // A sync completing from here on finds `delivering` false
                // and delivers itself; one that completed earlier stored
                // its end before it saw `delivering` true under this lock,
                // so `synced()` above already read it. A failure sets
                // `failed` under this lock before it delivers, likewise.
                self.pending.store(!st.waiters.is_empty(), Ordering::SeqCst);
                st.delivering = false;
                return;
            }
            drop(st);
            for (_, f) in batch {
                let result = match &failed {
                    None => Ok(()),
                    Some(why) => Err(why.error()),
                };
                // A callback that panics must not stop the deliveries of
                // the others (nor leave `delivering` set for good).
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(result)));
                if ran.is_err() {
                    eprintln!("durability: an on_durable callback panicked; the panic was caught");
                }
            }
            st = self.state.lock();
        }
    }

    /// Fails every waiter the log has not made durable, now and later: a
    /// sync failed. Waiters below `synced()` still get `Ok`.
    pub fn poison(&self, cause: String, synced: impl Fn() -> Lsn) {
        self.fail(Failed::Poisoned(cause), synced);
    }

    /// Fails every waiter still waiting, now and later: the log closed
    /// (after its final sync, so what remains lies past its end).
    pub fn close(&self, synced: impl Fn() -> Lsn) {
        self.fail(Failed::Closed, synced);
    }

    /// Records the failure, then delivers: the failures run in LSN order
    /// after the `Ok`s of what is durable, on whichever thread delivers.
    fn fail(&self, why: Failed, synced: impl Fn() -> Lsn) {
        {
            let mut st = self.state.lock();
            st.failed.get_or_insert(why);
            self.pending.store(true, Ordering::SeqCst);
        }
        self.deliver(synced);
    }
}

struct Slot {
    result: Option<Result<()>>,
    waker: Option<Waker>,
}

/// A future that resolves once an LSN is durable: `Ok(())` after a
/// completed sync covered it, or the error that means it never will be
/// ([`Error::Poisoned`], [`Error::Closed`]). It needs no particular
/// runtime. Created by [`Wal::durable`](crate::Wal::durable).
#[must_use = "a future does nothing unless polled"]
pub struct Durable {
    slot: Arc<parking_lot::Mutex<Slot>>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = self.slot.lock().result.is_some();
        f.debug_struct("Durable").field("done", &done).finish()
    }
}

impl Durable {
    /// A future and the callback that completes it.
    pub(crate) fn new() -> (Durable, Callback) {
        let slot = Arc::new(parking_lot::Mutex::new(Slot {
            result: None,
            waker: None,
        }));
        let theirs = Arc::clone(&slot);
        let complete: Callback = Box::new(move |r| {
            let waker = {
                let mut s = theirs.lock();
                s.result = Some(r);
                s.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        });
        (Durable { slot }, complete)
    }

    /// Blocks the calling thread until the future resolves.
    pub fn wait(self) -> Result<()> {
        let thread = std::thread::current();
        let waker = Waker::from(Arc::new(ThreadWaker(thread)));
        let mut cx = Context::from_waker(&waker);
        let mut fut = self;
        loop {
            if let Poll::Ready(r) = Pin::new(&mut fut).poll(&mut cx) {
                return r;
            }
            std::thread::park();
        }
    }
}

struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

impl Future for Durable {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut s = self.slot.lock();
        if let Some(r) = s.result.take() {
            return Poll::Ready(r);
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}
