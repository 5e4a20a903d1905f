//! Loom models: Group commit

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
// Group commit

/// A disk that records the ranges synced to it and checks that no two syncs
/// overlap in time.
struct Disk {
    initial: u64,
    /// Syncs running right now.
    running: AtomicUsize,
    /// Calls so far.
    calls: AtomicUsize,
    /// Fail the next call (then clear).
    fail_next: AtomicBool,
    /// Completed (successful) syncs, in order.
    ranges: Mutex<Vec<(u64, u64)>>,
}

impl Disk {
    fn new(initial: u64, fail_first: bool) -> Self {
        Disk {
            initial,
            running: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            fail_next: AtomicBool::new(fail_first),
            ranges: Mutex::new(Vec::new()),
        }
    }

    /// The sync closure given to `GroupCommit::sync_to`.
    fn sync(&self, published: &AtomicU64, from: u64, to: u64) -> io::Result<()> {
        assert_eq!(
            self.running.fetch_add(1, Ordering::SeqCst),
            0,
            "two syncs ran at once"
        );
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert!(from < to, "empty sync {from}..{to}");
        assert!(
            to <= published.load(Ordering::SeqCst),
            "synced unpublished bytes: {from}..{to}"
        );
        let result = if self.fail_next.swap(false, Ordering::SeqCst) {
            Err(io::Error::other("injected sync failure"))
        } else {
            self.ranges.lock().push((from, to));
            Ok(())
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// The end of the contiguous durable prefix: checks that the completed
    /// syncs are contiguous and increasing from `initial`.
    fn durable(&self) -> u64 {
        let ranges = self.ranges.lock();
        let mut end = self.initial;
        for &(from, to) in ranges.iter() {
            assert_eq!(from, end, "syncs not contiguous: {:?}", *ranges);
            assert!(to > from, "syncs not increasing: {:?}", *ranges);
            end = to;
        }
        end
    }
}

/// One appender: publishes `target` (the log's appends publish before they
/// sync), then syncs to it. Returns what `sync_to` returned, after checking
/// that an `Ok` is backed by the group commit's counter and by completed
/// syncs.
fn append_and_sync(
    gc: &GroupCommit,
    published: &AtomicU64,
    disk: &Disk,
    target: u64,
    appender: bool,
) -> Result<(), String> {
    // An appender is counted from before it publishes until it returns, as
    // the log's Strict appends are; its leader absorbs the others.
    let _committer = appender.then(|| gc.committer());
    published.fetch_max(target, Ordering::SeqCst);
    let r = gc.sync_to(
        target,
        appender,
        || published.load(Ordering::Acquire),
        |from, to| disk.sync(published, from, to),
    );
    if let Ok(led) = r {
        assert!(gc.synced() >= target, "Ok but synced() < {target}");
        let durable = disk.durable();
        assert!(
            durable >= target,
            "Ok for {target} but only {durable} synced"
        );
        if led {
            // A leader that reports a completed sync ran one.
            assert!(
                disk.calls.load(Ordering::SeqCst) > 0,
                "led, yet no sync ran"
            );
        }
    }
    r.map(drop)
}

fn group_commit_model(
    initial: u64,
    targets: &'static [u64],
    preemptions: Option<usize>,
    appender: bool,
) {
    model(preemptions, move || {
        let gc = Arc::new(GroupCommit::new(initial));
        let published = Arc::new(AtomicU64::new(initial));
        let disk = Arc::new(Disk::new(initial, false));
        let threads: Vec<_> = targets
            .iter()
            .map(|&t| {
                let (gc, published, disk) = (gc.clone(), published.clone(), disk.clone());
                thread::spawn(move || {
                    append_and_sync(&gc, &published, &disk, t, appender).expect("sync failed");
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let max = targets
            .iter()
            .copied()
            .max()
            .unwrap_or(initial)
            .max(initial);
        let durable = disk.durable();
        assert!(durable >= max);
        assert!(durable <= published.load(Ordering::SeqCst));
        assert_eq!(gc.synced(), durable);
        assert_eq!(gc.syncs() as usize, disk.ranges.lock().len());
        assert!(gc.poison().is_none());
        // Nobody is left counted as appending or waiting: a count that
        // drifted would make every later leader absorb for nothing.
        assert_eq!(gc.absorb_counts(), (0, 0));
    });
}

/// Two appenders with different targets share syncs: at most one sync at a
/// time, every `Ok` covered by completed contiguous syncs.
#[test]
fn loom_group_commit_two() {
    group_commit_model(0, &[3, 5], None, false);
}

/// Two appenders counted as committers: a leader absorbs (yields while the
/// other is between entering and waiting) and only then reads how far to
/// sync. Same guarantees, and the counts return to zero.
#[test]
fn loom_group_commit_absorbing_two() {
    group_commit_model(0, &[3, 5], None, true);
}

/// Three absorbing appenders, one target already durable.
#[test]
fn loom_group_commit_absorbing_three() {
    group_commit_model(2, &[2, 4, 6], Some(3), true);
}

/// Three appenders, one of whose targets is already durable.
#[test]
fn loom_group_commit_three() {
    group_commit_model(2, &[2, 4, 6], Some(3), false);
}

/// The first sync fails: it poisons the log. Nobody gets `Ok` for a target
/// not covered, nobody gets `Ok` after an `Err` (poisoning is sticky), and
/// no sync runs after the failed one.
#[test]
fn loom_group_commit_failure_poisons() {
    model(None, || {
        let gc = Arc::new(GroupCommit::new(0));
        let published = Arc::new(AtomicU64::new(0));
        let disk = Arc::new(Disk::new(0, true));
        let threads: Vec<_> = [3, 5]
            .into_iter()
            .map(|t| {
                let (gc, published, disk) = (gc.clone(), published.clone(), disk.clone());
                thread::spawn(move || {
                    let first = append_and_sync(&gc, &published, &disk, t, false);
                    let again = append_and_sync(&gc, &published, &disk, t, false);
                    if first.is_err() {
                        assert!(again.is_err(), "Ok after Err");
                    }
                    first.is_err() || again.is_err()
                })
            })
            .collect();
        let errs: Vec<bool> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        // The only sync that ever runs is the failing one.
        assert_eq!(disk.calls.load(Ordering::SeqCst), 1);
        assert!(disk.ranges.lock().is_empty());
        assert!(errs.iter().all(|&e| e), "a caller never saw the failure");
        assert!(gc.poison().is_some());
        assert_eq!(gc.synced(), 0);
        assert!(append_and_sync(&gc, &published, &disk, 1, false).is_err());
        assert_eq!(disk.calls.load(Ordering::SeqCst), 1);
    });
}

/// `set_poison` (a write path failed) racing an appender's sync and a
/// waiter: nobody deadlocks, every `Ok` is covered, and after the poisoner
/// returns every call fails.
#[test]
fn loom_group_commit_set_poison() {
    model(Some(6), || {
        let gc = Arc::new(GroupCommit::new(0));
        let published = Arc::new(AtomicU64::new(0));
        let disk = Arc::new(Disk::new(0, false));
        let threads: Vec<_> = [2, 4]
            .into_iter()
            .map(|t| {
                let (gc, published, disk) = (gc.clone(), published.clone(), disk.clone());
                thread::spawn(move || {
                    let _ = append_and_sync(&gc, &published, &disk, t, true);
                })
            })
            .collect();
        gc.set_poison("write failed".into());
        assert!(gc.poison().is_some());
        for t in threads {
            t.join().unwrap();
        }
        let before = disk.calls.load(Ordering::SeqCst);
        assert!(append_and_sync(&gc, &published, &disk, 1, false).is_err());
        assert_eq!(disk.calls.load(Ordering::SeqCst), before);
    });
}

// ---------------------------------------------------------------------------
// Ticker

/// `stop` racing the background thread's wait: the thread always stops
/// (under loom the period is an untimed wait, so a lost stop deadlocks).
#[test]
fn loom_ticker_stop() {
    model(None, || {
        let ticker = Arc::new(Ticker::new());
        let t = {
            let ticker = ticker.clone();
            thread::spawn(move || {
                let mut rounds = 0;
                while ticker.wait(Some(std::time::Duration::from_millis(1))) {
                    rounds += 1;
                    assert!(rounds < 3, "woken without a stop");
                }
            })
        };
        ticker.stop();
        t.join().unwrap();
        assert!(!ticker.wait(None), "a stopped ticker waits");
    });
}
