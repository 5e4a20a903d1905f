//! Runs: the run index that makes run-scoped replay proportional to the
//! run, the open transactions by replay's rule (and their recount after a
//! truncation), what a replay from a position reads of each run before it
//! (`lead_in`), and run diffs.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::Result;
use crate::format::entry::{EntryKind, RunId};
use crate::format::Lsn;
use crate::read::purge::PurgePoint;
use crate::read::snapshot::{LogEntry, Snapshot};

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

    /// The stretches of `run` that hold an entry starting in `[lo, hi)`,
    /// as `[start, end)` with their true ends, in log order (a stretch that
    /// begins before `lo` is included whole; the caller clips it).
    pub fn stretches_within(&self, run: &RunId, lo: Lsn, hi: Lsn) -> Vec<(Lsn, Lsn)> {
        self.runs
            .get(run)
            .map(|v| self.overlapping(run, v, lo, hi).collect())
            .unwrap_or_default()
    }

    /// Every run's stretches that hold an entry starting in `[lo, hi)`
    /// (see [`RunIndex::stretches_within`]); runs with none are left out.
    /// Costs a binary search per run of the index, and reads no entry.
    pub fn all_within(&self, lo: Lsn, hi: Lsn) -> Vec<(RunId, Vec<(Lsn, Lsn)>)> {
        self.runs
            .iter()
            .filter_map(|(run, v)| {
                let s: Vec<(Lsn, Lsn)> = self.overlapping(run, v, lo, hi).collect();
                (!s.is_empty()).then_some((*run, s))
            })
            .collect()
    }

    /// The stretches of `v` (the stretches of `run`) with an entry starting
    /// in `[lo, hi)`: those that end after `lo` and start before `hi`. The
    /// growing stretch's end is read from `last_end`.
    fn overlapping<'i>(
        &'i self,
        run: &RunId,
        v: &'i [(Lsn, Lsn)],
        lo: Lsn,
        hi: Lsn,
    ) -> impl Iterator<Item = (Lsn, Lsn)> + 'i {
        let growing = self.last_run.as_ref() == Some(run);
        let true_end = move |i: usize, end: Lsn| {
            if growing && i + 1 == v.len() {
                self.last_end.max(end)
            } else {
                end
            }
        };
        // Ends are sorted (stretches are disjoint, in log order); only the
        // growing one may be stale, and it is the last.
        let mut first = v.partition_point(|&(_, end)| end <= lo);
        if first == v.len() && v.last().is_some_and(|&(_, e)| true_end(v.len() - 1, e) > lo) {
            first = v.len() - 1;
        }
        let past = if lo < hi {
            v.partition_point(|&(start, _)| start < hi).max(first)
        } else {
            first
        };
        (first..past).filter_map(move |i| v.get(i).map(|&(s, e)| (s, true_end(i, e))))
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

    /// Each open transaction: its run and txn id.
    pub fn txns(&self) -> impl Iterator<Item = (RunId, u64)> + '_ {
        self.open.iter().map(|(r, &(t, _))| (*r, t))
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

/// Transactions counted by replay's rule ([`OpenTxns`]): what a recovery
/// report says of the live log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TxnCounts {
    /// Ended by their CommitTxn.
    pub committed: u64,
    /// Ended by their AbortTxn.
    pub aborted: u64,
    /// Replaced, still open, by a later BeginTxn of their run.
    pub replaced: u64,
}

impl TxnCounts {
    /// Counts what `event` did.
    #[inline]
    pub fn note(&mut self, event: TxnEvent) {
        match event {
            TxnEvent::Began { replaced: true } => self.replaced += 1,
            TxnEvent::Committed => self.committed += 1,
            TxnEvent::Aborted => self.aborted += 1,
            TxnEvent::Began { replaced: false } | TxnEvent::None => {}
        }
    }
}

impl std::ops::Add for TxnCounts {
    type Output = TxnCounts;
    fn add(self, o: TxnCounts) -> TxnCounts {
        TxnCounts {
            committed: self.committed + o.committed,
            aborted: self.aborted + o.aborted,
            replaced: self.replaced + o.replaced,
        }
    }
}

/// The transactions of a live log after truncations, recomputed from the
/// last segment boundary before the truncated part where none was open.
pub(crate) struct Reopened {
    /// The transactions open at the end.
    pub open: OpenTxns,
    /// Whether one is open at the start of each segment from there on:
    /// `(segment's first LSN, open there)`.
    pub flags: Vec<(Lsn, bool)>,
    /// The index (in the snapshot's segments) of the segment the recount
    /// started at: everything before it is unchanged by the truncation.
    pub first_seg: usize,
    /// What the recount counted, from that segment's start on.
    pub counts: TxnCounts,
}

/// The open transactions of `snap`'s live log, recomputed from the last
/// segment boundary at or before `from` where none was open, whether one
/// is open at the start of each segment from there on, and the
/// transactions ended or replaced from there on.
///
/// A truncation from `from` may delete the CommitTxn or AbortTxn of a
/// transaction begun before `from`, or a BeginTxn that replaced one: that
/// transaction is open again. The boundaries inside the deleted range, and
/// the open set appended after the record, must say so, or retention would
/// cut through it (DESIGN.md §10); and a count of what the log holds must
/// not count what was deleted. Only the stretch from the last clean
/// boundary is read (usually less than a segment).
pub(crate) fn reopened_txns(snap: &Snapshot, from: Lsn) -> Result<Reopened> {
    let segs = &snap.segs;
    let i0 = (0..segs.len())
        .rev()
        .find(|&i| segs[i].first_lsn <= from && !segs[i].txn_open)
        .unwrap_or(0);
    let mut open = OpenTxns::default();
    let mut counts = TxnCounts::default();
    let mut flags = Vec::new();
    let mut next = i0 + 1;
    // From the first LSN the segments hold, the purge mark
    // notwithstanding: a transaction begun below the mark is open above it
    // by replay's rule, and retention must not cut through it.
    let begin = segs
        .get(i0)
        .map_or(snap.base(), |s| s.first_lsn.max(snap.base()));
    for e in snap.iter_beyond_start(begin)? {
        let e = e?;
        while next < segs.len() && segs[next].first_lsn <= e.lsn {
            flags.push((segs[next].first_lsn, !open.is_empty()));
            next += 1;
        }
        if let Some(run) = e.entry.run_id() {
            counts.note(open.note(e.entry.kind(), run, e.entry.txn_id(), e.lsn));
        }
    }
    for s in &segs[next.min(segs.len())..] {
        flags.push((s.first_lsn, !open.is_empty()));
    }
    Ok(Reopened {
        open,
        flags,
        first_seg: i0,
        counts,
    })
}

/// The purge point at `mark` of `snap`'s log (`mark` a live entry's start,
/// or the end, within the segments of `snap`): the transactions open
/// there, counted from the last segment boundary at or before it where
/// none was open (usually less than a segment is read).
pub(crate) fn purge_point(snap: &Snapshot, mark: Lsn) -> Result<PurgePoint> {
    let segs = &snap.segs;
    let base = snap.base();
    if mark <= base {
        return Ok(PurgePoint::new(mark, Vec::new()));
    }
    let begin = (0..segs.len())
        .rev()
        .find(|&i| segs[i].first_lsn <= mark && !segs[i].txn_open)
        .map_or(base, |i| segs[i].first_lsn.max(base));
    let mut open = OpenTxns::default();
    for e in snap.iter_beyond_start(begin)? {
        let e = e?;
        if e.lsn >= mark {
            break;
        }
        if let Some(run) = e.entry.run_id() {
            open.note(e.entry.kind(), run, e.entry.txn_id(), e.lsn);
        }
    }
    Ok(PurgePoint::new(mark, open.txns().collect()))
}

/// What a replay from `from` must read of `run` before `from`: its entries
/// in `[lo, from)` from its last BeginTxn there on, in log order (`lo`: a
/// position where the open transactions are known,
/// [`Snapshot::known_state_at_or_before`]). `spans` are the run's
/// stretches that hold an entry there ([`RunIndex::stretches_within`]).
///
/// The stretches are read from the last backwards, each forwards, and the
/// walk stops at the first that holds a BeginTxn: that BeginTxn decides
/// the run's state at `from` (replay's rule: a BeginTxn replaces whatever
/// was open), so nothing before it is needed. If none holds one, the run's
/// state at `from` is its state at `lo` changed by these entries: when
/// `seeded` (a transaction of the run is open at `lo`, cut by the purge
/// mark) all of them are returned, so the caller can see whether it ends
/// before `from`; otherwise nothing was open at `lo`, none is at `from`,
/// and nothing is returned.
///
/// Only `run`'s entries are read, and of them only those after its last
/// BeginTxn before `from` (or, without one, those in `[lo, from)`).
pub(crate) fn lead_in<'s>(
    snap: &'s Snapshot,
    run: &RunId,
    spans: &[(Lsn, Lsn)],
    lo: Lsn,
    from: Lsn,
    seeded: bool,
) -> Result<Vec<LogEntry<'s>>> {
    let mut chunks: Vec<Vec<LogEntry<'s>>> = Vec::new();
    let mut begun = false;
    for &(start, end) in spans.iter().rev() {
        let (start, end) = (start.max(lo), end.min(from));
        if start >= end {
            continue;
        }
        let mut chunk = Vec::new();
        for e in snap.iter_from(start)? {
            let e = e?;
            if e.lsn >= end || e.entry.run_id_ref() != Some(run) {
                break;
            }
            chunk.push(e);
        }
        let last_begin = chunk
            .iter()
            .rposition(|e| e.entry.kind() == EntryKind::BeginTxn);
        if let Some(i) = last_begin {
            chunk.drain(..i);
            chunks.push(chunk);
            begun = true;
            break;
        }
        chunks.push(chunk);
    }
    if !begun && !seeded {
        return Ok(Vec::new());
    }
    Ok(chunks.into_iter().rev().flatten().collect())
}
