//! The published-view protocol: the log's segment list and the published
//! range `[start, end)`, and how readers take a consistent view of them.
//!
//! One writer at a time (the log's writer lock serialises them) appends
//! bytes past the published end, then [`Published::publish`]es the new end
//! (Release). Before publishing any byte of a new segment it
//! [`Published::push`]es the segment (under the write lock). Retention
//! ([`Published::remove_first`]) drops segments from the front and moves
//! `start`, under the write lock too.
//!
//! A reader's [`Published::view`] clones the segment list and loads `start`
//! and `end` all while holding the read lock. Why the view is consistent
//! (every LSN in `[start, end)` lies in one of its segments):
//!
//! - `end`: if the reader's Acquire load returns an end `e`, the Release
//!   store of `e` happens-before it, and so does every `push` the writer did
//!   before that store, i.e. of every segment holding bytes below `e`. Such a
//!   push's write-locked section cannot come after the reader's read-locked
//!   section (it happens-before a load inside that section), so it came
//!   before, and the clone contains the segment. Loading `end` *after*
//!   releasing the read lock would break this: a rotation could push a
//!   segment and publish bytes in it in between.
//! - `start`: it changes only together with the segment list or the purge
//!   point, under the write lock, so the `start` read under the read lock
//!   matches the list and the purge point of the same view.
//! - the truncation records: a record is added under the write lock before
//!   the publish that makes it visible (the same argument as `end` above:
//!   a view that sees the record's LSN sees the record), and retention
//!   drops records together with the segments they lie in, under the same
//!   write lock. Reading the records under a lock of their own, after the
//!   view, let retention drop records between the two, and a snapshot kept
//!   old segments without their deleted ranges: it yielded deleted entries.
//!
//! This is the protocol the loom models in `loom_tests` check.

use std::sync::Arc;

use crate::read::dead::{Dead, Truncations};
use crate::read::purge::PurgePoint;
use crate::sync::{AtomicU64, Ordering, RwLock};

/// The segments of the log, the published range [start, end), the
/// truncation records (DESIGN.md §10) that delete parts of it, and the purge
/// point (§9). `start` is the logical start: the first segment's first LSN
/// or the purge mark, whichever is later.
pub(crate) struct Published<T> {
    listed: RwLock<Listed<T>>,
    start: AtomicU64,
    end: AtomicU64,
}

/// What changes only under the write lock: the segment list and the
/// truncation records. One lock, so a view never pairs a segment list with
/// records from another moment (retention drops both together).
struct Listed<T> {
    segs: Vec<T>,
    truncations: Truncations,
    purge: Arc<PurgePoint>,
}

/// A consistent view of the log ([`Published::view`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct View<T> {
    /// The first LSN still in the log.
    pub start: u64,
    /// The segments holding `[start, end)`.
    pub segs: Vec<T>,
    /// The published end.
    pub end: u64,
    /// The ranges deleted by the truncation records published below `end`.
    pub dead: Arc<Dead>,
    /// The purge point.
    pub purge: Arc<PurgePoint>,
}

impl<T: Clone> Published<T> {
    /// A log with segments `segs`, the range `[start, end)` published, and
    /// the truncation records `truncations`.
    pub(crate) fn new(segs: Vec<T>, start: u64, end: u64, truncations: Truncations) -> Self {
        debug_assert!(start <= end);
        Published {
            listed: RwLock::new(Listed {
                segs,
                truncations,
                purge: Arc::default(),
            }),
            start: AtomicU64::new(start),
            end: AtomicU64::new(end),
        }
    }

    /// The published end (Acquire). Everything below it is written and
    /// never written again.
    pub(crate) fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// The log's logical start (Acquire): the first LSN a read may return.
    /// Alone it says nothing
    /// about the segment list: use [`Published::view`] for a consistent
    /// pair.
    pub(crate) fn start(&self) -> u64 {
        self.start.load(Ordering::Acquire)
    }

    /// Writer only (one at a time, under the log's writer lock): make bytes
    /// up to `end` visible. Release store. Every segment holding a byte
    /// below `end` must have been [`Published::push`]ed first, and every
    /// truncation record below it [`Published::add_truncation`]ed.
    pub(crate) fn publish(&self, end: u64) {
        debug_assert!(
            end >= self.end.load(Ordering::Relaxed),
            "the end moves forward"
        );
        self.end.store(end, Ordering::Release);
    }

    /// Writer only: add a segment BEFORE publishing any byte in it.
    pub(crate) fn push(&self, seg: T) {
        self.listed.write().segs.push(seg);
    }

    /// Writer only: a truncation record at `at` deletes `[from, at)`;
    /// added BEFORE the publish that makes the record visible.
    pub(crate) fn add_truncation(&self, from: u64, at: u64) {
        self.listed.write().truncations.add(from, at);
    }

    /// Retention: forget the first `n` segments, whose successor starts at
    /// `new_start` (<= the published end), and the truncation records below
    /// it, and move start there unless the purge mark lies beyond,
    /// atomically with respect to [`Published::view`]. Returns the segments
    /// removed, oldest first. Readers that already hold a view keep their
    /// clones.
    pub(crate) fn remove_first(&self, n: usize, new_start: u64) -> Vec<T> {
        let mut listed = self.listed.write();
        debug_assert!(n <= listed.segs.len());
        debug_assert!(new_start <= self.end.load(Ordering::Relaxed));
        let removed: Vec<T> = listed.segs.drain(..n).collect();
        listed.truncations.truncate_before(new_start);
        let mark = listed.purge.mark;
        if new_start >= mark && !listed.purge.cut.is_empty() {
            // No transaction is open at a cut retention makes (§9).
            listed.purge = Arc::new(PurgePoint::new(mark, Vec::new()));
        }
        let start = new_start.max(mark);
        debug_assert!(start >= self.start.load(Ordering::Relaxed));
        self.start.store(start, Ordering::Release);
        removed
    }

    /// Purging: everything below `purge.mark` (<= the published end, and
    /// above the current start) is purged. Atomic with respect to
    /// [`Published::view`]: a view has the new start with the transactions
    /// it cuts, or neither.
    pub(crate) fn set_purge(&self, purge: PurgePoint) {
        let mut listed = self.listed.write();
        debug_assert!(purge.mark <= self.end.load(Ordering::Relaxed));
        let start = self.start.load(Ordering::Relaxed).max(purge.mark);
        listed.purge = Arc::new(purge);
        self.start.store(start, Ordering::Release);
    }

    /// A consistent view: every LSN in `[start, end)` lies in one of its
    /// segments, and its deleted ranges are exactly those of the records
    /// published below `end` and not dropped by retention before `start`.
    /// Takes everything while holding the read lock (end with Acquire): a
    /// segment is pushed, and a record added, under the write lock before
    /// any byte they concern is published, so an end read under the read
    /// lock never points past what the same section sees.
    pub(crate) fn view(&self) -> View<T> {
        let listed = self.listed.read();
        let start = self.start.load(Ordering::Acquire);
        let end = self.end.load(Ordering::Acquire);
        View {
            start,
            segs: listed.segs.clone(),
            end,
            dead: listed.truncations.visible(end),
            purge: Arc::clone(&listed.purge),
        }
    }

    /// Number of segments.
    pub(crate) fn len(&self) -> usize {
        self.listed.read().segs.len()
    }

    /// Runs `f` on the segment list under the read lock. `f` must not call
    /// back into this `Published` for a write (`push`, `remove_first`): that
    /// would deadlock.
    pub(crate) fn with_segs<R>(&self, f: impl FnOnce(&[T]) -> R) -> R {
        f(&self.listed.read().segs)
    }

    /// Changes the segments' bookkeeping in place (not their set, nor the
    /// range): under the write lock, so a view sees before or after.
    pub(crate) fn with_segs_mut<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> R {
        f(&mut self.listed.write().segs)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn push_publish_retain_view() {
        let p = Published::new(vec![(0u64, 4u64)], 0, 0, Truncations::default());
        let v = p.view();
        assert_eq!((v.start, v.segs, v.end), (0, vec![(0, 4)], 0));
        p.publish(2);
        p.add_truncation(1, 2);
        p.publish(3);
        p.push((3, 4));
        p.publish(6);
        assert_eq!((p.start(), p.end(), p.len()), (0, 6, 2));
        assert_eq!(p.view().dead.ranges(), &[(1, 2)]);
        assert_eq!(p.remove_first(1, 3), vec![(0, 4)]);
        let v = p.view();
        assert_eq!((v.start, v.segs, v.end), (3, vec![(3, 4)], 6));
        assert!(v.dead.ranges().is_empty());
        assert_eq!(p.with_segs(|s| s.to_vec()), vec![(3, 4)]);
    }
}
