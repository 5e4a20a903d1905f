//! Loom models: Pre-faulting against syncs: the prefault thread never faults in a page

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
