//! What a user scrapes and how a shared handle closes: `Wal::stats`
//! counts what the log did (appends, bytes, syncs and their latency,
//! group-commit size, rotations, the time opening took), and
//! `Wal::shutdown` closes a handle other threads still share, handing the
//! same outcome to every caller.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use durability::{Config, Error, Op, RunId, SyncMode, Wal, SYNC_LATENCY_BOUNDS_US};

fn put(version: u64) -> Op<'static> {
    Op::Write {
        key: b"key",
        value: &[0x5A; 200],
        version,
    }
}

/// Strict appends from four threads: every append waited for a sync, the
/// syncs covered every byte, the latency histogram counts each sync once,
/// and the small segments rotated.
#[test]
fn stats_count_appends_bytes_syncs_and_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default()
        .segment_size(16 << 10)
        .sync_mode(SyncMode::Strict);
    let wal = Arc::new(Wal::open(dir.path(), config.clone()).unwrap());
    let opened = wal.stats();
    assert_eq!(
        (opened.appends, opened.bytes_appended, opened.rotations),
        (0, 0, 0)
    );
    assert!(opened.open_time > Duration::ZERO);
    let start_end = opened.end_lsn;
    const THREADS: u64 = 4;
    const TXNS: u64 = 50;
    let go = Arc::new(Barrier::new(THREADS as usize));
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (wal, go) = (Arc::clone(&wal), Arc::clone(&go));
            std::thread::spawn(move || {
                let run = RunId::from_bytes([t as u8 + 1; 16]);
                go.wait();
                for i in 1..=TXNS {
                    wal.append_txn(run, i, &[put(i)]).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let s = wal.stats();
    // append_txn is one append (one unit) each.
    assert_eq!(s.appends, THREADS * TXNS);
    assert_eq!(
        s.waited_appends,
        THREADS * TXNS,
        "every Strict append waits"
    );
    assert_eq!(s.bytes_appended, s.end_lsn - start_end);
    assert!(s.syncs >= 1 && s.syncs <= s.waited_appends, "{s:?}");
    // Everything appended was synced before its append returned; syncs
    // cover only what was appended (the open's own resync is not counted).
    assert_eq!(s.synced_lsn, s.end_lsn);
    assert_eq!(s.bytes_synced, s.bytes_appended);
    assert_eq!(s.sync_latency.total(), s.syncs);
    assert!(s.sync_time_max <= s.sync_time_total && s.sync_time_max > Duration::ZERO);
    assert!(s.sync_latency.quantile(1.0) >= Duration::from_micros(SYNC_LATENCY_BOUNDS_US[0]));
    // 200 × ~300 B frames in 16 KiB segments: many rotations, each a
    // segment put into use.
    assert!(s.rotations >= 3, "{s:?}");
    assert_eq!(s.segments as u64, 1 + s.rotations, "no retention ran");
    drop(wal);

    // A reopen counts from its own start.
    let wal = Wal::open(dir.path(), &config).unwrap();
    let s = wal.stats();
    assert_eq!(
        (s.appends, s.bytes_appended, s.syncs, s.rotations),
        (0, 0, 0, 0)
    );
}

/// In Batched mode appends do not wait: `waited_appends` stays zero while
/// the background syncs still count.
#[test]
fn batched_appends_do_not_wait_but_syncs_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default().sync_mode(SyncMode::Batched {
        interval_ms: 5,
        batch_size: 1000,
    });
    let wal = Wal::open(dir.path(), config).unwrap();
    let run = RunId::new();
    for i in 1..=20 {
        wal.append_txn(run, i, &[put(i)]).unwrap();
    }
    wal.sync().unwrap();
    let s = wal.stats();
    assert_eq!(s.appends, 20);
    assert_eq!(s.waited_appends, 0);
    assert!(s.syncs >= 1);
    assert_eq!(s.bytes_synced, s.bytes_appended);
}

/// `shutdown` through a shared handle: both concurrent callers get the
/// outcome (Ok) once the log is closed, appends after it fail with
/// `Closed`, what was appended is durable, and dropping the last handle
/// afterwards changes nothing.
#[test]
fn shutdown_closes_a_shared_handle_for_every_caller() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default().sync_mode(SyncMode::Async {
        interval_ms: 60_000,
    });
    let wal = Arc::new(Wal::open(dir.path(), config.clone()).unwrap());
    let run = RunId::new();
    for i in 1..=10 {
        wal.append_txn(run, i, &[put(i)]).unwrap();
    }
    assert!(wal.stats().synced_lsn < wal.end_lsn(), "nothing synced yet");
    let go = Arc::new(Barrier::new(2));
    let closers: Vec<_> = (0..2)
        .map(|_| {
            let (wal, go) = (Arc::clone(&wal), Arc::clone(&go));
            std::thread::spawn(move || {
                go.wait();
                let r = wal.shutdown();
                // Whoever returns, the close is complete: the log is synced.
                assert_eq!(wal.stats().synced_lsn, wal.end_lsn());
                r
            })
        })
        .collect();
    for c in closers {
        c.join().unwrap().unwrap();
    }
    assert!(matches!(
        wal.append_txn(run, 11, &[put(11)]),
        Err(Error::Closed)
    ));
    assert!(matches!(wal.sync(), Err(Error::Closed)));
    wal.shutdown().unwrap();
    drop(wal);
    let reopened = Wal::open(dir.path(), &config).unwrap();
    let mut n = 0;
    reopened.replay(|_| n += 1).unwrap();
    assert_eq!(n, 10);
}

/// A durability callback may shut the log down (it runs on the callbacks'
/// thread, which a close waits for): it neither deadlocks nor loses the
/// close's result for the thread that closes after it.
#[test]
fn a_callback_may_shut_the_log_down() {
    let dir = tempfile::tempdir().unwrap();
    let wal =
        Arc::new(Wal::open(dir.path(), Config::default().sync_mode(SyncMode::Strict)).unwrap());
    let pos = wal.append_txn(RunId::new(), 1, &[put(1)]).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let inner = Arc::clone(&wal);
    wal.on_durable(pos, move |r| {
        r.unwrap();
        tx.send(inner.shutdown()).unwrap();
    });
    let from_callback = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    from_callback.unwrap();
    wal.shutdown().unwrap();
    assert!(matches!(wal.sync(), Err(Error::Closed)));
}
