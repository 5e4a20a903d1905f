//! `walctl dump DIR [--run UUID] [--from LSN] [--json]`: every entry in log
//! order, one per line, read-only.
//!
//! If reading stops before the end of the files (a torn tail, damage, or an
//! entry that cannot be read), the valid prefix is printed, a final line on
//! stderr says where and why, and the exit status is 1.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Result};
use durability::format::header::file_name;
use durability::Error;

use crate::common::{
    describe_entry, open_reader, parse_lsn, parse_run, write_json_line, Damaged, EntryJson,
    ProblemOut, EXIT_DAMAGED, EXIT_OK,
};

/// Arguments of `walctl dump`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// Only the entries of this run.
    #[arg(long, value_name = "UUID")]
    pub run: Option<String>,
    /// Start at this LSN (the position of an entry, as printed by dump).
    #[arg(long, value_name = "LSN", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// One JSON object per line (key and value hex-encoded, absent fields null).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<u8> {
    let run = a.run.as_deref().map(parse_run).transpose()?;
    let from = a.from.as_deref().map(parse_lsn).transpose()?;
    let reader = match open_reader(&a.dir) {
        Ok(r) => r,
        Err(e) => match e.downcast::<Damaged>() {
            Ok(d) => {
                eprintln!(
                    "walctl: dump stopped before the first entry: {}",
                    d.problem.describe()
                );
                return Ok(EXIT_DAMAGED);
            }
            Err(e) => return Err(e),
        },
    };
    if let Some(r) = &run {
        if !reader.runs().contains(r) {
            eprintln!(
                "walctl: note: run {r} has no entries in this log (`walctl stats` lists the runs)"
            );
        }
    }
    let snap = reader.snapshot();
    let iter = match from {
        None => snap.iter(),
        Some(lsn) => match snap.iter_from(lsn) {
            Ok(it) => it,
            Err(Error::BadLsn { .. }) => bail!(
                "invalid LSN {lsn}: outside the log, which holds LSN {}..{}",
                snap.start_lsn(),
                snap.end_lsn()
            ),
            Err(e) => return Err(e.into()),
        },
    };

    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut seg_name = (u64::MAX, String::new());
    let mut stopped: Option<ProblemOut> = None;
    let mut next = from.unwrap_or(snap.start_lsn());
    let mut first = true;
    for e in iter {
        let e = match e {
            Ok(e) => e,
            Err(err) => {
                // Every frame of the snapshot validated when the log was
                // scanned, so a failure at the very first position means
                // `--from` does not point at the start of an entry.
                if first && from.is_some() {
                    out.flush()?;
                    bail!("invalid LSN {next}: no entry starts there (use an LSN printed by dump)");
                }
                stopped = Some(ProblemOut::from_error(&err, Some(next)));
                break;
            }
        };
        first = false;
        next = e.lsn + e.len as u64;
        if let Some(r) = &run {
            if e.entry.run_id_ref() != Some(r) {
                continue;
            }
        }
        if a.json {
            write_json_line(&mut out, &EntryJson::new(&e))?;
        } else {
            if seg_name.0 != e.segment {
                seg_name = (e.segment, file_name(e.segment));
            }
            writeln!(
                out,
                "lsn {:<12} {}:{:<10} {:<10} {}",
                e.lsn,
                seg_name.1,
                e.offset,
                e.entry.kind().name(),
                describe_entry(&e.entry, 80)
            )?;
        }
    }
    out.flush()?;
    drop(out);
    if stopped.is_none() {
        if let Some(p) = &reader.recovery_report().problem {
            stopped = Some(ProblemOut::from(p));
        }
    }
    match stopped {
        Some(p) => {
            eprintln!("walctl: dump stopped early: {}", p.describe());
            Ok(EXIT_DAMAGED)
        }
        None => Ok(EXIT_OK),
    }
}
