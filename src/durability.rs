//! Durability policy: the sync modes, group commit, the background flusher,
//! fail-stop poisoning, and the fault-injection seam used by the tests.

use std::io;
use std::time::Duration;

// Through the facade, so the loom models (src/loom_tests.rs) explore this
// very code.
use crate::sync::{AtomicBool, AtomicU64, Condvar, Mutex, Ordering};

/// When appended data is made durable (synced to disk).
///
/// Whatever the mode, an append is visible to readers of the same process
/// as soon as it returns, and survives a crash of the *process* (the page
/// cache outlives it). The mode decides what survives a crash of the
/// *machine*: only what a completed sync covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SyncMode {
    /// Every append is durable before it returns. Concurrent appenders share
    /// syncs (group commit): one leader syncs for everyone waiting.
    Strict,
    /// Sync once `batch_size` appends have accumulated or `interval_ms` has
    /// passed since the last sync, whichever comes first; a background
    /// flusher keeps the interval even when no append arrives.
    Batched {
        /// The most time unsynced data may wait.
        interval_ms: u64,
        /// The most appends that may wait.
        batch_size: u64,
    },
    /// A background thread syncs every `interval_ms`; appends never wait.
    Async {
        /// The sync period.
        interval_ms: u64,
    },
}

impl Default for SyncMode {
    /// `Batched { interval_ms: 100, batch_size: 1000 }`: agents prefer speed;
    /// losing at most 100 ms of appends to a power cut is accepted.
    fn default() -> Self {
        SyncMode::Batched {
            interval_ms: 100,
            batch_size: 1000,
        }
    }
}

impl SyncMode {
    /// The flusher's period, if this mode has one.
    pub(crate) fn interval(&self) -> Option<Duration> {
        match *self {
            SyncMode::Strict => None,
            SyncMode::Batched { interval_ms, .. } | SyncMode::Async { interval_ms } => {
                Some(Duration::from_millis(interval_ms.max(1)))
            }
        }
    }
}

/// Group commit: at most one sync runs at a time; whoever needs data synced
/// either finds it already synced, waits for the running sync, or becomes
/// the leader and syncs everything published so far (so one sync covers
/// every waiter). A failed sync poisons the log: every later call fails.
pub(crate) struct GroupCommit {
    state: Mutex<SyncState>,
    done: Condvar,
    poisoned: AtomicBool,
    syncs: AtomicU64,
    synced: AtomicU64,
}

struct SyncState {
    synced: u64,
    running: bool,
    poison: Option<String>,
}

impl GroupCommit {
    pub(crate) fn new(synced: u64) -> Self {
        GroupCommit {
            state: Mutex::new(SyncState {
                synced,
                running: false,
                poison: None,
            }),
            done: Condvar::new(),
            poisoned: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            synced: AtomicU64::new(synced),
        }
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
        self.done.notify_all();
    }

    /// Makes everything below `target` durable. `published` reads the
    /// current published end; `sync(from, to)` makes `[from, to)` durable.
    pub(crate) fn sync_to(
        &self,
        target: u64,
        published: impl Fn() -> u64,
        sync: impl Fn(u64, u64) -> io::Result<()>,
    ) -> Result<(), String> {
        let mut st = self.state.lock();
        loop {
            if let Some(p) = &st.poison {
                return Err(p.clone());
            }
            if st.synced >= target {
                return Ok(());
            }
            if st.running {
                self.done.wait(&mut st);
                continue;
            }
            st.running = true;
            let from = st.synced;
            let to = published().max(target);
            drop(st);
            let result = sync(from, to);
            st = self.state.lock();
            st.running = false;
            match result {
                Ok(()) => {
                    st.synced = st.synced.max(to);
                    self.synced.store(st.synced, Ordering::Release);
                    self.syncs.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    let cause = format!("sync of LSN {from}..{to} failed: {e}");
                    st.poison = Some(cause.clone());
                    self.poisoned.store(true, Ordering::Release);
                    self.done.notify_all();
                    return Err(cause);
                }
            }
            self.done.notify_all();
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

/// The fault-injection seam. With the `fault-injection` feature, tests can
/// make the next syncs or segment allocations fail; without it every hook is
/// an empty inline function, so release builds pay nothing.
///
/// The switches are per thread *and* global: a test arms them with
/// [`faults::fail_syncs_after`] and friends, which affect every log in the
/// process, so tests that use them run in their own process (a separate test
/// binary) or serially.
pub mod faults {
    #[cfg(feature = "fault-injection")]
    use std::sync::atomic::{AtomicI64, Ordering};

    #[cfg(feature = "fault-injection")]
    static SYNCS_LEFT: AtomicI64 = AtomicI64::new(-1);
    #[cfg(feature = "fault-injection")]
    static ALLOCS_LEFT: AtomicI64 = AtomicI64::new(-1);

    /// After `n` more successful syncs, every sync fails with EIO.
    /// A negative `n` disarms.
    #[cfg(feature = "fault-injection")]
    pub fn fail_syncs_after(n: i64) {
        SYNCS_LEFT.store(n, Ordering::SeqCst);
    }

    /// After `n` more successful segment allocations, every allocation fails
    /// with ENOSPC. A negative `n` disarms.
    #[cfg(feature = "fault-injection")]
    pub fn fail_allocations_after(n: i64) {
        ALLOCS_LEFT.store(n, Ordering::SeqCst);
    }

    #[cfg(feature = "fault-injection")]
    fn countdown(left: &AtomicI64, err: std::io::ErrorKind, what: &str) -> std::io::Result<()> {
        let mut cur = left.load(Ordering::SeqCst);
        loop {
            if cur < 0 {
                return Ok(());
            }
            if cur == 0 {
                return Err(std::io::Error::new(err, format!("injected {what} failure")));
            }
            match left.compare_exchange(cur, cur - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    #[inline(always)]
    pub(crate) fn before_sync() -> std::io::Result<()> {
        #[cfg(feature = "fault-injection")]
        return countdown(&SYNCS_LEFT, std::io::ErrorKind::Other, "sync");
        #[cfg(not(feature = "fault-injection"))]
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn before_allocate() -> std::io::Result<()> {
        #[cfg(feature = "fault-injection")]
        return countdown(&ALLOCS_LEFT, std::io::ErrorKind::StorageFull, "allocation");
        #[cfg(not(feature = "fault-injection"))]
        Ok(())
    }
}
