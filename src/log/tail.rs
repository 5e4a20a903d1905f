//! Following a live log: [`Tail`] delivers each entry once, in log order,
//! as it is published, and wakes when an append publishes more or the log
//! closes.
//!
//! A tail pins its position: retention never deletes a segment holding an
//! entry a tail has yet to deliver (DESIGN.md §8, "Retention"), so a slow
//! tail never finds its next entry gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::entry::WalEntry;
use crate::format::Lsn;
use crate::log::shared::Shared;
use crate::read::snapshot::Snapshot;

/// Follows the log as it grows, entry by entry, from a starting LSN. Each
/// entry is delivered once, in log order.
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
        if self.next >= self.shared.log.end() {
            return Ok(None);
        }
        if self.snap.as_ref().is_none_or(|s| s.end <= self.next) {
            // The pin moves only here: everything before `next` has been
            // delivered, and the fresh snapshot covers `next` because the
            // pin kept retention from removing it.
            self.shared.pins.move_to(self.id, self.next);
            self.snap = Some(self.shared.snapshot());
        }
        let snap = self.snap.as_ref().expect("just set");
        if self.next < snap.start_lsn() {
            let e = snap.purged(self.next);
            self.next = snap.start_lsn();
            return Err(e);
        }
        // Entries a truncation deleted are never delivered: go on from its
        // record, which tells the reader what was deleted.
        self.next = snap.skip_truncated(self.next);
        let e = snap.read_at(self.next)?;
        let lsn = self.next;
        self.next += e.len as u64;
        let mut entry = e.entry.to_owned();
        if let WalEntry::Truncate { from } = &mut entry {
            // A record that truncated an earlier record (written before
            // records said so themselves) ends a deleted range that starts
            // before its `from`: the reader may hold entries from there.
            if let Some(start) = snap.dead.start_of_range_ending_at(lsn) {
                *from = (*from).min(start);
            }
        }
        Ok(Some((lsn, entry)))
    }

    /// The next entry, waiting up to `timeout` for one to be appended
    /// (any `Duration`, `Duration::MAX` included: a deadline past what the
    /// clock can represent means no deadline). Returns `Ok(None)` on time
    /// out, and [`Error::Closed`] once the log has closed and every entry it
    /// published has been delivered.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<(Lsn, WalEntry)>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(e) = self.poll()? {
                return Ok(Some(e));
            }
            let next = self.next;
            let shared = &self.shared;
            let outcome =
                shared
                    .tail_notify
                    .wait(&shared.writer, || shared.log.end() > next, deadline);
            match outcome {
                crate::log::notify::WaitOutcome::Ready => {}
                crate::log::notify::WaitOutcome::TimedOut => return self.poll(),
                crate::log::notify::WaitOutcome::Closed => {
                    return match self.poll()? {
                        Some(e) => Ok(Some(e)),
                        None => Err(Error::Closed),
                    };
                }
            }
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.shared.pins.unpin(self.id);
    }
}
