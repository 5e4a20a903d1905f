//! Inspecting segment files one at a time, read-only, without opening the
//! log: every valid frame and every unreadable byte range of each file,
//! `*.discarded-*` files included (DESIGN.md §7, "Inspection and salvage").
//!
//! Recovery stops at the first problem, because nothing after it can be
//! trusted to continue the log. An operator (or `walctl verify` and
//! `walctl salvage`) wants the opposite: every segment checked on its own,
//! and after a bad frame the next frame that validates *at its own
//! position* (the CRC seed binds a frame to its LSN and its log), found by
//! the same bounded search recovery uses to tell a torn tail from damage.
//!
//! Nothing here writes, locks, or creates a file. Every file is opened only
//! if it is a regular file, without blocking, mapped read-only and read
//! through private copies (another process may be writing it), each frame
//! bounded by the decoder's payload limit before a byte is allocated.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::frame::{Decoder, EntryRef};
use crate::format::header::{self, HeaderState, DATA_START};
use crate::os::segment::Segment;
use crate::read::snapshot::SegRef;
use crate::recovery::classify::{resync, Resync};
use crate::recovery::scan::FrameReader;
use crate::recovery::walk::list;

/// The infix of a segment file moved aside by a repair
/// (`00000000000000000003.wal.discarded-<µs>`).
pub const DISCARDED_INFIX: &str = ".discarded-";

/// A segment file of a log directory, live or discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// Its path.
    pub path: PathBuf,
    /// Its file name.
    pub name: String,
    /// The sequence number its name gives.
    pub seq: u64,
    /// A repair moved it aside (`*.discarded-*`): not part of the log.
    pub discarded: bool,
}

/// Lists the segment files of `dir`: the log's (`<seq>.wal`) in sequence
/// order, then the discarded ones (`<seq>.wal.discarded-<µs>`) in name
/// order. Only regular files (as the directory entry says; each is checked
/// again when opened).
pub fn segment_files(dir: &Path) -> Result<Vec<SegmentFile>> {
    let mut files: Vec<SegmentFile> = list(dir)?
        .segments
        .into_iter()
        .map(|(seq, path)| SegmentFile {
            name: header::file_name(seq),
            path,
            seq,
            discarded: false,
        })
        .collect();
    let mut discarded = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("read directory", dir, e))?;
        let Some(name) = ent.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some((base, _)) = name.split_once(DISCARDED_INFIX) else {
            continue;
        };
        let Some(seq) = header::parse_file_name(base) else {
            continue;
        };
        if ent.file_type().is_ok_and(|t| t.is_file()) {
            discarded.push(SegmentFile {
                path: ent.path(),
                name,
                seq,
                discarded: true,
            });
        }
    }
    discarded.sort_by(|a, b| a.name.cmp(&b.name));
    files.extend(discarded);
    Ok(files)
}

/// A byte range of a segment file that holds no valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The file offset where it starts.
    pub offset: u64,
    /// The file offset where it ends: the next valid frame, or the end of
    /// the file's nonzero data.
    pub end: u64,
    /// The LSN of `offset`, when the segment's first LSN is known.
    pub lsn: Option<u64>,
    /// What was found at `offset`.
    pub detail: String,
}

/// One valid frame found by [`inspect_segment`].
#[derive(Debug, Clone, Copy)]
pub struct InspectedFrame<'a> {
    /// Its LSN.
    pub lsn: u64,
    /// Its byte offset in the file.
    pub offset: usize,
    /// Bytes it occupies (payload + 9).
    pub len: usize,
    /// More frames of the same unit follow it.
    pub continues: bool,
    /// The entry (borrowed from a private copy of the frame).
    pub entry: EntryRef<'a>,
}

/// What [`inspect_segment`] found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInspection {
    /// The file.
    pub file: SegmentFile,
    /// Its length in bytes.
    pub file_len: u64,
    /// The log instance its header names (valid headers only).
    pub instance: Option<Uuid>,
    /// The LSN its first frame has: from its header, or (`first_lsn_assumed`)
    /// where the previous segment's frames end.
    pub first_lsn: Option<u64>,
    /// The header could not give the first LSN; the one assumed is where
    /// the previous segment's frames end.
    pub first_lsn_assumed: bool,
    /// What is wrong with its header, if anything (a blank header of an
    /// unused segment is not a problem).
    pub header_problem: Option<String>,
    /// Valid frames.
    pub frames: u64,
    /// Bytes of valid frames.
    pub frame_bytes: u64,
    /// Bytes examined: from the end of the header page to the end of the
    /// nonzero data.
    pub bytes_checked: u64,
    /// Where the valid frames end (the LSN after the last one).
    pub end_lsn: Option<u64>,
    /// Byte ranges holding no valid frame, in file order.
    pub unreadable: Vec<Unreadable>,
    /// The search stopped after `max_problems` ranges: later bytes of the
    /// file were not examined.
    pub stopped_early: bool,
}

impl SegmentInspection {
    /// The inspection of `file` before (or without) reading a frame.
    fn nothing_read(file: &SegmentFile, file_len: u64, header_problem: Option<String>) -> Self {
        SegmentInspection {
            file: file.clone(),
            file_len,
            instance: None,
            first_lsn: None,
            first_lsn_assumed: false,
            header_problem,
            frames: 0,
            frame_bytes: 0,
            bytes_checked: 0,
            end_lsn: None,
            unreadable: Vec::new(),
            stopped_early: false,
        }
    }

    /// Bytes of the unreadable ranges.
    pub fn unreadable_bytes(&self) -> u64 {
        self.unreadable.iter().map(|u| u.end - u.offset).sum()
    }
}

/// What the log of a segment's frames is taken to be: the instance whose
/// salt seeds their CRCs and, for a header that cannot say, the LSN a
/// segment is assumed to start at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    /// The log's instance (normally from its first segment's header).
    pub instance: Option<Uuid>,
    /// The LSN to assume when the header is blank or invalid.
    pub assume_first_lsn: Option<u64>,
}

/// Inspects one segment file read-only: its header, then every frame from
/// the end of the header page. After a frame that does not validate, the
/// next frame valid at its own position is searched for within the file
/// (the bounded search recovery uses); the bytes between are reported as
/// [`Unreadable`]. At most `max_problems` ranges are reported (the last
/// covers the rest of the file). `visit` is called with every valid frame,
/// in file order.
///
/// I/O errors opening or mapping the file are returned; everything the
/// file holds is a finding, never an error.
pub fn inspect_segment(
    file: &SegmentFile,
    ctx: Context,
    decoder: Decoder,
    max_problems: usize,
    mut visit: impl FnMut(&InspectedFrame<'_>),
) -> Result<SegmentInspection> {
    let path = &file.path;
    let file_len = crate::os::files::open_read(path)
        .and_then(|f| f.metadata())
        .map_err(|e| Error::io("open segment", path, e))?
        .len();
    let mut out = SegmentInspection::nothing_read(file, file_len, None);
    if file_len < DATA_START as u64 {
        out.header_problem = Some(format!(
            "file is {file_len} bytes, shorter than its header page"
        ));
        return Ok(out);
    }
    let seg = Arc::new(Segment::open(path, file.seq, false)?);
    let mut reader = FrameReader::new(&seg, true, decoder);
    let data_end = reader.nonzero_end(DATA_START);
    out.bytes_checked = (data_end - DATA_START) as u64;
    let (first_lsn, instance) = match seg.header() {
        HeaderState::Valid(h) => {
            out.instance = Some(h.instance());
            if h.seq.get() != file.seq {
                out.header_problem = Some(format!(
                    "header names segment {} but the file is named for {}",
                    h.seq.get(),
                    file.seq
                ));
            } else if ctx.instance.is_some_and(|i| i != h.instance()) {
                out.header_problem = Some(format!(
                    "belongs to another log (instance {})",
                    h.instance()
                ));
            }
            (Some(h.first_lsn.get()), h.instance())
        }
        state => {
            let what = match state {
                HeaderState::Invalid(d) => d.clone(),
                _ => "blank header".to_string(),
            };
            if data_end == DATA_START {
                // A prepared segment, never used: nothing to check.
                if matches!(state, HeaderState::Invalid(_)) {
                    out.header_problem = Some(what);
                }
                return Ok(out);
            }
            out.header_problem = Some(what);
            match (ctx.assume_first_lsn, ctx.instance) {
                (Some(lsn), Some(i)) => {
                    out.first_lsn_assumed = true;
                    (Some(lsn), i)
                }
                _ => (None, Uuid::nil()),
            }
        }
    };
    let Some(first_lsn) = first_lsn else {
        out.unreadable.push(Unreadable {
            offset: DATA_START as u64,
            end: data_end as u64,
            lsn: None,
            detail: "frames cannot be checked: no header gives the LSN they were written for"
                .into(),
        });
        return Ok(out);
    };
    out.first_lsn = Some(first_lsn);
    let sref = SegRef {
        seg: Arc::clone(&seg),
        first_lsn,
        txn_open: false,
    };
    let salt = header::salt(&instance);
    scan_all(
        &mut reader,
        &sref,
        salt,
        data_end,
        max_problems,
        &mut out,
        &mut visit,
    );
    Ok(out)
}

/// The frame loop of [`inspect_segment`]: decode, and after a failure
/// resynchronise to the next frame valid at its own position.
fn scan_all(
    r: &mut FrameReader<'_>,
    sref: &SegRef,
    salt: u32,
    data_end: usize,
    max_problems: usize,
    out: &mut SegmentInspection,
    visit: &mut impl FnMut(&InspectedFrame<'_>),
) {
    let len = r.seg.len();
    let max = r.decoder.max_payload() as usize;
    let mut off = DATA_START;
    let mut end_lsn = sref.first_lsn;
    while off < len && off < data_end {
        let lsn = sref.lsn_of(off);
        let detail = match r.decode(off, header::seed(salt, lsn)) {
            Ok(Some(f)) => {
                visit(&InspectedFrame {
                    lsn,
                    offset: off,
                    len: f.len,
                    continues: f.continues,
                    entry: f.entry,
                });
                out.frames += 1;
                out.frame_bytes += f.len as u64;
                off += f.len;
                end_lsn = sref.lsn_of(off);
                continue;
            }
            Ok(None) => "a zero length field, yet nonzero bytes follow".to_string(),
            Err(e) => e.to_string(),
        };
        if out.unreadable.len() >= max_problems {
            out.stopped_early = true;
            break;
        }
        let (end, detail) = match resync(r, sref, salt, (off, data_end), max) {
            Resync::Found(q) => (q, detail),
            Resync::NotFound => (data_end, detail),
            Resync::GaveUp => (
                data_end,
                format!("{detail}; the search for a valid frame after it gave up"),
            ),
        };
        out.unreadable.push(Unreadable {
            offset: off as u64,
            end: end as u64,
            lsn: Some(lsn),
            detail,
        });
        off = end;
    }
    out.end_lsn = Some(end_lsn);
}

/// Every segment file of `dir` inspected ([`segment_files`],
/// [`inspect_segment`]): the log's first, then the discarded ones. The
/// instance that seeds the frames' CRCs is the first valid header's; a
/// segment whose header cannot give its first LSN is assumed to start
/// where the previous file's frames end. `visit` gets each file's valid
/// frames in file order. A file that cannot be opened is reported in its
/// inspection (`header_problem`), not as an error.
pub fn inspect(
    dir: &Path,
    decoder: Decoder,
    max_problems: usize,
    mut visit: impl FnMut(&SegmentFile, &InspectedFrame<'_>),
) -> Result<Vec<SegmentInspection>> {
    let files = segment_files(dir)?;
    let instance = files.iter().find_map(first_instance);
    let mut out: Vec<SegmentInspection> = Vec::with_capacity(files.len());
    let mut budget = max_problems;
    for f in &files {
        let prev = out
            .last()
            .filter(|p| p.file.discarded == f.discarded && p.file.seq + 1 == f.seq);
        let ctx = Context {
            instance,
            assume_first_lsn: prev.and_then(|p| p.end_lsn),
        };
        let found = match inspect_segment(f, ctx, decoder, budget, |fr| visit(f, fr)) {
            Ok(s) => s,
            Err(e) => SegmentInspection::nothing_read(f, 0, Some(format!("cannot be read: {e}"))),
        };
        budget = budget.saturating_sub(found.unreadable.len());
        out.push(found);
    }
    Ok(out)
}

/// The instance a segment file's valid header names, if it has one.
fn first_instance(f: &SegmentFile) -> Option<Uuid> {
    let seg = Segment::open(&f.path, f.seq, false).ok()?;
    match seg.header() {
        HeaderState::Valid(h) if h.seq.get() == f.seq => Some(h.instance()),
        _ => None,
    }
}
