//! Loom models: Tail notification, blocking and async

#![allow(unused_imports)]

use std::future::Future;
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

// ---------------------------------------------------------------------------
// Async tails: a waker registered in the notifier instead of a condvar wait

/// What `Tail::next_async` does with the notifier: a future that resolves
/// once the published end reaches `want` (`Ready`) or the notifier closes
/// (`Closed`), registering its waker with `poll_wait` meanwhile, and giving
/// the registration back when dropped.
struct WaitEnd<'a> {
    writer: &'a Mutex<()>,
    published: &'a AtomicU64,
    tn: &'a TailNotify,
    want: u64,
    reg: crate::log::notify::Registration,
}

impl<'a> WaitEnd<'a> {
    fn new(writer: &'a Mutex<()>, published: &'a AtomicU64, tn: &'a TailNotify, want: u64) -> Self {
        WaitEnd {
            writer,
            published,
            tn,
            want,
            reg: None,
        }
    }
}

impl std::future::Future for WaitEnd<'_> {
    type Output = WaitOutcome;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<WaitOutcome> {
        let this = self.get_mut();
        let (published, want) = (this.published, this.want);
        this.tn.poll_wait(
            this.writer,
            || published.load(Ordering::Acquire) >= want,
            &mut this.reg,
            cx.waker(),
        )
    }
}

impl Drop for WaitEnd<'_> {
    fn drop(&mut self) {
        self.tn.cancel(&mut self.reg);
    }
}

/// Drives `f` to completion on this loom thread: its waker unparks the
/// thread, which parks while `f` is pending (as `Durable::wait` does with a
/// real thread). A lost wake-up leaves it parked forever, which loom
/// reports as a deadlock. (loom's own `block_on` is behind a feature.)
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(r) = f.as_mut().poll(&mut cx) {
            return r;
        }
        thread::park();
    }
}

/// Neither a count nor a waker is left behind.
fn assert_nothing_registered(tn: &TailNotify) {
    assert!(!tn.has_waiters(), "a waiter's count stayed");
    assert_eq!(tn.stored_wakers(), 0, "a waker stayed registered");
}

/// An async waiter for the second of two publishes: its waker is woken (a
/// lost wake-up leaves `block_on` parked forever, which loom reports as a
/// deadlock), and nothing stays registered.
#[test]
fn loom_tail_async_wakeup() {
    model(None, || {
        let writer = Arc::new(Mutex::new(()));
        let published = Arc::new(AtomicU64::new(0));
        let tn = Arc::new(TailNotify::new());
        let waiter = {
            let (writer, published, tn) = (writer.clone(), published.clone(), tn.clone());
            thread::spawn(move || {
                let r = block_on(WaitEnd::new(&writer, &published, &tn, 2));
                assert_eq!(r, WaitOutcome::Ready);
                assert!(published.load(Ordering::Acquire) >= 2);
            })
        };
        publish_end(&writer, &published, &tn, 1);
        publish_end(&writer, &published, &tn, 2);
        waiter.join().unwrap();
        assert_nothing_registered(&tn);
    });
}

/// A future polled once (its waker registered) and dropped, racing a
/// publish that may drain that waker; then a new future for the same end:
/// it resolves (the drop lost no wake-up the new one needed), and neither
/// the dropped registration nor its count is left behind.
#[test]
fn loom_tail_async_dropped_future_then_wait() {
    model(None, || {
        let writer = Arc::new(Mutex::new(()));
        let published = Arc::new(AtomicU64::new(0));
        let tn = Arc::new(TailNotify::new());
        let waiter = {
            let (writer, published, tn) = (writer.clone(), published.clone(), tn.clone());
            thread::spawn(move || {
                let first = block_on(std::future::poll_fn(|cx| {
                    let mut f = WaitEnd::new(&writer, &published, &tn, 1);
                    let r = std::pin::Pin::new(&mut f).poll(cx);
                    drop(f);
                    std::task::Poll::Ready(r)
                }));
                if first.is_pending() {
                    let r = block_on(WaitEnd::new(&writer, &published, &tn, 1));
                    assert_eq!(r, WaitOutcome::Ready);
                }
                assert!(published.load(Ordering::Acquire) >= 1);
            })
        };
        publish_end(&writer, &published, &tn, 1);
        waiter.join().unwrap();
        assert_nothing_registered(&tn);
    });
}

/// `close` racing an async waiter whose condition never holds: it resolves
/// `Closed`, and later polls resolve at once.
#[test]
fn loom_tail_async_close() {
    model(None, || {
        let writer = Arc::new(Mutex::new(()));
        let published = Arc::new(AtomicU64::new(0));
        let tn = Arc::new(TailNotify::new());
        let waiter = {
            let (writer, published, tn) = (writer.clone(), published.clone(), tn.clone());
            thread::spawn(move || {
                let r = block_on(WaitEnd::new(&writer, &published, &tn, 1));
                assert_eq!(r, WaitOutcome::Closed);
            })
        };
        tn.close();
        waiter.join().unwrap();
        let r = block_on(WaitEnd::new(&writer, &published, &tn, 1));
        assert_eq!(r, WaitOutcome::Closed);
        assert_nothing_registered(&tn);
    });
}

/// A blocked thread and an async waiter for different ends, one publisher:
/// both are woken (the two kinds share the count and `lock`).
#[test]
fn loom_tail_async_beside_blocking() {
    model(Some(3), || {
        let writer = Arc::new(Mutex::new(()));
        let published = Arc::new(AtomicU64::new(0));
        let tn = Arc::new(TailNotify::new());
        let blocking = {
            let (writer, published, tn) = (writer.clone(), published.clone(), tn.clone());
            thread::spawn(move || {
                let r = tn.wait(&writer, || published.load(Ordering::Acquire) >= 1, None);
                assert_eq!(r, WaitOutcome::Ready);
            })
        };
        let asynchronous = {
            let (writer, published, tn) = (writer.clone(), published.clone(), tn.clone());
            thread::spawn(move || {
                let r = block_on(WaitEnd::new(&writer, &published, &tn, 2));
                assert_eq!(r, WaitOutcome::Ready);
            })
        };
        publish_end(&writer, &published, &tn, 1);
        publish_end(&writer, &published, &tn, 2);
        blocking.join().unwrap();
        asynchronous.join().unwrap();
        assert_nothing_registered(&tn);
    });
}
