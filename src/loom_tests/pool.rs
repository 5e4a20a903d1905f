//! Loom models: The ordered job pool (parallel recovery): a helper and the consumer race

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
