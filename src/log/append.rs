//! The appends: one entry, a batch (one unit), a transaction; each waits
//! for the sync its mode calls for, or (`submit_*`) for none.

use crate::error::{Error, Result};
use crate::format::entry::{BorrowedEntry, Op, RunId, WalEntry};
use crate::format::frame::{self};
use crate::format::header::{self, DATA_START};
use crate::format::Lsn;
use crate::log::position::{BatchPosition, EntryPosition, TxnPosition};
use crate::log::shared::Writer;
use crate::log::wal::Wal;
use crate::log::writer::{check_lsn_room, note_boundary, Wait};

impl Wal {
    /// Appends one entry; returns where it landed. Durable on return in
    /// `Strict` mode, otherwise as the mode says.
    pub fn append(&self, entry: &WalEntry) -> Result<EntryPosition> {
        self.append_entry(entry.as_borrowed())
    }

    /// Appends one borrowed entry (no allocation); returns where it landed.
    pub fn append_entry(&self, entry: BorrowedEntry<'_>) -> Result<EntryPosition> {
        self.one(entry, Wait::Mode)
    }

    /// Appends one entry without waiting for a sync, whatever the mode,
    /// and returns where it landed. In `Strict` mode the background syncer
    /// is asked to sync at once (one sync covers every append submitted
    /// meanwhile); in the other modes the mode's own syncs cover it. Learn
    /// when it is durable by passing the position to [`Wal::on_durable`],
    /// [`Wal::durable`] or [`Wal::wait_durable`] (they wait for its end).
    pub fn submit_entry(&self, entry: BorrowedEntry<'_>) -> Result<EntryPosition> {
        self.one(entry, Wait::Never)
    }

    fn one(&self, entry: BorrowedEntry<'_>, wait: Wait) -> Result<EntryPosition> {
        self.check_size(&entry)?;
        if let BorrowedEntry::Truncate { .. } = entry {
            return Err(Error::InvalidArgument {
                detail: "a Truncate entry is appended by Wal::truncate_from".into(),
            });
        }
        let committer = self.committer(wait);
        let (lsn, (end, sync_now, wake)) = {
            let mut w = self.shared.writer.lock();
            self.check_open()?;
            let lsn = self.write_one(&mut w, &entry)?;
            note_boundary(&mut w, &entry, lsn);
            (lsn, self.publish(&mut w)?)
        };
        self.after_append(end, sync_now, wake, wait, committer)
            .map(|()| EntryPosition { lsn, end })
    }

    /// Appends `entries` as one unit, all or nothing: every reader (in this
    /// process or another) and every recovery after a crash sees all of
    /// them or none. Its frames are contiguous, in one segment, and marked
    /// as one unit on disk ([`frame::CONTINUES`]); they are published at
    /// once, and in `Strict` mode one sync covers them. A batch of two or
    /// more entries must fit one segment ([`Error::BatchTooLarge`]
    /// otherwise: split it, or use larger segments). Entries get
    /// consecutive LSNs: the first is `first`, each next one starts where
    /// the previous frame ends ([`frame::frame_len`]).
    pub fn append_batch(&self, entries: &[BorrowedEntry<'_>]) -> Result<BatchPosition> {
        self.batch(entries, Wait::Mode)
    }

    /// [`Wal::append_batch`] without waiting for a sync (see
    /// [`Wal::submit_entry`]).
    pub fn submit_batch(&self, entries: &[BorrowedEntry<'_>]) -> Result<BatchPosition> {
        self.batch(entries, Wait::Never)
    }

    fn batch(&self, entries: &[BorrowedEntry<'_>], wait: Wait) -> Result<BatchPosition> {
        let mut total = 0u64;
        for e in entries {
            if let BorrowedEntry::Truncate { .. } = e {
                return Err(Error::InvalidArgument {
                    detail: "a Truncate entry is appended by Wal::truncate_from".into(),
                });
            }
            self.check_size(e)?;
            total += frame::frame_len(e) as u64;
        }
        let room = self.shared.config.segment_size - DATA_START as u64;
        if entries.len() > 1 && total > room {
            return Err(Error::BatchTooLarge {
                len: total,
                max: room,
            });
        }
        let committer = self.committer(wait);
        let (pos, sync_now, wake) = {
            let mut w = self.shared.writer.lock();
            self.check_open()?;
            if entries.is_empty() {
                let end = w.next_lsn;
                return Ok(BatchPosition { first: end, end });
            }
            check_lsn_room(w.next_lsn, total)?;
            self.rotate_to_fit(&mut w, total)?;
            let first = w.next_lsn;
            let last = entries.len() - 1;
            // One segment holds the whole unit: recovery never finds one
            // spanning two (a unit open at a segment's end is damage).
            debug_assert!(entries.len() == 1 || w.off as u64 + total <= w.active.seg.len() as u64);
            let mut write_all = || -> Result<()> {
                for (i, e) in entries.iter().enumerate() {
                    let lsn = self.write_frame(&mut w, e, i < last)?;
                    note_boundary(&mut w, e, lsn);
                }
                Ok(())
            };
            if let Err(e) = write_all() {
                // Part of the unit sits past the published end; a later
                // append would write over it, but a sync may already have
                // covered it. Fail stop.
                self.fail_unit(first, &e);
                return Err(e);
            }
            let (end, sync_now, wake) = self.publish(&mut w)?;
            (BatchPosition { first, end }, sync_now, wake)
        };
        self.after_append(pos.end, sync_now, wake, wait, committer)?;
        Ok(pos)
    }

    /// Appends a whole transaction of run `run_id` — its BeginTxn (timestamp
    /// now), the `ops` as Writes and Deletes, and its CommitTxn — as one
    /// contiguous unit that readers see all at once, durable on return
    /// according to the mode.
    pub fn append_txn(&self, run_id: RunId, txn_id: u64, ops: &[Op<'_>]) -> Result<TxnPosition> {
        self.txn(run_id, txn_id, header::now_micros(), ops, Wait::Mode)
    }

    /// [`Wal::append_txn`] with an explicit BeginTxn timestamp.
    pub fn append_txn_at(
        &self,
        run_id: RunId,
        txn_id: u64,
        timestamp: u64,
        ops: &[Op<'_>],
    ) -> Result<TxnPosition> {
        self.txn(run_id, txn_id, timestamp, ops, Wait::Mode)
    }

    /// [`Wal::append_txn`] without waiting for a sync (see
    /// [`Wal::submit_entry`]): durable once its end is.
    pub fn submit_txn(&self, run_id: RunId, txn_id: u64, ops: &[Op<'_>]) -> Result<TxnPosition> {
        self.txn(run_id, txn_id, header::now_micros(), ops, Wait::Never)
    }

    fn txn(
        &self,
        run_id: RunId,
        txn_id: u64,
        timestamp: u64,
        ops: &[Op<'_>],
        wait: Wait,
    ) -> Result<TxnPosition> {
        let begin = BorrowedEntry::BeginTxn {
            txn_id,
            run_id,
            timestamp,
        };
        let commit = BorrowedEntry::CommitTxn { txn_id, run_id };
        // The whole unit's size, checked before anything is written: a
        // transaction that cannot fit the log's LSN space is refused whole.
        let mut total = (frame::frame_len(&begin) + frame::frame_len(&commit)) as u64;
        for op in ops {
            let e = op.entry(run_id);
            self.check_size(&e)?;
            total += frame::frame_len(&e) as u64;
        }
        let committer = self.committer(wait);
        let (pos, sync_now, wake) = {
            let mut w = self.shared.writer.lock();
            self.check_open()?;
            check_lsn_room(w.next_lsn, total)?;
            self.rotate_to_fit(&mut w, total)?;
            let txn_start = w.next_lsn;
            w.in_txn = false;
            let begin_lsn = self.write_one(&mut w, &begin)?;
            w.in_txn = true;
            let mut write_rest = || -> Result<Lsn> {
                for op in ops {
                    self.write_one(&mut w, &op.entry(run_id))?;
                }
                self.write_one(&mut w, &commit)
            };
            let written = write_rest();
            w.in_txn = false;
            let commit_lsn = match written {
                Ok(l) => l,
                Err(e) => {
                    self.fail_unit(txn_start, &e);
                    return Err(e);
                }
            };
            // Its BeginTxn replaced any transaction of the run left open.
            w.open_txns.closed_by_unit(&run_id);
            let (end, sync_now, wake) = self.publish(&mut w)?;
            (
                TxnPosition {
                    begin: begin_lsn,
                    commit: commit_lsn,
                    end,
                },
                sync_now,
                wake,
            )
        };
        self.after_append(pos.end, sync_now, wake, wait, committer)?;
        Ok(pos)
    }

    /// A unit that fits a segment is never split across two: retention can
    /// then cut at any boundary without cutting a transaction, and a run's
    /// transaction is read from one map. The segment it would move to has
    /// the configured size.
    fn rotate_to_fit(&self, w: &mut Writer, total: u64) -> Result<()> {
        let room = self.shared.config.segment_size - DATA_START as u64;
        // An empty active segment too small for the unit (created under a
        // smaller size) is left empty: the unit goes whole into the next.
        if w.off as u64 + total > w.active.seg.len() as u64 && total <= room {
            self.rotate(w)?;
        }
        Ok(())
    }

    /// A unit failed half-way: part of it sits past the published end,
    /// where a later append would write over it while a sync may already
    /// have covered it. Fail stop.
    #[cold]
    pub(super) fn fail_unit(&self, start: Lsn, e: &Error) {
        let cause = format!(
            "append failed after LSN {start}: {}",
            crate::error::with_causes(e)
        );
        self.shared.poison(cause);
    }
}
