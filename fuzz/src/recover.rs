//! The `recover_dir` target: a log directory built from a structured input
//! (a valid log laid out by this crate, independently of the library, then
//! damaged by a list of mutations), opened read-only and then for writing.
//!
//! The valid log is written with a fixed instance id and fixed timestamps,
//! so an input always produces the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use durability::format::frame;
use durability::{
    Error, Op, ProblemClass, RecoveryMode, RecoveryReport, RunId, Wal, WalEntry, WalReader,
};

use crate::log::{self, Read, DATA_START, HEADER_LEN, SECTOR};
use crate::{scratch, Few, FuzzEntry, Rest};

/// The instance id of every log built here.
pub const INSTANCE: [u8; 16] = *b"durability-fuzz!";
/// The `created_micros` of every header written here.
pub const CREATED: u64 = 1_700_000_000_000_000;
/// At most this many segments of frames.
pub const MAX_SEGMENTS: usize = 4;
/// At most this many mutations are applied.
pub const MAX_MUTATIONS: usize = 16;
/// Files never grow past this.
pub const MAX_FILE: usize = 64 << 10;

/// The CRC seed of the frame at `lsn` (DESIGN.md §3), computed here rather
/// than with the library's function so the two are checked against each
/// other.
pub fn seed(lsn: u64) -> u32 {
    crc32c::crc32c(&INSTANCE) ^ (lsn.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// The input of `recover_dir`.
#[derive(Arbitrary, Debug, Clone)]
pub struct RecoverInput {
    pub log: LogSpec,
    pub mutations: Rest<Mutation, MAX_MUTATIONS>,
}

/// A valid log.
#[derive(Arbitrary, Debug, Clone)]
pub struct LogSpec {
    /// Sequence number of the first segment (`% 4`): a log whose older
    /// segments were removed by retention.
    pub first_seq: u8,
    /// Its first LSN, when `first_seq` is not 0.
    pub first_lsn: u32,
    /// Segment size: `(2 + pages % 2) * 4096`.
    pub pages: u8,
    /// How many trailing segments (`% 3`, never the first) have no header
    /// yet: rotated into, not sealed.
    pub unsealed: u8,
    /// A blank segment prepared after the last one.
    pub prepared: bool,
    /// A leftover `*.wal.tmp` file.
    pub tmp: bool,
    /// `entries` are written `1 + repeat % 32` times over (until
    /// [`MAX_SEGMENTS`] are full), so a short input makes a long log.
    pub repeat: u8,
    pub entries: Few<SpecEntry, 16>,
}

/// A group of entries of the valid log.
#[derive(Arbitrary, Debug, Clone)]
pub enum SpecEntry {
    /// BeginTxn, the ops, CommitTxn.
    Txn {
        run: u8,
        txn: u8,
        ops: Few<SpecOp, 8>,
    },
    /// BeginTxn, the ops, AbortTxn.
    Aborted {
        run: u8,
        txn: u8,
        ops: Few<SpecOp, 8>,
    },
    /// One large Write (value `len % 4096` bytes; skipped if it does not fit).
    Big { run: u8, len: u16 },
    /// Any entry.
    Entry(FuzzEntry),
}

/// A Write or Delete inside a [`SpecEntry`].
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct SpecOp {
    pub delete: bool,
    pub key: u8,
    pub value_len: u8,
    pub version: u8,
}

/// A change to the files.
#[derive(Arbitrary, Debug, Clone)]
pub enum Mutation {
    /// Flips one bit.
    Flip {
        file: u8,
        offset: u16,
        bit: u8,
    },
    /// Zeroes `len % 4097` bytes.
    Zero {
        file: u8,
        offset: u16,
        len: u16,
    },
    /// Zeroes the sectors of page `page` selected by `mask` (lost writes).
    ZeroSectors {
        file: u8,
        page: u8,
        mask: u8,
    },
    /// Overwrites `len % 1025` bytes with pseudo-random ones.
    Garbage {
        file: u8,
        offset: u16,
        len: u16,
        seed: u64,
    },
    /// Overwrites bytes with these (may forge anything).
    Write {
        file: u8,
        offset: u16,
        bytes: Few<u8, 64>,
    },
    /// Cuts the file to `len % (size + 1)` bytes.
    Truncate {
        file: u8,
        len: u16,
    },
    /// Appends `len % 16384 + 1` zero bytes.
    Extend {
        file: u8,
        len: u16,
    },
    Remove {
        file: u8,
    },
    /// Renames the file to segment `seq % 8`, replacing any file there.
    Rename {
        file: u8,
        seq: u8,
    },
    /// Copies the file to segment `seq % 8`, replacing any file there.
    Duplicate {
        file: u8,
        seq: u8,
    },
    /// Zeroes the header.
    BlankHeader {
        file: u8,
    },
    /// Writes a valid header: this log, the file name's seq, the LSN the
    /// file's frames were written for, the file's size.
    Seal {
        file: u8,
    },
    /// Changes one header field and fixes the header CRC (or breaks it).
    Header {
        file: u8,
        field: HeaderField,
    },
    /// Writes a valid frame for its own position (the LSN the file's frames
    /// were laid out for), at `4096 + offset % (size - 4096)`.
    Forge {
        file: u8,
        offset: u16,
        entry: FuzzEntry,
    },
    /// Adds segment `seq % 8` with these bytes after a valid header page
    /// (`first_lsn` given), or with these bytes alone; with `pad`, zero
    /// filled to 8 KiB.
    Raw {
        seq: u8,
        header: Option<u32>,
        pad: bool,
        data: Few<u8, 512>,
    },
}

/// A header field to change.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum HeaderField {
    Seq(u8),
    FirstLsn(i16),
    Size(u16),
    Instance(u8),
    Version(u8),
    Flags(u32),
    Reserved(u8, u8),
    Created(u64),
    Magic(u8),
    BadCrc,
}

/// A file of the log directory.
#[derive(Debug, Clone)]
pub struct FileState {
    pub name: String,
    pub bytes: Vec<u8>,
    /// The LSN its frames were laid out for (`None`: not a segment).
    pub origin: Option<u64>,
}

/// The valid log, laid out.
#[derive(Debug, Clone)]
pub struct Built {
    pub segment_size: u64,
    pub files: Vec<FileState>,
    /// Every entry of the valid log by LSN.
    pub entries: BTreeMap<u64, WalEntry>,
    pub start: u64,
    pub end: u64,
}

fn run_of(n: u8) -> RunId {
    RunId::from_bytes([n % 4 + 1; 16])
}

fn spec_op(run_id: RunId, op: &SpecOp) -> WalEntry {
    let key = vec![op.key % 16];
    if op.delete {
        WalEntry::Delete {
            run_id,
            key,
            version: op.version.into(),
        }
    } else {
        WalEntry::Write {
            run_id,
            key,
            value: vec![op.key ^ op.version; op.value_len as usize],
            version: op.version.into(),
        }
    }
}

fn flatten(spec: &[SpecEntry], repeat: u8) -> Vec<WalEntry> {
    let mut out = Vec::new();
    let rounds = 1 + usize::from(repeat % 32);
    for (i, e) in (0..rounds).flat_map(|_| spec.iter()).enumerate() {
        match e {
            SpecEntry::Txn { run: r, txn, ops } | SpecEntry::Aborted { run: r, txn, ops } => {
                let run_id = run_of(*r);
                let txn_id = u64::from(*txn);
                out.push(WalEntry::BeginTxn {
                    txn_id,
                    run_id,
                    timestamp: i as u64,
                });
                out.extend(ops.iter().take(16).map(|o| spec_op(run_id, o)));
                out.push(if matches!(e, SpecEntry::Txn { .. }) {
                    WalEntry::CommitTxn { txn_id, run_id }
                } else {
                    WalEntry::AbortTxn { txn_id, run_id }
                });
            }
            SpecEntry::Big { run: r, len } => out.push(WalEntry::Write {
                run_id: run_of(*r),
                key: b"big".to_vec(),
                value: vec![*len as u8; *len as usize % 4096],
                version: i as u64,
            }),
            SpecEntry::Entry(e) => out.push(e.to_entry()),
        }
        if out.len() > 800 {
            break;
        }
    }
    out
}

/// Lays out the valid log `spec` describes, as the library would have
/// written it.
pub fn build(spec: &LogSpec) -> Built {
    let segment_size = (2 + u64::from(spec.pages % 2)) * 4096;
    let max = log::config(segment_size).effective_max_entry_size() as usize;
    let first_seq = u64::from(spec.first_seq % 4);
    let start = if first_seq == 0 {
        0
    } else {
        u64::from(spec.first_lsn)
    };
    // (seq, first_lsn, bytes)
    let mut segs: Vec<(u64, u64, Vec<u8>)> =
        vec![(first_seq, start, vec![0; segment_size as usize])];
    let mut off = DATA_START;
    let mut lsn = start;
    let mut entries = BTreeMap::new();
    for e in flatten(&spec.entries, spec.repeat) {
        let b = e.as_borrowed();
        if frame::payload_len(&b) > max {
            continue;
        }
        let len = frame::frame_len(&b);
        if off + len > segment_size as usize {
            if segs.len() == MAX_SEGMENTS {
                break;
            }
            let seq = segs.last().unwrap().0 + 1;
            segs.push((seq, lsn, vec![0; segment_size as usize]));
            off = DATA_START;
        }
        let bytes = &mut segs.last_mut().unwrap().2;
        let n = frame::encode_into(&b, seed(lsn), &mut bytes[off..off + len]).expect("encode");
        assert_eq!(n, len);
        entries.insert(lsn, e);
        off += len;
        lsn += len as u64;
    }
    let n = segs.len();
    let unsealed = (spec.unsealed % 3) as usize;
    let unsealed = unsealed.min(n - 1);
    let mut files = Vec::new();
    for (i, (seq, first, mut bytes)) in segs.into_iter().enumerate() {
        if i < n - unsealed {
            bytes[..HEADER_LEN].copy_from_slice(&log::header_bytes(
                INSTANCE,
                seq,
                first,
                segment_size,
                CREATED,
            ));
        }
        files.push(FileState {
            name: log::seg_name(seq),
            bytes,
            origin: Some(first),
        });
    }
    let last_seq = first_seq + n as u64 - 1;
    if spec.prepared {
        files.push(FileState {
            name: log::seg_name(last_seq + 1),
            bytes: vec![0; segment_size as usize],
            origin: Some(lsn),
        });
    }
    if spec.tmp {
        files.push(FileState {
            name: format!("{:020}.wal.tmp", last_seq + 2),
            bytes: vec![0; DATA_START],
            origin: None,
        });
    }
    Built {
        segment_size,
        files,
        entries,
        start,
        end: lsn,
    }
}

/// The files after the mutations, and what is known about them.
#[derive(Debug)]
pub struct Mutated {
    pub files: Vec<FileState>,
    /// Frames written by `Forge`: entries the log may legitimately hold.
    pub forged: Vec<(u64, WalEntry)>,
    /// False if a mutation may have written arbitrary valid frames or
    /// headers (`Write`, `Raw`), or more than 3 bits were flipped (CRC-32C
    /// catches every error of up to 3 bits in a frame of this size), so the
    /// entries need not come from the valid log.
    pub exact: bool,
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

fn put(files: &mut Vec<FileState>, f: FileState) {
    files.retain(|g| g.name != f.name);
    files.push(f);
    files.sort_by(|a, b| a.name.cmp(&b.name));
}

/// Applies `mutations` (at most [`MAX_MUTATIONS`]) to `built`'s files.
pub fn mutate(built: &Built, mutations: &[Mutation]) -> Mutated {
    let mut files = built.files.clone();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let mut forged = Vec::new();
    let mut flips = 0;
    let mut exact = true;
    let max_payload = log::config(built.segment_size).effective_max_entry_size() as usize;
    for m in mutations.iter().take(MAX_MUTATIONS) {
        let file = match m {
            Mutation::Raw { .. } => None,
            Mutation::Flip { file, .. }
            | Mutation::Zero { file, .. }
            | Mutation::ZeroSectors { file, .. }
            | Mutation::Garbage { file, .. }
            | Mutation::Write { file, .. }
            | Mutation::Truncate { file, .. }
            | Mutation::Extend { file, .. }
            | Mutation::Remove { file }
            | Mutation::Rename { file, .. }
            | Mutation::Duplicate { file, .. }
            | Mutation::BlankHeader { file }
            | Mutation::Seal { file }
            | Mutation::Header { file, .. }
            | Mutation::Forge { file, .. } => {
                if files.is_empty() {
                    continue;
                }
                Some(*file as usize % files.len())
            }
        };
        let len = file.map_or(0, |i| files[i].bytes.len());
        match *m {
            Mutation::Flip { offset, bit, .. } => {
                if len > 0 {
                    files[file.unwrap()].bytes[offset as usize % len] ^= 1 << (bit % 8);
                    flips += 1;
                }
            }
            Mutation::Zero { offset, len: n, .. } => {
                if len > 0 {
                    let at = offset as usize % len;
                    let end = (at + n as usize % 4097).min(len);
                    files[file.unwrap()].bytes[at..end].fill(0);
                }
            }
            Mutation::ZeroSectors { page, mask, .. } => {
                let pages = len / 4096;
                if pages > 0 {
                    let p = page as usize % pages;
                    for s in 0..8 {
                        if mask & (1 << s) != 0 {
                            let at = p * 4096 + s * SECTOR;
                            files[file.unwrap()].bytes[at..at + SECTOR].fill(0);
                        }
                    }
                }
            }
            Mutation::Garbage {
                offset,
                len: n,
                seed,
                ..
            } => {
                if len > 0 {
                    let at = offset as usize % len;
                    let end = (at + n as usize % 1025).min(len);
                    let mut rng = XorShift(seed | 1);
                    for b in &mut files[file.unwrap()].bytes[at..end] {
                        *b = rng.next();
                    }
                }
            }
            Mutation::Write {
                offset, ref bytes, ..
            } => {
                exact = false;
                if len > 0 {
                    let at = offset as usize % len;
                    let n = bytes.len().min(len - at);
                    files[file.unwrap()].bytes[at..at + n].copy_from_slice(&bytes[..n]);
                }
            }
            Mutation::Truncate { len: n, .. } => {
                files[file.unwrap()].bytes.truncate(n as usize % (len + 1));
            }
            Mutation::Extend { len: n, .. } => {
                let new = (len + n as usize % 16384 + 1).min(MAX_FILE);
                files[file.unwrap()].bytes.resize(new.max(len), 0);
            }
            Mutation::Remove { .. } => {
                files.remove(file.unwrap());
            }
            Mutation::Rename { seq, .. } => {
                let mut f = files.remove(file.unwrap());
                f.name = log::seg_name(u64::from(seq % 8));
                put(&mut files, f);
            }
            Mutation::Duplicate { seq, .. } => {
                let mut f = files[file.unwrap()].clone();
                f.name = log::seg_name(u64::from(seq % 8));
                put(&mut files, f);
            }
            Mutation::BlankHeader { .. } => {
                let f = &mut files[file.unwrap()];
                let n = f.bytes.len().min(HEADER_LEN);
                f.bytes[..n].fill(0);
            }
            Mutation::Seal { .. } => {
                let f = &mut files[file.unwrap()];
                if let (Some(seq), true) = (log::seq_of(&f.name), len >= HEADER_LEN) {
                    let h = log::header_bytes(
                        INSTANCE,
                        seq,
                        f.origin.unwrap_or(0),
                        len as u64,
                        CREATED,
                    );
                    f.bytes[..HEADER_LEN].copy_from_slice(&h);
                }
            }
            Mutation::Header { field, .. } => {
                let h = &mut files[file.unwrap()].bytes;
                if len >= HEADER_LEN {
                    let set64 = |h: &mut Vec<u8>, at: usize, f: &dyn Fn(u64) -> u64| {
                        let v = u64::from_le_bytes(h[at..at + 8].try_into().unwrap());
                        h[at..at + 8].copy_from_slice(&f(v).to_le_bytes());
                    };
                    match field {
                        HeaderField::Seq(s) => set64(h, 32, &|_| u64::from(s % 8)),
                        HeaderField::FirstLsn(d) => {
                            set64(h, 40, &|v| v.wrapping_add_signed(i64::from(d)))
                        }
                        HeaderField::Size(s) => set64(h, 48, &|_| u64::from(s)),
                        HeaderField::Instance(i) => h[16 + i as usize % 16] ^= 0x5a,
                        HeaderField::Version(v) => {
                            h[8..12].copy_from_slice(&u32::from(v).to_le_bytes())
                        }
                        HeaderField::Flags(f) => h[12..16].copy_from_slice(&f.to_le_bytes()),
                        HeaderField::Reserved(i, v) => h[64 + i as usize % 60] = v,
                        HeaderField::Created(c) => set64(h, 56, &|_| c),
                        HeaderField::Magic(i) => h[i as usize % 8] ^= 0x20,
                        HeaderField::BadCrc => {}
                    }
                    log::fix_header_crc(h);
                    if matches!(field, HeaderField::BadCrc) {
                        h[HEADER_LEN - 1] ^= 0x80;
                    }
                }
            }
            Mutation::Forge {
                offset, ref entry, ..
            } => {
                let f = &mut files[file.unwrap()];
                let Some(origin) = f.origin else { continue };
                if len <= DATA_START {
                    continue;
                }
                let at = DATA_START + offset as usize % (len - DATA_START);
                let entry = entry.to_entry();
                let b = entry.as_borrowed();
                let n = frame::frame_len(&b);
                if frame::payload_len(&b) > max_payload || at + n > len {
                    continue;
                }
                let lsn = origin + (at - DATA_START) as u64;
                frame::encode_into(&b, seed(lsn), &mut f.bytes[at..at + n]).expect("encode");
                forged.push((lsn, entry));
            }
            Mutation::Raw {
                seq,
                header,
                pad,
                ref data,
            } => {
                exact = false;
                let mut bytes = Vec::new();
                if let Some(first) = header {
                    bytes.resize(DATA_START, 0);
                    bytes.extend_from_slice(data);
                    let seq = u64::from(seq % 8);
                    let h =
                        log::header_bytes(INSTANCE, seq, first.into(), bytes.len() as u64, CREATED);
                    bytes[..HEADER_LEN].copy_from_slice(&h);
                } else {
                    bytes.extend_from_slice(data);
                }
                if pad && bytes.len() < 8192 {
                    bytes.resize(8192, 0);
                }
                bytes.truncate(MAX_FILE);
                put(
                    &mut files,
                    FileState {
                        name: log::seg_name(u64::from(seq % 8)),
                        bytes,
                        origin: header.map(u64::from),
                    },
                );
            }
        }
    }
    Mutated {
        files,
        forged,
        exact: exact && flips <= 3,
    }
}

fn without_duration(r: &RecoveryReport) -> RecoveryReport {
    RecoveryReport {
        duration: Default::default(),
        ..r.clone()
    }
}

/// Checks a report against the frames read back: `frames` are the LSNs of
/// every frame (`Snapshot::iter_all`, entries a truncation deleted
/// included: the report counts what the scan found); `reads` the live
/// entries.
fn check_report(r: &RecoveryReport, frames: &[u64], reads: &[Read], start: u64, end: u64) {
    assert_eq!(r.end_lsn, end, "report.end_lsn is not the snapshot's end");
    assert_eq!(r.entries, frames.len() as u64, "report.entries miscounts");
    assert_eq!(r.last_lsn, frames.last().copied(), "report.last_lsn");
    assert!(reads.len() <= frames.len(), "more live entries than frames");
    if r.segments > 0 {
        assert_eq!(
            r.first_lsn, start,
            "report.first_lsn is not the snapshot's start"
        );
    }
    if let Some(p) = &r.problem {
        assert_eq!(
            p.lsn, r.end_lsn,
            "the problem is not where the valid log ends: {p}"
        );
        assert!(!p.to_string().is_empty());
    }
}

fn check_replay(
    replay: impl FnOnce(&mut dyn FnMut(&durability::Txn<'_, '_>)) -> Result<(), Error>,
    reads: &[Read],
    runs: Vec<RunId>,
) {
    let want = log::units(reads.iter().map(|e| (e.lsn, &e.entry)));
    log::check_replay("replay", &want, replay);
    let want_runs: BTreeSet<RunId> = reads.iter().filter_map(|e| e.entry.run_id()).collect();
    let got_runs: BTreeSet<RunId> = runs.into_iter().collect();
    assert_eq!(
        got_runs, want_runs,
        "runs() is not the set of runs with entries"
    );
}

/// One line per file: name, size, and what its header holds.
pub fn describe(files: &[FileState]) -> String {
    let mut out = String::new();
    for f in files {
        let h = &f.bytes;
        let state = if h.len() < HEADER_LEN {
            "short".to_string()
        } else if log::header_blank(h) {
            "blank header".to_string()
        } else if log::header_valid(h) {
            let u = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap());
            format!(
                "header seq {} first_lsn {} size {}{}",
                u(32),
                u(40),
                u(48),
                if h[16..32] == INSTANCE {
                    ""
                } else {
                    " (other log)"
                }
            )
        } else {
            "invalid header".to_string()
        };
        out += &format!(
            "  {} {} bytes, {state}, laid out for LSN {:?}\n",
            f.name,
            h.len(),
            f.origin
        );
    }
    out
}

fn debug() -> bool {
    std::env::var_os("DURABILITY_FUZZ_DEBUG").is_some()
}

/// Runs one input. With `DURABILITY_FUZZ_DEBUG` set, prints the files and
/// what each open found.
pub fn run(input: &RecoverInput) {
    let built = build(&input.log);
    let m = mutate(&built, &input.mutations);
    if debug() {
        eprintln!(
            "valid log: LSN {}..{}, {} entries\nfiles:\n{}exact: {}",
            built.start,
            built.end,
            built.entries.len(),
            describe(&m.files),
            m.exact
        );
    }
    let dir = scratch::fresh("recover_dir");
    let files: Vec<(String, Vec<u8>)> = m
        .files
        .iter()
        .map(|f| (f.name.clone(), f.bytes.clone()))
        .collect();
    scratch::write_files(&dir, &files);
    let cfg = log::config(built.segment_size);

    // Read-only open: never changes a byte.
    let reader = WalReader::open(&dir, &cfg);
    if debug() {
        eprintln!(
            "read-only open: {:?}",
            reader.as_ref().map(|r| r.recovery_report())
        );
    }
    assert!(
        log::dir_state(&dir) == files,
        "a read-only open changed the files"
    );

    let reads = match &reader {
        Err(Error::NotALog { .. }) => {
            assert!(
                !files.iter().any(|(n, _)| log::seq_of(n).is_some()),
                "NotALog with segment files present"
            );
            None
        }
        Err(Error::SegmentHeader { .. }) => None,
        Err(e) => panic!("read-only open failed with an unexpected error: {e:?}"),
        Ok(r) => {
            let snap = r.snapshot();
            let reads = log::read_all(snap);
            let frames: Vec<u64> = snap
                .iter_all()
                .map(|e| e.expect("iter_all of a log that opened").lsn)
                .collect();
            let rep = r.recovery_report();
            check_report(rep, &frames, &reads, snap.start_lsn(), snap.end_lsn());
            let seqs: Vec<u64> = snap.segment_seqs().collect();
            assert_eq!(seqs.len(), rep.segments);
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "segments out of order: {seqs:?}"
            );
            check_replay(|f| r.replay(f).map(drop), &reads, r.runs());
            let all = log::units(reads.iter().map(|e| (e.lsn, &e.entry)));
            for run in r.runs() {
                let want: Vec<_> = all.iter().filter(|u| u.run == run).cloned().collect();
                log::check_replay(&format!("replay_run({run:?})"), &want, |f| {
                    r.replay_run(run, f).map(drop)
                });
            }
            if m.exact {
                for e in &reads {
                    let base = built.entries.get(&e.lsn) == Some(&e.entry);
                    let forged = m.forged.iter().any(|(l, f)| *l == e.lsn && *f == e.entry);
                    assert!(
                        base || forged,
                        "recovered an entry at LSN {} that was never written there: {:?}",
                        e.lsn,
                        e.entry
                    );
                }
            }
            if input.mutations.is_empty() {
                assert!(
                    rep.problem.is_none(),
                    "an undamaged log has a problem: {:?}",
                    rep.problem
                );
                // Every frame, entries a truncation record deleted included.
                let all: Vec<(u64, WalEntry)> = built.entries.clone().into_iter().collect();
                let got: Vec<(u64, WalEntry)> = snap
                    .iter_all()
                    .map(|e| {
                        let e = e.expect("iter_all of a log that opened");
                        (e.lsn, e.entry.to_owned())
                    })
                    .collect();
                assert!(got == all, "an undamaged log does not read back whole");
                assert_eq!((snap.start_lsn(), snap.end_lsn()), (built.start, built.end));
            }
            Some((reads, rep.clone()))
        }
    };
    drop(reader);

    // AbsoluteConsistency refuses mid-log corruption, before changing
    // anything but leftover temporary files.
    if let Some((_, rep)) = &reads {
        if rep
            .problem
            .as_ref()
            .is_some_and(|p| p.class == ProblemClass::MidLogCorruption)
        {
            let segs = |d: &std::path::Path| -> Vec<(String, Vec<u8>)> {
                log::dir_state(d)
                    .into_iter()
                    .filter(|(n, _)| !n.ends_with(".tmp"))
                    .collect()
            };
            let before = segs(&dir);
            match Wal::open(
                &dir,
                cfg.clone().recovery_mode(RecoveryMode::AbsoluteConsistency),
            ) {
                Err(Error::Corrupt { class, .. }) => {
                    assert_eq!(class, ProblemClass::MidLogCorruption)
                }
                other => panic!("AbsoluteConsistency open of a mid-log corruption: {other:?}"),
            }
            assert!(segs(&dir) == before, "a refused open changed the segments");
        }
    }

    // Write open (PointInTime): repairs; the same entries as the read-only
    // open. Then an append in the repaired log.
    let wal = Wal::open(&dir, cfg.clone());
    let (w, before) = match (&reader_kind(&reads, &files), wal) {
        (Expect::Refused, Err(Error::SegmentHeader { .. })) => return,
        (Expect::Refused, other) => {
            panic!("read-only open refused the log, write open: {other:?}")
        }
        (_, Err(e)) => panic!("write open failed where the read-only open succeeded: {e:?}"),
        (Expect::New, Ok(w)) => {
            let got = log::read_all(&w.snapshot());
            assert!(got.is_empty() && w.end_lsn() == 0, "a new log is not empty");
            (w, got)
        }
        (Expect::Same, Ok(w)) => {
            let (want, rep) = reads.as_ref().unwrap();
            assert_eq!(
                without_duration(w.recovery_report()),
                without_duration(rep),
                "write and read-only opens report differently"
            );
            let got = log::read_all(&w.snapshot());
            assert!(
                &got == want,
                "write open reads other entries than the read-only open"
            );
            (w, got)
        }
    };
    if debug() {
        eprintln!("after repair:\n{}", describe(&dir_files(&dir)));
    }
    let end = w.end_lsn();
    let pos = w
        .append_txn_at(
            RunId::from_bytes([0xee; 16]),
            7,
            1,
            &[Op::Write {
                key: b"after",
                value: b"repair",
                version: 1,
            }],
        )
        .expect("append after repair");
    assert_eq!(pos.begin, end);
    w.close().expect("close after repair and append");

    // Repair is idempotent: reopening finds nothing wrong, and the same log
    // with the appended transaction after it.
    let w = Wal::open(&dir, cfg).expect("reopen after repair");
    let r = w.recovery_report().clone();
    assert!(
        r.problem.is_none(),
        "reopen after repair found a problem: {:?}",
        r.problem
    );
    assert_eq!(r.bytes_discarded, 0, "reopen after repair discarded bytes");
    let after = log::read_all(&w.snapshot());
    assert!(
        after.len() == before.len() + 3 && after[..before.len()] == before[..],
        "reopen after repair reads other entries ({} before, {} after)",
        before.len(),
        after.len()
    );
    assert_eq!(after[before.len()].lsn, end);
    assert!(matches!(
        &after[before.len() + 1].entry,
        WalEntry::Write { value, .. } if value == b"repair"
    ));
    check_replay(|f| w.replay(f).map(drop), &after, w.runs());
}

enum Expect {
    /// Both opens refuse.
    Refused,
    /// No log (no segments, or only blank ones): a write open creates one.
    New,
    /// The write open recovers what the read-only open read.
    Same,
}

fn reader_kind(reads: &Option<(Vec<Read>, RecoveryReport)>, files: &[(String, Vec<u8>)]) -> Expect {
    match reads {
        None if files.iter().any(|(n, _)| log::seq_of(n).is_some()) => Expect::Refused,
        None => Expect::New,
        Some((_, rep)) if rep.segments == 0 => Expect::New,
        Some(_) => Expect::Same,
    }
}

fn dir_files(dir: &std::path::Path) -> Vec<FileState> {
    scratch::read_files(dir)
        .into_iter()
        .map(|(name, bytes)| FileState {
            name,
            bytes,
            origin: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Hand-written inputs: the harness accepts valid and plausibly damaged
    //! logs, and reproductions of the library bugs the target found (each
    //! fixed; kept as regression tests). `.ci/run` runs them with
    //! `cargo test --release --manifest-path fuzz/Cargo.toml`.
    use super::*;

    /// Found by this target (a harness bug, now fixed): a log whose frames
    /// include a Truncate record reads fewer live entries than it has
    /// frames; the report counts frames, and an undamaged log reads back
    /// whole frame by frame (`Snapshot::iter_all`).
    #[test]
    fn a_truncation_record_in_the_built_log() {
        use arbitrary::{Arbitrary, Unstructured};
        let bytes = include_bytes!("../regressions/recover_dir-truncate-frame");
        let input = RecoverInput::arbitrary_take_rest(Unstructured::new(bytes)).unwrap();
        run(&input);
    }

    /// `n` transactions of ~350 bytes in segments of `(2 + pages) * 4 KiB`.
    fn spec(pages: u8, n: usize) -> LogSpec {
        LogSpec {
            first_seq: 0,
            first_lsn: 0,
            pages,
            unsealed: 0,
            prepared: false,
            tmp: false,
            repeat: 0,
            entries: (0..n)
                .map(|i| SpecEntry::Txn {
                    run: i as u8,
                    txn: i as u8,
                    ops: Few(vec![SpecOp {
                        delete: false,
                        key: i as u8,
                        value_len: 200,
                        version: 1,
                    }]),
                })
                .collect::<Vec<_>>()
                .into(),
        }
    }

    fn damaged(log: LogSpec, mutations: Vec<Mutation>) {
        run(&RecoverInput {
            log,
            mutations: mutations.into(),
        });
    }

    #[test]
    fn undamaged_logs_read_back_whole() {
        for pages in 0..2 {
            for n in [0, 1, 11, 12, 40] {
                for (unsealed, prepared, tmp, first_seq) in [
                    (0, false, false, 0),
                    (1, true, true, 2),
                    (2, true, false, 3),
                ] {
                    damaged(
                        LogSpec {
                            unsealed,
                            prepared,
                            tmp,
                            first_seq,
                            first_lsn: 77_777,
                            ..spec(pages, n)
                        },
                        vec![],
                    );
                }
            }
        }
    }

    #[test]
    fn plausible_damage() {
        // A torn tail; the first segment deleted by retention; the last
        // header lost; junk in the unused part of a header page; a bit flip
        // in a frame; a lost sector; a segment from another log.
        for m in [
            Mutation::Zero {
                file: 1,
                offset: 5000,
                len: 4096,
            },
            Mutation::Remove { file: 0 },
            Mutation::BlankHeader { file: 1 },
            Mutation::Garbage {
                file: 0,
                offset: 1000,
                len: 1024,
                seed: 7,
            },
            Mutation::Flip {
                file: 0,
                offset: 4500,
                bit: 3,
            },
            Mutation::ZeroSectors {
                file: 1,
                page: 1,
                mask: 0b0000_0100,
            },
            Mutation::Header {
                file: 1,
                field: HeaderField::Instance(3),
            },
        ] {
            damaged(spec(0, 20), vec![m]);
        }
    }

    /// Found by this target, now fixed (a regression test): an unsealed segment
    /// was adopted across a gap in the sequence numbers; the write open sealed it
    /// under its own number, and the next open called the gap mid-log corruption
    /// and dropped it (with everything appended in it meanwhile).
    #[test]
    fn adopting_across_a_gap() {
        damaged(
            LogSpec {
                unsealed: 1,
                ..spec(0, 20)
            },
            vec![Mutation::Rename { file: 1, seq: 5 }],
        );
    }

    /// Found by this target, now fixed (a regression test): junk after the last
    /// frame of a segment was not zeroed when the scan stopped at the next
    /// segment's header, so the write open appended in front of it and the next
    /// open found a problem.
    #[test]
    fn stale_tail_before_a_bad_header() {
        damaged(
            LogSpec {
                prepared: true,
                ..spec(0, 3)
            },
            vec![
                Mutation::Garbage {
                    file: 0,
                    offset: 6000,
                    len: 100,
                    seed: 1,
                },
                Mutation::Header {
                    file: 1,
                    field: HeaderField::Magic(0),
                },
            ],
        );
    }

    /// Found by this target, now fixed (a regression test): a header (valid
    /// CRC) whose `segment_size` is below a page, or below the end of the
    /// frames, made the write open cut the file to that size and then fail,
    /// though the read-only open succeeded.
    #[test]
    fn header_size_below_frames() {
        damaged(
            spec(1, 12),
            vec![Mutation::Header {
                file: 0,
                field: HeaderField::Size(8192),
            }],
        );
        damaged(
            spec(0, 3),
            vec![Mutation::Header {
                file: 0,
                field: HeaderField::Size(141),
            }],
        );
    }
}
