//! Async and zero-copy tails, and tails of read-only opens, on real files
//! (DESIGN.md §8, "Tail wake-up" and "Tails of read-only opens").
//!
//! The async tests drive `Tail::next_async` with a hand-written executor
//! (a waker that counts its wakes and unparks the test's thread): no
//! runtime. Every wait is for a state (a wake, an entry), bounded by a
//! generous watchdog that fails the test instead of hanging it.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use durability::{
    BorrowedEntry, Config, Error, Lsn, Op, RunId, SyncMode, Tail, Wal, WalEntry, WalReader,
};

/// How long any wait may take before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);

fn cfg(seg: u64) -> Config {
    Config::default()
        .segment_size(seg)
        .sync_mode(SyncMode::Async { interval_ms: 20 })
}

fn run(n: u8) -> RunId {
    RunId::from_bytes([n; 16])
}

fn write(key: &[u8], value: &[u8], version: u64) -> WalEntry {
    WalEntry::Write {
        run_id: run(0),
        key: key.to_vec(),
        value: value.to_vec(),
        version,
    }
}

/// A waker that counts its wakes and unparks the thread that made it.
struct Counting {
    wakes: AtomicUsize,
    thread: std::thread::Thread,
}

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

fn counting_waker() -> (Arc<Counting>, Waker) {
    let c = Arc::new(Counting {
        wakes: AtomicUsize::new(0),
        thread: std::thread::current(),
    });
    (c.clone(), Waker::from(c))
}

/// Polls `f` once with `waker`.
fn poll_once<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

/// Parks until `c` has been woken more than `seen` times.
fn wait_for_wake(c: &Counting, seen: usize, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while c.wakes.load(Ordering::SeqCst) <= seen {
        let now = Instant::now();
        assert!(now < deadline, "never woken: {what}");
        std::thread::park_timeout(deadline - now);
    }
}

/// The minimal executor: polls `f`, parking the thread until its waker is
/// woken, until it resolves.
fn block_on<F: Future>(f: F) -> F::Output {
    let (c, waker) = counting_waker();
    let mut f = std::pin::pin!(f);
    loop {
        let seen = c.wakes.load(Ordering::SeqCst);
        if let Poll::Ready(r) = f.as_mut().poll(&mut Context::from_waker(&waker)) {
            return r;
        }
        wait_for_wake(&c, seen, "block_on");
    }
}

#[test]
fn an_async_tail_is_woken_by_an_append_made_after_it_began_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), cfg(64 << 10)).unwrap());
    let mut tail = wal.tail(wal.end_lsn());
    let (c, waker) = counting_waker();
    let mut next = tail.next_async();
    assert!(
        poll_once(&mut next, &waker).is_pending(),
        "nothing appended yet"
    );
    assert_eq!(c.wakes.load(Ordering::SeqCst), 0);

    // The append happens on another thread, after the future registered.
    let appender = {
        let wal = Arc::clone(&wal);
        std::thread::spawn(move || wal.append(&write(b"k", b"late", 1)).unwrap().lsn)
    };
    let lsn = appender.join().unwrap();
    wait_for_wake(&c, 0, "the append did not wake the pending future");
    match poll_once(&mut next, &waker) {
        Poll::Ready(Ok(Some((at, e)))) => {
            assert_eq!(at, lsn);
            assert_eq!(e, write(b"k", b"late", 1));
        }
        other => panic!("after the wake: {other:?}"),
    }
    drop(next);

    // Many entries from another thread, each awaited in turn.
    let appender = {
        let wal = Arc::clone(&wal);
        std::thread::spawn(move || {
            (0..50u64)
                .map(|i| wal.append(&write(b"k", &i.to_le_bytes(), i)).unwrap().lsn)
                .collect::<Vec<_>>()
        })
    };
    let mut got = Vec::new();
    while got.len() < 50 {
        let (at, e) = block_on(tail.next_async()).unwrap().expect("log open");
        let WalEntry::Write { version, .. } = e else {
            panic!("{e:?}")
        };
        got.push((at, version));
    }
    let lsns = appender.join().unwrap();
    assert_eq!(got, lsns.into_iter().zip(0..50).collect::<Vec<_>>());
}

#[test]
fn closing_the_log_wakes_a_pending_async_tail_with_none_after_the_last_entry() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(64 << 10)).unwrap();
    let mut tail = wal.tail(wal.end_lsn());
    let (c, waker) = counting_waker();
    let mut next = tail.next_async();
    assert!(poll_once(&mut next, &waker).is_pending());

    // An entry and then the close, both after the future began waiting:
    // the entry is delivered first, then the end.
    let closer = std::thread::spawn(move || {
        let lsn = wal.append(&write(b"k", b"last", 7)).unwrap().lsn;
        wal.close().unwrap();
        lsn
    });
    let lsn = closer.join().unwrap();
    wait_for_wake(&c, 0, "the append and the close woke nothing");
    match poll_once(&mut next, &waker) {
        Poll::Ready(Ok(Some((at, _)))) => assert_eq!(at, lsn),
        other => panic!("the entry appended before the close: {other:?}"),
    }
    drop(next);
    assert!(matches!(block_on(tail.next_async()), Ok(None)));
    // Again: the end is stable, and the blocking call agrees.
    assert!(matches!(block_on(tail.next_ref_async()), Ok(None)));
    assert!(matches!(
        tail.next_timeout(Duration::from_secs(5)),
        Err(Error::Closed)
    ));
}

#[test]
fn a_pending_future_closed_under_it_resolves_to_none() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(64 << 10)).unwrap();
    wal.append(&write(b"k", b"v", 1)).unwrap();
    let mut tail = wal.tail(0);
    assert!(block_on(tail.next_async()).unwrap().is_some());
    let (c, waker) = counting_waker();
    let mut next = tail.next_async();
    assert!(poll_once(&mut next, &waker).is_pending());
    std::thread::spawn(move || drop(wal)).join().unwrap();
    wait_for_wake(&c, 0, "dropping the log woke nothing");
    assert!(matches!(
        poll_once(&mut next, &waker),
        Poll::Ready(Ok(None))
    ));
    // Polled after it resolved: an error, not a panic.
    assert!(matches!(
        poll_once(&mut next, &waker),
        Poll::Ready(Err(Error::InvalidArgument { .. }))
    ));
}

#[test]
fn a_dropped_pending_future_unregisters_and_the_tail_delivers_the_entry_once() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(64 << 10)).unwrap();
    let mut tail = wal.tail(wal.end_lsn());
    let (c, waker) = counting_waker();
    {
        let mut next = tail.next_ref_async();
        assert!(poll_once(&mut next, &waker).is_pending());
        // Polled again with the same waker: still one registration.
        assert!(poll_once(&mut next, &waker).is_pending());
    }
    let (c2, waker2) = counting_waker();
    {
        let mut next = tail.next_async();
        assert!(poll_once(&mut next, &waker2).is_pending());
    }
    let lsn = wal.append(&write(b"k", b"once", 1)).unwrap().lsn;
    // The dropped futures' wakers were unregistered: the append woke
    // neither.
    assert_eq!(c.wakes.load(Ordering::SeqCst), 0);
    assert_eq!(c2.wakes.load(Ordering::SeqCst), 0);
    let (at, e) = block_on(tail.next_async()).unwrap().expect("appended");
    assert_eq!((at, e), (lsn, write(b"k", b"once", 1)));
    assert!(tail.poll().unwrap().is_none(), "delivered twice");

    // A future dropped after a wake drained its waker leaves nothing
    // either; the tail goes on.
    let mut next = tail.next_async();
    assert!(poll_once(&mut next, &waker).is_pending());
    let lsn = wal.append(&write(b"k", b"twice", 2)).unwrap().lsn;
    wait_for_wake(&c, 0, "the append did not wake the pending future");
    drop(next);
    assert_eq!(block_on(tail.next_async()).unwrap().unwrap().0, lsn);
    assert!(tail.poll().unwrap().is_none());
}

/// A log with every kind of entry: transactions, a batch, a delete, a
/// truncation (whose record the tails deliver), a Raft entry.
fn varied_log(wal: &Wal) {
    for i in 0..20u64 {
        let key = format!("key-{i}");
        let value = vec![i as u8; 300 + i as usize * 37];
        wal.append_txn(
            run((i % 3) as u8),
            i,
            &[
                Op::Write {
                    key: key.as_bytes(),
                    value: &value,
                    version: i,
                },
                Op::Delete {
                    key: b"gone",
                    version: i,
                },
            ],
        )
        .unwrap();
    }
    let batch: Vec<BorrowedEntry<'_>> = (0..4u64)
        .map(|i| BorrowedEntry::Write {
            run_id: run(9),
            key: b"batched",
            value: b"value",
            version: i,
        })
        .collect();
    let cut = wal.append_batch(&batch).unwrap().first;
    wal.append(&write(b"after", b"batch", 1)).unwrap();
    wal.truncate_from(cut).unwrap();
    wal.append(&WalEntry::Raft {
        index: 3,
        term: 1,
        data: b"[1,\"Blank\"]".to_vec(),
    })
    .unwrap();
}

#[test]
fn zero_copy_entries_equal_the_owned_ones() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(16 << 10)).unwrap();
    varied_log(&wal);
    let end = wal.end_lsn();

    let mut owned = wal.tail(0);
    let mut borrowed = wal.tail(0);
    let mut by_future = wal.tail(0);
    let mut n = 0;
    let mut truncates = 0;
    while owned.position() < end {
        let o = owned.poll().unwrap().expect("below the end");
        let b = borrowed.poll_ref().unwrap().expect("below the end");
        assert_eq!(b.lsn(), o.0);
        assert_eq!(b.entry().key(), entry_key(&o.1));
        assert_eq!(b.entry().kind(), o.1.kind());
        if let WalEntry::Truncate { from } = o.1 {
            assert_eq!(b.truncate_from(), Some(from));
            truncates += 1;
        } else {
            assert_eq!(b.truncate_from(), None);
        }
        let log_entry = b.log_entry();
        assert_eq!(log_entry.lsn, o.0);
        assert_eq!(b.into_owned(), o);
        let f = block_on(by_future.next_ref_async()).unwrap().unwrap();
        assert_eq!(f.into_owned(), o);
        n += 1;
    }
    assert!(n > 60, "{n} entries");
    assert_eq!(truncates, 1);
    assert!(borrowed.poll_ref().unwrap().is_none());

    // The read-only open's tail reads the same entries, zero-copy too.
    let reader = WalReader::open(dir.path(), cfg(16 << 10)).unwrap();
    let mut from_reader = reader.tail(0);
    let mut again = wal.tail(0);
    while let Some(o) = again.poll().unwrap() {
        let r = from_reader.poll_ref().unwrap().expect("the same log");
        assert_eq!(r.into_owned(), o);
    }
    assert!(from_reader.poll_ref().unwrap().is_none());
}

fn entry_key(e: &WalEntry) -> Option<&[u8]> {
    match e {
        WalEntry::Write { key, .. } | WalEntry::Delete { key, .. } => Some(key),
        _ => None,
    }
}

/// Entries the reader tail must see, in order.
fn versions(tail: &mut durability::ReaderTail, n: usize) -> Vec<(Lsn, u64)> {
    let mut got = Vec::new();
    while got.len() < n {
        let Some((lsn, e)) = tail.next_timeout(PATIENCE).unwrap() else {
            panic!("no entry within {PATIENCE:?}; got {} of {n}", got.len());
        };
        let WalEntry::Write { version, .. } = e else {
            panic!("{e:?}")
        };
        got.push((lsn, version));
    }
    got
}

#[test]
fn a_reader_tail_follows_a_writer_of_this_process_and_learns_of_a_purge() {
    let dir = tempfile::tempdir().unwrap();
    let config = cfg(16 << 10);
    let wal = Wal::open(dir.path(), &config).unwrap();
    let first = wal.append(&write(b"k", b"0", 0)).unwrap().lsn;
    wal.close().unwrap();

    // Opened with no writer: a scan; its tail delivers the view, then waits.
    let reader = WalReader::open(dir.path(), &config).unwrap();
    let mut tail = reader.tail(0);
    assert_eq!(versions(&mut tail, 1), [(first, 0)]);
    assert!(tail.poll().unwrap().is_none());
    assert!(tail
        .next_timeout(Duration::from_millis(20))
        .unwrap()
        .is_none());

    // A writer of this process appends (across segments): the tail takes
    // its published view.
    let wal = Wal::open(dir.path(), &config).unwrap();
    let value = vec![7u8; 1000];
    let lsns: Vec<Lsn> = (1..=40u64)
        .map(|v| wal.append(&write(b"k", &value, v)).unwrap().lsn)
        .collect();
    let got = versions(&mut tail, 40);
    assert_eq!(got, lsns.iter().copied().zip(1..=40).collect::<Vec<_>>());

    // A purge past entries the tail has not read: one "purged", then on.
    let more: Vec<Lsn> = (41..=43u64)
        .map(|v| wal.append(&write(b"k", b"x", v)).unwrap().lsn)
        .collect();
    wal.purge_before(more[2]).unwrap();
    match tail.poll() {
        Err(Error::BadLsn { lsn, detail }) => {
            assert_eq!(lsn, more[0]);
            assert!(detail.contains("purged"), "{detail}");
        }
        other => panic!("expected the purge to be reported: {other:?}"),
    }
    assert_eq!(versions(&mut tail, 1), [(more[2], 43)]);
    wal.close().unwrap();
    assert!(tail.poll().unwrap().is_none());
}

// ---------------------------------------------------------------------------
// A writer in another process: this test binary, started again.

const CHILD_DIR: &str = "DURABILITY_ASYNC_TAIL_CHILD_DIR";
/// Entries the child appends in each of its two rounds.
const ROUND: u64 = 60;
const CHILD_SEGMENT: u64 = 16 << 10;

/// The value of version `v`: sizes vary, so frames end anywhere in a
/// segment.
fn child_value(v: u64) -> Vec<u8> {
    vec![(v % 251) as u8; 200 + (v as usize * 53) % 900]
}

/// The child side of `a_reader_tail_follows_a_writer_in_another_process`:
/// runs only when the parent starts this binary with the environment set.
/// Appends a round (singles and batches), says so on stdout, waits for the
/// parent's line on stdin, appends a second round, says so, and closes the
/// log once stdin closes.
#[test]
fn child_writer_process() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let wal = Wal::open(&dir, cfg(CHILD_SEGMENT)).unwrap();
    let mut stdin = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    let mut v = 1u64;
    for round in 0..2 {
        let stop = v + ROUND;
        while v < stop {
            if v % 5 == 0 && v + 3 <= stop {
                let values: Vec<Vec<u8>> = (v..v + 3).map(child_value).collect();
                let batch: Vec<BorrowedEntry<'_>> = (0..3)
                    .map(|i| BorrowedEntry::Write {
                        run_id: run(0),
                        key: b"k",
                        value: &values[i],
                        version: v + i as u64,
                    })
                    .collect();
                wal.append_batch(&batch).unwrap();
                v += 3;
            } else {
                wal.append(&write(b"k", &child_value(v), v)).unwrap();
                v += 1;
            }
        }
        writeln!(out, "CHILD\tround\t{round}").unwrap();
        out.flush().unwrap();
        let mut line = String::new();
        stdin.read_line(&mut line).unwrap();
    }
    wal.close().unwrap();
}

/// Kills and reaps the child on every path.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_reader_tail_follows_a_writer_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = cfg(CHILD_SEGMENT);
    let wal = Wal::open(dir.path(), &config).unwrap();
    wal.append(&write(b"k", &child_value(0), 0)).unwrap();
    wal.close().unwrap();
    // No writer in this process: the reader and its tail copy and validate.
    let reader = WalReader::open(dir.path(), &config).unwrap();
    let mut tail = reader.tail(0);
    tail.set_poll_interval(Duration::from_millis(2));
    assert_eq!(versions(&mut tail, 1)[0].1, 0);

    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writer_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(Some(child));
    let c = guard.0.as_mut().unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();

    // Round one: the tail follows while the child appends (the first look
    // past the reader's view scans the log whole).
    let mut got = versions(&mut tail, ROUND as usize);
    // Round two, appended only once the tail has caught up: found by
    // copying and validating frames past the tail's end, through the
    // segments the child fills meanwhile.
    writeln!(stdin, "go").unwrap();
    got.extend(versions(&mut tail, ROUND as usize));
    writeln!(stdin, "go").unwrap();
    drop(stdin);
    let status = c.wait().unwrap();
    guard.0 = None;
    let said: Vec<String> = lines
        .by_ref()
        .map_while(Result::ok)
        // The first follows libtest's "test child_writer_process ... ".
        .filter(|l| l.contains("CHILD\t"))
        .collect();
    assert!(status.success(), "the child writer failed: {said:?}");
    assert_eq!(said.len(), 2, "{said:?}");

    // Every version once, in order, at increasing LSNs, with its value.
    let expect: Vec<u64> = (1..=2 * ROUND).collect();
    assert_eq!(got.iter().map(|&(_, v)| v).collect::<Vec<_>>(), expect);
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(tail.poll().unwrap().is_none(), "nothing more was appended");

    // What the tail read is what a fresh open of the closed log holds.
    let fresh = WalReader::open(dir.path(), &config).unwrap();
    let mut from_fresh = fresh.tail(got[0].0);
    for &(lsn, v) in &got {
        let (at, e) = from_fresh.poll().unwrap().expect("the same log");
        assert_eq!((at, e), (lsn, write(b"k", &child_value(v), v)));
    }
    assert!(
        fresh.snapshot().segment_seqs().count() > 4,
        "the child's appends should span several segments"
    );
}

#[test]
fn tails_and_their_futures_can_move_across_threads() {
    fn send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(64 << 10)).unwrap();
    let mut tail: Tail = wal.tail(0);
    send(&tail.next_async());
    send(&tail.next_ref_async());
    send(&tail);
    let reader = WalReader::open(dir.path(), cfg(64 << 10)).unwrap();
    send(&reader.tail(0));
}
