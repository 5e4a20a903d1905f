//! `walctl verify DIR [--json]`: a read-only full check of a log.
//!
//! Opens the log with [`durability::WalReader`] (which scans every segment
//! header and frame and classifies whatever stops the scan), then reads every
//! entry again in log order, checking that the entries follow each other
//! without gaps up to the valid end. When that finds a problem, every
//! segment file is then checked on its own
//! ([`durability::recovery::inspect`]): past a bad frame the next valid one
//! is searched for, so every problem is reported (up to `--max-problems`),
//! not only the first. Segments a repair moved aside (`*.discarded-*`) are
//! always checked and listed, apart: they are not part of the log.
//!
//! Exit 0: clean. Exit 3: only a torn tail (what a crash leaves). Exit 1:
//! damage, each problem printed with its segment file, offset and class.
//! Exit 2: could not run.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use durability::format::header::file_name;
use durability::recovery::inspect::{
    inspect, inspect_segment, segment_files, Context, SegmentInspection,
};
use durability::{Decoder, ProblemClass};
use serde::Serialize;

use crate::common::{
    exit_for, fmt_bytes, fmt_int, fmt_secs, open_reader, progress, verdict_word, without_location,
    write_json_line, Damaged, ProblemOut, EXIT_DAMAGED,
};

/// Arguments of `walctl verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Report at most this many problems (the check goes on past the first
    /// problem to every later segment until this many are found).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_problems: usize,
}

/// A segment file a repair moved aside, as `verify` lists it.
#[derive(Debug, Serialize)]
pub struct DiscardedOut {
    pub file: String,
    pub frames: u64,
    pub first_lsn: Option<u64>,
    pub end_lsn: Option<u64>,
    pub bytes_unreadable: u64,
    pub header_problem: Option<String>,
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
    /// Problems found past `--max-problems` and not listed.
    pub problems_omitted: bool,
    /// "OK", "TORN TAIL" or "DAMAGED".
    pub verdict: &'static str,
    /// The exit status: 0, 3 or 1.
    pub exit_code: u8,
    /// Bytes of segment data examined, and how many of them hold no valid
    /// frame (the log's own segment files).
    pub bytes_checked: Option<u64>,
    pub bytes_unreadable: Option<u64>,
    /// Segment files a repair moved aside: not part of the log, listed
    /// with what they still hold (`walctl salvage` extracts it).
    pub discarded: Vec<DiscardedOut>,
    pub duration_s: f64,
}

pub fn run(a: Args) -> Result<u8> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let code = verify(&a.dir, a.json, a.max_problems.max(1), &mut out)?;
    out.flush()?;
    Ok(code)
}

/// Checks the log in `dir` and reports to `out`; returns the exit status.
pub fn verify(dir: &Path, json: bool, max_problems: usize, out: &mut impl Write) -> Result<u8> {
    let mut verdict = check(dir)?;
    check_every_segment(dir, max_problems, &mut verdict)?;
    if json {
        write_json_line(out, &verdict)?;
    } else {
        print_text(&verdict, out)?;
    }
    Ok(verdict.exit_code)
}

/// Runs the check of the log as a reader sees it (the first problem only).
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
        problems_omitted: false,
        verdict: "OK",
        exit_code: 0,
        bytes_checked: None,
        bytes_unreadable: None,
        discarded: Vec::new(),
        duration_s: 0.0,
    };
    let reader = match open_reader(dir) {
        Ok(r) => r,
        Err(e) => match e.downcast::<Damaged>() {
            Ok(d) => {
                v.problems.push(d.problem);
                set_verdict(&mut v);
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
    set_verdict(&mut v);
    v.bytes_checked = v.bytes;
    v.bytes_unreadable = Some(report.bytes_discarded);
    v.duration_s = started.elapsed().as_secs_f64();
    Ok(v)
}

/// Past the first problem: every segment file checked on its own, each
/// problem not already reported added (up to `max`), the discarded files
/// listed, and the verdict. A clean log's own segments were all read by
/// [`check`]; then only the discarded files are inspected (the log may be
/// live, and its moving end is not a problem).
fn check_every_segment(dir: &Path, max: usize, v: &mut Verdict) -> Result<()> {
    let started = Instant::now();
    let decoder = Decoder::default();
    let found: Vec<SegmentInspection> = if v.problems.is_empty() {
        let files = segment_files(dir)?;
        let mut out = Vec::new();
        for f in files.iter().filter(|f| f.discarded) {
            out.push(inspect_segment(
                f,
                Context::default(),
                decoder,
                max,
                |_| {},
            )?);
        }
        out
    } else {
        inspect(dir, decoder, max, |_, _| {})?
    };
    let first = v.problems.first().cloned();
    let mut dedupe_left = true;
    let mut extra: Vec<ProblemOut> = Vec::new();
    let (mut checked, mut unreadable) = (0u64, 0u64);
    for s in &found {
        if s.file.discarded {
            v.discarded.push(DiscardedOut {
                file: s.file.name.clone(),
                frames: s.frames,
                first_lsn: s.first_lsn,
                end_lsn: s.end_lsn,
                bytes_unreadable: s.unreadable_bytes(),
                header_problem: s.header_problem.clone(),
            });
            continue;
        }
        checked += s.bytes_checked;
        unreadable += s.unreadable_bytes();
        // Findings where the reader's own problem is: that problem already
        // says it (a torn tail's judgement covers the whole tail).
        let same_file = first
            .as_ref()
            .filter(|p| p.segment.as_deref() == Some(&s.file.name));
        if let Some(h) = &s.header_problem {
            let said =
                same_file.is_some_and(|p| p.offset == Some(0) || p.class == ProblemClass::TornTail);
            let has_data = s.frames > 0 || !s.unreadable.is_empty();
            if !said && (h != "blank header" || has_data) {
                extra.push(ProblemOut {
                    class: ProblemClass::MidLogCorruption,
                    segment: Some(s.file.name.clone()),
                    offset: Some(0),
                    lsn: s.first_lsn,
                    detail: format!("segment header: {h}"),
                });
            }
        }
        for u in &s.unreadable {
            if let Some(p) = same_file {
                let at_or_after = p.offset.is_some_and(|o| u.end > o);
                if at_or_after && (p.class == ProblemClass::TornTail || dedupe_left) {
                    dedupe_left = false;
                    continue;
                }
            }
            extra.push(ProblemOut {
                class: ProblemClass::MidLogCorruption,
                segment: Some(s.file.name.clone()),
                offset: Some(u.offset),
                lsn: u.lsn,
                detail: format!(
                    "{} ({} bytes unreadable, to offset {})",
                    without_location(&u.detail),
                    u.end - u.offset,
                    u.end
                ),
            });
        }
        v.problems_omitted |= s.stopped_early;
    }
    if found.iter().any(|s| !s.file.discarded) {
        v.bytes_checked = Some(checked);
        v.bytes_unreadable = Some(unreadable);
    }
    v.problems.extend(extra);
    if v.problems.len() > max {
        v.problems.truncate(max);
        v.problems_omitted = true;
    }
    set_verdict(v);
    v.duration_s += started.elapsed().as_secs_f64();
    Ok(())
}

/// The verdict of the problems found: clean, only a torn tail, or damage.
fn set_verdict(v: &mut Verdict) {
    v.ok = v.problems.is_empty();
    v.exit_code = if v.ok {
        exit_for(None)
    } else if v.problems.iter().all(|p| p.class == ProblemClass::TornTail) {
        exit_for(Some(ProblemClass::TornTail))
    } else {
        EXIT_DAMAGED
    };
    v.verdict = verdict_word(v.exit_code);
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
    if v.problems_omitted {
        writeln!(
            out,
            "  PROBLEM   ... and more: the listing stopped at --max-problems"
        )?;
    }
    if let Some(d) = v.bytes_discarded.filter(|&d| d > 0) {
        writeln!(
            out,
            "            {} bytes after the valid end (a write open would discard them)",
            fmt_int(d)
        )?;
    }
    if let (Some(c), Some(u)) = (v.bytes_checked, v.bytes_unreadable) {
        if !v.ok {
            writeln!(
                out,
                "  checked   {} bytes of segment data, {} unreadable",
                fmt_int(c),
                fmt_int(u)
            )?;
        }
    }
    for d in &v.discarded {
        let range = match (d.first_lsn, d.end_lsn) {
            (Some(a), Some(b)) => format!(" (LSN {a}..{b})"),
            _ => String::new(),
        };
        writeln!(
            out,
            "  DISCARDED {}: moved aside by a repair, not part of the log; {} valid frames{range}, {} bytes unreadable{}",
            d.file,
            fmt_int(d.frames),
            fmt_int(d.bytes_unreadable),
            d.header_problem.as_ref().map(|h| format!(", header: {h}")).unwrap_or_default()
        )?;
    }
    if !v.discarded.is_empty() {
        writeln!(
            out,
            "            `walctl salvage {} NEW_DIR` extracts their committed transactions",
            v.dir
        )?;
    }
    let speed = match v.bytes {
        Some(b) if v.duration_s > 0.0 && b > 0 => {
            format!(", {}/s", fmt_bytes(b as f64 / v.duration_s))
        }
        _ => String::new(),
    };
    let n = v.problems.len();
    let plural = if n == 1 { "" } else { "s" };
    match v.verdict {
        "OK" => writeln!(
            out,
            "  result    OK: every header and frame checks (CRC-32C, layout, LSN order) in {}{speed}",
            fmt_secs(v.duration_s)
        )?,
        "TORN TAIL" => writeln!(
            out,
            "  result    TORN TAIL: the log is consistent up to its valid end; what follows is what a crash leaves (a write open cuts it)"
        )?,
        _ => writeln!(out, "  result    DAMAGED: {n} problem{plural} found")?,
    }
    Ok(())
}
