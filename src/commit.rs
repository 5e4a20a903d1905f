//! Commit notification: being told when an append is durable, without
//! blocking a thread on it (DESIGN.md §8, "Commit notification").
//!
//! Waiters register the LSN that must be durable (an append's end) and a
//! callback. After every sync that completes, the thread that ran it (or
//! waited for it) delivers the callbacks whose LSN the sync covered, in LSN
//! order; one thread delivers at a time, so callbacks never overlap and
//! never run out of order. A failed sync fails every waiter, and so does a
//! log that closes with waiters past its end.
//!
//! [`Durable`] is a runtime-agnostic future over the same list: it resolves
//! once its LSN is durable, whatever executor polls it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::replay::Lsn;

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
    /// Waiters registered: a sync checks this before taking the lock.
    pending: AtomicBool,
}

impl DurableNotify {
    /// Registers `f` to run once everything below `lsn` is durable.
    /// `synced` reads the durable end; the callback may run before this
    /// returns (on this thread) if `lsn` is durable already.
    pub fn register(&self, lsn: Lsn, f: Callback, synced: impl Fn() -> Lsn) {
        {
            let mut st = self.state.lock();
            if let Some(failed) = &st.failed {
                let e = failed.error();
                drop(st);
                f(Err(e));
                return;
            }
            let id = st.next_id;
            st.next_id += 1;
            st.waiters.insert((lsn, id), f);
            self.pending.store(true, Ordering::SeqCst);
        }
        // The sync that covers `lsn` may have completed before the waiter
        // was inserted, and seen no waiter: deliver here in that case.
        self.deliver(synced);
    }

    /// Runs every callback whose LSN is durable now, in LSN order.
    pub fn deliver(&self, synced: impl Fn() -> Lsn) {
        if !self.pending.load(Ordering::SeqCst) {
            return;
        }
        let mut st = self.state.lock();
        if st.delivering {
            // The delivering thread reads `synced` again before it stops.
            return;
        }
        st.delivering = true;
        loop {
            let durable = synced();
            let rest = st.waiters.split_off(&(durable.saturating_add(1), 0));
            let ready = std::mem::replace(&mut st.waiters, rest);
            if ready.is_empty() {
                // A sync completing from here on finds `delivering` false
                // and delivers itself; one that completed earlier stored
                // its end before it saw `delivering` true under this lock,
                // so `synced()` above already read it.
                self.pending.store(!st.waiters.is_empty(), Ordering::SeqCst);
                st.delivering = false;
                return;
            }
            drop(st);
            for (_, f) in ready {
                f(Ok(()));
            }
            st = self.state.lock();
        }
    }

    /// Fails every waiter, now and later: a sync failed.
    pub fn poison(&self, cause: String) {
        self.fail(Failed::Poisoned(cause));
    }

    /// Fails every waiter still waiting, now and later: the log closed
    /// (after its final sync, so what remains lies past its end).
    pub fn close(&self) {
        self.fail(Failed::Closed);
    }

    fn fail(&self, why: Failed) {
        let (waiters, failed) = {
            let mut st = self.state.lock();
            let failed = st.failed.get_or_insert(why).clone();
            self.pending.store(false, Ordering::SeqCst);
            (std::mem::take(&mut st.waiters), failed)
        };
        for (_, f) in waiters {
            f(Err(failed.error()));
        }
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
    slot: Arc<Mutex<Slot>>,
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
        let slot = Arc::new(Mutex::new(Slot {
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
