//! After the walk: counts and open transactions of the live log once its
//! truncations apply, a survey of a published view, and how far the device
//! itself holds the log after a sync failed.

use std::sync::Arc;
use std::time::Instant;

use crate::error::Result;
use crate::format::header::{self};
use crate::os::segment::{self};
use crate::read::runs::{OpenTxns, Reopened, RunIndex, TxnCounts};
use crate::read::snapshot::{SegRef, Snapshot};
use crate::recovery::report::*;
use crate::recovery::scan::*;

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

/// [`settle`]s a scan's accounting over `view` (the log it leaves) and
/// reports it, with what the scan found of damage (`bytes_discarded`,
/// `problem`) and the time since `started`. Returns the transactions open
/// at the end beside the report.
pub(crate) fn settle_and_report(
    tally: &mut Tally,
    at_start: &[TxnCounts],
    view: &mut Snapshot,
    bytes_discarded: u64,
    problem: Option<Problem>,
    started: Instant,
) -> Result<(OpenTxns, RecoveryReport)> {
    let (open, counts) = settle(tally, at_start, view)?;
    let report = RecoveryReport {
        segments: view.segs.len(),
        entries: tally.entries,
        committed_txns: counts.committed,
        aborted_txns: counts.aborted,
        incomplete_txns: counts.replaced + open.len() as u64,
        first_lsn: view.start,
        last_lsn: tally.last_lsn,
        end_lsn: view.end,
        bytes_discarded,
        problem,
        duration: started.elapsed(),
    };
    Ok((open, report))
}

/// The report and run index of a published view (a read-only open beside
/// a writer of this process): what a scan would find, without scanning a
/// moving tail.
pub(crate) fn survey(snap: &Snapshot) -> Result<(RecoveryReport, RunIndex)> {
    let started = Instant::now();
    let mut tally = Tally::new();
    let mut at_start = Vec::with_capacity(snap.segs.len());
    // Every frame, deleted ones included, as a scan of the files visits
    // them (purged ones too, from the first LSN the segments hold): the
    // report counts the same either way.
    let mut all = snap.iter_beyond_start(snap.base())?;
    all.include_deleted();
    for e in all {
        let e = e?;
        while at_start.len() < snap.segs.len() && snap.segs[at_start.len()].first_lsn <= e.lsn {
            at_start.push(tally.counts);
        }
        tally.visit(Facts::of(e.lsn, e.len, &e.entry));
    }
    at_start.resize(snap.segs.len(), tally.counts);
    let mut view = Snapshot {
        segs: snap.segs.clone(),
        start: snap.base(),
        end: snap.end,
        salt: snap.salt,
        decoder: snap.decoder,
        dead: Arc::clone(&snap.dead),
        purge: Arc::default(),
    };
    let (_, report) = settle_and_report(&mut tally, &at_start, &mut view, 0, None, started)?;
    Ok((report, tally.index))
}
