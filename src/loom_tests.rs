//! Loom models of the concurrency core: group commit and the ticker
//! ([`crate::log::group`]), the published-view protocol
//! ([`crate::log::publish`]), the tail wake-up protocol ([`crate::log::notify`]) and
//! the commit-notification protocol ([`crate::log::commit`]'s `DurableNotify`,
//! with its deliverer thread), the ordered job pool of parallel recovery
//! ([`crate::recovery::pool`]) and the prefault claim ([`crate::log::prefault`]).
//! The code explored is the crate's own, built over loom's primitives by
//! the [`crate::sync`] facade.
//!
//! Compiled only with `--cfg loom`:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test --release --lib loom_ -- --test-threads=1
//! ```
//!
//! The small models are explored exhaustively; the larger ones with a
//! preemption bound (overridable with `LOOM_MAX_PREEMPTIONS`) that keeps
//! each within about 15 s in release mode. Timed waits are
//! plain waits under loom (see [`crate::sync`]), so only untimed waits are
//! checked; a deadlock (every thread blocked) fails the model, which is how
//! a lost wake-up shows.

use std::io;

use loom::thread;

use crate::error::Error;
use crate::log::commit::DurableNotify;
use crate::log::group::{GroupCommit, Ticker};
use crate::log::notify::{TailNotify, WaitOutcome};
use crate::log::prefault::Prefault;
use crate::log::publish::{Published, View};
use crate::read::dead::Truncations;
use crate::recovery::pool::{Ordered, Taken};
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};

/// Runs `f` under loom, exploring every execution with at most
/// `preemptions` preemptions (`None`: every execution, no bound), unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise. Prints how many executions it
/// explored (visible with `--nocapture`).
fn model<F>(preemptions: Option<usize>, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    use std::sync::atomic::{AtomicUsize, Ordering};

    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = preemptions;
    }
    let executions = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = executions.clone();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    eprintln!(
        "loom: {} executions, preemption bound {:?}",
        executions.load(Ordering::Relaxed),
        builder.preemption_bound
    );
}

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

// ---------------------------------------------------------------------------
// Tail notification

/// The log's writer side: under the writer lock publish `end` and read
/// `has_waiters`; after releasing it, wake if needed.
fn publish_end(writer: &Mutex<()>, published: &AtomicU64, tn: &TailNotify, end: u64) {
    let wake = {
        let _w = writer.lock();
        published.store(end, Ordering::Release);
        tn.has_waiters()
    };
    if wake {
        tn.wake();
    }
}

/// A publisher publishes twice; a waiter with no deadline waits for the
/// second end. A lost wake-up leaves the waiter blocked forever, which loom
/// reports as a deadlock.
#[test]
fn loom_tail_wakeup() {
    model(None, || {
        let writer = Arc::new(Mutex::new(()));
        let published = Arc::new(AtomicU64::new(0));
        let tn = Arc::new(TailNotify::new());
        let waiter = {
            let (writer, published, tn) = (writer.clone(), published.clone(), tn.clone());
            thread::spawn(move || {
                let r = tn.wait(&writer, || published.load(Ordering::Acquire) >= 2, None);
                assert_eq!(r, WaitOutcome::Ready);
                assert!(published.load(Ordering::Acquire) >= 2);
            })
        };
        publish_end(&writer, &published, &tn, 1);
        publish_end(&writer, &published, &tn, 2);
        waiter.join().unwrap();
        assert!(!tn.has_waiters(), "a waiter stayed registered");
    });
}

/// Two waiters for different ends and one publisher: neither misses its
/// wake-up (registrations and deregistrations interleave).
#[test]
fn loom_tail_two_waiters() {
    model(Some(4), || {
        let writer = Arc::new(Mutex::new(()));
        let published = Arc::new(AtomicU64::new(0));
        let tn = Arc::new(TailNotify::new());
        let waiters: Vec<_> = [1, 2]
            .into_iter()
            .map(|x| {
                let (writer, published, tn) = (writer.clone(), published.clone(), tn.clone());
                thread::spawn(move || {
                    let r = tn.wait(&writer, || published.load(Ordering::Acquire) >= x, None);
                    assert_eq!(r, WaitOutcome::Ready);
                })
            })
            .collect();
        publish_end(&writer, &published, &tn, 1);
        publish_end(&writer, &published, &tn, 2);
        for w in waiters {
            w.join().unwrap();
        }
        assert!(!tn.has_waiters());
    });
}

/// `close` racing a waiter whose condition never holds: the waiter returns
/// `Closed` (never blocks forever), and later waits return at once.
#[test]
fn loom_tail_close() {
    model(None, || {
        let writer = Arc::new(Mutex::new(()));
        let tn = Arc::new(TailNotify::new());
        let waiter = {
            let (writer, tn) = (writer.clone(), tn.clone());
            thread::spawn(move || {
                assert_eq!(tn.wait(&writer, || false, None), WaitOutcome::Closed);
            })
        };
        tn.close();
        assert!(tn.is_closed());
        waiter.join().unwrap();
        assert_eq!(tn.wait(&writer, || false, None), WaitOutcome::Closed);
        assert_eq!(tn.wait(&writer, || true, None), WaitOutcome::Ready);
    });
}

/// A publish and a close racing a waiter for the published end: the waiter
/// returns `Ready` or `Closed`, and `Closed` only if it was closed.
#[test]
fn loom_tail_publish_and_close() {
    model(Some(6), || {
        let writer = Arc::new(Mutex::new(()));
        let published = Arc::new(AtomicU64::new(0));
        let tn = Arc::new(TailNotify::new());
        let waiter = {
            let (writer, published, tn) = (writer.clone(), published.clone(), tn.clone());
            thread::spawn(move || {
                match tn.wait(&writer, || published.load(Ordering::Acquire) >= 1, None) {
                    WaitOutcome::Ready => assert!(published.load(Ordering::Acquire) >= 1),
                    WaitOutcome::Closed => assert!(tn.is_closed()),
                    WaitOutcome::TimedOut => panic!("timed out without a deadline"),
                }
            })
        };
        let publisher = {
            let (writer, published, tn) = (writer.clone(), published.clone(), tn.clone());
            thread::spawn(move || publish_end(&writer, &published, &tn, 1))
        };
        tn.close();
        publisher.join().unwrap();
        waiter.join().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Commit notification

/// How a callback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Poisoned,
    Closed,
}

/// One callback run: (LSN, the model's registration number, outcome).
type Ran = (u64, usize, Outcome);

/// The log's side of commit notification: the real `DurableNotify` with
/// its deliverer on a thread of its own (`wal-notify`), and a small group
/// commit standing for `GroupCommit` (its durable end is stored with
/// `Release` under its lock and read with `Acquire`, as
/// `GroupCommit::synced` is; a failure poisons it for good; the leader of
/// a completed sync wakes the deliverer after storing the end).
///
/// The callbacks' bookkeeping must neither hide a bug nor escape the
/// search: `running` and `order` are loom atomics used only with `Relaxed`
/// read-modify-writes, so loom explores their relative order (partial-order
/// reduction only reorders operations it sees) but they add no
/// happens-before edge; the record itself is a `std` mutex, never held
/// across a loom operation, read in `order`'s order.
struct Commits {
    notify: DurableNotify,
    /// The group commit's lock: (durable end, poisoned).
    group: Mutex<(u64, bool)>,
    /// The durable end, as `GroupCommit::synced` reads it.
    synced: AtomicU64,
    /// Set before any waiter is failed (poison or close).
    failing: AtomicBool,
    /// Callbacks running now.
    running: AtomicUsize,
    /// Callbacks started so far.
    order: AtomicUsize,
    ran: std::sync::Mutex<Vec<(usize, Ran)>>,
}

impl Commits {
    /// The log and its deliverer thread (join it after `close`).
    fn new() -> (Arc<Self>, thread::JoinHandle<()>) {
        let c = Arc::new(Commits {
            notify: DurableNotify::default(),
            group: Mutex::new((0, false)),
            synced: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            order: AtomicUsize::new(0),
            ran: std::sync::Mutex::new(Vec::new()),
        });
        let deliverer = {
            let c = c.clone();
            thread::spawn(move || c.notify.run(|| c.synced()))
        };
        (c, deliverer)
    }

    fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// `Wal::on_durable(lsn, ..)`, as the model's registration `id`, with
    /// `then` run by the callback after its checks. The callback checks
    /// that an `Ok` is never early (the durable end its thread sees covers
    /// `lsn`), that an `Err` follows a failure, and that no two callbacks
    /// overlap.
    fn register_then(c: &Arc<Self>, lsn: u64, id: usize, then: impl FnOnce() + Send + 'static) {
        let me = Arc::clone(c);
        let callback = Box::new(move |r: crate::error::Result<()>| {
            let seq = me.order.fetch_add(1, Ordering::Relaxed);
            let before = me.running.fetch_add(1, Ordering::Relaxed);
            assert!(before == 0, "two callbacks overlap");
            let outcome = match r {
                Ok(()) => {
                    let synced = me.synced();
                    assert!(synced >= lsn, "Ok for {lsn} with only {synced} durable");
                    Outcome::Ok
                }
                Err(e) => {
                    assert!(me.failing.load(Ordering::SeqCst), "Err without a failure");
                    match e {
                        Error::Poisoned { .. } => Outcome::Poisoned,
                        Error::Closed => Outcome::Closed,
                        e => panic!("unexpected error {e}"),
                    }
                }
            };
            me.ran.lock().unwrap().push((seq, (lsn, id, outcome)));
            me.running.fetch_sub(1, Ordering::Relaxed);
            then();
        });
        c.notify.register(lsn, callback);
    }

    fn register(c: &Arc<Self>, lsn: u64, id: usize) {
        Self::register_then(c, lsn, id, || {});
    }

    /// `Shared::sync_to` as the leader of a sync to `to`: the sync
    /// completes and wakes the deliverer, or (the group commit is
    /// poisoned) fails and poisons the waiters.
    fn sync(&self, to: u64) {
        let ok = {
            let mut g = self.group.lock();
            if !g.1 {
                g.0 = g.0.max(to);
                self.synced.store(g.0, Ordering::Release);
            }
            !g.1
        };
        if ok {
            self.notify.synced();
        } else {
            self.notify.poison("sync failed".into());
        }
    }

    /// A sync fails: it poisons the group commit (no sync completes after
    /// it), then the waiters.
    fn fail_sync(&self) {
        {
            let mut g = self.group.lock();
            g.1 = true;
            self.failing.store(true, Ordering::SeqCst);
        }
        self.notify.poison("sync failed".into());
    }

    /// `Wal::close` after its final sync.
    fn close(&self) {
        self.failing.store(true, Ordering::SeqCst);
        self.notify.close();
    }

    /// The callbacks run so far, in the order they started.
    fn ran(&self) -> Vec<Ran> {
        let mut ran = self.ran.lock().unwrap().clone();
        ran.sort_unstable_by_key(|&(seq, _)| seq);
        ran.into_iter().map(|(_, r)| r).collect()
    }

    /// Every registration in `0..n` ran exactly once.
    fn check_once(&self, n: usize) -> Vec<Ran> {
        let ran = self.ran();
        let mut ids: Vec<usize> = ran.iter().map(|r| r.1).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..n).collect::<Vec<_>>(), "not exactly once: {ran:?}");
        ran
    }
}

/// A sync covering LSN 2 completes and wakes the deliverer while a waiter
/// for 2 registers: the callback runs exactly once, with `Ok`, never before
/// the durable end covers 2, and only on the deliverer's thread. A waiter
/// past the end waits until `close`, after which the deliverer stops.
#[test]
fn loom_durable_register_races_sync() {
    model(None, || {
        let (c, deliverer) = Commits::new();
        let syncer = {
            let c = c.clone();
            thread::spawn(move || c.sync(2))
        };
        Commits::register(&c, 2, 0);
        syncer.join().unwrap();
        Commits::register(&c, 3, 1);
        c.close();
        deliverer.join().unwrap();
        let ran = c.check_once(2);
        assert_eq!(ran, vec![(2, 0, Outcome::Ok), (3, 1, Outcome::Closed)]);
    });
}

/// Five waiters (two for the same LSN), then two syncs, to 2 and to 3, on
/// two threads, while a sixth waiter (for 2) registers: every covered
/// callback runs exactly once, with `Ok`, none early, never two at a time,
/// and those registered before the syncs in (LSN, registration) order; the
/// one past the end gets `Closed` at close.
#[test]
fn loom_durable_two_syncs() {
    model(Some(3), || {
        let (c, deliverer) = Commits::new();
        for (id, lsn) in [1, 2, 3, 3, 4].into_iter().enumerate() {
            Commits::register(&c, lsn, id);
        }
        let syncers: Vec<_> = [2, 3]
            .into_iter()
            .map(|to| {
                let c = c.clone();
                thread::spawn(move || c.sync(to))
            })
            .collect();
        Commits::register(&c, 2, 5);
        for s in syncers {
            s.join().unwrap();
        }
        c.close();
        deliverer.join().unwrap();
        let ran = c.check_once(6);
        assert!(ran.contains(&(2, 5, Outcome::Ok)), "{ran:?}");
        let first: Vec<Ran> = ran.into_iter().filter(|r| r.1 != 5).collect();
        let ok = |lsn, id| (lsn, id, Outcome::Ok);
        assert_eq!(
            first,
            vec![
                ok(1, 0),
                ok(2, 1),
                ok(3, 2),
                ok(3, 3),
                (4, 4, Outcome::Closed)
            ]
        );
    });
}

/// A failed sync's `poison` racing a sync to 2 (which completes only if it
/// takes the group commit's lock first) and a registration for 2, with
/// waiters for 1 and 3 already registered: every callback runs exactly
/// once; `Ok` only for a waiter the completed sync covered (3 never is),
/// otherwise `Poisoned`, and every covered one `Ok`; failures, like
/// successes, run one at a time, in LSN order among the waiters pending
/// together; and a waiter registered afterwards gets `Ok` if it is
/// durable, else fails.
#[test]
fn loom_durable_poison_races() {
    model(Some(3), || {
        let (c, deliverer) = Commits::new();
        Commits::register(&c, 1, 0);
        Commits::register(&c, 3, 1);
        let syncer = {
            let c = c.clone();
            thread::spawn(move || c.sync(2))
        };
        let failer = {
            let c = c.clone();
            thread::spawn(move || c.fail_sync())
        };
        Commits::register(&c, 2, 2);
        syncer.join().unwrap();
        failer.join().unwrap();
        Commits::register(&c, 1, 3);
        c.close();
        deliverer.join().unwrap();
        let ran = c.check_once(4);
        for &(lsn, _, outcome) in &ran {
            assert!(outcome != Outcome::Closed, "closed: {ran:?}");
            if lsn > c.synced() {
                assert_eq!(outcome, Outcome::Poisoned, "{ran:?}");
            } else {
                assert_eq!(outcome, Outcome::Ok, "a durable waiter failed: {ran:?}");
            }
        }
        // The two waiters registered before the race run in LSN order (the
        // third, registered during it, may come after a failure of 3 if
        // it was already durable then).
        let pos = |id| ran.iter().position(|r| r.1 == id).unwrap();
        assert!(pos(0) < pos(1), "out of LSN order: {ran:?}");
    });
}

/// A callback closes the log (drops its last handle) while a sync races it
/// and a waiter past the end is pending: the close neither deadlocks nor
/// strands anyone. The waiter gets `Closed`, the deliverer stops after the
/// callback returns, and a registration after that fails at once.
#[test]
fn loom_durable_a_callback_closes_the_log() {
    model(None, || {
        let (c, deliverer) = Commits::new();
        let closer = c.clone();
        Commits::register_then(&c, 1, 0, move || closer.close());
        Commits::register(&c, 5, 1);
        let syncer = {
            let c = c.clone();
            thread::spawn(move || c.sync(2))
        };
        syncer.join().unwrap();
        deliverer.join().unwrap();
        let ran = c.check_once(2);
        assert_eq!(ran, vec![(1, 0, Outcome::Ok), (5, 1, Outcome::Closed)]);
        Commits::register(&c, 1, 2);
        assert_eq!(c.check_once(3)[2], (1, 2, Outcome::Closed));
    });
}

// ---------------------------------------------------------------------------
// Pre-faulting against syncs: the prefault thread never faults in a page
// after a sync cleaned it.

/// What happened to a page, in the order it happened (the log is a loom
/// mutex, so loom orders the events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageEvent {
    Cleaned(usize),
    Faulted(usize),
}

/// The writer appends three times (publishing ends 100, 5000 and 9000 of a
/// segment of three data pages), syncing after each (waiting out a claimed
/// chunk, then cleaning the pages of `[synced, end)`), while the prefault
/// thread serves a request for the whole segment, late: no page is faulted
/// in after a sync cleaned it.
#[test]
fn loom_prefault_never_faults_a_synced_page() {
    use crate::format::header::DATA_START;
    model(Some(3), || {
        const LEN: usize = DATA_START + 3 * 4096;
        const SEG: usize = 1;
        let pf = Arc::new(Prefault::default());
        let end = Arc::new(AtomicU64::new(0));
        let events = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let (pf, end, events) = (pf.clone(), end.clone(), events.clone());
            thread::spawn(move || {
                let mut synced = 0u64;
                for to in [100u64, 5000, 9000] {
                    end.store(to, Ordering::Release);
                    let (s, e) = (DATA_START + synced as usize, DATA_START + to as usize);
                    pf.wait_clear(SEG, s, e);
                    let mut ev = events.lock();
                    for p in s / 4096..e.div_ceil(4096) {
                        ev.push(PageEvent::Cleaned(p));
                    }
                    drop(ev);
                    synced = to;
                }
            })
        };
        pf.populate_range(
            SEG,
            0,
            LEN,
            (DATA_START, LEN),
            || end.load(Ordering::Acquire),
            |lo, hi| {
                let mut ev = events.lock();
                for p in lo / 4096..hi.div_ceil(4096) {
                    ev.push(PageEvent::Faulted(p));
                }
            },
        );
        writer.join().unwrap();
        let ev = events.lock().clone();
        for (i, e) in ev.iter().enumerate() {
            if let PageEvent::Faulted(p) = *e {
                assert!(
                    !ev[..i].contains(&PageEvent::Cleaned(p)),
                    "page {p} faulted in after a sync cleaned it: {ev:?}"
                );
            }
        }
    });
}

// ---------------------------------------------------------------------------
// The ordered job pool (parallel recovery): a helper and the consumer race
// for the jobs; every job runs exactly once, the consumer gets every result
// in order, and nobody waits forever, including when the consumer stops
// early.

/// Jobs `0..jobs` with window `window`; the consumer takes the first
/// `take` of them, then stops the pool. Each job's result is `10 * j`.
fn ordered_pool_model(jobs: usize, window: usize, take: usize) {
    let pool = Arc::new(Ordered::<usize>::new(jobs, window));
    let runs = Arc::new((0..jobs).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
    let run = {
        let runs = Arc::clone(&runs);
        move |j: usize| {
            runs[j].fetch_add(1, Ordering::SeqCst);
            10 * j
        }
    };
    let helper = {
        let pool = Arc::clone(&pool);
        let run = run.clone();
        thread::spawn(move || pool.work(run))
    };
    for i in 0..take {
        let got = match pool.take(i, &run) {
            Taken::Done(r) => r,
            Taken::Yours => run(i),
        };
        assert_eq!(got, 10 * i, "job {i}'s result, in order");
    }
    pool.stop();
    helper.join().unwrap();
    for (j, n) in runs.iter().enumerate() {
        let n = n.load(Ordering::SeqCst);
        if j < take {
            assert_eq!(n, 1, "job {j} ran once");
        } else {
            assert!(n <= 1, "job {j} ran at most once");
        }
    }
}

#[test]
fn loom_ordered_pool_all_jobs() {
    model(None, || ordered_pool_model(3, 2, 3));
}

#[test]
fn loom_ordered_pool_window_one() {
    model(None, || ordered_pool_model(3, 1, 3));
}

#[test]
fn loom_ordered_pool_stop_early() {
    model(None, || ordered_pool_model(4, 2, 1));
}
