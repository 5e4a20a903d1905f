//! What stops a scan, judged: a torn tail (what a crash leaves) or mid-log
//! corruption (what it cannot), and whether a segment's header continues
//! the log (DESIGN.md §7, steps 4-6).

use std::sync::Arc;

use uuid::Uuid;

use crate::error::ProblemClass;
use crate::format::entry::EntryKind;
use crate::format::frame::{FRAME_OVERHEAD, MIN_PAYLOAD};
use crate::format::header::{self, Header, MIN_SEGMENT_SIZE, SECTOR};
use crate::os::segment::Segment;
use crate::read::snapshot::SegRef;
use crate::recovery::scan::*;

/// The most payload bytes a resynchronisation search may checksum before it
/// gives up and calls the damage mid-log corruption.
pub(crate) const RESYNC_BUDGET: usize = 64 << 20;

pub(crate) enum Resync {
    Found(usize),
    NotFound,
    GaveUp,
}

/// Looks for a valid frame (valid *at its own position*: the CRC seed binds
/// it to its LSN) anywhere in `(from, to)`, with a payload of at most `max`
/// bytes.
pub(crate) fn resync(
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
pub(crate) fn has_zero_sector(r: &mut FrameReader<'_>, from: usize, to: usize) -> bool {
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
pub(crate) fn classify_tail(
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

pub(crate) fn check_header(
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
