//! Crashes and damage, exhaustively and at random, on real files.
//!
//! * Sweeps: every bit of every used byte of a small multi-segment log
//!   flipped, the last segment truncated at every offset and zeroed from
//!   every offset; each time the recovered log is a prefix and the report's
//!   class is the one DESIGN.md §7 gives.
//! * Crash images: the disk a power cut could leave (the durable image as
//!   of the last completed sync, plus any subset of the pages written since,
//!   each old, new, torn at 512-byte sectors, or garbage where nothing
//!   durable was), in all three modes, across rotations, retention
//!   (`purge_to_checkpoint`, `purge_before`) and suffix truncation
//!   (`truncate_from`, its record synced or not).
//!
//! Process kills are in `process_kill_test.rs`, a binary of their own: a
//! forked child briefly holds copies of the parent's file descriptors
//! (until it execs), which would make other tests' lock files look held.
//!
//! The invariant: recovery yields a prefix of what was written, never an
//! entry that was not written or that follows the first bad one, and every
//! transaction acknowledged as durable is in it. With truncation: the frames
//! recovered (deleted ones included) are a prefix of those written, the
//! entries a reader sees are that prefix with the truncation records *in
//! it* applied (a lost unsynced record brings back what it deleted), every
//! acknowledged transaction not deleted by a record in the prefix is
//! replayed, and nothing a durable record deleted ever comes back. Every
//! random choice comes from a printed seed.

mod common;

use common::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use durability::format::frame;
use durability::{Config, Error, Lsn, Op, ProblemClass, RunId, SyncMode, Wal, WalEntry, WalReader};
use uuid::Uuid;

type Files = BTreeMap<String, Vec<u8>>;

/// The segment files of `dir`, read until two reads agree (a background
/// thread may be writing a header page at that moment).
fn read_segments(dir: &Path) -> Files {
    loop {
        let once = read_once(dir);
        if once == read_once(dir) {
            return once;
        }
    }
}

fn read_once(dir: &Path) -> Files {
    let mut out = Files::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".wal") {
            if let Ok(bytes) = fs::read(e.path()) {
                out.insert(name, bytes);
            }
        }
    }
    out
}

fn write_image(dir: &Path, files: &Files) {
    for e in fs::read_dir(dir).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Where image directories live: tmpfs when there is one (fast, and syncs
/// there cost nothing).
fn scratch() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        if let Ok(d) = tempfile::tempdir_in("/dev/shm") {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

/// Every frame a reader holds, entries deleted by truncation included.
fn frames_of(reader: &WalReader) -> Vec<(Lsn, WalEntry)> {
    reader
        .snapshot()
        .iter_all()
        .map(|e| {
            let e = e.expect("a frame below the recovered end failed to decode");
            (e.lsn, e.entry.to_owned())
        })
        .collect()
}

/// The ranges the truncation records among `frames` delete (`[from, at)`
/// for a record at `at`), merged where they overlap or touch: computed
/// here by sorting and merging, independently of the library.
fn dead_ranges<'a>(frames: impl IntoIterator<Item = (&'a Lsn, &'a WalEntry)>) -> Vec<(Lsn, Lsn)> {
    let mut ranges: Vec<(Lsn, Lsn)> = frames
        .into_iter()
        .filter_map(|(at, e)| match e {
            WalEntry::Truncate { from } if from < at => Some((*from, *at)),
            _ => None,
        })
        .collect();
    ranges.sort_unstable();
    let mut out: Vec<(Lsn, Lsn)> = Vec::new();
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn is_dead(dead: &[(Lsn, Lsn)], lsn: Lsn) -> bool {
    dead.iter().any(|&(s, e)| s <= lsn && lsn < e)
}

fn entries_of(reader: &WalReader) -> Vec<(Lsn, WalEntry)> {
    reader
        .snapshot()
        .iter()
        .map(|e| {
            let e = e.expect("an entry below the recovered end failed to decode");
            (e.lsn, e.entry.to_owned())
        })
        .collect()
}

fn run(n: u8) -> RunId {
    RunId::from_bytes([n; 16])
}

// ---------------------------------------------------------------- sweeps --

const SWEEP_SEG: u64 = 8192;

/// The reference log's id: fixed, so its CRCs (seeded from it) and so every
/// run of the sweeps are the same.
const FIXED_ID: Uuid = Uuid::from_u128(0x5EED_0000_0000_4000_8000_0000_0000_0002);

/// A frame of the reference log: its segment file, offset, length, LSN.
#[derive(Clone, Debug)]
struct FrameAt {
    file: String,
    offset: usize,
    len: usize,
}

/// A closed log of three or more 8 KiB segments holding every entry type,
/// and where each of its frames is.
fn reference_log(dir: &Path) -> (Vec<(Lsn, WalEntry)>, Vec<FrameAt>) {
    let wal = Wal::open(
        dir,
        Config::default()
            .segment_size(SWEEP_SEG)
            .sync_mode(SyncMode::Strict)
            .prefault(false)
            .instance_id(FIXED_ID),
    )
    .unwrap();
    let mut i = 0u64;
    while wal.stats().segments < 3 {
        let r = run((i % 3) as u8 + 1);
        let key = format!("run/{}/step/{i}", i % 3);
        let value = vec![b'a' + (i % 26) as u8; 60 + (i as usize * 37) % 300];
        wal.append(&WalEntry::BeginTxn {
            txn_id: i,
            run_id: r,
            timestamp: 1_700_000_000_000_000 + i,
        })
        .unwrap();
        wal.append(&WalEntry::Write {
            run_id: r,
            key: key.clone().into_bytes(),
            value,
            version: i,
        })
        .unwrap();
        if i % 4 == 1 {
            wal.append(&WalEntry::Delete {
                run_id: r,
                key: key.into_bytes(),
                version: i,
            })
            .unwrap();
        }
        let end = if i % 5 == 3 {
            WalEntry::AbortTxn {
                txn_id: i,
                run_id: r,
            }
        } else {
            WalEntry::CommitTxn {
                txn_id: i,
                run_id: r,
            }
        };
        wal.append(&end).unwrap();
        if i % 6 == 2 {
            wal.checkpoint(Uuid::from_bytes([i as u8; 16]), i, &[r, run(9)])
                .unwrap();
        }
        i += 1;
    }
    wal.close().unwrap();
    let reader = WalReader::open(dir, Config::default()).unwrap();
    assert!(reader.recovery_report().problem.is_none());
    let entries = entries_of(&reader);
    let frames = reader
        .snapshot()
        .iter()
        .map(|e| {
            let e = e.unwrap();
            let len = frame::frame_len(&e.entry.as_borrowed());
            assert_eq!(e.len, len, "LogEntry::len is the frame's length");
            // No payload length is a power of two, so no single flip can
            // turn a length into zero (which would read as a clean end).
            assert!(!(len - 9).is_power_of_two());
            FrameAt {
                file: durability::format::header::file_name(e.segment),
                offset: e.offset,
                len,
            }
        })
        .collect();
    let kinds: BTreeSet<_> = entries.iter().map(|(_, e)| e.kind()).collect();
    assert_eq!(kinds.len(), 6, "the reference log holds every entry type");
    (entries, frames)
}

/// What a sweep case must recover.
#[derive(Debug, PartialEq)]
enum Expect {
    /// The open is refused (the first segment is damaged).
    Refused,
    /// This many entries, and this problem (class, file, offset), if any.
    Prefix(usize, Option<(ProblemClass, String, u64)>),
}

fn observe(dir: &Path) -> (Expect, Vec<(Lsn, WalEntry)>) {
    match WalReader::open(dir, Config::default()) {
        Err(Error::SegmentHeader { .. }) => (Expect::Refused, Vec::new()),
        Err(e) => panic!("unexpected error {e}"),
        Ok(r) => {
            let entries = entries_of(&r);
            let p = r
                .recovery_report()
                .problem
                .as_ref()
                .map(|p| (p.class, p.file.clone(), p.offset));
            (Expect::Prefix(entries.len(), p), entries)
        }
    }
}

/// Opens `dir` for writing (repairing it), then checks that the repair kept
/// exactly `want` entries, left no problem behind, and accepts appends.
fn repair_and_check(dir: &Path, want: &[(Lsn, WalEntry)], ctx: &str) {
    let cfg = Config::default()
        .segment_size(SWEEP_SEG)
        .sync_mode(SyncMode::Strict)
        .prefault(false);
    let wal = Wal::open(dir, cfg.clone()).unwrap_or_else(|e| panic!("{ctx}: write open: {e}"));
    let got: Vec<_> = wal
        .snapshot()
        .iter()
        .map(|e| {
            let e = e.unwrap();
            (e.lsn, e.entry.to_owned())
        })
        .collect();
    assert_eq!(got, want, "{ctx}: write open kept a different prefix");
    wal.append_txn(run(7), 1_000_000, &[]).unwrap();
    drop(wal);
    let wal = Wal::open(dir, cfg).unwrap();
    assert!(
        wal.recovery_report().problem.is_none(),
        "{ctx}: problem after repair: {:?}",
        wal.recovery_report().problem
    );
    assert_eq!(wal.recovery_report().entries as usize, want.len() + 2);
}

#[test]
fn sweep_every_bit_flip_in_a_multi_segment_log() {
    let base = tempfile::tempdir().unwrap();
    let (entries, frames) = reference_log(base.path());
    let files = read_segments(base.path());
    let names: Vec<String> = files.keys().cloned().collect();
    let last_name = frames.last().unwrap().file.clone();
    assert!(names.len() >= 3, "{names:?}");
    let work = scratch();
    write_image(work.path(), &files);
    let mut flips = 0u64;
    for name in &names {
        let original = &files[name];
        let data_end = frames
            .iter()
            .filter(|f| &f.file == name)
            .map(|f| f.offset + f.len)
            .max()
            .unwrap_or(4096);
        // The header, the frames, and (in the last segment) a little of the
        // zero space after them. Zero space at the end of an earlier
        // segment is never read: damage there is harmless and unreported.
        let tail = if *name == last_name { 16 } else { 0 };
        let bytes = (0..128).chain(4096..(data_end + tail).min(original.len()));
        for byte in bytes {
            for bit in 0..8 {
                let mut bad = original.clone();
                bad[byte] ^= 1 << bit;
                fs::write(work.path().join(name), &bad).unwrap();
                let ctx = format!("{name} byte {byte} bit {bit}");
                let want = expected_for_flip(name, byte, &names, &frames, &last_name, data_end);
                let (got, recovered) = observe(work.path());
                assert_eq!(got, want, "{ctx}");
                if let Expect::Prefix(n, _) = want {
                    assert_eq!(recovered, entries[..n], "{ctx}: not a prefix");
                    if flips % 97 == 0 {
                        let copy = scratch();
                        write_image(copy.path(), &read_once(work.path()));
                        repair_and_check(copy.path(), &entries[..n], &ctx);
                    }
                }
                flips += 1;
            }
        }
        fs::write(work.path().join(name), original).unwrap();
    }
    eprintln!("bit flips tried: {flips}");
    assert!(flips > 60_000);
}

fn expected_for_flip(
    name: &str,
    byte: usize,
    names: &[String],
    frames: &[FrameAt],
    last_name: &str,
    data_end: usize,
) -> Expect {
    // The first frame at or after this file (a blank, unused segment after
    // the last one holds none).
    let first_of = |file: &str| {
        frames
            .iter()
            .position(|f| f.file.as_str() >= file)
            .unwrap_or(frames.len())
    };
    if byte < 128 {
        if name == names[0] {
            return Expect::Refused;
        }
        return Expect::Prefix(
            first_of(name),
            Some((ProblemClass::MidLogCorruption, name.to_string(), 0)),
        );
    }
    if byte >= data_end {
        // Garbage after the last frame of the log.
        return Expect::Prefix(
            frames.len(),
            Some((ProblemClass::TornTail, name.to_string(), data_end as u64)),
        );
    }
    let k = frames
        .iter()
        .position(|f| f.file == name && f.offset <= byte && byte < f.offset + f.len)
        .unwrap();
    let class = if name == last_name && k + 1 == frames.len() {
        ProblemClass::TornTail
    } else {
        ProblemClass::MidLogCorruption
    };
    Expect::Prefix(k, Some((class, name.to_string(), frames[k].offset as u64)))
}

#[test]
fn sweep_truncate_and_zero_the_last_segment_at_every_offset() {
    let base = tempfile::tempdir().unwrap();
    let (entries, frames) = reference_log(base.path());
    let files = read_segments(base.path());
    let last_name = frames.last().unwrap().file.clone();
    let before_last = frames.iter().filter(|f| f.file != last_name).count();
    let last = &files[&last_name];
    let data_end = frames.last().map(|f| f.offset + f.len).unwrap();
    let work = scratch();
    write_image(work.path(), &files);
    let frames_below = |cut: usize| {
        before_last
            + frames
                .iter()
                .filter(|f| f.file == last_name && f.offset + f.len <= cut)
                .count()
    };
    let at_boundary = |cut: usize| {
        cut == 4096
            || frames
                .iter()
                .any(|f| f.file == last_name && f.offset + f.len == cut)
    };
    // Zeroing from `cut` leaves a frame whole if its bytes from `cut` on
    // were zero already: then the cut is, in effect, at the frame's end.
    let effective = |cut: usize| {
        frames
            .iter()
            .find(|f| f.file == last_name && f.offset <= cut && cut < f.offset + f.len)
            .filter(|f| last[cut..f.offset + f.len].iter().all(|&b| b == 0))
            .map_or(cut, |f| f.offset + f.len)
    };
    let mut cases = 0;
    for cut in 0..=last.len() {
        // Truncated at `cut`.
        fs::write(work.path().join(&last_name), &last[..cut]).unwrap();
        let want = if cut == last.len() {
            Expect::Prefix(entries.len(), None)
        } else if cut < 4096 {
            Expect::Prefix(
                before_last,
                Some((ProblemClass::TornTail, last_name.clone(), 0)),
            )
        } else {
            let n = frames_below(cut);
            let offset = if n == entries.len() {
                data_end
            } else {
                frames[n].offset
            };
            Expect::Prefix(
                n,
                Some((ProblemClass::TornTail, last_name.clone(), offset as u64)),
            )
        };
        let (got, recovered) = observe(work.path());
        assert_eq!(got, want, "truncated at {cut}");
        if let Expect::Prefix(n, _) = want {
            assert_eq!(recovered, entries[..n], "truncated at {cut}");
            if cut % 509 == 0 {
                let copy = scratch();
                write_image(copy.path(), &read_once(work.path()));
                repair_and_check(copy.path(), &entries[..n], &format!("truncated at {cut}"));
            }
        }

        // Zeroed from `cut` to the end.
        let mut zeroed = last.clone();
        zeroed[cut..].fill(0);
        let cut = effective(cut);
        fs::write(work.path().join(&last_name), &zeroed).unwrap();
        let want = if cut == 0 {
            // All zero: indistinguishable from a prepared, unused segment.
            Expect::Prefix(before_last, None)
        } else if cut < 128 {
            Expect::Prefix(
                before_last,
                Some((ProblemClass::MidLogCorruption, last_name.clone(), 0)),
            )
        } else if cut <= 4096 || cut >= data_end || at_boundary(cut) {
            Expect::Prefix(frames_below(cut.max(4096)), None)
        } else {
            let n = frames_below(cut);
            Expect::Prefix(
                n,
                Some((
                    ProblemClass::TornTail,
                    last_name.clone(),
                    frames[n].offset as u64,
                )),
            )
        };
        let (got, recovered) = observe(work.path());
        assert_eq!(got, want, "zeroed from {cut}");
        if let Expect::Prefix(n, _) = want {
            assert_eq!(recovered, entries[..n], "zeroed from {cut}");
        }
        cases += 2;
    }
    fs::write(work.path().join(&last_name), last).unwrap();
    eprintln!("truncation and zeroing cases: {cases}");
}

/// A power cut can leave the sector holding the end of the synced frames in
/// an older version than the sectors after it: as of the last sync (zero
/// from the end of the synced frames), or as of a write-back caught in the
/// middle of copying a frame (that frame's first bytes, then zeros). For
/// every frame, with its segment made the last one (later files removed),
/// revert its sector both ways while keeping the later sectors: the frames
/// before it are kept and the report says torn tail at that frame, never
/// mid-log corruption.
#[test]
fn sweep_revert_the_sector_holding_each_frame_start() {
    const SECTOR: usize = 512;
    let base = tempfile::tempdir().unwrap();
    let (entries, frames) = reference_log(base.path());
    let files = read_segments(base.path());
    let mut cases = 0;
    for (k, f) in frames.iter().enumerate() {
        let sector_end = (f.offset / SECTOR + 1) * SECTOR;
        // Reverted to the last sync: zero from the frame on. Written back
        // mid-copy: the frame's first bytes, then at least 32 zero bytes.
        let mid = f.offset + (sector_end - f.offset) / 2;
        let mut cuts = vec![f.offset];
        if sector_end - mid >= 32 && mid > f.offset && mid < f.offset + f.len {
            cuts.push(mid);
        }
        for cut in cuts {
            let mut img: Files = files
                .iter()
                .filter(|(name, _)| **name <= f.file)
                .map(|(name, bytes)| (name.clone(), bytes.clone()))
                .collect();
            let seg = img.get_mut(&f.file).unwrap();
            seg[cut..sector_end].fill(0);
            let rest = seg[f.offset..].iter().any(|&b| b != 0);
            let work = scratch();
            write_image(work.path(), &img);
            let ctx = format!(
                "frame {k} at {} of {}, zeroed {cut}..{sector_end}",
                f.offset, f.file
            );
            let want = Expect::Prefix(
                k,
                rest.then(|| (ProblemClass::TornTail, f.file.clone(), f.offset as u64)),
            );
            let (got, recovered) = observe(work.path());
            assert_eq!(got, want, "{ctx}");
            assert_eq!(recovered, entries[..k], "{ctx}");
            cases += 1;
        }
    }
    eprintln!("reverted-sector cases: {cases}");
    assert!(cases >= 60, "{cases}");
}

/// The boundary case of the sweep above, built on purpose: the first frame
/// after the reverted part starts exactly where the reverted sector ends.
/// (The model fuzz target found that this was called mid-log corruption.)
#[test]
fn a_reverted_sector_ending_where_a_valid_frame_starts_is_a_torn_tail() {
    const SECTOR: usize = 512;
    let begin = WalEntry::BeginTxn {
        txn_id: 1,
        run_id: run(1),
        timestamp: 7,
    };
    let write = |len: usize| WalEntry::Write {
        run_id: run(1),
        key: b"k".to_vec(),
        value: vec![0x5A; len],
        version: 1,
    };
    let begin_len = frame::frame_len(&begin.as_borrowed());
    let value_len = (0..SECTOR)
        .find(|&v| begin_len + frame::frame_len(&write(v).as_borrowed()) == SECTOR)
        .expect("a Write frame that ends the first sector");
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default()
        .segment_size(SWEEP_SEG)
        .sync_mode(SyncMode::Strict)
        .prefault(false)
        .instance_id(FIXED_ID);
    let wal = Wal::open(dir.path(), cfg.clone()).unwrap();
    wal.append(&begin).unwrap();
    wal.append(&write(value_len)).unwrap();
    let commit = wal
        .append(&WalEntry::CommitTxn {
            txn_id: 1,
            run_id: run(1),
        })
        .map(|p| p.lsn)
        .unwrap();
    assert_eq!(commit, SECTOR as Lsn, "the commit starts the second sector");
    wal.append_txn(run(2), 8, &[]).unwrap();
    wal.close().unwrap();
    let files = read_segments(dir.path());
    let (name, seg) = files.iter().next().unwrap();
    let stop = 4096 + begin_len;
    let sector_end = 4096 + SECTOR;
    for cut in [stop, sector_end - 40] {
        let mut img = files.clone();
        img.get_mut(name).unwrap()[cut..sector_end].fill(0);
        let work = scratch();
        write_image(work.path(), &img);
        let ctx = format!("zeroed {cut}..{sector_end}");
        let (got, recovered) = observe(work.path());
        assert_eq!(
            got,
            Expect::Prefix(1, Some((ProblemClass::TornTail, name.clone(), stop as u64))),
            "{ctx}"
        );
        assert_eq!(recovered[0].1, begin, "{ctx}");
        // A torn tail is what AbsoluteConsistency accepts.
        let strict = Config::default().recovery_mode(durability::RecoveryMode::AbsoluteConsistency);
        WalReader::open(work.path(), &strict).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let copy = scratch();
        write_image(copy.path(), &img);
        repair_and_check(copy.path(), &recovered, &ctx);
    }
    assert_eq!(seg.len(), SWEEP_SEG as usize);
}

// ---------------------------------------------------------- crash images --

const IMAGE_SEG: u64 = 16384;

/// One moment at which the power could fail.
struct CrashPoint {
    /// The files as of the last completed sync.
    durable: Files,
    /// The files now (the page cache).
    live: Files,
    /// Every frame written so far and not removed by retention, in LSN
    /// order, entries deleted by truncation and the records included.
    written: Vec<(Lsn, WalEntry)>,
    /// Everything below this LSN was acknowledged as durable.
    acked: Lsn,
    /// The log's first LSN now (retention may have raised it).
    live_start: Lsn,
    /// Transactions that were aborted.
    aborted: BTreeSet<(RunId, u64)>,
    /// Transactions appended whole (`append_txn`), in order.
    txns: Vec<TxnAt>,
    what: String,
}

/// A transaction appended with `append_txn`.
#[derive(Clone, Debug)]
struct TxnAt {
    run: RunId,
    id: u64,
    begin: Lsn,
    commit: Lsn,
    end: Lsn,
}

/// A seeded workload's crash points, and every frame it ever wrote (read
/// after every step, so frames retention removed later are known too).
struct Workload {
    points: Vec<CrashPoint>,
    all: BTreeMap<Lsn, WalEntry>,
}

/// Every frame of `wal` now, deleted ones included.
fn frames_now(wal: &Wal) -> Vec<(Lsn, WalEntry)> {
    wal.snapshot()
        .iter_all()
        .map(|e| {
            let e = e.unwrap();
            (e.lsn, e.entry.to_owned())
        })
        .collect()
}

/// Runs a seeded workload in `mode` and collects crash points: after
/// appends, across rotations, after syncs, around retention and purges,
/// and after suffix truncations (before and after a sync covers them).
fn crash_points(mode: SyncMode, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let dir = scratch();
    let wal = Wal::open(
        dir.path(),
        Config::default()
            .segment_size(IMAGE_SEG)
            .sync_mode(mode)
            .prefault(false)
            .instance_id(Uuid::from_u128(u128::from(seed) + 1)),
    )
    .unwrap();
    let mut durable = read_segments(dir.path());
    let mut acked = 0;
    let mut aborted = BTreeSet::new();
    let mut txns = Vec::new();
    let mut points = Vec::new();
    let mut all = BTreeMap::new();
    let mut last_syncs = wal.stats().syncs;
    // A crash point now: a new durable image first if a sync completed.
    let mut observe = |wal: &Wal,
                       what: &str,
                       step: u64,
                       txns: &[TxnAt],
                       aborted: &BTreeSet<(RunId, u64)>,
                       take: bool| {
        let stats = wal.stats();
        if stats.syncs != last_syncs || what == "sync" {
            // A sync completed: this is the new durable image.
            last_syncs = stats.syncs;
            acked = stats.synced_lsn;
            durable = read_segments(dir.path());
        }
        let written = frames_now(wal);
        for (l, e) in &written {
            all.entry(*l).or_insert_with(|| e.clone());
        }
        if take {
            points.push(CrashPoint {
                durable: durable.clone(),
                live: read_segments(dir.path()),
                written,
                acked: acked.min(stats.synced_lsn),
                live_start: wal.start_lsn(),
                aborted: aborted.clone(),
                txns: txns.to_vec(),
                what: format!("step {step} after {what}, {} segments", stats.segments),
            });
        }
    };
    for step in 0..120u64 {
        let r = run(1 + rng.below(4) as u8);
        let what = match rng.below(12) {
            0 => {
                // An aborted transaction, entry by entry.
                wal.append(&WalEntry::BeginTxn {
                    txn_id: step,
                    run_id: r,
                    timestamp: step,
                })
                .unwrap();
                wal.append(&WalEntry::Write {
                    run_id: r,
                    key: b"aborted".to_vec(),
                    value: vec![1; rng.below(700) as usize],
                    version: step,
                })
                .unwrap();
                wal.append(&WalEntry::AbortTxn {
                    txn_id: step,
                    run_id: r,
                })
                .unwrap();
                aborted.insert((r, step));
                "abort"
            }
            1 if step > 30 => {
                let ck = wal
                    .checkpoint(Uuid::from_bytes([step as u8; 16]), step, &[run(4)])
                    .map(|p| p.lsn)
                    .unwrap();
                wal.purge_to_checkpoint(ck).unwrap();
                "retention"
            }
            2 => {
                wal.sync().unwrap();
                "sync"
            }
            3 if step > 3 => {
                // Truncate from a live entry: mostly one of the last few
                // (a replica dropping an unacknowledged suffix), sometimes
                // one of the last 40 (a segment or so); now and then the
                // end (no record).
                let live: Vec<Lsn> = wal.snapshot().iter().map(|e| e.unwrap().lsn).collect();
                let n = live.len() as u64;
                let from = match rng.below(10) {
                    _ if n == 0 => wal.end_lsn(),
                    0 => wal.end_lsn(),
                    1 => live[(n - 1 - rng.below(n.min(40))) as usize],
                    _ => live[(n - 1 - rng.below(n.min(8))) as usize],
                };
                let end = wal.end_lsn();
                let after = wal.truncate_from(from).map(|p| p.end).unwrap();
                if from == end {
                    assert_eq!(after, end, "truncate_from(end) wrote a record");
                } else {
                    assert_eq!(
                        after,
                        end + frame::frame_len(&WalEntry::Truncate { from }.as_borrowed()) as u64
                    );
                }
                if rng.chance(50) {
                    // The point before the sync: the record not durable
                    // (unless the mode synced it).
                    observe(&wal, "truncate", step, &txns, &aborted, true);
                    wal.sync().unwrap();
                    "truncate, sync"
                } else {
                    "truncate"
                }
            }
            4 if step > 30 && rng.chance(50) => {
                // Purge below a live entry of the log's first third (a
                // replica dropping entries it applied long ago).
                let live: Vec<Lsn> = wal.snapshot().iter().map(|e| e.unwrap().lsn).collect();
                let n = live.len() as u64;
                let lsn = live
                    .get(rng.below(n / 3 + 1) as usize)
                    .copied()
                    .unwrap_or(wal.end_lsn());
                wal.purge_before(lsn).unwrap();
                assert!(wal.start_lsn() <= lsn, "purge_before passed its LSN");
                "purge"
            }
            _ => {
                let n = rng.below(4) as usize;
                let values: Vec<Vec<u8>> = (0..n)
                    .map(|j| vec![b'v' + j as u8; rng.below(1500) as usize])
                    .collect();
                let keys: Vec<String> = (0..n).map(|j| format!("k{step}-{j}")).collect();
                let ops: Vec<Op> = (0..n)
                    .map(|j| Op::Write {
                        key: keys[j].as_bytes(),
                        value: &values[j],
                        version: step,
                    })
                    .collect();
                let pos = wal.append_txn(r, step, &ops).unwrap();
                txns.push(TxnAt {
                    run: r,
                    id: step,
                    begin: pos.begin,
                    commit: pos.commit,
                    end: pos.end,
                });
                "txn"
            }
        };
        let take = rng.chance(35) || matches!(what, "retention" | "purge" | "truncate");
        observe(&wal, what, step, &txns, &aborted, take);
    }
    drop(wal);
    Workload { points, all }
}

/// Builds one disk image a power cut at `p` could leave.
fn crash_image(p: &CrashPoint, rng: &mut Rng) -> Files {
    const PAGE: usize = 4096;
    const SECTOR: usize = 512;
    let mut out = Files::new();
    // Files retention deleted since the durable image: their unlinks are
    // durable oldest first, so some prefix of them is gone.
    let deleted: Vec<&String> = p
        .durable
        .keys()
        .filter(|k| !p.live.contains_key(*k))
        .collect();
    let gone = rng.below(deleted.len() as u64 + 1) as usize;
    for name in deleted.iter().skip(gone) {
        out.insert((*name).clone(), p.durable[*name].clone());
    }
    for (name, new) in &p.live {
        // A file created since the durable image exists (creation syncs
        // the directory) and was allocated zero.
        let zero = vec![0u8; new.len()];
        let old = p.durable.get(name).unwrap_or(&zero);
        let mut img = old.clone();
        img.resize(new.len(), 0);
        for page in (0..new.len()).step_by(PAGE) {
            let range = page..(page + PAGE).min(new.len());
            if old.get(range.clone()) == Some(&new[range.clone()]) {
                continue;
            }
            match rng.below(4) {
                0 => {} // old
                1 => img[range.clone()].copy_from_slice(&new[range.clone()]),
                choice => {
                    // Torn at sectors; with `garbage`, sectors that held
                    // nothing durable (still zero in the durable image) may
                    // come back as garbage instead.
                    for s in range.clone().step_by(SECTOR) {
                        let sr = s..(s + SECTOR).min(range.end);
                        let fresh = old[sr.clone()].iter().all(|&b| b == 0);
                        match rng.below(3) {
                            0 => {}
                            1 => img[sr.clone()].copy_from_slice(&new[sr.clone()]),
                            _ if choice == 3 && fresh => {
                                for b in &mut img[sr.clone()] {
                                    *b = rng.next() as u8;
                                }
                            }
                            _ => img[sr.clone()].copy_from_slice(&new[sr.clone()]),
                        }
                    }
                }
            }
        }
        out.insert(name.clone(), img);
    }
    out
}

/// What one crash image held, for the tally.
#[derive(Default)]
struct Seen {
    /// Images with entries deleted by a truncation.
    deleted: usize,
    /// Images that lost a truncation record (not durable) and so hold
    /// entries it had deleted.
    resurrected: usize,
    /// Images holding a durable truncation record.
    durable: usize,
    /// Images of a log that retention or a purge had cut.
    cut: usize,
}

/// Recovers `image` and checks the invariant; sometimes repairs it too.
fn check_image(
    image: &Files,
    p: &CrashPoint,
    all: &BTreeMap<Lsn, WalEntry>,
    repair: bool,
    ctx: &str,
    seen: &mut Seen,
) {
    let dir = scratch();
    write_image(dir.path(), image);
    let reader = WalReader::open(dir.path(), Config::default())
        .unwrap_or_else(|e| panic!("{ctx}: recovery refused a crash image: {e}"));
    let frames = frames_of(&reader);
    let got = entries_of(&reader);
    let start = reader.snapshot().start_lsn();
    assert!(
        start <= p.live_start,
        "{ctx}: starts at {start}, after the retention point {}",
        p.live_start
    );
    // A prefix of what was written, from the recovered start: every frame,
    // entries deleted by truncation and the records included.
    let expected: Vec<(Lsn, WalEntry)> = all
        .range(start..)
        .map(|(l, e)| (*l, e.clone()))
        .take(frames.len())
        .collect();
    assert_eq!(
        frames, expected,
        "{ctx}: recovered frames are not a prefix of what was written"
    );
    // What a reader sees: that prefix with the truncation records in it
    // applied, and no others.
    let dead = dead_ranges(frames.iter().map(|(l, e)| (l, e)));
    assert_eq!(
        reader.snapshot().truncated(),
        &dead[..],
        "{ctx}: deleted ranges are not those of the records recovered"
    );
    let live: Vec<(Lsn, WalEntry)> = frames
        .iter()
        .filter(|(l, _)| !is_dead(&dead, *l))
        .cloned()
        .collect();
    assert_eq!(
        got, live,
        "{ctx}: the entries are not the recovered prefix with its truncations applied"
    );
    // Every acknowledged entry that retention did not remove is there.
    let end = reader.snapshot().end_lsn();
    if end < p.acked.max(start) {
        if let Ok(d) = std::env::var("CRASH_DEBUG_DIR") {
            let d = Path::new(&d);
            for (sub, files) in [("image", image), ("durable", &p.durable), ("live", &p.live)] {
                let _ = fs::create_dir_all(d.join(sub));
                write_image(&d.join(sub), files);
            }
        }
        eprintln!("{ctx}: report {:?}", reader.recovery_report());
    }
    assert!(
        end >= p.acked.max(start),
        "{ctx}: recovered end {end} < acknowledged {}",
        p.acked
    );
    // A truncation whose record is durable holds: nothing it deleted is
    // back (its record is in the prefix, which reaches `acked`).
    let durable_dead = dead_ranges(
        p.written
            .iter()
            .filter(|(l, e)| *l + frame::frame_len(&e.as_borrowed()) as u64 <= p.acked)
            .map(|(l, e)| (l, e)),
    );
    for &(from, to) in &durable_dead {
        if to > start {
            assert!(
                dead.iter().any(|&(s, e)| s <= from.max(start) && to <= e),
                "{ctx}: the durable truncation of {from}..{to} does not hold ({dead:?})"
            );
        }
    }
    for (l, e) in &got {
        assert!(
            !is_dead(&durable_dead, *l),
            "{ctx}: {e:?} at {l} is back, though a durable truncation deleted it"
        );
    }
    seen.cut += usize::from(start > 0);
    seen.deleted += usize::from(!dead.is_empty());
    seen.durable += usize::from(durable_dead.iter().any(|&(_, to)| to >= start));
    seen.resurrected += usize::from(p.written.iter().any(|(at, e)| {
        matches!(e, WalEntry::Truncate { from } if *at >= end && *from < end && *from >= start)
    }));
    // Replay never delivers an aborted or incomplete transaction.
    let mut replayed = BTreeSet::new();
    reader
        .replay(|t| {
            if let Some(id) = t.txn_id {
                assert!(
                    !p.aborted.contains(&(t.run_id, id)),
                    "{ctx}: aborted txn replayed"
                );
                assert!(
                    got.iter().any(|(l, e)| *l == t.commit_lsn
                        && matches!(e, WalEntry::CommitTxn { txn_id, .. } if *txn_id == id)),
                    "{ctx}: replayed txn without its commit"
                );
                replayed.insert((t.run_id, id, t.begin_lsn, t.commit_lsn));
            }
            for op in t.ops {
                assert!(
                    !is_dead(&durable_dead, op.lsn),
                    "{ctx}: replay delivered the entry at {}, deleted by a durable truncation",
                    op.lsn
                );
            }
        })
        .unwrap();
    // Every transaction acknowledged as durable, not removed by retention
    // and not deleted by a truncation record the image holds, is replayed;
    // one a durable record deleted is not.
    for t in p
        .txns
        .iter()
        .filter(|t| t.end <= p.acked && t.begin >= start)
    {
        let deleted = is_dead(&dead, t.commit);
        assert!(
            deleted || !is_dead(&durable_dead, t.commit),
            "{ctx}: txn {} deleted by a durable record, but not in the image",
            t.id
        );
        assert_eq!(
            replayed.contains(&(t.run, t.id, t.begin, t.commit)),
            !deleted,
            "{ctx}: acknowledged txn {} at {}..{} (deleted: {deleted})",
            t.id,
            t.begin,
            t.end
        );
    }
    drop(reader);
    if repair {
        let cfg = Config::default().segment_size(IMAGE_SEG).prefault(false);
        let wal = Wal::open(dir.path(), cfg.clone())
            .unwrap_or_else(|e| panic!("{ctx}: write open refused: {e}"));
        let kept: Vec<(Lsn, WalEntry)> = wal
            .snapshot()
            .iter()
            .map(|e| {
                let e = e.unwrap();
                (e.lsn, e.entry.to_owned())
            })
            .collect();
        assert_eq!(kept, got, "{ctx}: the write open kept something else");
        assert_eq!(
            frames_now(&wal),
            frames,
            "{ctx}: the write open kept other frames"
        );
        wal.append_txn(
            run(8),
            u64::MAX,
            &[Op::Delete {
                key: b"after",
                version: 1,
            }],
        )
        .unwrap();
        drop(wal);
        let wal = Wal::open(dir.path(), cfg).unwrap();
        assert!(
            wal.recovery_report().problem.is_none(),
            "{ctx}: {:?}",
            wal.recovery_report().problem
        );
        // The report counts frames, deleted ones included (without a
        // truncation, the entries).
        assert_eq!(
            wal.recovery_report().entries as usize,
            frames.len() + 3,
            "{ctx}"
        );
        assert_eq!(wal.snapshot().iter().count(), got.len() + 3, "{ctx}");
        assert_eq!(wal.snapshot().truncated(), &dead[..], "{ctx}");
    }
}

fn crash_images_in(mode: SyncMode, seeds: std::ops::Range<u64>, per_point: usize) -> usize {
    let mut images = 0;
    let mut seen = Seen::default();
    for seed in seeds {
        let Workload { points, all } = crash_points(mode, seed);
        let mut rng = Rng::new(seed ^ 0xC0FFEE);
        for (pi, p) in points.iter().enumerate() {
            for k in 0..per_point {
                let image = crash_image(p, &mut rng);
                let ctx = format!(
                    "mode {mode:?} seed {seed} point {pi} ({}) image {k}",
                    p.what
                );
                check_image(&image, p, &all, k == 0 && pi % 3 == 0, &ctx, &mut seen);
                images += 1;
            }
        }
    }
    eprintln!(
        "{mode:?}: {images} images, {} of a cut log, {} with deleted entries, {} with a durable truncation, {} that lost a truncation record",
        seen.cut, seen.deleted, seen.durable, seen.resurrected
    );
    // The workload truncates in every mode; only a mode that does not sync
    // every append leaves a record to lose.
    assert!(seen.deleted >= images / 10, "{}", seen.deleted);
    assert!(seen.durable > 0);
    // (Truncations reopen transactions, which hold back retention.)
    assert!(seen.cut >= images / 25, "{}", seen.cut);
    if mode != SyncMode::Strict {
        assert!(seen.resurrected > 0);
    }
    images
}

#[test]
fn crash_images_strict() {
    let n = crash_images_in(SyncMode::Strict, 0..6, 20);
    eprintln!("strict crash images: {n}");
    assert!(n >= 3000, "{n}");
}

#[test]
fn crash_images_batched() {
    let mode = SyncMode::Batched {
        interval_ms: 3_600_000,
        batch_size: 3,
    };
    let n = crash_images_in(mode, 100..106, 20);
    eprintln!("batched crash images: {n}");
    assert!(n >= 3000, "{n}");
}

#[test]
fn crash_images_async() {
    let n = crash_images_in(
        SyncMode::Async {
            interval_ms: 3_600_000,
        },
        200..206,
        20,
    );
    eprintln!("async crash images: {n}");
    assert!(n >= 3000, "{n}");
}

// ------------------------------------------------------- library bugs --

/// Library bug (found by the `model` fuzz target's retention check): a
/// truncation that deletes a transaction's CommitTxn leaves the
/// transaction open by replay's rule (DESIGN.md §10: "A transaction begun
/// before `from` whose end was deleted stays open"), but the writer's
/// open-transaction tracking (`OpenTxns::truncate_from`, and recovery's,
/// which does the same) only drops transactions begun at or after `from`;
/// it never reopens one whose end it deleted. The next segment boundary is
/// recorded as having no transaction open, and retention (`purge_before`,
/// `purge_to_checkpoint`) cuts there: the BeginTxn goes, and replay of the rest
/// delivers the transaction's later Write as a committed standalone unit,
/// where before the cut it belonged to a transaction that never committed.
/// The same happens when the truncation deletes a BeginTxn that had
/// replaced an open transaction of its run.
#[test]
fn retention_never_cuts_a_transaction_reopened_by_a_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default()
        .segment_size(8192)
        .sync_mode(SyncMode::Strict)
        .prefault(false);
    let wal = Wal::open(dir.path(), cfg).unwrap();
    let (r, other) = (run(1), run(2));
    let write = |run_id: RunId, key: &[u8], len: usize| WalEntry::Write {
        run_id,
        key: key.to_vec(),
        value: vec![7; len],
        version: 1,
    };
    wal.append(&WalEntry::BeginTxn {
        txn_id: 1,
        run_id: r,
        timestamp: 0,
    })
    .unwrap();
    wal.append(&write(r, b"in-txn", 10)).unwrap();
    let commit = wal
        .append(&WalEntry::CommitTxn {
            txn_id: 1,
            run_id: r,
        })
        .map(|p| p.lsn)
        .unwrap();
    // Transaction 1 is open again: its CommitTxn is deleted.
    wal.truncate_from(commit).unwrap();
    while wal.snapshot().segment_seqs().count() < 2 {
        wal.append(&write(other, b"filler", 500)).unwrap();
    }
    // Part of the open transaction 1 by replay's rule: never delivered.
    let later = wal.append(&write(r, b"later", 10)).map(|p| p.lsn).unwrap();
    let delivered = |wal: &Wal| {
        let mut lsns = Vec::new();
        wal.replay(|t| lsns.extend(t.ops.iter().map(|o| o.lsn)))
            .unwrap();
        lsns.contains(&later)
    };
    assert!(
        !delivered(&wal),
        "replay delivered a write of an open transaction"
    );
    let removed = wal.purge_before(wal.end_lsn()).unwrap();
    assert!(
        !delivered(&wal),
        "purge_before removed {removed} segment(s), cutting open transaction 1 at LSN {}: \
         its later write is now replayed as a committed standalone write",
        wal.start_lsn()
    );
}

/// A batch is one unit on disk: whatever part of its bytes a crash leaves
/// — a prefix of its copy (a process killed while copying it into the
/// map), or one of its sectors reverted to zero (a power cut) — recovery
/// keeps all of it or none of it, calls the loss a torn tail, and a write
/// open appends after what it kept.
#[test]
fn sweep_a_batch_cut_or_reverted_anywhere_is_all_or_nothing() {
    let dir = scratch();
    let cfg = Config::default()
        .segment_size(64 << 10)
        .sync_mode(SyncMode::Strict)
        .instance_id(Uuid::from_u128(0xBA7C4));
    let wal = Wal::open(dir.path(), cfg.clone()).unwrap();
    wal.append_txn(
        run(1),
        1,
        &[Op::Write {
            key: b"before",
            value: b"v",
            version: 1,
        }],
    )
    .unwrap();
    let r = run(2);
    let batch = [
        durability::BorrowedEntry::Raft {
            index: 7,
            term: 2,
            data: b"[1,\"RunTxn\"]",
        },
        durability::BorrowedEntry::BeginTxn {
            txn_id: 9,
            run_id: r,
            timestamp: 0,
        },
        durability::BorrowedEntry::Write {
            run_id: r,
            key: b"a",
            value: &[1; 300],
            version: 7,
        },
        durability::BorrowedEntry::Delete {
            run_id: r,
            key: b"b",
            version: 7,
        },
        durability::BorrowedEntry::Write {
            run_id: r,
            key: b"c",
            value: &[2; 500],
            version: 7,
        },
        durability::BorrowedEntry::CommitTxn {
            txn_id: 9,
            run_id: r,
        },
    ];
    let pos = wal.append_batch(&batch).unwrap();
    wal.close().unwrap();
    let whole = read_segments(dir.path());
    let name = durability::format::header::file_name(0);
    let (from, to) = (4096 + pos.first as usize, 4096 + pos.end as usize);
    let check = |image: &Files, what: &str| {
        let d = scratch();
        write_image(d.path(), image);
        let reader = WalReader::open(d.path(), &cfg).unwrap();
        let frames = frames_of(&reader);
        let p = reader.recovery_report().problem.clone();
        let kept = frames
            .last()
            .map_or(0, |(l, e)| l + frame::frame_len(&e.as_borrowed()) as u64);
        assert!(
            kept == pos.first || kept == pos.end,
            "{what}: recovered up to {kept}, inside the batch [{}, {})",
            pos.first,
            pos.end
        );
        if kept == pos.first {
            if let Some(p) = &p {
                assert_eq!(p.class, ProblemClass::TornTail, "{what}: {p}");
                assert_eq!(p.lsn, pos.first, "{what}: {p}");
            }
        }
        drop(reader);
        let wal = Wal::open(d.path(), cfg.clone()).unwrap();
        assert_eq!(wal.end_lsn(), kept, "{what}");
        wal.append_txn(
            run(3),
            1,
            &[Op::Write {
                key: b"after",
                value: b"w",
                version: 1,
            }],
        )
        .unwrap();
        wal.close().unwrap();
        let again = WalReader::open(d.path(), &cfg).unwrap();
        assert_eq!(
            again.recovery_report().problem,
            None,
            "{what}: after the repair"
        );
        assert_eq!(frames_of(&again).len(), frames.len() + 3, "{what}");
        kept
    };
    assert_eq!(check(&whole, "whole"), pos.end);
    let mut dropped = 0;
    for cut in from..to {
        let mut image = whole.clone();
        image.get_mut(&name).unwrap()[cut..to].fill(0);
        if check(&image, &format!("copy cut at offset {cut}")) == pos.first {
            dropped += 1;
        }
    }
    assert_eq!(dropped, to - from, "a cut batch was kept");
    const SECTOR: usize = 512;
    let mut s = from / SECTOR * SECTOR;
    while s < to {
        let mut image = whole.clone();
        image.get_mut(&name).unwrap()[s.max(from)..(s + SECTOR).min(to)].fill(0);
        assert_eq!(check(&image, &format!("sector at {s} reverted")), pos.first);
        s += SECTOR;
    }
}
