//! Loom models: Published view

#![allow(unused_imports)]

use std::io;

use loom::thread;

use super::model;
use crate::error::Error;
use crate::log::commit::DurableNotify;
use crate::log::group::{GroupCommit, Ticker};
use crate::log::notify::{TailNotify, WaitOutcome};
use crate::log::prefault::Prefault;
use crate::log::publish::{Published, View};
use crate::read::dead::Truncations;
use crate::recovery::pool::{Ordered, Taken};
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};

// ---------------------------------------------------------------------------
// Published view

/// A segment of the model: `(first_lsn, capacity)`.
type Seg = (u64, u64);

/// Checks one view: start <= end, every LSN in [start, end) lies in one
/// of the view's segments, and every LSN of it that a truncation record
/// published in the view deletes (`records`: `(from, at)`) is dead in it.
fn check_view(v: &View<Seg>, records: &[(u64, u64)]) {
    let (start, segs, end) = (v.start, &v.segs, v.end);
    assert!(start <= end, "start {start} > end {end}");
    for &(from, at) in records.iter().filter(|&&(_, at)| at < end) {
        for lsn in from.max(start)..at {
            assert!(
                v.dead.covers(lsn),
                "LSN {lsn} deleted by the record at {at} is live in view [{start}, {end}) {:?}",
                v.dead.ranges()
            );
        }
    }
    for lsn in start..end {
        assert!(
            segs.iter()
                .any(|&(first, cap)| first <= lsn && lsn < first + cap),
            "LSN {lsn} of view [{start}, {end}) in none of {segs:?}"
        );
    }
}

/// The log of the model: the published view, and how far the writer has
/// written the bytes (a Relaxed atomic standing for the mapped bytes, which
/// are plain memory: only the publish/view Release/Acquire pair orders
/// them).
struct ViewLog {
    p: Published<Seg>,
    written: AtomicU64,
}

impl ViewLog {
    /// The writer writes bytes up to `end`, then publishes them.
    fn append(&self, end: u64) {
        self.written.store(end, Ordering::Relaxed);
        self.p.publish(end);
    }

    /// Every byte below a published end is visible to whoever read it.
    fn check_written(&self, end: u64) {
        let written = self.written.load(Ordering::Relaxed);
        assert!(
            written >= end,
            "end {end} published but only {written} visible"
        );
    }
}

/// A writer fills a segment, rotates (push, then publish into the new
/// segment), fills it, retains (drops the first segment), rotates again;
/// a reader takes views meanwhile. Every view is consistent, its bytes are
/// visible, and a reader's starts and ends never go back.
#[test]
fn loom_published_views() {
    model(Some(3), || {
        let log = Arc::new(ViewLog {
            p: Published::new(vec![(0u64, 4u64)], 0, 0, Truncations::default()),
            written: AtomicU64::new(0),
        });
        let writer = {
            let log = log.clone();
            thread::spawn(move || {
                log.append(2);
                log.p.push((4, 4));
                log.append(6);
                log.append(8);
                let removed = log.p.remove_first(1, 4);
                assert_eq!(removed, vec![(0, 4)]);
                log.p.push((8, 4));
                log.append(10);
            })
        };
        let reader = {
            let log = log.clone();
            thread::spawn(move || {
                let mut last = (0, 0);
                for _ in 0..3 {
                    let v = log.p.view();
                    check_view(&v, &[]);
                    log.check_written(v.end);
                    assert!(v.start >= last.0 && v.end >= last.1, "view went back");
                    last = (v.start, v.end);
                }
            })
        };
        // A second reader through the other entry points. Segments are only
        // appended or dropped from the front, so the segments' reach only
        // grows and may be read after the end.
        let end = log.p.end();
        log.check_written(end);
        let reach = log
            .p
            .with_segs(|segs| segs.iter().map(|&(f, c)| f + c).max().unwrap_or(0));
        assert!(reach >= end, "end {end} past the segments ({reach})");
        writer.join().unwrap();
        reader.join().unwrap();
        let v = log.p.view();
        check_view(&v, &[]);
        assert_eq!((v.start, v.segs, v.end), (4, vec![(4, 4), (8, 4)], 10));
        assert_eq!(log.p.len(), 2);
        assert_eq!(log.p.start(), 4);
    });
}

/// Snapshots against retention and truncation: the writer appends two
/// entries, truncates the second (a record at 2 deleting [1, 2)), fills the
/// segment, rotates, and retention drops the first segment (and with it
/// the record, which lies below the new start) while a reader takes views.
/// Every view that holds the record's LSN range holds its deleted range:
/// never the old segments with the records already dropped (a snapshot
/// that read the records apart from the segments yielded deleted entries).
#[test]
fn loom_views_race_retention_and_truncation() {
    model(Some(3), || {
        let log = Arc::new(ViewLog {
            p: Published::new(vec![(0u64, 4u64)], 0, 0, Truncations::default()),
            written: AtomicU64::new(0),
        });
        let records = [(1u64, 2u64)];
        let writer = {
            let log = log.clone();
            thread::spawn(move || {
                log.append(2);
                log.p.add_truncation(1, 2);
                log.append(3);
                log.append(4);
                log.p.push((4, 4));
                log.append(6);
                log.p.remove_first(1, 4);
            })
        };
        for _ in 0..2 {
            let v = log.p.view();
            check_view(&v, &records);
            log.check_written(v.end);
        }
        writer.join().unwrap();
        let v = log.p.view();
        check_view(&v, &records);
        assert_eq!((v.start, v.end), (4, 6));
        assert!(
            v.dead.ranges().is_empty(),
            "a record below the start is kept"
        );
    });
}
