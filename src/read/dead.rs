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

use crate::format::Lsn;

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
