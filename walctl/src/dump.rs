//! `walctl dump DIR [--run UUID] [--type KIND]... [--from LSN] [--to LSN]
//! [--limit N] [--follow] [--json]`: the entries in log order, one per
//! line, read-only.
//!
//! If reading stops before the end of the files (a torn tail, damage, or an
//! entry that cannot be read), the valid prefix is printed, a final line on
//! stderr says where and why, and the exit status is 3 for a torn tail
//! alone, 1 for damage (the contract of every inspection command).
//!
//! `--follow` keeps printing what another process appends: at the end it
//! opens the log read-only again every 200 ms and goes on from where it
//! stopped (each look is a fresh read-only open, which scans the log: a
//! cost that grows with the log, paid only while idle at its end).

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use durability::format::header::file_name;
use durability::{EntryKind, Error, LogEntry, WalReader};
use serde::Serialize;

use crate::common::{
    describe_entry, exit_for, open_reader, parse_lsn, parse_run, write_json_line, Damaged,
    EntryJson, ProblemOut, EXIT_DAMAGED, EXIT_OK,
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
    /// Stop before this LSN.
    #[arg(long, value_name = "LSN", allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Only entries of these types (BeginTxn, Write, Delete, CommitTxn,
    /// AbortTxn, Checkpoint, Truncate, Raft; any case; repeat or separate
    /// with commas).
    #[arg(long = "type", value_name = "KIND", value_delimiter = ',')]
    pub kinds: Vec<String>,
    /// Print at most this many entries, then stop (exit 0).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// At the end, wait for more entries (another process appending) and
    /// print them as they come; stop with Ctrl-C, or at --limit or --to.
    #[arg(long)]
    pub follow: bool,
    /// One JSON object per line: key and value hex-encoded, and as
    /// `key_utf8`/`value_utf8` when they are valid UTF-8; absent fields null.
    #[arg(long)]
    pub json: bool,
}

/// A dump line's JSON: the entry, plus its key and value as text when they
/// are valid UTF-8.
#[derive(Serialize)]
struct DumpJson<'a> {
    #[serde(flatten)]
    entry: EntryJson,
    key_utf8: Option<&'a str>,
    value_utf8: Option<&'a str>,
}

fn parse_kind(s: &str) -> Result<EntryKind> {
    let t = s.trim();
    EntryKind::ALL
        .into_iter()
        .find(|k| k.name().eq_ignore_ascii_case(t))
        .ok_or_else(|| {
            let names: Vec<&str> = EntryKind::ALL.iter().map(|k| k.name()).collect();
            anyhow::anyhow!(
                "invalid entry type {s:?}: expected one of {}",
                names.join(", ")
            )
        })
}

/// What to print: the filters and bounds of one dump.
struct Filter {
    run: Option<durability::RunId>,
    kinds: Vec<EntryKind>,
    to: Option<u64>,
    limit: Option<u64>,
    json: bool,
}

impl Filter {
    fn wants(&self, e: &LogEntry<'_>) -> bool {
        self.run
            .as_ref()
            .is_none_or(|r| e.entry.run_id_ref() == Some(r))
            && (self.kinds.is_empty() || self.kinds.contains(&e.entry.kind()))
    }

    /// Whether the dump is over once `printed` entries were printed and the
    /// next entry lies at `next`.
    fn done(&self, printed: u64, next: u64) -> bool {
        self.limit.is_some_and(|n| printed >= n) || self.to.is_some_and(|to| next >= to)
    }
}

pub fn run(a: Args) -> Result<u8> {
    let run = a.run.as_deref().map(parse_run).transpose()?;
    let from = a.from.as_deref().map(parse_lsn).transpose()?;
    let to = a.to.as_deref().map(parse_lsn).transpose()?;
    let kinds = a
        .kinds
        .iter()
        .map(|k| parse_kind(k))
        .collect::<Result<Vec<_>>>()?;
    let filter = Filter {
        run,
        kinds,
        to,
        limit: a.limit,
        json: a.json,
    };
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
    if let Some(r) = &filter.run {
        if !a.follow && !reader.runs().contains(r) {
            eprintln!(
                "walctl: note: run {r} has no entries in this log (`walctl stats` lists the runs)"
            );
        }
    }
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut printed = 0u64;
    let mut at = Position {
        next: from,
        exact: from.is_some(),
    };
    let mut stopped = print_from(&reader, &mut at, &filter, &mut out, &mut printed)?;
    if stopped.is_none() {
        if let Some(p) = &reader.recovery_report().problem {
            stopped = Some(ProblemOut::from(p));
        }
    }
    drop(reader);
    // Following: a torn tail is a writer mid-append, not damage; anything
    // else ends the dump as it would without --follow.
    while a.follow
        && stopped
            .as_ref()
            .is_none_or(|p| p.class == durability::ProblemClass::TornTail)
        && !filter.done(printed, at.next.unwrap_or(0))
    {
        out.flush()?;
        std::thread::sleep(Duration::from_millis(200));
        let reader = open_reader(&a.dir)?;
        let snap = reader.snapshot();
        let next = at.next.unwrap_or(0);
        if next < snap.start_lsn() {
            eprintln!(
                "walctl: note: entries {next}..{} were purged while following; going on from LSN {}",
                snap.start_lsn(),
                snap.start_lsn()
            );
            at.next = Some(snap.start_lsn());
        }
        stopped = print_from(&reader, &mut at, &filter, &mut out, &mut printed)?;
    }
    out.flush()?;
    drop(out);
    match stopped {
        Some(p) => {
            eprintln!("walctl: dump stopped early: {}", p.describe());
            Ok(exit_for(Some(p.class)))
        }
        None => Ok(EXIT_OK),
    }
}

/// Where a dump goes on: the next LSN to read (`None`: the log's start),
/// and whether it came from `--from` (then it must be an entry's start).
struct Position {
    next: Option<u64>,
    exact: bool,
}

/// Prints the entries of `reader` from `at` that `filter` wants, until the
/// end, the filter's bound, or a problem (returned). Moves `at` past what
/// it read.
fn print_from(
    reader: &WalReader,
    at: &mut Position,
    filter: &Filter,
    out: &mut impl Write,
    printed: &mut u64,
) -> Result<Option<ProblemOut>> {
    let snap = reader.snapshot();
    let iter = match at.next {
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
    let mut next = at.next.unwrap_or(snap.start_lsn());
    let mut seg_name = (u64::MAX, String::new());
    let mut stopped = None;
    for e in iter {
        if filter.done(*printed, next) {
            break;
        }
        let e = match e {
            Ok(e) => e,
            Err(err) => {
                // Every frame of the snapshot validated when the log was
                // scanned, so a failure at the very first position means
                // `--from` does not point at the start of an entry.
                if at.exact {
                    out.flush()?;
                    bail!("invalid LSN {next}: no entry starts there (use an LSN printed by dump)");
                }
                stopped = Some(ProblemOut::from_error(&err, Some(next)));
                break;
            }
        };
        at.exact = false;
        if filter.to.is_some_and(|to| e.lsn >= to) {
            break;
        }
        next = e.lsn + e.len as u64;
        if !filter.wants(&e) {
            continue;
        }
        *printed += 1;
        if filter.json {
            let line = DumpJson {
                entry: EntryJson::new(&e),
                key_utf8: e.entry.key().and_then(|k| std::str::from_utf8(k).ok()),
                value_utf8: e.entry.value().and_then(|v| std::str::from_utf8(v).ok()),
            };
            write_json_line(out, &line)?;
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
    at.exact = false;
    at.next = Some(next);
    Ok(stopped)
}
