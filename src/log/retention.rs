//! Retention: checkpoints, and deleting the prefix of the log they cover.
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

use std::fs;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::entry::{BorrowedEntry, RunId};
use crate::format::Lsn;
use crate::log::position::EntryPosition;
use crate::log::wal::Wal;

impl Wal {
    /// Appends a Checkpoint entry; returns where it landed. Pass its LSN
    /// (`.lsn`) to [`Wal::truncate_before`] to drop what the checkpoint
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
    pub fn truncate_before(&self, checkpoint_lsn: Lsn) -> Result<usize> {
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
        self.remove_below(checkpoint_lsn, &active)
    }

    /// Deletes the oldest segments whose entries all lie below `lsn`, under
    /// the same rules as [`Wal::truncate_before`] (never where a
    /// transaction is open, never past what a [`Tail`](crate::Tail) has yet
    /// to read, never the last segment) but with no checkpoint: for a
    /// caller that keeps its own record of what it no longer needs (a
    /// replication layer purging applied entries). Entries below `lsn` in
    /// a segment that is kept stay readable. Returns the number of
    /// segments deleted.
    pub fn purge_before(&self, lsn: Lsn) -> Result<usize> {
        self.check_open()?;
        self.remove_below(lsn, &[])
    }

    fn remove_below(&self, limit: Lsn, active: &[RunId]) -> Result<usize> {
        let shared = &self.shared;
        // One retention at a time, unlinks included: two interleaved would
        // unlink out of order, and a crash could leave a gap.
        let _one = shared.retention.lock();
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
