//! Loom models: Tail notification

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
