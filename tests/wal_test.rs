//! The log on real files: reopen, rotation, sync modes, concurrency, replay,
//! run diffs, tailing, retention, locking, read-only opens, torn tails.

mod common;

use common::Rng;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use durability::{
    Config, EntryKind, Error, KeyState, Op, ProblemClass, RunId, SyncMode, Wal, WalEntry, WalReader,
};
use uuid::Uuid;

const SEG: u64 = 64 << 10;

fn cfg(mode: SyncMode) -> Config {
    Config::default()
        .segment_size(SEG)
        .max_entry_size(16 << 10)
        .sync_mode(mode)
}

fn run(n: u8) -> RunId {
    RunId::from_bytes([n; 16])
}

fn all_entries(wal: &Wal) -> Vec<WalEntry> {
    entries_in(&wal.snapshot())
}

fn entries_in(snap: &durability::Snapshot) -> Vec<WalEntry> {
    snap.iter().map(|e| e.unwrap().entry.to_owned()).collect()
}

/// Hashes every file in `dir` (name and bytes).
fn hash_dir(dir: &Path) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            let bytes = fs::read(e.path()).unwrap();
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                crc32c::crc32c(&bytes),
            );
        }
    }
    out
}

#[test]
fn reopen_preserves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    {
        let wal = Wal::open(dir.path(), cfg(SyncMode::default())).unwrap();
        for i in 0..50u64 {
            let e = WalEntry::Write {
                run_id: run((i % 3) as u8),
                key: format!("k{i}").into_bytes(),
                value: vec![i as u8; (i * 7) as usize],
                version: i,
            };
            let lsn = wal.append(&e).map(|p| p.lsn).unwrap();
            assert_eq!(wal.snapshot().read_at(lsn).unwrap().entry.to_owned(), e);
            expected.push(e);
        }
        wal.close().unwrap();
    }
    let wal = Wal::open(dir.path(), cfg(SyncMode::default())).unwrap();
    assert_eq!(all_entries(&wal), expected);
    let r = wal.recovery_report();
    assert_eq!(r.entries, 50);
    assert!(r.problem.is_none(), "{:?}", r.problem);
    // And it keeps appending after what was there.
    let e = WalEntry::CommitTxn {
        txn_id: 1,
        run_id: run(1),
    };
    wal.append(&e).unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), cfg(SyncMode::default())).unwrap();
    expected.push(e);
    assert_eq!(all_entries(&wal), expected);
}

#[test]
fn lsns_are_stable_across_reopen_and_read_from_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsns = Vec::new();
    {
        let wal = Wal::open(dir.path(), cfg(SyncMode::Async { interval_ms: 10 })).unwrap();
        for i in 0..2000u64 {
            let lsn = wal
                .append_entry(durability::BorrowedEntry::Write {
                    run_id: run(1),
                    key: &i.to_le_bytes(),
                    value: &[7u8; 100],
                    version: i,
                })
                .map(|p| p.lsn)
                .unwrap();
            lsns.push(lsn);
        }
    }
    let wal = Wal::open(dir.path(), cfg(SyncMode::Async { interval_ms: 10 })).unwrap();
    let snap = wal.snapshot();
    for (i, &lsn) in lsns.iter().enumerate().step_by(97) {
        let e = snap.read_at(lsn).unwrap();
        assert_eq!(e.entry.version(), Some(i as u64));
        let rest: Vec<_> = snap
            .iter_from(lsn)
            .unwrap()
            .map(|e| e.unwrap().lsn)
            .collect();
        assert_eq!(rest, lsns[i..]);
    }
    assert!(
        snap.read_at(lsns[1] + 1).is_err(),
        "an LSN inside a frame is rejected"
    );
    assert!(snap.iter_from(snap.end_lsn() + 1).is_err());
}

#[test]
fn rotation_across_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    let value = vec![0xAB; 1000];
    let n = 1500u64;
    {
        let wal = Wal::open(dir.path(), cfg(SyncMode::Async { interval_ms: 50 })).unwrap();
        for i in 0..n {
            wal.append_txn(
                run((i % 5) as u8),
                i,
                &[Op::Write {
                    key: &i.to_be_bytes(),
                    value: &value,
                    version: i,
                }],
            )
            .unwrap();
        }
        assert!(wal.stats().segments >= 20, "{:?}", wal.stats());
        wal.close().unwrap();
    }
    let wal = Wal::open(dir.path(), cfg(SyncMode::Async { interval_ms: 50 })).unwrap();
    let r = wal.recovery_report().clone();
    assert!(r.segments >= 20);
    assert_eq!(r.committed_txns, n);
    assert_eq!(r.entries, 3 * n);
    let mut seen = 0;
    wal.replay(|t| {
        assert_eq!(t.txn_id, Some(seen));
        assert_eq!(t.ops.len(), 1);
        assert_eq!(t.ops[0].entry.value(), Some(&value[..]));
        seen += 1;
    })
    .unwrap();
    assert_eq!(seen, n);
}

#[test]
fn an_entry_too_large_for_a_segment_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::default())).unwrap();
    let big = vec![1u8; 20 << 10];
    let err = wal
        .append_txn(
            run(1),
            1,
            &[Op::Write {
                key: b"k",
                value: &big,
                version: 1,
            }],
        )
        .unwrap_err();
    assert!(matches!(err, Error::EntryTooLarge { .. }), "{err}");
    // Nothing was written, and the log still works.
    assert_eq!(wal.end_lsn(), 0);
    wal.append_txn(run(1), 2, &[]).unwrap();
    let bad = Config::default()
        .segment_size(SEG)
        .max_entry_size(SEG as u32);
    assert!(matches!(
        Wal::open(tempfile::tempdir().unwrap().path(), bad),
        Err(Error::Config(_))
    ));
}

/// `max_entry_size` limits appends only. A log written with larger entries
/// (a larger limit, or larger segments and the default limit) reads back
/// whole under a smaller one, and a write open with the smaller one keeps
/// every entry; it only refuses new entries above its limit.
#[test]
fn a_smaller_max_entry_size_on_reopen_never_drops_entries() {
    let dir = tempfile::tempdir().unwrap();
    let wide = Config::default()
        .segment_size(1 << 20)
        .sync_mode(SyncMode::Strict);
    let wal = Wal::open(dir.path(), wide).unwrap();
    let big = vec![7u8; 200 << 10];
    for i in 0..3u64 {
        wal.append_txn(
            run(1),
            i,
            &[Op::Write {
                key: b"big",
                value: &big,
                version: i,
            }],
        )
        .unwrap();
        wal.append_txn(run(2), 100 + i, &[]).unwrap();
    }
    let written = all_entries(&wal);
    wal.close().unwrap();

    // Smaller segments: the default limit is then below the entries' size.
    let narrow = cfg(SyncMode::Strict);
    assert!(narrow.effective_max_entry_size() < 200 << 10);
    let reader = WalReader::open(dir.path(), &narrow).unwrap();
    assert!(
        reader.recovery_report().problem.is_none(),
        "{:?}",
        reader.recovery_report().problem
    );
    assert_eq!(entries_in(reader.snapshot()), written);
    drop(reader);
    for strict in [false, true] {
        let c = if strict {
            narrow
                .clone()
                .recovery_mode(durability::RecoveryMode::AbsoluteConsistency)
        } else {
            narrow.clone()
        };
        let wal = Wal::open(dir.path(), c).unwrap();
        assert!(wal.recovery_report().problem.is_none());
        assert_eq!(all_entries(&wal), written);
        let err = wal
            .append(&WalEntry::Write {
                run_id: run(1),
                key: b"big".to_vec(),
                value: big.clone(),
                version: 9,
            })
            .unwrap_err();
        assert!(matches!(err, Error::EntryTooLarge { .. }), "{err}");
        wal.close().unwrap();
    }
}

/// After damage, recovery searches for a valid frame further on to tell a
/// torn tail from mid-log corruption. It must consider frames as large as
/// those the log holds, not only those the opener's limit allows: here the
/// only valid frame after the damage is larger than that limit (100 KiB
/// under a 16 KiB limit; 17 MiB under the default 16 MiB, written with a
/// raised limit).
#[test]
fn damage_before_a_frame_above_the_opener_limit_is_mid_log_corruption() {
    let cases = [
        (
            100usize << 10,
            Config::default().segment_size(1 << 20),
            cfg(SyncMode::Strict),
        ),
        (
            17 << 20,
            // Segments large enough for the frames (the default 16 MiB is
            // not).
            Config::default()
                .segment_size(64 << 20)
                .max_entry_size(20 << 20),
            Config::default(),
        ),
    ];
    for (size, wide, narrow) in cases {
        assert!(narrow.effective_max_entry_size() < size as u32);
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), wide.prefault(false)).unwrap();
        let write = |v: u64| WalEntry::Write {
            run_id: run(1),
            key: b"big".to_vec(),
            value: vec![7u8; size],
            version: v,
        };
        wal.append(&write(1)).unwrap();
        let damaged = wal.append(&write(2)).map(|p| p.lsn).unwrap();
        wal.append(&write(3)).unwrap();
        let (seq, off) = {
            let snap = wal.snapshot();
            let e = snap.read_at(damaged).unwrap();
            (e.segment, e.offset)
        };
        wal.close().unwrap();
        let path = dir.path().join(format!("{seq:020}.wal"));
        let mut bytes = fs::read(&path).unwrap();
        bytes[off + 100] ^= 0x10;
        fs::write(&path, &bytes).unwrap();
        drop(bytes);

        let reader = WalReader::open(dir.path(), &narrow).unwrap();
        let p = reader.recovery_report().problem.clone().expect("a problem");
        assert_eq!(p.class, ProblemClass::MidLogCorruption, "{size}: {p}");
        assert_eq!((p.segment, p.offset), (seq, off as u64), "{size}: {p}");
        assert_eq!(reader.snapshot().iter().count(), 1, "{size}");
    }
}

/// Reopened with larger segments, a log whose active segment is empty (a
/// new log here; or one whose last segment lost all its frames in a crash)
/// and too small for the next entry rotates at once and leaves that segment
/// empty. The empty segment is a valid part of the log: it is sealed (a
/// segment active at open always is: only a sealed segment can be kept with
/// no frame), and every open, with either configuration, reads through it.
#[test]
fn an_entry_too_large_for_the_active_segment_leaves_it_empty() {
    let dir = tempfile::tempdir().unwrap();
    let small = cfg(SyncMode::Strict);
    Wal::open(dir.path(), small.clone())
        .unwrap()
        .close()
        .unwrap();

    let large = Config::default()
        .segment_size(4 * SEG)
        .sync_mode(SyncMode::Strict);
    let wal = Wal::open(dir.path(), large.clone()).unwrap();
    let before = wal.stats().segments;
    let big = vec![3u8; SEG as usize];
    let lsn = wal
        .append(&WalEntry::Write {
            run_id: run(2),
            key: b"big".to_vec(),
            value: big.clone(),
            version: 1,
        })
        .map(|p| p.lsn)
        .unwrap();
    wal.append_txn(run(3), 3, &[]).unwrap();
    let written = all_entries(&wal);
    let seqs: Vec<u64> = wal.snapshot().segment_seqs().collect();
    let holding: Vec<u64> = wal.snapshot().iter().map(|e| e.unwrap().segment).collect();
    assert_eq!(wal.stats().segments, before + 1);
    let empty = seqs[seqs.len() - 2];
    assert!(!holding.contains(&empty), "segment {empty} holds no entry");
    assert_eq!(wal.snapshot().read_at(lsn).unwrap().segment, empty + 1);
    // Both segments' headers are on disk: the empty one's since it was
    // made, the next one's since the Strict append's sync.
    for seq in [empty, empty + 1] {
        let bytes = fs::read(dir.path().join(format!("{seq:020}.wal"))).unwrap();
        assert!(
            bytes[..128].iter().any(|&b| b != 0),
            "segment {seq} is not sealed"
        );
    }
    // A power cut now loses nothing: the open sees exactly these files.
    // The background thread may be preparing the next segment meanwhile
    // (a temporary file, renamed into place): one that is gone by the
    // time it is copied is as if the cut came before it was made.
    let image = tempfile::tempdir().unwrap();
    for e in fs::read_dir(dir.path()).unwrap() {
        let e = e.unwrap();
        match fs::copy(e.path(), image.path().join(e.file_name())) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => panic!("copy {}: {err}", e.path().display()),
        }
    }
    drop(wal);
    for (d, c) in [(dir.path(), &small), (image.path(), &large)] {
        let reader = WalReader::open(d, c).unwrap();
        assert!(reader.recovery_report().problem.is_none());
        assert_eq!(entries_in(reader.snapshot()), written);
        drop(reader);
        let wal = Wal::open(d, c.clone()).unwrap();
        assert!(wal.recovery_report().problem.is_none());
        assert_eq!(all_entries(&wal), written);
        wal.close().unwrap();
    }
}

#[test]
fn strict_syncs_every_commit_before_returning() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
    let base = wal.stats().syncs;
    for i in 0..10 {
        let pos = wal
            .append_txn(
                run(1),
                i,
                &[Op::Delete {
                    key: b"x",
                    version: i,
                }],
            )
            .unwrap();
        let s = wal.stats();
        assert!(s.synced_lsn >= pos.end, "commit {i} not durable on return");
        assert_eq!(s.syncs, base + i + 1);
    }
}

#[test]
fn strict_group_commit_shares_syncs_between_threads() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap());
    let per_thread = 100u64;
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let pos = wal
                        .append_txn(
                            run(t),
                            i,
                            &[Op::Write {
                                key: b"k",
                                value: &[t; 64],
                                version: i,
                            }],
                        )
                        .unwrap();
                    assert!(wal.stats().synced_lsn >= pos.end);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = wal.stats();
    assert_eq!(s.appends, 8 * per_thread);
    assert!(s.syncs < 8 * per_thread, "no sync was shared: {s:?}");
}

#[test]
fn batched_syncs_by_count() {
    let dir = tempfile::tempdir().unwrap();
    let mode = SyncMode::Batched {
        interval_ms: 3_600_000,
        batch_size: 10,
    };
    let wal = Wal::open(dir.path(), cfg(mode)).unwrap();
    let base = wal.stats().syncs;
    for i in 0..9 {
        wal.append_txn(run(1), i, &[]).unwrap();
    }
    assert_eq!(wal.stats().syncs, base, "synced before the batch filled");
    let pos = wal.append_txn(run(1), 9, &[]).unwrap();
    let s = wal.stats();
    assert_eq!(s.syncs, base + 1);
    assert!(s.synced_lsn >= pos.end);
    for i in 10..30 {
        wal.append_txn(run(1), i, &[]).unwrap();
    }
    assert_eq!(wal.stats().syncs, base + 3);
}

#[test]
fn batched_syncs_by_time_while_idle() {
    let dir = tempfile::tempdir().unwrap();
    let mode = SyncMode::Batched {
        interval_ms: 20,
        batch_size: 1_000_000,
    };
    let wal = Wal::open(dir.path(), cfg(mode)).unwrap();
    let pos = wal.append_txn(run(1), 1, &[]).unwrap();
    // No further append arrives; the flusher must still sync within the interval.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while wal.stats().synced_lsn < pos.end {
        assert!(
            std::time::Instant::now() < deadline,
            "idle batch never synced"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn async_syncs_from_the_background_thread() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::Async { interval_ms: 10 })).unwrap();
    let base = wal.stats().syncs;
    let pos = wal.append_txn(run(1), 1, &[]).unwrap();
    assert!(wal.stats().synced_lsn < pos.end || wal.stats().syncs > base);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while wal.stats().synced_lsn < pos.end {
        assert!(std::time::Instant::now() < deadline, "async never synced");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(wal.stats().syncs > base);
    // An explicit sync covers everything.
    let pos = wal.append_txn(run(1), 2, &[]).unwrap();
    wal.sync().unwrap();
    assert!(wal.stats().synced_lsn >= pos.end);
}

#[test]
fn eight_threads_interleaved_runs_recover_intact() {
    let dir = tempfile::tempdir().unwrap();
    let per = 300u64;
    {
        let wal = Arc::new(Wal::open(dir.path(), cfg(SyncMode::Async { interval_ms: 5 })).unwrap());
        let hs: Vec<_> = (0..8u8)
            .map(|t| {
                let wal = Arc::clone(&wal);
                std::thread::spawn(move || {
                    for i in 0..per {
                        let key = format!("t{t}-k{}", i % 17);
                        let value = format!("t{t}-v{i}");
                        wal.append_txn(
                            run(t),
                            i,
                            &[
                                Op::Write {
                                    key: key.as_bytes(),
                                    value: value.as_bytes(),
                                    version: i,
                                },
                                Op::Write {
                                    key: b"shared",
                                    value: &[t],
                                    version: i,
                                },
                            ],
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    }
    let wal = Wal::open(dir.path(), cfg(SyncMode::Async { interval_ms: 5 })).unwrap();
    assert_eq!(wal.recovery_report().committed_txns, 8 * per);
    let mut next: HashMap<RunId, u64> = HashMap::new();
    wal.replay(|t| {
        let n = next.entry(t.run_id).or_default();
        assert_eq!(t.txn_id, Some(*n), "run {} out of order", t.run_id);
        *n += 1;
        assert_eq!(t.ops.len(), 2);
        for op in t.ops {
            assert_eq!(op.entry.run_id(), Some(t.run_id));
        }
    })
    .unwrap();
    assert_eq!(next.len(), 8);
    assert!(next.values().all(|&n| n == per));
}

#[test]
fn replay_drops_incomplete_and_aborted_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::default())).unwrap();
    let (a, b) = (run(1), run(2));
    let w = |r: RunId, k: &str| WalEntry::Write {
        run_id: r,
        key: k.as_bytes().to_vec(),
        value: b"v".to_vec(),
        version: 1,
    };
    let seq = vec![
        WalEntry::BeginTxn {
            txn_id: 1,
            run_id: a,
            timestamp: 5,
        },
        w(a, "a1"),
        WalEntry::BeginTxn {
            txn_id: 7,
            run_id: b,
            timestamp: 6,
        },
        w(b, "b-aborted"),
        WalEntry::AbortTxn {
            txn_id: 7,
            run_id: b,
        },
        w(b, "b-standalone"),
        WalEntry::CommitTxn {
            txn_id: 1,
            run_id: a,
        },
        WalEntry::BeginTxn {
            txn_id: 2,
            run_id: a,
            timestamp: 9,
        },
        w(a, "a-incomplete"),
    ];
    for e in &seq {
        wal.append(e).unwrap();
    }
    let mut got = Vec::new();
    let stats = wal
        .replay(|t| {
            let keys: Vec<String> = t
                .ops
                .iter()
                .map(|o| String::from_utf8(o.entry.key().unwrap().to_vec()).unwrap())
                .collect();
            got.push((t.run_id, t.txn_id, keys));
        })
        .unwrap();
    assert_eq!(
        got,
        vec![
            (b, None, vec!["b-standalone".to_string()]),
            (a, Some(1), vec!["a1".to_string()]),
        ]
    );
    assert_eq!(
        (
            stats.committed,
            stats.aborted,
            stats.incomplete,
            stats.standalone
        ),
        (1, 1, 1, 1)
    );
    drop(wal);
    let wal = Wal::open(dir.path(), cfg(SyncMode::default())).unwrap();
    let r = wal.recovery_report();
    assert_eq!(
        (r.committed_txns, r.aborted_txns, r.incomplete_txns),
        (1, 1, 1)
    );
}

#[test]
fn replay_run_and_diff_runs_match_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::Async { interval_ms: 50 })).unwrap();
    let runs: Vec<RunId> = (1..=6).map(run).collect();
    let mut rng = Rng::new(0x5EED_1234);
    // model: run -> key -> final value (None = deleted); and committed txn ids per run
    let mut model: HashMap<RunId, BTreeMap<Vec<u8>, Option<Vec<u8>>>> = HashMap::new();
    let mut txns: HashMap<RunId, Vec<u64>> = HashMap::new();
    for i in 0..600u64 {
        let r = runs[rng.below(runs.len() as u64) as usize];
        let nops = rng.below(4) as usize;
        let keys: Vec<Vec<u8>> = (0..nops)
            .map(|_| format!("key{}", rng.below(12)).into_bytes())
            .collect();
        let vals: Vec<Vec<u8>> = (0..nops)
            .map(|_| format!("val{}", rng.below(1000)).into_bytes())
            .collect();
        let dels: Vec<bool> = (0..nops).map(|_| rng.below(4) == 0).collect();
        let ops: Vec<Op> = (0..nops)
            .map(|j| {
                if dels[j] {
                    Op::Delete {
                        key: &keys[j],
                        version: i,
                    }
                } else {
                    Op::Write {
                        key: &keys[j],
                        value: &vals[j],
                        version: i,
                    }
                }
            })
            .collect();
        if rng.below(10) == 0 {
            // An aborted transaction, written entry by entry: must not count.
            wal.append(&WalEntry::BeginTxn {
                txn_id: i,
                run_id: r,
                timestamp: i,
            })
            .unwrap();
            for op in &ops {
                wal.append_entry(op.entry(r)).unwrap();
            }
            wal.append(&WalEntry::AbortTxn {
                txn_id: i,
                run_id: r,
            })
            .unwrap();
            continue;
        }
        wal.append_txn(r, i, &ops).unwrap();
        txns.entry(r).or_default().push(i);
        let m = model.entry(r).or_default();
        for j in 0..nops {
            m.insert(
                keys[j].clone(),
                if dels[j] { None } else { Some(vals[j].clone()) },
            );
        }
    }
    type ReplayRun<'a> = &'a dyn Fn(RunId, &mut dyn FnMut(Option<u64>));
    type Diff<'a> = &'a dyn Fn(RunId, RunId) -> Vec<durability::KeyDiff>;
    let check = |replay_run: ReplayRun, diff: Diff| {
        for r in &runs {
            let mut got = Vec::new();
            replay_run(*r, &mut |t| got.push(t.unwrap()));
            assert_eq!(got, txns.get(r).cloned().unwrap_or_default());
        }
        for a in &runs {
            for b in &runs {
                let ma = model.get(a).cloned().unwrap_or_default();
                let mb = model.get(b).cloned().unwrap_or_default();
                let mut keys: Vec<&Vec<u8>> = ma.keys().chain(mb.keys()).collect();
                keys.sort();
                keys.dedup();
                let want: Vec<Vec<u8>> = keys
                    .into_iter()
                    .filter(|k| ma.get(*k).cloned().flatten() != mb.get(*k).cloned().flatten())
                    .cloned()
                    .collect();
                let got = diff(*a, *b);
                assert_eq!(got.iter().map(|d| d.key.clone()).collect::<Vec<_>>(), want);
                for d in got {
                    let side = |m: &BTreeMap<Vec<u8>, Option<Vec<u8>>>| match m.get(&d.key) {
                        None => KeyState::Absent,
                        Some(None) => KeyState::Deleted,
                        Some(Some(v)) => KeyState::Value(v.clone()),
                    };
                    assert_eq!(d.a, side(&ma));
                    assert_eq!(d.b, side(&mb));
                }
            }
        }
    };
    check(
        &|r, f| {
            wal.replay_run(r, |t| f(t.txn_id)).unwrap();
        },
        &|a, b| wal.diff_runs(a, b).unwrap(),
    );
    drop(wal);
    // The same answers from a reopened log and from a read-only open.
    let reader = WalReader::open(dir.path(), cfg(SyncMode::default())).unwrap();
    check(
        &|r, f| {
            reader.replay_run(r, |t| f(t.txn_id)).unwrap();
        },
        &|a, b| reader.diff_runs(a, b).unwrap(),
    );
    let wal = Wal::open(dir.path(), cfg(SyncMode::default())).unwrap();
    check(
        &|r, f| {
            wal.replay_run(r, |t| f(t.txn_id)).unwrap();
        },
        &|a, b| wal.diff_runs(a, b).unwrap(),
    );
}

#[test]
fn tail_reader_sees_every_commit_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), cfg(SyncMode::Async { interval_ms: 10 })).unwrap());
    let n = 500u64;
    let mut tail = wal.tail(wal.end_lsn());
    let writer = {
        let wal = Arc::clone(&wal);
        std::thread::spawn(move || {
            for i in 0..n {
                wal.append_txn(
                    run((i % 4) as u8),
                    i,
                    &[Op::Write {
                        key: b"k",
                        value: b"v",
                        version: i,
                    }],
                )
                .unwrap();
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    let mut commits = Vec::new();
    while commits.len() < n as usize {
        let Some((_, e)) = tail.next_timeout(Duration::from_secs(10)).unwrap() else {
            panic!("tail stalled after {} commits", commits.len());
        };
        if e.kind() == EntryKind::CommitTxn {
            commits.push(e.txn_id().unwrap());
        }
    }
    writer.join().unwrap();
    assert_eq!(commits, (0..n).collect::<Vec<_>>());
    assert!(tail
        .next_timeout(Duration::from_millis(20))
        .unwrap()
        .is_none());
    assert_eq!(tail.position(), wal.end_lsn());
}

#[test]
fn checkpoint_truncate_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (old, active) = (run(1), run(2));
    let value = vec![5u8; 900];
    let wal = Wal::open(dir.path(), cfg(SyncMode::Async { interval_ms: 50 })).unwrap();
    for i in 0..300u64 {
        wal.append_txn(
            old,
            i,
            &[Op::Write {
                key: b"k",
                value: &value,
                version: i,
            }],
        )
        .unwrap();
    }
    let mid_active = wal
        .append_txn(
            active,
            0,
            &[Op::Write {
                key: b"a",
                value: b"1",
                version: 0,
            }],
        )
        .unwrap();
    for i in 300..600u64 {
        wal.append_txn(
            old,
            i,
            &[Op::Write {
                key: b"k",
                value: &value,
                version: i,
            }],
        )
        .unwrap();
    }
    let segs_before = wal.stats().segments;
    let ck = wal
        .checkpoint(Uuid::from_bytes([3; 16]), 600, &[active])
        .map(|p| p.lsn)
        .unwrap();
    // Not a checkpoint: refused.
    assert!(matches!(
        wal.purge_to_checkpoint(mid_active.begin),
        Err(Error::BadLsn { .. })
    ));
    // A reader holding a snapshot keeps its segments through truncation.
    let snap = wal.snapshot();
    let removed = wal.purge_to_checkpoint(ck).unwrap();
    assert!(
        removed > 0 && removed < segs_before,
        "removed {removed} of {segs_before}"
    );
    assert!(snap.iter().all(|e| e.is_ok()));
    assert_eq!(snap.iter().count(), 3 * 601 + 1);
    // Everything of the active run survives: its segment was kept.
    let mut seen = 0;
    wal.replay_run(active, |_| seen += 1).unwrap();
    assert_eq!(seen, 1);
    let start = wal.start_lsn();
    assert!(start > 0 && start <= mid_active.begin);
    let files = fs::read_dir(dir.path()).unwrap().count();
    drop(wal);
    let wal = Wal::open(dir.path(), cfg(SyncMode::default())).unwrap();
    assert_eq!(wal.start_lsn(), start);
    assert!(wal.recovery_report().problem.is_none());
    let mut seen = 0;
    wal.replay_run(active, |_| seen += 1).unwrap();
    assert_eq!(seen, 1);
    assert!(fs::read_dir(dir.path()).unwrap().count() <= files + 1);
    // Once the run is no longer active, a new checkpoint lets it go too.
    let ck2 = wal
        .checkpoint(Uuid::from_bytes([4; 16]), 601, &[])
        .map(|p| p.lsn)
        .unwrap();
    wal.append_txn(
        old,
        9999,
        &[Op::Write {
            key: b"k",
            value: &value,
            version: 9999,
        }],
    )
    .unwrap();
    assert!(wal.purge_to_checkpoint(ck2).unwrap() >= 1);
    assert!(wal.start_lsn() > mid_active.begin);
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::default())).unwrap();
    match Wal::open(dir.path(), cfg(SyncMode::default())) {
        Err(Error::Locked { lock_file }) => {
            assert_eq!(lock_file, dir.path().join("LOCK"));
            let msg = Error::Locked { lock_file }.to_string();
            assert!(msg.contains("LOCK"), "{msg}");
        }
        other => panic!("second writer not refused: {other:?}"),
    }
    drop(wal);
    Wal::open(dir.path(), cfg(SyncMode::default())).unwrap();
}

#[test]
fn read_only_open_changes_no_byte_even_while_a_writer_appends() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), cfg(SyncMode::default())).unwrap();
        for i in 0..400u64 {
            wal.append_txn(
                run(1),
                i,
                &[Op::Write {
                    key: b"k",
                    value: &[1; 300],
                    version: i,
                }],
            )
            .unwrap();
        }
    }
    let before = hash_dir(dir.path());
    let reader = WalReader::open(dir.path(), cfg(SyncMode::default())).unwrap();
    assert_eq!(reader.recovery_report().committed_txns, 400);
    let mut n = 0;
    reader.replay(|_| n += 1).unwrap();
    assert_eq!(n, 400);
    drop(reader);
    assert_eq!(hash_dir(dir.path()), before);

    // Now with a live writer: readers see a consistent prefix, never an error.
    let wal = Arc::new(Wal::open(dir.path(), cfg(SyncMode::Async { interval_ms: 5 })).unwrap());
    let w = {
        let wal = Arc::clone(&wal);
        std::thread::spawn(move || {
            for i in 400..1400u64 {
                wal.append_txn(
                    run(2),
                    i,
                    &[Op::Write {
                        key: b"k",
                        value: &[2; 300],
                        version: i,
                    }],
                )
                .unwrap();
            }
        })
    };
    let mut last = 0;
    for _ in 0..20 {
        let r = WalReader::open(dir.path(), cfg(SyncMode::default())).unwrap();
        let c = r.recovery_report().committed_txns;
        assert!(c >= last && c >= 400, "{c} < {last}");
        assert!(r.snapshot().iter().all(|e| e.is_ok()));
        last = c;
    }
    w.join().unwrap();
    assert!(matches!(
        WalReader::open(dir.path().join("nope"), Config::default()),
        Err(Error::Io { .. })
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        WalReader::open(empty.path(), Config::default()),
        Err(Error::NotALog { .. })
    ));
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    // The last segment with a header (a blank prepared one may follow).
    segs.into_iter()
        .rev()
        .find(|p| fs::read(p).unwrap()[..8] != [0u8; 8])
        .unwrap()
}

#[test]
fn a_torn_tail_is_zeroed_on_write_open_and_appends_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let end;
    {
        let wal = Wal::open(dir.path(), cfg(SyncMode::default())).unwrap();
        for i in 0..10u64 {
            wal.append_txn(
                run(1),
                i,
                &[Op::Write {
                    key: b"k",
                    value: b"value",
                    version: i,
                }],
            )
            .unwrap();
        }
        end = wal.end_lsn();
    }
    // Tear: a frame header promising more bytes than follow.
    let seg = last_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let off = 4096 + end as usize;
    bytes[off..off + 4].copy_from_slice(&200u32.to_le_bytes());
    bytes[off + 4] = 2;
    bytes[off + 5..off + 60].fill(0xEE);
    fs::write(&seg, &bytes).unwrap();

    let reader = WalReader::open(dir.path(), cfg(SyncMode::default())).unwrap();
    let p = reader.recovery_report().problem.clone().expect("a problem");
    assert_eq!(p.class, ProblemClass::TornTail);
    assert_eq!(p.offset, off as u64);
    drop(reader);

    let wal = Wal::open(dir.path(), cfg(SyncMode::default())).unwrap();
    let r = wal.recovery_report().clone();
    assert_eq!(r.committed_txns, 10);
    assert_eq!(r.end_lsn, end);
    assert!(r.bytes_discarded > 0);
    wal.append_txn(
        run(1),
        10,
        &[Op::Write {
            key: b"k",
            value: b"after",
            version: 10,
        }],
    )
    .unwrap();
    drop(wal);
    let bytes = fs::read(&seg).unwrap();
    let wal = Wal::open(dir.path(), cfg(SyncMode::default())).unwrap();
    assert!(
        wal.recovery_report().problem.is_none(),
        "{:?}",
        wal.recovery_report().problem
    );
    assert_eq!(wal.recovery_report().committed_txns, 11);
    // Nothing of the garbage is left after the new frames.
    let new_end = 4096 + wal.end_lsn() as usize;
    assert!(bytes[new_end..].iter().all(|&b| b == 0));
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut segs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    segs
}

/// Writes `n` transactions of ~1 KiB into 64 KiB segments and closes.
fn write_rotating(dir: &Path, n: u64) -> Lsn {
    let wal = Wal::open(dir, cfg(SyncMode::Async { interval_ms: 20 })).unwrap();
    for i in 0..n {
        wal.append_txn(
            run(1),
            i,
            &[Op::Write {
                key: b"k",
                value: &[9; 1000],
                version: i,
            }],
        )
        .unwrap();
    }
    let end = wal.end_lsn();
    wal.close().unwrap();
    end
}

use durability::Lsn;

#[test]
fn an_unsealed_segment_is_adopted_when_its_first_frame_continues_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let end = write_rotating(dir.path(), 200);
    // A writer killed right after rotating: the last segment's header was
    // never written, though its frames were.
    let segs = segment_files(dir.path());
    let last = last_segment(dir.path());
    let mut bytes = fs::read(&last).unwrap();
    bytes[..4096].fill(0);
    fs::write(&last, &bytes).unwrap();
    assert!(segs.len() >= 3);

    let reader = WalReader::open(dir.path(), Config::default()).unwrap();
    let r = reader.recovery_report();
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_eq!((r.committed_txns, r.end_lsn), (200, end));
    drop(reader);
    let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
    assert_eq!(wal.recovery_report().committed_txns, 200);
    drop(wal);
    // The write open sealed it: the header is back.
    assert_ne!(fs::read(&last).unwrap()[..8], [0u8; 8]);
}

#[test]
fn an_unsealed_segment_after_a_lost_tail_is_a_torn_tail_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    write_rotating(dir.path(), 200);
    let last = last_segment(dir.path());
    let segs = segment_files(dir.path());
    let idx = segs.iter().position(|p| *p == last).unwrap();
    let prev = &segs[idx - 1];
    // Power loss: the new segment's header never reached the disk, nor did
    // the last pages of the previous segment (the kernel wrote them out of
    // order), though frames of the new segment did.
    let mut bytes = fs::read(&last).unwrap();
    bytes[..4096].fill(0);
    fs::write(&last, &bytes).unwrap();
    let mut p = fs::read(prev).unwrap();
    let used = 4096 + 50 * 1024; // inside the last frames
    p[used..].fill(0);
    fs::write(prev, &p).unwrap();

    let wal = Wal::open(
        dir.path(),
        cfg(SyncMode::Strict).recovery_mode(durability::RecoveryMode::AbsoluteConsistency),
    )
    .unwrap();
    let r = wal.recovery_report().clone();
    let problem = r.problem.expect("a torn tail");
    assert_eq!(problem.class, ProblemClass::TornTail, "{problem}");
    assert!(r.committed_txns < 200 && r.committed_txns > 100);
    // The unadopted segment was moved aside, and appends go on.
    assert!(!last.exists() || fs::read(&last).unwrap().iter().all(|&b| b == 0));
    wal.append_txn(run(1), 999, &[]).unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), cfg(SyncMode::Strict)).unwrap();
    assert!(wal.recovery_report().problem.is_none());
    assert_eq!(wal.recovery_report().committed_txns, r.committed_txns + 1);
}
