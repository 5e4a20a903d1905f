//! What replication needs of the log, usable without Raft: suffix
//! truncation that never rewrites a published byte, appends that do not
//! wait for durability with a way to be told when they are durable, batch
//! appends, purging below an LSN, and the metadata file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durability::format::frame::frame_len;
use durability::{
    BorrowedEntry, Config, EntryKind, Error, Op, RunId, SyncMode, Wal, WalEntry, WalReader,
};

fn run(n: u8) -> RunId {
    RunId::from_bytes([n; 16])
}

fn cfg(mode: SyncMode) -> Config {
    Config::default().segment_size(64 << 10).sync_mode(mode)
}

fn put<'a>(key: &'a [u8], value: &'a [u8]) -> Op<'a> {
    Op::Write {
        key,
        value,
        version: 1,
    }
}

/// `(run, txn id)` of every committed transaction replay delivers.
fn committed(wal: &Wal) -> Vec<(RunId, u64)> {
    let mut out = Vec::new();
    wal.replay(|t| out.push((t.run_id, t.txn_id.unwrap_or(u64::MAX))))
        .unwrap();
    out
}

fn committed_in(reader: &WalReader) -> Vec<(RunId, u64)> {
    let mut out = Vec::new();
    reader
        .replay(|t| out.push((t.run_id, t.txn_id.unwrap_or(u64::MAX))))
        .unwrap();
    out
}

/// Every LSN the log's iterator yields.
fn lsns(wal: &Wal) -> Vec<u64> {
    wal.snapshot().iter().map(|e| e.unwrap().lsn).collect()
}

#[test]
fn a_truncated_suffix_is_gone_for_every_reader_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (run(1), run(2));
    let mut cut = 0;
    {
        let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
        for i in 0..10u64 {
            let r = if i % 2 == 0 { a } else { b };
            let pos = wal
                .append_txn(r, i, &[put(b"k", &i.to_le_bytes())])
                .unwrap();
            if i == 6 {
                cut = pos.begin;
            }
        }
        let before = wal.snapshot();
        let before_len = before.iter().count();
        let tail_from_cut = wal.tail(cut);
        let end = wal.truncate_from(cut).map(|p| p.end).unwrap();
        assert_eq!(end, wal.end_lsn());
        // The snapshot taken before still reads everything it read.
        assert_eq!(before.iter().count(), before_len);
        assert!(before.truncated().is_empty());
        // Every read after it skips the deleted entries.
        let want: Vec<(RunId, u64)> = (0..6)
            .map(|i| (if i % 2 == 0 { a } else { b }, i))
            .collect();
        assert_eq!(committed(&wal), want);
        let snap = wal.snapshot();
        assert!(snap.is_truncated(cut));
        assert!(matches!(snap.read_at(cut), Err(Error::BadLsn { .. })));
        let record = end - frame_len(&BorrowedEntry::Truncate { from: cut }) as u64;
        assert!(lsns(&wal).iter().all(|&l| l < cut || l >= record));
        assert_eq!(snap.truncated(), &[(cut, record)]);
        // Inspection tools still see every frame, deleted ones included.
        assert_eq!(snap.iter_all().count(), before_len + 1);
        assert!(snap.iter_all().any(|e| e.unwrap().lsn == cut));
        let mut runs_a = Vec::new();
        wal.replay_run(a, |t| runs_a.push(t.txn_id.unwrap()))
            .unwrap();
        assert_eq!(runs_a, vec![0, 2, 4]);
        // A tail at a deleted position goes on from the truncation record.
        let mut tail = tail_from_cut;
        let (lsn, e) = tail.poll().unwrap().unwrap();
        assert_eq!(e, WalEntry::Truncate { from: cut });
        assert!(lsn > cut);
        assert!(tail.poll().unwrap().is_none());
        // New entries after the truncation are read.
        wal.append_txn(a, 100, &[put(b"k", b"new")]).unwrap();
        let mut want2 = want.clone();
        want2.push((a, 100));
        assert_eq!(committed(&wal), want2);
        // A read-only open in this process (the writer's view) agrees.
        let reader = WalReader::open(dir.path(), Config::default()).unwrap();
        assert_eq!(committed_in(&reader), want2);
    }
    // After reopen (and in a reader with no writer: a scan) too.
    let reader = WalReader::open(dir.path(), Config::default()).unwrap();
    let mut want = committed_in(&reader);
    assert_eq!(want.len(), 7);
    assert!(reader.snapshot().is_truncated(cut));
    drop(reader);
    let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
    assert_eq!(committed(&wal), want);
    assert!(matches!(
        wal.snapshot().read_at(cut),
        Err(Error::BadLsn { .. })
    ));
    wal.append_txn(b, 200, &[put(b"k", b"x")]).unwrap();
    want.push((b, 200));
    assert_eq!(committed(&wal), want);
}

#[test]
fn truncations_nest_and_runs_forget_what_they_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::Async { interval_ms: 10 })).unwrap();
    let only_deleted = run(9);
    let p0 = wal.append_txn(run(1), 0, &[put(b"a", b"0")]).unwrap();
    let p1 = wal.append_txn(only_deleted, 1, &[put(b"a", b"1")]).unwrap();
    let p2 = wal.append_txn(run(1), 2, &[put(b"a", b"2")]).unwrap();
    assert!(wal.runs().contains(&only_deleted));
    wal.truncate_from(p2.begin).unwrap();
    let p3 = wal.append_txn(run(1), 3, &[put(b"a", b"3")]).unwrap();
    // This one swallows the first truncation and what followed it.
    wal.truncate_from(p1.begin).unwrap();
    assert_eq!(committed(&wal), vec![(run(1), 0)]);
    assert!(!wal.runs().contains(&only_deleted));
    assert_eq!(wal.diff_runs(run(1), only_deleted).unwrap().len(), 1);
    for lsn in [p1.begin, p2.begin, p3.begin] {
        assert!(wal.snapshot().is_truncated(lsn), "{lsn}");
    }
    assert!(!wal.snapshot().is_truncated(p0.begin));
    // The end is no entry to delete; a position inside an entry is refused.
    let end = wal.end_lsn();
    assert_eq!(wal.truncate_from(end).unwrap().end, end);
    assert!(matches!(
        wal.truncate_from(p0.begin + 1),
        Err(Error::BadLsn { .. })
    ));
    assert!(matches!(
        wal.truncate_from(p2.begin),
        Err(Error::BadLsn { .. })
    ));
    assert!(matches!(
        wal.append(&WalEntry::Truncate { from: 0 }),
        Err(Error::InvalidArgument { .. })
    ));
    wal.close().unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
    assert_eq!(committed(&wal), vec![(run(1), 0)]);
    assert!(!wal.runs().contains(&only_deleted));
}

#[test]
fn a_truncation_inside_a_transaction_leaves_it_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
    let r = run(3);
    wal.append(&WalEntry::BeginTxn {
        txn_id: 1,
        run_id: r,
        timestamp: 0,
    })
    .unwrap();
    let w = wal
        .append(&WalEntry::Write {
            run_id: r,
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            version: 1,
        })
        .map(|p| p.lsn)
        .unwrap();
    wal.append(&WalEntry::CommitTxn {
        txn_id: 1,
        run_id: r,
    })
    .unwrap();
    wal.truncate_from(w).unwrap();
    let stats = wal
        .replay(|_| panic!("nothing committed survives"))
        .unwrap();
    assert_eq!(stats.incomplete, 1);
    drop(wal);
    let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
    let stats = wal
        .replay(|_| panic!("nothing committed survives"))
        .unwrap();
    assert_eq!(stats.incomplete, 1);
}

#[test]
fn purge_before_removes_whole_segments_below_an_lsn_only() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        Config::default()
            .segment_size(16 << 10)
            .sync_mode(SyncMode::Async { interval_ms: 10 }),
    )
    .unwrap();
    let value = [5u8; 1000];
    let mut pos = Vec::new();
    for i in 0..100u64 {
        pos.push(wal.append_txn(run(1), i, &[put(b"k", &value)]).unwrap());
    }
    let limit = pos[50].begin;
    let removed = wal.purge_before(limit).unwrap();
    assert!(removed > 0);
    // The log starts at the limit (the purge mark), though the segment
    // holding it also holds entries below it.
    assert_eq!(wal.start_lsn(), limit);
    // Everything from the limit on is still read, nothing below it.
    let got = committed(&wal);
    assert_eq!(got.first().unwrap().1, 50);
    assert_eq!(got.last().unwrap().1, 99);
    // A tail pins the segments it has yet to read; the purge mark passes
    // it, and the tail says so once before going on from the new start.
    let mut tail = wal.tail(pos[60].begin);
    wal.purge_before(pos[90].begin).unwrap();
    assert_eq!(wal.start_lsn(), pos[90].begin);
    let e = tail.poll().unwrap_err();
    assert!(e.to_string().contains("purged"), "{e}");
    assert_eq!(tail.poll().unwrap().unwrap().0, pos[90].begin);
    drop(tail);
    wal.purge_before(wal.end_lsn()).unwrap();
    // Never the last segment; but every entry is purged.
    assert!(wal.stats().segments >= 1);
    assert!(committed(&wal).is_empty());
}

#[test]
fn a_batch_is_one_contiguous_unit_with_computable_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
    let r = run(4);
    let entries = [
        BorrowedEntry::Raft {
            index: 1,
            term: 1,
            data: b"blank",
        },
        BorrowedEntry::BeginTxn {
            txn_id: 7,
            run_id: r,
            timestamp: 0,
        },
        BorrowedEntry::Write {
            run_id: r,
            key: b"k",
            value: b"v",
            version: 0,
        },
        BorrowedEntry::CommitTxn {
            txn_id: 7,
            run_id: r,
        },
    ];
    let syncs = wal.stats().syncs;
    let pos = wal.append_batch(&entries).unwrap();
    assert_eq!(wal.stats().syncs, syncs + 1, "one sync for the batch");
    assert!(wal.durable_lsn() >= pos.end);
    let snap = wal.snapshot();
    let mut lsn = pos.first;
    for e in &entries {
        let got = snap.read_at(lsn).unwrap();
        assert_eq!(got.entry.as_borrowed(), *e);
        lsn += frame_len(e) as u64;
    }
    assert_eq!(lsn, pos.end);
    let raft = snap.read_at(pos.first).unwrap();
    assert_eq!(raft.entry.kind(), EntryKind::Raft);
    assert_eq!(raft.entry.raft(), Some((1, 1, &b"blank"[..])));
    // The transaction after the Raft entry is a run's transaction.
    let mut seen = Vec::new();
    wal.replay_run(r, |t| seen.push(t.txn_id)).unwrap();
    assert_eq!(seen, vec![Some(7)]);
    assert!(matches!(
        wal.append_batch(&[BorrowedEntry::Truncate { from: 0 }]),
        Err(Error::InvalidArgument { .. })
    ));
    let empty = wal.append_batch(&[]).unwrap();
    assert_eq!((empty.first, empty.end), (wal.end_lsn(), wal.end_lsn()));
}

/// Submitted appends never wait; callbacks run in LSN order, each only
/// once a completed sync covers its LSN.
fn callbacks_follow_syncs(mode: SyncMode) {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), cfg(mode)).unwrap());
    let seen = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
    let n = 300u64;
    let done = Arc::new(AtomicU64::new(0));
    for i in 0..n {
        let pos = wal.submit_txn(run(1), i, &[put(b"k", b"v")]).unwrap();
        let (w, seen, done) = (Arc::clone(&wal), Arc::clone(&seen), Arc::clone(&done));
        wal.on_durable(pos, move |r| {
            r.unwrap();
            seen.lock().unwrap().push((pos.end, w.durable_lsn()));
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    let last = wal.end_lsn();
    wal.wait_durable(durability::End(last)).unwrap();
    assert!(wal.durable_lsn() >= last);
    // Every callback whose LSN the sync covered has run by now (the waiter
    // registered last, so it ran last).
    assert_eq!(done.load(Ordering::SeqCst), n);
    let seen = seen.lock().unwrap();
    for w in seen.windows(2) {
        assert!(w[0].0 < w[1].0, "out of order: {w:?}");
    }
    for &(lsn, durable) in seen.iter() {
        assert!(durable >= lsn, "called back at {durable} for {lsn}");
    }
}

#[test]
fn callbacks_follow_syncs_in_strict_mode() {
    callbacks_follow_syncs(SyncMode::Strict);
}

#[test]
fn callbacks_follow_syncs_in_batched_mode() {
    callbacks_follow_syncs(SyncMode::Batched {
        interval_ms: 20,
        batch_size: 50,
    });
}

#[test]
fn callbacks_follow_syncs_in_async_mode() {
    callbacks_follow_syncs(SyncMode::Async { interval_ms: 20 });
}

#[test]
fn a_durable_future_resolves_on_any_executor() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
    let pos = wal.submit_txn(run(1), 1, &[put(b"k", b"v")]).unwrap();
    // A minimal executor: the future's own blocking wait.
    wal.durable(pos).wait().unwrap();
    assert!(wal.durable_lsn() >= pos.end);
    // Already durable: resolves at once.
    wal.durable(pos).wait().unwrap();
    // Past the end when the log closes: it never will be.
    let beyond = wal.durable(durability::End(wal.end_lsn() + 1_000_000));
    let late = Arc::new(Mutex::new(None));
    let l = Arc::clone(&late);
    wal.on_durable(durability::End(wal.end_lsn() + 1), move |r| {
        *l.lock().unwrap() = Some(r)
    });
    wal.close().unwrap();
    assert!(matches!(beyond.wait(), Err(Error::Closed)));
    assert!(matches!(
        late.lock().unwrap().take(),
        Some(Err(Error::Closed))
    ));
}

#[test]
fn submitted_appends_in_strict_mode_are_synced_without_a_caller_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
    let pos = wal.submit_txn(run(1), 1, &[put(b"k", b"v")]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while wal.durable_lsn() < pos.end {
        assert!(std::time::Instant::now() < deadline, "never synced");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn metadata_is_replaced_atomically_and_damage_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
        assert_eq!(wal.meta().unwrap(), None);
        wal.set_meta(b"vote 1").unwrap();
        wal.set_meta(b"vote 2").unwrap();
        assert_eq!(wal.meta().unwrap().as_deref(), Some(&b"vote 2"[..]));
        assert!(matches!(
            wal.set_meta(&vec![0u8; (1 << 20) + 1]),
            Err(Error::InvalidArgument { .. })
        ));
    }
    let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
    assert_eq!(wal.meta().unwrap().as_deref(), Some(&b"vote 2"[..]));
    drop(wal);
    let reader = WalReader::open(dir.path(), Config::default()).unwrap();
    assert_eq!(reader.meta().unwrap().as_deref(), Some(&b"vote 2"[..]));
    // A flipped bit is reported, never read as no metadata.
    let path = dir.path().join(durability::os::meta::META_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(reader.meta(), Err(Error::BadMeta { .. })));
    std::fs::write(&path, &bytes[..10]).unwrap();
    assert!(matches!(reader.meta(), Err(Error::BadMeta { .. })));
}

#[test]
fn a_panicking_callback_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
    let ran = Arc::new(AtomicU64::new(0));
    let a = wal.submit_txn(run(1), 1, &[put(b"k", b"v")]).unwrap();
    wal.on_durable(a, |_| panic!("a callback that panics"));
    let b = wal.submit_txn(run(1), 2, &[put(b"k", b"v")]).unwrap();
    let r = Arc::clone(&ran);
    wal.on_durable(b, move |res| {
        res.unwrap();
        r.fetch_add(1, Ordering::SeqCst);
    });
    wal.wait_durable(b).unwrap();
    // Later notifications still arrive.
    let c = wal.submit_txn(run(1), 3, &[put(b"k", b"v")]).unwrap();
    wal.durable(c).wait().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

/// A recovery report describes the live log: transactions a truncation
/// deleted are not counted, one whose end it deleted is incomplete again,
/// and a reader beside the writer, a reader after it closed and a write
/// reopen all say what replay delivers. Entries count every frame that
/// validated, deleted ones included (they stay until retention).
#[test]
fn the_recovery_report_counts_what_the_truncations_left() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(SyncMode::Strict);
    let wal = Wal::open(dir.path(), c.clone()).unwrap();
    let mut pos = Vec::new();
    for i in 0..6u64 {
        pos.push(wal.append_txn(run(1), i, &[put(b"k", b"v")]).unwrap());
    }
    // Delete two committed transactions.
    wal.truncate_from(pos[4].begin).unwrap();
    // An aborted one, and one whose CommitTxn is deleted: open again.
    let (r2, ts) = (run(2), 0);
    wal.append_entry(BorrowedEntry::BeginTxn {
        txn_id: 6,
        run_id: r2,
        timestamp: ts,
    })
    .unwrap();
    wal.append_entry(BorrowedEntry::AbortTxn {
        txn_id: 6,
        run_id: r2,
    })
    .unwrap();
    wal.append_entry(BorrowedEntry::BeginTxn {
        txn_id: 7,
        run_id: r2,
        timestamp: ts,
    })
    .unwrap();
    let commit = wal
        .append_entry(BorrowedEntry::CommitTxn {
            txn_id: 7,
            run_id: r2,
        })
        .map(|p| p.lsn)
        .unwrap();
    wal.truncate_from(commit).unwrap();
    wal.append_txn(run(3), 9, &[put(b"x", b"y")]).unwrap();
    let replayed = wal.replay(|_| {}).unwrap();
    assert_eq!(
        (replayed.committed, replayed.aborted, replayed.incomplete),
        (5, 1, 1)
    );
    let frames = wal.snapshot().iter_all().count() as u64;
    let check = |what: &str, r: &durability::RecoveryReport| {
        assert_eq!(
            (
                r.committed_txns,
                r.aborted_txns,
                r.incomplete_txns,
                r.entries
            ),
            (
                replayed.committed,
                replayed.aborted,
                replayed.incomplete,
                frames
            ),
            "{what}"
        );
    };
    check(
        "reader beside the writer",
        WalReader::open(dir.path(), &c).unwrap().recovery_report(),
    );
    wal.close().unwrap();
    check(
        "reader after close",
        WalReader::open(dir.path(), &c).unwrap().recovery_report(),
    );
    let wal = Wal::open(dir.path(), c).unwrap();
    check("write reopen", wal.recovery_report());
    wal.close().unwrap();
}

/// A batch of several entries is one unit in one segment: one larger than
/// a segment is refused whole, before anything is written.
#[test]
fn a_batch_larger_than_a_segment_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
    let value = vec![b'x'; 15 << 10];
    let entries: Vec<BorrowedEntry<'_>> = (0..4)
        .map(|i| BorrowedEntry::Write {
            run_id: run(1),
            key: b"k",
            value: &value,
            version: i,
        })
        .collect();
    let end = wal.end_lsn();
    match wal.append_batch(&entries) {
        Err(Error::BatchTooLarge { len, max }) => assert!(len > max),
        other => panic!("{other:?}"),
    }
    assert_eq!(wal.end_lsn(), end);
    // Each one alone, or three together, fit.
    wal.append_batch(&entries[..1]).unwrap();
    wal.append_batch(&entries[..3]).unwrap();
    wal.close().unwrap();
}

/// The position a submit returns resolves durability at the entry's end:
/// a future for it stays pending while only the entry's start is durable,
/// and resolves once a sync covers its last byte.
#[test]
fn durability_of_a_submitted_entry_waits_for_its_end() {
    use std::future::Future;
    use std::task::{Context, Waker};
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        cfg(SyncMode::Async {
            interval_ms: 3_600_000,
        }),
    )
    .unwrap();
    wal.append_txn(run(1), 1, &[put(b"k", b"v")]).unwrap();
    wal.sync().unwrap();
    let pos = wal
        .submit_entry(BorrowedEntry::CommitTxn {
            txn_id: 1,
            run_id: run(1),
        })
        .unwrap();
    assert!(pos.lsn > 0 && pos.end > pos.lsn);
    // Make the entry's start durable, and nothing more.
    wal.wait_durable(durability::End(pos.lsn)).unwrap();
    assert!(wal.durable_lsn() >= pos.lsn && wal.durable_lsn() < pos.end);
    let mut fut = wal.durable(pos);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..3 {
        assert!(
            std::pin::Pin::new(&mut fut).poll(&mut cx).is_pending(),
            "resolved before the entry's end was durable"
        );
        std::thread::yield_now();
    }
    wal.sync().unwrap();
    fut.wait().unwrap();
    assert!(wal.durable_lsn() >= pos.end);
    wal.close().unwrap();
}
