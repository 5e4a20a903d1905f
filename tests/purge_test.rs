//! The purge mark (DESIGN.md §9, "The purge point"): `purge_before(lsn)`
//! makes the log start at `lsn`, durably, though the first segment it keeps
//! may still hold entries below it. No read path (replay, `replay_run`,
//! iteration, `read_at`, tails, `diff_runs`, read-only opens) returns an
//! entry below the mark, before or after a reopen or a crash, and a replay
//! says where it started, so a history never has a silent hole. (`walctl`'s
//! side is `walctl/tests/purge_test.rs`.)
//!
//! The reported case: a Raft node held entries 1..806 in an old segment,
//! installed a snapshot covering up to 2002 (and purged below the next
//! entry), then received 2003..; its replay showed 1..806 then 2003..,
//! silently missing what only the snapshot holds.

use std::fs;
use std::path::Path;

use durability::{Config, Error, KeyState, Op, RunId, SyncMode, Wal, WalEntry, WalReader};
use uuid::Uuid;

const PURGE_FILE: &str = "PURGED";

fn run(n: u8) -> RunId {
    RunId::from_bytes([n; 16])
}

fn cfg() -> Config {
    Config::default()
        .segment_size(16 << 10)
        .sync_mode(SyncMode::Strict)
        .instance_id(Uuid::from_u128(0x9E_0000_0000_4000_8000_0000_0000_0001))
}

fn put<'a>(key: &'a [u8], value: &'a [u8]) -> Op<'a> {
    Op::Write {
        key,
        value,
        version: 1,
    }
}

/// Appends transactions `ids` of `r`, each one write of ~300 bytes; returns
/// each one's BeginTxn LSN.
fn txns(wal: &Wal, r: RunId, ids: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
    let value = [7u8; 300];
    ids.into_iter()
        .map(|i| {
            let key = format!("k{i}");
            let pos = wal
                .append_txn(r, i, &[put(key.as_bytes(), &value)])
                .unwrap();
            (i, pos.begin)
        })
        .collect()
}

/// The txn ids replay delivers, and its stats.
fn replayed(wal: &Wal) -> (Vec<u64>, durability::ReplayStats) {
    let mut ids = Vec::new();
    let stats = wal.replay(|t| ids.push(t.txn_id.unwrap())).unwrap();
    (ids, stats)
}

fn replayed_run(wal: &Wal, r: RunId) -> (Vec<u64>, durability::ReplayStats) {
    let mut ids = Vec::new();
    let stats = wal.replay_run(r, |t| ids.push(t.txn_id.unwrap())).unwrap();
    (ids, stats)
}

fn reader_ids(reader: &WalReader, r: RunId) -> (Vec<u64>, Vec<u64>, durability::ReplayStats) {
    let mut all = Vec::new();
    let stats = reader.replay(|t| all.push(t.txn_id.unwrap())).unwrap();
    let mut one = Vec::new();
    reader
        .replay_run(r, |t| one.push(t.txn_id.unwrap()))
        .unwrap();
    (all, one, stats)
}

/// Every entry's LSN the snapshot's iterator yields.
fn lsns(snap: &durability::Snapshot) -> Vec<u64> {
    snap.iter().map(|e| e.unwrap().lsn).collect()
}

/// The history has no hole: exactly `from..=to`, in order.
fn assert_range(ids: &[u64], from: u64, to: u64, what: &str) {
    let want: Vec<u64> = (from..=to).collect();
    assert_eq!(
        ids, want,
        "{what}: replay has a hole or an entry below the purge point"
    );
}

/// The reported scenario: entries 1..806 in old segments, a snapshot up to
/// 2002 installed (everything purged), then 2003.. appended. Replays start
/// at the purge point and say so; before and after reopening (write and
/// read-only).
#[test]
fn a_replay_after_purging_everything_never_shows_the_entries_before() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(1);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    txns(&wal, r, 1..=806);
    let segments = wal.stats().segments;
    assert!(segments > 2);
    // The snapshot covers 1..=2002: nothing of this log is needed.
    let mark = wal.end_lsn();
    wal.purge_before(mark).unwrap();
    assert_eq!(wal.start_lsn(), mark);
    txns(&wal, r, 2003..=2100);
    let check = |wal: &Wal, what: &str| {
        assert_eq!(wal.start_lsn(), mark, "{what}");
        let (ids, stats) = replayed(wal);
        assert_range(&ids, 2003, 2100, what);
        assert_eq!((stats.start_lsn, stats.purged), (mark, true), "{what}");
        let (ids, stats) = replayed_run(wal, r);
        assert_range(&ids, 2003, 2100, what);
        assert_eq!((stats.start_lsn, stats.purged), (mark, true), "{what}");
        let snap = wal.snapshot();
        assert_eq!(snap.start_lsn(), mark);
        assert_eq!(lsns(&snap).first(), Some(&mark), "{what}: iteration");
    };
    check(&wal, "live");
    drop(wal);
    let reader = WalReader::open(dir.path(), cfg()).unwrap();
    let (all, one, stats) = reader_ids(&reader, r);
    assert_range(&all, 2003, 2100, "read-only replay");
    assert_range(&one, 2003, 2100, "read-only replay_run");
    assert_eq!((stats.start_lsn, stats.purged), (mark, true));
    drop(reader);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    check(&wal, "reopened");
}

/// A purge inside a segment: the segment holding the mark also holds
/// entries below it, which no read returns, before or after a reopen.
#[test]
fn entries_below_the_mark_in_a_kept_segment_are_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let (r, other) = (run(1), run(2));
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let pos = txns(&wal, r, 1..=200);
    txns(&wal, other, 1..=3);
    // Txn 150 starts mid-segment: find one whose predecessor shares it.
    let (k, mark) = pos[149];
    let removed = wal.purge_before(mark).unwrap();
    assert!(
        removed > 0,
        "nothing to delete: the test needs several segments"
    );
    assert_eq!(wal.start_lsn(), mark);
    let pre = pos[148].1;
    let snap = wal.snapshot();
    let e = snap.read_at(pre).unwrap_err();
    assert!(
        matches!(&e, Error::BadLsn { lsn, detail } if *lsn == pre && detail.contains("purged")),
        "{e}"
    );
    assert!(snap.iter_from(pre).is_err());
    assert_eq!(snap.read_at(mark).unwrap().lsn, mark);
    drop(snap);
    let mut ids = Vec::new();
    wal.replay_run(r, |t| ids.push(t.txn_id.unwrap())).unwrap();
    assert_range(&ids, k, 200, "replay_run");
    // diff_runs sees only what is left: every key of run 1 from k on.
    let diff = wal.diff_runs(r, other).unwrap();
    let k1 = diff.iter().find(|d| d.key == b"k1".to_vec()).unwrap();
    assert_eq!(k1.a, KeyState::Absent, "diff_runs read a purged key");
    assert!(diff.iter().any(|d| d.key == format!("k{k}").into_bytes()));
    // A purge below the mark changes nothing: it never moves back.
    wal.purge_before(pos[10].1).unwrap();
    assert_eq!(wal.start_lsn(), mark);
    drop(wal);
    for reopen in ["read-write", "read-only"] {
        let (ids, stats) = if reopen == "read-write" {
            let wal = Wal::open(dir.path(), cfg()).unwrap();
            assert_eq!(wal.start_lsn(), mark);
            let mut ids = Vec::new();
            let stats = wal.replay_run(r, |t| ids.push(t.txn_id.unwrap())).unwrap();
            (ids, stats)
        } else {
            let reader = WalReader::open(dir.path(), cfg()).unwrap();
            assert_eq!(reader.snapshot().start_lsn(), mark);
            assert!(reader.snapshot().read_at(pre).is_err());
            let (_, one, stats) = reader_ids(&reader, r);
            (one, stats)
        };
        assert_range(&ids, k, 200, reopen);
        assert_eq!((stats.start_lsn, stats.purged), (mark, true), "{reopen}");
    }
}

/// A crash after the mark is durable and before (or while) the segments
/// below it are unlinked: the files all there, and the mark. Reads start at
/// the mark.
#[test]
fn a_crash_before_the_unlinks_reads_from_the_mark() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let r = run(1);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let pos = txns(&wal, r, 1..=200);
    wal.sync().unwrap();
    // The image before the purge: every segment.
    for f in fs::read_dir(dir.path()).unwrap() {
        let f = f.unwrap();
        let name = f.file_name();
        if name.to_str().unwrap().ends_with(".wal") {
            fs::copy(f.path(), crashed.path().join(&name)).unwrap();
        }
    }
    let (k, mark) = pos[120];
    assert!(wal.purge_before(mark).unwrap() > 0);
    // ... and the mark, made durable before any unlink.
    fs::copy(dir.path().join(PURGE_FILE), crashed.path().join(PURGE_FILE)).unwrap();
    drop(wal);
    let reader = WalReader::open(crashed.path(), cfg()).unwrap();
    assert_eq!(reader.snapshot().start_lsn(), mark);
    let (all, one, stats) = reader_ids(&reader, r);
    assert_range(&all, k, 200, "read-only, crash image");
    assert_range(&one, k, 200, "read-only replay_run, crash image");
    assert_eq!((stats.start_lsn, stats.purged), (mark, true));
    drop(reader);
    let wal = Wal::open(crashed.path(), cfg()).unwrap();
    assert_eq!(wal.start_lsn(), mark);
    assert_range(&replayed(&wal).0, k, 200, "reopened crash image");
    // The next purge finishes the job.
    assert!(wal.purge_before(mark).unwrap() > 0);
    assert_range(&replayed(&wal).0, k, 200, "after the purge resumed");
}

/// A damaged mark, a mark of another log, or something else by its name,
/// refuses every open with a typed error: taking it for "no mark" would
/// bring the purged entries back.
#[test]
fn a_damaged_purge_mark_is_a_typed_error_for_every_open() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let pos = txns(&wal, run(1), 1..=100);
    wal.purge_before(pos[50].1).unwrap();
    drop(wal);
    let path = dir.path().join(PURGE_FILE);
    let good = fs::read(&path).unwrap();
    let other = tempfile::tempdir().unwrap();
    {
        let w = Wal::open(
            other.path(),
            cfg().instance_id(Uuid::from_u128(0x9E_0000_0000_4000_8000_0000_0000_0002)),
        )
        .unwrap();
        let p = txns(&w, run(1), 1..=3);
        w.purge_before(p[1].1).unwrap();
    }
    let foreign = fs::read(other.path().join(PURGE_FILE)).unwrap();
    let mut flipped = good.clone();
    flipped[26] ^= 0x10; // the mark's LSN
    let mut long = good.clone();
    long.extend_from_slice(&[0; 4096]);
    let cases: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("a bit flipped in the LSN", Some(flipped)),
        ("cut short", Some(good[..20].to_vec())),
        ("empty", Some(Vec::new())),
        ("too long", Some(long)),
        ("another log's mark", Some(foreign)),
        ("a directory", None),
    ];
    for (what, bytes) in cases {
        let _ = fs::remove_file(&path);
        let _ = fs::remove_dir(&path);
        match bytes {
            Some(b) => fs::write(&path, b).unwrap(),
            None => fs::create_dir(&path).unwrap(),
        }
        match Wal::open(dir.path(), cfg()) {
            Err(Error::BadPurgeMark { .. }) => {}
            other => panic!("{what}: write open gave {other:?}"),
        }
        match WalReader::open(dir.path(), cfg()) {
            Err(Error::BadPurgeMark { .. }) => {}
            other => panic!("{what}: read-only open gave {other:?}"),
        }
    }
    let _ = fs::remove_dir(&path);
    fs::write(&path, &good).unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    assert_eq!(wal.start_lsn(), pos[50].1);
}

/// A tail asked for LSN 0 after a purge starts at the mark.
#[test]
fn a_tail_from_zero_after_a_purge_starts_at_the_mark() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let pos = txns(&wal, run(1), 1..=100);
    let mark = pos[60].1;
    wal.purge_before(mark).unwrap();
    let mut tail = wal.tail(0);
    assert_eq!(tail.position(), mark);
    match tail.poll().unwrap() {
        Some((lsn, WalEntry::BeginTxn { txn_id, .. })) => assert_eq!((lsn, txn_id), (mark, 61)),
        other => panic!("the tail's first entry: {other:?}"),
    }
    // A tail asked to start at a purged entry is told so once, then goes
    // on from the mark: never a silent hole.
    let mut tail = wal.tail(pos[10].1);
    let e = tail.poll().unwrap_err();
    assert!(
        matches!(&e, Error::BadLsn { detail, .. } if detail.contains("purged")),
        "{e}"
    );
    assert_eq!(tail.position(), mark);
    match tail.poll().unwrap() {
        Some((lsn, WalEntry::BeginTxn { txn_id, .. })) => assert_eq!((lsn, txn_id), (mark, 61)),
        other => panic!("after the purged error: {other:?}"),
    }
}

/// A purge at an LSN inside an entry purges that entry whole: the mark
/// moves to the next entry's start (and the transaction it began is not
/// delivered).
#[test]
fn a_purge_inside_an_entry_purges_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let pos = txns(&wal, run(1), 1..=100);
    wal.purge_before(pos[60].1 + 3).unwrap();
    let start = wal.start_lsn();
    assert!(start > pos[60].1, "the mark stayed inside the entry");
    assert!(start < pos[61].1, "the mark passed the next entry");
    assert!(
        wal.snapshot().read_at(start).is_ok(),
        "the mark is not an entry's start"
    );
    let (ids, _) = replayed(&wal);
    assert_eq!(ids.first(), Some(&62), "{ids:?}");
    assert_eq!(ids.last(), Some(&100));
}

/// `truncate_from` below the mark is refused (a suffix truncation never
/// reaches into purged history); at the mark it works.
#[test]
fn truncate_from_below_the_mark_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let pos = txns(&wal, run(1), 1..=100);
    let mark = pos[60].1;
    wal.purge_before(mark).unwrap();
    let end = wal.end_lsn();
    let e = wal.truncate_from(pos[59].1).unwrap_err();
    assert!(
        matches!(&e, Error::BadLsn { detail, .. } if detail.contains("purged")),
        "{e}"
    );
    assert_eq!(wal.end_lsn(), end, "a refused truncation wrote a record");
    wal.truncate_from(pos[80].1).unwrap();
    assert_range(&replayed(&wal).0, 61, 80, "after truncating above the mark");
    wal.truncate_from(mark).unwrap();
    assert!(replayed(&wal).0.is_empty());
}

/// Where a replay delivers its transactions.
type Sink<'a> = &'a mut dyn FnMut(&durability::Txn<'_, '_>);

/// A transaction whose BeginTxn is below the mark and whose CommitTxn is
/// above is never delivered, neither whole nor its later writes as
/// standalone ones; the stats count it. Before and after reopening.
#[test]
fn a_transaction_begun_below_the_mark_is_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (r, other) = (run(1), run(2));
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    wal.append(&WalEntry::BeginTxn {
        txn_id: 9,
        run_id: r,
        timestamp: 1,
    })
    .unwrap();
    let w = |run_id: RunId, key: &str| WalEntry::Write {
        run_id,
        key: key.as_bytes().to_vec(),
        value: vec![1; 10],
        version: 1,
    };
    wal.append(&w(r, "before")).unwrap();
    let mark = wal.append(&w(other, "o1")).unwrap().lsn;
    wal.append(&w(r, "after")).unwrap();
    wal.append(&WalEntry::CommitTxn {
        txn_id: 9,
        run_id: r,
    })
    .unwrap();
    txns(&wal, r, [10]);
    wal.purge_before(mark).unwrap();
    // The write at the mark is run 2's, standalone: a full replay has it.
    let check = |stats: durability::ReplayStats, got: &[(Option<u64>, Vec<u8>)], what: &str| {
        let standalone = u64::from(!what.contains("replay_run"));
        assert!(
            got.iter().all(|(_, k)| k != b"after" && k != b"before"),
            "{what}: delivered part of a transaction begun below the mark: {got:?}"
        );
        assert!(
            got.contains(&(Some(10), b"k10".to_vec())),
            "{what}: {got:?}"
        );
        assert_eq!(stats.begun_before_start, 1, "{what}");
        assert_eq!(
            (stats.standalone, stats.incomplete),
            (standalone, 0),
            "{what}"
        );
        assert_eq!(stats.start_lsn, mark, "{what}");
    };
    let collect = |f: &mut dyn FnMut(Sink<'_>) -> durability::ReplayStats| {
        let mut got = Vec::new();
        let stats = f(&mut |t| {
            for op in t.ops {
                got.push((t.txn_id, op.entry.key().unwrap().to_vec()));
            }
        });
        (stats, got)
    };
    let (s, g) = collect(&mut |f| wal.replay(f).unwrap());
    check(s, &g, "replay");
    let (s, g) = collect(&mut |f| wal.replay_run(r, f).unwrap());
    check(s, &g, "replay_run");
    // Retention may not cut through it either: it is still open at every
    // boundary up to its commit.
    drop(wal);
    let reader = WalReader::open(dir.path(), cfg()).unwrap();
    let (s, g) = collect(&mut |f| reader.replay(f).unwrap());
    check(s, &g, "read-only replay");
    let (s, g) = collect(&mut |f| reader.replay_run(r, f).unwrap());
    check(s, &g, "read-only replay_run");
    drop(reader);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let (s, g) = collect(&mut |f| wal.replay(f).unwrap());
    check(s, &g, "reopened replay");
}

/// A mark past the end of the log (a log that lost its tail to damage after
/// the mark was written) is lowered to the end by a write open, so appends
/// after it are read, then and after the next reopen.
#[test]
fn a_mark_past_the_recovered_end_is_lowered_to_it() {
    let long = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(long.path(), cfg()).unwrap();
        txns(&wal, run(1), 1..=100);
        wal.purge_before(wal.end_lsn()).unwrap();
    }
    let end = {
        let wal = Wal::open(dir.path(), cfg()).unwrap();
        txns(&wal, run(1), 1..=10);
        wal.end_lsn()
    };
    // The same log id: the mark is this log's, from beyond its end.
    fs::copy(long.path().join(PURGE_FILE), dir.path().join(PURGE_FILE)).unwrap();
    let reader = WalReader::open(dir.path(), cfg()).unwrap();
    assert_eq!(reader.snapshot().start_lsn(), end);
    drop(reader);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    assert_eq!(wal.start_lsn(), end);
    txns(&wal, run(1), 11..=12);
    assert_range(&replayed(&wal).0, 11, 12, "appended after the lowered mark");
    drop(wal);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    assert_eq!(wal.start_lsn(), end);
    assert_range(&replayed(&wal).0, 11, 12, "reopened");
}

/// A purge that crashed before its mark was renamed into place leaves
/// `PURGED.new` (here: garbage): opens ignore it, the old mark holds, and
/// the next purge replaces it.
#[test]
fn a_stale_purge_mark_write_is_ignored_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let pos = txns(&wal, run(1), 1..=50);
    wal.purge_before(pos[10].1).unwrap();
    drop(wal);
    let new = dir.path().join("PURGED.new");
    fs::write(&new, b"half a mark").unwrap();
    let reader = WalReader::open(dir.path(), cfg()).unwrap();
    assert_eq!(reader.snapshot().start_lsn(), pos[10].1);
    drop(reader);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    assert_eq!(wal.start_lsn(), pos[10].1);
    wal.purge_before(pos[20].1).unwrap();
    assert!(!new.exists());
    drop(wal);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    assert_eq!(wal.start_lsn(), pos[20].1);
    assert_range(&replayed(&wal).0, 21, 50, "after the stale write");
}

#[test]
fn the_mark_file_is_small_and_beside_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    assert!(!dir.path().join(PURGE_FILE).exists());
    let pos = txns(&wal, run(1), 1..=5);
    wal.purge_before(pos[2].1).unwrap();
    assert_eq!(fs::metadata(dir.path().join(PURGE_FILE)).unwrap().len(), 36);
    assert!(!Path::new(&dir.path().join("PURGED.new")).exists());
    // META stays the caller's.
    assert_eq!(wal.meta().unwrap(), None);
}
