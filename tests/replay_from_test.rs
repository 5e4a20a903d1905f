//! Replay from a position, with callbacks that fail or stop (DESIGN.md §9,
//! "Replay from a position"), and the last checkpoint.
//!
//! The reported case: a user rebuilding state from a checkpoint stored the
//! checkpoint's LSN with `set_meta` and skipped earlier commits by hand,
//! and replay had no start, no stop and no error. What must hold: a replay
//! from `lsn` delivers exactly the transactions a whole replay delivers
//! whose commit lies at or after `lsn`, each whole (one open when a
//! checkpoint was taken included), reading before `lsn` only what the
//! transactions open there need; a callback's `Break` stops it and says
//! where; a callback's error comes back as it was returned.
//!
//! `replay_from_matches_the_filtered_whole_replay_on_random_logs` checks
//! it against that model on seeded random logs, for every position.

mod common;

use std::fs::OpenOptions;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{run, Rng};
use durability::{
    BorrowedEntry, Config, EntryKind, Error, Lsn, Op, ReplayStats, Replayer, RunId, SyncMode, Txn,
    Wal, WalReader,
};
use uuid::Uuid;

/// Small segments, so a few hundred entries span many; a fixed log id, so
/// every run of a seed writes the same bytes.
fn cfg() -> Config {
    Config::default()
        .segment_size(8 << 10)
        .sync_mode(SyncMode::Async { interval_ms: 1_000 })
        .instance_id(Uuid::from_u128(0x5EED_0000_0000_4000_8000_0000_0000_00F5))
}

/// An op as delivered: its LSN, kind, key and value.
type GotOp = (Lsn, EntryKind, Vec<u8>, Option<Vec<u8>>);

/// A transaction as delivered, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    run: RunId,
    txn_id: Option<u64>,
    timestamp: Option<u64>,
    begin: Lsn,
    commit: Lsn,
    ops: Vec<GotOp>,
}

fn got(t: &Txn<'_, '_>) -> Got {
    Got {
        run: t.run_id,
        txn_id: t.txn_id,
        timestamp: t.timestamp,
        begin: t.begin_lsn,
        commit: t.commit_lsn,
        ops: t
            .ops
            .iter()
            .map(|op| {
                (
                    op.lsn,
                    op.entry.kind(),
                    op.entry.key().unwrap_or_default().to_vec(),
                    op.entry.value().map(<[u8]>::to_vec),
                )
            })
            .collect(),
    }
}

fn collect(r: Replayer<'_>) -> (Vec<Got>, ReplayStats) {
    let mut out = Vec::new();
    let stats = r.for_each(|t| out.push(got(t))).unwrap();
    (out, stats)
}

fn ids(txns: &[Got]) -> Vec<Option<u64>> {
    txns.iter().map(|t| t.txn_id).collect()
}

fn put<'a>(key: &'a [u8], value: &'a [u8]) -> Op<'a> {
    Op::Write {
        key,
        value,
        version: 1,
    }
}

fn begin(wal: &Wal, r: RunId, txn_id: u64) -> Lsn {
    wal.append_entry(BorrowedEntry::BeginTxn {
        txn_id,
        run_id: r,
        timestamp: txn_id * 10,
    })
    .unwrap()
    .lsn
}

fn write(wal: &Wal, r: RunId, key: &[u8]) -> Lsn {
    wal.append_entry(BorrowedEntry::Write {
        run_id: r,
        key,
        value: b"v",
        version: 1,
    })
    .unwrap()
    .lsn
}

fn commit(wal: &Wal, r: RunId, txn_id: u64) -> Lsn {
    wal.append_entry(BorrowedEntry::CommitTxn { txn_id, run_id: r })
        .unwrap()
        .lsn
}

// A replay may be set up on one thread and run on another.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Replayer<'static>>();
};

/// Every live entry's LSN, in order.
fn live(wal: &Wal) -> Vec<Lsn> {
    wal.snapshot().iter().map(|e| e.unwrap().lsn).collect()
}

#[test]
fn a_transaction_open_at_the_checkpoint_is_delivered_whole() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let (a, b) = (run(1), run(2));
    wal.append_txn(a, 1, &[put(b"x", b"1")]).unwrap();
    let b_begin = begin(&wal, b, 7);
    let b_write = write(&wal, b, b"before");
    let cp = wal.checkpoint(Uuid::from_u128(1), 1, &[]).unwrap();
    wal.append_txn(a, 2, &[put(b"y", b"2")]).unwrap();
    let b_write2 = write(&wal, b, b"after");
    let b_commit = commit(&wal, b, 7);

    let last = wal.last_checkpoint().unwrap().expect("a checkpoint");
    assert_eq!(last.lsn, cp.lsn);
    let snap = wal.snapshot();
    for r in [wal.replayer(), snap.replayer()] {
        let (txns, stats) = collect(r.from_checkpoint(&last));
        assert_eq!(ids(&txns), [Some(2), Some(7)]);
        let t7 = &txns[1];
        assert_eq!((t7.begin, t7.commit), (b_begin, b_commit));
        let lsns: Vec<Lsn> = t7.ops.iter().map(|o| o.0).collect();
        assert_eq!(lsns, [b_write, b_write2], "delivered whole");
        assert_eq!(stats.start_lsn, cp.lsn);
        assert_eq!((stats.committed, stats.incomplete), (2, 0));
    }
    // One run's part: the same transaction, whole.
    let (txns, _) = collect(wal.replayer().from(cp.lsn).run(b));
    assert_eq!(ids(&txns), [Some(7)]);
    assert_eq!(txns[0].ops.len(), 2);
}

#[test]
fn nothing_committed_before_from_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let a = run(1);
    let pos: Vec<_> = (1..=5)
        .map(|i| wal.append_txn(a, i, &[put(b"k", b"v")]).unwrap())
        .collect();
    for (k, p) in pos.iter().enumerate() {
        for from in [p.begin, p.commit] {
            let (txns, stats) = collect(wal.replayer().from(from));
            let want: Vec<_> = (k as u64 + 1..=5).map(Some).collect();
            assert_eq!(ids(&txns), want, "from {from}");
            assert_eq!(stats.start_lsn, from);
        }
        // Just past the commit: that transaction is not delivered.
        let (txns, stats) = collect(wal.replayer().from(p.commit + 1));
        assert_eq!(txns.len(), 4 - k);
        assert_eq!(stats.start_lsn, p.end);
    }
}

#[test]
fn from_below_the_start_is_the_start_and_a_cut_transaction_is_never_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let (a, b) = (run(1), run(2));
    wal.append_txn(a, 1, &[put(b"k", b"v")]).unwrap();
    begin(&wal, b, 5);
    write(&wal, b, b"cut");
    let mark = wal.append_txn(a, 2, &[put(b"k", b"v")]).unwrap().begin;
    write(&wal, b, b"cut too");
    let after = wal.append_txn(a, 3, &[put(b"k", b"v")]).unwrap().begin;
    commit(&wal, b, 5);
    wal.purge_before(mark).unwrap();
    assert_eq!(wal.start_lsn(), mark);

    let snap = wal.snapshot();
    for from in [0, 1, mark - 1, mark] {
        for r in [wal.replayer(), snap.replayer()] {
            let (txns, stats) = collect(r.from(from));
            assert_eq!(ids(&txns), [Some(2), Some(3)], "from {from}");
            assert_eq!(stats.start_lsn, mark);
            assert!(stats.purged);
            assert_eq!(stats.begun_before_start, 1);
        }
        let (txns, stats) = collect(wal.replayer().from(from).run(b));
        assert!(txns.is_empty());
        assert_eq!(stats.begun_before_start, 1);
    }
    // From past the mark, the cut transaction is still never delivered,
    // whichever way the open transactions are found.
    for r in [wal.replayer(), snap.replayer()] {
        let (txns, stats) = collect(r.from(after));
        assert_eq!(ids(&txns), [Some(3)]);
        assert_eq!(stats.begun_before_start, 1, "it ends after `after`");
    }
    let (txns, _) = collect(wal.replayer().from(after).run(b));
    assert!(txns.is_empty());
}

#[test]
fn from_at_or_past_the_end_delivers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let a = run(1);
    wal.append_txn(a, 1, &[put(b"k", b"v")]).unwrap();
    begin(&wal, a, 2);
    write(&wal, a, b"open");
    let end = wal.end_lsn();
    let snap = wal.snapshot();
    for from in [end, end + 1, Lsn::MAX] {
        for r in [wal.replayer(), snap.replayer(), wal.replayer().run(a)] {
            let (txns, stats) = collect(r.from(from));
            assert!(txns.is_empty());
            assert_eq!(stats.start_lsn, end);
            assert_eq!((stats.entries, stats.committed), (0, 0));
            // Transaction 2 never ends: in the replay's scope, incomplete.
            assert_eq!(stats.incomplete, 1);
        }
    }
}

#[test]
fn from_inside_an_entry_starts_at_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let a = run(1);
    let one = wal.append_txn(a, 1, &[put(b"k", b"v")]).unwrap();
    let two = wal.append_txn(a, 2, &[put(b"k", b"v")]).unwrap();
    for from in one.commit + 1..one.end {
        let (txns, stats) = collect(wal.replayer().from(from));
        assert_eq!(ids(&txns), [Some(2)]);
        assert_eq!(stats.start_lsn, two.begin);
    }
    for from in one.begin + 1..one.commit {
        let (txns, stats) = collect(wal.replayer().from(from));
        assert_eq!(
            ids(&txns),
            [Some(1), Some(2)],
            "transaction 1 commits at or after {from}"
        );
        assert!(stats.start_lsn >= from && stats.start_lsn <= one.commit);
    }
}

#[test]
fn from_inside_a_truncated_range_starts_at_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let a = run(1);
    wal.append_txn(a, 1, &[put(b"k", b"v")]).unwrap();
    begin(&wal, a, 2);
    write(&wal, a, b"kept");
    let cut = write(&wal, a, b"deleted");
    commit(&wal, a, 2);
    let record = wal.truncate_from(cut).unwrap().lsn;
    write(&wal, a, b"more");
    commit(&wal, a, 2);
    let snap = wal.snapshot();
    for from in [cut, cut + 1, record - 1] {
        for r in [wal.replayer(), snap.replayer()] {
            let (txns, stats) = collect(r.from(from));
            assert_eq!(stats.start_lsn, record, "from {from}");
            // Transaction 2 lost its first commit to the truncation and
            // commits again after it: delivered whole, without the deleted
            // write.
            assert_eq!(ids(&txns), [Some(2)]);
            let keys: Vec<&[u8]> = txns[0].ops.iter().map(|o| &o.2[..]).collect();
            assert_eq!(keys, [&b"kept"[..], b"more"]);
        }
    }
}

#[test]
fn a_break_stops_the_replay_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let a = run(1);
    let pos: Vec<_> = (1..=4)
        .map(|i| wal.append_txn(a, i, &[put(b"k", b"v")]).unwrap())
        .collect();
    begin(&wal, a, 9);
    let mut seen = Vec::new();
    let stats = wal
        .replayer()
        .try_for_each(|t| {
            seen.push(t.txn_id);
            Ok::<_, Error>(if t.txn_id == Some(2) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })
        .unwrap();
    assert_eq!(seen, [Some(1), Some(2)]);
    assert_eq!(stats.stopped_at, Some(pos[1].commit));
    assert_eq!(stats.committed, 2);
    assert_eq!(stats.incomplete, 0, "nothing was read past the stop");
    let (rest, stats) = collect(wal.replayer().from(pos[1].commit + 1));
    assert_eq!(ids(&rest), [Some(3), Some(4)]);
    assert_eq!(stats.stopped_at, None);
    assert_eq!(stats.incomplete, 1);
}

#[derive(Debug, PartialEq)]
enum Mine {
    Log(String),
    Refused(u64),
}

impl From<Error> for Mine {
    fn from(e: Error) -> Self {
        Mine::Log(e.to_string())
    }
}

#[test]
fn a_callback_error_is_returned_as_is_and_nothing_more_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let a = run(1);
    for i in 1..=4 {
        wal.append_txn(a, i, &[put(b"k", b"v")]).unwrap();
    }
    let snap = wal.snapshot();
    for r in [
        wal.replayer(),
        wal.replayer().run(a),
        snap.replayer().from(1),
    ] {
        let mut calls = 0;
        let err = r
            .try_for_each(|t| {
                calls += 1;
                match t.txn_id {
                    Some(3) => Err(Mine::Refused(3)),
                    _ => Ok(ControlFlow::Continue(())),
                }
            })
            .unwrap_err();
        assert_eq!(err, Mine::Refused(3));
        assert_eq!(calls, 3);
    }
}

/// Damages the frame at `lsn` of the live log: its CRC no longer matches,
/// so any read of it fails, as disk damage under a live map would make it.
/// (No snapshot may be alive while this runs.)
fn damage(dir: &Path, wal: &Wal, lsn: Lsn) {
    let snap = wal.snapshot();
    let e = snap.read_at(lsn).unwrap();
    let (seq, at) = (e.segment, (e.offset + e.len - 1) as u64);
    drop(snap);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(format!("{seq:020}.wal")))
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0xFF], at).unwrap();
}

#[test]
fn a_read_error_comes_back_converted_into_the_callers_error() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let a = run(1);
    wal.append_txn(a, 1, &[put(b"k", b"v")]).unwrap();
    let bad = wal.append_txn(a, 2, &[put(b"k", b"v")]).unwrap();
    damage(dir.path(), &wal, bad.begin);
    let mut calls = 0;
    let err = wal
        .replayer()
        .try_for_each(|_| {
            calls += 1;
            Ok::<_, Mine>(ControlFlow::Continue(()))
        })
        .unwrap_err();
    assert!(
        matches!(&err, Mine::Log(m) if m.contains("checksum mismatch")),
        "{err:?}"
    );
    assert_eq!(calls, 1);
    assert!(matches!(
        wal.replayer().for_each(|_| {}),
        Err(Error::Checksum { .. })
    ));
}

/// Appends transactions of `r` until the log has moved to a new segment;
/// returns the last one's position.
fn fill_a_segment(wal: &Wal, r: RunId, first_id: u64) -> u64 {
    let seg = wal.stats().segments;
    let mut id = first_id;
    while wal.stats().segments == seg {
        wal.append_txn(r, id, &[put(b"filler", &[7u8; 200])])
            .unwrap();
        id += 1;
    }
    id
}

#[test]
fn a_replay_from_a_position_and_the_last_checkpoint_do_not_read_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let (a, b) = (run(1), run(2));
    let early = wal.append_txn(a, 1, &[put(b"k", b"v")]).unwrap();
    let mut id = fill_a_segment(&wal, b, 100);
    id = fill_a_segment(&wal, b, id);
    let cp = wal.checkpoint(Uuid::from_u128(9), 1, &[]).unwrap();
    wal.append_txn(a, 2, &[put(b"k", b"v")]).unwrap();
    wal.append_txn(b, id, &[put(b"k", b"v")]).unwrap();
    damage(dir.path(), &wal, early.begin);
    assert!(
        wal.replay(|_| {}).is_err(),
        "the whole log reads the damage"
    );

    let found = wal.last_checkpoint().unwrap().expect("found from the end");
    assert_eq!(found.lsn, cp.lsn);
    let snap = wal.snapshot();
    for r in [wal.replayer(), snap.replayer(), wal.replayer().run(a)] {
        let (txns, stats) = collect(r.from_checkpoint(&found));
        assert!(!txns.is_empty() && stats.start_lsn == cp.lsn);
    }
}

#[test]
fn a_replay_from_a_position_reads_each_run_back_only_to_its_last_begin() {
    // One segment, no clean boundary between the damage and the position:
    // a replay without the run index (a snapshot's) reads the damage; the
    // log's reads each run's stretches back to its last BeginTxn only.
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let (a, b) = (run(1), run(2));
    let a1 = wal.append_txn(a, 1, &[put(b"k", b"1")]).unwrap();
    let b1 = wal.append_txn(b, 1, &[put(b"k", b"1")]).unwrap();
    let a2 = begin(&wal, a, 2);
    write(&wal, a, b"a2 before");
    wal.append_txn(b, 2, &[put(b"k", b"2")]).unwrap();
    let from = wal.end_lsn();
    write(&wal, a, b"a2 after");
    commit(&wal, a, 2);
    wal.append_txn(b, 3, &[put(b"k", b"3")]).unwrap();
    assert_eq!(wal.stats().segments, 1);
    let want = {
        let (all, _) = collect(wal.replayer());
        all.into_iter()
            .filter(|t| t.commit >= from)
            .collect::<Vec<_>>()
    };
    assert_eq!(want.len(), 2);
    assert_eq!(want[0].begin, a2);
    damage(dir.path(), &wal, a1.commit);
    damage(dir.path(), &wal, b1.begin);

    let (txns, _) = collect(wal.replayer().from(from));
    assert_eq!(txns, want);
    let (txns, _) = collect(wal.replayer().from(from).run(a));
    assert_eq!(txns, want[..1]);
    assert!(wal
        .snapshot()
        .replayer()
        .from(from)
        .for_each(|_| {})
        .is_err());
}

#[test]
fn last_checkpoint_skips_truncated_and_purged_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let a = run(1);
    assert_eq!(wal.last_checkpoint().unwrap(), None);
    let first = wal.checkpoint(Uuid::from_u128(1), 1, &[a]).unwrap();
    let id = fill_a_segment(&wal, a, 1);
    let second = wal.checkpoint(Uuid::from_u128(2), 2, &[]).unwrap();
    let cp = wal.last_checkpoint().unwrap().unwrap();
    assert_eq!((cp.lsn, cp.version), (second.lsn, 2));
    // A truncation deletes the second: the first is the last again.
    wal.truncate_from(second.lsn).unwrap();
    wal.append_txn(a, id, &[put(b"k", b"v")]).unwrap();
    let cp = wal.last_checkpoint().unwrap().unwrap();
    assert_eq!(cp.lsn, first.lsn);
    assert_eq!((cp.snapshot_id, cp.version), (Uuid::from_u128(1), 1));
    assert_eq!(cp.active_runs, [a]);
    // A purge past it: none is left.
    wal.purge_before(first.lsn + 1).unwrap();
    assert_eq!(wal.last_checkpoint().unwrap(), None);
    // The same from a reader of the files.
    wal.close().unwrap();
    let reader = WalReader::open(dir.path(), cfg()).unwrap();
    assert_eq!(reader.last_checkpoint().unwrap(), None);
}

// ---------------------------------------------------------------------------
// The model: random logs, every position.

/// A random log of three interleaved runs: transactions whole and entry by
/// entry (left open, aborted, ended by a wrong id, replaced), standalone
/// writes and deletes, batches, checkpoints, retention, purges and suffix
/// truncations.
fn random_log(rng: &mut Rng, dir: &Path) -> Wal {
    let wal = Wal::open(dir, cfg()).unwrap();
    let runs = [run(1), run(2), run(3)];
    let mut current = [0u64; 3];
    let mut next_id = 1;
    for _ in 0..rng.range(50, 240) {
        let i = rng.below(3) as usize;
        let r = runs[i];
        let key = format!("k{}", rng.below(6)).into_bytes();
        let len = rng.range(10, 300) as usize;
        let value = rng.text(len);
        match rng.below(100) {
            0..=17 => {
                let n = rng.range(1, 4) as usize;
                let ops: Vec<Op<'_>> = (0..n).map(|_| put(&key, &value)).collect();
                wal.append_txn(r, next_id, &ops).unwrap();
                next_id += 1;
            }
            18..=32 => {
                current[i] = next_id;
                next_id += 1;
                let _ = wal
                    .append_entry(BorrowedEntry::BeginTxn {
                        txn_id: current[i],
                        run_id: r,
                        timestamp: rng.next() >> 1,
                    })
                    .unwrap();
            }
            33..=57 => {
                let e = if rng.chance(80) {
                    BorrowedEntry::Write {
                        run_id: r,
                        key: &key,
                        value: &value,
                        version: rng.below(100),
                    }
                } else {
                    BorrowedEntry::Delete {
                        run_id: r,
                        key: &key,
                        version: rng.below(100),
                    }
                };
                wal.append_entry(e).unwrap();
            }
            58..=69 => {
                let txn_id = if rng.chance(90) {
                    current[i]
                } else {
                    next_id + 7
                };
                wal.append_entry(BorrowedEntry::CommitTxn { txn_id, run_id: r })
                    .unwrap();
            }
            70..=75 => {
                wal.append_entry(BorrowedEntry::AbortTxn {
                    txn_id: current[i],
                    run_id: r,
                })
                .unwrap();
            }
            76..=80 => {
                let batch = [
                    BorrowedEntry::Write {
                        run_id: r,
                        key: &key,
                        value: &value,
                        version: 1,
                    },
                    BorrowedEntry::Delete {
                        run_id: r,
                        key: b"gone",
                        version: 2,
                    },
                ];
                wal.append_batch(&batch).unwrap();
            }
            81..=86 => {
                let active: &[RunId] = if rng.chance(30) { &runs[i..=i] } else { &[] };
                let cp = wal
                    .checkpoint(Uuid::from_u128(rng.next().into()), 1, active)
                    .unwrap();
                if rng.chance(50) {
                    wal.purge_to_checkpoint(cp.lsn).unwrap();
                }
            }
            87..=89 => {
                // Purge at an entry of the older half, or inside one.
                let lsns = live(&wal);
                if !lsns.is_empty() {
                    let at = lsns[rng.below(lsns.len() as u64 / 2 + 1) as usize];
                    wal.purge_before(at + rng.below(2)).unwrap();
                }
            }
            90..=92 => {
                // Truncate at an entry of the newer half.
                let lsns = live(&wal);
                if !lsns.is_empty() {
                    let n = lsns.len() as u64;
                    let at = lsns[rng.range(n / 2, n) as usize];
                    wal.truncate_from(at).unwrap();
                }
            }
            _ => {
                wal.append_entry(BorrowedEntry::Raft {
                    index: rng.below(1000),
                    term: 1,
                    data: &value,
                })
                .unwrap();
            }
        }
    }
    wal
}

/// Positions worth replaying from: 0, around the start and the end, every
/// live entry's start and the byte after it, and inside deleted ranges.
fn positions(wal_start: Lsn, wal_end: Lsn, lsns: &[Lsn], dead: &[(Lsn, Lsn)]) -> Vec<Lsn> {
    let mut out = vec![
        0,
        wal_start.saturating_sub(1),
        wal_start,
        wal_end.saturating_sub(1),
        wal_end,
        wal_end + 1,
        wal_end + 10_000,
    ];
    for &l in lsns {
        out.extend([l, l + 1]);
    }
    for &(from, at) in dead {
        out.extend([from, from + 1, at.saturating_sub(1)]);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// One way to make a replay of the log under test.
type Make<'a> = (&'a str, Box<dyn Fn() -> Replayer<'a> + 'a>);

/// Checks every replay `makes` gives, from every position and for the
/// whole log and each run, against `whole` filtered by commit LSN; the
/// stats of all of them must agree.
fn check_against_model(
    label: &str,
    rng: &mut Rng,
    makes: &[Make<'_>],
    whole: &[Got],
    (start, end, lsns, dead): (Lsn, Lsn, &[Lsn], &[(Lsn, Lsn)]),
) {
    let runs = [None, Some(run(1)), Some(run(2)), Some(run(3))];
    for from in positions(start, end, lsns, dead) {
        // The start if `from` lies at or below it, else the first live
        // entry at or after `from` (or the end).
        let begins = if from <= start {
            start
        } else {
            lsns.iter().copied().find(|&l| l >= from).unwrap_or(end)
        };
        for only in runs {
            let want: Vec<Got> = whole
                .iter()
                .filter(|t| t.commit >= from && only.is_none_or(|r| t.run == r))
                .cloned()
                .collect();
            let mut first: Option<(&str, ReplayStats)> = None;
            for (name, make) in makes {
                let (txns, stats) = collect(scoped(make(), from, only));
                let at = format!("{label}: {name} from {from} run {only:?}");
                assert_eq!(txns, want, "{at}");
                assert_eq!(stats.start_lsn, begins, "{at}");
                let standalone = want.iter().filter(|t| t.txn_id.is_none()).count() as u64;
                assert_eq!(stats.standalone, standalone, "{at}");
                assert_eq!(stats.committed, want.len() as u64 - standalone, "{at}");
                assert_eq!(stats.stopped_at, None, "{at}");
                match first {
                    None => first = Some((*name, stats)),
                    Some((n, s)) => assert_eq!(stats, s, "{at}: stats differ from {n}'s"),
                }
            }
            if !want.is_empty() && rng.chance(15) {
                check_a_stop(&at_label(label, from, only), rng, makes, &want, from, only);
            }
        }
    }
}

fn at_label(label: &str, from: Lsn, only: Option<RunId>) -> String {
    format!("{label}: from {from} run {only:?}")
}

/// `r` from `from`, of `only` if set.
fn scoped(r: Replayer<'_>, from: Lsn, only: Option<RunId>) -> Replayer<'_> {
    match only {
        Some(run) => r.from(from).run(run),
        None => r.from(from),
    }
}

/// A replay that stops after the k-th transaction delivers exactly the
/// first k and says where; one from just past there delivers the rest. A
/// callback error at the k-th comes back as it was, after k calls.
fn check_a_stop(
    at: &str,
    rng: &mut Rng,
    makes: &[Make<'_>],
    want: &[Got],
    from: Lsn,
    only: Option<RunId>,
) {
    let k = rng.range(1, want.len() as u64 + 1) as usize;
    for (name, make) in makes {
        let mut seen = Vec::new();
        let stats = scoped(make(), from, only)
            .try_for_each(|t| {
                seen.push(got(t));
                Ok::<_, Error>(if seen.len() == k {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            })
            .unwrap();
        assert_eq!(seen, want[..k], "{at} {name}: stop after {k}");
        assert_eq!(stats.stopped_at, Some(want[k - 1].commit), "{at} {name}");
        let (rest, _) = collect(scoped(make(), want[k - 1].commit + 1, only));
        assert_eq!(rest, want[k..], "{at} {name}: resumed");

        let mut calls = 0;
        let err = scoped(make(), from, only)
            .try_for_each(|_| {
                calls += 1;
                if calls == k {
                    Err(Mine::Refused(k as u64))
                } else {
                    Ok(ControlFlow::Continue(()))
                }
            })
            .unwrap_err();
        assert_eq!((err, calls), (Mine::Refused(k as u64), k), "{at} {name}");
    }
}

#[test]
fn replay_from_matches_the_filtered_whole_replay_on_random_logs() {
    let seeds: u64 = std::env::var("REPLAY_FROM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    for seed in 0..seeds {
        let mut rng = Rng::new(seed);
        let dir = tempfile::tempdir().unwrap();
        let wal = random_log(&mut rng, dir.path());
        let label = format!("seed {seed}");

        // The live log: the run index of the writer, and a snapshot's
        // reading without one.
        let (whole, _) = collect(wal.replayer());
        for r in [run(1), run(2), run(3)] {
            let mut one = Vec::new();
            wal.replay_run(r, |t| one.push(got(t))).unwrap();
            let want: Vec<Got> = whole.iter().filter(|t| t.run == r).cloned().collect();
            assert_eq!(one, want, "{label}: replay_run");
        }
        let snap = wal.snapshot();
        let lsns = live(&wal);
        let dead = snap.truncated().to_vec();
        let shape = (snap.start_lsn(), snap.end_lsn(), &lsns[..], &dead[..]);
        let makes: Vec<Make<'_>> = vec![
            ("wal", Box::new(|| wal.replayer())),
            ("snapshot", Box::new(|| snap.replayer())),
        ];
        check_against_model(&label, &mut rng, &makes, &whole, shape);
        drop(makes);
        drop(snap);
        wal.close().unwrap();

        // The files: a reader's scan, and the writer's index rebuilt by
        // recovery.
        let reader = WalReader::open(dir.path(), cfg()).unwrap();
        let (again, _) = collect(reader.replayer());
        assert_eq!(again, whole, "{label}: the reader's whole replay");
        let wal = Wal::open(dir.path(), cfg()).unwrap();
        let (again, _) = collect(wal.replayer());
        assert_eq!(again, whole, "{label}: the reopened log's whole replay");
        let makes: Vec<Make<'_>> = vec![
            ("reopened wal", Box::new(|| wal.replayer())),
            ("reader", Box::new(|| reader.replayer())),
        ];
        check_against_model(
            &format!("{label} reopened"),
            &mut rng,
            &makes,
            &whole,
            shape,
        );
    }
}
