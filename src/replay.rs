//! Reading the log: snapshots, the entry iterator, replay of committed
//! transactions (all of them or one run's), run diffs, and the run index
//! that makes run-scoped replay proportional to the run.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::entry::{EntryKind, RunId};
use crate::error::{Error, Result};
use crate::frame::{Ahead, Decoder, EntryRef};
use crate::recovery::SegRef;
use crate::segment::{self, DATA_START};
use crate::truncation::Dead;

/// A log position: the byte offset of an entry in the log's logical stream
/// (all segments' frames end to end). Stable across reopen; see DESIGN.md.
pub type Lsn = u64;

/// A hasher for [`RunId`]s: they are random UUIDs, so folding their bytes
/// is as good as hashing them, and much cheaper.
#[derive(Default)]
pub(crate) struct RunHasher(u64);

impl Hasher for RunHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(b))
                .wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
        }
    }

    #[inline]
    fn write_usize(&mut self, _: usize) {}

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type RunMap<V> = HashMap<RunId, V, BuildHasherDefault<RunHasher>>;

/// For each run, the stretches of its entries: a stretch is a maximal run
/// of consecutive entries of that run (one transaction appended with
/// `append_txn` is one stretch), kept as `[start, end)` LSNs. Replaying one
/// run reads only its stretches; retention forgets the stretches it
/// removed, so a run whose entries are all gone is gone from the index.
#[derive(Default, Debug, Clone)]
pub(crate) struct RunIndex {
    /// The end of the last stretch of `last_run` is stale (it is still
    /// growing); `last_end` is its true end.
    runs: RunMap<Vec<(Lsn, Lsn)>>,
    last_run: Option<RunId>,
    last_end: Lsn,
}

impl RunIndex {
    /// Records the entry at `[lsn, end)` of `run` (`None`: a checkpoint).
    #[inline]
    pub fn note(&mut self, run: Option<RunId>, lsn: Lsn, end: Lsn) {
        match run {
            Some(r) if self.last_run == Some(r) && self.last_end == lsn => {}
            Some(r) => {
                self.close_last();
                self.runs.entry(r).or_default().push((lsn, end));
                self.last_run = Some(r);
            }
            None => {
                self.close_last();
                self.last_run = None;
            }
        }
        self.last_end = end;
    }

    /// Writes the true end into the growing stretch.
    fn close_last(&mut self) {
        if let Some(r) = self.last_run {
            if let Some(last) = self.runs.get_mut(&r).and_then(|v| v.last_mut()) {
                last.1 = self.last_end;
            }
        }
    }

    /// Every run's stretches with their true ends, sorted by run: for
    /// comparing two indexes.
    #[cfg(all(test, not(loom)))]
    pub fn canonical(&self) -> Vec<(RunId, Vec<(Lsn, Lsn)>)> {
        let mut closed = self.clone();
        closed.close_last();
        let mut v: Vec<_> = closed.runs.into_iter().collect();
        v.sort_by_key(|(r, _)| *r.as_bytes());
        v
    }

    /// The stretch starts of `run`.
    pub fn stretches(&self, run: &RunId) -> Vec<Lsn> {
        self.runs
            .get(run)
            .map(|v| v.iter().map(|&(s, _)| s).collect())
            .unwrap_or_default()
    }

    /// Every run with an entry in the log.
    pub fn runs(&self) -> impl Iterator<Item = &RunId> {
        self.runs.keys()
    }

    /// True if `run` has a stretch starting before `to`.
    pub fn touches(&self, run: &RunId, to: Lsn) -> bool {
        self.runs
            .get(run)
            .is_some_and(|s| s.first().is_some_and(|&(first, _)| first < to))
    }

    /// Forgets everything from `from` on (a truncation deleted it).
    pub fn truncate_from(&mut self, from: Lsn) {
        self.close_last();
        self.runs.retain(|_, s| {
            let keep = s.partition_point(|&(start, _)| start < from);
            s.truncate(keep);
            if let Some(last) = s.last_mut() {
                last.1 = last.1.min(from);
            }
            !s.is_empty()
        });
        self.last_run = None;
    }

    /// Forgets everything before `start` (retention removed it): stretches
    /// that ended before it go, one that crosses it now starts there, and a
    /// run left with no stretch goes.
    pub fn truncate_before(&mut self, start: Lsn) {
        self.close_last();
        self.runs.retain(|_, s| {
            let cut = s.partition_point(|&(_, end)| end <= start);
            s.drain(..cut);
            if let Some(first) = s.first_mut() {
                first.0 = first.0.max(start);
            }
            !s.is_empty()
        });
        if self.last_run.is_some_and(|r| !self.runs.contains_key(&r)) {
            self.last_run = None;
        }
    }
}

/// The open transaction of each run, by the rule replay applies: a
/// BeginTxn opens one (and replaces an open one of the same run), the
/// CommitTxn or AbortTxn with its txn id ends it. Retention never cuts the
/// log where a transaction is open (a replay of the rest would deliver its
/// surviving half as standalone writes), so the writer and recovery track
/// it at every segment boundary.
#[derive(Default, Debug, Clone)]
pub(crate) struct OpenTxns {
    /// Each run's open transaction: its txn id and its BeginTxn's LSN.
    open: RunMap<(u64, Lsn)>,
}

/// What one entry did to the open transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnEvent {
    /// Nothing (not a boundary, or an end with no matching open txn).
    None,
    /// A transaction opened; `replaced` if it replaced an open one.
    Began { replaced: bool },
    /// The open transaction committed.
    Committed,
    /// The open transaction aborted.
    Aborted,
}

impl OpenTxns {
    /// Applies entry kind `kind` of `run` with `txn_id`.
    #[inline]
    pub fn note(&mut self, kind: EntryKind, run: RunId, txn_id: Option<u64>, lsn: Lsn) -> TxnEvent {
        match kind {
            EntryKind::BeginTxn => TxnEvent::Began {
                replaced: self.open.insert(run, (txn_id.unwrap_or(0), lsn)).is_some(),
            },
            EntryKind::CommitTxn | EntryKind::AbortTxn => {
                if self.open.is_empty() || self.open.get(&run).map(|o| o.0) != txn_id {
                    return TxnEvent::None;
                }
                self.open.remove(&run);
                if kind == EntryKind::CommitTxn {
                    TxnEvent::Committed
                } else {
                    TxnEvent::Aborted
                }
            }
            _ => TxnEvent::None,
        }
    }

    /// A transaction of `run` was begun and ended in one unit
    /// (`append_txn`): its BeginTxn replaced any open one.
    #[inline]
    pub fn closed_by_unit(&mut self, run: &RunId) {
        if !self.open.is_empty() {
            self.open.remove(run);
        }
    }

    /// A truncation deleted everything from `from`: transactions begun
    /// there are gone (one begun before stays open, its end deleted).
    pub fn truncate_from(&mut self, from: Lsn) {
        self.open.retain(|_, &mut (_, begin)| begin < from);
    }

    /// The open transactions sorted by run: for comparing two sets.
    #[cfg(all(test, not(loom)))]
    pub fn canonical(&self) -> Vec<(RunId, (u64, Lsn))> {
        let mut v: Vec<_> = self.open.iter().map(|(r, o)| (*r, *o)).collect();
        v.sort_by_key(|(r, _)| *r.as_bytes());
        v
    }

    /// True if no transaction is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Open transactions.
    pub fn len(&self) -> usize {
        self.open.len()
    }
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
pub struct Snapshot {
    pub(crate) segs: Vec<SegRef>,
    pub(crate) start: Lsn,
    pub(crate) end: Lsn,
    pub(crate) salt: u32,
    pub(crate) decoder: Decoder,
    /// Ranges deleted by truncation records below `end`: never read.
    pub(crate) dead: Arc<Dead>,
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
    /// The LSN of the first entry in the view.
    pub fn start_lsn(&self) -> Lsn {
        self.start
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
        it.next_dead = Lsn::MAX;
        it.all = true;
        it
    }

    /// The LSN ranges deleted by truncation records in this view
    /// ([`Wal::truncate_from`](crate::Wal::truncate_from)): iteration and
    /// replay skip them.
    pub fn truncated(&self) -> &[(Lsn, Lsn)] {
        self.dead.ranges()
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
        if lsn < self.start || lsn > self.end {
            return Err(Error::BadLsn {
                lsn,
                detail: format!("outside the log's range {}..{}", self.start, self.end),
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
            if len < crate::frame::MIN_PAYLOAD {
                return None;
            }
            let next = p + len + crate::frame::FRAME_OVERHEAD;
            if next > target {
                return Some((s.first_lsn + p as u64, s.first_lsn + next as u64));
            }
            p = next;
        }
        None
    }

    /// The entry at `lsn`. An entry deleted by a truncation is not there.
    pub fn read_at(&self, lsn: Lsn) -> Result<LogEntry<'_>> {
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

    /// Calls `f` with every committed transaction in commit order; see
    /// [`Txn`] for what counts as one.
    pub fn replay<'s>(&'s self, mut f: impl FnMut(&Txn<'_, 's>)) -> Result<ReplayStats> {
        let mut asm = Assembler::default();
        for e in self.iter() {
            asm.feed(e?, &mut f);
        }
        Ok(asm.finish())
    }

    /// Replays only the entries of `run`, reading only its stretches.
    pub(crate) fn replay_stretches<'s>(
        &'s self,
        run: RunId,
        stretches: &[Lsn],
        mut f: impl FnMut(&Txn<'_, 's>),
    ) -> Result<ReplayStats> {
        let mut asm = Assembler::default();
        for &start in stretches {
            if start < self.start || start >= self.end {
                continue;
            }
            for e in self.iter_from(start)? {
                let e = e?;
                if e.entry.run_id_ref() != Some(&run) {
                    break;
                }
                asm.feed(e, &mut f);
            }
        }
        Ok(asm.finish())
    }

    /// The final state of every key `run` touched, from its committed
    /// transactions: `Some(value)`, or `None` if its last change deleted it.
    pub(crate) fn final_state(
        &self,
        run: RunId,
        stretches: &[Lsn],
    ) -> Result<BTreeMap<Vec<u8>, Option<Vec<u8>>>> {
        let mut state: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        self.replay_stretches(run, stretches, |txn| {
            for op in txn.ops {
                if let Some(key) = op.entry.key() {
                    state.insert(key, op.entry.value());
                }
            }
        })?;
        Ok(state
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect())
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
            segment::seed(salt, cur_lsn + p as u64)
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

/// A committed unit delivered by replay.
///
/// A transaction is a BeginTxn, the Writes and Deletes of the same run that
/// follow it, and the CommitTxn with the same txn id. A Write or Delete of a
/// run with no open transaction is delivered as its own unit, with
/// `txn_id: None`. Aborted transactions, and transactions that never
/// committed, are not delivered.
#[derive(Debug, Clone, Copy)]
pub struct Txn<'t, 's> {
    /// The run.
    pub run_id: RunId,
    /// The transaction id; `None` for a standalone write or delete.
    pub txn_id: Option<u64>,
    /// The BeginTxn's timestamp (µs since the epoch); `None` if standalone.
    pub timestamp: Option<u64>,
    /// LSN of the BeginTxn (or of the standalone entry).
    pub begin_lsn: Lsn,
    /// LSN of the CommitTxn (or of the standalone entry).
    pub commit_lsn: Lsn,
    /// The writes and deletes, in order.
    pub ops: &'t [LogEntry<'s>],
}

/// Counts from one replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Entries read.
    pub entries: u64,
    /// Transactions delivered.
    pub committed: u64,
    /// Standalone writes/deletes delivered (not counted in `committed`).
    pub standalone: u64,
    /// Transactions dropped because they aborted.
    pub aborted: u64,
    /// Transactions dropped because they never ended (or a new BeginTxn of
    /// the same run replaced them).
    pub incomplete: u64,
    /// Checkpoints seen.
    pub checkpoints: u64,
}

struct Open<'a> {
    txn_id: u64,
    timestamp: u64,
    begin: Lsn,
    ops: Vec<LogEntry<'a>>,
}

/// Turns entries into committed transactions. Reuses its buffers, so a
/// replay allocates only while transactions grow past sizes seen before.
/// Open transactions are found by run in a hash map: many runs left open by
/// crashes cost nothing per entry.
#[derive(Default)]
struct Assembler<'a> {
    open: RunMap<Open<'a>>,
    pool: Vec<Vec<LogEntry<'a>>>,
    stats: ReplayStats,
}

impl<'a> Assembler<'a> {
    fn recycle(&mut self, o: Open<'a>) {
        let mut ops = o.ops;
        ops.clear();
        self.pool.push(ops);
    }

    #[inline]
    fn feed(&mut self, e: LogEntry<'a>, f: &mut impl FnMut(&Txn<'_, 'a>)) {
        self.stats.entries += 1;
        let entry = e.entry;
        let Some(&run) = entry.run_id_ref() else {
            // A checkpoint, a truncation (whose effect the iterator already
            // applied) or a Raft entry's identity: no run's data.
            if entry.kind() == EntryKind::Checkpoint {
                self.stats.checkpoints += 1;
            }
            return;
        };
        match entry.kind() {
            EntryKind::Write | EntryKind::Delete => {
                if let Some(o) = self.open.get_mut(&run) {
                    o.ops.push(e);
                } else {
                    self.stats.standalone += 1;
                    f(&Txn {
                        run_id: run,
                        txn_id: None,
                        timestamp: None,
                        begin_lsn: e.lsn,
                        commit_lsn: e.lsn,
                        ops: std::slice::from_ref(&e),
                    });
                }
            }
            EntryKind::BeginTxn => {
                let ops = self.pool.pop().unwrap_or_default();
                let new = Open {
                    txn_id: entry.txn_id().unwrap_or(0),
                    timestamp: entry.timestamp().unwrap_or(0),
                    begin: e.lsn,
                    ops,
                };
                if let Some(old) = self.open.insert(run, new) {
                    self.stats.incomplete += 1;
                    self.recycle(old);
                }
            }
            EntryKind::CommitTxn | EntryKind::AbortTxn => {
                let matches = self
                    .open
                    .get(&run)
                    .is_some_and(|o| Some(o.txn_id) == entry.txn_id());
                if !matches {
                    return;
                }
                let Some(o) = self.open.remove(&run) else {
                    return;
                };
                if entry.kind() == EntryKind::CommitTxn {
                    self.stats.committed += 1;
                    f(&Txn {
                        run_id: run,
                        txn_id: Some(o.txn_id),
                        timestamp: Some(o.timestamp),
                        begin_lsn: o.begin,
                        commit_lsn: e.lsn,
                        ops: &o.ops,
                    });
                } else {
                    self.stats.aborted += 1;
                }
                self.recycle(o);
            }
            EntryKind::Checkpoint | EntryKind::Truncate | EntryKind::Raft => {}
        }
    }

    fn finish(mut self) -> ReplayStats {
        self.stats.incomplete += self.open.len() as u64;
        self.stats
    }
}

/// The final state of a key in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum KeyState {
    /// The run never touched the key.
    Absent,
    /// The run's last change deleted it.
    Deleted,
    /// The run's last change set it to this value.
    Value(Vec<u8>),
}

impl KeyState {
    fn value(&self) -> Option<&[u8]> {
        match self {
            KeyState::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// A key whose final state differs between two runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KeyDiff {
    /// The key.
    pub key: Vec<u8>,
    /// Its state in the first run.
    pub a: KeyState,
    /// Its state in the second run.
    pub b: KeyState,
}

/// The keys whose final values differ between two final states, in key
/// order. A key deleted in one run and never written in the other has no
/// value in either, so it is not a difference.
pub(crate) fn diff_states(
    a: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    b: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
) -> Vec<KeyDiff> {
    let state = |m: &BTreeMap<Vec<u8>, Option<Vec<u8>>>, k: &[u8]| match m.get(k) {
        None => KeyState::Absent,
        Some(None) => KeyState::Deleted,
        Some(Some(v)) => KeyState::Value(v.clone()),
    };
    let mut keys: Vec<&Vec<u8>> = a.keys().chain(b.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (sa, sb) = (state(&a, k), state(&b, k));
            (sa.value() != sb.value()).then(|| KeyDiff {
                key: k.clone(),
                a: sa,
                b: sb,
            })
        })
        .collect()
}
