//! Retention: checkpoints, and deleting the prefix of the log they cover.
//!
//! The vocabulary: to *purge* is to drop the oldest entries (a prefix):
//! [`Wal::purge_before`] any LSN, [`Wal::purge_to_checkpoint`] what a
//! checkpoint covers. To *truncate* is to drop the newest (a suffix):
//! [`Wal::truncate_from`] (a Raft log's conflict, a rolled-back tail).
//!
//! Only a prefix of whole segments is ever deleted, oldest first, each
//! unlink durable before the next. A cut is made only at a segment boundary
//! where
//! - the boundary lies at or before the checkpoint,
//! - no run the checkpoint lists as active has an entry before it,
//! - no transaction is open across it (a replay of what remains would
//!   otherwise deliver the surviving half of a transaction that may never
//!   have committed as standalone writes), and
//! - no [`Tail`](crate::Tail) still has to read an entry before it.
//!
//! Readers holding a [`Snapshot`](crate::Snapshot) keep their mappings of
//! deleted segments (an unlinked file stays readable while mapped).
//!
//! [`Wal::purge_before`] first moves the purge mark (DESIGN.md §9): the
//! log's logical start, durable in `PURGED` before any segment goes, so
//! that entries below it stay unreadable in the segment it keeps, and
//! after a crash at any point.

use std::fs;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::entry::{BorrowedEntry, RunId};
use crate::format::Lsn;
use crate::log::position::EntryPosition;
use crate::log::shared::Shared;
use crate::log::wal::Wal;
use crate::read::runs::purge_point;

impl Wal {
    /// Appends a Checkpoint entry; returns where it landed. Pass its LSN
    /// (`.lsn`) to [`Wal::purge_to_checkpoint`] to drop what the checkpoint
    /// covers.
    pub fn checkpoint(
        &self,
        snapshot_id: Uuid,
        version: u64,
        active_runs: &[RunId],
    ) -> Result<EntryPosition> {
        self.append_entry(BorrowedEntry::Checkpoint {
            snapshot_id,
            version,
            active_runs,
        })
    }

    /// Deletes the segments that lie wholly before the checkpoint at
    /// `checkpoint_lsn` and hold no entry of a run the checkpoint lists as
    /// active. Only a prefix of the log is ever deleted, and only where no
    /// transaction is open and no tail still has to read (see the module
    /// docs). Returns the number of segments removed.
    ///
    /// ```
    /// # fn main() -> durability::Result<()> {
    /// use durability::{Config, Op, RunId, Wal};
    /// use uuid::Uuid;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// // Small segments, so that there is something to delete.
    /// let wal = Wal::open(dir.path(), Config::default().segment_size(16 << 10))?;
    /// let run = RunId::new();
    /// let value = [7u8; 500];
    /// for txn in 1..=200 {
    ///     wal.append_txn(run, txn, &[Op::Write { key: b"k", value: &value, version: txn }])?;
    /// }
    /// // The application saved its state under `id`; the run is finished,
    /// // so no active run holds the prefix back.
    /// let id = Uuid::new_v4();
    /// let cp = wal.checkpoint(id, 1, &[])?;
    /// let before = wal.stats().segments;
    /// let removed = wal.purge_to_checkpoint(cp.lsn)?;
    /// assert!(removed > 0 && wal.stats().segments == before - removed);
    /// // What is left starts at a segment boundary at or before the checkpoint.
    /// assert!(wal.start_lsn() <= cp.lsn);
    /// assert_eq!(wal.last_checkpoint()?.unwrap().snapshot_id, id);
    /// # Ok(())
    /// # }
    /// ```
    pub fn purge_to_checkpoint(&self, checkpoint_lsn: Lsn) -> Result<usize> {
        self.check_open()?;
        let shared = &self.shared;
        let snap = shared.snapshot();
        let at = snap.read_at(checkpoint_lsn)?;
        if !at.entry.is_checkpoint() {
            return Err(Error::BadLsn {
                lsn: checkpoint_lsn,
                detail: format!("the entry there is a {}, not a Checkpoint", at.entry.kind()),
            });
        }
        let active: Vec<RunId> = at.entry.active_runs().to_vec();
        drop(snap);
        // One retention at a time, unlinks included: two interleaved would
        // unlink out of order, and a crash could leave a gap.
        let _one = shared.retention.lock();
        self.remove_below(checkpoint_lsn, &active)
    }

    /// Purges every entry below `lsn`: for a caller that keeps its own
    /// record of what it no longer needs (a replication layer purging
    /// entries a snapshot covers).
    ///
    /// First the log's start moves to `lsn` (the purge mark), durably
    /// before this returns and before any file is deleted: from then on no
    /// read returns an entry below it, in this process or another, before
    /// or after a crash or reopen ([`Wal::start_lsn`], replays, which say
    /// so in [`ReplayStats`](crate::ReplayStats), iteration, `read_at`,
    /// tails, `truncate_from`). A transaction begun below `lsn` is never
    /// delivered by a replay (DESIGN.md §9). `lsn` may be any LSN: an entry
    /// that begins below it is purged whole (the mark moves to the next
    /// entry's start; a caller that wants a batch kept whole purges at a
    /// batch's start), an entry a truncation deleted goes with its range,
    /// and at or past the end everything is purged; at or below the start
    /// it changes nothing. The mark never moves back.
    ///
    /// Then the oldest segments whose entries all lie below `lsn` are
    /// deleted, under the same rules as [`Wal::purge_to_checkpoint`] (never
    /// where a transaction is open, never past what a
    /// [`Tail`](crate::Tail) has yet to read, never the last segment).
    /// Returns the number of segments deleted.
    ///
    /// ```
    /// # fn main() -> durability::Result<()> {
    /// use durability::{Config, Op, RunId, Wal};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let wal = Wal::open(dir.path(), Config::default())?;
    /// let run = RunId::new();
    /// let mut positions = Vec::new();
    /// for txn in 1..=10 {
    ///     positions.push(wal.append_txn(run, txn, &[Op::Write { key: b"k", value: b"v", version: txn }])?);
    /// }
    /// // A replication layer whose snapshot covers transactions 1..=6.
    /// wal.purge_before(positions[6].begin)?;
    /// let mut ids = Vec::new();
    /// let stats = wal.replay(|txn| ids.push(txn.txn_id.unwrap()))?;
    /// assert_eq!(ids, [7, 8, 9, 10]);
    /// assert!(stats.purged); // the history says it does not start at the beginning
    /// # Ok(())
    /// # }
    /// ```
    pub fn purge_before(&self, lsn: Lsn) -> Result<usize> {
        self.check_open()?;
        // One retention at a time: marks are written in order, and unlinks
        // never interleave.
        let _one = self.shared.retention.lock();
        self.mark_purged(lsn)?;
        self.remove_below(lsn, &[])
    }

    /// Moves the purge mark to `lsn` (see [`Wal::purge_before`]): in memory,
    /// under the writer lock (so no truncation or append interleaves with
    /// the count of the transactions it cuts), then on disk once the
    /// entries below it are durable. Called under the retention lock.
    fn mark_purged(&self, lsn: Lsn) -> Result<()> {
        let shared = &self.shared;
        let mark = {
            let mut w = shared.writer.lock();
            // Under the writer lock the published log is the whole log.
            let snap = shared.snapshot();
            if lsn <= snap.start {
                return Ok(());
            }
            let mark = if lsn >= snap.end {
                snap.end
            } else {
                // An entry that begins below `lsn` is purged whole: a
                // position inside one moves the mark to the next entry. A
                // deleted entry is purged with the rest of its range: the
                // mark goes to the record that ends it, a live entry.
                let m = snap.next_entry_at_or_after(lsn);
                let m = snap.skip_truncated(m);
                if m < snap.end {
                    snap.read_at(m)?;
                }
                m
            };
            if !take_up(shared, &mut w.index, snap, mark)? {
                return Ok(());
            }
            mark
        };
        // The mark never lies past the durable end: after a power cut the
        // log still reaches it (DESIGN.md §7).
        shared.sync_to(mark)?;
        crate::os::purge::write(&shared.dir, shared.instance, mark)
    }

    /// Called under the retention lock.
    fn remove_below(&self, limit: Lsn, active: &[RunId]) -> Result<usize> {
        let shared = &self.shared;
        // The first segment kept must have a durable header before anything
        // before it disappears: recovery identifies the log by it. Syncing
        // past the limit seals every segment up to it (A).
        shared.sync_to(limit.saturating_add(1).min(shared.log.end()))?;
        let mut w = shared.writer.lock();
        let pinned = shared.pins.lowest().unwrap_or(Lsn::MAX);
        let segs = shared.log.view().segs;
        let mut remove = 0;
        for i in 0..segs.len().saturating_sub(1) {
            let cut = segs[i + 1].first_lsn;
            if cut > limit || cut > pinned || active.iter().any(|r| w.index.touches(r, cut)) {
                break;
            }
            if !segs[i + 1].txn_open {
                remove = i + 1;
            }
        }
        if remove == 0 {
            return Ok(0);
        }
        let new_start = segs[remove].first_lsn;
        // Forget them in memory first: readers that already hold a snapshot
        // keep their mappings; new ones no longer see these segments.
        // The truncation records below `new_start` go with them, in the
        // same locked section (DESIGN.md §8).
        shared.log.remove_first(remove, new_start);
        w.index.truncate_before(new_start);
        drop(w);
        // Oldest first, each unlink durable before the next, so a crash
        // leaves a prefix of them done and never a gap in the sequence.
        for s in &segs[..remove] {
            fs::remove_file(s.seg.path())
                .map_err(|e| Error::io("remove segment", s.seg.path(), e))?;
            crate::os::durable::sync_dir(&shared.dir)?;
        }
        Ok(remove)
    }
}

/// Takes up the purge mark `mark` found on disk at a write open: the log's
/// start moves there, and the run index forgets what lies below. A mark
/// past the recovered end (the log lost entries to damage it could not
/// recover from) is lowered to the end, on disk too, before anything is
/// appended: appends would otherwise land below it (DESIGN.md §7).
pub(super) fn restore_mark(shared: &Shared, mark: Lsn) -> Result<()> {
    let mut w = shared.writer.lock();
    let snap = shared.snapshot();
    let at = mark.min(snap.end);
    if at < mark {
        crate::os::purge::write(&shared.dir, shared.instance, at)?;
    }
    take_up(shared, &mut w.index, snap, at)?;
    Ok(())
}

/// Moves the log's start in memory to `mark`, if it lies past the start
/// of `snap` (the whole published log, taken under the writer lock the
/// caller holds): the purge point and the transactions it cuts, then the
/// run index. False if the mark changes nothing.
fn take_up(
    shared: &Shared,
    index: &mut crate::read::runs::RunIndex,
    snap: crate::read::snapshot::Snapshot,
    mark: Lsn,
) -> Result<bool> {
    if mark <= snap.start {
        return Ok(false);
    }
    let point = purge_point(&snap, mark)?;
    drop(snap);
    shared.log.set_purge(point);
    index.truncate_before(mark);
    Ok(true)
}
