//! Commit notification: being told when an append is durable, without
//! blocking a thread on it (DESIGN.md §8, "Commit notification").
//!
//! Waiters register the LSN that must be durable (an append's end) and a
//! callback. Callbacks run on one thread of their own, the log's
//! `wal-notify` thread, and nowhere else: never on a thread that appends,
//! syncs or runs retention (so a slow callback never delays a sync, and a
//! callback may call back into the log, retention and appends included),
//! and never under any of the log's locks. After every sync that
//! completes, its leader wakes that thread, which runs the callbacks whose
//! LSN the sync covered, in LSN order, one at a time. A failed sync fails
//! every waiter not yet durable, and so does a log that closes with
//! waiters past its end: the failure is recorded under the lock and
//! delivered by the same thread, after the `Ok`s of what is durable. A
//! callback that panics is caught.
//!
//! [`Durable`] is a runtime-agnostic future over the same list: it resolves
//! once its LSN is durable, whatever executor polls it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::format::Lsn;
// The waiter list goes through the facade, so the loom models explore it;
// `Durable` stays on `parking_lot` and `std` (its waker needs `std`'s `Arc`
// and parks a real thread).
use crate::sync::{Condvar, Mutex};

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
    /// Something may be ready: a sync completed, a waiter registered, or
    /// the log failed. The deliverer clears it before it looks.
    kicked: bool,
    failed: Option<Failed>,
    /// The log closed: the deliverer stops once nothing is left.
    stop: bool,
    /// The deliverer has stopped: nothing will run a callback any more.
    exited: bool,
}

/// The waiters of one log, and the loop of the thread that runs their
/// callbacks ([`DurableNotify::run`]).
#[derive(Default)]
pub(crate) struct DurableNotify {
    state: Mutex<State>,
    cv: Condvar,
}

thread_local! {
    /// This thread is running commit-notification callbacks: it must never
    /// block waiting for a durability only it could report.
    static DELIVERING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True on a thread that runs `on_durable` callbacks.
pub(crate) fn on_callback_thread() -> bool {
    DELIVERING.with(|d| d.get())
}

impl DurableNotify {
    /// Registers `f` to run, on the deliverer's thread, once everything
    /// below `lsn` is durable (or the log has failed). Never runs `f` here,
    /// unless the log has closed and its deliverer stopped: then `f` gets
    /// the log's failure at once.
    pub fn register(&self, lsn: Lsn, f: Callback) {
        let mut st = self.state.lock();
        if st.exited {
            let why = st.failed.clone().unwrap_or(Failed::Closed);
            drop(st);
            f(Err(why.error()));
            return;
        }
        let id = st.next_id;
        st.next_id += 1;
        st.waiters.insert((lsn, id), f);
        st.kicked = true;
        self.cv.notify_all();
    }

    /// A sync completed (the durable end moved): wakes the deliverer. The
    /// sync's leader calls it once per sync, after storing the new end.
    pub fn synced(&self) {
        let mut st = self.state.lock();
        st.kicked = true;
        self.cv.notify_all();
    }

    /// Fails every waiter the log has not made durable, now and later: a
    /// sync failed. Waiters below the durable end still get `Ok`.
    pub fn poison(&self, cause: String) {
        self.fail(Failed::Poisoned(cause), false);
    }

    /// Fails every waiter still waiting, now and later, and lets the
    /// deliverer stop once it has run every callback: the log closed
    /// (after its final sync, so what remains lies past its end).
    pub fn close(&self) {
        self.fail(Failed::Closed, true);
    }

    fn fail(&self, why: Failed, stop: bool) {
        let mut st = self.state.lock();
        st.failed.get_or_insert(why);
        st.stop |= stop;
        st.kicked = true;
        self.cv.notify_all();
    }

    /// The deliverer: runs every callback whose LSN is durable (`synced`
    /// reads the durable end), in LSN order, one at a time, outside the
    /// lock; once the log has failed, then fails the rest, in LSN order
    /// too. Returns once the log has closed and every callback has run.
    pub fn run(&self, synced: impl Fn() -> Lsn) {
        DELIVERING.with(|d| d.set(true));
        let mut st = self.state.lock();
        loop {
            if !st.kicked {
                if st.stop && st.waiters.is_empty() {
                    st.exited = true;
                    return;
                }
                self.cv.wait(&mut st);
                continue;
            }
            st.kicked = false;
            // Read under the lock, after the kick: a sync stores its end
            // before it kicks (under this lock), so this sees it.
            let durable = synced();
            let rest = st.waiters.split_off(&(durable.saturating_add(1), 0));
            let ready = std::mem::replace(&mut st.waiters, rest);
            // What a completed sync covered is durable, failure or not.
            let (batch, failed) = match st.failed.clone() {
                Some(f) if ready.is_empty() => (std::mem::take(&mut st.waiters), Some(f)),
                _ => (ready, None),
            };
            if batch.is_empty() {
                continue;
            }
            // Look again after these: more may be ready, or a failure's
            // errors may follow the `Ok`s.
            st.kicked = true;
            drop(st);
            for (_, f) in batch {
                let result = match &failed {
                    None => Ok(()),
                    Some(why) => Err(why.error()),
                };
                // A callback that panics must not stop the deliveries of
                // the others.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(result)));
                if let Err(p) = ran {
                    let panic = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(%panic, "an on_durable callback panicked; the panic was caught");
                }
            }
            st = self.state.lock();
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
///
/// With `submit_*` an append returns as soon as its bytes are in the log
/// (visible to readers, safe from a process crash), and durability against
/// power loss is awaited separately: block on it ([`Durable::wait`]),
/// `.await` it from any executor, or have a callback told
/// ([`Wal::on_durable`](crate::Wal::on_durable)).
///
/// ```
/// # fn main() -> durability::Result<()> {
/// use durability::{Config, Op, RunId, SyncMode, Wal};
///
/// let dir = tempfile::tempdir().unwrap();
/// // Batched: a background sync every 5 ms (or every 1000 appends).
/// let mode = SyncMode::Batched { interval_ms: 5, batch_size: 1000 };
/// let wal = Wal::open(dir.path(), Config::default().sync_mode(mode))?;
/// let run = RunId::new();
///
/// // Many transactions in flight, one wait for all: the last one's end
/// // covers every byte before it.
/// let mut last = None;
/// for txn in 1..=100u64 {
///     let op = Op::Write { key: b"counter", value: &txn.to_le_bytes(), version: txn };
///     last = Some(wal.submit_txn(run, txn, &[op])?);
/// }
/// let last = last.unwrap();
/// wal.durable(last).wait()?; // or `wal.durable(last).await?` in async code
/// assert!(wal.durable_lsn() >= last.end);
///
/// // Or be told, on the log's callback thread (never under its locks).
/// let (tx, rx) = std::sync::mpsc::channel();
/// let op = Op::Write { key: b"counter", value: b"final", version: 101 };
/// let pos = wal.submit_txn(run, 101, &[op])?;
/// wal.on_durable(pos, move |result| tx.send(result).unwrap());
/// rx.recv().unwrap()?;
/// # Ok(())
/// # }
/// ```
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
    ///
    /// Inside an `on_durable` callback (which runs on the thread that
    /// delivers every callback of the log) a wait that is not resolved yet
    /// would wait forever: it returns [`Error::InvalidArgument`] instead.
    pub fn wait(self) -> Result<()> {
        if on_callback_thread() {
            let mut s = self.slot.lock();
            return s.result.take().unwrap_or_else(|| {
                Err(Error::InvalidArgument {
                    detail: "waiting for durability inside an on_durable callback would never end: \
                             callbacks run one at a time on one thread; register another callback instead"
                        .into(),
                })
            });
        }
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
