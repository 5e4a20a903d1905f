//! `walctl verify DIR [--json]`: a read-only full check of a log.
//!
//! Opens the log with [`durability::WalReader`] (which scans every segment
//! header and frame and classifies whatever stops the scan), then reads every
//! entry again in log order, checking that the entries follow each other
//! without gaps up to the valid end. Exit 0: clean. Exit 1: a problem (torn
//! tail or corruption), each printed with its segment file, offset and
//! class. Exit 2: could not run.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use durability::format::header::file_name;
use serde::Serialize;

use crate::common::{
    fmt_bytes, fmt_int, fmt_secs, open_reader, progress, write_json_line, Damaged, ProblemOut,
    EXIT_DAMAGED, EXIT_OK,
};

/// Arguments of `walctl verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `verify --json` prints.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub dir: String,
    pub ok: bool,
    pub segments: Option<usize>,
    pub first_segment: Option<String>,
    pub last_segment: Option<String>,
    pub entries: Option<u64>,
    pub bytes: Option<u64>,
    pub first_lsn: Option<u64>,
    pub last_lsn: Option<u64>,
    pub end_lsn: Option<u64>,
    pub committed_txns: Option<u64>,
    pub aborted_txns: Option<u64>,
    pub incomplete_txns: Option<u64>,
    pub bytes_discarded: Option<u64>,
    pub problems: Vec<ProblemOut>,
    pub duration_s: f64,
}

pub fn run(a: Args) -> Result<u8> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let code = verify(&a.dir, a.json, &mut out)?;
    out.flush()?;
    Ok(code)
}

/// Checks the log in `dir` and reports to `out`; returns the exit status.
pub fn verify(dir: &Path, json: bool, out: &mut impl Write) -> Result<u8> {
    let verdict = check(dir)?;
    if json {
        write_json_line(out, &verdict)?;
    } else {
        print_text(&verdict, out)?;
    }
    Ok(if verdict.ok { EXIT_OK } else { EXIT_DAMAGED })
}

/// Runs the check.
pub fn check(dir: &Path) -> Result<Verdict> {
    let started = Instant::now();
    let mut v = Verdict {
        dir: dir.display().to_string(),
        ok: false,
        segments: None,
        first_segment: None,
        last_segment: None,
        entries: None,
        bytes: None,
        first_lsn: None,
        last_lsn: None,
        end_lsn: None,
        committed_txns: None,
        aborted_txns: None,
        incomplete_txns: None,
        bytes_discarded: None,
        problems: Vec::new(),
        duration_s: 0.0,
    };
    let reader = match open_reader(dir) {
        Ok(r) => r,
        Err(e) => match e.downcast::<Damaged>() {
            Ok(d) => {
                v.problems.push(d.problem);
                v.duration_s = started.elapsed().as_secs_f64();
                return Ok(v);
            }
            Err(e) => return Err(e),
        },
    };
    let report = reader.recovery_report();
    let snap = reader.snapshot();
    let seqs: Vec<u64> = snap.segment_seqs().collect();
    v.segments = Some(report.segments);
    v.first_segment = seqs.first().map(|&s| file_name(s));
    v.last_segment = seqs.last().map(|&s| file_name(s));
    v.first_lsn = Some(snap.start_lsn());
    v.last_lsn = report.last_lsn;
    v.end_lsn = Some(report.end_lsn);
    v.bytes = Some(snap.len_bytes());
    v.committed_txns = Some(report.committed_txns);
    v.aborted_txns = Some(report.aborted_txns);
    v.incomplete_txns = Some(report.incomplete_txns);
    v.bytes_discarded = Some(report.bytes_discarded);
    if let Some(p) = &report.problem {
        v.problems.push(ProblemOut::from(p));
    }

    // Read every entry again, in order, checking they tile the valid log
    // (entries a truncation deleted included: they are still there).
    let pb = progress(snap.len_bytes(), "verifying");
    let mut entries = 0u64;
    let mut next = snap.start_lsn();
    let mut shown = next;
    let mut failed = false;
    for e in snap.iter_all() {
        match e {
            Ok(e) => {
                if e.lsn != next {
                    v.problems.push(ProblemOut {
                        class: durability::ProblemClass::MidLogCorruption,
                        segment: Some(file_name(e.segment)),
                        offset: Some(e.offset as u64),
                        lsn: Some(next),
                        detail: format!("expected an entry at LSN {next}, found one at {}", e.lsn),
                    });
                    failed = true;
                    break;
                }
                entries += 1;
                next = e.lsn + e.len as u64;
                if next - shown >= 1 << 20 {
                    pb.inc(next - shown);
                    shown = next;
                }
            }
            Err(err) => {
                v.problems.push(ProblemOut::from_error(&err, Some(next)));
                failed = true;
                break;
            }
        }
    }
    pb.finish_and_clear();
    if !failed && next != snap.end_lsn() {
        v.problems.push(ProblemOut {
            class: durability::ProblemClass::MidLogCorruption,
            segment: v.last_segment.clone(),
            offset: None,
            lsn: Some(next),
            detail: format!(
                "entries end at LSN {next} but the valid log ends at {}",
                snap.end_lsn()
            ),
        });
    }
    // The scan counts every frame the segments hold; reading starts at the
    // log's start, so frames a kept segment holds below the purge mark are
    // counted by the scan only.
    let purged_frames = report.first_lsn < snap.start_lsn();
    if !failed && (entries > report.entries || (!purged_frames && entries != report.entries)) {
        v.problems.push(ProblemOut {
            class: durability::ProblemClass::MidLogCorruption,
            segment: None,
            offset: None,
            lsn: None,
            detail: format!(
                "the scan counted {} entries but reading found {entries}",
                report.entries
            ),
        });
    }
    v.entries = Some(entries);
    v.ok = v.problems.is_empty();
    v.duration_s = started.elapsed().as_secs_f64();
    Ok(v)
}

fn print_text(v: &Verdict, out: &mut impl Write) -> Result<()> {
    writeln!(out, "verify {}", v.dir)?;
    if let (Some(segs), Some(entries), Some(bytes)) = (v.segments, v.entries, v.bytes) {
        let names = match (&v.first_segment, &v.last_segment) {
            (Some(a), Some(b)) if a != b => format!(" ({a} .. {b})"),
            (Some(a), _) => format!(" ({a})"),
            _ => String::new(),
        };
        writeln!(out, "  segments  {segs}{names}")?;
        writeln!(
            out,
            "  entries   {} ({}, LSN {}..{})",
            fmt_int(entries),
            fmt_bytes(bytes as f64),
            v.first_lsn.unwrap_or(0),
            v.end_lsn.unwrap_or(0)
        )?;
        writeln!(
            out,
            "  txns      {} committed, {} aborted, {} incomplete",
            fmt_int(v.committed_txns.unwrap_or(0)),
            fmt_int(v.aborted_txns.unwrap_or(0)),
            fmt_int(v.incomplete_txns.unwrap_or(0))
        )?;
    }
    for p in &v.problems {
        writeln!(out, "  PROBLEM   {}", p.describe())?;
    }
    if let Some(d) = v.bytes_discarded.filter(|&d| d > 0) {
        writeln!(
            out,
            "            {} bytes after the valid end (a write open would discard them)",
            fmt_int(d)
        )?;
    }
    let speed = match v.bytes {
        Some(b) if v.duration_s > 0.0 && b > 0 => {
            format!(", {}/s", fmt_bytes(b as f64 / v.duration_s))
        }
        _ => String::new(),
    };
    if v.ok {
        writeln!(
            out,
            "  result    OK: every header and frame checks (CRC-32C, layout, LSN order) in {}{speed}",
            fmt_secs(v.duration_s)
        )?;
    } else {
        writeln!(
            out,
            "  result    DAMAGED: {} problem{} found",
            v.problems.len(),
            if v.problems.len() == 1 { "" } else { "s" }
        )?;
    }
    Ok(())
}
