//! Group commit (one sync at a time covers every waiter), the background
//! flusher's ticker, and fail-stop poisoning.

use std::io;
use std::time::Duration;

// Through the facade, so the loom models (src/loom_tests.rs) explore this
// very code.
use crate::sync::{AtomicBool, AtomicU64, Condvar, Mutex, Ordering};

/// Group commit: at most one sync runs at a time; whoever needs data synced
/// either finds it already synced, waits for the running sync, or becomes
/// the leader and syncs everything published so far (so one sync covers
/// every waiter). A failed sync poisons the log: every later call fails.
///
/// A leader that is itself an appender first *absorbs*: while other
/// appenders are between entering an append and waiting for its sync (they
/// are about to publish), it yields, for at most half a recent sync's
/// duration, and only then reads how far to sync. Without it, the threads
/// a sync releases append again while the next sync already runs, and split
/// into two groups that take turns: each sync covers half of them.
pub(crate) struct GroupCommit {
    state: Mutex<SyncState>,
    done: Condvar,
    poisoned: AtomicBool,
    syncs: AtomicU64,
    synced: AtomicU64,
    /// Appenders inside an append that waits for its sync ([`Committer`]).
    inside: AtomicU64,
    /// `SyncState::waiting`, readable without the lock.
    waiting: AtomicU64,
    /// A moving average of a sync's duration, in nanoseconds.
    sync_ns: AtomicU64,
}

struct SyncState {
    synced: u64,
    running: bool,
    poison: Option<String>,
    /// Appenders waiting for the running sync that no wake-up has released.
    waiting: u64,
    /// Counts wake-ups of all waiters (each releases every waiter).
    wakes: u64,
}

/// The longest a leader absorbs, whatever the syncs take.
#[cfg(not(loom))]
const MAX_ABSORB: Duration = Duration::from_millis(1);

/// An appender inside an append that will wait for its sync: counted from
/// before it takes the writer lock until it returns.
pub(crate) struct Committer<'a>(&'a AtomicU64);

impl Drop for Committer<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl GroupCommit {
    pub(crate) fn new(synced: u64) -> Self {
        GroupCommit {
            state: Mutex::new(SyncState {
                synced,
                running: false,
                poison: None,
                waiting: 0,
                wakes: 0,
            }),
            done: Condvar::new(),
            poisoned: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            synced: AtomicU64::new(synced),
            inside: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            sync_ns: AtomicU64::new(0),
        }
    }

    /// Counts the caller as an appender that will wait for its sync, until
    /// the guard drops.
    pub(crate) fn committer(&self) -> Committer<'_> {
        self.inside.fetch_add(1, Ordering::AcqRel);
        Committer(&self.inside)
    }

    /// (appenders inside, appenders counted as waiting), for the models.
    #[cfg(all(test, loom))]
    pub(crate) fn absorb_counts(&self) -> (u64, u64) {
        (
            self.inside.load(Ordering::SeqCst),
            self.waiting.load(Ordering::SeqCst),
        )
    }

    /// Wakes every waiter: none of them is waiting any more.
    fn wake_all(&self, st: &mut SyncState) {
        st.waiting = 0;
        st.wakes = st.wakes.wrapping_add(1);
        self.waiting.store(0, Ordering::Release);
        self.done.notify_all();
    }

    /// Lets appenders that are about to publish do so before a leader (an
    /// appender itself) reads how far to sync; see the type's docs. Only
    /// time: what it syncs is decided after, from the published end.
    fn absorb(&self) {
        let others = || {
            let inside = self.inside.load(Ordering::Acquire);
            inside.saturating_sub(self.waiting.load(Ordering::Acquire) + 1)
        };
        if others() == 0 {
            return;
        }
        // Under loom there is no clock: a few rounds stand for the cap.
        #[cfg(loom)]
        for _ in 0..2 {
            if others() == 0 {
                return;
            }
            loom::thread::yield_now();
        }
        #[cfg(not(loom))]
        {
            let cap =
                Duration::from_nanos(self.sync_ns.load(Ordering::Relaxed) / 2).min(MAX_ABSORB);
            let start = std::time::Instant::now();
            while others() > 0 && start.elapsed() < cap {
                std::thread::yield_now();
            }
        }
    }

    /// Folds one sync's duration into the moving average (weight 1/4).
    #[cfg_attr(loom, allow(dead_code))]
    fn note_sync_time(&self, took: Duration) {
        let ns = took.as_nanos().min(u128::from(u64::MAX)) as u64;
        let old = self.sync_ns.load(Ordering::Relaxed);
        let avg = if old == 0 { ns } else { old - old / 4 + ns / 4 };
        self.sync_ns.store(avg, Ordering::Relaxed);
    }

    /// The LSN below which everything is durable.
    pub(crate) fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Completed syncs so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Why the log is poisoned, if it is.
    pub(crate) fn poison(&self) -> Option<String> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        self.state.lock().poison.clone()
    }

    /// Poisons the log (a write path failed half-way).
    pub(crate) fn set_poison(&self, cause: String) {
        let mut st = self.state.lock();
        if st.poison.is_none() {
            st.poison = Some(cause);
        }
        self.poisoned.store(true, Ordering::Release);
        self.wake_all(&mut st);
    }

    /// Makes everything below `target` durable. `published` reads the
    /// current published end; `sync(from, to)` makes `[from, to)` durable.
    /// `appender`: the caller holds a [`Committer`] (an append waiting for
    /// its sync), so as a leader it absorbs first. Returns whether this
    /// call ran a sync that completed (it led one): the durable end moved.
    pub(crate) fn sync_to(
        &self,
        target: u64,
        appender: bool,
        published: impl Fn() -> u64,
        sync: impl Fn(u64, u64) -> io::Result<()>,
    ) -> Result<bool, String> {
        let mut led = false;
        let mut st = self.state.lock();
        loop {
            if let Some(p) = &st.poison {
                return Err(p.clone());
            }
            if st.synced >= target {
                return Ok(led);
            }
            if st.running {
                if appender {
                    st.waiting += 1;
                    self.waiting.store(st.waiting, Ordering::Release);
                }
                let wakes = st.wakes;
                self.done.wait(&mut st);
                if appender && st.wakes == wakes {
                    // Woken without `wake_all` (spurious): still counted.
                    st.waiting = st.waiting.saturating_sub(1);
                    self.waiting.store(st.waiting, Ordering::Release);
                }
                continue;
            }
            st.running = true;
            let from = st.synced;
            drop(st);
            if appender {
                self.absorb();
            }
            // Read after absorbing, still the only leader (`running`): the
            // published end only grows.
            let to = published().max(target);
            #[cfg(not(loom))]
            let started = std::time::Instant::now();
            let result = sync(from, to);
            #[cfg(not(loom))]
            self.note_sync_time(started.elapsed());
            st = self.state.lock();
            st.running = false;
            match result {
                Ok(()) => {
                    st.synced = st.synced.max(to);
                    self.synced.store(st.synced, Ordering::Release);
                    self.syncs.fetch_add(1, Ordering::Relaxed);
                    led = true;
                }
                Err(e) => {
                    let cause = format!("sync of LSN {from}..{to} failed: {e}");
                    st.poison = Some(cause.clone());
                    self.poisoned.store(true, Ordering::Release);
                    self.wake_all(&mut st);
                    return Err(cause);
                }
            }
            self.wake_all(&mut st);
        }
    }
}

/// Wakes the background thread: on its period, or to stop.
pub(crate) struct Ticker {
    state: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Ticker {
    pub(crate) fn new() -> Self {
        Ticker {
            state: Mutex::new((false, false)),
            cv: Condvar::new(),
        }
    }

    /// Waits for `period` (forever if `None`); returns false once stopped.
    pub(crate) fn wait(&self, period: Option<Duration>) -> bool {
        let mut st = self.state.lock();
        if !st.0 && !st.1 {
            match period {
                Some(p) => {
                    self.cv.wait_for(&mut st, p);
                }
                None => self.cv.wait(&mut st),
            }
        }
        st.1 = false;
        !st.0
    }

    pub(crate) fn stop(&self) {
        self.state.lock().0 = true;
        self.cv.notify_all();
    }

    /// Wakes the thread now, as if its period had passed.
    pub(crate) fn kick(&self) {
        let mut st = self.state.lock();
        if !st.1 {
            st.1 = true;
            self.cv.notify_one();
        }
    }
}
