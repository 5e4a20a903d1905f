//! The writer's steps under its mutex: encode a frame into the mapped
//! active segment, publish, rotate to the prepared segment, ask for pages
//! ahead; and after the mutex: wake tails, sync as the mode says.

use std::fs::{self};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::entry::{BorrowedEntry, EntryKind};
use crate::format::frame::{self};
use crate::format::header::{self, DATA_START, MAX_LSN, MAX_SEQ};
use crate::format::Lsn;
use crate::log::group::Committer;
use crate::log::mode::SyncMode;
use crate::log::shared::Writer;
use crate::log::wal::Wal;
use crate::os::segment::{self, Segment};
use crate::read::snapshot::SegRef;

impl Wal {
    /// Encodes one frame at the writer's position, rotating first if it
    /// does not fit. Does not publish.
    #[inline]
    pub(super) fn write_one(&self, w: &mut Writer, entry: &BorrowedEntry<'_>) -> Result<Lsn> {
        self.write_frame(w, entry, false)
    }

    /// [`Wal::write_one`] for a frame of a unit of several: `continues`
    /// marks every frame but the unit's last ([`frame::CONTINUES`]).
    #[inline]
    pub(super) fn write_frame(
        &self,
        w: &mut Writer,
        entry: &BorrowedEntry<'_>,
        continues: bool,
    ) -> Result<Lsn> {
        let len = frame::frame_len(entry);
        check_lsn_room(w.next_lsn, len as u64)?;
        if w.off + len > w.active.seg.len() {
            self.rotate(w)?;
        }
        let lsn = w.next_lsn;
        // SAFETY: we hold the writer lock, and `[off, off + len)` lies at or
        // past the published end, where no reader looks (DESIGN.md,
        // "Soundness").
        let out = unsafe { w.active.seg.bytes_mut(w.off, w.off + len) };
        let seed = header::seed(self.shared.salt, lsn);
        let written = frame::encode_unit_frame(entry, seed, continues, out)?;
        debug_assert_eq!(written, len);
        w.off += len;
        w.next_lsn += len as u64;
        self.shared.written.store(w.next_lsn, Ordering::Relaxed);
        if w.off + segment::PREFAULT_WINDOW > w.populated && self.shared.config.prefault {
            self.populate_ahead(w);
        }
        w.index.note(entry.run_id(), lsn, w.next_lsn);
        Ok(lsn)
    }

    /// Publishes everything written; returns the new end and whether this
    /// append must sync now (Batched mode's count).
    #[inline]
    pub(super) fn publish(&self, w: &mut Writer) -> Result<(Lsn, bool, bool)> {
        self.shared.log.publish(w.next_lsn);
        w.appends += 1;
        self.shared.appends.store(w.appends, Ordering::Relaxed);
        // Read under the writer lock, which waiters also take to register:
        // either a waiter registered before this publish (and is woken), or
        // it reads the new end when it registers. No fence on this path.
        let wake = self.shared.tail_notify.has_waiters();
        let sync_now = match self.shared.config.sync_mode {
            SyncMode::Batched { batch_size, .. } => {
                w.since_sync += 1;
                if w.since_sync >= batch_size.max(1) {
                    w.since_sync = 0;
                    true
                } else {
                    false
                }
            }
            _ => false,
        };
        Ok((w.next_lsn, sync_now, wake))
    }

    /// Counts an append that will wait for its Strict sync (group commit's
    /// leader absorbs such appenders: [`GroupCommit`]), until it returns.
    #[inline]
    pub(super) fn committer(&self, wait: Wait) -> Option<Committer<'_>> {
        (wait == Wait::Mode && self.shared.config.sync_mode == SyncMode::Strict).then(|| {
            let c = &self.shared.counters.waited_appends;
            c.fetch_add(1, Ordering::Relaxed);
            self.shared.group.committer()
        })
    }

    #[inline]
    pub(super) fn after_append(
        &self,
        end: Lsn,
        sync_now: bool,
        wake: bool,
        wait: Wait,
        committer: Option<Committer<'_>>,
    ) -> Result<()> {
        if wake {
            self.shared.tail_notify.wake();
        }
        if sync_now || self.shared.config.sync_mode == SyncMode::Strict {
            match wait {
                Wait::Mode => self.shared.sync_to_as(end, committer.is_some())?,
                Wait::Never => self.ticker.kick(),
            }
        }
        drop(committer);
        Ok(())
    }

    /// Asks the background thread to fault in the next window of the
    /// active segment (merged with a request not yet taken).
    #[cold]
    fn populate_ahead(&self, w: &mut Writer) {
        let len = w.active.seg.len();
        let from = w.populated.max(w.off);
        if from >= len {
            w.populated = len;
            return;
        }
        let to = (from + segment::PREFAULT_WINDOW).min(len);
        w.populated = to;
        let mut slot = self.prep.slot.lock();
        let from = match &slot.populate {
            Some((s, f, _)) if Arc::ptr_eq(&s.seg, &w.active.seg) => (*f).min(from),
            _ => from,
        };
        // The background thread starts past wherever the writer is by the
        // time it runs, whatever `from` says.
        slot.populate = Some((w.active.clone(), from, to));
        self.prep.cv.notify_all();
    }

    /// Moves to the next segment. Its header is written later, by the sync
    /// that first covers its data (the group-commit leader), once
    /// everything before it is durable; until then
    /// recovery recognises it by its first frame, which only validates at
    /// the LSN where this segment ends (DESIGN.md, "Rotation").
    #[cold]
    pub(super) fn rotate(&self, w: &mut Writer) -> Result<()> {
        let seq = w.active.seg.seq() + 1;
        if seq > MAX_SEQ {
            return Err(Error::LogFull {
                detail: format!("segment sequence number {seq} is above {MAX_SEQ}"),
            });
        }
        let seg = self.take_prepared(seq)?;
        let sref = SegRef {
            seg: Arc::new(seg),
            first_lsn: w.next_lsn,
            txn_open: w.in_txn || !w.open_txns.is_empty(),
        };
        self.shared.log.push(sref.clone());
        self.shared.counters.rotations.fetch_add(1, Ordering::Relaxed);
        w.active = sref;
        w.off = DATA_START;
        // Nothing of it is faulted in yet (`segment::create` touches no
        // page): the background thread starts on its first window now.
        w.populated = DATA_START;
        if self.shared.config.prefault {
            self.populate_ahead(w);
        }
        Ok(())
    }

    /// The prepared segment `seq`, or a new one made here if none is ready.
    /// After a failure the next segment is not prepared in the background:
    /// the next rotation tries again in the foreground (no retry storm while
    /// the disk is full).
    fn take_prepared(&self, seq: u64) -> Result<Segment> {
        let size = self.shared.config.segment_size;
        let mut slot = self.prep.slot.lock();
        while slot.ready.is_none() && slot.want == Some(seq) && !slot.stop {
            self.prep.cv.wait(&mut slot);
        }
        let ready = slot.ready.take();
        slot.want = None;
        match ready {
            Some((s, Ok(seg))) if s == seq && seg.len() as u64 == size => {
                slot.want = Some(seq + 1);
                self.prep.cv.notify_all();
                return Ok(seg);
            }
            Some((s, Err(e))) if s == seq => return Err(e),
            Some((_, Ok(other))) => {
                // Prepared for another number or size: blank and never
                // used, so it goes (creating never replaces a file).
                let path = other.path().to_path_buf();
                drop(other);
                fs::remove_file(&path).map_err(|e| Error::io("remove unused segment", &path, e))?;
            }
            // Nothing ready: make one here.
            _ => {}
        }
        drop(slot);
        let seg = segment::create(&self.shared.dir, seq, size)?;
        let mut slot = self.prep.slot.lock();
        slot.want = Some(seq + 1);
        self.prep.cv.notify_all();
        Ok(seg)
    }
}

/// Whether an append waits for the sync its mode calls for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// As the mode says (`Strict`: synced on return).
    Mode,
    /// Never: the background syncer runs the sync instead.
    Never,
}

/// Keeps the writer's open transactions up to date after `entry` was
/// written at `lsn`.
#[inline]
pub(crate) fn note_boundary(w: &mut Writer, entry: &BorrowedEntry<'_>, lsn: Lsn) {
    match *entry {
        BorrowedEntry::BeginTxn { txn_id, run_id, .. } => {
            w.open_txns
                .note(EntryKind::BeginTxn, run_id, Some(txn_id), lsn);
        }
        BorrowedEntry::CommitTxn { txn_id, run_id } => {
            w.open_txns
                .note(EntryKind::CommitTxn, run_id, Some(txn_id), lsn);
        }
        BorrowedEntry::AbortTxn { txn_id, run_id } => {
            w.open_txns
                .note(EntryKind::AbortTxn, run_id, Some(txn_id), lsn);
        }
        _ => {}
    }
}

/// Refuses an append of `len` bytes at `lsn` that would pass [`MAX_LSN`].
#[inline]
pub(crate) fn check_lsn_room(lsn: Lsn, len: u64) -> Result<()> {
    if len > MAX_LSN.saturating_sub(lsn) {
        return Err(Error::LogFull {
            detail: format!("an append of {len} bytes at LSN {lsn} would pass LSN {MAX_LSN}"),
        });
    }
    Ok(())
}
