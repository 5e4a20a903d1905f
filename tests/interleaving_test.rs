//! The newer surface under real threads: truncation against retention and
//! snapshots, commit-notification callbacks that call back into the log,
//! and the positions an append returns. Every loop is bounded by a count,
//! never by a clock; a thread that would hang fails its test through a
//! watchdog instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

mod common;

use common::Rng;
use durability::format::frame::frame_len;
use durability::{BorrowedEntry, Config, Op, RunId, SyncMode, Wal, WalReader};
use uuid::Uuid;

fn run(n: u8) -> RunId {
    RunId::from_bytes([n; 16])
}

/// Waits for `rx` to deliver, or fails the test if nothing comes within
/// a minute (a hang).
fn within<T>(what: &str, rx: &mpsc::Receiver<T>) -> T {
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what}: no answer within a minute (a hang)"))
}

/// A snapshot taken while retention drops segments whose truncation
/// records go with them never yields an entry a truncation it can see
/// deleted: not through `iter`, `replay`, nor an in-process `WalReader`.
#[test]
fn snapshots_never_see_deleted_entries_while_retention_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default()
        .segment_size(8 << 10)
        .sync_mode(SyncMode::Async { interval_ms: 1_000 });
    let wal = Arc::new(Wal::open(dir.path(), cfg.clone()).unwrap());
    // (from, record LSN) of every truncation done, and the keys of the
    // transactions they deleted.
    let records: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let deleted_keys: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let checkers: Vec<_> = (0..2)
        .map(|c| {
            let (wal, records, deleted_keys, done) = (
                wal.clone(),
                records.clone(),
                deleted_keys.clone(),
                done.clone(),
            );
            let dir = dir.path().to_path_buf();
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let mut views = 0u64;
                while !done.load(Ordering::SeqCst) || views < 50 {
                    views += 1;
                    let recs = records.lock().unwrap().clone();
                    let gone = deleted_keys.lock().unwrap().clone();
                    let snap = wal.snapshot();
                    let end = snap.end_lsn();
                    let dead =
                        |lsn: u64| recs.iter().any(|&(f, at)| at < end && f <= lsn && lsn < at);
                    for e in snap.iter() {
                        let e = e.unwrap();
                        assert!(!dead(e.lsn), "iter yielded the deleted entry at {}", e.lsn);
                    }
                    if views % 16 != c {
                        continue;
                    }
                    let deleted = |k: &[u8]| gone.iter().any(|g| g == k);
                    snap.replay(|t| {
                        for op in t.ops {
                            let k = op.entry.key().unwrap();
                            assert!(
                                !deleted(k),
                                "replay delivered the deleted write {:?}",
                                String::from_utf8_lossy(k)
                            );
                        }
                    })
                    .unwrap();
                    let r = WalReader::open(&dir, &cfg).unwrap();
                    r.replay(|t| {
                        for op in t.ops {
                            assert!(
                                !deleted(op.entry.key().unwrap()),
                                "a reader saw a deleted write"
                            );
                        }
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    let filler = vec![b'x'; 900];
    for round in 0..1_500u64 {
        let gone = format!("gone-{round}");
        let pos = wal
            .append_txn(
                run(1),
                round,
                &[Op::Write {
                    key: gone.as_bytes(),
                    value: b"v",
                    version: 1,
                }],
            )
            .unwrap();
        let end = wal.truncate_from(pos.begin).map(|p| p.end).unwrap();
        // Known deleted only once the truncation returned: a snapshot taken
        // before it may hold the write.
        deleted_keys.lock().unwrap().push(gone.into_bytes());
        let at = end - frame_len(&BorrowedEntry::Truncate { from: pos.begin }) as u64;
        records.lock().unwrap().push((pos.begin, at));
        // Fill the segment, then cut everything before a checkpoint: the
        // record's segment goes, and the record with it.
        for i in 0..4 {
            wal.append_txn(
                run(2),
                1_000_000 + round * 10 + i,
                &[Op::Write {
                    key: b"f",
                    value: &filler,
                    version: 1,
                }],
            )
            .unwrap();
        }
        let ck = wal
            .checkpoint(Uuid::from_u128(round as u128), round, &[])
            .map(|p| p.lsn)
            .unwrap();
        wal.purge_to_checkpoint(ck).unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for c in checkers {
        c.join().unwrap();
    }
    Arc::try_unwrap(wal).unwrap().close().unwrap();
}

/// A follower that applies what a tail delivers (a Truncate deletes every
/// entry it holds from the record's `from` on) holds exactly the live log,
/// whatever is truncated: entries, transactions, and truncation records
/// themselves (whose deleted ranges then merge with the new one).
#[test]
fn a_follower_of_a_tail_holds_the_live_log_when_truncations_nest() {
    for seed in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::default()
            .segment_size(8 << 10)
            .sync_mode(SyncMode::Async { interval_ms: 1_000 });
        let wal = Wal::open(dir.path(), cfg).unwrap();
        let mut rng = Rng::new(seed);
        let mut tail = wal.tail(0);
        let mut follower: Vec<(u64, durability::WalEntry)> = Vec::new();
        let mut follow = |tail: &mut durability::Tail, n: u64| {
            for _ in 0..n {
                let Some((lsn, e)) = tail.poll().unwrap() else {
                    break;
                };
                if let durability::WalEntry::Truncate { from } = e {
                    follower.retain(|(l, _)| *l < from);
                }
                follower.push((lsn, e));
            }
        };
        for step in 0..60u64 {
            match rng.below(4) {
                0 | 1 => {
                    wal.append_txn(
                        run(1),
                        step,
                        &[Op::Write {
                            key: b"k",
                            value: b"v",
                            version: step,
                        }],
                    )
                    .unwrap();
                }
                2 => {
                    // Truncate from a live entry, records included (half the
                    // time the newest record, when there is one).
                    let live: Vec<(u64, bool)> = wal
                        .snapshot()
                        .iter()
                        .map(|e| {
                            let e = e.unwrap();
                            (e.lsn, e.entry.truncate_from().is_some())
                        })
                        .collect();
                    let records: Vec<u64> = live.iter().filter(|l| l.1).map(|l| l.0).collect();
                    let lsn = match (rng.below(2), records.last()) {
                        (0, Some(&r)) => r,
                        _ if live.is_empty() => continue,
                        _ => live[rng.below(live.len() as u64) as usize].0,
                    };
                    wal.truncate_from(lsn).unwrap();
                }
                _ => follow(&mut tail, rng.below(6)),
            }
        }
        follow(&mut tail, u64::MAX);
        let live: Vec<(u64, durability::WalEntry)> = wal
            .snapshot()
            .iter()
            .map(|e| {
                let e = e.unwrap();
                (e.lsn, e.entry.to_owned())
            })
            .collect();
        let strip =
            |v: &[(u64, durability::WalEntry)]| -> Vec<u64> { v.iter().map(|e| e.0).collect() };
        assert_eq!(
            strip(&follower),
            strip(&live),
            "seed {seed}: the follower kept deleted entries"
        );
        wal.close().unwrap();
    }
}

/// A log written before records named the whole range they end (a record
/// that truncated an earlier record, written byte for byte here): a tail
/// still tells its reader where the deleted range starts.
#[test]
fn a_tail_names_the_whole_deleted_range_of_an_older_log() {
    use durability::format::{frame, header};
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default()
        .segment_size(64 << 10)
        .sync_mode(SyncMode::Strict);
    let wal = Wal::open(dir.path(), cfg.clone()).unwrap();
    let mut lsns = Vec::new();
    for i in 0..3 {
        lsns.push(
            wal.append_txn(
                run(1),
                i,
                &[Op::Write {
                    key: b"k",
                    value: b"v",
                    version: i,
                }],
            )
            .unwrap(),
        );
    }
    let (salt, end) = (header::salt(&wal.instance_id()), wal.end_lsn());
    wal.close().unwrap();
    // R1 deletes the second and third transactions; R2 deletes R1, naming
    // only R1's position, as an older writer did.
    let b = lsns[1].begin;
    let r1 = BorrowedEntry::Truncate { from: b };
    let r2 = BorrowedEntry::Truncate { from: end };
    let mut bytes = vec![0u8; frame_len(&r1) + frame_len(&r2)];
    let n = frame::encode_into(&r1, header::seed(salt, end), &mut bytes).unwrap();
    let r2_lsn = end + n as u64;
    frame::encode_into(&r2, header::seed(salt, r2_lsn), &mut bytes[n..]).unwrap();
    let seg = dir.path().join(header::file_name(0));
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &bytes, 4096 + end).unwrap();
    drop(file);
    let wal = Wal::open(dir.path(), cfg).unwrap();
    assert_eq!(wal.snapshot().truncated(), &[(b, r2_lsn)]);
    // A follower that holds everything up to R1 learns that R2 deletes
    // from B, not only from R1.
    let mut tail = wal.tail(end);
    let (lsn, e) = tail.poll().unwrap().unwrap();
    assert_eq!(lsn, r2_lsn);
    assert_eq!(e, durability::WalEntry::Truncate { from: b });
    wal.close().unwrap();
}

/// Polls `cond` until it holds; fails the test after a minute.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within a minute"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn one<'a>(value: &'a [u8]) -> [Op<'a>; 1] {
    [Op::Write {
        key: b"k",
        value,
        version: 1,
    }]
}

/// Dropping the last handle inside a callback closes the log completely:
/// the final sync, the close of every pending waiter (a future for an LSN
/// never reached resolves with `Closed`), tails told, the lock and the
/// registry released.
#[test]
fn dropping_the_last_handle_in_a_callback_closes_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default()
        .segment_size(64 << 10)
        .sync_mode(SyncMode::Async { interval_ms: 5 });
    let wal = Arc::new(Wal::open(dir.path(), cfg.clone()).unwrap());
    let pos = wal.append_txn(run(1), 1, &one(b"v")).unwrap();
    let never = wal.durable(durability::End(wal.end_lsn() + 1_000_000));
    let mut tail = wal.tail(0);
    let (go, wait_go) = mpsc::channel::<()>();
    let (closed, was_closed) = mpsc::channel();
    let last = wal.clone();
    wal.on_durable(pos, move |r| {
        r.unwrap();
        wait_go.recv().unwrap();
        let thread = std::thread::current().name().map(str::to_string);
        drop(last); // the last handle
        closed.send(thread).unwrap();
    });
    drop(wal);
    go.send(()).unwrap();
    let thread = within("the callback that drops the log", &was_closed);
    assert_eq!(
        thread.as_deref(),
        Some("wal-notify"),
        "callbacks run on the log's own thread"
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(never.wait()).unwrap());
    let r = within("a future for an LSN never reached", &rx);
    assert!(matches!(r, Err(durability::Error::Closed)), "{r:?}");
    // The tail delivers what was published, then learns the log closed.
    let mut delivered = 0;
    loop {
        match tail.next_timeout(Duration::from_secs(60)) {
            Ok(Some(_)) => delivered += 1,
            Ok(None) => panic!("the tail was never told the log closed"),
            Err(durability::Error::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(delivered, 3);
    drop(tail);
    // Released: a write open takes the lock, a reader scans the files.
    let wal = Wal::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(wal.recovery_report().problem, None);
    wal.close().unwrap();
    assert_eq!(
        WalReader::open(dir.path(), &cfg)
            .unwrap()
            .recovery_report()
            .entries,
        3
    );
}

/// A callback that runs retention (the natural "checkpoint durable, cut
/// before it") while another thread's retention syncs: neither waits for
/// the other forever.
#[test]
fn a_callback_may_run_retention() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default()
        .segment_size(8 << 10)
        .sync_mode(SyncMode::Async {
            interval_ms: 3_600_000,
        });
    let wal = Arc::new(Wal::open(dir.path(), cfg).unwrap());
    let filler = vec![b'x'; 900];
    for i in 0..40 {
        wal.append_txn(run(1), i, &one(&filler)).unwrap();
    }
    let ck = wal
        .checkpoint(Uuid::from_u128(1), 1, &[])
        .map(|p| p.lsn)
        .unwrap();
    let ck_end = wal.end_lsn();
    let (done, was_done) = mpsc::channel();
    let w = wal.clone();
    wal.on_durable(durability::End(ck_end), move |r| {
        r.unwrap();
        let removed = w.purge_to_checkpoint(ck);
        drop(w);
        done.send(removed).unwrap();
    });
    // This retention's sync makes the checkpoint durable.
    let (here, was_here) = mpsc::channel();
    let w = wal.clone();
    std::thread::spawn(move || {
        let removed = w.purge_to_checkpoint(ck);
        drop(w);
        here.send(removed).unwrap();
    });
    let removed_here = within("retention beside a callback", &was_here).unwrap();
    let removed_there = within("retention inside a callback", &was_done).unwrap();
    assert!(removed_here + removed_there > 0);
    Arc::try_unwrap(wal).unwrap().close().unwrap();
}

/// A callback that blocks never holds up the syncs of Batched and Async
/// modes: the power-loss window stays what the mode promises.
#[test]
fn a_blocked_callback_never_delays_a_sync() {
    for mode in [
        SyncMode::Async { interval_ms: 5 },
        SyncMode::Batched {
            interval_ms: 5,
            batch_size: 1_000,
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::default().segment_size(64 << 10).sync_mode(mode);
        let wal = Wal::open(dir.path(), cfg).unwrap();
        let first = wal.append_txn(run(1), 1, &one(b"a")).unwrap();
        let (started, has_started) = mpsc::channel();
        let (release, wait_release) = mpsc::channel::<()>();
        wal.on_durable(first, move |_| {
            started.send(()).unwrap();
            let _ = wait_release.recv();
        });
        within("the first callback", &has_started);
        let second = wal.append_txn(run(1), 2, &one(b"b")).unwrap();
        wait_for("a sync while a callback blocks", || {
            wal.durable_lsn() >= second.end
        });
        release.send(()).unwrap();
        wal.close().unwrap();
    }
}
