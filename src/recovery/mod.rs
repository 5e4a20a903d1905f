//! Recovery: scan every segment, find where the valid log ends, and classify
//! whatever stops the scan (see DESIGN.md, "Crash cases").
//!
//! Recovery reads; it never writes. Opening for writing applies its verdict
//! afterwards (zeroing the tail, moving discarded segments aside).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::error::{Error, Location, ProblemClass, Result};
use crate::format::entry::{EntryKind, RunId};
use crate::format::frame::{
    Ahead, Decoder, EntryRef, Frame, DEFAULT_MAX_PAYLOAD, FRAME_OVERHEAD, MIN_PAYLOAD,
};
pub(crate) mod pool;

use self::pool::{Ordered, Taken};
use crate::format::header::{self, Header, HeaderState, DATA_START, MIN_SEGMENT_SIZE, SECTOR};
use crate::os::segment::{self, Segment};
use crate::read::dead::Truncations;
use crate::read::runs::{OpenTxns, RunIndex};
use crate::read::runs::{Reopened, TxnCounts};
use crate::read::snapshot::SegRef;
use crate::read::snapshot::Snapshot;

/// What to do when recovery finds more than a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum RecoveryMode {
    /// Keep the valid prefix, whatever stopped the scan, and report what was
    /// dropped. The default.
    #[default]
    PointInTime,
    /// Refuse to open ([`Error::Corrupt`]) unless the only problem is a torn
    /// tail. Use it with [`SyncMode::Strict`](crate::SyncMode::Strict).
    AbsoluteConsistency,
}

/// The first problem recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Problem {
    /// Torn tail or mid-log corruption.
    pub class: ProblemClass,
    /// The segment's sequence number.
    pub segment: u64,
    /// The segment's file name.
    pub file: String,
    /// The byte offset in that file where the valid data ends.
    pub offset: u64,
    /// The LSN where the valid log ends.
    pub lsn: u64,
    /// What was found there.
    pub detail: String,
}

impl Problem {
    /// The problem's location.
    pub fn location(&self) -> Location {
        Location::in_segment(self.segment, self.offset)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.location(), self.class, self.detail)
    }
}

/// What opening a log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RecoveryReport {
    /// Segments in the recovered log.
    pub segments: usize,
    /// Valid entries.
    pub entries: u64,
    /// Transactions with a BeginTxn and a CommitTxn.
    pub committed_txns: u64,
    /// Transactions ended by AbortTxn.
    pub aborted_txns: u64,
    /// Transactions with a BeginTxn and no end: dropped by replay.
    pub incomplete_txns: u64,
    /// The LSN of the first entry still in the log.
    pub first_lsn: u64,
    /// The LSN of the last valid entry, if there is one.
    pub last_lsn: Option<u64>,
    /// The LSN the next append gets: the end of the valid log.
    pub end_lsn: u64,
    /// Bytes of frames found after the valid end and dropped.
    pub bytes_discarded: u64,
    /// The first problem found, if any.
    pub problem: Option<Problem>,
    /// How long the recovery scan took.
    #[cfg_attr(feature = "serde", serde(with = "duration_secs"))]
    pub duration: Duration,
}

#[cfg(feature = "serde")]
mod duration_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = <f64 as serde::Deserialize>::deserialize(d)?;
        Ok(Duration::from_secs_f64(secs.max(0.0)))
    }
}

/// The outcome of a recovery scan.
pub(crate) struct Recovered {
    pub instance: Uuid,
    pub segments: Vec<SegRef>,
    /// How many of the last `segments` had blank headers and were adopted.
    pub adopted: usize,
    pub end_lsn: u64,
    pub report: RecoveryReport,
    pub index: RunIndex,
    /// The transactions open at the end of the valid log.
    pub open_txns: OpenTxns,
    /// The truncation records of the valid log.
    pub truncations: Truncations,
    /// Where the scan stopped at the poisoned-log limit (an offset in the
    /// last kept segment): its bytes from there on are not trusted.
    pub limited_at: Option<usize>,
    /// In the last kept segment: `[start, end)` holds bytes after the valid
    /// end that must be zeroed before appending.
    pub zero_range: Option<(usize, usize)>,
    /// The last kept segment's file is shorter than its header says (cut
    /// short): a write open goes on in a new segment after it.
    pub last_short: bool,
    /// Segments after the valid end, to move aside on a write open.
    pub discard: Vec<PathBuf>,
    /// Blank segments after the last kept one (prepared, never used).
    pub blanks: Vec<(u64, PathBuf)>,
    /// Leftover temporary files from an interrupted segment creation.
    pub temps: Vec<PathBuf>,
}

/// The files of a log directory.
pub(crate) struct Listing {
    pub segments: Vec<(u64, PathBuf)>,
    pub temps: Vec<PathBuf>,
}

/// Lists the segment files of `dir` in sequence order; other files are
/// ignored (temporary files are returned for cleanup).
pub(crate) fn list(dir: &Path) -> Result<Listing> {
    let mut segments = Vec::new();
    let mut temps = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("read directory", dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = header::parse_file_name(name) {
            let is_file = ent.file_type().map(|t| t.is_file()).unwrap_or(false);
            if is_file {
                segments.push((seq, ent.path()));
            }
        } else if name.ends_with(header::TMP_SUFFIX) {
            temps.push(ent.path());
        }
    }
    segments.sort_unstable_by_key(|&(seq, _)| seq);
    Ok(Listing { segments, temps })
}

/// Reads frames from a segment, either straight from the map (when nothing
/// can write it: the caller holds the write lock) or by first copying each
/// frame into a private buffer (a read-only open, while another process may
/// be appending).
struct FrameReader<'a> {
    seg: &'a Segment,
    copy: bool,
    buf: Vec<u8>,
    decoder: Decoder,
}

impl<'a> FrameReader<'a> {
    fn decode(&mut self, off: usize, seed: u32) -> Result<Option<Frame<'_>>> {
        let seq = self.seg.seq();
        if !self.copy {
            // SAFETY: recovery without copying runs only under the write
            // lock, before any writer of this process exists, so no one
            // writes these bytes while the slice lives (DESIGN.md,
            // "Soundness").
            let bytes = unsafe { self.seg.bytes(0, self.seg.len()) };
            return self
                .decoder
                .decode(bytes, off, seed)
                .map_err(|e| e.in_segment(seq));
        }
        let mut len = [0u8; 4];
        let n = self.seg.copy_out(off, &mut len);
        let len = u32::from_le_bytes(len) as usize;
        let room = self.seg.len().saturating_sub(off);
        if n == 4 && len >= MIN_PAYLOAD && len + FRAME_OVERHEAD > room {
            // Never an allocation sized by a damaged length; the error the
            // in-place decode gives.
            return Err(Error::Truncated {
                at: Location::in_segment(seq, off as u64),
                needed: (len + FRAME_OVERHEAD) as u64,
                available: room as u64,
            });
        }
        // Copy the whole frame if its length is plausible, else the length
        // field alone, for the decoder to reject.
        let want = if n < 4 || len < MIN_PAYLOAD || len > self.decoder.max_payload() as usize {
            4
        } else {
            len + FRAME_OVERHEAD
        };
        self.buf.clear();
        self.buf.resize(want, 0);
        let got = self.seg.copy_out(off, &mut self.buf);
        self.buf.truncate(got);
        self.decoder
            .decode(&self.buf, 0, seed)
            .map_err(|e| e.shifted(off as u64).in_segment(seq))
    }

    /// [`decode`](Self::decode) for a forward scan of this segment: in
    /// place (no copy), the frames' CRCs are checked several at a time
    /// through `ahead`; `seed_of(off)` is the seed of the frame at `off`.
    fn decode_scan(
        &mut self,
        off: usize,
        seed_of: impl Fn(usize) -> u32,
        ahead: &mut Ahead,
    ) -> Result<Option<Frame<'_>>> {
        if self.copy {
            return self.decode(off, seed_of(off));
        }
        let seq = self.seg.seq();
        // SAFETY: as in `decode`: no writer exists during this scan, so the
        // bytes do not change while `ahead` remembers checked CRCs of them.
        let bytes = unsafe { self.seg.bytes(0, self.seg.len()) };
        ahead
            .decode(&self.decoder, bytes, off, seed_of)
            .map_err(|e| e.in_segment(seq))
    }

    /// Copies or borrows `[start, end)` and applies `f`.
    fn with_bytes<T>(&mut self, start: usize, end: usize, f: impl FnOnce(&[u8]) -> T) -> T {
        if !self.copy {
            // SAFETY: as in `decode`: no writer exists during this scan.
            return f(unsafe { self.seg.bytes(start, end) });
        }
        self.buf.clear();
        self.buf.resize(end - start, 0);
        let n = self.seg.copy_out(start, &mut self.buf);
        f(&self.buf[..n])
    }

    /// The offset just past the last nonzero byte at or after `from`, or
    /// `from` if everything from there to the end of the file is zero.
    fn nonzero_end(&mut self, from: usize) -> usize {
        const CHUNK: usize = 64 << 10;
        // Nothing past the file's last data extent can be nonzero: holes
        // (a sparse file, unwritten preallocation) are skipped unread.
        let mut end = self.seg.data_end().max(from).min(self.seg.len());
        while end > from {
            let start = end.saturating_sub(CHUNK).max(from);
            let last = self.with_bytes(start, end, last_nonzero);
            if let Some(i) = last {
                return start + i + 1;
            }
            end = start;
        }
        from
    }
}

/// The index of the last nonzero byte of `b`. Works back in 256-byte
/// blocks whose words are OR-ed together (the compiler vectorises it), so a
/// zero region is skipped at memory speed.
fn last_nonzero(b: &[u8]) -> Option<usize> {
    const BLOCK: usize = 256;
    let mut end = b.len();
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let block = &b[start..end];
        let any = if block.len() == BLOCK {
            block.chunks_exact(8).fold(0u64, |acc, w| {
                acc | u64::from_ne_bytes(w.try_into().unwrap_or([0; 8]))
            }) != 0
        } else {
            block.iter().any(|&x| x != 0)
        };
        if any {
            return block.iter().rposition(|&x| x != 0).map(|i| start + i);
        }
        end = start;
    }
    None
}

/// Per-scan accounting: entries, transactions, the run index.
struct Tally {
    entries: u64,
    last_lsn: Option<u64>,
    open: OpenTxns,
    /// Transactions ended or replaced, as replay counts them.
    counts: TxnCounts,
    index: RunIndex,
    /// The largest payload of a valid frame so far.
    largest: usize,
    truncations: Truncations,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            entries: 0,
            last_lsn: None,
            open: OpenTxns::default(),
            counts: TxnCounts::default(),
            index: RunIndex::default(),
            largest: 0,
            truncations: Truncations::default(),
        }
    }

    fn visit(&mut self, f: Facts) {
        self.entries += 1;
        self.largest = self.largest.max(f.len - FRAME_OVERHEAD);
        self.last_lsn = Some(f.lsn);
        let lsn = f.lsn;
        self.index.note(f.run, lsn, lsn + f.len as u64);
        if let Some(from) = f.truncate_from {
            // The writer checked `from` when it appended the record; a
            // record naming a later LSN than its own deletes nothing.
            if from < lsn {
                self.truncations.add(from, lsn);
                self.index.truncate_from(from);
                // Recomputed from the live log after the scan.
                self.open.truncate_from(from);
            }
        }
        if let Some(run) = f.run {
            self.counts.note(self.open.note(f.kind, run, f.txn_id, lsn));
        }
    }

    /// The facts of a segment scanned ahead, as [`visit`](Self::visit) of
    /// each frame in turn would count them.
    fn apply(&mut self, summary: Summary) {
        for fact in summary.folded {
            match fact {
                Fact::Plain {
                    run,
                    start,
                    end,
                    last,
                    count,
                    largest,
                } => {
                    self.entries += count;
                    self.largest = self.largest.max(largest);
                    self.last_lsn = Some(last);
                    self.index.note(Some(run), start, end);
                }
                Fact::Other(f) => self.visit(f),
            }
        }
    }
}

/// What the accounting of a recovery scan ([`Tally`]) needs of one valid
/// frame: read from the frame during the scan, so that a helper thread can
/// scan a segment and hand these over (see [`Ordered`]).
#[derive(Debug, Clone, Copy)]
struct Facts {
    lsn: u64,
    /// The frame's length (payload + FRAME_OVERHEAD).
    len: usize,
    kind: EntryKind,
    run: Option<RunId>,
    txn_id: Option<u64>,
    truncate_from: Option<u64>,
}

impl Facts {
    #[inline]
    fn of(lsn: u64, len: usize, e: &EntryRef<'_>) -> Facts {
        Facts {
            lsn,
            len,
            kind: e.kind(),
            run: e.run_id(),
            txn_id: e.txn_id(),
            truncate_from: e.truncate_from(),
        }
    }
}

/// One segment scanned ahead by a helper of a parallel recovery: what
/// [`scan_frames`] found there, for the recovery loop to apply in order.
struct SegScan {
    /// The LSN the scan took the segment to start at (its header's).
    first_lsn: u64,
    facts: Summary,
    end: ScanEnd,
}

/// A segment's [`Facts`], in order, with each stretch of consecutive plain
/// entries of one run (no transaction boundary, no truncation) folded
/// into one record: its effect on a [`Tally`] is that of its entries one
/// by one (a run's stretch in the index grows the same way), at a fraction
/// of the memory.
#[derive(Default)]
struct Summary {
    folded: Vec<Fact>,
}

enum Fact {
    /// Plain entries of `run` covering `[start, end)`; the last at `last`.
    Plain {
        run: RunId,
        start: u64,
        end: u64,
        last: u64,
        count: u64,
        /// The largest payload among them.
        largest: usize,
    },
    Other(Facts),
}

impl Summary {
    #[inline]
    fn push(&mut self, f: Facts) {
        let plain = f.truncate_from.is_none()
            && !matches!(
                f.kind,
                EntryKind::BeginTxn | EntryKind::CommitTxn | EntryKind::AbortTxn
            );
        let end = f.lsn + f.len as u64;
        let payload = f.len - FRAME_OVERHEAD;
        match (plain, f.run, self.folded.last_mut()) {
            (
                true,
                Some(r),
                Some(Fact::Plain {
                    run,
                    end: e,
                    last,
                    count,
                    largest,
                    ..
                }),
            ) if *run == r && *e == f.lsn => {
                *e = end;
                *last = f.lsn;
                *count += 1;
                *largest = (*largest).max(payload);
            }
            (true, Some(run), _) => self.folded.push(Fact::Plain {
                run,
                start: f.lsn,
                end,
                last: f.lsn,
                count: 1,
                largest: payload,
            }),
            _ => self.folded.push(Fact::Other(f)),
        }
    }
}

/// Segments a helper scans at most ahead of the recovery loop: bounds the
/// facts held in memory (about 60 bytes per record: one per stretch of
/// plain entries, one per other frame).
const SCAN_WINDOW: usize = 2;

/// How a segment's frame scan ended.
struct ScanEnd {
    /// Where the valid log ends in this segment: just past the last frame
    /// that ends a unit (a frame of a batch counts only once the batch's
    /// last frame is there).
    end: usize,
    /// Just past the last frame that validated: `end`, unless the frames
    /// stop inside a unit (`open_unit`).
    stop: usize,
    /// The error that stopped it, or `None` for a zero length.
    error: Option<Error>,
    /// The frames stop inside a unit: its frames from `end` to `stop` are
    /// there, its last one is not (a crash while it was being written).
    open_unit: bool,
}

/// Scans the frames of one segment from its first, handing each valid
/// frame's [`Facts`] to `visit` once its unit is whole (a frame marked
/// [`CONTINUES`](crate::format::frame::CONTINUES) waits for the frame that ends
/// its unit: a unit is all or nothing, DESIGN.md §7), and says where and
/// why the scan stopped.
fn scan_frames(
    r: &mut FrameReader<'_>,
    sref: &SegRef,
    salt: u32,
    limit: u64,
    mut visit: impl FnMut(Facts),
) -> ScanEnd {
    let mut off = DATA_START;
    let len = r.seg.len();
    let mut ahead = Ahead::default();
    // The frames of the unit being read, and where it started.
    let mut unit: Vec<Facts> = Vec::new();
    let mut unit_start = DATA_START;
    let stopped = |off: usize, unit: &[Facts], unit_start: usize, error: Option<Error>| ScanEnd {
        end: if unit.is_empty() { off } else { unit_start },
        stop: off,
        error,
        open_unit: !unit.is_empty(),
    };
    loop {
        let lsn = sref.lsn_of(off);
        if lsn >= limit {
            return stopped(off, &unit, unit_start, None);
        }
        let seed_of = |p: usize| header::seed(salt, sref.lsn_of(p));
        match r.decode_scan(off, seed_of, &mut ahead) {
            Ok(Some(frame)) => {
                let facts = Facts::of(lsn, frame.len, &frame.entry);
                if frame.continues {
                    if unit.is_empty() {
                        unit_start = off;
                    }
                    unit.push(facts);
                } else {
                    for f in unit.drain(..) {
                        visit(f);
                    }
                    visit(facts);
                }
                off += frame.len;
                if off >= len {
                    return stopped(off, &unit, unit_start, None);
                }
            }
            Ok(None) => return stopped(off, &unit, unit_start, None),
            Err(e) => return stopped(off, &unit, unit_start, Some(e)),
        }
    }
}

/// The most payload bytes a resynchronisation search may checksum before it
/// gives up and calls the damage mid-log corruption.
const RESYNC_BUDGET: usize = 64 << 20;

enum Resync {
    Found(usize),
    NotFound,
    GaveUp,
}

/// Looks for a valid frame (valid *at its own position*: the CRC seed binds
/// it to its LSN) anywhere in `(from, to)`, with a payload of at most `max`
/// bytes.
fn resync(
    r: &mut FrameReader<'_>,
    sref: &SegRef,
    salt: u32,
    (from, to): (usize, usize),
    max: usize,
) -> Resync {
    let seg_len = r.seg.len();
    let mut budget = RESYNC_BUDGET;
    for q in from + 1..to {
        let mut head = [0u8; 5];
        if r.seg.copy_out(q, &mut head) < 5 {
            break;
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len < MIN_PAYLOAD || len > max || q + len + FRAME_OVERHEAD > seg_len {
            continue;
        }
        if EntryKind::from_tag(head[4]).is_none() {
            continue;
        }
        if budget < len {
            return Resync::GaveUp;
        }
        budget -= len;
        if let Ok(Some(_)) = r.decode(q, header::seed(salt, sref.lsn_of(q))) {
            return Resync::Found(q);
        }
    }
    Resync::NotFound
}

/// True if some 512-byte sector lying wholly inside `[from, to)` is all zero:
/// a sector write that never happened, which a crash explains.
fn has_zero_sector(r: &mut FrameReader<'_>, from: usize, to: usize) -> bool {
    let first = from.div_ceil(SECTOR) * SECTOR;
    // The sector holding the stop itself, zero from the stop to its end: it
    // reverted to what was synced (the stop is a sync point) while later
    // sectors were written. The valid frame may start right at its end.
    if first > from && first <= to && r.with_bytes(from, first, |b| last_nonzero(b).is_none()) {
        return true;
    }
    // The same sector written back while a frame was being copied into it
    // and never again: it ends in a run of zeros (at least 32 bytes, longer
    // than any run inside a frame's fixed fields) after the stop.
    const TORN_RUN: usize = 32;
    if first >= from + TORN_RUN && first <= to {
        let tail_zero = r.with_bytes(from, first, |b| match last_nonzero(b) {
            Some(i) => b.len() - i > TORN_RUN,
            None => true,
        });
        if tail_zero {
            return true;
        }
    }
    let mut s = first;
    while s + SECTOR <= to {
        if r.with_bytes(s, s + SECTOR, |b| last_nonzero(b).is_none()) {
            return true;
        }
        s += SECTOR;
    }
    false
}

/// Classifies what follows the end of the valid frames in the last segment.
/// `None`: a clean end (only zeros follow). The search for a valid frame
/// after the stop considers payloads of up to `max_payload` bytes.
fn classify_tail(
    r: &mut FrameReader<'_>,
    sref: &SegRef,
    salt: u32,
    stop: usize,
    has_error: bool,
    max_payload: usize,
) -> (Option<ProblemClass>, usize) {
    let nz_end = r.nonzero_end(stop);
    if nz_end == stop && !has_error {
        return (None, nz_end);
    }
    let class = match resync(r, sref, salt, (stop, nz_end), max_payload) {
        Resync::NotFound => ProblemClass::TornTail,
        Resync::Found(q) if has_zero_sector(r, stop, q) => ProblemClass::TornTail,
        Resync::Found(_) | Resync::GaveUp => ProblemClass::MidLogCorruption,
    };
    (Some(class), nz_end.max(stop))
}

/// Nonzero data bytes of a discarded segment (for the report).
fn data_bytes(seg: &Segment, copy: bool, decoder: Decoder) -> u64 {
    let mut r = FrameReader {
        seg,
        copy,
        buf: Vec::new(),
        decoder,
    };
    (r.nonzero_end(DATA_START) - DATA_START) as u64
}

/// [`data_bytes`] of each mapped segment, counted on first use only.
struct DataBytes {
    memo: Vec<Option<u64>>,
    copy: bool,
    decoder: Decoder,
}

impl DataBytes {
    fn new(segments: usize, copy: bool, decoder: Decoder) -> Self {
        DataBytes {
            memo: vec![None; segments],
            copy,
            decoder,
        }
    }

    /// The data bytes of `seg`, the `j`th mapped segment.
    fn of(&mut self, j: usize, seg: &Segment) -> u64 {
        if let Some(Some(n)) = self.memo.get(j) {
            return *n;
        }
        let n = data_bytes(seg, self.copy, self.decoder);
        if let Some(slot) = self.memo.get_mut(j) {
            *slot = Some(n);
        }
        n
    }
}

/// True if the file at `path` holds only zeros (read without mapping it
/// for writing; small files are read, large ones mapped read-only).
fn file_is_empty(path: &Path) -> Result<bool> {
    let len = fs::metadata(path)
        .map_err(|e| Error::io("stat segment", path, e))?
        .len();
    if len < DATA_START as u64 {
        let bytes = crate::os::files::read_small(path, DATA_START)
            .map_err(|e| Error::io("read segment", path, e))?
            .unwrap_or_default();
        return Ok(last_nonzero(&bytes).is_none());
    }
    let seg = Segment::open(path, 0, false)?;
    let mut r = FrameReader {
        seg: &seg,
        copy: true,
        buf: Vec::new(),
        decoder: Decoder::default(),
    };
    Ok(r.nonzero_end(0) == 0)
}

/// How a recovery scan reads and judges the log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanOptions {
    /// Map the segments writable (a write open, which repairs afterwards).
    pub writable: bool,
    /// Copy each frame before validating it (a read-only open: another
    /// process may be writing the bytes at the end).
    pub copy: bool,
    /// A writer in another process holds the log open. The end of the last
    /// segment it is writing then moves during the scan: whatever stops the
    /// scan there is the writer's unpublished work, not a problem.
    pub live: bool,
    /// Frames at or past this LSN of the log with this instance id are not
    /// trusted (a log that failed a sync: only what a completed sync covered
    /// is believed). A record for another instance does not apply.
    pub limit: Option<(Uuid, u64)>,
    /// Let a helper thread scan sealed segments ahead (only without
    /// copying, with two or more of them, on a machine with two or more
    /// cores; the outcome is the sequential scan's either way).
    pub parallel: bool,
}

/// Scans the log in `dir`. Returns `Ok(None)` when the directory holds no
/// log.
///
/// The segments are taken in sequence order. A segment with a valid header
/// must start exactly where the previous one's frames end. A trailing
/// segment with a blank header was put into use by the writer before its
/// header was written (the header follows once the previous segment is
/// durable, see DESIGN.md, "Rotation"): it is adopted if its first frame
/// validates at the LSN where the previous segment ends (the CRC seed binds
/// a frame to its LSN), and is otherwise an unused or torn tail.
///
/// `decoder` reads the frames; `expect_max` is the largest payload the
/// opener's configuration allows. After damage, the search for a valid
/// frame further on considers payloads up to the largest of `expect_max`,
/// the default limit (16 MiB) and the largest frame already read: what the
/// log may hold, not the segment size, bounds each candidate's work.
///
/// Retention may delete the oldest segments while a read-only open lists
/// them: a segment that vanishes between the listing and its opening makes
/// the scan start again from a fresh listing.
pub(crate) fn recover(
    dir: &Path,
    decoder: Decoder,
    expect_max: u32,
    opts: ScanOptions,
) -> Result<Option<Recovered>> {
    let mut attempts = 0;
    loop {
        match recover_once(dir, decoder, expect_max, opts) {
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && attempts < 16 =>
            {
                attempts += 1;
            }
            other => return other,
        }
    }
}

fn recover_once(
    dir: &Path,
    decoder: Decoder,
    expect_max: u32,
    opts: ScanOptions,
) -> Result<Option<Recovered>> {
    let ScanOptions {
        writable,
        copy,
        live,
        limit,
        parallel,
    } = opts;
    let started = Instant::now();
    let listing = list(dir)?;
    // The first file too short to hold a header page, if any: it is never
    // mapped, and it and everything after it are not part of the log.
    let mut short: Option<(usize, u64)> = None;
    for (k, (_, path)) in listing.segments.iter().enumerate() {
        let len = fs::metadata(path)
            .map_err(|e| Error::io("stat segment", path, e))?
            .len();
        if len < DATA_START as u64 {
            short = Some((k, len));
            break;
        }
    }
    let usable = short.map_or(listing.segments.len(), |(k, _)| k);
    // Opened (and their headers read) newest first: a writer seals headers
    // oldest first, so a header read later is never older than one read
    // before it, and a scan beside a live writer never sees a blank header
    // before a valid one that the writer wrote after it.
    let mut mapped = Vec::with_capacity(usable);
    for (seq, path) in listing.segments[..usable].iter().rev() {
        mapped.push(Arc::new(Segment::open(path, *seq, writable)?));
    }
    mapped.reverse();
    if let (Some((0, len)), true) = (short, mapped.is_empty()) {
        return Err(Error::SegmentHeader {
            segment: listing.segments[0].0,
            detail: format!(
                "file is {len} bytes, shorter than its header page; the first segment must be valid to identify the log"
            ),
        });
    }
    // The last file that holds anything: blank, empty segments after it
    // (prepared, never used) do not make it any less the last.
    // Each segment's data bytes are counted once: a prepared segment is
    // all zeros to read, and both this search and the handling of what
    // follows the kept segments ask.
    let mut data = DataBytes::new(mapped.len(), copy, decoder);
    let mut last_file = listing.segments.len().saturating_sub(1);
    while last_file > 0 {
        let empty = match mapped.get(last_file) {
            Some(seg) => matches!(seg.header(), HeaderState::Blank) && data.of(last_file, seg) == 0,
            None => file_is_empty(&listing.segments[last_file].1)?,
        };
        if !empty {
            break;
        }
        last_file -= 1;
    }
    let headers: Vec<HeaderState> = mapped.iter().map(|s| s.header().clone()).collect();
    // Segments from `n` on all have blank headers.
    let n = headers
        .iter()
        .rposition(|h| !matches!(h, HeaderState::Blank))
        .map_or(0, |i| i + 1);
    if n == 0 {
        if mapped.is_empty() {
            return Ok(None);
        }
        // Only blank segments: a log created but never initialised. That is
        // only true if they hold nothing; otherwise refuse to guess.
        for (j, seg) in mapped.iter().enumerate() {
            if data.of(j, seg) > 0 {
                return Err(Error::SegmentHeader {
                    segment: seg.seq(),
                    detail: "blank header, yet the segment holds data, and no segment identifies the log".into(),
                });
            }
        }
        return Ok(Some(Recovered {
            instance: Uuid::nil(),
            segments: Vec::new(),
            adopted: 0,
            end_lsn: 0,
            report: RecoveryReport::default(),
            index: RunIndex::default(),
            open_txns: OpenTxns::default(),
            truncations: Truncations::default(),
            limited_at: None,
            zero_range: None,
            last_short: false,
            discard: Vec::new(),
            blanks: listing.segments,
            temps: listing.temps,
        }));
    }
    let first = match &headers[0] {
        HeaderState::Valid(h) if h.seq.get() == mapped[0].seq() => *h,
        HeaderState::Valid(h) => {
            return Err(Error::SegmentHeader {
                segment: mapped[0].seq(),
                detail: format!(
                    "header names segment {} but the file is named for {}",
                    h.seq.get(),
                    mapped[0].seq()
                ),
            })
        }
        HeaderState::Blank => {
            return Err(Error::SegmentHeader {
                segment: mapped[0].seq(),
                detail: "blank header on the first segment, which later segments follow".into(),
            })
        }
        HeaderState::Invalid(detail) => {
            return Err(Error::SegmentHeader {
                segment: mapped[0].seq(),
                detail: format!("{detail}; the first segment must be valid to identify the log"),
            })
        }
    };
    let instance = first.instance();
    let limit = match limit {
        Some((id, lsn)) if id == instance => lsn,
        _ => u64::MAX,
    };
    let mut limited_at = None;
    let salt = header::salt(&instance);
    let mut tally = Tally::new();
    let mut kept: Vec<SegRef> = Vec::with_capacity(mapped.len());
    // The transaction counts when the scan reached each kept segment.
    let mut at_start: Vec<TxnCounts> = Vec::with_capacity(mapped.len());
    let mut adopted = 0;
    let mut expected_lsn = first.first_lsn.get();
    let mut problem: Option<Problem> = None;
    let mut zero_range = None;
    // The (segment, offset) whose tail `classify_tail` found all zero.
    let mut tail_checked: Option<(u64, usize)> = None;
    let mut discarded_bytes = 0u64;
    // Index of the first segment not kept.
    let mut stop_at = mapped.len();
    // The size the segment being scanned was created with, if its file is
    // now shorter.
    let mut truncated: Option<u64> = None;
    // Segments with valid headers, from the first, and the LSN each header
    // names: a helper thread may scan these ahead of the loop below, each
    // from the LSN its header gives (DESIGN.md §8, "Parallel recovery").
    // The loop uses such a scan only where it expects that same LSN, and
    // applies the frames' facts in order, so the outcome is the sequential
    // scan's. Only where nothing can write the bytes (no copying).
    let ahead_lsn: Vec<u64> = headers
        .iter()
        .map_while(|h| match h {
            HeaderState::Valid(h) => Some(h.first_lsn.get()),
            _ => None,
        })
        .collect();
    let parallel = parallel
        && !copy
        && ahead_lsn.len() >= 2
        && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    let jobs = if parallel { ahead_lsn.len() } else { 0 };
    let pool = Ordered::<SegScan>::new(jobs, SCAN_WINDOW);
    let scan_ahead = |j: usize| {
        let sref = SegRef {
            seg: Arc::clone(&mapped[j]),
            first_lsn: ahead_lsn[j],
            txn_open: false,
        };
        let mut reader = FrameReader {
            seg: &mapped[j],
            copy: false,
            buf: Vec::new(),
            decoder,
        };
        let mut facts = Summary::default();
        let end = scan_frames(&mut reader, &sref, salt, limit, |f| facts.push(f));
        SegScan {
            first_lsn: sref.first_lsn,
            facts,
            end,
        }
    };
    std::thread::scope(|scope| {
        // Stops the pool however the loop ends (a helper waiting for room
        // would otherwise keep the scope from joining it).
        let _stop = pool.stop_on_drop();
        if jobs > 0 {
            // Without the helper (it could not start), the loop scans alone.
            let _ = std::thread::Builder::new()
                .name("wal-recovery".into())
                .spawn_scoped(scope, || pool.work(&scan_ahead));
        }
        let mut i = 0;
        while i < mapped.len() {
            let seg = &mapped[i];
            let first_lsn = match &headers[i] {
                HeaderState::Valid(h) => {
                    match check_header(h, seg, &instance, expected_lsn, i, &mapped) {
                        None => {
                            // A file shorter than its header says: its
                            // frames still count. Nothing is lost if they
                            // end where the next segment starts (checked
                            // below); at the end of the log, a cut may
                            // have taken frames.
                            let size = h.segment_size.get();
                            truncated = ((seg.len() as u64) < size).then_some(size);
                            expected_lsn
                        }
                        Some(detail) => {
                            problem = Some(header_problem(seg, expected_lsn, detail));
                            stop_at = i;
                            break;
                        }
                    }
                }
                HeaderState::Blank if i >= n => {
                    // Reached only through a successful probe below.
                    adopted += 1;
                    expected_lsn
                }
                HeaderState::Blank => {
                    let detail = "blank header in the middle of the log".to_string();
                    problem = Some(header_problem(seg, expected_lsn, detail));
                    stop_at = i;
                    break;
                }
                HeaderState::Invalid(d) => {
                    problem = Some(header_problem(seg, expected_lsn, d.clone()));
                    stop_at = i;
                    break;
                }
            };
            if matches!(headers[i], HeaderState::Valid(_)) {
                seg.set_sealed();
            }
            let sref = SegRef {
                seg: Arc::clone(seg),
                first_lsn,
                txn_open: !tally.open.is_empty(),
            };
            let counts_at_start = tally.counts;
            let mut reader = FrameReader {
                seg,
                copy,
                buf: Vec::new(),
                decoder,
            };
            let taken = if i < jobs {
                pool.take(i, &scan_ahead)
            } else {
                Taken::Yours
            };
            let end = match taken {
                Taken::Done(scan) if scan.first_lsn == first_lsn => {
                    #[cfg(all(test, not(loom)))]
                    tests::HELPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tally.apply(scan.facts);
                    scan.end
                }
                _ => scan_frames(&mut reader, &sref, salt, limit, |f| tally.visit(f)),
            };
            let limited = end.error.is_none() && sref.lsn_of(end.stop) >= limit;
            let end_here = sref.lsn_of(end.end);
            // Frames that stop inside a unit end the log at the unit's
            // start, like damage: the scan never continues past them.
            let clean = end.error.is_none() && !end.open_unit;
            kept.push(sref.clone());
            at_start.push(counts_at_start);
            expected_lsn = end_here;
            // Where the next segment, if it continues the log, says it starts.
            // A next segment whose header is damaged or belongs elsewhere is
            // reported there (`Some(end_here)` lets the loop reach it), unless
            // this segment already ended in damage.
            let next_first = match headers.get(i + 1) {
                // Nothing past the trusted end continues the log.
                _ if limited => None,
                Some(HeaderState::Valid(h)) => {
                    let next = &mapped[i + 1];
                    match check_header(h, next, &instance, h.first_lsn.get(), i + 1, &mapped) {
                        Some(_) => Some(end_here),
                        None => Some(h.first_lsn.get()),
                    }
                }
                Some(HeaderState::Invalid(_)) => Some(end_here),
                Some(HeaderState::Blank) if i + 1 < n => Some(end_here),
                Some(HeaderState::Blank)
                    if clean
                        && mapped[i + 1].seq() == seg.seq() + 1
                        && mapped[i + 1].len() as u64 >= MIN_SEGMENT_SIZE
                        && mapped[i + 1].len() % 4096 == 0 =>
                {
                    // An unsealed successor continues the log only if it is the
                    // next segment and its first frame was written for exactly
                    // this LSN.
                    let next = &mapped[i + 1];
                    let mut probe = FrameReader {
                        seg: next,
                        copy,
                        buf: Vec::new(),
                        decoder,
                    };
                    match probe.decode(DATA_START, header::seed(salt, end_here)) {
                        Ok(Some(_)) => Some(end_here),
                        _ => None,
                    }
                }
                _ => None,
            };
            match next_first {
                Some(f) if f == end_here && clean => {
                    i += 1;
                    continue;
                }
                None if limited => {
                    // A log that failed a sync: what the page cache holds past
                    // the last completed sync may never have reached the disk.
                    // It is dropped like a torn tail.
                    limited_at = Some(end.end);
                    let nz_end = reader.nonzero_end(end.end);
                    if nz_end > end.end {
                        zero_range = Some((end.end, nz_end));
                        discarded_bytes += (nz_end - end.end) as u64;
                    }
                    problem = Some(problem_at(
                    &sref,
                    end.end,
                    ProblemClass::TornTail,
                    None,
                    "a sync of this log failed: bytes past the last completed sync are not trusted",
                ));
                }
                None if live => {
                    // A writer in another process is appending here: the scan
                    // stopped at its moving end. Nothing is judged or repaired.
                }
                None => {
                    // The last segment of the log: what follows its frames is
                    // either nothing, or a tail a crash can leave, or damage.
                    let max_payload =
                        (expect_max.max(DEFAULT_MAX_PAYLOAD) as usize).max(tally.largest);
                    let (class, nz_end) =
                        classify_tail(&mut reader, &sref, salt, end.stop, !clean, max_payload);
                    tail_checked = Some((seg.seq(), end.end));
                    if nz_end > end.end {
                        zero_range = Some((end.end, nz_end));
                        discarded_bytes += (nz_end - end.end) as u64;
                    }
                    if let Some(class) = class {
                        let fallback = if end.open_unit {
                            "a unit of frames (a batch) without its last frame: none of it is kept"
                        } else {
                            "bytes after the last valid frame"
                        };
                        problem = Some(problem_at(&sref, end.end, class, end.error, fallback));
                    } else if let Some(size) = truncated {
                        // Cut short at a frame boundary: frames may have been lost
                        // with the cut, and nothing valid follows.
                        problem = Some(problem_at(
                            &sref,
                            end.end,
                            ProblemClass::TornTail,
                            None,
                            &format!("file truncated to {} of its {size} bytes", seg.len()),
                        ));
                    }
                }
                Some(f) => {
                    let nz_end = reader.nonzero_end(end.end);
                    if nz_end > end.end {
                        zero_range = Some((end.end, nz_end));
                        discarded_bytes += (nz_end - end.end) as u64;
                    }
                    let detail = if end.open_unit && end.error.is_none() {
                        "the segment's frames end inside a unit (a batch) whose last frame is missing".to_string()
                    } else if end.error.is_none() && f != u64::MAX {
                        format!(
                            "frames end at LSN {end_here} but the next segment starts at LSN {f}"
                        )
                    } else {
                        "a segment before the last is damaged".to_string()
                    };
                    problem = Some(problem_at(
                        &sref,
                        end.end,
                        ProblemClass::MidLogCorruption,
                        end.error,
                        &detail,
                    ));
                }
            }
            stop_at = i + 1;
            break;
        }
    });
    if let (None, Some(last), false) = (zero_range, kept.last(), live) {
        // The scan stopped at a later segment's header: bytes after the last
        // kept segment's frames must still be zeroed before appending there.
        // (Unless that is where `classify_tail` just found only zeros.)
        let end = last.offset_of(expected_lsn).min(last.seg.len());
        if tail_checked != Some((last.seg.seq(), end)) {
            let mut reader = FrameReader {
                seg: &last.seg,
                copy,
                buf: Vec::new(),
                decoder,
            };
            let nz_end = reader.nonzero_end(end);
            if nz_end > end {
                zero_range = Some((end, nz_end));
                discarded_bytes += (nz_end - end) as u64;
            }
        }
    }
    if kept.is_empty() {
        // The first segment failed its checks: it identifies the log, so
        // there is no prefix to keep. Refuse rather than start over.
        let detail = problem.map_or_else(|| "unusable".to_string(), |p| p.detail);
        return Err(Error::SegmentHeader {
            segment: mapped[0].seq(),
            detail: format!("{detail}; the first segment must be valid to identify the log"),
        });
    }
    // What lies after the kept segments: unused blank segments (prepared,
    // empty) may be reused; anything holding data is discarded.
    let mut discard = Vec::new();
    if let Some((k, len)) = short {
        if problem.is_none() {
            let seq = listing.segments[k].0;
            // A file cut inside its header page: if nothing follows it, a
            // torn tail (it held no frame that could be kept); otherwise the
            // log has a hole.
            let class = if k >= last_file {
                ProblemClass::TornTail
            } else {
                ProblemClass::MidLogCorruption
            };
            problem = Some(Problem {
                class,
                segment: seq,
                file: header::file_name(seq),
                offset: 0,
                lsn: expected_lsn,
                detail: format!("file is {len} bytes, shorter than its header page"),
            });
        }
        discard.extend(listing.segments[k..].iter().map(|(_, p)| p.clone()));
    }
    let mut blanks = Vec::new();
    let mut next_seq = kept.last().map_or(0, |k| k.seg.seq() + 1);
    for (j, seg) in mapped.iter().enumerate().skip(stop_at) {
        let bytes = data.of(j, seg);
        let blank = matches!(headers[j], HeaderState::Blank);
        let expected = next_seq;
        let in_sequence = seg.seq() == expected;
        next_seq = seg.seq() + 1;
        if blank && bytes == 0 && in_sequence {
            blanks.push((seg.seq(), seg.path().to_path_buf()));
            continue;
        }
        if live && blank && problem.is_none() {
            // The live writer rotated into it after the scan passed: not
            // part of this view, and not a problem.
            continue;
        }
        if blank && bytes == 0 && problem.is_none() {
            // A prepared segment after a hole: the segment that held the
            // end of the log is gone. A crash cannot do that.
            problem = Some(Problem {
                class: ProblemClass::MidLogCorruption,
                segment: seg.seq(),
                file: header::file_name(seg.seq()),
                offset: 0,
                lsn: expected_lsn,
                detail: format!(
                    "segment {} is missing (gap in the sequence)",
                    header::file_name(expected)
                ),
            });
        }
        if problem.is_none() {
            // Frames in an unsealed segment that does not continue the log:
            // a rotation whose predecessor's tail was lost in a crash.
            problem = Some(problem_at(
                &SegRef {
                    seg: Arc::clone(seg),
                    first_lsn: expected_lsn,
                    txn_open: false,
                },
                DATA_START,
                ProblemClass::TornTail,
                None,
                "frames in an unsealed segment that does not continue the log",
            ));
        }
        discarded_bytes += bytes;
        discard.push(seg.path().to_path_buf());
    }
    if !discard.is_empty() {
        // Blank segments after a discarded one go with it.
        discard.extend(blanks.drain(..).map(|(_, p)| p));
    }
    let end_lsn = expected_lsn;
    // A truncation may have reopened transactions whose end it deleted, or
    // deleted counted ones: the open set, the counts and the boundaries'
    // flags are recomputed from the live log, from the last clean boundary
    // before the lowest truncation.
    let mut view = Snapshot {
        segs: kept,
        start: first.first_lsn.get(),
        end: end_lsn,
        salt: header::salt(&instance),
        decoder,
        dead: tally.truncations.visible(end_lsn),
    };
    let (open_txns, counts) = settle(&mut tally, &at_start, &mut view)?;
    let kept = view.segs;
    let report = RecoveryReport {
        segments: kept.len(),
        entries: tally.entries,
        committed_txns: counts.committed,
        aborted_txns: counts.aborted,
        incomplete_txns: counts.replaced + open_txns.len() as u64,
        first_lsn: first.first_lsn.get(),
        last_lsn: tally.last_lsn,
        end_lsn,
        bytes_discarded: discarded_bytes,
        problem,
        duration: started.elapsed(),
    };
    Ok(Some(Recovered {
        instance,
        segments: kept,
        adopted,
        end_lsn,
        report,
        index: tally.index,
        open_txns,
        truncations: tally.truncations,
        limited_at,
        zero_range,
        last_short: truncated.is_some(),
        discard,
        blanks,
        temps: listing.temps,
    }))
}

/// How far the device itself holds the valid frames of `segs` from `from`
/// (an entry's start) on, up to `to`: after a sync failed, the page cache
/// may show bytes the device never got, so the poisoned-log rule's limit
/// must come from the device. The frames are read around the page cache
/// (`O_DIRECT`) and walked as a scan walks them (seeds, the unit rule);
/// the walk stops at the first that does not validate, and at a segment
/// whose header is not known durable. Every valid frame the device holds
/// is, byte for byte, what the page cache holds there (pages are written
/// from the cache, and frames are never rewritten), so the page cache may
/// be trusted below the result. `None` if the device cannot be read that
/// way (no `O_DIRECT`, or a read failed): then nothing past `from` is
/// known.
pub(crate) fn disk_valid_end(segs: &[SegRef], salt: u32, from: u64, to: u64) -> Option<u64> {
    let mut i = segs
        .partition_point(|s| s.first_lsn <= from)
        .checked_sub(1)?;
    let mut at = from;
    while at < to {
        let s = segs.get(i)?;
        let seg_end = segs.get(i + 1).map_or(to, |n| n.first_lsn).min(to);
        if !s.seg.is_sealed() {
            return Some(at);
        }
        let len = usize::try_from(seg_end - at).ok()?;
        let bytes = segment::read_direct(s.seg.path(), s.offset_of(at) as u64, len).ok()?;
        let mut pos = 0usize;
        let mut unit_start = None;
        loop {
            let lsn = at + pos as u64;
            match crate::format::frame::READ_DECODER.decode(&bytes, pos, header::seed(salt, lsn)) {
                Ok(Some(frame)) => {
                    if frame.continues {
                        unit_start.get_or_insert(lsn);
                    } else {
                        unit_start = None;
                    }
                    pos += frame.len;
                }
                _ => return Some(unit_start.unwrap_or(lsn)),
            }
            if pos >= bytes.len() {
                break;
            }
        }
        if let Some(u) = unit_start {
            return Some(u);
        }
        if at + (pos as u64) < seg_end {
            return Some(at + pos as u64);
        }
        at = seg_end;
        i += 1;
    }
    Some(to.min(at))
}

/// What a scan's accounting says of the live log once its truncations are
/// applied: the transactions open at the end and what ended or was
/// replaced, counted as replay counts the live entries (a truncation may
/// delete a transaction's end, reopening it, or a whole counted one).
/// `at_start[i]` is the count when the scan reached segment `i` of
/// `snap`. The boundaries' "transaction open" flags are updated in
/// `snap.segs`.
fn settle(
    tally: &mut Tally,
    at_start: &[TxnCounts],
    snap: &mut Snapshot,
) -> Result<(OpenTxns, TxnCounts)> {
    let open = std::mem::take(&mut tally.open);
    let Some(from) = tally.truncations.lowest_from() else {
        return Ok((open, tally.counts));
    };
    let Reopened {
        open,
        flags,
        first_seg,
        counts: recounted,
    } = crate::read::runs::reopened_txns(snap, from)?;
    for s in snap.segs.iter_mut() {
        if let Ok(i) = flags.binary_search_by_key(&s.first_lsn, |f| f.0) {
            s.txn_open = flags[i].1;
        }
    }
    let before = at_start.get(first_seg).copied().unwrap_or_default();
    Ok((open, before + recounted))
}

/// The report and run index of a published view (a read-only open beside
/// a writer of this process): what a scan would find, without scanning a
/// moving tail.
pub(crate) fn survey(snap: &Snapshot) -> Result<(RecoveryReport, RunIndex)> {
    let started = Instant::now();
    let mut tally = Tally::new();
    let mut at_start = Vec::with_capacity(snap.segs.len());
    // Every frame, deleted ones included, as a scan of the files visits
    // them: the report counts the same either way.
    for e in snap.iter_all() {
        let e = e?;
        while at_start.len() < snap.segs.len() && snap.segs[at_start.len()].first_lsn <= e.lsn {
            at_start.push(tally.counts);
        }
        tally.visit(Facts::of(e.lsn, e.len, &e.entry));
    }
    at_start.resize(snap.segs.len(), tally.counts);
    let mut view = Snapshot {
        segs: snap.segs.clone(),
        start: snap.start,
        end: snap.end,
        salt: snap.salt,
        decoder: snap.decoder,
        dead: Arc::clone(&snap.dead),
    };
    let (open, counts) = settle(&mut tally, &at_start, &mut view)?;
    let report = RecoveryReport {
        segments: snap.segs.len(),
        entries: tally.entries,
        committed_txns: counts.committed,
        aborted_txns: counts.aborted,
        incomplete_txns: counts.replaced + open.len() as u64,
        first_lsn: snap.start,
        last_lsn: tally.last_lsn,
        end_lsn: snap.end,
        bytes_discarded: 0,
        problem: None,
        duration: started.elapsed(),
    };
    Ok((report, tally.index))
}

fn header_problem(seg: &Segment, lsn: u64, detail: String) -> Problem {
    Problem {
        class: ProblemClass::MidLogCorruption,
        segment: seg.seq(),
        file: header::file_name(seg.seq()),
        offset: 0,
        lsn,
        detail,
    }
}

fn problem_at(
    sref: &SegRef,
    off: usize,
    class: ProblemClass,
    error: Option<Error>,
    fallback: &str,
) -> Problem {
    let seq = sref.seg.seq();
    Problem {
        class,
        segment: seq,
        file: header::file_name(seq),
        offset: off as u64,
        lsn: sref.lsn_of(off),
        detail: match error {
            Some(e) => e.to_string(),
            None => format!("{}: {fallback}", Location::in_segment(seq, off as u64)),
        },
    }
}

fn check_header(
    h: &Header,
    seg: &Segment,
    instance: &Uuid,
    expected_lsn: u64,
    i: usize,
    all: &[Arc<Segment>],
) -> Option<String> {
    if h.instance() != *instance {
        return Some(format!(
            "belongs to another log (instance {}, this log is {instance})",
            h.instance()
        ));
    }
    if h.seq.get() != seg.seq() {
        return Some(format!(
            "header names segment {} but the file is named for {}",
            h.seq.get(),
            seg.seq()
        ));
    }
    if i > 0 && all[i - 1].seq() + 1 != seg.seq() {
        return Some(format!(
            "segment {} is missing (gap in the sequence)",
            header::file_name(all[i - 1].seq() + 1)
        ));
    }
    let size = h.segment_size.get();
    if size < MIN_SEGMENT_SIZE || size % 4096 != 0 {
        return Some(format!("header gives an impossible segment size {size}"));
    }
    // A file cut short or grown (a filesystem that appended to it) is
    // mapped at most to its created size: its frames still count, and
    // whether the cut lost any is told by where they end (a segment that
    // follows must start there; at the end of the log, a torn tail).
    if h.first_lsn.get() != expected_lsn {
        return Some(format!(
            "starts at LSN {} but the previous segment ends at LSN {expected_lsn}",
            h.first_lsn.get()
        ));
    }
    None
}

/// Applies a recovery mode to a report: an error if the mode refuses it.
pub(crate) fn enforce(mode: RecoveryMode, report: &RecoveryReport) -> Result<()> {
    if let (RecoveryMode::AbsoluteConsistency, Some(p)) = (mode, &report.problem) {
        if p.class == ProblemClass::MidLogCorruption {
            return Err(Error::Corrupt {
                at: p.location(),
                class: p.class,
                detail: p.detail.clone(),
            });
        }
    }
    Ok(())
}

/// The name a discarded segment is moved to.
pub(crate) fn discarded_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".discarded-{}", header::now_micros()));
    path.with_file_name(name)
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! The parallel scan (a helper thread scanning sealed segments ahead)
    //! against the sequential one, on the same logs, damaged in seeded
    //! ways: every part of the outcome must be the same.

    use super::*;
    use crate::format::entry::{BorrowedEntry, Op, WalEntry};
    use crate::log::config::Config;
    use crate::log::wal::Wal;
    use crate::SyncMode;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Segments whose scan a recovery took from its helper.
    pub(super) static HELPED: AtomicUsize = AtomicUsize::new(0);

    /// A small seeded generator (SplitMix64): the cases are reproducible.
    struct Seeded(u64);

    impl Seeded {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// A log of many 16 KiB segments holding transactions (some spanning
    /// segments, some never ended), plain writes of interleaved runs,
    /// checkpoints and truncations.
    fn build(dir: &Path, rng: &mut Seeded) {
        let config = Config::default()
            .segment_size(16 << 10)
            .sync_mode(SyncMode::Async { interval_ms: 1000 });
        let wal = Wal::open(dir, config).expect("open");
        let runs: Vec<RunId> = (1..=5u8).map(|b| RunId::from_bytes([b; 16])).collect();
        let mut lsns = Vec::new();
        let value = vec![0xA5u8; 600];
        for step in 0..400u64 {
            let run = runs[rng.below(runs.len() as u64) as usize];
            let len = 1 + rng.below(value.len() as u64) as usize;
            match rng.below(10) {
                0..=3 => {
                    // A burst of plain writes of one run: one stretch.
                    for i in 0..1 + rng.below(12) {
                        let lsn = wal
                            .append_entry(BorrowedEntry::Write {
                                run_id: run,
                                key: b"key",
                                value: &value[..len / (1 + i as usize)],
                                version: step,
                            })
                            .map(|p| p.lsn)
                            .expect("write");
                        lsns.push(lsn);
                    }
                }
                4..=5 => {
                    let ops = [
                        Op::Write {
                            key: b"a",
                            value: &value[..len],
                            version: step,
                        },
                        Op::Delete {
                            key: b"b",
                            version: step,
                        },
                    ];
                    let pos = wal.append_txn(run, step, &ops).expect("txn");
                    lsns.push(pos.begin);
                }
                6 => {
                    // Begun here, ended (or not) by a later step.
                    let lsn = wal
                        .append(&WalEntry::BeginTxn {
                            txn_id: step % 3,
                            run_id: run,
                            timestamp: 0,
                        })
                        .map(|p| p.lsn)
                        .expect("begin");
                    lsns.push(lsn);
                }
                7 => {
                    let end = if rng.below(2) == 0 {
                        WalEntry::CommitTxn {
                            txn_id: step % 3,
                            run_id: run,
                        }
                    } else {
                        WalEntry::AbortTxn {
                            txn_id: step % 3,
                            run_id: run,
                        }
                    };
                    lsns.push(wal.append(&end).map(|p| p.lsn).expect("end"));
                }
                8 => {
                    let lsn = wal
                        .append(&WalEntry::Checkpoint {
                            snapshot_id: Uuid::from_u128(u128::from(step)),
                            version: step,
                            active_runs: runs[..2].to_vec(),
                        })
                        .map(|p| p.lsn)
                        .expect("checkpoint");
                    lsns.push(lsn);
                }
                _ => {
                    if let Some(back) = lsns.len().checked_sub(1 + rng.below(6) as usize) {
                        // A dead LSN (behind an earlier truncation) is refused.
                        let _ = wal.truncate_from(lsns[back]);
                    }
                }
            }
        }
        wal.close().expect("close");
    }

    /// Damages one of the log's files the way a crash or a bad disk may.
    fn damage(dir: &Path, rng: &mut Seeded) -> String {
        let listing = list(dir).expect("list");
        let segs = &listing.segments;
        let k = rng.below(segs.len() as u64) as usize;
        let path = &segs[k].1;
        let mut bytes = fs::read(path).expect("read");
        let what = rng.below(6);
        let at = DATA_START + rng.below((bytes.len() - DATA_START) as u64 / 4) as usize;
        match what {
            0 => return "none".into(),
            1 => bytes[at] ^= 1 << rng.below(8),
            2 => bytes[at..at + 64].fill(0),
            3 => bytes.truncate(at),
            4 => bytes[..64].fill(0xEE),
            _ => {
                fs::remove_file(path).expect("remove");
                return format!("removed segment {k}");
            }
        }
        fs::write(path, &bytes).expect("write");
        format!("damage {what} at {at} of segment {k}")
    }

    /// Everything a recovery decides, as text.
    fn outcome(dir: &Path, parallel: bool, limit: Option<(Uuid, u64)>) -> String {
        let opts = ScanOptions {
            writable: false,
            copy: false,
            live: false,
            limit,
            parallel,
        };
        match recover(dir, Decoder::default(), DEFAULT_MAX_PAYLOAD, opts) {
            Err(e) => format!("error: {e}"),
            Ok(None) => "no log".into(),
            Ok(Some(r)) => {
                let report = RecoveryReport {
                    duration: Duration::ZERO,
                    ..r.report.clone()
                };
                let segs: Vec<_> = r
                    .segments
                    .iter()
                    .map(|s| (s.seg.seq(), s.first_lsn, s.txn_open))
                    .collect();
                format!(
                    "{report:?}\nsegments {segs:?} adopted {} end {}\nindex {:?}\nopen {:?}\ntruncations {:?}\nlimited {:?} zero {:?}\ndiscard {:?} blanks {:?}",
                    r.adopted,
                    r.end_lsn,
                    r.index.canonical(),
                    r.open_txns.canonical(),
                    r.truncations,
                    r.limited_at,
                    r.zero_range,
                    r.discard,
                    r.blanks,
                )
            }
        }
    }

    #[test]
    fn parallel_recovery_decides_what_sequential_recovery_decides() {
        let helped_before = HELPED.load(Ordering::Relaxed);
        for seed in 0..24u64 {
            let mut rng = Seeded(seed);
            let tmp = tempfile::tempdir().expect("tempdir");
            let dir = tmp.path().join("log");
            build(&dir, &mut rng);
            assert!(
                list(&dir).expect("list").segments.len() >= 4,
                "seed {seed}: a multi-segment log"
            );
            let what = damage(&dir, &mut rng);
            let sequential = outcome(&dir, false, None);
            let parallel = outcome(&dir, true, None);
            assert_eq!(parallel, sequential, "seed {seed}, {what}");
            // A log that failed a sync: nothing past a (seeded) LSN is
            // trusted, whichever thread scans the segment holding it.
            let opts = ScanOptions {
                writable: false,
                copy: false,
                live: false,
                limit: None,
                parallel: false,
            };
            if let Ok(Some(r)) = recover(&dir, Decoder::default(), DEFAULT_MAX_PAYLOAD, opts) {
                let limit = Some((r.instance, rng.below(r.end_lsn + 1)));
                let sequential = outcome(&dir, false, limit);
                let parallel = outcome(&dir, true, limit);
                assert_eq!(parallel, sequential, "seed {seed}, {what}, limit {limit:?}");
            }
        }
        if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
            assert!(
                HELPED.load(Ordering::Relaxed) > helped_before,
                "the helper scanned no segment the loop used"
            );
        }
    }
}
