//! `walctl replay DIR --run UUID [--from LSN | --from-checkpoint] [--json]`:
//! the committed transactions of one run, in commit order, read-only (from
//! a position: those that commit at or after it, each whole). Aborted and unfinished transactions are
//! not shown (they are counted at the end, in text mode). A log whose start
//! is above 0 (entries purged, or removed by retention) says so first, so
//! the history shown is never taken for the whole one.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Result;
use durability::{RunId, Txn};
use serde::Serialize;

use crate::common::{
    fmt_int, fmt_micros, note_missing_run, open_reader, parse_lsn, parse_run, report_verdict,
    show_bytes, EntryJson,
};

/// Arguments of `walctl replay`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// The run to replay.
    #[arg(long, value_name = "UUID")]
    pub run: String,
    /// Only the transactions that commit at or after this LSN (each whole,
    /// even if it began before).
    #[arg(
        long,
        value_name = "LSN",
        allow_hyphen_values = true,
        conflicts_with = "from_checkpoint"
    )]
    pub from: Option<String>,
    /// Only the transactions that commit at or after the log's last
    /// checkpoint (what a state saved at that checkpoint lacks).
    #[arg(long)]
    pub from_checkpoint: bool,
    /// One JSON object per transaction per line.
    #[arg(long)]
    pub json: bool,
}

/// The first line of `--json` output when the log does not start at 0.
#[derive(Serialize)]
struct StartJson {
    /// The LSN the log (and so the replay) starts at.
    start_lsn: u64,
    /// Always true: entries before `start_lsn` were purged.
    purged: bool,
}

#[derive(Serialize)]
struct TxnJson {
    run_id: RunId,
    txn_id: Option<u64>,
    timestamp: Option<u64>,
    begin_lsn: u64,
    commit_lsn: u64,
    ops: Vec<EntryJson>,
}

pub fn run(a: Args) -> Result<u8> {
    let run = parse_run(&a.run)?;
    let from = a.from.as_deref().map(parse_lsn).transpose()?;
    let reader = open_reader(&a.dir)?;
    let from = match (from, a.from_checkpoint) {
        (Some(lsn), _) => Some(lsn),
        (None, true) => match reader.last_checkpoint()? {
            Some(cp) => {
                eprintln!(
                    "walctl: from the last checkpoint, at LSN {} (snapshot {}, version {})",
                    cp.lsn, cp.snapshot_id, cp.version
                );
                Some(cp.lsn)
            }
            None => anyhow::bail!("the log holds no checkpoint (--from-checkpoint)"),
        },
        (None, false) => None,
    };
    if !reader.runs().contains(&run) {
        note_missing_run(&reader, run, &a.dir);
    }
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let start = reader.snapshot().start_lsn();
    if start > 0 {
        if a.json {
            serde_json::to_writer(
                &mut out,
                &StartJson {
                    start_lsn: start,
                    purged: true,
                },
            )?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "log starts at LSN {start}: earlier entries were purged; what they held is not shown"
            )?;
        }
    }
    let mut failed: Option<io::Error> = None;
    let mut print = |txn: &Txn<'_, '_>| {
        if failed.is_some() {
            return;
        }
        let r = if a.json {
            write_txn_json(&mut out, txn)
        } else {
            write_txn_text(&mut out, txn)
        };
        if let Err(e) = r {
            failed = Some(e);
        }
    };
    // From a position: the replay builder (transactions open there come
    // whole); otherwise the run's stretches through the reader's index.
    let stats = match from {
        Some(lsn) => reader.replayer().run(run).from(lsn).for_each(&mut print)?,
        None => reader.replay_run(run, &mut print)?,
    };
    if let Some(e) = failed {
        return Err(e.into());
    }
    if !a.json {
        writeln!(
            out,
            "{} committed transactions{} of run {run}; not shown: {} aborted, {} incomplete{}",
            fmt_int(stats.committed),
            if stats.standalone > 0 {
                format!(" and {} standalone writes", fmt_int(stats.standalone))
            } else {
                String::new()
            },
            fmt_int(stats.aborted),
            fmt_int(stats.incomplete),
            if stats.begun_before_start > 0 {
                format!(
                    ", {} begun before the start",
                    fmt_int(stats.begun_before_start)
                )
            } else {
                String::new()
            }
        )?;
    }
    out.flush()?;
    if let Some(p) = &reader.recovery_report().problem {
        eprintln!(
            "walctl: note: the log stops early, at LSN {} ({} in {} at offset {}); later transactions are not shown",
            p.lsn, p.class, p.file, p.offset
        );
    }
    Ok(report_verdict(&reader))
}

fn write_txn_json(out: &mut impl Write, txn: &Txn<'_, '_>) -> io::Result<()> {
    let t = TxnJson {
        run_id: txn.run_id,
        txn_id: txn.txn_id,
        timestamp: txn.timestamp,
        begin_lsn: txn.begin_lsn,
        commit_lsn: txn.commit_lsn,
        ops: txn.ops.iter().map(EntryJson::new).collect(),
    };
    serde_json::to_writer(&mut *out, &t)?;
    out.write_all(b"\n")
}

fn write_txn_text(out: &mut impl Write, txn: &Txn<'_, '_>) -> io::Result<()> {
    let id = txn
        .txn_id
        .map_or_else(|| "(standalone)".to_string(), |t| t.to_string());
    let when = txn.timestamp.map(fmt_micros).unwrap_or_default();
    writeln!(
        out,
        "txn {id:<8} lsn {}..{}  {when}  {} op{}",
        txn.begin_lsn,
        txn.commit_lsn,
        txn.ops.len(),
        if txn.ops.len() == 1 { "" } else { "s" }
    )?;
    for op in txn.ops {
        let x = op.entry;
        let key = show_bytes(x.key().unwrap_or_default(), 60);
        match x.value() {
            Some(v) => writeln!(
                out,
                "    {:<6} v{:<6} {key} = {}",
                x.kind().name(),
                x.version().unwrap_or(0),
                show_bytes(v, 80)
            )?,
            None => writeln!(
                out,
                "    {:<6} v{:<6} {key}",
                x.kind().name(),
                x.version().unwrap_or(0)
            )?,
        }
    }
    Ok(())
}
