//! Suffix truncation without rewriting published bytes (DESIGN.md §10).
//!
//! [`Wal::truncate_from`](crate::Wal::truncate_from) appends a
//! [`Truncate`](crate::WalEntry::Truncate) record at LSN `r` naming `from`:
//! every entry in `[from, r)` is deleted. Zero-copy readers may hold borrows
//! of any published byte, so those bytes stay where they are; instead every
//! reader skips the deleted ranges. A record deletes the whole log after
//! `from` as it stood when the record was appended, so ranges nest or
//! follow each other, and recovery rebuilds them by applying the records in
//! log order.

use std::sync::Arc;

use crate::error::Result;
use crate::replay::{Lsn, OpenTxns, Snapshot, TxnEvent};

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
    let begin = segs
        .get(i0)
        .map_or(snap.start, |s| s.first_lsn.max(snap.start));
    for e in snap.iter_from(begin)? {
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

/// The truncation records of a log: `(from, at)` for a record at LSN `at`
/// deleting `[from, at)`, in log order, with the merged deleted ranges.
#[derive(Debug, Clone, Default)]
pub(crate) struct Truncations {
    records: Vec<(Lsn, Lsn)>,
    merged: Arc<Dead>,
}

impl Truncations {
    /// Records the truncation at `at` of `[from, at)`.
    pub fn add(&mut self, from: Lsn, at: Lsn) {
        if from >= at {
            return;
        }
        self.records.push((from, at));
        let mut dead = (*self.merged).clone();
        dead.add(from, at);
        self.merged = Arc::new(dead);
    }

    /// Forgets records retention removed (those before `start`).
    pub fn truncate_before(&mut self, start: Lsn) {
        if self.records.first().is_none_or(|&(_, at)| at >= start) {
            return;
        }
        self.records.retain(|&(_, at)| at >= start);
        self.merged = Arc::new(Dead::from_records(&self.records, Lsn::MAX));
    }

    /// The lowest `from` of the records kept.
    pub fn lowest_from(&self) -> Option<Lsn> {
        self.records.iter().map(|&(from, _)| from).min()
    }

    /// The deleted ranges a reader of the log up to `end` must skip: those
    /// of the records published below `end`.
    pub fn visible(&self, end: Lsn) -> Arc<Dead> {
        match self.records.last() {
            None => Arc::clone(&self.merged),
            Some(&(_, at)) if at < end => Arc::clone(&self.merged),
            Some(_) => Arc::new(Dead::from_records(&self.records, end)),
        }
    }

    /// True if no record is kept.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Deleted LSN ranges, sorted, disjoint and not touching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Dead {
    ranges: Vec<(Lsn, Lsn)>,
}

impl Dead {
    fn from_records(records: &[(Lsn, Lsn)], end: Lsn) -> Dead {
        let mut dead = Dead::default();
        for &(from, at) in records.iter().filter(|&&(_, at)| at < end) {
            dead.add(from, at);
        }
        dead
    }

    /// Deletes `[from, to)`; `to` is past every range already deleted
    /// (records come in log order), so every range from `from` on merges.
    fn add(&mut self, from: Lsn, to: Lsn) {
        let keep = self.ranges.partition_point(|&(_, e)| e < from);
        let start = self.ranges.get(keep).map_or(from, |&(s, _)| s.min(from));
        let end = self.ranges.last().map_or(to, |&(_, e)| e.max(to));
        self.ranges.truncate(keep);
        self.ranges.push((start, end));
    }

    /// The deleted ranges, in order.
    pub fn ranges(&self) -> &[(Lsn, Lsn)] {
        &self.ranges
    }

    /// True if the entry at `lsn` is deleted.
    #[inline]
    pub fn covers(&self, lsn: Lsn) -> bool {
        self.range_at(lsn).is_some()
    }

    fn range_at(&self, lsn: Lsn) -> Option<(Lsn, Lsn)> {
        let i = self.ranges.partition_point(|&(_, e)| e <= lsn);
        self.ranges.get(i).copied().filter(|&(s, _)| s <= lsn)
    }

    /// The start of the deleted range that ends exactly at `lsn` (at a
    /// truncation record), if there is one.
    pub fn start_of_range_ending_at(&self, lsn: Lsn) -> Option<Lsn> {
        let i = self.ranges.partition_point(|&(_, e)| e < lsn);
        self.ranges
            .get(i)
            .filter(|&&(_, e)| e == lsn)
            .map(|&(s, _)| s)
    }

    /// `lsn`, or the end of the deleted range holding it.
    #[inline]
    pub fn skip(&self, lsn: Lsn) -> Lsn {
        self.range_at(lsn).map_or(lsn, |(_, e)| e)
    }

    /// The start of the first deleted range ending after `lsn`
    /// (`Lsn::MAX` if none): an iterator at `lsn` needs no check before it.
    #[inline]
    pub fn next_start(&self, lsn: Lsn) -> Lsn {
        let i = self.ranges.partition_point(|&(_, e)| e <= lsn);
        self.ranges.get(i).map_or(Lsn::MAX, |&(s, _)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_skip() {
        let mut t = Truncations::default();
        t.add(100, 200);
        t.add(300, 400);
        let d = t.visible(u64::MAX);
        assert_eq!(d.ranges(), &[(100, 200), (300, 400)]);
        assert_eq!(d.skip(99), 99);
        assert_eq!(d.skip(100), 200);
        assert_eq!(d.skip(199), 200);
        assert_eq!(d.skip(200), 200);
        assert_eq!(d.next_start(0), 100);
        assert_eq!(d.next_start(200), 300);
        assert_eq!(d.next_start(400), u64::MAX);
        // A record deleting from before both swallows them.
        t.add(150, 500);
        assert_eq!(t.visible(u64::MAX).ranges(), &[(100, 500)]);
        t.add(50, 600);
        assert_eq!(t.visible(u64::MAX).ranges(), &[(50, 600)]);
        // A snapshot ending at 500 sees only the records below it.
        assert_eq!(t.visible(500).ranges(), &[(100, 200), (300, 400)]);
        assert_eq!(t.visible(201).ranges(), &[(100, 200)]);
        assert!(t.visible(200).ranges().is_empty());
        // Retention forgets records below the new start.
        t.truncate_before(450);
        assert_eq!(t.visible(u64::MAX).ranges(), &[(50, 600)]);
        t.truncate_before(601);
        assert!(t.is_empty());
        assert!(t.visible(u64::MAX).ranges().is_empty());
    }

    #[test]
    fn an_empty_range_is_no_record() {
        let mut t = Truncations::default();
        t.add(10, 10);
        assert!(t.is_empty());
    }
}
