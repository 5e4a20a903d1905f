//! Faults outside the frames (issue 4, items 6-8): a damaged set of segment
//! files, injected sync and allocation failures, and stale frames in files
//! a log reuses or inherits.
//!
//! * Directory faults (DESIGN.md §7 rows 11-15): each gives a typed error
//!   or the prefix before the fault with the problem named where it is —
//!   never an entry from after it, never a silent skip ahead. A read-only
//!   open changes nothing; AbsoluteConsistency refuses mid-log damage; a
//!   PointInTime write open keeps the prefix, moves everything after it
//!   aside as `*.discarded-*` (byte for byte), and the log then takes
//!   appends, rotates, and reopens clean.
//! * Injected failures (rows 17-18) through the test-only seam
//!   `durability::faults`. It is process-global, so every test
//!   in this file runs under one lock (`serial()`), and the guard disarms
//!   the seam on drop, even when a test fails.
//! * Reused files: the CRC seed binds a frame to its log and LSN, so old
//!   frames in a file never validate as new ones.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use durability::faults;
use durability::format::frame::frame_len;
use durability::format::header::{salt, seed as crc_seed};
use durability::{
    Config, Decoder, Error, Location, Op, ProblemClass, RecoveryMode, RecoveryReport, RunId,
    SyncMode, Wal, WalEntry, WalReader,
};
use uuid::Uuid;

const SEG: u64 = 64 << 10;
/// File offset of the first frame of every segment.
const DATA: u64 = 4096;

fn cfg() -> Config {
    Config::default()
        .segment_size(SEG)
        .sync_mode(SyncMode::Async { interval_ms: 1_000 })
}

fn run(n: u8) -> RunId {
    RunId::from_bytes([n; 16])
}

// ---------------------------------------------------------------------------
// The fault seam is process-global: one test at a time, disarmed after.

static FAULTS: Mutex<()> = Mutex::new(());

/// Holds the lock that serialises this file's tests; disarms every fault
/// when dropped (before the lock is released), even on a panic.
struct Serial {
    _lock: MutexGuard<'static, ()>,
}

impl Drop for Serial {
    fn drop(&mut self) {
        faults::fail_syncs_after(-1);
        faults::fail_allocations_after(-1);
    }
}

fn serial() -> Serial {
    let lock = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    faults::fail_syncs_after(-1);
    faults::fail_allocations_after(-1);
    Serial { _lock: lock }
}

// ---------------------------------------------------------------------------
// What was written, and where it must be.

/// Every frame written: its LSN and entry, in log order.
#[derive(Default, Clone)]
struct Model {
    entries: Vec<(u64, WalEntry)>,
    /// The transactions appended whole with `append_txn`: (index of the
    /// BeginTxn, number of entries).
    units: Vec<(usize, usize)>,
}

impl Model {
    fn end(&self) -> u64 {
        self.entries
            .last()
            .map_or(0, |(l, e)| l + frame_len(&e.as_borrowed()) as u64)
    }

    fn push(&mut self, e: WalEntry) {
        let lsn = self.end();
        self.entries.push((lsn, e));
    }

    fn put(&mut self, wal: &Wal, e: WalEntry) -> durability::Result<u64> {
        let lsn = wal.append(&e).map(|p| p.lsn)?;
        assert_eq!(lsn, self.end(), "the log is contiguous");
        self.entries.push((lsn, e));
        Ok(lsn)
    }

    /// Appends a transaction; on success records its frames.
    fn try_txn(
        &mut self,
        wal: &Wal,
        run: RunId,
        txn_id: u64,
        ops: &[Op<'_>],
    ) -> durability::Result<durability::TxnPosition> {
        let timestamp = 1_000_000 + txn_id;
        let pos = wal.append_txn_at(run, txn_id, timestamp, ops)?;
        assert_eq!(pos.begin, self.end());
        self.units.push((self.entries.len(), ops.len() + 2));
        self.push(WalEntry::BeginTxn {
            txn_id,
            run_id: run,
            timestamp,
        });
        for op in ops {
            self.push(op.entry(run).to_owned());
        }
        assert_eq!(self.end(), pos.commit);
        self.push(WalEntry::CommitTxn {
            txn_id,
            run_id: run,
        });
        assert_eq!(self.end(), pos.end);
        Ok(pos)
    }

    fn txn(&mut self, wal: &Wal, run: RunId, txn_id: u64, ops: &[Op<'_>]) {
        self.try_txn(wal, run, txn_id, ops).unwrap();
    }

    fn len_of(&self, k: usize) -> u64 {
        frame_len(&self.entries[k].1.as_borrowed()) as u64
    }

    /// Entries whose LSN is below `lsn`.
    fn below(&self, lsn: u64) -> usize {
        self.entries.iter().take_while(|(l, _)| *l < lsn).count()
    }

    /// What replay must deliver from the first `k` entries, in commit
    /// order: each committed transaction as (run, Some(txn id)), and each
    /// write or delete outside a transaction as (run, None). A BeginTxn
    /// replaces a transaction its run left open (DESIGN.md §9).
    fn committed(&self, k: usize) -> Vec<(RunId, Option<u64>)> {
        let mut open: Vec<(RunId, u64)> = Vec::new();
        let mut out = Vec::new();
        for (_, e) in &self.entries[..k] {
            match e {
                WalEntry::BeginTxn { txn_id, run_id, .. } => {
                    open.retain(|(r, _)| r != run_id);
                    open.push((*run_id, *txn_id));
                }
                WalEntry::CommitTxn { txn_id, run_id } if open.contains(&(*run_id, *txn_id)) => {
                    open.retain(|t| *t != (*run_id, *txn_id));
                    out.push((*run_id, Some(*txn_id)));
                }
                WalEntry::AbortTxn { txn_id, run_id } => open.retain(|t| *t != (*run_id, *txn_id)),
                WalEntry::Write { run_id, .. } | WalEntry::Delete { run_id, .. }
                    if !open.iter().any(|(r, _)| r == run_id) =>
                {
                    out.push((*run_id, None))
                }
                _ => {}
            }
        }
        out
    }

    /// Where every frame lies by the rotation rule of DESIGN.md §5 (a frame
    /// never spans two segments; the writer moves on when the next frame
    /// does not fit, and before a transaction appended whole that fits an
    /// empty segment but not the rest of this one): (segment, file offset)
    /// per entry, for a log written from LSN 0 in segments of `SEG` bytes.
    fn layout(&self) -> Vec<(u64, u64)> {
        let (mut seq, mut off) = (0u64, DATA);
        let mut units = self.units.iter().peekable();
        self.entries
            .iter()
            .enumerate()
            .map(|(k, (_, e))| {
                if let Some(&&(start, n)) = units.peek() {
                    if start == k {
                        units.next();
                        let total: u64 = (k..k + n).map(|j| self.len_of(j)).sum();
                        if off > DATA && off + total > SEG && total <= SEG - DATA {
                            seq += 1;
                            off = DATA;
                        }
                    }
                }
                let len = frame_len(&e.as_borrowed()) as u64;
                if off + len > SEG {
                    seq += 1;
                    off = DATA;
                }
                off += len;
                (seq, off - len)
            })
            .collect()
    }

    /// The first `k` entries (and the transactions wholly among them).
    fn prefix(&self, k: usize) -> Model {
        Model {
            entries: self.entries[..k].to_vec(),
            units: self
                .units
                .iter()
                .copied()
                .filter(|&(s, n)| s + n <= k)
                .collect(),
        }
    }
}

/// A log of `txns` transactions of one 1500-byte write (1651 bytes each, so
/// 37 and a bit to a 64 KiB segment) of run `r`, values filled with `fill`.
fn write_segments(dir: &Path, txns: u64, fill: u8, r: RunId) -> Model {
    let mut m = Model::default();
    let wal = Wal::open(dir, cfg()).unwrap();
    let value = [fill; 1500];
    for i in 0..txns {
        m.txn(
            &wal,
            r,
            i,
            &[Op::Write {
                key: &i.to_be_bytes(),
                value: &value,
                version: i,
            }],
        );
    }
    wal.close().unwrap();
    m
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// The segment files of `dir` (regular files named like segments).
fn seg_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let digits = name.strip_suffix(".wal")?;
            let seq: u64 = digits.parse().ok()?;
            (digits.len() == 20).then(|| (seq, p.clone()))
        })
        .collect();
    v.sort();
    v
}

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// The first LSN of every segment file with a header.
fn first_lsns(dir: &Path) -> BTreeMap<u64, u64> {
    seg_files(dir)
        .into_iter()
        .filter_map(|(seq, p)| {
            let b = fs::read(&p).unwrap();
            (b.len() >= 128 && !is_zero(&b[..128]))
                .then(|| (seq, u64::from_le_bytes(b[40..48].try_into().unwrap())))
        })
        .collect()
}

/// A zero-filled file of the segment size: what the writer's preparer
/// leaves as the next segment (made here if `close` came first).
fn ensure_blank(dir: &Path, seq: u64) {
    let p = seg_path(dir, seq);
    if !p.exists() {
        fs::write(&p, vec![0u8; SEG as usize]).unwrap();
    }
    assert!(is_zero(&fs::read(&p).unwrap()));
}

fn remove_blanks(dir: &Path) {
    for (_, p) in seg_files(dir) {
        if is_zero(&fs::read(&p).unwrap()[..128]) {
            fs::remove_file(p).unwrap();
        }
    }
}

fn set_len(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Name and CRC of every regular file in `dir`.
fn hash_dir(dir: &Path) -> BTreeMap<String, u32> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, crc32c::crc32c(&fs::read(&p).unwrap()))
        })
        .collect()
}

/// Four full segments (0-3, the last partly filled) and the blank segment
/// 4 the writer prepares: 130 transactions, 390 entries.
fn four_segments() -> (tempfile::TempDir, Model, BTreeMap<u64, u64>) {
    let dir = tempfile::tempdir().unwrap();
    let m = write_segments(dir.path(), 130, b'a', run(1));
    ensure_blank(dir.path(), 4);
    let firsts = first_lsns(dir.path());
    assert_eq!(firsts.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3]);
    // The library rotated exactly where DESIGN.md §5 says.
    let layout = m.layout();
    for (seq, first) in &firsts {
        let k = layout.iter().position(|(s, _)| s == seq).unwrap();
        assert_eq!(m.entries[k].0, *first, "segment {seq} starts at entry {k}");
    }
    (dir, m, firsts)
}

/// Opens `dir` read-only: the report and every entry read (each of which
/// must decode: a damaged entry is never served).
fn read(dir: &Path) -> (RecoveryReport, Vec<(u64, WalEntry)>) {
    let reader = WalReader::open(dir, cfg()).unwrap();
    let entries = reader
        .snapshot()
        .iter()
        .map(|e| {
            let e = e.expect("an entry of the recovered prefix fails to decode");
            (e.lsn, e.entry.to_owned())
        })
        .collect();
    (reader.recovery_report().clone(), entries)
}

fn replayed(dir: &Path) -> Vec<(RunId, Option<u64>)> {
    let reader = WalReader::open(dir, cfg()).unwrap();
    let mut out = Vec::new();
    reader.replay(|t| out.push((t.run_id, t.txn_id))).unwrap();
    out
}

/// The invariant: exactly the first `k` entries written were read, and
/// replay delivers exactly the transactions committed among them.
fn assert_prefix(dir: &Path, got: &[(u64, WalEntry)], m: &Model, k: usize, ctx: &str) {
    assert_eq!(got.len(), k, "{ctx}: read {} entries, want {k}", got.len());
    assert!(
        got == &m.entries[..k],
        "{ctx}: what was read is not the prefix written"
    );
    assert_eq!(replayed(dir), m.committed(k), "{ctx}: replay");
}

/// What a directory fault must produce.
struct Want<'a> {
    class: ProblemClass,
    /// The segment the problem names, and the offset in it.
    seq: u64,
    off: u64,
    /// Where the valid log ends.
    lsn: u64,
    /// Entries kept.
    keep: usize,
    /// Words the problem's detail must contain.
    detail: &'a str,
}

/// Checks a directory fault end to end: the read-only view (and that it
/// changes nothing), AbsoluteConsistency's verdict, a write open's repair
/// (everything after the prefix moved aside byte for byte), appends across
/// a rotation, and a clean reopen.
fn check_dir_fault(dir: &Path, m: &Model, want: Want<'_>, ctx: &str) {
    let before = hash_dir(dir);
    let (r, got) = read(dir);
    let p = r
        .problem
        .clone()
        .unwrap_or_else(|| panic!("{ctx}: no problem reported: {r:?}"));
    assert_eq!(
        (p.class, p.segment, p.offset, p.lsn),
        (want.class, want.seq, want.off, want.lsn),
        "{ctx}: {p}"
    );
    assert_eq!(p.file, format!("{:020}.wal", want.seq), "{ctx}");
    assert!(p.detail.contains(want.detail), "{ctx}: {p}");
    assert_eq!(r.end_lsn, want.lsn, "{ctx}");
    assert_prefix(dir, &got, m, want.keep, ctx);
    assert_eq!(
        hash_dir(dir),
        before,
        "{ctx}: a read-only open changed files"
    );

    let mode = match want.class {
        ProblemClass::MidLogCorruption => {
            match Wal::open(dir, cfg().recovery_mode(RecoveryMode::AbsoluteConsistency)) {
                Err(Error::Corrupt { at, class, .. }) => {
                    assert_eq!(class, ProblemClass::MidLogCorruption, "{ctx}");
                    assert_eq!(at, Location::in_segment(want.seq, want.off), "{ctx}");
                }
                Err(e) => panic!("{ctx}: AbsoluteConsistency: wrong error {e}"),
                Ok(_) => panic!("{ctx}: AbsoluteConsistency opened a log with mid-log damage"),
            }
            assert_eq!(hash_dir(dir), before, "{ctx}: a refused open changed files");
            RecoveryMode::PointInTime
        }
        // A torn tail is what a crash leaves: both modes accept it.
        ProblemClass::TornTail => RecoveryMode::AbsoluteConsistency,
    };

    let files: Vec<(u64, PathBuf, Vec<u8>)> = seg_files(dir)
        .into_iter()
        .map(|(s, p)| {
            let b = fs::read(&p).unwrap();
            (s, p, b)
        })
        .collect();
    let wal = Wal::open(dir, cfg().recovery_mode(mode)).unwrap();
    let wr = wal.recovery_report().clone();
    assert_eq!(
        (wr.entries, wr.end_lsn, wr.segments),
        (want.keep as u64, want.lsn, r.segments),
        "{ctx}: write open"
    );
    let kept = r.segments;
    for (i, (_, path, bytes)) in files.iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if i + 1 < kept {
            assert_eq!(
                &fs::read(path).unwrap(),
                bytes,
                "{ctx}: kept {name} changed"
            );
        } else if i >= kept && !is_zero(bytes) {
            let saved: Vec<PathBuf> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy().into_owned();
                    n.starts_with(&format!("{name}.discarded-"))
                })
                .collect();
            assert_eq!(saved.len(), 1, "{ctx}: {name} not moved aside: {saved:?}");
            assert_eq!(&fs::read(&saved[0]).unwrap(), bytes, "{ctx}: {name} saved");
            if path.exists() {
                assert_ne!(
                    &fs::read(path).unwrap(),
                    bytes,
                    "{ctx}: {name} still in the log"
                );
            }
        }
    }
    let mut m2 = m.prefix(want.keep);
    let segs_before = wal.stats().segments;
    for i in 0..45 {
        m2.txn(
            &wal,
            run(77),
            10_000 + i,
            &[Op::Write {
                key: b"after",
                value: &[b'n'; 1500],
                version: i,
            }],
        );
    }
    assert!(wal.stats().segments > segs_before, "{ctx}: no rotation");
    wal.close().unwrap();
    let (r, got) = read(dir);
    assert!(r.problem.is_none(), "{ctx}: after repair: {:?}", r.problem);
    assert_prefix(
        dir,
        &got,
        &m2,
        m2.entries.len(),
        &format!("{ctx}: after repair"),
    );
}

// ---------------------------------------------------------------------------
// Directory faults (issue 4 item 6; DESIGN.md §7 rows 11-15).

#[test]
fn test_missing_middle_segment() {
    let _s = serial();
    let (dir, m, firsts) = four_segments();
    fs::remove_file(seg_path(dir.path(), 1)).unwrap();
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::MidLogCorruption,
            seq: 2,
            off: 0,
            lsn: firsts[&1],
            keep: m.below(firsts[&1]),
            detail: "00000000000000000001.wal is missing",
        },
        "segment 1 of 0-3 deleted",
    );
}

#[test]
fn test_missing_last_segment_before_the_prepared_one() {
    let _s = serial();
    // Segment 3, the last holding frames, is deleted; the blank segment 4
    // the writer prepared while 3 was in use is still there. The sequence
    // 0, 1, 2, 4 has a gap (DESIGN.md §7 step 4: "no gap in the
    // sequence"; row 11), and segment 3 held acknowledged transactions: a
    // crash cannot delete a file, so this is not a torn tail, must be
    // reported, and AbsoluteConsistency must refuse it.
    let (dir, m, firsts) = four_segments();
    fs::remove_file(seg_path(dir.path(), 3)).unwrap();
    let (r, got) = read(dir.path());
    assert_prefix(
        dir.path(),
        &got,
        &m,
        m.below(firsts[&3]),
        "segment 3 deleted",
    );
    let p = r.problem.clone().unwrap_or_else(|| {
        panic!(
            "segment 3 deleted: {} of {} entries read and no problem reported",
            r.entries,
            m.entries.len()
        )
    });
    assert_eq!(
        (p.class, p.lsn),
        (ProblemClass::MidLogCorruption, firsts[&3]),
        "{p}"
    );
    assert!(p.detail.contains("00000000000000000003.wal"), "{p}");
    assert!(
        matches!(
            Wal::open(
                dir.path(),
                cfg().recovery_mode(RecoveryMode::AbsoluteConsistency)
            ),
            Err(Error::Corrupt { .. })
        ),
        "AbsoluteConsistency opened a log missing a segment of acknowledged data"
    );
}

#[test]
fn test_segment_from_another_log() {
    let _s = serial();
    // Log B has the same shape (so its segments start at the same LSNs)
    // but other runs and values, and its own instance id.
    let other = tempfile::tempdir().unwrap();
    let mb = write_segments(other.path(), 130, b'b', run(2));
    assert_ne!(mb.entries, Model::default().entries);

    let (dir, m, firsts) = four_segments();
    assert_eq!(first_lsns(other.path()), firsts, "B must line up with A");
    fs::copy(seg_path(other.path(), 2), seg_path(dir.path(), 2)).unwrap();
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::MidLogCorruption,
            seq: 2,
            off: 0,
            lsn: firsts[&2],
            keep: m.below(firsts[&2]),
            detail: "belongs to another log",
        },
        "segment 2 replaced by segment 2 of another log",
    );

    // B's segment 3 where A's prepared segment 4 would be: A is whole.
    let (dir, m, _) = four_segments();
    fs::copy(seg_path(other.path(), 3), seg_path(dir.path(), 4)).unwrap();
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::MidLogCorruption,
            seq: 4,
            off: 0,
            lsn: m.end(),
            keep: m.entries.len(),
            detail: "belongs to another log",
        },
        "another log's segment after the last",
    );
}

#[test]
fn test_header_seq_differs_from_file_name() {
    let _s = serial();
    // Segments 1 and 2 swap names.
    let (dir, m, firsts) = four_segments();
    let (p1, p2) = (seg_path(dir.path(), 1), seg_path(dir.path(), 2));
    let tmp = dir.path().join("swap");
    fs::rename(&p1, &tmp).unwrap();
    fs::rename(&p2, &p1).unwrap();
    fs::rename(&tmp, &p2).unwrap();
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::MidLogCorruption,
            seq: 1,
            off: 0,
            lsn: firsts[&1],
            keep: m.below(firsts[&1]),
            detail: "header names segment 2 but the file is named for 1",
        },
        "segments 1 and 2 swapped",
    );

    // The last segment renamed further on (no blank segment in between).
    let (dir, m, firsts) = four_segments();
    remove_blanks(dir.path());
    fs::rename(seg_path(dir.path(), 3), seg_path(dir.path(), 7)).unwrap();
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::MidLogCorruption,
            seq: 7,
            off: 0,
            lsn: firsts[&3],
            keep: m.below(firsts[&3]),
            detail: "header names segment 3 but the file is named for 7",
        },
        "segment 3 renamed to 7",
    );

    // The first segment under another name cannot identify the log: a
    // typed error in every mode, and nothing is changed or created over it.
    let dir = tempfile::tempdir().unwrap();
    write_segments(dir.path(), 10, b'c', run(3));
    remove_blanks(dir.path());
    fs::rename(seg_path(dir.path(), 0), seg_path(dir.path(), 5)).unwrap();
    let mut before = hash_dir(dir.path());
    before.remove("LOCK");
    let check = |e: Error| match e {
        Error::SegmentHeader { segment: 5, detail } => {
            assert!(detail.contains("header names segment 0"), "{detail}")
        }
        e => panic!("first segment renamed: {e}"),
    };
    check(WalReader::open(dir.path(), cfg()).unwrap_err());
    check(Wal::open(dir.path(), cfg()).unwrap_err());
    let mut after = hash_dir(dir.path());
    after.remove("LOCK");
    assert_eq!(after, before);
}

#[test]
fn test_duplicated_segment() {
    let _s = serial();
    // The last segment copied as the next one: the log is whole, the copy
    // is not part of it.
    let (dir, m, _) = four_segments();
    fs::copy(seg_path(dir.path(), 3), seg_path(dir.path(), 4)).unwrap();
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::MidLogCorruption,
            seq: 4,
            off: 0,
            lsn: m.end(),
            keep: m.entries.len(),
            detail: "header names segment 3 but the file is named for 4",
        },
        "segment 3 duplicated as 4",
    );

    // Segment 1 copied over segment 2: the log ends after segment 1.
    let (dir, m, firsts) = four_segments();
    fs::copy(seg_path(dir.path(), 1), seg_path(dir.path(), 2)).unwrap();
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::MidLogCorruption,
            seq: 2,
            off: 0,
            lsn: firsts[&2],
            keep: m.below(firsts[&2]),
            detail: "header names segment 1 but the file is named for 2",
        },
        "segment 1 duplicated over 2",
    );

    // The first segment duplicated at the end.
    let (dir, m, _) = four_segments();
    fs::copy(seg_path(dir.path(), 0), seg_path(dir.path(), 4)).unwrap();
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::MidLogCorruption,
            seq: 4,
            off: 0,
            lsn: m.end(),
            keep: m.entries.len(),
            detail: "header names segment 0 but the file is named for 4",
        },
        "segment 0 duplicated as 4",
    );
}

#[test]
fn test_zero_byte_segment() {
    let _s = serial();
    // In the middle: the log ends before it.
    let (dir, m, firsts) = four_segments();
    set_len(&seg_path(dir.path(), 2), 0);
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::MidLogCorruption,
            seq: 2,
            off: 0,
            lsn: firsts[&2],
            keep: m.below(firsts[&2]),
            detail: "file is 0 bytes, shorter than its header page",
        },
        "segment 2 of 0-3 empty",
    );

    // The last segment holding frames: nothing valid follows it, so it is a
    // torn tail; the prefix is everything before it.
    let (dir, m, firsts) = four_segments();
    set_len(&seg_path(dir.path(), 3), 0);
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::TornTail,
            seq: 3,
            off: 0,
            lsn: firsts[&3],
            keep: m.below(firsts[&3]),
            detail: "file is 0 bytes, shorter than its header page",
        },
        "segment 3 of 0-3 empty",
    );

    // The first segment: a typed error in every mode, never a new log made
    // over the old one's files, never a mapping past the end of a file.
    let (dir, _, _) = four_segments();
    set_len(&seg_path(dir.path(), 0), 0);
    let mut before = hash_dir(dir.path());
    before.remove("LOCK");
    for e in [
        WalReader::open(dir.path(), cfg()).unwrap_err(),
        Wal::open(dir.path(), cfg()).unwrap_err(),
    ] {
        match e {
            Error::SegmentHeader { segment: 0, detail } => {
                assert!(detail.contains("0 bytes"), "{detail}")
            }
            e => panic!("empty first segment: {e}"),
        }
    }
    let mut after = hash_dir(dir.path());
    after.remove("LOCK");
    assert_eq!(after, before);
}

/// Segment files that are all blank (a log whose creation crashed before
/// its first header reached the disk): with nothing in them it is an empty
/// log, which a write open initialises; with data in one of them nothing
/// identifies the log, so both opens refuse and change nothing.
#[test]
fn test_only_blank_segments() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    fs::write(seg_path(dir.path(), 0), vec![0u8; SEG as usize]).unwrap();
    let reader = WalReader::open(dir.path(), cfg()).unwrap();
    assert_eq!(reader.snapshot().iter().count(), 0);
    assert!(reader.recovery_report().problem.is_none());
    drop(reader);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    wal.append_txn(run(1), 1, &small_write(1)).unwrap();
    wal.close().unwrap();
    let (report, got) = read(dir.path());
    assert!(report.problem.is_none(), "{report:?}");
    assert_eq!(got.len(), 3, "the txn written after initialising");

    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![0u8; SEG as usize];
    bytes[5000] = 0x41;
    fs::write(seg_path(dir.path(), 0), vec![0u8; SEG as usize]).unwrap();
    fs::write(seg_path(dir.path(), 1), &bytes).unwrap();
    let before = hash_dir(dir.path());
    for e in [
        WalReader::open(dir.path(), cfg()).unwrap_err(),
        Wal::open(dir.path(), cfg()).unwrap_err(),
    ] {
        match e {
            Error::SegmentHeader { segment: 1, detail } => {
                assert!(detail.contains("holds data"), "{detail}")
            }
            e => panic!("blank segments holding data: {e}"),
        }
    }
    let mut after = hash_dir(dir.path());
    after.remove("LOCK");
    assert_eq!(after, before);
}

#[test]
fn test_segment_shorter_than_its_size() {
    let _s = serial();
    // A middle segment cut to two pages, inside a frame: its whole frames
    // below the cut are kept, the log ends at the cut frame (damage: a
    // segment follows), and a write open goes on in a new segment (the
    // short file is never extended).
    let (dir, m, firsts) = four_segments();
    let layout = m.layout();
    let k2 = m.below(firsts[&2]);
    let whole = (k2..m.entries.len())
        .take_while(|&k| layout[k].0 == 2 && layout[k].1 + m.len_of(k) <= 8192)
        .count();
    assert!(
        layout[k2 + whole].1 < 8192,
        "the cut must fall inside a frame"
    );
    set_len(&seg_path(dir.path(), 2), 8192);
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::MidLogCorruption,
            seq: 2,
            off: layout[k2 + whole].1,
            lsn: m.entries[k2 + whole].0,
            keep: k2 + whole,
            detail: "truncated",
        },
        "segment 2 of 0-3 cut to 8192 bytes",
    );
    assert_eq!(fs::metadata(seg_path(dir.path(), 2)).unwrap().len(), 8192);

    // The last segment holding frames cut short (the blank segment the
    // writer prepared still follows it): its whole frames are kept, the
    // rest is a torn tail, and a write open goes on in the next segment,
    // leaving the short file as it is.
    let (_, m, firsts) = four_segments();
    let layout = m.layout();
    let k3 = m.below(firsts[&3]);
    let frame_end = |k: usize| layout[k].1 + m.len_of(k);
    let cuts = [
        5000,
        8192,
        frame_end(k3 + 4),      // at a frame boundary
        frame_end(k3 + 4) + 10, // inside the next frame
    ];
    for cut in cuts {
        // (Every call writes the same entries: the model above holds.)
        let (dir, _, _) = four_segments();
        // Entries kept: every frame of segments 0-2, and the frames of
        // segment 3 that lie wholly below the cut.
        let keep = (0..m.entries.len())
            .take_while(|&k| layout[k].0 < 3 || frame_end(k) <= cut)
            .count();
        assert!(keep >= k3);
        let off = layout[keep].1;
        set_len(&seg_path(dir.path(), 3), cut);
        check_dir_fault(
            dir.path(),
            &m,
            Want {
                class: ProblemClass::TornTail,
                seq: 3,
                off,
                lsn: m.entries[keep].0,
                keep,
                detail: "truncated",
            },
            &format!("last segment cut to {cut} bytes"),
        );
        assert_eq!(fs::metadata(seg_path(dir.path(), 3)).unwrap().len(), cut);
    }

    // The first segment cut short while later segments follow it: its
    // header still identifies the log, and the cut is damage like any
    // other in it (the prefix before it is kept).
    let (dir, m, _) = four_segments();
    let whole = (0..m.entries.len())
        .take_while(|&k| layout[k].0 == 0 && layout[k].1 + m.len_of(k) <= 8192)
        .count();
    set_len(&seg_path(dir.path(), 0), 8192);
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::MidLogCorruption,
            seq: 0,
            off: layout[whole].1,
            lsn: m.entries[whole].0,
            keep: whole,
            detail: "truncated",
        },
        "segment 0 of 0-3 cut to 8192 bytes",
    );
}

#[test]
fn test_damaged_segment_header() {
    let _s = serial();
    // A later segment's header damaged (one bit, or wholly zeroed while
    // segments follow): the log ends before it (row 15 for a later segment).
    let (dir, m, firsts) = four_segments();
    let p2 = seg_path(dir.path(), 2);
    let b = fs::read(&p2).unwrap()[20];
    fs::OpenOptions::new()
        .write(true)
        .open(&p2)
        .unwrap()
        .write_all_at(&[b ^ 0x10], 20)
        .unwrap();
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::MidLogCorruption,
            seq: 2,
            off: 0,
            lsn: firsts[&2],
            keep: m.below(firsts[&2]),
            detail: "header checksum mismatch",
        },
        "a bit of segment 2's header flipped",
    );
    let (dir, m, firsts) = four_segments();
    fs::OpenOptions::new()
        .write(true)
        .open(seg_path(dir.path(), 2))
        .unwrap()
        .write_all_at(&[0u8; 128], 0)
        .unwrap();
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::MidLogCorruption,
            seq: 2,
            off: 0,
            lsn: firsts[&2],
            keep: m.below(firsts[&2]),
            detail: "blank header in the middle of the log",
        },
        "segment 2's header zeroed",
    );

    // The first segment's header damaged: the open is refused (row 15).
    let (dir, _, _) = four_segments();
    fs::OpenOptions::new()
        .write(true)
        .open(seg_path(dir.path(), 0))
        .unwrap()
        .write_all_at(b"XX", 0)
        .unwrap();
    for e in [
        WalReader::open(dir.path(), cfg()).unwrap_err(),
        Wal::open(dir.path(), cfg()).unwrap_err(),
    ] {
        match e {
            Error::SegmentHeader { segment: 0, detail } => {
                assert!(detail.contains("bad magic"), "{detail}")
            }
            e => panic!("damaged first header: {e}"),
        }
    }
}

#[test]
fn test_stray_files_are_ignored() {
    let _s = serial();
    let (dir, m, _) = four_segments();
    let d = dir.path();
    fs::write(d.join(".DS_Store"), b"\0\0\0\x01Bud1").unwrap();
    fs::write(d.join("notes.txt"), b"do not delete\n").unwrap();
    fs::create_dir(d.join("00000000000000000099.wal")).unwrap();
    fs::write(d.join("0000000000000000005.wal"), b"19 digits").unwrap();
    fs::write(d.join("00000000000000000005.WAL"), b"upper case").unwrap();
    fs::write(d.join("abc.wal"), b"not a number").unwrap();
    fs::write(d.join("00000000000000000005.wal.bak"), b"backup").unwrap();
    // A valid segment saved aside by an earlier repair, and a leftover of a
    // segment creation a crash interrupted (DESIGN.md §7 row 6).
    fs::copy(
        seg_path(d, 1),
        d.join("00000000000000000005.wal.discarded-1700000000000000"),
    )
    .unwrap();
    fs::write(d.join("00000000000000000005.wal.tmp"), vec![0u8; 4096]).unwrap();

    let (r, got) = read(d);
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_prefix(d, &got, &m, m.entries.len(), "stray files");
    let mut strays = hash_dir(d);
    strays.retain(|name, _| !name.ends_with(".wal") || name.len() != 24);
    strays.remove("00000000000000000005.wal.tmp");
    // The log's own lock file counts write opens (DESIGN.md §1).
    strays.remove("LOCK");

    let wal = Wal::open(d, cfg().recovery_mode(RecoveryMode::AbsoluteConsistency)).unwrap();
    assert!(wal.recovery_report().problem.is_none());
    assert_eq!(wal.recovery_report().entries, m.entries.len() as u64);
    assert!(
        !d.join("00000000000000000005.wal.tmp").exists(),
        "temp file kept"
    );
    let mut m2 = m.clone();
    for i in 0..45 {
        m2.txn(
            &wal,
            run(7),
            500 + i,
            &[Op::Write {
                key: b"k",
                value: &[b's'; 1500],
                version: i,
            }],
        );
    }
    wal.close().unwrap();
    let (r, got) = read(d);
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_prefix(d, &got, &m2, m2.entries.len(), "stray files, after appends");
    // Every stray file is untouched.
    let mut now = hash_dir(d);
    now.retain(|name, _| strays.contains_key(name));
    assert_eq!(now, strays);
    assert!(d.join("00000000000000000099.wal").is_dir());
}

// ---------------------------------------------------------------------------
// Injected failures (issue 4 item 7; DESIGN.md §7 rows 17-18).

/// Every call that would report success must fail on a poisoned handle.
fn assert_poisoned(wal: &Wal, ctx: &str) {
    let poisoned = |what: &str, r: durability::Result<()>| match r {
        Err(Error::Poisoned { cause }) => {
            assert!(cause.contains("injected"), "{ctx}: {what}: {cause}")
        }
        other => panic!("{ctx}: {what} after a failed sync: {other:?}"),
    };
    poisoned(
        "append_txn",
        wal.append_txn(run(9), 999_999, &[]).map(|_| ()),
    );
    poisoned(
        "append",
        wal.append(&WalEntry::AbortTxn {
            txn_id: 1,
            run_id: run(9),
        })
        .map(|_| ()),
    );
    poisoned(
        "checkpoint",
        wal.checkpoint(Uuid::nil(), 1, &[]).map(|_| ()),
    );
    poisoned("sync", wal.sync());
    poisoned("flush", wal.flush());
    poisoned(
        "purge_to_checkpoint",
        wal.purge_to_checkpoint(0).map(|_| ()),
    );
}

/// After the failure: the log on disk holds every acknowledged transaction
/// (and here everything published, since the page cache lost nothing),
/// reopens, and takes appends again.
/// After a failed operation (the handle dropped): a read-only open sees a
/// prefix of what was appended with every acknowledged entry; a write open
/// in this process keeps exactly what a completed sync covered when a sync
/// failed (`poisoned`: the poisoned-log rule, DESIGN.md §7), else all of
/// it; appends continue after it.
fn assert_recovers_after(dir: &Path, m: &Model, acked: usize, poisoned: bool, ctx: &str) {
    let (r, got) = read(dir);
    assert!(r.problem.is_none(), "{ctx}: {:?}", r.problem);
    assert!(got.len() >= acked, "{ctx}: acknowledged entries lost");
    assert_prefix(dir, &got, m, m.entries.len(), ctx);
    let wal = Wal::open(dir, cfg().sync_mode(SyncMode::Strict)).unwrap();
    let mut m2 = if poisoned {
        let trusted = m.prefix(acked);
        assert_eq!(wal.end_lsn(), trusted.end(), "{ctx}: the durable prefix");
        let problem = wal.recovery_report().problem.clone();
        if trusted.end() < m.end() {
            let p = problem.unwrap_or_else(|| panic!("{ctx}: untrusted bytes dropped silently"));
            assert_eq!(p.class, ProblemClass::TornTail, "{ctx}: {p}");
            assert!(p.detail.contains("not trusted"), "{ctx}: {p}");
        }
        trusted
    } else {
        m.clone()
    };
    m2.txn(&wal, run(5), 424_242, &[]);
    wal.close().unwrap();
    let (r, got) = read(dir);
    assert!(r.problem.is_none(), "{ctx}: {:?}", r.problem);
    assert_prefix(dir, &got, &m2, m2.entries.len(), ctx);
}

/// [`assert_recovers_after`] when no sync failed.
fn assert_recovers(dir: &Path, m: &Model, acked: usize, ctx: &str) {
    assert_recovers_after(dir, m, acked, false, ctx);
}

fn small_write(i: u64) -> [Op<'static>; 1] {
    [Op::Write {
        key: b"key",
        value: b"value",
        version: i,
    }]
}

#[test]
fn test_sync_failure_in_strict_mode_poisons_the_handle() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    let wal = Wal::open(dir.path(), cfg().sync_mode(SyncMode::Strict)).unwrap();
    for i in 0..5 {
        m.txn(&wal, run(1), i, &small_write(i));
    }
    // Two more syncs succeed (one per Strict commit), the third fails.
    faults::fail_syncs_after(2);
    for i in 5..7 {
        m.txn(&wal, run(1), i, &small_write(i));
    }
    let acked = m.entries.len();
    let durable = wal.stats().synced_lsn;
    assert_eq!(durable, m.end());
    match wal.append_txn_at(run(1), 7, 1_000_007, &small_write(7)) {
        Err(Error::Poisoned { cause }) => {
            assert!(cause.contains("injected sync failure"), "{cause}")
        }
        other => panic!("the commit whose sync failed: {other:?}"),
    }
    // It was published (written to the page cache) before the sync failed,
    // though never acknowledged.
    m.push(WalEntry::BeginTxn {
        txn_id: 7,
        run_id: run(1),
        timestamp: 1_000_007,
    });
    m.push(small_write(7)[0].entry(run(1)).to_owned());
    m.push(WalEntry::CommitTxn {
        txn_id: 7,
        run_id: run(1),
    });
    assert_poisoned(&wal, "strict");
    assert_eq!(
        wal.stats().synced_lsn,
        durable,
        "nothing synced after the failure"
    );
    assert_eq!(wal.end_lsn(), m.end());
    match wal.close() {
        Err(Error::Poisoned { .. }) => {}
        other => panic!("close of a poisoned log: {other:?}"),
    }
    faults::fail_syncs_after(-1);
    assert_recovers_after(dir.path(), &m, acked, true, "strict");
}

#[test]
fn test_sync_failure_in_batched_mode_poisons_the_handle() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    let mode = SyncMode::Batched {
        interval_ms: 3_600_000,
        batch_size: 4,
    };
    let wal = Wal::open(dir.path(), cfg().sync_mode(mode)).unwrap();
    faults::fail_syncs_after(1);
    // Appends 1-4: the 4th syncs (the one sync allowed). 5-7 return at
    // publish; the 8th must sync, fails, and reports it.
    for i in 0..7 {
        m.txn(&wal, run(2), i, &small_write(i));
        if i == 3 {
            assert_eq!(wal.stats().synced_lsn, m.end());
        }
    }
    let durable = wal.stats().synced_lsn;
    match wal.append_txn_at(run(2), 7, 1_000_007, &small_write(7)) {
        Err(Error::Poisoned { cause }) => assert!(cause.contains("injected"), "{cause}"),
        other => panic!("the append whose batch sync failed: {other:?}"),
    }
    m.push(WalEntry::BeginTxn {
        txn_id: 7,
        run_id: run(2),
        timestamp: 1_000_007,
    });
    m.push(small_write(7)[0].entry(run(2)).to_owned());
    m.push(WalEntry::CommitTxn {
        txn_id: 7,
        run_id: run(2),
    });
    assert_poisoned(&wal, "batched");
    assert_eq!(wal.stats().synced_lsn, durable);
    // Dropping a poisoned handle reports on stderr and does not panic.
    drop(wal);
    faults::fail_syncs_after(-1);
    assert_recovers_after(dir.path(), &m, 12, true, "batched");
}

#[test]
fn test_sync_failure_in_async_flusher_poisons_the_handle() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    let wal = Wal::open(
        dir.path(),
        cfg().sync_mode(SyncMode::Async { interval_ms: 5 }),
    )
    .unwrap();
    for i in 0..10 {
        m.txn(&wal, run(3), i, &small_write(i));
    }
    wal.sync().unwrap();
    let acked = m.entries.len();
    let durable = wal.stats().synced_lsn;
    assert_eq!(durable, m.end());
    // Nothing is unsynced, so the flusher has nothing to do until the next
    // append; its next sync fails.
    faults::fail_syncs_after(0);
    m.txn(&wal, run(3), 10, &small_write(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal.flush().is_ok() {
        assert!(Instant::now() < deadline, "the flusher never failed");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_poisoned(&wal, "async");
    assert_eq!(wal.stats().synced_lsn, durable);
    drop(wal);
    faults::fail_syncs_after(-1);
    assert_recovers_after(dir.path(), &m, acked, true, "async");
}

#[test]
fn test_sync_failure_with_concurrent_strict_appenders() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), cfg().sync_mode(SyncMode::Strict)).unwrap());
    faults::fail_syncs_after(25);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..400u64 {
                    match wal.append_txn(run(10 + t), i, &small_write(i)) {
                        Ok(pos) => acked.push((i, pos.end)),
                        Err(Error::Poisoned { .. }) => {
                            // And it stays failed, whatever is tried.
                            for j in 0..3 {
                                assert!(wal.append_txn(run(10 + t), 1000 + j, &[]).is_err());
                                assert!(wal.sync().is_err());
                            }
                            return acked;
                        }
                        Err(e) => panic!("thread {t}: {e}"),
                    }
                }
                panic!("thread {t}: 400 commits and the sync never failed");
            })
        })
        .collect();
    let acked: Vec<Vec<(u64, u64)>> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    // Every acknowledged commit was covered by a sync that completed.
    let durable = wal.stats().synced_lsn;
    for (t, a) in acked.iter().enumerate() {
        for &(i, end) in a {
            assert!(
                end <= durable,
                "thread {t} txn {i} acknowledged but not durable"
            );
        }
    }
    assert!(acked.iter().map(Vec::len).sum::<usize>() >= 1);
    drop(wal);
    faults::fail_syncs_after(-1);
    // Every acknowledged commit replays, in each run's order.
    let mut by_run: BTreeMap<RunId, Vec<u64>> = BTreeMap::new();
    let reader = WalReader::open(dir.path(), cfg()).unwrap();
    assert!(reader.recovery_report().problem.is_none());
    reader
        .replay(|txn| {
            by_run
                .entry(txn.run_id)
                .or_default()
                .push(txn.txn_id.unwrap())
        })
        .unwrap();
    for (t, a) in acked.iter().enumerate() {
        let got = by_run.get(&run(10 + t as u8)).cloned().unwrap_or_default();
        let want: Vec<u64> = a.iter().map(|&(i, _)| i).collect();
        assert!(
            got.len() >= want.len() && got[..want.len()] == want[..],
            "thread {t}: replayed {got:?}, acknowledged {want:?}"
        );
    }
}

#[test]
fn test_allocation_failure_is_a_clean_io_error() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    // Allocations: segment 0 (the open), segment 1 (prepared in the
    // background); segment 2 cannot be created.
    faults::fail_allocations_after(2);
    let wal = Wal::open(dir.path(), cfg().sync_mode(SyncMode::Strict)).unwrap();
    let mut m = Model::default();
    let value = [b'f'; 1000];
    let entry = |i: u64| WalEntry::Write {
        run_id: run(4),
        key: i.to_be_bytes().to_vec(),
        value: value.to_vec(),
        version: i,
    };
    let mut i = 0;
    let err = loop {
        match m.put(&wal, entry(i)) {
            Ok(_) => i += 1,
            Err(e) => break e,
        }
        assert!(i < 200, "the allocation never failed");
    };
    let acked = m.entries.len();
    match &err {
        Error::Io { op, path, error } => {
            assert_eq!(*op, "fallocate", "{err}");
            assert_eq!(error.kind(), std::io::ErrorKind::StorageFull, "{err}");
            assert!(
                path.to_string_lossy().contains("00000000000000000002.wal"),
                "{err}"
            );
        }
        e => panic!("a failed allocation: {e}"),
    }
    // It failed before anything was written: exactly two segments full.
    let layout = m.layout();
    assert_eq!(layout.last().unwrap().0, 1);
    assert_eq!(wal.stats().segments, 2);
    assert_eq!(wal.end_lsn(), m.end());
    // The handle is not poisoned (nothing half-written), and appends keep
    // failing cleanly while the disk is full.
    wal.flush().unwrap();
    assert!(matches!(m.put(&wal, entry(i)), Err(Error::Io { .. })));
    assert!(!seg_path(dir.path(), 2).exists());
    assert!(fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
    // What was written is readable meanwhile, by another reader.
    let (r, got) = read(dir.path());
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_prefix(dir.path(), &got, &m, acked, "while the disk is full");
    // Space comes back: appends go on in segment 2.
    faults::fail_allocations_after(-1);
    m.put(&wal, entry(i)).unwrap();
    assert_eq!(wal.stats().segments, 3);
    wal.close().unwrap();
    assert_recovers(dir.path(), &m, acked, "allocation");
}

#[test]
fn test_allocation_failure_inside_a_transaction_poisons_the_handle() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    faults::fail_allocations_after(2);
    let wal = Wal::open(dir.path(), cfg().sync_mode(SyncMode::Strict)).unwrap();
    let mut m = Model::default();
    // Transactions of two 40,000-byte writes, larger than a segment: they
    // must span segments (one that fits a segment never does), so the
    // rotation that fails comes in the middle of a transaction.
    let value = vec![b't'; 40_000];
    let ops = |i: u64| {
        [
            Op::Write {
                key: b"k",
                value: &value[..],
                version: i,
            },
            Op::Write {
                key: b"l",
                value: &value[..],
                version: i,
            },
        ]
    };
    let mut i = 0;
    let err = loop {
        match m.try_txn(&wal, run(6), i, &ops(i)) {
            Ok(_) => i += 1,
            Err(e) => break e,
        }
        assert!(i < 100, "the allocation never failed");
    };
    let acked = m.entries.len();
    // Where the failed transaction's frames would go, by DESIGN.md §5.
    let mut trial = m.clone();
    trial.push(WalEntry::BeginTxn {
        txn_id: i,
        run_id: run(6),
        timestamp: 0,
    });
    trial.push(ops(i)[0].entry(run(6)).to_owned());
    let layout = trial.layout();
    let n = layout.len();
    assert_eq!(
        (layout[n - 2].0, layout[n - 1].0),
        (1, 2),
        "the begin must fit segment 1 and the write must not"
    );
    assert!(
        matches!(
            err,
            Error::Io {
                op: "fallocate",
                ..
            }
        ),
        "{err}"
    );
    match wal.flush() {
        Err(Error::Poisoned { cause }) => {
            assert!(cause.contains("append failed after LSN"), "{cause}")
        }
        other => panic!("a transaction half written: {other:?}"),
    }
    assert!(wal.append_txn(run(6), 1000, &[]).is_err());
    assert!(wal.close().is_err());
    faults::fail_allocations_after(-1);
    // The half-written transaction was never acknowledged: recovery may
    // find its BeginTxn, but replay never delivers it.
    let (r, got) = read(dir.path());
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert!(
        got.len() == acked || got.len() == acked + 1,
        "{}",
        got.len()
    );
    assert_eq!(got[..acked], m.entries[..]);
    assert_eq!(replayed(dir.path()), m.committed(acked));
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    assert_eq!(wal.recovery_report().committed_txns, i);
    // No sync failed: the page cache tells the truth, the poisoned-log rule
    // does not apply, and the half-written transaction's BeginTxn is kept.
    assert!(
        wal.recovery_report().problem.is_none(),
        "{:?}",
        wal.recovery_report().problem
    );
    assert!(!dir.path().join("POISONED").exists());
    assert_eq!(wal.recovery_report().entries, acked as u64 + 1);
    wal.append_txn(run(6), i, &ops(i)).unwrap();
    drop(wal);
    let reader = WalReader::open(dir.path(), cfg()).unwrap();
    assert_eq!(reader.recovery_report().committed_txns, i + 1);
}

#[test]
fn test_allocation_failure_when_creating_a_log() {
    let _s = serial();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    faults::fail_allocations_after(0);
    match Wal::open(&dir, cfg()) {
        Err(Error::Io {
            op: "fallocate",
            error,
            ..
        }) => {
            assert_eq!(error.kind(), std::io::ErrorKind::StorageFull)
        }
        other => panic!("creating a log on a full disk: {other:?}"),
    }
    // Nothing half-made is left that a later open would mistake for a log.
    assert!(seg_files(&dir).is_empty());
    assert!(fs::read_dir(&dir).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".wal")));
    assert!(matches!(
        WalReader::open(&dir, cfg()),
        Err(Error::NotALog { .. })
    ));
    faults::fail_allocations_after(-1);
    let wal = Wal::open(&dir, cfg()).unwrap();
    wal.append_txn(run(1), 1, &[]).unwrap();
    wal.close().unwrap();
    assert_eq!(
        WalReader::open(&dir, cfg())
            .unwrap()
            .recovery_report()
            .committed_txns,
        1
    );
}

// ---------------------------------------------------------------------------
// Reused files (issue 4 item 8). This log never recycles a segment file:
// retention unlinks, new segments are fresh files. The CRC seed is what
// would keep an old record from passing for a new one, and these tests
// prove it does.

#[test]
fn test_frames_of_another_log_never_validate() {
    let _s = serial();
    // Logs A and B of the same shape (frames at the same LSNs and offsets),
    // different contents and instance ids.
    let a = tempfile::tempdir().unwrap();
    let ma = write_segments(a.path(), 130, b'A', run(1));
    let (b, mb, firsts) = four_segments();
    assert_eq!(first_lsns(a.path()), firsts);
    let salt_a = salt(&WalReader::open(a.path(), cfg()).unwrap().instance_id());
    let salt_b = salt(&WalReader::open(b.path(), cfg()).unwrap().instance_id());
    assert_ne!(salt_a, salt_b);

    // A's segment 1 copied over B's, with B's header page kept (so the file
    // claims to be B's segment 1: instance, seq and first LSN are right).
    let pa = seg_path(a.path(), 1);
    let pb = seg_path(b.path(), 1);
    let mut bytes = fs::read(&pa).unwrap();
    bytes[..DATA as usize].copy_from_slice(&fs::read(&pb).unwrap()[..DATA as usize]);
    fs::write(&pb, &bytes).unwrap();

    // Frame by frame: each of A's frames there validates with A's seed at
    // its LSN, and none with B's.
    let dec = Decoder::default();
    let (first, next) = (firsts[&1], firsts[&2]);
    let mut frames = 0;
    for (lsn, e) in ma.entries.iter().filter(|(l, _)| *l >= first && *l < next) {
        let off = (DATA + lsn - first) as usize;
        let f = dec
            .decode(&bytes, off, crc_seed(salt_a, *lsn))
            .unwrap()
            .unwrap();
        assert_eq!(&f.entry.to_owned(), e);
        match dec.decode(&bytes, off, crc_seed(salt_b, *lsn)) {
            Err(Error::Checksum { at, .. }) => assert_eq!(at, Location::at(off as u64)),
            other => panic!("A's frame at LSN {lsn} in B: {other:?}"),
        }
        frames += 1;
    }
    assert!(frames > 30);

    // Recovery of B stops at the start of that segment's data.
    let (r, got) = read(b.path());
    let p = r.problem.clone().expect("a problem");
    assert_eq!(
        (p.class, p.segment, p.offset, p.lsn),
        (ProblemClass::MidLogCorruption, 1, DATA, first),
        "{p}"
    );
    assert!(p.detail.contains("checksum mismatch"), "{p}");
    assert_prefix(b.path(), &got, &mb, mb.below(first), "A's segment in B");

    // As the last segment: still nothing of A is read (a torn tail now).
    let (b, mb, firsts) = four_segments();
    remove_blanks(b.path());
    let pb = seg_path(b.path(), 3);
    let mut bytes = fs::read(seg_path(a.path(), 3)).unwrap();
    bytes[..DATA as usize].copy_from_slice(&fs::read(&pb).unwrap()[..DATA as usize]);
    fs::write(&pb, &bytes).unwrap();
    let (r, got) = read(b.path());
    let p = r.problem.clone().expect("a problem");
    assert_eq!(
        (p.class, p.segment, p.offset),
        (ProblemClass::TornTail, 3, DATA),
        "{p}"
    );
    assert_prefix(
        b.path(),
        &got,
        &mb,
        mb.below(firsts[&3]),
        "A's last segment in B",
    );
}

#[test]
fn test_old_frames_of_the_same_log_never_validate_elsewhere() {
    let _s = serial();
    // Segment 0's frames copied into segment 2's data area, under segment
    // 2's header: the same log, other LSNs. None validates.
    let (dir, m, firsts) = four_segments();
    let old = fs::read(seg_path(dir.path(), 0)).unwrap();
    let p2 = seg_path(dir.path(), 2);
    let mut bytes = fs::read(&p2).unwrap();
    bytes[DATA as usize..].copy_from_slice(&old[DATA as usize..]);
    fs::write(&p2, &bytes).unwrap();
    let (r, got) = read(dir.path());
    let p = r.problem.clone().expect("a problem");
    assert_eq!(
        (p.class, p.segment, p.offset, p.lsn),
        (ProblemClass::MidLogCorruption, 2, DATA, firsts[&2]),
        "{p}"
    );
    assert_prefix(dir.path(), &got, &m, m.below(firsts[&2]), "segment 0 in 2");

    // A recycled file put into use as the next segment, with old frames in
    // it, and a crash before its header or any new frame was written: its
    // first frame does not continue the log, so it is not adopted (row 5).
    let (dir, m, _) = four_segments();
    let mut recycled = vec![0u8; SEG as usize];
    recycled[DATA as usize..].copy_from_slice(&old[DATA as usize..]);
    fs::write(seg_path(dir.path(), 4), &recycled).unwrap();
    check_dir_fault(
        dir.path(),
        &m,
        Want {
            class: ProblemClass::TornTail,
            seq: 4,
            off: DATA,
            lsn: m.end(),
            keep: m.entries.len(),
            detail: "does not continue the log",
        },
        "old frames in an unsealed next segment",
    );
}

#[test]
fn test_no_entry_reappears_after_retention() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let value = [b'o'; 1500];
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
    let ck = m
        .put(
            &wal,
            WalEntry::Checkpoint {
                snapshot_id: Uuid::from_u128(1),
                version: 100,
                active_runs: vec![],
            },
        )
        .unwrap();
    let removed = wal.purge_to_checkpoint(ck).unwrap();
    assert!(removed >= 2, "{removed}");
    let start = wal.start_lsn();
    let gone: Vec<u64> = (0..removed as u64).collect();
    for seq in &gone {
        assert!(!seg_path(dir.path(), *seq).exists());
    }
    // More, into new segments; then the process "crashes" (the handle is
    // dropped without close; the page cache keeps what was written).
    let value = [b'N'; 1500];
    for i in 100..200 {
        m.txn(
            &wal,
            run(2),
            i,
            &[Op::Write {
                key: b"k",
                value: &value,
                version: i,
            }],
        );
    }
    drop(wal);
    let keep_from = m.below(start);
    let live = Model {
        entries: m.entries[keep_from..].to_vec(),
        units: Vec::new(),
    };
    let reader = WalReader::open(dir.path(), cfg()).unwrap();
    let r = reader.recovery_report().clone();
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_eq!(r.first_lsn, start);
    let got: Vec<(u64, WalEntry)> = reader
        .snapshot()
        .iter()
        .map(|e| {
            let e = e.unwrap();
            (e.lsn, e.entry.to_owned())
        })
        .collect();
    assert_eq!(got.len(), live.entries.len());
    assert!(got == live.entries, "the log after retention");
    assert!(got.iter().all(|(l, _)| *l >= start));
    // No segment number was used twice: the new files came after the old.
    let seqs: Vec<u64> = seg_files(dir.path()).iter().map(|(s, _)| *s).collect();
    assert!(seqs.iter().all(|s| !gone.contains(s)), "{seqs:?}");
    assert_eq!(
        reader.snapshot().segment_seqs().next(),
        Some(removed as u64)
    );
    drop(reader);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    assert_eq!(wal.start_lsn(), start);
    assert_eq!(wal.recovery_report().entries, live.entries.len() as u64);
}

/// The poisoned-log rule's repair never rewrites the failed handle's file:
/// a snapshot taken before the failure keeps reading every entry it held,
/// byte for byte, after a reopen trimmed the log to its synced prefix. The
/// record is kept in the directory (the page cache is shared by every
/// process) until the repair is durable.
#[test]
fn test_a_poisoned_reopen_keeps_old_snapshots_whole() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    let mode = SyncMode::Batched {
        interval_ms: 3_600_000,
        batch_size: 1_000_000,
    };
    let wal = Wal::open(dir.path(), cfg().sync_mode(mode)).unwrap();
    for i in 0..5 {
        m.txn(&wal, run(4), i, &small_write(i));
    }
    wal.sync().unwrap();
    let acked = m.entries.len();
    for i in 5..40 {
        m.txn(&wal, run(4), i, &small_write(i));
    }
    faults::fail_syncs_after(0);
    assert!(matches!(wal.sync(), Err(Error::Poisoned { .. })));
    faults::fail_syncs_after(-1);
    assert!(dir.path().join("POISONED").exists(), "no durable record");
    let snap = wal.snapshot();
    let before: Vec<(u64, WalEntry)> = snap
        .iter()
        .map(|e| {
            let e = e.unwrap();
            (e.lsn, e.entry.to_owned())
        })
        .collect();
    assert_eq!(before, m.entries);
    drop(wal);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let trusted = m.prefix(acked);
    assert_eq!(wal.end_lsn(), trusted.end());
    assert!(!dir.path().join("POISONED").exists(), "record not cleared");
    // New entries go where the untrusted ones were; the old view is intact.
    let mut m2 = trusted;
    for i in 100..140 {
        m2.txn(&wal, run(5), i, &small_write(i));
    }
    let after: Vec<(u64, WalEntry)> = snap
        .iter()
        .map(|e| {
            let e = e.unwrap();
            (e.lsn, e.entry.to_owned())
        })
        .collect();
    assert_eq!(after, before, "the old snapshot's bytes changed");
    wal.close().unwrap();
    let (r, got) = read(dir.path());
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_eq!(got, m2.entries);
}

/// The resync of the recovered tail at open fails: the poisoned-log record
/// then names how far the disk itself holds the log (read around the page
/// cache), not the start of the last segment. Every entry an earlier
/// process acknowledged is on disk, so the next open keeps it.
#[test]
fn test_a_failed_resync_at_open_keeps_what_the_disk_holds() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    let strict = cfg().sync_mode(SyncMode::Strict);
    let wal = Wal::open(dir.path(), strict.clone()).unwrap();
    for i in 0..600 {
        m.txn(&wal, run(6), i, &small_write(i));
    }
    let segments = wal.stats().segments;
    assert!(segments >= 2, "the last segment must not be the first");
    wal.close().unwrap();
    faults::fail_syncs_after(0);
    match Wal::open(dir.path(), strict.clone()) {
        Err(Error::Io { op, .. }) => assert_eq!(op, "sync recovered log"),
        other => panic!("the resync did not fail: {other:?}"),
    }
    faults::fail_syncs_after(-1);
    assert!(dir.path().join("POISONED").exists(), "no durable record");
    let wal = Wal::open(dir.path(), strict).unwrap();
    assert_eq!(wal.end_lsn(), m.end(), "acknowledged entries were dropped");
    assert!(!dir.path().join("POISONED").exists());
    wal.close().unwrap();
    let (r, got) = read(dir.path());
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_eq!(got, m.entries);
}

/// A final sync that fails: `shutdown` returns the failure to every
/// caller, not only the first, and the log is poisoned (a reopen recovers
/// what reached the disk).
#[test]
fn a_failed_final_sync_is_every_shutdown_callers_error() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    // No background sync before the close's: the close's is the one that
    // fails.
    let config = cfg().sync_mode(SyncMode::Async {
        interval_ms: 600_000,
    });
    let wal = Arc::new(Wal::open(dir.path(), &config).unwrap());
    wal.append_txn(
        run(1),
        1,
        &[Op::Write {
            key: b"k",
            value: b"v",
            version: 1,
        }],
    )
    .unwrap();
    faults::fail_syncs_after(0);
    let first = wal.shutdown();
    let second = wal.shutdown();
    faults::fail_syncs_after(-1);
    assert!(matches!(first, Err(Error::Poisoned { .. })), "{first:?}");
    assert!(matches!(second, Err(Error::Poisoned { .. })), "{second:?}");
    drop(wal);
    let reopened = Wal::open(dir.path(), config).unwrap();
    reopened.close().unwrap();
}
