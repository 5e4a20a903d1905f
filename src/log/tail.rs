//! Following a live log: [`Tail`] delivers each entry once, in log order,
//! as it is published, and wakes when an append publishes more or the log
//! closes: blocking ([`Tail::next_timeout`]), or as a future any executor
//! can poll ([`Tail::next_async`]), owned or borrowed ([`TailEntry`]).
//!
//! A tail pins its position: retention never deletes a segment holding an
//! entry a tail has yet to deliver (DESIGN.md §8, "Retention"), so a slow
//! tail never finds its next entry gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::entry::WalEntry;
use crate::format::frame::EntryRef;
use crate::format::Lsn;
use crate::log::notify::{Registration, WaitOutcome};
use crate::log::shared::Shared;
use crate::read::snapshot::{LogEntry, Snapshot};

/// Follows the log as it grows, entry by entry, from a starting LSN. Each
/// entry is delivered once, in log order.
///
/// Three ways to wait for the next entry, all woken by the same appends
/// and by the log closing: [`Tail::next_timeout`] blocks the thread,
/// [`Tail::next_async`] is a future that needs no particular runtime, and
/// [`Tail::poll`] does not wait. Each has a zero-copy form
/// ([`Tail::next_ref_timeout`], [`Tail::next_ref_async`],
/// [`Tail::poll_ref`]) whose [`TailEntry`] borrows the entry from the
/// mapped log until the tail's next call.
///
/// While it lives, a `Tail` holds back retention at its position, like a
/// replication slot: [`Wal::purge_to_checkpoint`](crate::Wal::purge_to_checkpoint)
/// keeps every segment from the one holding the tail's next entry on.
pub struct Tail {
    shared: Arc<Shared>,
    id: u64,
    next: Lsn,
    snap: Option<Snapshot>,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail").field("next", &self.next).finish()
    }
}

/// An entry a tail delivered, borrowed from the tail's view of the mapped
/// log (zero-copy): its key, value or data are read in place, without an
/// allocation. It lives until the tail's next call; [`TailEntry::into_owned`]
/// gives what the owned calls ([`Tail::poll`], ...) return.
#[derive(Debug, Clone, Copy)]
pub struct TailEntry<'a> {
    entry: LogEntry<'a>,
    /// For a `Truncate` record: the start of everything deleted up to it.
    deleted_from: Option<Lsn>,
}

impl<'a> TailEntry<'a> {
    /// The entry's LSN.
    ///
    /// ```
    /// # use durability::{Config, RunId, Wal, WalEntry};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let wal = Wal::open(dir.path(), Config::default().segment_size(1 << 20)).unwrap();
    /// let at = wal.append(&WalEntry::AbortTxn { txn_id: 1, run_id: RunId::new() }).unwrap().lsn;
    /// let mut tail = wal.tail(at);
    /// assert_eq!(tail.poll_ref().unwrap().unwrap().lsn(), at);
    /// ```
    pub fn lsn(&self) -> Lsn {
        self.entry.lsn
    }

    /// The entry, borrowed: [`EntryRef::key`], [`EntryRef::value`] and the
    /// rest read the mapped bytes.
    ///
    /// ```
    /// # use durability::{Config, RunId, Wal, WalEntry};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let wal = Wal::open(dir.path(), Config::default().segment_size(1 << 20)).unwrap();
    /// let run_id = RunId::new();
    /// wal.append(&WalEntry::Delete { run_id, key: b"old".to_vec(), version: 2 }).unwrap();
    /// let mut tail = wal.tail(0);
    /// let e = tail.poll_ref().unwrap().unwrap();
    /// assert_eq!((e.entry().key(), e.entry().run_id()), (Some(&b"old"[..]), Some(run_id)));
    /// ```
    pub fn entry(&self) -> EntryRef<'a> {
        self.entry.entry
    }

    /// Where the entry lies: its LSN, segment, offset and frame length
    /// (the next entry is at `lsn + len`).
    ///
    /// For a [`Truncate`](WalEntry::Truncate) record, read what it deleted
    /// from [`TailEntry::truncate_from`], not from this entry's own field:
    /// a record of a log written before records named their whole range
    /// says less.
    ///
    /// ```
    /// # use durability::{Config, RunId, Wal, WalEntry};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let wal = Wal::open(dir.path(), Config::default().segment_size(1 << 20)).unwrap();
    /// let p = wal.append(&WalEntry::AbortTxn { txn_id: 1, run_id: RunId::new() }).unwrap();
    /// let mut tail = wal.tail(p.lsn);
    /// let e = tail.poll_ref().unwrap().unwrap().log_entry();
    /// assert_eq!(e.lsn + e.len as u64, p.end);
    /// ```
    pub fn log_entry(&self) -> LogEntry<'a> {
        self.entry
    }

    /// For a [`Truncate`](WalEntry::Truncate) record, the first LSN it
    /// deleted: the start of everything deleted up to the record, including
    /// what earlier records deleted when this one truncated them (the
    /// `from` the owned entry carries); `None` for any other entry.
    ///
    /// ```
    /// # use durability::{Config, RunId, Wal, WalEntry};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let wal = Wal::open(dir.path(), Config::default().segment_size(1 << 20)).unwrap();
    /// let mut tail = wal.tail(wal.end_lsn());
    /// let cut = wal.append(&WalEntry::AbortTxn { txn_id: 1, run_id: RunId::new() }).unwrap().lsn;
    /// assert_eq!(tail.poll_ref().unwrap().unwrap().truncate_from(), None);
    /// wal.truncate_from(cut).unwrap();
    /// assert_eq!(tail.poll_ref().unwrap().unwrap().truncate_from(), Some(cut));
    /// ```
    pub fn truncate_from(&self) -> Option<Lsn> {
        self.deleted_from
    }

    /// The entry as the owned calls deliver it: `(lsn, entry)`, with a
    /// `Truncate`'s `from` as [`TailEntry::truncate_from`] gives it.
    ///
    /// ```
    /// # use durability::{Config, RunId, Wal, WalEntry};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let wal = Wal::open(dir.path(), Config::default().segment_size(1 << 20)).unwrap();
    /// let abort = WalEntry::AbortTxn { txn_id: 1, run_id: RunId::new() };
    /// let at = wal.append(&abort).unwrap().lsn;
    /// let (mut a, mut b) = (wal.tail(0), wal.tail(0));
    /// let owned = a.poll().unwrap().unwrap();
    /// assert_eq!(b.poll_ref().unwrap().unwrap().into_owned(), owned);
    /// assert_eq!(owned, (at, abort));
    /// ```
    pub fn into_owned(self) -> (Lsn, WalEntry) {
        let mut entry = self.entry.entry.to_owned();
        if let (WalEntry::Truncate { from }, Some(start)) = (&mut entry, self.deleted_from) {
            *from = start;
        }
        (self.entry.lsn, entry)
    }
}

/// Moves a tail at `*next` to the entry it delivers next in `snap`, which
/// covers `*next` (the tail's pin, or its refresh, saw to it): over ranges a
/// truncation deleted (to the record, which tells the reader what was
/// deleted). A position below the log's start is reported once, with
/// [`Error::BadLsn`] ("purged"), and the tail goes on from the start.
pub(crate) fn settle(snap: &Snapshot, next: &mut Lsn) -> Result<()> {
    if *next < snap.start_lsn() {
        let e = snap.purged(*next);
        *next = snap.start_lsn();
        return Err(e);
    }
    *next = snap.skip_truncated(*next);
    Ok(())
}

/// Reads the entry at `*next` in `snap` (after [`settle`]) and moves `*next`
/// past it.
pub(crate) fn take<'s>(snap: &'s Snapshot, next: &mut Lsn) -> Result<TailEntry<'s>> {
    let e = snap.read_at(*next)?;
    *next += e.len as u64;
    let deleted_from = e.entry.truncate_from().map(|from| {
        // A record that truncated an earlier record (written before records
        // said so themselves) ends a deleted range that starts before its
        // `from`: the reader may hold entries from there.
        snap.dead
            .start_of_range_ending_at(e.lsn)
            .map_or(from, |start| from.min(start))
    });
    Ok(TailEntry {
        entry: e,
        deleted_from,
    })
}

impl Tail {
    /// A tail of `shared` from `lsn` (0: from the log's start); pins its
    /// position against retention. A `lsn` below the start (purged, or
    /// deleted by retention) is reported once by the first
    /// [`poll`](Tail::poll), which then goes on from the start.
    pub(crate) fn new(shared: Arc<Shared>, lsn: Lsn) -> Tail {
        // Under the writer lock, which retention holds while it picks its
        // cut (and a purge while it moves the mark): a tail created before
        // `purge_to_checkpoint` chooses is seen.
        let (id, lsn) = {
            let _w = shared.writer.lock();
            let start = shared.log.start();
            let lsn = if lsn == 0 { start } else { lsn };
            (shared.pins.pin(lsn.max(start)), lsn)
        };
        Tail {
            shared,
            id,
            next: lsn,
            snap: None,
        }
    }

    /// The LSN of the next entry to deliver.
    pub fn position(&self) -> Lsn {
        self.next
    }

    /// The next entry if one is published, without waiting.
    ///
    /// A [`Truncate`](WalEntry::Truncate) entry tells the reader that
    /// every entry from its `from` on, up to the record, is deleted: its
    /// `from` is the start of everything deleted up to it, including what
    /// earlier records deleted when this one truncated them, so a follower
    /// that applies the records it is given holds exactly the live log.
    ///
    /// Errors if the position is not an entry of this log (a `lsn` given
    /// to [`Wal::tail`](crate::Wal::tail) that is not an entry's start), or
    /// once, with [`Error::BadLsn`] saying "purged", if the tail's position
    /// lies below the log's start (given so, or purged by
    /// [`Wal::purge_before`](crate::Wal::purge_before) before the tail
    /// delivered it): the tail then goes on from the start, so its reader
    /// learns of the hole instead of reading past it.
    pub fn poll(&mut self) -> Result<Option<(Lsn, WalEntry)>> {
        Ok(self.poll_ref()?.map(TailEntry::into_owned))
    }

    /// [`Tail::poll`], zero-copy: the entry is borrowed from the mapped log
    /// until the tail's next call, so reading its key and value allocates
    /// nothing.
    ///
    /// ```
    /// use durability::{Config, Wal, WalEntry};
    /// # fn main() -> durability::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let wal = Wal::open(dir.path(), Config::default().segment_size(1 << 20))?;
    /// let mut tail = wal.tail(0);
    /// let entry = WalEntry::Write {
    ///     run_id: durability::RunId::new(),
    ///     key: b"k".to_vec(),
    ///     value: b"v".to_vec(),
    ///     version: 1,
    /// };
    /// let at = wal.append(&entry)?.lsn;
    /// let e = tail.poll_ref()?.expect("published");
    /// assert_eq!((e.lsn(), e.entry().value()), (at, Some(&b"v"[..])));
    /// assert!(tail.poll_ref()?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_ref(&mut self) -> Result<Option<TailEntry<'_>>> {
        if !self.advance()? {
            return Ok(None);
        }
        self.take().map(Some)
    }

    /// Makes the tail's snapshot cover its position if an entry is
    /// published there, and settles the position on the entry to deliver;
    /// false if nothing is published at the position yet.
    fn advance(&mut self) -> Result<bool> {
        if self.next >= self.shared.log.end() {
            return Ok(false);
        }
        let snap = match &mut self.snap {
            Some(s) if s.end > self.next => s,
            slot => {
                // The pin moves only here: everything before `next` has
                // been delivered, and the fresh snapshot covers `next`
                // because the pin kept retention from removing it.
                self.shared.pins.move_to(self.id, self.next);
                slot.insert(self.shared.snapshot())
            }
        };
        settle(snap, &mut self.next)?;
        Ok(true)
    }

    /// The entry at the position [`Tail::advance`] settled on.
    fn take(&mut self) -> Result<TailEntry<'_>> {
        match &self.snap {
            Some(snap) => take(snap, &mut self.next),
            None => Err(Error::BadLsn {
                lsn: self.next,
                detail: "the tail holds no view of the log".into(),
            }),
        }
    }

    /// The next entry, waiting up to `timeout` for one to be appended
    /// (any `Duration`, `Duration::MAX` included: a deadline past what the
    /// clock can represent means no deadline). Returns `Ok(None)` on time
    /// out, and [`Error::Closed`] once the log has closed and every entry it
    /// published has been delivered.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<(Lsn, WalEntry)>> {
        Ok(self
            .next_ref_timeout(timeout)?
            .map(TailEntry::into_owned))
    }

    /// [`Tail::next_timeout`], zero-copy: the entry is borrowed from the
    /// mapped log until the tail's next call.
    ///
    /// ```
    /// use std::time::Duration;
    /// use durability::{Config, Error, Wal, WalEntry};
    /// # fn main() -> durability::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let wal = Wal::open(dir.path(), Config::default().segment_size(1 << 20))?;
    /// let mut tail = wal.tail(wal.end_lsn());
    /// let writer = std::thread::spawn(move || {
    ///     let abort = WalEntry::AbortTxn { txn_id: 3, run_id: durability::RunId::new() };
    ///     wal.append(&abort)?;
    ///     wal.close()
    /// });
    /// let e = tail.next_ref_timeout(Duration::MAX)?.expect("no deadline");
    /// assert_eq!(e.entry().txn_id(), Some(3));
    /// writer.join().unwrap()?;
    /// assert!(matches!(tail.next_ref_timeout(Duration::MAX), Err(Error::Closed)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn next_ref_timeout(&mut self, timeout: Duration) -> Result<Option<TailEntry<'_>>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if self.advance()? {
                return self.take().map(Some);
            }
            let next = self.next;
            let shared = &self.shared;
            let outcome =
                shared
                    .tail_notify
                    .wait(&shared.writer, || shared.log.end() > next, deadline);
            match outcome {
                WaitOutcome::Ready => {}
                WaitOutcome::TimedOut => return self.poll_ref(),
                WaitOutcome::Closed => {
                    return match self.poll_ref()? {
                        Some(e) => Ok(Some(e)),
                        None => Err(Error::Closed),
                    };
                }
            }
        }
    }

    /// The next entry, as a future: it resolves when an entry is published
    /// at the tail's position (at once if one is), with `Ok(None)` once the
    /// log has closed and every entry it published has been delivered (what
    /// [`Tail::next_timeout`] reports as [`Error::Closed`]), or with the
    /// errors of [`Tail::poll`]. It needs no particular runtime: the
    /// appends that wake blocked tails wake its [`Waker`](std::task::Waker),
    /// and nothing polls on a timer.
    ///
    /// Dropping the future before it resolves gives nothing up: its waker
    /// is unregistered, and the tail's next call delivers the entry it
    /// would have. As a `Stream`: `futures::stream::unfold(tail, |mut t|
    /// async move { t.next_async().await.transpose().map(|r| (r, t)) })`.
    ///
    /// ```
    /// use durability::{Config, Wal, WalEntry};
    /// # fn main() -> durability::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let wal = Wal::open(dir.path(), Config::default().segment_size(1 << 20))?;
    /// let mut tail = wal.tail(wal.end_lsn());
    /// let writer = std::thread::spawn(move || {
    ///     let e = WalEntry::AbortTxn { txn_id: 7, run_id: durability::RunId::new() };
    ///     wal.append(&e)?;
    ///     wal.close()
    /// });
    /// // Any executor will do; this one parks the thread until woken.
    /// let (_, entry) = block_on(tail.next_async())?.expect("appended before the close");
    /// assert!(matches!(entry, WalEntry::AbortTxn { txn_id: 7, .. }));
    /// writer.join().unwrap()?;
    /// assert!(block_on(tail.next_async())?.is_none(), "closed");
    /// # Ok(())
    /// # }
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     struct Unpark(std::thread::Thread);
    /// #     impl std::task::Wake for Unpark {
    /// #         fn wake(self: std::sync::Arc<Self>) { self.0.unpark() }
    /// #     }
    /// #     let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(r) = std::future::Future::poll(f.as_mut(), &mut cx) { return r; }
    /// #         std::thread::park();
    /// #     }
    /// # }
    /// ```
    pub fn next_async(&mut self) -> Next<'_> {
        Next(self.next_ref_async())
    }

    /// [`Tail::next_async`], zero-copy: the future resolves to an entry
    /// borrowed from the mapped log until the tail's next call.
    ///
    /// ```
    /// use durability::{Config, Op, RunId, Wal};
    /// # fn main() -> durability::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let wal = Wal::open(dir.path(), Config::default().segment_size(1 << 20))?;
    /// let mut tail = wal.tail(0);
    /// wal.append_txn(RunId::new(), 1, &[Op::Write { key: b"k", value: b"v", version: 1 }])?;
    /// let mut keys = Vec::new();
    /// while keys.is_empty() {
    ///     let e = block_on(tail.next_ref_async())?.expect("open");
    ///     if let Some(k) = e.entry().key() {
    ///         keys.push(k.to_vec()); // BeginTxn, Write, CommitTxn: only the Write has a key
    ///     }
    /// }
    /// assert_eq!(keys, [b"k".to_vec()]);
    /// # Ok(())
    /// # }
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     struct Unpark(std::thread::Thread);
    /// #     impl std::task::Wake for Unpark {
    /// #         fn wake(self: std::sync::Arc<Self>) { self.0.unpark() }
    /// #     }
    /// #     let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(r) = std::future::Future::poll(f.as_mut(), &mut cx) { return r; }
    /// #         std::thread::park();
    /// #     }
    /// # }
    /// ```
    pub fn next_ref_async(&mut self) -> NextRef<'_> {
        NextRef {
            tail: Some(self),
            reg: None,
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.shared.pins.unpin(self.id);
    }
}

/// The future of [`Tail::next_ref_async`]: the tail's next entry, borrowed.
/// Dropping it before it resolves unregisters its waker and leaves the tail
/// where it was.
#[must_use = "a future does nothing unless polled"]
pub struct NextRef<'a> {
    /// The tail; taken when the future resolves (the entry borrows it).
    tail: Option<&'a mut Tail>,
    /// Its waker's registration with the log's tail notifier.
    reg: Registration,
}

impl std::fmt::Debug for NextRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NextRef")
            .field("tail", &self.tail)
            .field("registered", &self.reg.is_some())
            .finish()
    }
}

impl<'a> NextRef<'a> {
    /// Resolves: gives the registration back and, if `ready`, reads the
    /// entry from the tail, which the entry then borrows.
    fn finish(&mut self, ready: Result<bool>) -> Result<Option<TailEntry<'a>>> {
        let Some(tail) = self.tail.take() else {
            return Err(polled_after_completion());
        };
        tail.shared.tail_notify.cancel(&mut self.reg);
        match ready {
            Ok(true) => tail.take().map(Some),
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn polled_after_completion() -> Error {
    Error::InvalidArgument {
        detail: "a tail's next-entry future was polled after it completed".into(),
    }
}

impl<'a> Future for NextRef<'a> {
    type Output = Result<Option<TailEntry<'a>>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let Some(tail) = this.tail.as_deref_mut() else {
                return Poll::Ready(Err(polled_after_completion()));
            };
            match tail.advance() {
                Ok(false) => {}
                ready => return Poll::Ready(this.finish(ready)),
            }
            let next = tail.next;
            let shared = &*tail.shared;
            let outcome = shared.tail_notify.poll_wait(
                &shared.writer,
                || shared.log.end() > next,
                &mut this.reg,
                cx.waker(),
            );
            match outcome {
                Poll::Pending => return Poll::Pending,
                // Closed, and not ready then: deliver what may have been
                // published since, or end.
                Poll::Ready(WaitOutcome::Closed) => {
                    let ready = tail.advance();
                    return Poll::Ready(this.finish(ready));
                }
                Poll::Ready(_) => {}
            }
        }
    }
}

impl Drop for NextRef<'_> {
    fn drop(&mut self) {
        if let Some(tail) = &self.tail {
            tail.shared.tail_notify.cancel(&mut self.reg);
        }
    }
}

/// The future of [`Tail::next_async`]: the tail's next entry, owned.
/// Dropping it before it resolves unregisters its waker and leaves the tail
/// where it was.
#[must_use = "a future does nothing unless polled"]
#[derive(Debug)]
pub struct Next<'a>(NextRef<'a>);

impl Future for Next<'_> {
    type Output = Result<Option<(Lsn, WalEntry)>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().0)
            .poll(cx)
            .map(|r| r.map(|e| e.map(TailEntry::into_owned)))
    }
}
