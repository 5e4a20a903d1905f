//! The `model` target: a sequence of operations on a log (appends of every
//! kind, syncs, checkpoints with retention, clean reopens, process crashes
//! and power cuts) checked against an in-memory model: the list of entries
//! appended, with their LSNs, from which the committed transactions follow
//! by the replay rules (`log::units`).
//!
//! A crash never stops the writer: the files are copied (as the page cache
//! holds them, which is what a process crash leaves) into the other of two
//! scratch directories, damaged there as the crash allows, and the log is
//! reopened from the copy; the old handle is dropped.
//!
//! The log syncs only when asked (Async mode with an hour's interval), so
//! nothing happens in the background between operations and what a crash
//! finds does not depend on timing.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use arbitrary::Arbitrary;
use durability::frame;
use durability::segment;
use durability::{Error, Op, ProblemClass, RunId, Wal, WalEntry};
use uuid::Uuid;

use crate::log::{self, DATA_START, HEADER_LEN, SECTOR};
use crate::{scratch, Few, Rest};

/// Segment size of the model's log: 4 KiB of frames per segment, so a few
/// transactions rotate.
pub const SEGMENT_SIZE: u64 = 8192;
/// The segment size of every other open (odd-numbered reopens, crashes and
/// power cuts): a log holds segments of both sizes, and entries too large
/// for the default limit of the smaller size, which must read back whole
/// when it is opened with the smaller size again.
pub const WIDE_SEGMENT_SIZE: u64 = 12288;
/// At most this many operations are run.
pub const MAX_OPS: usize = 64;
/// At most this many ops in one transaction.
pub const MAX_TXN_OPS: usize = 8;
/// At most this many bit flips per power cut: CRC-32C detects every error
/// of up to 3 bits in a frame this size, so each flip surely damages the
/// frame it hits.
pub const MAX_FLIPS: usize = 3;
/// At most this many lost sectors per power cut.
pub const MAX_LOSSES: usize = 16;
/// At most this many reopens, crashes and power cuts per run (later ones
/// are skipped): opening is what costs most.
pub const MAX_OPENS: usize = 6;

/// The input of `model`.
#[derive(Arbitrary, Debug, Clone)]
pub struct ModelInput {
    pub ops: Rest<ModelOp, MAX_OPS>,
}

/// One operation.
#[derive(Arbitrary, Debug, Clone)]
pub enum ModelOp {
    /// `append_txn`: BeginTxn, the ops, CommitTxn.
    Txn { run: u8, txn: u8, ops: Few<KvOp, 8> },
    /// A standalone Write or Delete (`append`).
    Single { run: u8, op: KvOp },
    /// BeginTxn, the ops and AbortTxn, each appended on its own.
    Aborted { run: u8, txn: u8, ops: Few<KvOp, 8> },
    /// A BeginTxn on its own.
    Begin { run: u8, txn: u8 },
    /// A CommitTxn or AbortTxn on its own.
    End { run: u8, txn: u8, abort: bool },
    /// A Write with a value of `len % 4200` bytes: near or past the largest
    /// entry a segment holds. Alone or in a transaction.
    Big { run: u8, len: u16, in_txn: bool },
    /// `sync()`.
    Sync,
    /// `checkpoint` listing the runs in the low 4 bits of `active` as
    /// active, then (if `truncate`) `truncate_before` it.
    Checkpoint { active: u8, truncate: bool },
    /// `close()` and reopen.
    Reopen,
    /// A process crash: everything published survives. A transaction was
    /// being appended: `written % (n + 1)` of its `n` frames (BeginTxn,
    /// `inflight`, CommitTxn) were written but not published, and
    /// `torn % len` bytes of the next one.
    Crash {
        inflight: Few<KvOp, 8>,
        written: u8,
        torn: u16,
    },
    /// A power cut: sectors holding bytes written since the last completed
    /// sync may revert to an older version (zero past some point) or, with
    /// `garble`, hold junk; up to 3 bits flip anywhere.
    PowerCut {
        lose: Few<Loss, 16>,
        flips: Few<BitFlip, 3>,
    },
}

/// A Write (or Delete) of key `key % 8`.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct KvOp {
    pub delete: bool,
    pub key: u8,
    pub value_len: u8,
}

/// A sector lost in a power cut (`sector` indexes the candidates). It
/// reverts to an older version: zero from the durable point on, or (with
/// `keep`) from a frame boundary inside it (chosen by `keep`): a version
/// written back after the last sync, between two appends. With `garble`,
/// junk instead of zeros.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Loss {
    pub sector: u16,
    pub keep: Option<u16>,
    pub garble: Option<u64>,
}

/// A bit flip in a segment file of the log.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct BitFlip {
    pub file: u8,
    pub offset: u16,
    pub bit: u8,
}

fn run_id(n: u8) -> RunId {
    RunId::from_bytes([n % 4 + 1; 16])
}

fn all_runs() -> [RunId; 4] {
    [run_id(0), run_id(1), run_id(2), run_id(3)]
}

/// An entry of the model: where it is and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    lsn: u64,
    end: u64,
    entry: WalEntry,
}

fn frame_len(e: &WalEntry) -> u64 {
    frame::frame_len(&e.as_borrowed()) as u64
}

fn kv(run: RunId, op: KvOp, step: u64) -> WalEntry {
    let key = vec![b'a' + op.key % 8];
    if op.delete {
        WalEntry::Delete {
            run_id: run,
            key,
            version: step,
        }
    } else {
        WalEntry::Write {
            run_id: run,
            key,
            value: vec![op.key ^ step as u8; op.value_len as usize % 48],
            version: step,
        }
    }
}

fn as_op(e: &WalEntry) -> Op<'_> {
    match e {
        WalEntry::Write {
            key,
            value,
            version,
            ..
        } => Op::Write {
            key,
            value,
            version: *version,
        },
        WalEntry::Delete { key, version, .. } => Op::Delete {
            key,
            version: *version,
        },
        other => unreachable!("not an op: {other:?}"),
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 24) as u8
    }
}

/// What the open after a crash must show.
#[derive(Debug)]
enum After {
    /// Everything the model holds (a process crash), then these entries
    /// that were written but not published; the problem, if any, a torn
    /// tail (only if `torn`).
    All { inflight: Vec<Entry>, torn: bool },
    /// A prefix of the model: at least every entry that ends at or before
    /// `must`, none that ends after `may`. With `clean`, the damage is only
    /// lost sectors, so the problem, if any, is a torn tail. With
    /// `may_refuse`, the first segment's header was hit, so the open may
    /// fail with `SegmentHeader`.
    Prefix {
        must: u64,
        may: u64,
        clean: bool,
        may_refuse: bool,
    },
}

/// How much `check_full` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    Entries,
    Runs,
    All,
}

/// Where an entry of the live log is.
#[derive(Debug, Clone, Copy)]
struct Pos {
    lsn: u64,
    end: u64,
    segment: u64,
    offset: usize,
}

/// A segment of the live log: sequence number, first LSN, the LSN where its
/// frames end.
#[derive(Debug, Clone, Copy)]
struct Seg {
    seq: u64,
    first: u64,
    end: u64,
}

struct Model {
    dirs: [PathBuf; 2],
    cur: usize,
    wal: Option<Wal>,
    /// Every entry of the log, in order.
    entries: Vec<Entry>,
    /// The log's first LSN and its end.
    start: u64,
    end: u64,
    /// The end at the last explicit sync or open: durable for sure.
    synced: u64,
    /// Counts operations: timestamps and versions.
    step: u64,
    /// Reopens, crashes and power cuts run so far.
    opens: usize,
    max_payload: usize,
}

impl Model {
    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("open")
    }

    fn dir(&self) -> &PathBuf {
        &self.dirs[self.cur]
    }

    /// The configuration of the next open: it alternates between two
    /// segment sizes (and so two default entry-size limits).
    fn config(&self) -> durability::Config {
        log::config(if self.opens % 2 == 1 {
            WIDE_SEGMENT_SIZE
        } else {
            SEGMENT_SIZE
        })
    }

    fn open(&mut self) -> Result<(), Error> {
        let config = self.config();
        self.max_payload = config.effective_max_entry_size() as usize;
        let wal = Wal::open(self.dir(), config)?;
        self.wal = Some(wal);
        let s = self.wal().stats();
        assert_eq!(
            s.synced_lsn, s.end_lsn,
            "an opened log is not synced to its end"
        );
        self.synced = s.end_lsn;
        Ok(())
    }

    fn push(&mut self, lsn: u64, entry: WalEntry) {
        assert_eq!(
            lsn, self.end,
            "an append did not land at the end of the log"
        );
        let end = lsn + frame_len(&entry);
        self.entries.push(Entry { lsn, end, entry });
        self.end = end;
    }

    fn too_large(&self, e: &WalEntry) -> bool {
        frame::payload_len(&e.as_borrowed()) > self.max_payload
    }

    /// Appends one entry with `append`.
    fn append(&mut self, e: WalEntry) {
        match self.wal().append(&e) {
            Ok(lsn) => {
                assert!(!self.too_large(&e), "accepted an entry above the maximum");
                self.push(lsn, e);
            }
            Err(Error::EntryTooLarge { .. }) => assert!(self.too_large(&e), "refused {e:?}"),
            Err(err) => panic!("append failed: {err}"),
        }
    }

    /// Appends a transaction with `append_txn_at` (a fixed timestamp keeps
    /// the log deterministic).
    fn append_txn(&mut self, run: RunId, txn: u64, ops: Vec<WalEntry>) {
        let ts = self.step;
        let borrowed: Vec<Op<'_>> = ops.iter().map(as_op).collect();
        let result = self.wal().append_txn_at(run, txn, ts, &borrowed);
        let large = ops.iter().any(|e| self.too_large(e));
        match result {
            Ok(pos) => {
                assert!(
                    !large,
                    "accepted a transaction with an entry above the maximum"
                );
                assert_eq!(pos.begin, self.end, "TxnPosition.begin");
                let begin = WalEntry::BeginTxn {
                    txn_id: txn,
                    run_id: run,
                    timestamp: ts,
                };
                self.push(pos.begin, begin);
                for e in ops {
                    self.push(self.end, e);
                }
                assert_eq!(pos.commit, self.end, "TxnPosition.commit");
                let commit = WalEntry::CommitTxn {
                    txn_id: txn,
                    run_id: run,
                };
                self.push(self.end, commit);
                assert_eq!(pos.end, self.end, "TxnPosition.end");
            }
            Err(Error::EntryTooLarge { .. }) => assert!(large, "refused a transaction that fits"),
            Err(err) => panic!("append_txn failed: {err}"),
        }
    }

    /// The files of the live log (what its page cache holds: what a process
    /// crash leaves). A header caught half written (by a background sealer,
    /// in designs that have one) is read again.
    fn copy_files(&self) -> Vec<(String, Vec<u8>)> {
        for _ in 0..1000 {
            let files: Vec<(String, Vec<u8>)> = scratch::read_files(self.dir())
                .into_iter()
                .filter(|(n, _)| n != "LOCK")
                .collect();
            let torn = files.iter().any(|(n, b)| {
                log::seq_of(n).is_some() && !log::header_blank(b) && !log::header_valid(b)
            });
            if !torn {
                return files;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("a segment header stays invalid in the live log");
    }

    /// Cheap checks after every operation.
    fn check_quick(&self) {
        let w = self.wal();
        assert_eq!(w.end_lsn(), self.end, "end_lsn");
        assert_eq!(w.start_lsn(), self.start, "start_lsn");
        let s = w.stats();
        assert_eq!(s.end_lsn, self.end, "stats.end_lsn");
        assert!(
            s.synced_lsn >= self.synced,
            "synced_lsn went back: {} < {}",
            s.synced_lsn,
            self.synced
        );
    }

    /// What the log shows against the model: its entries and `runs()`;
    /// from `Depth::Runs`, also replay and `replay_run` of every run; with
    /// `Depth::All`, also `diff_runs`. Each decodes the log again.
    fn check_full(&self, reopened: bool, depth: Depth) {
        self.check_quick();
        let w = self.wal();
        log::check_entries(
            &w.snapshot(),
            self.entries.iter().map(|e| (e.lsn, &e.entry)),
        );
        let model_runs: BTreeSet<RunId> = self
            .entries
            .iter()
            .filter_map(|e| e.entry.run_id())
            .collect();
        let runs: BTreeSet<RunId> = w.runs().into_iter().collect();
        if reopened {
            assert_eq!(runs, model_runs, "runs() after an open");
        } else {
            // Retention keeps runs it cut in the index (conservatively).
            assert!(runs.is_superset(&model_runs), "runs() misses a run");
        }
        if depth == Depth::Entries {
            return;
        }
        let want = log::units(self.entries.iter().map(|e| (e.lsn, &e.entry)));
        log::check_replay("replay", &want, |f| w.replay(f).map(drop));
        for run in all_runs() {
            let want_run: Vec<_> = want.iter().filter(|u| u.run == run).cloned().collect();
            log::check_replay(&format!("replay_run({run:?})"), &want_run, |f| {
                w.replay_run(run, f).map(drop)
            });
        }
        if depth == Depth::Runs {
            return;
        }
        let [a, b, c, _] = all_runs();
        for (x, y) in [(a, b), (b, c)] {
            assert_eq!(
                w.diff_runs(x, y).expect("diff_runs"),
                log::expected_diff(&want, x, y),
                "diff_runs"
            );
        }
    }

    /// Where the live log's entries are, and its segments.
    fn layout(&self) -> (Vec<Pos>, Vec<Seg>) {
        let snap = self.wal().snapshot();
        let reads: Vec<Pos> = snap
            .iter()
            .map(|r| {
                let r = r.expect("read the live log");
                assert_eq!(r.len, frame::frame_len(&r.entry.as_borrowed()));
                Pos {
                    lsn: r.lsn,
                    end: r.lsn + r.len as u64,
                    segment: r.segment,
                    offset: r.offset,
                }
            })
            .collect();
        let seqs: Vec<u64> = snap.segment_seqs().collect();
        let mut segs: Vec<Seg> = Vec::new();
        // Backwards, so an empty segment can start where the next one does.
        for &seq in seqs.iter().rev() {
            let mine: Vec<&Pos> = reads.iter().filter(|r| r.segment == seq).collect();
            let (first, end) = match (mine.first(), mine.last()) {
                (Some(f), Some(l)) => (f.lsn - (f.offset - DATA_START) as u64, l.end),
                // An empty segment: the last one, or one the writer left
                // because the next entry did not fit it (a reopen with
                // larger segments and limit). It starts and ends where the
                // next segment starts.
                _ => {
                    let at = segs.last().map_or(self.end, |next| next.first);
                    (at, at)
                }
            };
            segs.push(Seg { seq, first, end });
        }
        segs.reverse();
        (reads, segs)
    }

    fn process_crash(
        &self,
        files: &mut [(String, Vec<u8>)],
        inflight: &[KvOp],
        written: u8,
        torn: u16,
    ) -> After {
        let (_, segs) = self.layout();
        let last = *segs.last().expect("a segment");
        assert_eq!(last.end, self.end);
        let name = log::seg_name(last.seq);
        let bytes = &mut files
            .iter_mut()
            .find(|(n, _)| *n == name)
            .expect("the last segment is missing from the copy")
            .1;
        let salt = segment::salt(&self.wal().instance_id());
        let run = run_id(self.step as u8);
        let txn = 500 + self.step;
        let mut frames = vec![WalEntry::BeginTxn {
            txn_id: txn,
            run_id: run,
            timestamp: self.step,
        }];
        frames.extend(
            inflight
                .iter()
                .take(MAX_TXN_OPS)
                .map(|o| kv(run, *o, self.step)),
        );
        frames.push(WalEntry::CommitTxn {
            txn_id: txn,
            run_id: run,
        });
        let complete = written as usize % (frames.len() + 1);
        let mut off = DATA_START + (self.end - last.first) as usize;
        let mut lsn = self.end;
        let mut done = Vec::new();
        let mut torn_any = false;
        for (i, e) in frames.into_iter().enumerate() {
            let b = e.as_borrowed();
            let len = frame::frame_len(&b);
            if off + len > bytes.len() {
                // The writer would have rotated first: stop here.
                break;
            }
            let mut buf = vec![0u8; len];
            frame::encode_into(&b, segment::seed(salt, lsn), &mut buf).expect("encode");
            if i < complete {
                bytes[off..off + len].copy_from_slice(&buf);
                done.push(Entry {
                    lsn,
                    end: lsn + len as u64,
                    entry: e,
                });
                off += len;
                lsn += len as u64;
            } else {
                let n = torn as usize % len;
                bytes[off..off + n].copy_from_slice(&buf[..n]);
                if buf[n..].iter().all(|&b| b == 0) {
                    // What is missing was zero anyway (a CRC byte, say):
                    // the frame is whole.
                    done.push(Entry {
                        lsn,
                        end: lsn + len as u64,
                        entry: e,
                    });
                } else {
                    torn_any = n > 0;
                }
                break;
            }
        }
        After::All {
            inflight: done,
            torn: torn_any,
        }
    }

    fn power_cut(
        &self,
        files: &mut [(String, Vec<u8>)],
        lose: &[Loss],
        flips: &[BitFlip],
    ) -> After {
        // Read after the copy: a sync that completed before the copy was
        // taken is covered, and one after it only makes more durable.
        let synced = self.wal().stats().synced_lsn;
        assert!(synced <= self.end);
        let (reads, segs) = self.layout();
        // The index in `files` of each segment in `segs`.
        let index: Vec<usize> = segs
            .iter()
            .map(|s| {
                let name = log::seg_name(s.seq);
                files
                    .iter()
                    .position(|(n, _)| *n == name)
                    .expect("a segment of the log is missing from the copy")
            })
            .collect();

        // Headers are as the copy has them: blank for segments no sync has
        // reached yet. A blank header before a damaged one is then in the
        // middle of the log.
        let blanked = segs
            .iter()
            .zip(&index)
            .find(|(_, &i)| log::header_blank(&files[i].1))
            .map(|(s, _)| s.first);
        // Sectors holding bytes written since the durable point. Each may
        // revert to an older version: what it held at the last sync (zero
        // from the durable point on), or at a later write-back, which caught
        // the frames up to some boundary (zero after it).
        let mut candidates = Vec::new();
        for (s, &i) in segs.iter().zip(&index) {
            let len = files[i].1.len();
            let mut o = DATA_START;
            while o + SECTOR <= len {
                let lsn = s.first + (o - DATA_START) as u64;
                if lsn >= s.end {
                    break;
                }
                if lsn + SECTOR as u64 > synced {
                    let durable = lsn.max(synced);
                    let mut points = vec![o + (durable - lsn) as usize];
                    for r in reads.iter().filter(|r| r.segment == s.seq) {
                        for b in [r.lsn, r.end] {
                            if durable < b && b < lsn + SECTOR as u64 {
                                points.push(o + (b - lsn) as usize);
                            }
                        }
                    }
                    points.dedup();
                    candidates.push((i, points, o + SECTOR));
                }
                o += SECTOR;
            }
        }
        let mut clean = true;
        if !candidates.is_empty() {
            for l in lose.iter().take(MAX_LOSSES) {
                let (i, points, to) = &candidates[l.sector as usize % candidates.len()];
                let from = match l.keep {
                    Some(k) => points[k as usize % points.len()],
                    None => points[0],
                };
                if debug() {
                    eprintln!("  lose: file {i} bytes {from}..{to} (points {points:?})");
                }
                let range = &mut files[*i].1[from..*to];
                match l.garble {
                    None => range.fill(0),
                    Some(seed) => {
                        clean = false;
                        let mut rng = XorShift(seed | 1);
                        range.iter_mut().for_each(|b| *b = rng.next());
                    }
                }
            }
        }

        // Bit flips: nothing from the first frame they hit on survives.
        let mut must = synced;
        let mut may = u64::MAX;
        let mut may_refuse = false;
        let mut flipped = std::collections::BTreeMap::new();
        for f in flips.iter().take(MAX_FLIPS) {
            let k = f.file as usize % segs.len();
            let i = index[k];
            let o = f.offset as usize % files[i].1.len();
            flipped.entry((k, o)).or_insert(files[i].1[o]);
            files[i].1[o] ^= 1 << (f.bit % 8);
        }
        for ((k, o), was) in flipped {
            let (s, i) = (segs[k], index[k]);
            if files[i].1[o] == was {
                continue; // flipped back
            }
            clean = false;
            let damage = if o < HEADER_LEN {
                if s.seq == segs[0].seq {
                    may_refuse = true;
                }
                // A damaged header ends the log before its segment; blank
                // headers before it are then in the middle of the log.
                must = must.min(blanked.unwrap_or(u64::MAX));
                Some(s.first)
            } else if o < DATA_START {
                None // the rest of the header page is never read
            } else {
                let lsn = s.first + (o - DATA_START) as u64;
                if lsn < s.end {
                    let r = reads
                        .iter()
                        .find(|r| r.lsn <= lsn && lsn < r.end)
                        .expect("a frame holds every LSN below the end");
                    Some(r.lsn)
                } else if lsn - s.end < 4 {
                    // The length field after the last frame.
                    Some(s.end)
                } else {
                    None // zero fill the scan never reads
                }
            };
            if let Some(d) = damage {
                must = must.min(d);
                may = may.min(d);
            }
        }
        After::Prefix {
            must,
            may,
            clean,
            may_refuse,
        }
    }

    /// Copies the live log's files into the other directory, damages them
    /// there (`damage`), drops the live handle and opens the copy. False if
    /// the open refused, as the damage allowed: the run ends.
    fn crash(&mut self, damage: impl FnOnce(&Self, &mut Vec<(String, Vec<u8>)>) -> After) -> bool {
        let mut files = self.copy_files();
        let expect = damage(self, &mut files);
        if debug() {
            eprintln!("  expect: {expect:?}");
        }
        self.wal = None;
        self.cur ^= 1;
        let dir = scratch::fresh(&format!("model{}", self.cur));
        self.dirs[self.cur] = dir.clone();
        scratch::write_files(&dir, &files);
        if let Some(to) = std::env::var_os("DURABILITY_FUZZ_DUMP") {
            let to = std::path::Path::new(&to).join(format!("step{}", self.step));
            std::fs::create_dir_all(&to).expect("create the dump dir");
            scratch::write_files(&to, &files);
        }
        if let Err(e) = self.open() {
            match (&expect, &e) {
                (
                    After::Prefix {
                        may_refuse: true, ..
                    },
                    Error::SegmentHeader { .. },
                ) => return false,
                _ => panic!("open after a crash failed: {e}"),
            }
        }
        let rep = self.wal().recovery_report().clone();
        let recovered = self.wal().snapshot().iter().count();
        if debug() {
            eprintln!("  opened: {rep:?}");
        }
        assert_eq!(self.wal().start_lsn(), self.start, "the log's start moved");
        match expect {
            After::All { inflight, torn } => {
                match &rep.problem {
                    None => {}
                    Some(p) if torn && p.class == ProblemClass::TornTail => {}
                    Some(p) => panic!("after a process crash: {p}"),
                }
                for e in inflight {
                    self.push(e.lsn, e.entry);
                }
                assert_eq!(
                    recovered,
                    self.entries.len(),
                    "a process crash lost or added entries ({:?})",
                    rep.problem
                );
            }
            After::Prefix {
                must,
                may,
                clean,
                may_refuse: _,
            } => {
                if let (true, Some(p)) = (clean, &rep.problem) {
                    assert_eq!(
                        p.class,
                        ProblemClass::TornTail,
                        "losing unsynced sectors is not a torn tail: {p}"
                    );
                }
                assert!(
                    recovered <= self.entries.len(),
                    "recovered more entries than were written"
                );
                // A prefix (check_full below compares the entries).
                if let Some(lost) = self.entries.get(recovered) {
                    assert!(
                        lost.end > must,
                        "lost the entry at LSN {} (ends at {}), though everything up to {must} was durable and undamaged; {:?}",
                        lost.lsn,
                        lost.end,
                        rep.problem
                    );
                }
                self.entries.truncate(recovered);
                self.end = self.entries.last().map_or(self.start, |e| e.end);
                assert!(self.end <= may, "kept entries past the damage at LSN {may}");
            }
        }
        self.check_full(true, Depth::Entries);
        true
    }

    /// Runs one operation; false if the run must end.
    fn apply(&mut self, op: &ModelOp) -> bool {
        let step = self.step;
        if matches!(
            op,
            ModelOp::Reopen | ModelOp::Crash { .. } | ModelOp::PowerCut { .. }
        ) {
            if self.opens == MAX_OPENS {
                return true;
            }
            self.opens += 1;
        }
        match op {
            ModelOp::Txn { run, txn, ops } => {
                let run = run_id(*run);
                let ops = ops
                    .iter()
                    .take(MAX_TXN_OPS)
                    .map(|o| kv(run, *o, step))
                    .collect();
                self.append_txn(run, (*txn).into(), ops);
            }
            ModelOp::Single { run, op } => self.append(kv(run_id(*run), *op, step)),
            ModelOp::Aborted { run, txn, ops } => {
                let (run, txn) = (run_id(*run), u64::from(*txn));
                self.append(WalEntry::BeginTxn {
                    txn_id: txn,
                    run_id: run,
                    timestamp: step,
                });
                for o in ops.iter().take(MAX_TXN_OPS) {
                    self.append(kv(run, *o, step));
                }
                self.append(WalEntry::AbortTxn {
                    txn_id: txn,
                    run_id: run,
                });
            }
            ModelOp::Begin { run, txn } => self.append(WalEntry::BeginTxn {
                txn_id: (*txn).into(),
                run_id: run_id(*run),
                timestamp: step,
            }),
            ModelOp::End { run, txn, abort } => {
                let (txn_id, run_id) = ((*txn).into(), run_id(*run));
                self.append(if *abort {
                    WalEntry::AbortTxn { txn_id, run_id }
                } else {
                    WalEntry::CommitTxn { txn_id, run_id }
                });
            }
            ModelOp::Big { run, len, in_txn } => {
                let run = run_id(*run);
                let e = WalEntry::Write {
                    run_id: run,
                    key: b"big".to_vec(),
                    value: vec![step as u8; *len as usize % 4200],
                    version: step,
                };
                if *in_txn {
                    self.append_txn(run, 1000 + step, vec![e]);
                } else {
                    self.append(e);
                }
            }
            ModelOp::Sync => {
                self.wal().sync().expect("sync");
                let s = self.wal().stats();
                assert_eq!(s.synced_lsn, self.end, "sync did not reach the end");
                self.synced = self.end;
            }
            ModelOp::Checkpoint { active, truncate } => {
                let active: Vec<RunId> = (0..4u8)
                    .filter(|i| active & (1 << i) != 0)
                    .map(run_id)
                    .collect();
                let snapshot_id = Uuid::from_u128(step.into());
                let lsn = self
                    .wal()
                    .checkpoint(snapshot_id, step, &active)
                    .expect("checkpoint");
                self.push(
                    lsn,
                    WalEntry::Checkpoint {
                        snapshot_id,
                        version: step,
                        active_runs: active.clone(),
                    },
                );
                if *truncate {
                    self.truncate(lsn, &active);
                }
            }
            ModelOp::Reopen => {
                let wal = self.wal.take().expect("open");
                wal.close().expect("close");
                self.open().expect("reopen");
                let r = self.wal().recovery_report();
                assert!(r.problem.is_none(), "reopen after close: {:?}", r.problem);
                self.check_full(true, Depth::Entries);
            }
            ModelOp::Crash {
                inflight,
                written,
                torn,
            } => return self.crash(|m, files| m.process_crash(files, inflight, *written, *torn)),
            ModelOp::PowerCut { lose, flips } => {
                return self.crash(|m, files| m.power_cut(files, lose, flips))
            }
        }
        true
    }

    fn truncate(&mut self, lsn: u64, active: &[RunId]) {
        let before = self.wal().stats().segments;
        let removed = self.wal().truncate_before(lsn).expect("truncate_before");
        let after = self.wal().stats().segments;
        assert_eq!(before - after, removed, "truncate_before miscounts");
        let start = self.wal().start_lsn();
        assert!(start <= lsn, "truncate_before removed the checkpoint");
        let cut = self.entries.partition_point(|e| e.lsn < start);
        assert!(
            self.entries
                .get(cut)
                .map_or(start == self.end, |e| e.lsn == start),
            "the new start {start} is not an entry's LSN"
        );
        for e in &self.entries[..cut] {
            assert!(e.end <= lsn);
            if let Some(r) = e.entry.run_id() {
                assert!(
                    !active.contains(&r),
                    "truncate_before removed an entry of active run {r:?}"
                );
            }
        }
        self.entries.drain(..cut);
        self.start = start;
        if removed > 0 {
            // The run index was cut: replay_run reads through it.
            self.check_full(false, Depth::Runs);
        }
    }
}

fn debug() -> bool {
    std::env::var_os("DURABILITY_FUZZ_DEBUG").is_some()
}

/// Runs one input. With `DURABILITY_FUZZ_DEBUG` set, prints each operation
/// and what each crash expects and finds.
pub fn run(input: &ModelInput) {
    let mut m = Model {
        dirs: [scratch::fresh("model0"), scratch::path("model1")],
        cur: 0,
        wal: None,
        entries: Vec::new(),
        start: 0,
        end: 0,
        synced: 0,
        step: 0,
        opens: 0,
        max_payload: 0, // set by each open
    };
    m.open().expect("create the log");
    for op in input.ops.iter().take(MAX_OPS) {
        m.step += 1;
        if debug() {
            eprintln!(
                "op {}: {op:?} (log {}..{}, synced {:?})",
                m.step,
                m.start,
                m.end,
                m.wal().stats().synced_lsn
            );
        }
        if !m.apply(op) {
            return;
        }
        m.check_quick();
    }
    m.check_full(false, Depth::All);
    let wal = m.wal.take().expect("open");
    wal.close().expect("close");
    m.open().expect("final reopen");
    let r = m.wal().recovery_report();
    assert!(r.problem.is_none(), "final reopen: {:?}", r.problem);
    m.check_full(true, Depth::All);
}

#[cfg(test)]
mod tests {
    //! Hand-written inputs: a run through every operation, and
    //! reproductions of the library bugs the target found (each fixed; kept
    //! as regression tests). `.ci/run` runs them with
    //! `cargo test --release --manifest-path fuzz/Cargo.toml`.
    use super::*;

    fn kv(key: u8, value_len: u8) -> KvOp {
        KvOp {
            delete: false,
            key,
            value_len,
        }
    }

    fn del(key: u8, value_len: u8) -> KvOp {
        KvOp {
            delete: true,
            key,
            value_len,
        }
    }

    fn txn(run: u8, n: usize) -> ModelOp {
        ModelOp::Txn {
            run,
            txn: run,
            ops: Few((0..n as u8).map(|k| kv(k, 40)).collect()),
        }
    }

    fn ops(ops: Vec<ModelOp>) {
        run(&ModelInput { ops: ops.into() });
    }

    #[test]
    fn every_operation() {
        let mut v = Vec::new();
        for i in 0..8 {
            v.push(txn(i, 3));
        }
        v.extend([
            ModelOp::Big {
                run: 1,
                len: 4000,
                in_txn: true,
            },
            ModelOp::Big {
                run: 2,
                len: 4190,
                in_txn: false,
            }, // too large
            ModelOp::Single {
                run: 3,
                op: kv(1, 5),
            },
            ModelOp::Sync,
            ModelOp::Aborted {
                run: 0,
                txn: 9,
                ops: Few(vec![kv(2, 3)]),
            },
            ModelOp::Begin { run: 1, txn: 4 },
            ModelOp::Single {
                run: 1,
                op: kv(3, 7),
            },
            ModelOp::End {
                run: 1,
                txn: 4,
                abort: false,
            },
            ModelOp::Reopen,
            txn(2, 5),
            ModelOp::Crash {
                inflight: Few(vec![kv(1, 1), kv(2, 2)]),
                written: 2,
                torn: 20,
            },
            txn(3, 5),
            ModelOp::Crash {
                inflight: Few(vec![kv(1, 1)]),
                written: 9,
                torn: 0,
            },
            ModelOp::Checkpoint {
                active: 0b0010,
                truncate: true,
            },
            txn(0, 8),
            ModelOp::PowerCut {
                lose: Few(vec![]),
                flips: Few(vec![BitFlip {
                    file: 0,
                    offset: 300,
                    bit: 1,
                }]),
            },
            txn(1, 2),
            ModelOp::Sync,
            txn(2, 2),
            ModelOp::PowerCut {
                lose: Few(vec![]),
                flips: Few(vec![]),
            },
        ]);
        ops(v);
    }

    /// Found by this target, now fixed (a regression test): a power cut that
    /// leaves the first sector of an unsynced transaction holding only its
    /// BeginTxn (an older write-back of that sector; the newer one was lost),
    /// while the later sectors, holding the rest of the Write and the
    /// CommitTxn, were written, was classified mid-log corruption: the torn-tail
    /// test only counted whole zero sectors, not a sector zero from some point
    /// on.
    #[test]
    fn partly_old_sector_is_a_torn_tail() {
        ops(vec![
            ModelOp::Big {
                run: 0,
                len: 1126,
                in_txn: true,
            },
            ModelOp::PowerCut {
                lose: Few(vec![Loss {
                    sector: 0,
                    keep: Some(1),
                    garble: None,
                }]),
                flips: Few(vec![]),
            },
        ]);
    }

    /// Found by this target, now fixed (a regression test): a power cut reverts
    /// the sector holding the end of the synced frames to a write-back that
    /// ended at a frame boundary (zero after it), and the next valid frame
    /// starts exactly where that sector ends. The zero-from-the-stop rule only
    /// looked for valid frames past the sector's end, so this was classified
    /// mid-log corruption.
    #[test]
    fn reverted_sector_ending_at_a_frame_start_is_a_torn_tail() {
        ops(vec![
            ModelOp::Aborted {
                run: 48,
                txn: 48,
                ops: Few(vec![kv(48, 48), kv(48, 48), kv(48, 56)]),
            },
            ModelOp::End {
                run: 79,
                txn: 67,
                abort: true,
            },
            ModelOp::Single {
                run: 51,
                op: del(134, 113),
            },
            ModelOp::Txn {
                run: 223,
                txn: 208,
                ops: Few(vec![]),
            },
            ModelOp::Txn {
                run: 52,
                txn: 82,
                ops: Few(vec![
                    del(81, 31),
                    del(129, 102),
                    kv(138, 4),
                    del(70, 90),
                    kv(215, 129),
                    del(129, 129),
                    del(129, 129),
                    del(129, 129),
                ]),
            },
            // Sector 0, reverted to a version that ends after the frame at
            // LSN 311 (the seventh frame boundary in it); the frame at LSN
            // 512 and those after it were written.
            ModelOp::PowerCut {
                lose: Few(vec![Loss {
                    sector: 0,
                    keep: Some(6),
                    garble: None,
                }]),
                flips: Few(vec![]),
            },
        ]);
    }

    /// A reopen with smaller segments (so a smaller default entry limit)
    /// must keep an entry written under the larger one. The library read
    /// its files with the opener's `max_entry_size`, found the entry "too
    /// large", called it mid-log corruption, and the write open discarded it
    /// and everything after it.
    #[test]
    fn a_smaller_entry_limit_on_reopen_keeps_large_entries() {
        ops(vec![
            ModelOp::Reopen, // the first reopen uses WIDE_SEGMENT_SIZE
            ModelOp::Big {
                run: 1,
                len: 4199,
                in_txn: true,
            },
            txn(2, 2),
            ModelOp::Reopen, // back to SEGMENT_SIZE: the entry is over its limit
            txn(3, 1),
            ModelOp::Big {
                run: 1,
                len: 4199,
                in_txn: false,
            }, // refused now
        ]);
    }

    /// Found by this target, now fixed (a regression test): retention left a
    /// run's stretch list with `start` twice when the run's next stretch begins
    /// exactly at the new start, so `replay_run` delivered that stretch twice.
    #[test]
    fn replay_run_after_retention() {
        ops(vec![
            ModelOp::Big {
                run: 3,
                len: 1126,
                in_txn: true,
            },
            ModelOp::Begin { run: 0, txn: 158 },
            ModelOp::Big {
                run: 3,
                len: 3612,
                in_txn: false,
            },
            ModelOp::Checkpoint {
                active: 0,
                truncate: true,
            },
        ]);
    }
}
