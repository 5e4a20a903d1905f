//! Recovery: scan every segment, find where the valid log ends, and
//! classify whatever stops the scan (DESIGN.md §7, "Crash and damage
//! cases").
//!
//! Recovery reads; it never writes. Opening for writing applies its verdict
//! afterwards (zeroing the tail, moving discarded segments aside). The walk
//! over the segments is in `walk`, one function per step of DESIGN.md §7;
//! scanning one segment's frames in `scan`; judging what stops it in
//! `classify`; the live log's counts and what the device holds in
//! `settle`; the helper thread's job pool in `pool`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use uuid::Uuid;

use crate::error::{Error, ProblemClass, Result};
use crate::format::frame::Decoder;
use crate::format::header;

mod classify;
pub mod inspect;
pub(crate) mod pool;
mod report;
mod scan;
mod settle;
#[cfg(all(test, not(loom)))]
mod tests;
mod walk;

pub use report::{Problem, RecoveryMode, RecoveryReport};
pub(crate) use settle::{disk_valid_end, survey};
pub(crate) use walk::Recovered;

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
            Err(Error::Io { error, .. })
                if error.kind() == std::io::ErrorKind::NotFound && attempts < 16 =>
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
    let started = Instant::now();
    let files = walk::map_files(dir, opts.writable, opts.copy, decoder)?;
    if files.blank_from == 0 {
        return walk::only_blank(files);
    }
    let first = walk::identify(&files)?;
    let instance = first.instance();
    let ctx = walk::Ctx {
        instance,
        salt: header::salt(&instance),
        decoder,
        copy: opts.copy,
        live: opts.live,
        limit: match opts.limit {
            Some((id, lsn)) if id == instance => lsn,
            _ => u64::MAX,
        },
        expect_max,
    };
    let first_lsn = first.first_lsn.get();
    let mut walk = walk::Walk::new(&files, ctx, first_lsn);
    walk.scan(opts.parallel);
    walk.zero_after_kept();
    if walk.kept.is_empty() {
        // The first segment failed its checks: it identifies the log, so
        // there is no prefix to keep. Refuse rather than start over.
        let detail = walk
            .problem
            .take()
            .map_or_else(|| "unusable".to_string(), |p| p.detail);
        return Err(Error::SegmentHeader {
            segment: files.mapped[0].seq(),
            detail: format!("{detail}; the first segment must be valid to identify the log"),
        });
    }
    let after = walk.after_kept();
    walk.finish(first_lsn, started, after).map(Some)
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
