//! Helpers shared by the user's corruption tests (`corruption_test.rs`,
//! SPEC §5) and corruption-simulation tests (`corruption_simulation_test.rs`,
//! SPEC §6): a seeded single-segment log built through the public API with a
//! record of every frame written, byte-level damage, and the assertions of
//! issue 4's invariant. Each test binary uses only some of them.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use durability::format::frame::frame_len;
use durability::{
    Config, Error, Location, Op, Problem, ProblemClass, RecoveryMode, RecoveryReport, RunId,
    SyncMode, Wal, WalEntry, WalReader,
};
use uuid::Uuid;

pub const SEG: u64 = 64 << 10;
/// File offset of the first frame of every segment.
pub const DATA: u64 = 4096;

/// A fixed log id, so every CRC (seeded from it) and so every run of these
/// tests is the same.
pub fn cfg() -> Config {
    Config::default()
        .segment_size(SEG)
        .sync_mode(SyncMode::Async { interval_ms: 1_000 })
        .instance_id(uuid::Uuid::from_u128(
            0x5EED_0000_0000_4000_8000_0000_0000_0001,
        ))
}

pub fn run(n: u8) -> RunId {
    RunId::from_bytes([n; 16])
}

mod rng;
pub use rng::Rng;

/// What was written: every frame's LSN and entry, in log order.
#[derive(Default, Clone)]
pub struct Model {
    pub entries: Vec<(u64, WalEntry)>,
}

impl Model {
    pub fn end(&self) -> u64 {
        self.entries
            .last()
            .map_or(0, |(l, e)| l + frame_len(&e.as_borrowed()) as u64)
    }

    pub fn put(&mut self, wal: &Wal, e: WalEntry) -> u64 {
        let lsn = wal.append(&e).map(|p| p.lsn).unwrap();
        assert_eq!(lsn, self.end(), "the log is contiguous");
        self.entries.push((lsn, e));
        lsn
    }

    pub fn txn(&mut self, wal: &Wal, run: RunId, txn_id: u64, ops: &[Op<'_>]) {
        let timestamp = 1_000_000 + txn_id;
        let pos = wal.append_txn_at(run, txn_id, timestamp, ops).unwrap();
        assert_eq!(pos.begin, self.end());
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
    }

    pub fn push(&mut self, e: WalEntry) {
        let lsn = self.end();
        self.entries.push((lsn, e));
    }

    pub fn len_of(&self, k: usize) -> u64 {
        frame_len(&self.entries[k].1.as_borrowed()) as u64
    }

    /// The committed transactions among the first `k` entries, in commit
    /// order: what replay must deliver from that prefix.
    pub fn committed(&self, k: usize) -> Vec<(RunId, u64)> {
        let mut open = Vec::new();
        let mut out = Vec::new();
        for (_, e) in &self.entries[..k] {
            match e {
                WalEntry::BeginTxn { txn_id, run_id, .. } => open.push((*run_id, *txn_id)),
                WalEntry::CommitTxn { txn_id, run_id } if open.contains(&(*run_id, *txn_id)) => {
                    open.retain(|t| *t != (*run_id, *txn_id));
                    out.push((*run_id, *txn_id));
                }
                WalEntry::AbortTxn { txn_id, run_id } => open.retain(|t| *t != (*run_id, *txn_id)),
                _ => {}
            }
        }
        out
    }
}

/// A single-segment log of `txns` transactions of 1-3 writes and deletes on
/// three runs, every fifth one aborted, a checkpoint in the middle.
pub fn build(dir: &Path, seed: u64, txns: u64) -> Model {
    let mut rng = Rng::new(seed);
    let mut m = Model::default();
    let wal = Wal::open(dir, cfg()).unwrap();
    for i in 0..txns {
        let r = run(1 + (i % 3) as u8);
        let keys: Vec<Vec<u8>> = (0..3)
            .map(|j| format!("key-{i}-{j}").into_bytes())
            .collect();
        let vals: Vec<Vec<u8>> = (0..3)
            .map(|_| {
                let n = 16 + rng.below(100) as usize;
                rng.text(n)
            })
            .collect();
        let nops = 1 + rng.below(3) as usize;
        let ops: Vec<Op<'_>> = (0..nops)
            .map(|j| {
                if rng.below(4) == 0 {
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
        if i % 5 == 4 {
            m.put(
                &wal,
                WalEntry::BeginTxn {
                    txn_id: i,
                    run_id: r,
                    timestamp: 7,
                },
            );
            for op in &ops {
                m.put(&wal, op.entry(r).to_owned());
            }
            m.put(
                &wal,
                WalEntry::AbortTxn {
                    txn_id: i,
                    run_id: r,
                },
            );
        } else {
            m.txn(&wal, r, i, &ops);
        }
        if i == txns / 2 {
            m.put(
                &wal,
                WalEntry::Checkpoint {
                    snapshot_id: Uuid::from_u128(u128::from(seed)),
                    version: i,
                    active_runs: vec![run(1), run(2)],
                },
            );
        }
    }
    assert!(m.end() + DATA < SEG, "the log must fit one segment");
    wal.close().unwrap();
    m
}

pub fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

pub fn is_blank(path: &Path) -> bool {
    fs::read(path).unwrap()[..128].iter().all(|&b| b == 0)
}

/// A fresh directory holding a copy of every segment file of `from`.
pub fn copy_log(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for p in segment_files(from) {
        fs::copy(&p, to.path().join(p.file_name().unwrap())).unwrap();
    }
    to
}

pub fn read_byte(path: &Path, off: u64) -> u8 {
    let f = fs::File::open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, off).unwrap();
    b[0]
}

pub fn patch(path: &Path, off: u64, bytes: &[u8]) {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

pub fn flip(path: &Path, off: u64, mask: u8) {
    assert_ne!(mask, 0);
    let b = read_byte(path, off);
    patch(path, off, &[b ^ mask]);
}

pub fn zero(path: &Path, from: u64, to: u64) {
    patch(path, from, &vec![0u8; (to - from) as usize]);
}

/// Opens `dir` read-only; returns the report and every entry read, each of
/// which must decode (a damaged entry must never be served).
pub fn read(dir: &Path) -> (RecoveryReport, Vec<(u64, WalEntry)>) {
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

/// The committed transactions replay delivers from `dir`.
pub fn replayed(dir: &Path) -> Vec<(RunId, u64)> {
    let reader = WalReader::open(dir, cfg()).unwrap();
    let mut out = Vec::new();
    reader
        .replay(|t| out.push((t.run_id, t.txn_id.expect("no standalone writes here"))))
        .unwrap();
    out
}

/// The invariant: what was read is exactly the first `k` entries written,
/// and replay delivers exactly the transactions committed among them.
pub fn assert_prefix(dir: &Path, got: &[(u64, WalEntry)], m: &Model, k: usize, ctx: &str) {
    assert_eq!(got.len(), k, "{ctx}: read {} entries, want {k}", got.len());
    assert!(
        got == &m.entries[..k],
        "{ctx}: what was read is not the prefix written"
    );
    assert_eq!(replayed(dir), m.committed(k), "{ctx}: replay");
}

pub fn problem(r: &RecoveryReport, ctx: &str) -> Problem {
    r.problem
        .clone()
        .unwrap_or_else(|| panic!("{ctx}: no problem reported: {r:?}"))
}

/// Asserts the report names a problem of `class` at file offset `off` of
/// segment `seq`, `lsn`.
pub fn assert_problem(
    r: &RecoveryReport,
    class: ProblemClass,
    seq: u64,
    off: u64,
    lsn: u64,
    ctx: &str,
) {
    let p = problem(r, ctx);
    assert_eq!(p.class, class, "{ctx}: {p}");
    assert_eq!((p.segment, p.offset, p.lsn), (seq, off, lsn), "{ctx}: {p}");
    assert_eq!(p.file, format!("{seq:020}.wal"), "{ctx}");
    assert_eq!(r.end_lsn, lsn, "{ctx}: the valid log ends at the problem");
}

/// A write open and a read-only open in AbsoluteConsistency must both
/// refuse mid-log corruption with `Error::Corrupt` at the problem's location.
pub fn assert_refused(dir: &Path, seq: u64, off: u64, ctx: &str) {
    let strict = cfg().recovery_mode(RecoveryMode::AbsoluteConsistency);
    let results = [
        ("write open", Wal::open(dir, strict.clone()).map(drop)),
        ("read-only open", WalReader::open(dir, &strict).map(drop)),
    ];
    for (how, result) in results {
        match result {
            Err(Error::Corrupt { at, class, .. }) => {
                assert_eq!(class, ProblemClass::MidLogCorruption, "{ctx}: {how}");
                assert_eq!(at, Location::in_segment(seq, off), "{ctx}: {how}");
            }
            Err(e) => panic!("{ctx}: {how} refused with the wrong error: {e}"),
            Ok(()) => panic!("{ctx}: AbsoluteConsistency {how} opened a corrupt log"),
        }
    }
}
