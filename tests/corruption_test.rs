//! The user's corruption-detection tests (SPEC §5), on real log files.
//!
//! Every test builds a log through the public API and records what it wrote
//! (the LSN and entry of every frame), damages the files the way the test's
//! name says, reopens, and checks the invariant of issue 4: the log read
//! back is exactly a prefix of what was written, ending just before the
//! first bad frame; every committed transaction in that prefix replays and
//! nothing else does; the problem is reported where and as DESIGN.md §7
//! says. Every random choice comes from a fixed seed printed on failure.

use std::fs;
use std::path::Path;

use durability::format::frame::encode_entry;
use durability::{
    Decoder, Error, Location, Op, ProblemClass, RecoveryMode, RunId, SyncMode, Wal, WalEntry,
    WalReader,
};
use uuid::Uuid;

mod common;
use common::*;

/// One entry of each of the six kinds.
fn one_of_each() -> Vec<WalEntry> {
    let r = run(9);
    vec![
        WalEntry::BeginTxn {
            txn_id: 42,
            run_id: r,
            timestamp: 1_700_000_000_000_000,
        },
        WalEntry::Write {
            run_id: r,
            key: b"agent/plan".to_vec(),
            value: b"search the web, then summarise the three best results".to_vec(),
            version: 3,
        },
        WalEntry::Delete {
            run_id: r,
            key: b"agent/scratch".to_vec(),
            version: 4,
        },
        WalEntry::CommitTxn {
            txn_id: 42,
            run_id: r,
        },
        WalEntry::AbortTxn {
            txn_id: 43,
            run_id: r,
        },
        WalEntry::Checkpoint {
            snapshot_id: Uuid::from_u128(0x5EED),
            version: 5,
            active_runs: vec![r, run(8)],
        },
    ]
}

#[test]
fn test_crc_detects_bit_flip() {
    // The codec: every single-bit flip of a frame of every kind is caught.
    // A flip in [type][payload][crc] is a checksum mismatch; a flip in the
    // (uncovered) length breaks a bound or moves the CRC, or at worst turns
    // the length to zero, which reads as "no more frames". Never an entry.
    let dec = Decoder::default();
    for e in one_of_each() {
        let frame = encode_entry(&e);
        let pos = 3usize;
        let mut buf = vec![0xAAu8; pos];
        buf.extend_from_slice(&frame);
        buf.extend_from_slice(&[0u8; 16]);
        let f = dec.decode(&buf, pos, 0).unwrap().unwrap();
        assert_eq!((f.entry.to_owned(), f.len), (e.clone(), frame.len()));
        for byte in 0..frame.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[pos + byte] ^= 1 << bit;
                let ctx = format!("{:?} frame, byte {byte} bit {bit}", e.kind());
                match dec.decode(&b, pos, 0) {
                    Ok(Some(f)) => panic!("{ctx}: a damaged frame decoded as {:?}", f.entry),
                    Ok(None) => assert!(byte < 4, "{ctx}: only a zero length ends the frames"),
                    Err(err) => {
                        assert_eq!(err.location(), Some(Location::at(pos as u64)), "{ctx}");
                        assert!(err.is_corruption(), "{ctx}: {err}");
                        if byte >= 4 {
                            assert!(matches!(err, Error::Checksum { .. }), "{ctx}: {err}");
                        }
                    }
                }
            }
        }
    }

    // In a log: a seeded bit flip anywhere in an entry that valid entries
    // follow is mid-log corruption (DESIGN §7 row 7) found at that entry's
    // offset; the prefix before it is read whole and nothing after it.
    let seed = 0xB17_F11B;
    let base = tempfile::tempdir().unwrap();
    let m = build(base.path(), seed, 40);
    let n = m.entries.len();
    let (r, got) = read(base.path());
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_prefix(base.path(), &got, &m, n, "undamaged");
    let mut rng = Rng::new(seed);
    for trial in 0..24 {
        let k = rng.below(n as u64 - 1) as usize;
        let (lsn, _) = m.entries[k];
        let byte = rng.below(m.len_of(k));
        let bit = rng.below(8);
        let ctx = format!("seed {seed:#x} trial {trial}: entry {k} byte {byte} bit {bit}");
        let dir = copy_log(base.path());
        let seg = seg_path(dir.path(), 0);
        flip(&seg, DATA + lsn + byte, 1 << bit);
        let (r, got) = read(dir.path());
        assert_problem(&r, ProblemClass::MidLogCorruption, 0, DATA + lsn, lsn, &ctx);
        assert_prefix(dir.path(), &got, &m, k, &ctx);
        if trial % 6 == 0 {
            assert_refused(dir.path(), 0, DATA + lsn, &ctx);
        }
    }
    // The same flip in the last entry: nothing valid follows, so a crash
    // explains it (torn tail, row 2).
    let k = n - 1;
    let (lsn, _) = m.entries[k];
    let dir = copy_log(base.path());
    flip(&seg_path(dir.path(), 0), DATA + lsn + 20, 0x10);
    let (r, got) = read(dir.path());
    let ctx = format!("seed {seed:#x}: last entry");
    assert_problem(&r, ProblemClass::TornTail, 0, DATA + lsn, lsn, &ctx);
    assert_prefix(dir.path(), &got, &m, k, &ctx);
}

#[test]
fn test_truncated_entry_handling() {
    // The codec: every truncation of a frame is `Truncated`, never a panic
    // or an entry; no bytes at all is the end of the frames.
    let dec = Decoder::default();
    let e = &one_of_each()[1];
    let frame = encode_entry(e);
    for cut in 0..frame.len() {
        match dec.decode(&frame[..cut], 0, 0) {
            Ok(None) if cut == 0 => {}
            Err(Error::Truncated {
                at,
                needed,
                available,
            }) => {
                assert_eq!(at, Location::at(0));
                assert_eq!(available, cut as u64);
                let want = if cut < 4 { 4 } else { frame.len() as u64 };
                assert_eq!(needed, want, "cut at {cut}");
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }

    // A crash mid-append leaves the last frame partly written and zeros
    // (the preallocated file) after: for every byte at which the write can
    // stop, the log reads back without the last entry, as a torn tail
    // (row 2), and AbsoluteConsistency accepts it.
    let seed = 0x7E0C;
    let base = tempfile::tempdir().unwrap();
    let m = build(base.path(), seed, 20);
    let n = m.entries.len();
    let (lsn, _) = m.entries[n - 1];
    let (start, end) = (DATA + lsn, DATA + lsn + m.len_of(n - 1));
    for cut in start..end {
        let ctx = format!("seed {seed:#x}: last frame [{start}, {end}) written up to {cut}");
        let dir = copy_log(base.path());
        let seg = seg_path(dir.path(), 0);
        let original = fs::read(&seg).unwrap();
        if original[cut as usize..end as usize].iter().all(|&b| b == 0) {
            // The bytes not written were zero anyway (the CRC's last bytes
            // depend on the log's random id): the frame is whole.
            let (_, got) = read(dir.path());
            assert_prefix(dir.path(), &got, &m, n, &ctx);
            continue;
        }
        zero(&seg, cut, end);
        let (r, got) = read(dir.path());
        assert_prefix(dir.path(), &got, &m, n - 1, &ctx);
        assert_eq!(r.end_lsn, lsn, "{ctx}");
        if r.problem.is_some() {
            assert_problem(&r, ProblemClass::TornTail, 0, start, lsn, &ctx);
            assert!(r.bytes_discarded <= cut - start, "{ctx}: {r:?}");
        } else {
            // Only when nothing nonzero of the frame was written.
            let kept = fs::read(seg_path(dir.path(), 0)).unwrap();
            assert!(
                kept[start as usize..end as usize].iter().all(|&b| b == 0),
                "{ctx}"
            );
        }
    }

    // A write open repairs such a tail: it zeroes it, appends follow the
    // last whole entry, and the next open finds a clean log.
    let dir = copy_log(base.path());
    let seg = seg_path(dir.path(), 0);
    zero(&seg, start + 30, end);
    let wal = Wal::open(
        dir.path(),
        cfg().recovery_mode(RecoveryMode::AbsoluteConsistency),
    )
    .unwrap();
    let r = wal.recovery_report().clone();
    assert_problem(&r, ProblemClass::TornTail, 0, start, lsn, "write open");
    assert_eq!(r.bytes_discarded, 30);
    let mut m2 = m.clone();
    m2.entries.pop();
    m2.txn(
        &wal,
        run(7),
        1000,
        &[Op::Write {
            key: b"after",
            value: b"the repair",
            version: 1,
        }],
    );
    wal.close().unwrap();
    let (r, got) = read(dir.path());
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_prefix(dir.path(), &got, &m2, m2.entries.len(), "after repair");

    // The file itself cut short inside the last entry (not a crash: the
    // file is preallocated; a filesystem or an operator did it). Reading
    // stops before the cut entry, nothing maps past the end of the file,
    // and a write open gives the file back its size and appends after the
    // prefix. Both with and without the blank segment the writer prepares
    // ahead of need (which `close` leaves behind).
    for keep_blank in [false, true] {
        let ctx = format!("seed {seed:#x}: file cut mid-entry, blank successor kept: {keep_blank}");
        let dir = copy_log(base.path());
        let seg = seg_path(dir.path(), 0);
        let blank = seg_path(dir.path(), 1);
        if keep_blank {
            // What the preparer leaves (a zero-filled file of the segment
            // size); made here if `close` came before the preparer did.
            if !blank.exists() {
                fs::write(&blank, vec![0u8; SEG as usize]).unwrap();
            }
            assert!(is_blank(&blank), "{ctx}");
        } else if blank.exists() {
            fs::remove_file(&blank).unwrap();
        }
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(start + 10)
            .unwrap();
        let reader = WalReader::open(dir.path(), cfg());
        let reader = reader.unwrap_or_else(|e| panic!("{ctx}: the open failed: {e}"));
        let r = reader.recovery_report().clone();
        drop(reader);
        let (_, got) = read(dir.path());
        assert_problem(&r, ProblemClass::TornTail, 0, start, lsn, &ctx);
        assert_prefix(dir.path(), &got, &m, n - 1, &ctx);
        let wal = Wal::open(dir.path(), cfg()).unwrap();
        assert_eq!(wal.recovery_report().entries, n as u64 - 1, "{ctx}");
        let mut m2 = m.clone();
        m2.entries.pop();
        m2.put(
            &wal,
            WalEntry::AbortTxn {
                txn_id: 5,
                run_id: run(5),
            },
        );
        wal.close().unwrap();
        // A write open never changes a segment's size: the short file is
        // used up to its length, then the log goes on in the next one.
        assert_eq!(
            fs::metadata(&seg).unwrap().len(),
            start + 10,
            "{ctx}: the short segment was resized"
        );
        let (r, got) = read(dir.path());
        assert!(r.problem.is_none(), "{ctx}: {:?}", r.problem);
        assert_prefix(dir.path(), &got, &m2, n, &ctx);
    }
}

#[test]
fn test_incomplete_transaction_discarded() {
    let (a, b, c) = (run(1), run(2), run(3));
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let w = |key: &'static [u8]| Op::Write {
        key,
        value: b"value",
        version: 1,
    };
    m.txn(&wal, a, 1, &[w(b"a1"), w(b"a2")]);
    // Run b begins a transaction and never ends it.
    m.put(
        &wal,
        WalEntry::BeginTxn {
            txn_id: 2,
            run_id: b,
            timestamp: 1,
        },
    );
    m.put(&wal, w(b"b-incomplete").entry(b).to_owned());
    // Run c aborts one.
    m.put(
        &wal,
        WalEntry::BeginTxn {
            txn_id: 3,
            run_id: c,
            timestamp: 2,
        },
    );
    m.put(&wal, w(b"c-aborted").entry(c).to_owned());
    m.put(
        &wal,
        Op::Delete {
            key: b"a1",
            version: 2,
        }
        .entry(c)
        .to_owned(),
    );
    m.put(
        &wal,
        WalEntry::AbortTxn {
            txn_id: 3,
            run_id: c,
        },
    );
    m.txn(&wal, a, 4, &[w(b"a3")]);
    m.txn(&wal, c, 5, &[w(b"c1")]);
    // And the last transaction is torn by a crash: its CommitTxn only half
    // reached the file.
    m.txn(&wal, a, 6, &[w(b"a-torn")]);
    wal.close().unwrap();

    let expect_keys = |dir: &Path, want: &[(RunId, u64, Vec<&str>)]| {
        let reader = WalReader::open(dir, cfg()).unwrap();
        let mut got = Vec::new();
        let stats = reader
            .replay(|t| {
                let keys: Vec<String> = t
                    .ops
                    .iter()
                    .map(|o| String::from_utf8(o.entry.key().unwrap().to_vec()).unwrap())
                    .collect();
                got.push((t.run_id, t.txn_id.unwrap(), keys));
            })
            .unwrap();
        let want: Vec<(RunId, u64, Vec<String>)> = want
            .iter()
            .map(|(r, t, k)| (*r, *t, k.iter().map(|s| s.to_string()).collect()))
            .collect();
        assert_eq!(got, want);
        stats
    };

    // Whole log: b's and c's transactions are not delivered.
    let (r, got) = read(dir.path());
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_prefix(dir.path(), &got, &m, m.entries.len(), "whole log");
    assert_eq!(
        (r.committed_txns, r.aborted_txns, r.incomplete_txns),
        (4, 1, 1)
    );
    let stats = expect_keys(
        dir.path(),
        &[
            (a, 1, vec!["a1", "a2"]),
            (a, 4, vec!["a3"]),
            (c, 5, vec!["c1"]),
            (a, 6, vec!["a-torn"]),
        ],
    );
    assert_eq!(
        (stats.committed, stats.aborted, stats.incomplete),
        (4, 1, 1)
    );

    // Tear the last CommitTxn: transaction 6 becomes incomplete and is
    // dropped with it; nothing before it is lost.
    let n = m.entries.len();
    let (lsn, _) = m.entries[n - 1];
    zero(
        &seg_path(dir.path(), 0),
        DATA + lsn + 25,
        DATA + lsn + m.len_of(n - 1),
    );
    let (r, got) = read(dir.path());
    assert_problem(
        &r,
        ProblemClass::TornTail,
        0,
        DATA + lsn,
        lsn,
        "torn commit",
    );
    assert_prefix(dir.path(), &got, &m, n - 1, "torn commit");
    assert_eq!(
        (r.committed_txns, r.aborted_txns, r.incomplete_txns),
        (3, 1, 2)
    );
    let stats = expect_keys(
        dir.path(),
        &[
            (a, 1, vec!["a1", "a2"]),
            (a, 4, vec!["a3"]),
            (c, 5, vec!["c1"]),
        ],
    );
    assert_eq!(
        (stats.committed, stats.aborted, stats.incomplete),
        (3, 1, 2)
    );

    // After a write open repairs the tail, a new transaction of the same run
    // commits; the torn one stays dropped for good.
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    assert_eq!(wal.end_lsn(), lsn);
    m.entries.pop();
    m.txn(&wal, a, 7, &[w(b"a7")]);
    drop(wal);
    let stats = expect_keys(
        dir.path(),
        &[
            (a, 1, vec!["a1", "a2"]),
            (a, 4, vec!["a3"]),
            (c, 5, vec!["c1"]),
            (a, 7, vec!["a7"]),
        ],
    );
    assert_eq!(
        (stats.committed, stats.aborted, stats.incomplete),
        (4, 1, 2)
    );
}

#[test]
fn test_multiple_corruption_points() {
    // Three damaged entries: reading stops at the first. Repair the first
    // and it stops at the second; repair that and it stops at the third.
    let seed = 0x3C0_22E7;
    let base = tempfile::tempdir().unwrap();
    let m = build(base.path(), seed, 40);
    let n = m.entries.len();
    let mut rng = Rng::new(seed);
    for trial in 0..8 {
        let mut ks: Vec<usize> = Vec::new();
        while ks.len() < 3 {
            let k = rng.below(n as u64 - 1) as usize;
            if ks.iter().all(|&j| j.abs_diff(k) >= 2) {
                ks.push(k);
            }
        }
        ks.sort_unstable();
        let dir = copy_log(base.path());
        let seg = seg_path(dir.path(), 0);
        let mut damage = Vec::new();
        for &k in &ks {
            // A payload byte (covered by the CRC).
            let off = DATA + m.entries[k].0 + 5 + rng.below(m.len_of(k) - 9);
            let mask = 1u8 << rng.below(8);
            flip(&seg, off, mask);
            damage.push((off, mask));
        }
        for (stage, &k) in ks.iter().enumerate() {
            let ctx = format!("seed {seed:#x} trial {trial}: damaged {ks:?}, stage {stage}");
            let lsn = m.entries[k].0;
            let (r, got) = read(dir.path());
            assert_problem(&r, ProblemClass::MidLogCorruption, 0, DATA + lsn, lsn, &ctx);
            assert_prefix(dir.path(), &got, &m, k, &ctx);
            let (off, mask) = damage[stage];
            flip(&seg, off, mask);
        }
        let (r, got) = read(dir.path());
        assert!(r.problem.is_none(), "trial {trial}: {:?}", r.problem);
        assert_prefix(dir.path(), &got, &m, n, "all repaired");
    }

    // Across segments: damage in segment 0 and in segment 2 of a longer log
    // stops the log in segment 0; nothing of segments 1 and 2 is read, valid
    // or not (row 8).
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let value = [b'v'; 1500];
    for i in 0..100 {
        m.txn(
            &wal,
            run(1),
            i,
            &[Op::Write {
                key: b"k",
                value: &value,
                version: i,
            }],
        );
    }
    assert!(wal.stats().segments >= 3, "{:?}", wal.stats());
    wal.close().unwrap();
    let segs = segment_files(dir.path());
    let first_lsn = |p: &Path| u64::from_le_bytes(fs::read(p).unwrap()[40..48].try_into().unwrap());
    let seg1_start = first_lsn(&segs[1]);
    let seg2_start = first_lsn(&segs[2]);
    // The 10th entry of segment 0, and an entry of segment 2.
    let k0 = 10;
    let k2 = m.entries.iter().position(|(l, _)| *l > seg2_start).unwrap();
    flip(&segs[0], DATA + m.entries[k0].0 + 9, 0x40);
    flip(&segs[2], DATA + m.entries[k2].0 - seg2_start + 9, 0x40);
    let (r, got) = read(dir.path());
    let lsn = m.entries[k0].0;
    assert_problem(
        &r,
        ProblemClass::MidLogCorruption,
        0,
        DATA + lsn,
        lsn,
        "segments 0 and 2",
    );
    assert_eq!(r.segments, 1);
    assert_prefix(dir.path(), &got, &m, k0, "segments 0 and 2");
    assert!(got.iter().all(|(l, _)| *l < seg1_start));
}

#[test]
fn test_valid_wal_after_crash_simulation() {
    // A log closed by dropping its handle (no explicit close or sync) reads
    // back whole in every sync mode: the drop seals and syncs (DESIGN §5),
    // every segment in use has its header, and nothing follows the end.
    let modes = [
        SyncMode::Strict,
        SyncMode::default(),
        SyncMode::Async {
            interval_ms: 60_000,
        },
    ];
    for mode in modes {
        let ctx = format!("{mode:?}");
        let dir = tempfile::tempdir().unwrap();
        let config = cfg().sync_mode(mode);
        let mut m = Model::default();
        let mut rng = Rng::new(0xD0_0D);
        {
            let wal = Wal::open(dir.path(), config.clone()).unwrap();
            for i in 0..150u64 {
                let value = rng.text(400);
                m.txn(
                    &wal,
                    run((i % 4) as u8),
                    i,
                    &[
                        Op::Write {
                            key: &i.to_le_bytes(),
                            value: &value,
                            version: i,
                        },
                        Op::Delete {
                            key: b"old",
                            version: i,
                        },
                    ],
                );
            }
            assert!(wal.stats().segments >= 2, "{ctx}: {:?}", wal.stats());
            // dropped here
        }
        let (r, got) = read(dir.path());
        assert!(r.problem.is_none(), "{ctx}: {:?}", r.problem);
        assert_eq!(r.end_lsn, m.end(), "{ctx}");
        assert_eq!(
            (r.committed_txns, r.aborted_txns, r.incomplete_txns),
            (150, 0, 0),
            "{ctx}"
        );
        assert_prefix(dir.path(), &got, &m, m.entries.len(), &ctx);
        // Every segment that holds frames has its header.
        let segs = segment_files(dir.path());
        assert_eq!(
            segs.iter().filter(|p| !is_blank(p)).count(),
            r.segments,
            "{ctx}"
        );
        let last = &segs[r.segments - 1];
        let bytes = fs::read(last).unwrap();
        let seg_first = u64::from_le_bytes(bytes[40..48].try_into().unwrap());
        let end_off = (DATA + m.end() - seg_first) as usize;
        assert!(
            bytes[end_off..].iter().all(|&b| b == 0),
            "{ctx}: bytes after the end"
        );
        // A write open agrees, changes nothing, and appends after the end.
        let wal = Wal::open(
            dir.path(),
            config.recovery_mode(RecoveryMode::AbsoluteConsistency),
        )
        .unwrap();
        assert_eq!(
            wal.recovery_report().entries,
            m.entries.len() as u64,
            "{ctx}"
        );
        m.txn(&wal, run(9), 999, &[]);
        wal.close().unwrap();
        let (r, got) = read(dir.path());
        assert!(r.problem.is_none(), "{ctx}: {:?}", r.problem);
        assert_prefix(dir.path(), &got, &m, m.entries.len(), &ctx);
    }
}

#[test]
fn test_crc_on_all_entry_types() {
    // One log with every kind of entry, each followed by valid entries:
    // damaging the payload (first, middle or last byte), the type tag or the
    // CRC of any one of them is caught at exactly that entry, and the log
    // read back stops just before it.
    let base = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    let wal = Wal::open(base.path(), cfg()).unwrap();
    for e in one_of_each() {
        m.put(&wal, e);
    }
    // A transaction that aborts, and a trailing entry so that valid frames
    // follow the last kind too.
    m.put(
        &wal,
        WalEntry::BeginTxn {
            txn_id: 43,
            run_id: run(9),
            timestamp: 1,
        },
    );
    m.put(
        &wal,
        WalEntry::AbortTxn {
            txn_id: 43,
            run_id: run(9),
        },
    );
    m.txn(&wal, run(7), 50, &[]);
    wal.close().unwrap();
    let (r, got) = read(base.path());
    assert!(r.problem.is_none());
    assert_prefix(base.path(), &got, &m, m.entries.len(), "undamaged");

    for k in 0..6 {
        let (lsn, e) = &m.entries[k];
        let len = m.len_of(k);
        let plen = len - 9;
        let places = [
            ("type tag", 4),
            ("first payload byte", 5),
            ("middle payload byte", 5 + plen / 2),
            ("last payload byte", 5 + plen - 1),
            ("crc", len - 2),
        ];
        for (what, at) in places {
            let ctx = format!("{:?}: {what} (frame byte {at})", e.kind());
            let dir = copy_log(base.path());
            flip(&seg_path(dir.path(), 0), DATA + lsn + at, 0x01);
            let (r, got) = read(dir.path());
            assert_problem(
                &r,
                ProblemClass::MidLogCorruption,
                0,
                DATA + lsn,
                *lsn,
                &ctx,
            );
            let p = problem(&r, &ctx);
            assert!(p.detail.contains("checksum mismatch"), "{ctx}: {p}");
            assert_prefix(dir.path(), &got, &m, k, &ctx);
        }
    }
}
