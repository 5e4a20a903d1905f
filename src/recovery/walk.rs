//! The recovery walk: the steps of DESIGN.md §7 over the segment files of
//! a log, each a function named for its step.
//!
//! 1. [`map_files`]: list the segment files, map them (newest first), read
//!    their headers, and find the last file that holds anything.
//! 2. [`only_blank`]: a log whose every header is blank was never
//!    initialised (empty), unless a segment holds data.
//! 3. [`identify`]: the first segment's header identifies the log.
//! 4. [`Walk::enter`] a segment (its header continues the log), scan its
//!    frames (on this thread, or take a helper's scan: [`Walk::scan`]).
//! 5. [`Walk::next_first`]: does the next segment continue the log?
//! 6. [`Walk::conclude`]: the log ends in this segment: judge what stops it.
//!
//! Then [`Walk::zero_after_kept`], [`Walk::after_kept`] (what to discard,
//! what blank segments to reuse) and [`Walk::finish`] (the live log's
//! counts, the report).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use crate::error::{Error, ProblemClass, Result};
use crate::format::frame::{Decoder, DEFAULT_MAX_PAYLOAD};
use crate::format::header::{self, Header, HeaderState, DATA_START, MIN_SEGMENT_SIZE};
use crate::os::segment::Segment;
use crate::read::dead::Truncations;
use crate::read::runs::{OpenTxns, RunIndex, TxnCounts};
use crate::read::snapshot::{SegRef, Snapshot};
use crate::recovery::classify::*;
use crate::recovery::pool::{Ordered, Taken};
use crate::recovery::report::*;
use crate::recovery::scan::*;
use crate::recovery::settle::*;

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

/// Steps 1-2: the segment files of a log directory, mapped, with their
/// headers.
pub(super) struct Files {
    pub listing: Listing,
    /// The first file too short to hold a header page, if any (its index
    /// in the listing, its length): it is never mapped, and it and every
    /// file after it are not part of the log.
    pub short: Option<(usize, u64)>,
    /// The files before `short`, mapped, in sequence order.
    pub mapped: Vec<Arc<Segment>>,
    pub headers: Vec<HeaderState>,
    /// The last file that holds anything: blank, empty segments after it
    /// (prepared, never used) do not make it any less the last.
    pub last_file: usize,
    /// Segments from this index on all have blank headers.
    pub blank_from: usize,
    /// Each segment's nonzero data bytes, counted once.
    pub data: DataBytes,
}

/// Step 1: lists, maps and reads the headers of the segment files of
/// `dir`. Opened (and their headers read) newest first: a writer seals
/// headers oldest first, so a header read later is never older than one
/// read before it, and a scan beside a live writer never sees a blank
/// header before a valid one that the writer wrote after it.
pub(super) fn map_files(dir: &Path, writable: bool, copy: bool, decoder: Decoder) -> Result<Files> {
    let listing = list(dir)?;
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
    // A prepared segment is all zeros to read, and both this search and
    // the handling of what follows the kept segments ask.
    let data = DataBytes::new(mapped.len(), copy, decoder);
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
    let blank_from = headers
        .iter()
        .rposition(|h| !matches!(h, HeaderState::Blank))
        .map_or(0, |i| i + 1);
    Ok(Files {
        listing,
        short,
        mapped,
        headers,
        last_file,
        blank_from,
        data,
    })
}

/// Step 2: every header is blank. A log created but never initialised
/// (empty, `None` if there is no segment at all) only if the segments hold
/// nothing; otherwise refuse to guess.
pub(super) fn only_blank(files: Files) -> Result<Option<Recovered>> {
    if files.mapped.is_empty() {
        return Ok(None);
    }
    for (j, seg) in files.mapped.iter().enumerate() {
        if files.data.of(j, seg) > 0 {
            return Err(Error::SegmentHeader {
                segment: seg.seq(),
                detail:
                    "blank header, yet the segment holds data, and no segment identifies the log"
                        .into(),
            });
        }
    }
    Ok(Some(Recovered {
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
        blanks: files.listing.segments,
        temps: files.listing.temps,
    }))
}

/// Step 3: the first segment must have a valid header naming it: it
/// identifies the log.
pub(super) fn identify(files: &Files) -> Result<Header> {
    let first = &files.mapped[0];
    let refuse = |detail: String| Error::SegmentHeader {
        segment: first.seq(),
        detail,
    };
    match &files.headers[0] {
        HeaderState::Valid(h) if h.seq.get() == first.seq() => Ok(*h),
        HeaderState::Valid(h) => Err(refuse(format!(
            "header names segment {} but the file is named for {}",
            h.seq.get(),
            first.seq()
        ))),
        HeaderState::Blank => Err(refuse(
            "blank header on the first segment, which later segments follow".into(),
        )),
        HeaderState::Invalid(detail) => Err(refuse(format!(
            "{detail}; the first segment must be valid to identify the log"
        ))),
    }
}

/// What the walk reads with and how it judges, fixed for one recovery.
pub(super) struct Ctx {
    pub instance: Uuid,
    pub salt: u32,
    pub decoder: Decoder,
    pub copy: bool,
    pub live: bool,
    /// Frames at or past this LSN are not trusted (the poisoned-log rule).
    pub limit: u64,
    pub expect_max: u32,
}

/// Steps 4-6: the walk over the mapped segments, and what it found.
pub(super) struct Walk<'a> {
    pub files: &'a Files,
    pub ctx: Ctx,
    pub tally: Tally,
    pub kept: Vec<SegRef>,
    /// The transaction counts when the walk reached each kept segment.
    pub at_start: Vec<TxnCounts>,
    pub adopted: usize,
    /// Where the next segment must start: the end of the valid log so far.
    pub expected_lsn: u64,
    pub problem: Option<Problem>,
    pub zero_range: Option<(usize, usize)>,
    /// The (segment, offset) whose tail `classify_tail` found all zero.
    pub tail_checked: Option<(u64, usize)>,
    pub discarded_bytes: u64,
    /// Index of the first segment not kept.
    pub stop_at: usize,
    /// The size the segment being scanned was created with, if its file is
    /// now shorter.
    pub truncated: Option<u64>,
    pub limited_at: Option<usize>,
}

/// Whether the walk goes on to the next segment.
enum Next {
    Continue,
    Stop,
}

impl<'a> Walk<'a> {
    pub(super) fn new(files: &'a Files, ctx: Ctx, first_lsn: u64) -> Self {
        Walk {
            files,
            ctx,
            tally: Tally::new(),
            kept: Vec::with_capacity(files.mapped.len()),
            at_start: Vec::with_capacity(files.mapped.len()),
            adopted: 0,
            expected_lsn: first_lsn,
            problem: None,
            zero_range: None,
            tail_checked: None,
            discarded_bytes: 0,
            stop_at: files.mapped.len(),
            truncated: None,
            limited_at: None,
        }
    }

    /// Steps 4-6 over every segment. Segments with valid headers, from the
    /// first, may be scanned ahead by a helper thread, each from the LSN
    /// its header gives (DESIGN.md §8, "Parallel recovery"); the walk uses
    /// such a scan only where it expects that same LSN, and applies the
    /// frames' facts in order, so the outcome is the sequential walk's.
    /// Only where nothing can write the bytes (no copying).
    pub(super) fn scan(&mut self, parallel: bool) {
        let files = self.files;
        let (salt, limit, decoder) = (self.ctx.salt, self.ctx.limit, self.ctx.decoder);
        let ahead_lsn: Vec<u64> = files
            .headers
            .iter()
            .map_while(|h| match h {
                HeaderState::Valid(h) => Some(h.first_lsn.get()),
                _ => None,
            })
            .collect();
        let parallel = parallel
            && !self.ctx.copy
            && ahead_lsn.len() >= 2
            && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
        let jobs = if parallel { ahead_lsn.len() } else { 0 };
        let pool = Ordered::<SegScan>::new(jobs, SCAN_WINDOW);
        let mapped = &files.mapped;
        let scan_ahead = |j: usize| {
            let sref = SegRef {
                seg: Arc::clone(&mapped[j]),
                first_lsn: ahead_lsn[j],
                txn_open: false,
            };
            let mut reader = FrameReader::new(&mapped[j], false, decoder);
            let mut facts = Summary::default();
            let end = scan_frames(&mut reader, &sref, salt, limit, |f| facts.push(f));
            SegScan {
                first_lsn: sref.first_lsn,
                facts,
                end,
            }
        };
        std::thread::scope(|scope| {
            // Stops the pool however the walk ends (a helper waiting for
            // room would otherwise keep the scope from joining it).
            let _stop = pool.stop_on_drop();
            if jobs > 0 {
                // Without the helper (it could not start), the walk scans
                // alone.
                let _ = std::thread::Builder::new()
                    .name("wal-recovery".into())
                    .spawn_scoped(scope, || pool.work(&scan_ahead));
            }
            for i in 0..files.mapped.len() {
                let Some(first_lsn) = self.enter(i) else {
                    return;
                };
                let taken = if i < jobs {
                    pool.take(i, &scan_ahead)
                } else {
                    Taken::Yours
                };
                if let Next::Stop = self.segment(i, first_lsn, taken) {
                    return;
                }
            }
        });
    }

    /// Step 4: the header of segment `i` continues the log: its first LSN;
    /// otherwise the problem is recorded and the walk stops before it.
    fn enter(&mut self, i: usize) -> Option<u64> {
        let files = self.files;
        let seg = &files.mapped[i];
        let expected = self.expected_lsn;
        let detail = match &files.headers[i] {
            HeaderState::Valid(h) => {
                match check_header(h, seg, &self.ctx.instance, expected, i, &files.mapped) {
                    None => {
                        // A file shorter than its header says: its frames
                        // still count. Nothing is lost if they end where
                        // the next segment starts (step 5); at the end of
                        // the log, a cut may have taken frames.
                        let size = h.segment_size.get();
                        self.truncated = ((seg.len() as u64) < size).then_some(size);
                        seg.set_sealed();
                        return Some(expected);
                    }
                    Some(detail) => detail,
                }
            }
            HeaderState::Blank if i >= files.blank_from => {
                // Reached only through a successful probe (step 5).
                self.adopted += 1;
                return Some(expected);
            }
            HeaderState::Blank => "blank header in the middle of the log".to_string(),
            HeaderState::Invalid(d) => d.clone(),
        };
        self.problem = Some(header_problem(seg, expected, detail));
        self.stop_at = i;
        None
    }

    /// Steps 4-6 for segment `i`, entered at `first_lsn`: its frames (from
    /// a helper's scan, if `taken` holds one from that LSN), then whether
    /// the log goes on in the next segment or ends here.
    fn segment(&mut self, i: usize, first_lsn: u64, taken: Taken<SegScan>) -> Next {
        let files = self.files;
        let seg = &files.mapped[i];
        let (salt, limit) = (self.ctx.salt, self.ctx.limit);
        let sref = SegRef {
            seg: Arc::clone(seg),
            first_lsn,
            txn_open: !self.tally.open.is_empty(),
        };
        let counts_at_start = self.tally.counts;
        let mut reader = FrameReader::new(seg, self.ctx.copy, self.ctx.decoder);
        let end = match taken {
            Taken::Done(scan) if scan.first_lsn == first_lsn => {
                #[cfg(all(test, not(loom)))]
                super::tests::HELPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.tally.apply(scan.facts);
                scan.end
            }
            _ => {
                let tally = &mut self.tally;
                scan_frames(&mut reader, &sref, salt, limit, |f| tally.visit(f))
            }
        };
        let limited = end.error.is_none() && sref.lsn_of(end.stop) >= limit;
        let end_here = sref.lsn_of(end.end);
        // Frames that stop inside a unit end the log at the unit's start,
        // like damage: the walk never continues past them.
        let clean = end.error.is_none() && !end.open_unit;
        self.kept.push(sref.clone());
        self.at_start.push(counts_at_start);
        self.expected_lsn = end_here;
        let next_first = if limited {
            // Nothing past the trusted end continues the log.
            None
        } else {
            self.next_first(i, end_here, clean)
        };
        if next_first == Some(end_here) && clean {
            return Next::Continue;
        }
        self.conclude(&sref, &mut reader, end, next_first, limited);
        self.stop_at = i + 1;
        Next::Stop
    }

    /// Step 5: where the segment after `i` says it starts, if it may
    /// continue the log (whose valid frames end at `end_here`). A next
    /// segment whose header is damaged or belongs elsewhere is reported
    /// there (`Some(end_here)` lets the walk reach it), unless this segment
    /// already ended in damage.
    fn next_first(&self, i: usize, end_here: u64, clean: bool) -> Option<u64> {
        let files = self.files;
        let next = files.mapped.get(i + 1)?;
        match &files.headers[i + 1] {
            HeaderState::Valid(h) => {
                match check_header(
                    h,
                    next,
                    &self.ctx.instance,
                    h.first_lsn.get(),
                    i + 1,
                    &files.mapped,
                ) {
                    Some(_) => Some(end_here),
                    None => Some(h.first_lsn.get()),
                }
            }
            HeaderState::Invalid(_) => Some(end_here),
            HeaderState::Blank if i + 1 < files.blank_from => Some(end_here),
            HeaderState::Blank
                if clean
                    && next.seq() == files.mapped[i].seq() + 1
                    && next.len() as u64 >= MIN_SEGMENT_SIZE
                    && next.len() % 4096 == 0 =>
            {
                // An unsealed successor continues the log only if it is the
                // next segment and its first frame was written for exactly
                // this LSN.
                let mut probe = FrameReader::new(next, self.ctx.copy, self.ctx.decoder);
                match probe.decode(DATA_START, header::seed(self.ctx.salt, end_here)) {
                    Ok(Some(_)) => Some(end_here),
                    _ => None,
                }
            }
            HeaderState::Blank => None,
        }
    }

    /// Step 6: the log ends in `sref` (its valid frames end at `end.end`;
    /// the segment after it, if any, says it starts at `next_first`):
    /// record what to zero and what the problem is.
    fn conclude(
        &mut self,
        sref: &SegRef,
        reader: &mut FrameReader<'_>,
        end: ScanEnd,
        next_first: Option<u64>,
        limited: bool,
    ) {
        let valid = end.end;
        match next_first {
            None if limited => {
                // A log that failed a sync: what the page cache holds past
                // the last completed sync may never have reached the disk.
                // It is dropped like a torn tail.
                self.limited_at = Some(valid);
                let nz_end = reader.nonzero_end(valid);
                self.zero(valid, nz_end);
                self.problem = Some(problem_at(
                    sref,
                    valid,
                    ProblemClass::TornTail,
                    None,
                    "a sync of this log failed: bytes past the last completed sync are not trusted",
                ));
            }
            None if self.ctx.live => {
                // A writer in another process is appending here: the scan
                // stopped at its moving end. Nothing is judged or repaired.
            }
            None => self.conclude_last(sref, reader, end),
            Some(f) => {
                let nz_end = reader.nonzero_end(valid);
                self.zero(valid, nz_end);
                let end_here = sref.lsn_of(valid);
                let detail = if end.open_unit && end.error.is_none() {
                    "the segment's frames end inside a unit (a batch) whose last frame is missing"
                        .to_string()
                } else if end.error.is_none() && f != u64::MAX {
                    format!("frames end at LSN {end_here} but the next segment starts at LSN {f}")
                } else {
                    "a segment before the last is damaged".to_string()
                };
                self.problem = Some(problem_at(
                    sref,
                    valid,
                    ProblemClass::MidLogCorruption,
                    end.error,
                    &detail,
                ));
            }
        }
    }

    /// Step 6 in the last segment of the log: what follows its frames is
    /// either nothing, or a tail a crash can leave, or damage.
    fn conclude_last(&mut self, sref: &SegRef, reader: &mut FrameReader<'_>, end: ScanEnd) {
        let clean = end.error.is_none() && !end.open_unit;
        let max_payload =
            (self.ctx.expect_max.max(DEFAULT_MAX_PAYLOAD) as usize).max(self.tally.largest);
        let (class, nz_end) =
            classify_tail(reader, sref, self.ctx.salt, end.stop, !clean, max_payload);
        self.tail_checked = Some((sref.seg.seq(), end.end));
        self.zero(end.end, nz_end);
        if let Some(class) = class {
            let fallback = if end.open_unit {
                "a unit of frames (a batch) without its last frame: none of it is kept"
            } else {
                "bytes after the last valid frame"
            };
            self.problem = Some(problem_at(sref, end.end, class, end.error, fallback));
        } else if let Some(size) = self.truncated {
            // Cut short at a frame boundary: frames may have been lost with
            // the cut, and nothing valid follows.
            self.problem = Some(problem_at(
                sref,
                end.end,
                ProblemClass::TornTail,
                None,
                &format!("file truncated to {} of its {size} bytes", sref.seg.len()),
            ));
        }
    }

    /// Bytes `[from, nz_end)` of the last kept segment lie after the valid
    /// end: a write open zeroes them.
    fn zero(&mut self, from: usize, nz_end: usize) {
        if nz_end > from {
            self.zero_range = Some((from, nz_end));
            self.discarded_bytes += (nz_end - from) as u64;
        }
    }

    /// The walk stopped at a later segment's header: bytes after the last
    /// kept segment's frames must still be zeroed before appending there
    /// (unless that is where `classify_tail` just found only zeros).
    pub(super) fn zero_after_kept(&mut self) {
        if self.zero_range.is_some() || self.ctx.live {
            return;
        }
        let Some(last) = self.kept.last().cloned() else {
            return;
        };
        let end = last.offset_of(self.expected_lsn).min(last.seg.len());
        if self.tail_checked != Some((last.seg.seq(), end)) {
            let mut reader = FrameReader::new(&last.seg, self.ctx.copy, self.ctx.decoder);
            let nz_end = reader.nonzero_end(end);
            self.zero(end, nz_end);
        }
    }

    /// What lies after the kept segments: unused blank segments (prepared,
    /// empty) may be reused, anything holding data is discarded. Returns
    /// `(discard, blanks)`.
    pub(super) fn after_kept(&mut self) -> (Vec<PathBuf>, Vec<(u64, PathBuf)>) {
        let files = self.files;
        let mut discard = Vec::new();
        if let Some((k, len)) = files.short {
            if self.problem.is_none() {
                let seq = files.listing.segments[k].0;
                // A file cut inside its header page: if nothing follows it,
                // a torn tail (it held no frame that could be kept);
                // otherwise the log has a hole.
                let class = if k >= files.last_file {
                    ProblemClass::TornTail
                } else {
                    ProblemClass::MidLogCorruption
                };
                self.problem = Some(Problem {
                    class,
                    segment: seq,
                    file: header::file_name(seq),
                    offset: 0,
                    lsn: self.expected_lsn,
                    detail: format!("file is {len} bytes, shorter than its header page"),
                });
            }
            discard.extend(files.listing.segments[k..].iter().map(|(_, p)| p.clone()));
        }
        let mut blanks = Vec::new();
        let mut next_seq = self.kept.last().map_or(0, |k| k.seg.seq() + 1);
        for (j, seg) in files.mapped.iter().enumerate().skip(self.stop_at) {
            let bytes = files.data.of(j, seg);
            let blank = matches!(files.headers[j], HeaderState::Blank);
            let expected = next_seq;
            next_seq = seg.seq() + 1;
            if blank && bytes == 0 && seg.seq() == expected {
                blanks.push((seg.seq(), seg.path().to_path_buf()));
                continue;
            }
            if self.ctx.live && blank && self.problem.is_none() {
                // The live writer rotated into it after the scan passed:
                // not part of this view, and not a problem.
                continue;
            }
            if self.problem.is_none() {
                self.problem = Some(after_the_log(
                    seg,
                    blank && bytes == 0,
                    expected,
                    self.expected_lsn,
                ));
            }
            self.discarded_bytes += bytes;
            discard.push(seg.path().to_path_buf());
        }
        if !discard.is_empty() {
            // Blank segments after a discarded one go with it.
            discard.extend(blanks.drain(..).map(|(_, p)| p));
        }
        (discard, blanks)
    }

    /// The outcome: the live log's counts and open transactions once its
    /// truncations apply (a truncation may have reopened transactions
    /// whose end it deleted, or deleted counted ones), and the report.
    pub(super) fn finish(
        self,
        first_lsn: u64,
        started: Instant,
        (discard, blanks): (Vec<PathBuf>, Vec<(u64, PathBuf)>),
    ) -> Result<Recovered> {
        let Walk {
            files,
            ctx,
            mut tally,
            kept,
            at_start,
            adopted,
            expected_lsn: end_lsn,
            problem,
            zero_range,
            discarded_bytes,
            truncated,
            limited_at,
            ..
        } = self;
        let mut view = Snapshot {
            segs: kept,
            start: first_lsn,
            end: end_lsn,
            salt: ctx.salt,
            decoder: ctx.decoder,
            dead: tally.truncations.visible(end_lsn),
            purge: Default::default(),
        };
        let (open_txns, report) = settle_and_report(
            &mut tally,
            &at_start,
            &mut view,
            discarded_bytes,
            problem,
            started,
        )?;
        Ok(Recovered {
            instance: ctx.instance,
            segments: view.segs,
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
            temps: files.listing.temps.clone(),
        })
    }
}

/// The problem a segment after the valid log is, when nothing earlier was
/// one: a prepared (blank, empty) segment after a hole (the segment that
/// held the end of the log is gone: a crash cannot do that), or frames in
/// an unsealed segment that does not continue the log (a rotation whose
/// predecessor's tail was lost in a crash).
fn after_the_log(seg: &Arc<Segment>, prepared: bool, expected_seq: u64, lsn: u64) -> Problem {
    if prepared {
        return Problem {
            class: ProblemClass::MidLogCorruption,
            segment: seg.seq(),
            file: header::file_name(seg.seq()),
            offset: 0,
            lsn,
            detail: format!(
                "segment {} is missing (gap in the sequence)",
                header::file_name(expected_seq)
            ),
        };
    }
    problem_at(
        &SegRef {
            seg: Arc::clone(seg),
            first_lsn: lsn,
            txn_open: false,
        },
        DATA_START,
        ProblemClass::TornTail,
        None,
        "frames in an unsealed segment that does not continue the log",
    )
}
