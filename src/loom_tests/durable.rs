//! Loom models: Commit notification

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
