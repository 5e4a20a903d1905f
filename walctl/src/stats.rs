//! `walctl stats DIR [--json]`: a summary of a log, read-only.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use durability::format::header::{file_name, parse_file_name};
use durability::os::space::{space_reservation, SpaceReservation};
use durability::{EntryKind, RunId};
use serde::Serialize;

use crate::common::{
    fmt_bytes, fmt_int, fmt_micros, fmt_secs, open_reader, progress, report_verdict,
    write_json_line, ProblemOut, EXIT_DAMAGED,
};

/// Arguments of `walctl stats`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default, Serialize)]
struct ByType {
    #[serde(rename = "BeginTxn")]
    begin_txn: u64,
    #[serde(rename = "Write")]
    write: u64,
    #[serde(rename = "Delete")]
    delete: u64,
    #[serde(rename = "CommitTxn")]
    commit_txn: u64,
    #[serde(rename = "AbortTxn")]
    abort_txn: u64,
    #[serde(rename = "Checkpoint")]
    checkpoint: u64,
    #[serde(rename = "Truncate")]
    truncate: u64,
    #[serde(rename = "Raft")]
    raft: u64,
}

impl ByType {
    fn add(&mut self, k: EntryKind) {
        *match k {
            EntryKind::BeginTxn => &mut self.begin_txn,
            EntryKind::Write => &mut self.write,
            EntryKind::Delete => &mut self.delete,
            EntryKind::CommitTxn => &mut self.commit_txn,
            EntryKind::AbortTxn => &mut self.abort_txn,
            EntryKind::Checkpoint => &mut self.checkpoint,
            EntryKind::Truncate => &mut self.truncate,
            EntryKind::Raft => &mut self.raft,
        } += 1;
    }
}

#[derive(Debug, Serialize)]
struct RunStats {
    run_id: RunId,
    entries: u64,
    bytes: u64,
    txns_begun: u64,
    commits: u64,
    aborts: u64,
    first_lsn: u64,
    last_lsn: u64,
}

#[derive(Debug, Serialize)]
struct Stats {
    dir: String,
    segments: usize,
    first_segment: Option<String>,
    last_segment: Option<String>,
    /// Segment files in the directory (the log's, prepared blanks, others).
    segment_files: usize,
    /// Bytes of entries (frames) in the valid log.
    bytes: u64,
    /// Bytes the log's segment files occupy.
    file_bytes: u64,
    /// What a full disk does to a writer here (see `durability::os::space`).
    space_reservation: SpaceReservation,
    entries: u64,
    entries_by_type: ByType,
    runs: usize,
    committed_txns: u64,
    aborted_txns: u64,
    incomplete_txns: u64,
    first_lsn: u64,
    last_lsn: Option<u64>,
    end_lsn: u64,
    first_timestamp: Option<String>,
    last_timestamp: Option<String>,
    first_timestamp_us: Option<u64>,
    last_timestamp_us: Option<u64>,
    time_span_s: Option<f64>,
    bytes_discarded: u64,
    problem: Option<ProblemOut>,
    run_list: Vec<RunStats>,
}

pub fn run(a: Args) -> Result<u8> {
    let reader = open_reader(&a.dir)?;
    let report = reader.recovery_report();
    let snap = reader.snapshot();
    let seqs: Vec<u64> = snap.segment_seqs().collect();

    let mut file_bytes = 0;
    for &s in &seqs {
        if let Ok(m) = std::fs::metadata(a.dir.join(file_name(s))) {
            file_bytes += m.len();
        }
    }
    let segment_files = std::fs::read_dir(&a.dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_str().and_then(parse_file_name).is_some())
                .count()
        })
        .unwrap_or(0);

    let space = space_reservation(&a.dir)
        .with_context(|| format!("cannot tell how {} reserves disk space", a.dir.display()))?;

    let mut by_type = ByType::default();
    let mut entries = 0u64;
    let mut runs: Vec<RunStats> = Vec::new();
    let mut run_pos: HashMap<RunId, usize> = HashMap::new();
    let mut ts: Option<(u64, u64)> = None;
    let mut problem = report.problem.as_ref().map(ProblemOut::from);
    let mut read_failed = false;
    let pb = progress(snap.len_bytes(), "reading");
    let mut shown = snap.start_lsn();
    for e in snap.iter() {
        let e = match e {
            Ok(e) => e,
            Err(err) => {
                problem = Some(ProblemOut::from_error(&err, None));
                read_failed = true;
                break;
            }
        };
        let x = e.entry;
        let kind = x.kind();
        entries += 1;
        by_type.add(kind);
        let len = e.len as u64;
        if let Some(run) = x.run_id_ref() {
            let i = *run_pos.entry(*run).or_insert_with(|| {
                runs.push(RunStats {
                    run_id: *run,
                    entries: 0,
                    bytes: 0,
                    txns_begun: 0,
                    commits: 0,
                    aborts: 0,
                    first_lsn: e.lsn,
                    last_lsn: e.lsn,
                });
                runs.len() - 1
            });
            let r = &mut runs[i];
            r.entries += 1;
            r.bytes += len;
            r.last_lsn = e.lsn;
            match kind {
                EntryKind::BeginTxn => r.txns_begun += 1,
                EntryKind::CommitTxn => r.commits += 1,
                EntryKind::AbortTxn => r.aborts += 1,
                _ => {}
            }
        }
        if let Some(t) = x.timestamp() {
            ts = Some(match ts {
                None => (t, t),
                Some((lo, hi)) => (lo.min(t), hi.max(t)),
            });
        }
        if e.lsn - shown >= 1 << 20 {
            pb.inc(e.lsn - shown);
            shown = e.lsn;
        }
    }
    pb.finish_and_clear();

    let s = Stats {
        dir: a.dir.display().to_string(),
        segments: report.segments,
        first_segment: seqs.first().map(|&s| file_name(s)),
        last_segment: seqs.last().map(|&s| file_name(s)),
        segment_files,
        bytes: snap.len_bytes(),
        file_bytes,
        space_reservation: space,
        entries,
        entries_by_type: by_type,
        runs: runs.len(),
        committed_txns: report.committed_txns,
        aborted_txns: report.aborted_txns,
        incomplete_txns: report.incomplete_txns,
        first_lsn: snap.start_lsn(),
        last_lsn: report.last_lsn,
        end_lsn: snap.end_lsn(),
        first_timestamp: ts.map(|t| fmt_micros(t.0)),
        last_timestamp: ts.map(|t| fmt_micros(t.1)),
        first_timestamp_us: ts.map(|t| t.0),
        last_timestamp_us: ts.map(|t| t.1),
        time_span_s: ts.map(|t| (t.1 - t.0) as f64 / 1e6),
        bytes_discarded: report.bytes_discarded,
        problem,
        run_list: runs,
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if a.json {
        write_json_line(&mut out, &s)?;
    } else {
        print_text(&s, &mut out)?;
    }
    out.flush()?;
    drop(out);
    if read_failed {
        if let Some(p) = &s.problem {
            eprintln!("walctl: DAMAGED: reading stopped early: {}", p.describe());
        }
        return Ok(EXIT_DAMAGED);
    }
    Ok(report_verdict(&reader))
}

fn print_text(s: &Stats, out: &mut impl Write) -> Result<()> {
    writeln!(out, "log        {}", s.dir)?;
    let names = match (&s.first_segment, &s.last_segment) {
        (Some(a), Some(b)) if a != b => format!(" ({a} .. {b})"),
        (Some(a), _) => format!(" ({a})"),
        _ => String::new(),
    };
    writeln!(
        out,
        "segments   {}{names}, {} on disk",
        s.segments,
        fmt_bytes(s.file_bytes as f64)
    )?;
    writeln!(
        out,
        "bytes      {} of entries ({})",
        fmt_int(s.bytes),
        fmt_bytes(s.bytes as f64)
    )?;
    let t = &s.entries_by_type;
    writeln!(
        out,
        "entries    {}: BeginTxn {}, Write {}, Delete {}, CommitTxn {}, AbortTxn {}, Checkpoint {}",
        fmt_int(s.entries),
        fmt_int(t.begin_txn),
        fmt_int(t.write),
        fmt_int(t.delete),
        fmt_int(t.commit_txn),
        fmt_int(t.abort_txn),
        fmt_int(t.checkpoint)
    )?;
    if t.truncate + t.raft > 0 {
        writeln!(
            out,
            "           Truncate {}, Raft {}",
            fmt_int(t.truncate),
            fmt_int(t.raft)
        )?;
    }
    writeln!(out, "runs       {}", s.runs)?;
    writeln!(
        out,
        "txns       {} committed, {} aborted, {} incomplete",
        fmt_int(s.committed_txns),
        fmt_int(s.aborted_txns),
        fmt_int(s.incomplete_txns)
    )?;
    let last = s
        .last_lsn
        .map_or_else(|| "-".to_string(), |l| l.to_string());
    writeln!(
        out,
        "lsn        first {}, last {last}, end {}",
        s.first_lsn, s.end_lsn
    )?;
    match (&s.first_timestamp, &s.last_timestamp, s.time_span_s) {
        (Some(a), Some(b), Some(span)) => {
            writeln!(out, "time       {a} .. {b} ({})", fmt_secs(span))?
        }
        _ => writeln!(out, "time       - (no BeginTxn)")?,
    }
    writeln!(
        out,
        "space      {}",
        match s.space_reservation {
            SpaceReservation::Reserved => "reserved: a full disk fails cleanly (ENOSPC)",
            SpaceReservation::NoCow =>
                "nocow (btrfs, NOCOW segments): a full disk fails cleanly (ENOSPC)",
            SpaceReservation::NotReserved =>
                "not-reserved: copy-on-write filesystem, segment space is not reserved",
        }
    )?;
    if s.space_reservation == SpaceReservation::NotReserved {
        // What a full disk does to writes through the map differs by system
        // (DESIGN.md §5, "A full disk").
        let what = if cfg!(target_vendor = "apple") {
            "a full disk here is expected to fail a sync and poison the writer, not to fail segment creation; keep space free"
        } else {
            "a full disk here may kill a writer with SIGBUS instead of an error; keep space free"
        };
        writeln!(out, "warning    {what}")?;
    }
    if let Some(p) = &s.problem {
        writeln!(out, "problem    {}", p.describe())?;
        writeln!(
            out,
            "           {} bytes after the valid end",
            fmt_int(s.bytes_discarded)
        )?;
    }
    if !s.run_list.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{:<36}  {:>9}  {:>10}  {:>8}  {:>7}  {:>6}",
            "run", "entries", "bytes", "begun", "commits", "aborts"
        )?;
        const SHOW: usize = 20;
        for r in s.run_list.iter().take(SHOW) {
            writeln!(
                out,
                "{:<36}  {:>9}  {:>10}  {:>8}  {:>7}  {:>6}",
                r.run_id.to_string(),
                fmt_int(r.entries),
                fmt_bytes(r.bytes as f64),
                fmt_int(r.txns_begun),
                fmt_int(r.commits),
                fmt_int(r.aborts)
            )?;
        }
        if s.run_list.len() > SHOW {
            writeln!(
                out,
                "... and {} more runs (--json lists them all)",
                s.run_list.len() - SHOW
            )?;
        }
    }
    Ok(())
}
