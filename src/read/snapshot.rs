//! Snapshots of the log and the entry iterator: a consistent view of the
//! segments that held the log at one moment, read in place (zero-copy).

use std::sync::Arc;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::frame::{Ahead, Decoder, EntryRef};
use crate::format::header::{self, DATA_START};
use crate::format::entry::RunId;
use crate::format::Lsn;
use crate::os::segment::Segment;
use crate::read::dead::Dead;
use crate::read::purge::PurgePoint;

/// A mapped segment of the log with the LSN of its first frame.
#[derive(Clone, Debug)]
pub(crate) struct SegRef {
    pub seg: Arc<Segment>,
    pub first_lsn: u64,
    /// A transaction was open where this segment starts (see
    /// [`OpenTxns`](crate::read::runs::OpenTxns)): retention may not cut
    /// the log here.
    pub txn_open: bool,
}

impl SegRef {
    /// The file offset of `lsn` in this segment.
    #[inline]
    pub fn offset_of(&self, lsn: u64) -> usize {
        DATA_START + (lsn - self.first_lsn) as usize
    }

    /// The LSN of file offset `off` in this segment.
    #[inline]
    pub fn lsn_of(&self, off: usize) -> u64 {
        self.first_lsn + (off - DATA_START) as u64
    }
}

/// A Checkpoint entry of the log ([`Wal::checkpoint`]), as
/// [`Snapshot::last_checkpoint`] finds it.
///
/// [`Wal::checkpoint`]: crate::Wal::checkpoint
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its position: a replay [`from`](crate::Replayer::from) here
    /// delivers every transaction that commits after the checkpoint,
    /// including one that was open when it was taken.
    pub lsn: Lsn,
    /// The snapshot id given to [`Wal::checkpoint`](crate::Wal::checkpoint):
    /// names the caller's state as of the checkpoint.
    pub snapshot_id: Uuid,
    /// The version given to [`Wal::checkpoint`](crate::Wal::checkpoint).
    pub version: u64,
    /// The runs the checkpoint lists as active.
    pub active_runs: Vec<RunId>,
}

/// One entry read from the log.
#[derive(Debug, Clone, Copy)]
pub struct LogEntry<'a> {
    /// The entry's position.
    pub lsn: Lsn,
    /// The segment holding it.
    pub segment: u64,
    /// Its byte offset in the segment file.
    pub offset: usize,
    /// Bytes its frame occupies (payload + 9): the next entry is at
    /// `lsn + len`.
    pub len: usize,
    /// The entry, borrowed from the mapped segment.
    pub entry: EntryRef<'a>,
}

/// A consistent view of the log at one moment: the segments that held it
/// and the end of the published entries. Entries borrow from the snapshot;
/// the segments stay mapped while it lives, even if retention deletes their
/// files meanwhile.
///
/// Every read starts at [`Snapshot::start_lsn`], the log's logical start:
/// the purge mark ([`Wal::purge_before`](crate::Wal::purge_before)) or the
/// first LSN the segments hold, whichever is later. Entries below it are
/// never returned, even where a segment still holds them.
///
/// ```
/// # fn main() -> durability::Result<()> {
/// use durability::{Config, EntryKind, Op, RunId, Wal};
///
/// let dir = tempfile::tempdir().unwrap();
/// let wal = Wal::open(dir.path(), Config::default())?;
/// let run = RunId::new();
/// let pos = wal.append_txn(run, 1, &[Op::Write { key: b"k", value: b"v1", version: 1 }])?;
///
/// let snap = wal.snapshot();
/// // Appends after the snapshot are not in it.
/// wal.append_txn(run, 2, &[Op::Write { key: b"k", value: b"v2", version: 2 }])?;
///
/// let kinds: Vec<EntryKind> = snap.iter().map(|e| e.map(|e| e.entry.kind())).collect::<Result<_, _>>()?;
/// assert_eq!(kinds, [EntryKind::BeginTxn, EntryKind::Write, EntryKind::CommitTxn]);
/// // Zero-copy: the value is a slice of the mapped segment.
/// let write = snap.iter_from(pos.begin)?.nth(1).unwrap()?;
/// assert_eq!(write.entry.value(), Some(&b"v1"[..]));
/// assert_eq!(snap.read_at(write.lsn)?.entry.key(), Some(&b"k"[..]));
/// assert_eq!(snap.end_lsn(), pos.end);
/// # Ok(())
/// # }
/// ```
pub struct Snapshot {
    pub(crate) segs: Vec<SegRef>,
    /// The logical start: `max(first LSN of segs[0], purge.mark)`.
    pub(crate) start: Lsn,
    pub(crate) end: Lsn,
    pub(crate) salt: u32,
    pub(crate) decoder: Decoder,
    /// Ranges deleted by truncation records below `end`: never read.
    pub(crate) dead: Arc<Dead>,
    /// The purge point: `start` and the transactions it cuts.
    pub(crate) purge: Arc<PurgePoint>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("segments", &self.segs.len())
            .field("start", &self.start)
            .field("end", &self.end)
            .finish()
    }
}

impl Snapshot {
    /// The LSN of the first entry in the view: the purge mark, or the
    /// first LSN the log's segments still hold, whichever is later. A
    /// log that starts above 0 had entries before this one, deleted by
    /// [`Wal::purge_before`](crate::Wal::purge_before) or retention.
    pub fn start_lsn(&self) -> Lsn {
        self.start
    }

    /// The first LSN the view's segments hold: the logical start, or below
    /// it where a segment still holds purged entries.
    pub(crate) fn base(&self) -> Lsn {
        self.segs
            .first()
            .map_or(self.start, |s| s.first_lsn)
            .min(self.start)
    }

    /// The LSN just past the last entry in the view.
    pub fn end_lsn(&self) -> Lsn {
        self.end
    }

    /// Bytes of log in the view.
    pub fn len_bytes(&self) -> u64 {
        self.end - self.start
    }

    /// Sequence numbers of the segments in the view.
    pub fn segment_seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.segs.iter().map(|s| s.seg.seq())
    }

    /// Every entry, in log order.
    pub fn iter(&self) -> Iter<'_> {
        Iter::new(self, 0, self.start)
    }

    /// Every frame in log order, including entries deleted by truncations
    /// (they stay on disk until retention removes their segment): for
    /// inspection tools. Replay and every other read skip them.
    pub fn iter_all(&self) -> Iter<'_> {
        let mut it = Iter::new(self, 0, self.start);
        it.include_deleted();
        it
    }

    /// The LSN ranges deleted by truncation records in this view
    /// ([`Wal::truncate_from`](crate::Wal::truncate_from)): iteration and
    /// replay skip them. Ranges ended by a record below the log's start
    /// are not listed (that record is purged).
    pub fn truncated(&self) -> &[(Lsn, Lsn)] {
        let r = self.dead.ranges();
        &r[r.partition_point(|&(_, at)| at < self.start)..]
    }

    /// True if the entry at `lsn` was deleted by a truncation in this view.
    pub fn is_truncated(&self, lsn: Lsn) -> bool {
        self.dead.covers(lsn)
    }

    /// `lsn`, or if a truncation deleted it, the end of the deleted range
    /// (the truncation record): where a reader at `lsn` continues.
    pub fn skip_truncated(&self, lsn: Lsn) -> Lsn {
        self.dead.skip(lsn)
    }

    /// Every entry from `lsn` on, in log order. `lsn` must be the position of
    /// an entry (as returned by an append or a previous read) or the end.
    /// Entries deleted by a truncation are skipped, so from a deleted `lsn`
    /// the first entry is the truncation record.
    pub fn iter_from(&self, lsn: Lsn) -> Result<Iter<'_>> {
        if lsn < self.start && lsn < self.purge.mark {
            return Err(self.purged(lsn));
        }
        if lsn < self.start || lsn > self.end {
            return Err(Error::BadLsn {
                lsn,
                detail: format!("outside the log's range {}..{}", self.start, self.end),
            });
        }
        self.iter_beyond_start(lsn)
    }

    /// The error for `lsn`, below the purge mark.
    pub(crate) fn purged(&self, lsn: Lsn) -> Error {
        Error::BadLsn {
            lsn,
            detail: format!(
                "purged: every entry below LSN {} was purged; the log starts there",
                self.start
            ),
        }
    }

    /// [`Snapshot::iter_from`], for `lsn` anywhere in the segments, below
    /// the purge mark too: for the log's own bookkeeping (the transactions
    /// open at the mark, or across a truncation), never for a caller's read.
    pub(crate) fn iter_beyond_start(&self, lsn: Lsn) -> Result<Iter<'_>> {
        if lsn < self.base() || lsn > self.end {
            return Err(Error::BadLsn {
                lsn,
                detail: format!("outside the log's range {}..{}", self.base(), self.end),
            });
        }
        let seg = self
            .segs
            .partition_point(|s| s.first_lsn <= lsn)
            .saturating_sub(1);
        let mut it = Iter::new(self, seg, lsn);
        // A segment's first LSN starts a frame; any other position is the
        // caller's word until a frame decodes there.
        it.unproven = self.segs.get(seg).is_none_or(|s| s.first_lsn != lsn);
        Ok(it)
    }

    /// `lsn` if an entry starts there (or the position is not inside a
    /// frame of a segment, or the frames before it are damaged: a read
    /// there reports it), else the start of the entry after the one that
    /// holds `lsn`.
    pub(crate) fn next_entry_at_or_after(&self, lsn: Lsn) -> Lsn {
        self.misaligned(lsn).map_or(lsn, |(_, next)| next)
    }

    /// Where the frames around `lsn` start, if no frame starts at `lsn`:
    /// `(the start of the frame holding lsn, the next frame's start)`, by
    /// walking the frame lengths of its segment from the segment's start.
    /// `None` if a frame starts at `lsn`, or if a length on the way is not
    /// a frame's (damage before `lsn`: its status is unknown).
    fn misaligned(&self, lsn: Lsn) -> Option<(Lsn, Lsn)> {
        let i = self
            .segs
            .partition_point(|s| s.first_lsn <= lsn)
            .checked_sub(1)?;
        let s = &self.segs[i];
        let seg_end = self.segs.get(i + 1).map_or(self.end, |n| n.first_lsn);
        if lsn >= seg_end {
            return None;
        }
        let end_off = s.offset_of(seg_end).min(s.seg.len());
        // SAFETY: as in `Iter::enter_segment`: the bytes lie below the
        // snapshot's end, so they were published (or validated from a
        // private copy) and never change while the snapshot lives.
        let bytes = unsafe { s.seg.bytes(DATA_START, end_off) };
        let target = (lsn - s.first_lsn) as usize;
        let mut p = 0usize;
        while p < target {
            let len = u32::from_le_bytes(*bytes.get(p..)?.first_chunk::<4>()?) as usize;
            if len < crate::format::frame::MIN_PAYLOAD {
                return None;
            }
            let next = p + len + crate::format::frame::FRAME_OVERHEAD;
            if next > target {
                return Some((s.first_lsn + p as u64, s.first_lsn + next as u64));
            }
            p = next;
        }
        None
    }

    /// Where a read from the caller's position `lsn` begins: the log's
    /// start if `lsn` lies below it, the end if at or past it, else the
    /// first live entry starting at or after `lsn` (a position inside an
    /// entry moves to the next entry; one in a range a truncation deleted,
    /// to the record that ends the range).
    pub(crate) fn first_entry_at_or_after(&self, lsn: Lsn) -> Lsn {
        if lsn <= self.start {
            return self.start;
        }
        if lsn >= self.end {
            return self.end;
        }
        let next = self.next_entry_at_or_after(lsn);
        self.dead.skip(next).max(self.start).min(self.end)
    }

    /// The last position at or before `lsn` (and at or after the start)
    /// where the transactions open are known without reading what lies
    /// before it: the last segment boundary at or before `lsn` where none
    /// is open (the writer and recovery record it, DESIGN.md §9), or the
    /// start, where the open ones are those the purge mark cuts. Usually
    /// less than a segment before `lsn`; further back only while a
    /// transaction stays open across boundaries (one left open by a crash
    /// holds every later boundary until its run begins another).
    pub(crate) fn known_state_at_or_before(&self, lsn: Lsn) -> Lsn {
        let last = self.segs.partition_point(|s| s.first_lsn <= lsn);
        self.segs[..last]
            .iter()
            .rev()
            .find(|s| !s.txn_open)
            .map_or(self.start, |s| s.first_lsn.max(self.start))
    }

    /// The last live Checkpoint in the view, if any: the one a rebuild
    /// from a checkpoint starts at ([`Replayer::from_checkpoint`]).
    ///
    /// The log is read backwards a segment at a time, each segment
    /// forwards: from the newest segment back to the first holding a
    /// Checkpoint, so the cost is the segments written since the last
    /// checkpoint, not the log. A checkpoint deleted by a truncation, or
    /// below the log's start (purged), is not found.
    ///
    /// [`Replayer::from_checkpoint`]: crate::Replayer::from_checkpoint
    ///
    /// ```
    /// use durability::{Config, RunId, Wal};
    /// use uuid::Uuid;
    ///
    /// # fn main() -> durability::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let wal = Wal::open(dir.path(), Config::default().segment_size(1 << 20))?;
    /// let run = RunId::new();
    /// assert!(wal.snapshot().last_checkpoint()?.is_none());
    ///
    /// wal.checkpoint(Uuid::from_u128(1), 1, &[run])?;
    /// let pos = wal.checkpoint(Uuid::from_u128(2), 2, &[])?;
    /// let cp = wal.snapshot().last_checkpoint()?.expect("a checkpoint");
    /// assert_eq!((cp.lsn, cp.snapshot_id, cp.version), (pos.lsn, Uuid::from_u128(2), 2));
    /// assert!(cp.active_runs.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn last_checkpoint(&self) -> Result<Option<Checkpoint>> {
        for (i, s) in self.segs.iter().enumerate().rev() {
            let lo = s.first_lsn.max(self.start);
            let hi = self.segs.get(i + 1).map_or(self.end, |n| n.first_lsn);
            let mut found = None;
            if lo < hi {
                for e in self.iter_from(lo)? {
                    let e = e?;
                    if e.lsn >= hi {
                        break;
                    }
                    if e.entry.is_checkpoint() {
                        found = Some(e);
                    }
                }
            }
            if let Some(e) = found {
                return Ok(Some(Checkpoint {
                    lsn: e.lsn,
                    snapshot_id: e.entry.snapshot_id().unwrap_or_default(),
                    version: e.entry.version().unwrap_or(0),
                    active_runs: e.entry.active_runs().to_vec(),
                }));
            }
            if s.first_lsn <= self.start {
                break;
            }
        }
        Ok(None)
    }

    /// The entry at `lsn`. An entry deleted by a truncation is not there.
    pub fn read_at(&self, lsn: Lsn) -> Result<LogEntry<'_>> {
        if lsn < self.start && lsn < self.purge.mark {
            return Err(self.purged(lsn));
        }
        if self.dead.covers(lsn) {
            return Err(Error::BadLsn {
                lsn,
                detail: "deleted by a truncation".into(),
            });
        }
        match self.iter_from(lsn)?.next() {
            Some(r) => r,
            None => Err(Error::BadLsn {
                lsn,
                detail: "at the end of the log".into(),
            }),
        }
    }
}

/// The entries of a [`Snapshot`], in log order.
pub struct Iter<'a> {
    snap: &'a Snapshot,
    seg: usize,
    lsn: Lsn,
    end: Lsn,
    done: bool,
    /// The current segment's frames, `[DATA_START, end)` of the file, and
    /// the LSN of their first byte.
    cur: &'a [u8],
    cur_lsn: Lsn,
    cur_seq: u64,
    /// The start of the next deleted range: below it, no check.
    next_dead: Lsn,
    /// Deleted entries are yielded too ([`Snapshot::iter_all`]).
    all: bool,
    /// `lsn` is a position the caller gave, not yet known to start a
    /// frame: if the first decode fails there, it says whether it is a
    /// misplaced position ([`Error::BadLsn`]) or damage.
    unproven: bool,
    /// The frames of `cur` ahead whose CRCs were checked together.
    ahead: Ahead,
}

impl<'a> Iter<'a> {
    /// Yields entries deleted by truncations too.
    pub(crate) fn include_deleted(&mut self) {
        self.next_dead = Lsn::MAX;
        self.all = true;
    }

    fn new(snap: &'a Snapshot, seg: usize, lsn: Lsn) -> Self {
        Iter {
            snap,
            seg,
            lsn,
            end: snap.end,
            done: false,
            cur: &[],
            cur_lsn: lsn,
            cur_seq: 0,
            next_dead: snap.dead.next_start(lsn),
            all: false,
            unproven: false,
            ahead: Ahead::default(),
        }
    }

    /// Steps over the deleted range at `self.lsn` (to its truncation
    /// record, which is not deleted).
    #[cold]
    fn skip_dead(&mut self) {
        if self.all {
            self.next_dead = Lsn::MAX;
            return;
        }
        let to = self.snap.dead.skip(self.lsn);
        if to != self.lsn {
            // A truncation record starts there.
            self.unproven = false;
        }
        self.lsn = to;
        self.next_dead = self.snap.dead.next_start(self.lsn);
    }

    /// Moves to the segment holding `self.lsn`; false past the last.
    #[cold]
    fn enter_segment(&mut self) -> bool {
        let segs = &self.snap.segs;
        loop {
            let Some(sref) = segs.get(self.seg) else {
                return false;
            };
            let seg_end = segs.get(self.seg + 1).map_or(self.end, |n| n.first_lsn);
            if self.lsn < seg_end && self.lsn >= sref.first_lsn {
                let end_off = sref.offset_of(seg_end).min(sref.seg.len());
                // SAFETY: everything in [DATA_START, end_off) lies below the
                // snapshot's end, so it was published (or, for a read-only
                // open, validated from a private copy and so was complete);
                // the writer never writes there again, so these bytes do not
                // change while the snapshot (which keeps the mapping alive)
                // is borrowed. The header page is not borrowed: the sync path
                // may still write it.
                self.cur = unsafe { sref.seg.bytes(DATA_START, end_off) };
                self.cur_lsn = sref.first_lsn;
                self.cur_seq = sref.seg.seq();
                self.ahead.reset();
                return true;
            }
            self.seg += 1;
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Result<LogEntry<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.lsn >= self.next_dead {
            self.skip_dead();
        }
        if self.done || self.lsn >= self.end {
            return None;
        }
        let mut pos = (self.lsn - self.cur_lsn) as usize;
        if self.lsn < self.cur_lsn || pos >= self.cur.len() {
            if !self.enter_segment() {
                return None;
            }
            pos = (self.lsn - self.cur_lsn) as usize;
        }
        let (salt, cur_lsn) = (self.snap.salt, self.cur_lsn);
        let decoded = self.ahead.decode(&self.snap.decoder, self.cur, pos, |p| {
            header::seed(salt, cur_lsn + p as u64)
        });
        let result = match decoded {
            Ok(Some(frame)) => {
                let e = LogEntry {
                    lsn: self.lsn,
                    segment: self.cur_seq,
                    offset: DATA_START + pos,
                    len: frame.len,
                    entry: frame.entry,
                };
                self.lsn += frame.len as u64;
                self.unproven = false;
                return Some(Ok(e));
            }
            Ok(None) => Err(Error::BadLsn {
                lsn: self.lsn,
                detail: "no entry starts there".into(),
            }),
            Err(e) => Err(e.shifted(DATA_START as u64).in_segment(self.cur_seq)),
        };
        self.done = true;
        if self.unproven {
            if let Some((before, after)) = self.snap.misaligned(self.lsn) {
                // Not damage: a position inside an entry, given by the
                // caller.
                return Some(Err(Error::BadLsn {
                    lsn: self.lsn,
                    detail: format!(
                        "it lies inside the entry at LSN {before}; the next entry starts at LSN {after}"
                    ),
                }));
            }
        }
        Some(result)
    }
}
