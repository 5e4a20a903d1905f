//! `walctl diff DIR --run A --run B [--json]`: the keys whose final state
//! (after each run's committed transactions) differs between two runs, both
//! sides shown, in key order. Read-only.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Result};
use durability::{KeyDiff, KeyState, RunId};
use serde::Serialize;

use crate::common::{
    fmt_int, note_missing_run, open_reader, parse_run, report_verdict, show_bytes, write_json_line,
};

/// Arguments of `walctl diff`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// A run to compare; give exactly two: `--run A --run B`.
    #[arg(long = "run", value_name = "UUID", required = true)]
    pub runs: Vec<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct SideJson {
    /// "value", "deleted" or "absent".
    state: &'static str,
    /// The value, hex-encoded, when there is one.
    value: Option<String>,
}

#[derive(Serialize)]
struct DiffJson {
    key: String,
    a: SideJson,
    b: SideJson,
}

#[derive(Serialize)]
struct Output {
    run_a: RunId,
    run_b: RunId,
    differences: usize,
    diffs: Vec<DiffJson>,
}

fn side(s: &KeyState) -> SideJson {
    match s {
        KeyState::Absent => SideJson {
            state: "absent",
            value: None,
        },
        KeyState::Deleted => SideJson {
            state: "deleted",
            value: None,
        },
        KeyState::Value(v) => SideJson {
            state: "value",
            value: Some(hex::encode(v)),
        },
    }
}

fn show(s: &KeyState) -> String {
    match s {
        KeyState::Absent => "(absent)".into(),
        KeyState::Deleted => "(deleted)".into(),
        KeyState::Value(v) => show_bytes(v, 60),
    }
}

pub fn run(a: Args) -> Result<u8> {
    if a.runs.len() != 2 {
        bail!(
            "diff needs exactly two runs (--run A --run B), got {}",
            a.runs.len()
        );
    }
    let ra = parse_run(&a.runs[0])?;
    let rb = parse_run(&a.runs[1])?;
    let reader = open_reader(&a.dir)?;
    let known = reader.runs();
    for r in [ra, rb] {
        if !known.contains(&r) {
            note_missing_run(&reader, r, &a.dir);
        }
    }
    let diffs: Vec<KeyDiff> = reader.diff_runs(ra, rb)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if a.json {
        let o = Output {
            run_a: ra,
            run_b: rb,
            differences: diffs.len(),
            diffs: diffs
                .iter()
                .map(|d| DiffJson {
                    key: hex::encode(&d.key),
                    a: side(&d.a),
                    b: side(&d.b),
                })
                .collect(),
        };
        write_json_line(&mut out, &o)?;
    } else {
        writeln!(out, "a = {ra}")?;
        writeln!(out, "b = {rb}")?;
        for d in &diffs {
            writeln!(out, "{}", show_bytes(&d.key, 60))?;
            writeln!(out, "    a: {}", show(&d.a))?;
            writeln!(out, "    b: {}", show(&d.b))?;
        }
        writeln!(
            out,
            "{} key{} differ{}",
            fmt_int(diffs.len() as u64),
            if diffs.len() == 1 { "" } else { "s" },
            if diffs.len() == 1 { "s" } else { "" }
        )?;
    }
    out.flush()?;
    if let Some(p) = &reader.recovery_report().problem {
        eprintln!(
            "walctl: note: the log stops early, at LSN {} ({} in {} at offset {}); later transactions are not included",
            p.lsn, p.class, p.file, p.offset
        );
    }
    Ok(report_verdict(&reader))
}
