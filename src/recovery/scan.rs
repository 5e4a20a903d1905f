//! Scanning a segment's frames: reading them in place or from a private
//! copy, the accounting of what they hold, and where and why the scan
//! stopped (DESIGN.md §7, step 4; the unit rule).

use std::fs;
use std::path::Path;

use crate::error::{Error, Location, Result};
use crate::format::entry::{EntryKind, RunId};
use crate::format::frame::{Ahead, Decoder, EntryRef, Frame, FRAME_OVERHEAD, MIN_PAYLOAD};
use crate::format::header::{self, DATA_START};
use crate::os::segment::Segment;
use crate::read::dead::Truncations;
use crate::read::runs::{OpenTxns, RunIndex, TxnCounts};
use crate::read::snapshot::SegRef;

/// Reads frames from a segment, either straight from the map (when nothing
/// can write it: the caller holds the write lock) or by first copying each
/// frame into a private buffer (a read-only open, while another process may
/// be appending).
pub(crate) struct FrameReader<'a> {
    pub(crate) seg: &'a Segment,
    pub(crate) copy: bool,
    pub(crate) buf: Vec<u8>,
    pub(crate) decoder: Decoder,
}

impl<'a> FrameReader<'a> {
    /// A reader of `seg`: in place, or (`copy`) through a private copy.
    pub(crate) fn new(seg: &'a Segment, copy: bool, decoder: Decoder) -> Self {
        FrameReader {
            seg,
            copy,
            buf: Vec::new(),
            decoder,
        }
    }

    pub(crate) fn decode(&mut self, off: usize, seed: u32) -> Result<Option<Frame<'_>>> {
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
    pub(crate) fn decode_scan(
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
    pub(crate) fn with_bytes<T>(
        &mut self,
        start: usize,
        end: usize,
        f: impl FnOnce(&[u8]) -> T,
    ) -> T {
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
    pub(crate) fn nonzero_end(&mut self, from: usize) -> usize {
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
pub(crate) fn last_nonzero(b: &[u8]) -> Option<usize> {
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
pub(crate) struct Tally {
    pub(crate) entries: u64,
    pub(crate) last_lsn: Option<u64>,
    pub(crate) open: OpenTxns,
    /// Transactions ended or replaced, as replay counts them.
    pub(crate) counts: TxnCounts,
    pub(crate) index: RunIndex,
    /// The largest payload of a valid frame so far.
    pub(crate) largest: usize,
    pub(crate) truncations: Truncations,
}

impl Tally {
    pub(crate) fn new() -> Tally {
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

    pub(crate) fn visit(&mut self, f: Facts) {
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
    pub(crate) fn apply(&mut self, summary: Summary) {
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
pub(crate) struct Facts {
    pub(crate) lsn: u64,
    /// The frame's length (payload + FRAME_OVERHEAD).
    pub(crate) len: usize,
    pub(crate) kind: EntryKind,
    pub(crate) run: Option<RunId>,
    pub(crate) txn_id: Option<u64>,
    pub(crate) truncate_from: Option<u64>,
}

impl Facts {
    #[inline]
    pub(crate) fn of(lsn: u64, len: usize, e: &EntryRef<'_>) -> Facts {
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
pub(crate) struct SegScan {
    /// The LSN the scan took the segment to start at (its header's).
    pub(crate) first_lsn: u64,
    pub(crate) facts: Summary,
    pub(crate) end: ScanEnd,
}

/// A segment's [`Facts`], in order, with each stretch of consecutive plain
/// entries of one run (no transaction boundary, no truncation) folded
/// into one record: its effect on a [`Tally`] is that of its entries one
/// by one (a run's stretch in the index grows the same way), at a fraction
/// of the memory.
#[derive(Default)]
pub(crate) struct Summary {
    pub(crate) folded: Vec<Fact>,
}

pub(crate) enum Fact {
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
    pub(crate) fn push(&mut self, f: Facts) {
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
pub(crate) const SCAN_WINDOW: usize = 2;

/// How a segment's frame scan ended.
pub(crate) struct ScanEnd {
    /// Where the valid log ends in this segment: just past the last frame
    /// that ends a unit (a frame of a batch counts only once the batch's
    /// last frame is there).
    pub(crate) end: usize,
    /// Just past the last frame that validated: `end`, unless the frames
    /// stop inside a unit (`open_unit`).
    pub(crate) stop: usize,
    /// The error that stopped it, or `None` for a zero length.
    pub(crate) error: Option<Error>,
    /// The frames stop inside a unit: its frames from `end` to `stop` are
    /// there, its last one is not (a crash while it was being written).
    pub(crate) open_unit: bool,
}

/// Scans the frames of one segment from its first, handing each valid
/// frame's [`Facts`] to `visit` once its unit is whole (a frame marked
/// [`CONTINUES`](crate::format::frame::CONTINUES) waits for the frame that ends
/// its unit: a unit is all or nothing, DESIGN.md §7), and says where and
/// why the scan stopped.
pub(crate) fn scan_frames(
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

/// Nonzero data bytes of a discarded segment (for the report).
pub(crate) fn data_bytes(seg: &Segment, copy: bool, decoder: Decoder) -> u64 {
    let mut r = FrameReader {
        seg,
        copy,
        buf: Vec::new(),
        decoder,
    };
    (r.nonzero_end(DATA_START) - DATA_START) as u64
}

/// [`data_bytes`] of each mapped segment, counted on first use only.
pub(crate) struct DataBytes {
    memo: Vec<std::cell::Cell<Option<u64>>>,
    copy: bool,
    decoder: Decoder,
}

impl DataBytes {
    pub(crate) fn new(segments: usize, copy: bool, decoder: Decoder) -> Self {
        DataBytes {
            memo: (0..segments).map(|_| std::cell::Cell::new(None)).collect(),
            copy,
            decoder,
        }
    }

    /// The data bytes of `seg`, the `j`th mapped segment (counted on first
    /// use only).
    pub(crate) fn of(&self, j: usize, seg: &Segment) -> u64 {
        if let Some(n) = self.memo.get(j).and_then(|c| c.get()) {
            return n;
        }
        let n = data_bytes(seg, self.copy, self.decoder);
        if let Some(slot) = self.memo.get(j) {
            slot.set(Some(n));
        }
        n
    }
}

/// True if the file at `path` holds only zeros (read without mapping it
/// for writing; small files are read, large ones mapped read-only).
pub(crate) fn file_is_empty(path: &Path) -> Result<bool> {
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
