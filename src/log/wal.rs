//! [`Wal`], the handle of a log open for writing: its accessors, syncing,
//! reading what it published, durability waits, and closing.
//!
//! Writing: an entry is encoded straight into the mapped active segment
//! past the published end, then the end is published (Release); readers
//! load it (Acquire) and only look below it (`writer`, `append`). The
//! [`SyncMode`](crate::SyncMode) decides when published bytes are made
//! durable (`shared`, `group`). Opening is in `open`, truncation in
//! `truncate`, retention in `retention`, following the log in `tail`,
//! read-only opens in `reader`.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::entry::{BorrowedEntry, RunId};
use crate::format::frame::{self};
use crate::format::Lsn;
use crate::log::commit::Durable;
use crate::log::config::Config;
use crate::log::stats::Stats;
use crate::log::group::Ticker;
use crate::log::position::Appended;
use crate::log::prepare::Prep;
use crate::log::shared::Shared;
use crate::log::tail::Tail;
use crate::read::replay::{ReplayStats, Txn};
use crate::read::runs::{diff_states, KeyDiff};
use crate::read::snapshot::Snapshot;
use crate::recovery::RecoveryReport;
use crate::sync::Mutex;

/// A write-ahead log open for appending.
///
/// `Wal` is `Send + Sync`: share it (e.g. in an `Arc`) and append from many
/// threads; appends are serialised, syncs are shared (group commit).
///
/// Appends come in three shapes, each returning where it landed: one entry
/// ([`append_entry`](Wal::append_entry)), a batch that is all-or-nothing
/// after a crash ([`append_batch`](Wal::append_batch)), and a run's
/// transaction ([`append_txn`](Wal::append_txn): BeginTxn, the ops,
/// CommitTxn, as one unit). `append_*` returns once the unit is as durable
/// as the [`SyncMode`](crate::SyncMode) promises (Strict: synced);
/// `submit_*` returns at once, and [`Wal::durable`] waits for it.
///
/// ```
/// # fn main() -> durability::Result<()> {
/// use std::sync::Arc;
/// use durability::{BorrowedEntry, Config, Op, RunId, SyncMode, Wal};
///
/// let dir = tempfile::tempdir().unwrap();
/// let wal = Arc::new(Wal::open(dir.path(), Config::default().sync_mode(SyncMode::Strict))?);
///
/// // Four agent runs, each writing from its own thread: the appends of
/// // threads that wait together share one sync (group commit).
/// let threads: Vec<_> = (0..4)
///     .map(|_| {
///         let wal = Arc::clone(&wal);
///         std::thread::spawn(move || -> durability::Result<RunId> {
///             let run = RunId::new();
///             for txn in 1..=25 {
///                 let key = format!("step/{txn}");
///                 wal.append_txn(run, txn, &[
///                     Op::Write { key: key.as_bytes(), value: b"done", version: txn },
///                 ])?;
///             }
///             Ok(run)
///         })
///     })
///     .collect();
/// let runs: Vec<RunId> = threads.into_iter().map(|t| t.join().unwrap()).collect::<Result<_, _>>()?;
///
/// // A batch: both entries survive a crash, or neither does.
/// let run = runs[0];
/// wal.append_batch(&[
///     BorrowedEntry::Write { run_id: run, key: b"a", value: b"1", version: 26 },
///     BorrowedEntry::Delete { run_id: run, key: b"step/1", version: 26 },
/// ])?;
///
/// let mut txns = 0;
/// wal.replay_run(runs[1], |_| txns += 1)?;
/// assert_eq!(txns, 25);
/// assert_eq!(wal.runs().len(), 4);
/// wal.shutdown()?; // the handle is shared: close through `&self`
/// # Ok(())
/// # }
/// ```
pub struct Wal {
    pub(crate) shared: Arc<Shared>,
    pub(super) prep: Arc<Prep>,
    pub(super) ticker: Arc<Ticker>,
    pub(super) threads: Mutex<Vec<JoinHandle<()>>>,
    /// The thread that runs commit-notification callbacks.
    pub(super) notifier: Mutex<Option<JoinHandle<()>>>,
    pub(super) report: RecoveryReport,
    pub(super) closed: AtomicBool,
    /// Held for the whole of a close: a second `shutdown` waits for the
    /// first's outcome.
    pub(super) closing: Mutex<()>,
    /// The callbacks' thread, which must never wait for `closing`.
    pub(super) notifier_thread: std::thread::ThreadId,
    /// Serialises metadata writes (they share `META.new`).
    pub(super) meta_lock: Mutex<()>,
    pub(super) _lock: File,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Wal {
    /// What opening found (for a new log: one empty segment).
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The log's instance id, shared by all its segments.
    pub fn instance_id(&self) -> Uuid {
        self.shared.instance
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(cause) = self.shared.group.poison() {
            return Err(Error::Poisoned { cause });
        }
        Ok(())
    }

    pub(super) fn check_size(&self, entry: &BorrowedEntry<'_>) -> Result<()> {
        let len = frame::payload_len(entry) as u64;
        let max = u64::from(self.shared.config.effective_max_entry_size());
        if len > max {
            return Err(Error::EntryTooLarge { len, max });
        }
        Ok(())
    }

    /// Checks the handle is usable. Appended bytes are handed to the
    /// operating system (the page cache, through the shared mapping) as soon
    /// as an append returns: they are visible to other processes and survive
    /// a crash of this process. `flush` does not make them durable against
    /// power loss; [`Wal::sync`] does.
    pub fn flush(&self) -> Result<()> {
        self.check_open()
    }

    /// Makes everything appended so far durable, and writes the headers of
    /// segments put into use since the last sync.
    pub fn sync(&self) -> Result<()> {
        self.check_open()?;
        self.shared.sync_to(self.shared.log.end())
    }

    /// Bytes of log: from the first entry still kept to the end.
    pub fn size(&self) -> u64 {
        let (start, end) = (self.shared.log.start(), self.shared.log.end());
        end.saturating_sub(start)
    }

    /// The LSN the next append gets.
    pub fn end_lsn(&self) -> Lsn {
        self.shared.log.end()
    }

    /// The LSN of the first entry still in the log.
    pub fn start_lsn(&self) -> Lsn {
        self.shared.log.start()
    }

    /// What the log has done since this handle opened it: appends, bytes,
    /// syncs and their latency, group-commit size, rotations, the time
    /// opening took; see [`Stats`].
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let end = self.end_lsn();
        Stats {
            syncs: self.shared.group.syncs(),
            synced_lsn: self.shared.group.synced(),
            end_lsn: end,
            start_lsn: self.start_lsn(),
            segments: self.shared.log.len(),
            appends: self.shared.appends.load(Ordering::Relaxed),
            bytes_appended: end.saturating_sub(c.opened_end),
            bytes_synced: c.bytes_synced.load(Ordering::Relaxed),
            waited_appends: c.waited_appends.load(Ordering::Relaxed),
            rotations: c.rotations.load(Ordering::Relaxed),
            sync_time_total: c.sync_time_total(),
            sync_time_max: c.sync_time_max(),
            sync_latency: c.sync_latency(),
            open_time: c.open_time(),
            space: self.shared.space,
        }
    }

    /// A consistent view of everything published so far, to read from.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// Every committed transaction, in commit order; see [`Txn`].
    pub fn replay(&self, f: impl FnMut(&Txn<'_, '_>)) -> Result<ReplayStats> {
        self.replayer().for_each(f)
    }

    /// The committed transactions of one run, reading only that run's part
    /// of the log.
    pub fn replay_run(&self, run: RunId, f: impl FnMut(&Txn<'_, '_>)) -> Result<ReplayStats> {
        self.replayer().run(run).for_each(f)
    }

    /// The keys whose final state differs between runs `a` and `b`.
    pub fn diff_runs(&self, a: RunId, b: RunId) -> Result<Vec<KeyDiff>> {
        let (snap, sa) = self.run_view(&a);
        let sb = self.shared.writer.lock().index.stretches(&b);
        Ok(diff_states(
            snap.final_state(a, &sa)?,
            snap.final_state(b, &sb)?,
        ))
    }

    /// Every run with an entry in the log.
    pub fn runs(&self) -> Vec<RunId> {
        self.shared.writer.lock().index.runs().copied().collect()
    }

    fn run_view(&self, run: &RunId) -> (Snapshot, Vec<Lsn>) {
        let w = self.shared.writer.lock();
        let stretches = w.index.stretches(run);
        let snap = self.shared.snapshot();
        drop(w);
        (snap, stretches)
    }

    /// A reader that follows the log from `lsn` as entries are appended
    /// (0: from the log's start). It holds back the deletion of segments at
    /// its position while it lives; a position below the start is reported
    /// once by [`Tail::poll`].
    pub fn tail(&self, lsn: Lsn) -> Tail {
        Tail::new(Arc::clone(&self.shared), lsn)
    }

    /// The blob last stored with [`Wal::set_meta`], if any (read from the
    /// directory's `META` file; [`Error::BadMeta`] if it is damaged).
    pub fn meta(&self) -> Result<Option<Vec<u8>>> {
        crate::os::meta::read(&self.shared.dir)
    }

    /// Stores `data` (at most [`MAX_META`](crate::os::meta::MAX_META) bytes)
    /// as the log's metadata, replacing what was there atomically and
    /// durably before it returns: after a crash, [`Wal::meta`] gives the
    /// old blob or this one. Independent of the log's entries and mode.
    pub fn set_meta(&self, data: &[u8]) -> Result<()> {
        self.check_open()?;
        let _one = self.meta_lock.lock();
        crate::os::meta::write(&self.shared.dir, data)
    }

    /// The LSN below which everything is durable (covered by a completed
    /// sync).
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.group.synced()
    }

    /// Calls `f` once `pos` is durable (everything below its end: see
    /// [`Appended`]; a bare LSN goes in [`End`](crate::End)), with
    /// `Ok(())`; or with the error that means it never will be (a failed
    /// sync: [`Error::Poisoned`]; the log closed before reaching it:
    /// [`Error::Closed`]).
    ///
    /// Callbacks run on the log's own `wal-notify` thread, one at a time,
    /// in LSN order (failures too, after the successes of what is
    /// durable), never on the caller's thread, never on a thread that
    /// syncs or appends, and never under any of the log's locks: a slow
    /// callback delays other callbacks, never a sync, and a callback may
    /// use the log (append, truncate, retention; even drop the last
    /// handle). It must not block waiting for another callback of this
    /// log: [`Durable::wait`] refuses inside one. A callback that panics is
    /// caught (and reported as a `tracing` error event with the panic's
    /// message); the others still run.
    /// [`Wal::close`] returns after every callback has run.
    ///
    /// Waiting never changes when syncs happen; the mode (and
    /// `submit_*`'s request in `Strict` mode) does.
    pub fn on_durable(&self, pos: impl Appended, f: impl FnOnce(Result<()>) + Send + 'static) {
        self.shared.durable.register(pos.end(), Box::new(f));
    }

    /// A future that resolves once `pos` is durable (see
    /// [`Wal::on_durable`]). It needs no particular async runtime.
    pub fn durable(&self, pos: impl Appended) -> Durable {
        let (fut, complete) = Durable::new();
        self.on_durable(pos, complete);
        fut
    }

    /// Blocks until `pos` is durable (see [`Wal::on_durable`]).
    pub fn wait_durable(&self, pos: impl Appended) -> Result<()> {
        if self.shared.group.synced() >= pos.end() {
            return Ok(());
        }
        self.durable(pos).wait()
    }

    /// Syncs, stops the background threads and closes the log. Returns the
    /// error of the final sync, if any (the log is then poisoned: reopen it
    /// to recover what reached the disk). For a handle shared in an `Arc`,
    /// [`Wal::shutdown`] does the same through `&self`.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    /// Closes the log through a shared reference, like [`Wal::close`]: for
    /// a handle in an `Arc` that other threads still hold. Every later call
    /// on the handle fails with [`Error::Closed`]; what was appended before
    /// is synced, and the result of that final sync is returned, to every
    /// caller of `shutdown` or `close`, however many (a second caller waits
    /// for the first to finish). Dropping the last `Arc` afterwards does
    /// nothing more.
    ///
    /// Called from a durability callback ([`Wal::on_durable`]), it cannot
    /// wait for a close another thread runs (that close waits for the
    /// callbacks): it then returns `Ok(())` at once if the log has not
    /// failed.
    ///
    /// ```
    /// # fn main() -> durability::Result<()> {
    /// use std::sync::Arc;
    /// use durability::{Config, Error, Op, RunId, Wal};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let wal = Arc::new(Wal::open(dir.path(), Config::default())?);
    /// let writer = {
    ///     let wal = Arc::clone(&wal);
    ///     std::thread::spawn(move || {
    ///         let op = Op::Write { key: b"k", value: b"v", version: 1 };
    ///         wal.append_txn(RunId::new(), 1, &[op])
    ///     })
    /// };
    /// writer.join().unwrap()?;
    /// wal.shutdown()?; // synced and closed, though `wal` is still shared
    /// let op = Op::Write { key: b"k", value: b"v", version: 2 };
    /// assert!(matches!(wal.append_txn(RunId::new(), 2, &[op]), Err(Error::Closed)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn shutdown(&self) -> Result<()> {
        self.close_once().unwrap_or_else(|| self.closed_outcome())
    }

    /// The outcome of a close that already ran (or runs on another thread):
    /// the log's poison, if its final sync (or an earlier one) failed.
    fn closed_outcome(&self) -> Result<()> {
        let on_callback_thread = self.notifier_thread == std::thread::current().id();
        if !on_callback_thread {
            // Wait for the close that is running, if one is.
            drop(self.closing.lock());
        }
        match self.shared.group.poison() {
            Some(cause) => Err(Error::Poisoned { cause }),
            None => Ok(()),
        }
    }

    /// Closes the log if no one did; `None` if it was closed (or is being
    /// closed) already.
    fn close_once(&self) -> Option<Result<()>> {
        let on_callback_thread = self.notifier_thread == std::thread::current().id();
        // A callback never waits for the lock: the close holding it may be
        // joining this very thread.
        let _closing = if on_callback_thread {
            None
        } else {
            Some(self.closing.lock())
        };
        if self.closed.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(self.shut_down_now())
    }

    fn shut_down_now(&self) -> Result<()> {
        // `closed` is set. Every append checks it under the writer lock, so
        // once the lock has been taken and released here no append is
        // writing frame bytes any more: a read-only open of this process
        // that finds the gate cleared (below) and scans the files never
        // reads bytes still being written.
        drop(self.shared.writer.lock());
        self.ticker.stop();
        {
            let mut slot = self.prep.slot.lock();
            slot.stop = true;
            self.prep.cv.notify_all();
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        self.shared.tail_notify.close();
        // A read-only open of this process from now on scans the files: a
        // tail that outlives the handle must not make it take this frozen
        // view (another process may write the log next).
        {
            let mut gate = self.shared.dir_state.gate.write();
            if gate
                .as_ref()
                .is_some_and(|w| std::ptr::addr_eq(w.as_ptr(), Arc::as_ptr(&self.shared)))
            {
                *gate = None;
            }
        }
        let end = self.shared.log.end();
        let result = self.shared.sync_to(end);
        // Whoever still waits waits for an LSN this log never reached.
        self.shared.durable.close();
        // The callbacks' thread stops once it has run every callback. When
        // a callback closed the log (dropped its last handle), this is
        // that thread: it goes on delivering after the callback returns.
        if let Some(t) = self.notifier.lock().take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        result
    }
}

impl Drop for Wal {
    /// Closes the log like [`Wal::close`]. A drop cannot return an error, so
    /// if the final sync fails it is reported as a `tracing` error event
    /// (target `durability`, fields `dir` and `error`; nothing is printed
    /// unless the application installs a subscriber); the appends since
    /// the last successful sync may then be lost to a power cut (a process
    /// crash loses nothing). Call [`Wal::close`] to see it.
    fn drop(&mut self) {
        // Only a close this drop runs is reported: one `shutdown` already
        // ran returned its outcome to its caller.
        if let Some(Err(e)) = self.close_once() {
            tracing::error!(
                dir = %self.shared.dir.display(),
                error = %e,
                "closing the log failed"
            );
        }
    }
}

/// The background syncer: every interval in Batched and Async modes, and
/// whenever an append that does not wait (`submit_*`) asks for a sync.
pub(super) fn spawn_flusher(
    shared: Arc<Shared>,
    ticker: Arc<Ticker>,
    period: Option<Duration>,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("wal-flush".into())
        .spawn(move || {
            while ticker.wait(period) {
                let end = shared.log.end();
                if end > shared.group.synced() && shared.sync_to(end).is_err() {
                    // Poisoned: the handle reports it on the next call.
                    return;
                }
            }
        })
        .map_err(|e| Error::io("spawn thread", "wal-flush", e))
}

/// The thread that runs commit-notification callbacks (DESIGN.md §8): no
/// durability promise ever waits on it.
pub(super) fn spawn_notifier(shared: Arc<Shared>) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("wal-notify".into())
        .spawn(move || shared.durable.run(|| shared.group.synced()))
        .map_err(|e| Error::io("spawn thread", "wal-notify", e))
}
