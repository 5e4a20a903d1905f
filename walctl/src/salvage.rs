//! `walctl salvage SRC DEST`: every valid committed transaction of a
//! damaged log, discarded segments included, copied into a new log.
//!
//! SRC is only read ([`durability::recovery::inspect`]: every segment file,
//! live and `*.discarded-*`, checked on its own, past every bad frame); no
//! byte of it changes. Every valid frame is collected by LSN (where two
//! files hold a frame at the same LSN, the log's own file wins over a
//! discarded one: its history is the one the log went on with), then read
//! in LSN order and assembled as replay does ([`durability::Txn`]): a
//! BeginTxn, the Writes and Deletes of its run that follow, and the
//! CommitTxn with its txn id; a Write or Delete of a run with no open
//! transaction is a standalone write. Each committed transaction and
//! standalone write is appended to the new log at DEST, in commit order,
//! through the public [`Wal`] API (`append_txn_at` keeps its BeginTxn
//! timestamp), so DEST is a valid log `walctl replay` reads.
//!
//! Where the frames have a gap (unreadable bytes, a missing file, the
//! start of the readable data above LSN 0), more is needed than replay
//! asks, because a transaction may have lost frames in it:
//! - a transaction open at the gap is dropped (counted as cut);
//! - a run's Writes, Deletes and transaction ends after the gap are
//!   skipped until that run's next BeginTxn (they may belong to a
//!   transaction begun in the gap);
//! - a unit (a batch written as one) broken by the gap is dropped whole.
//!
//! Frames inside a range a Truncate record deletes are left out, as
//! replay leaves them out. Checkpoint, Truncate and Raft entries are not
//! copied (counted). Everything is held in memory: about the size of
//! SRC's valid frames.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use durability::recovery::inspect::{inspect, SegmentInspection};
use durability::{Config, Decoder, Op, RunId, Wal, WalEntry};

use crate::common::{check_dir, fmt_int, without_location, EXIT_OK};

/// Arguments of `walctl salvage`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The damaged log directory (only read).
    pub src: PathBuf,
    /// The new log's directory: must not exist, or be empty.
    pub dest: PathBuf,
}

/// One valid frame of SRC.
struct Found {
    len: u64,
    continues: bool,
    entry: WalEntry,
}

/// What salvage did and left out.
#[derive(Debug, Default)]
struct Tally {
    committed: u64,
    standalone: u64,
    aborted: u64,
    /// Begun and never ended (or replaced by a later BeginTxn of the run).
    incomplete: u64,
    /// Open at a gap in the frames: dropped.
    cut: u64,
    /// Entries after a gap of a run with no BeginTxn since.
    uncertain: u64,
    /// Frames of units broken by a gap.
    broken_unit: u64,
    /// Frames at LSNs another file's frame already covers.
    overlapping: u64,
    /// Frames a Truncate record deletes.
    truncated: u64,
    /// Checkpoint, Truncate and Raft entries (not copied).
    other: u64,
}

struct OpenTxn {
    txn_id: u64,
    timestamp: u64,
    ops: Vec<WalEntry>,
}

/// The replay rule, with the gap rule of the module docs, writing what it
/// assembles into the new log.
struct Assembler<'w> {
    wal: &'w Wal,
    open: HashMap<RunId, OpenTxn>,
    /// Runs with a BeginTxn since the last gap.
    certain: HashSet<RunId>,
    after_gap: bool,
    t: Tally,
}

impl Assembler<'_> {
    fn gap(&mut self) {
        self.t.cut += self.open.len() as u64;
        self.open.clear();
        self.certain.clear();
        self.after_gap = true;
    }

    fn uncertain(&self, run: &RunId) -> bool {
        self.after_gap && !self.certain.contains(run)
    }

    fn feed(&mut self, e: WalEntry) -> Result<()> {
        match e {
            WalEntry::Write { run_id, .. } | WalEntry::Delete { run_id, .. } => {
                if let Some(o) = self.open.get_mut(&run_id) {
                    o.ops.push(e);
                } else if self.uncertain(&run_id) {
                    self.t.uncertain += 1;
                } else {
                    self.wal.append_entry(e.as_borrowed())?;
                    self.t.standalone += 1;
                }
            }
            WalEntry::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            } => {
                self.certain.insert(run_id);
                let new = OpenTxn {
                    txn_id,
                    timestamp,
                    ops: Vec::new(),
                };
                if self.open.insert(run_id, new).is_some() {
                    self.t.incomplete += 1;
                }
            }
            WalEntry::CommitTxn { txn_id, run_id } | WalEntry::AbortTxn { txn_id, run_id } => {
                let commit = matches!(e, WalEntry::CommitTxn { .. });
                if self.open.get(&run_id).is_none_or(|o| o.txn_id != txn_id) {
                    if self.uncertain(&run_id) {
                        self.t.uncertain += 1;
                    }
                    return Ok(());
                }
                let Some(o) = self.open.remove(&run_id) else {
                    return Ok(());
                };
                if commit {
                    self.commit(run_id, o)?;
                } else {
                    self.t.aborted += 1;
                }
            }
            WalEntry::Checkpoint { .. } | WalEntry::Truncate { .. } | WalEntry::Raft { .. } => {
                self.t.other += 1;
            }
        }
        Ok(())
    }

    fn commit(&mut self, run: RunId, o: OpenTxn) -> Result<()> {
        let ops: Vec<Op<'_>> = o
            .ops
            .iter()
            .filter_map(|e| match e {
                WalEntry::Write {
                    key,
                    value,
                    version,
                    ..
                } => Some(Op::Write {
                    key,
                    value,
                    version: *version,
                }),
                WalEntry::Delete { key, version, .. } => Some(Op::Delete {
                    key,
                    version: *version,
                }),
                _ => None,
            })
            .collect();
        self.wal
            .append_txn_at(run, o.txn_id, o.timestamp, &ops)
            .with_context(|| format!("cannot write transaction {} of run {run}", o.txn_id))?;
        self.t.committed += 1;
        Ok(())
    }
}

pub fn run(a: Args) -> Result<u8> {
    check_dir(&a.src)?;
    check_dest(&a.dest)?;
    let mut frames: BTreeMap<u64, Found> = BTreeMap::new();
    let mut overlapping = 0u64;
    let found = inspect(&a.src, Decoder::default(), usize::MAX, |_, f| {
        if frames.contains_key(&f.lsn) {
            overlapping += 1;
            return;
        }
        frames.insert(
            f.lsn,
            Found {
                len: f.len as u64,
                continues: f.continues,
                entry: f.entry.to_owned(),
            },
        );
    })
    .with_context(|| format!("cannot read the log in {}", a.src.display()))?;
    if found.is_empty() {
        bail!(
            "{} is not a log: it holds no segment files (named like 00000000000000000000.wal)",
            a.src.display()
        );
    }
    let deleted: Vec<(u64, u64)> = frames
        .iter()
        .filter_map(|(&lsn, f)| match f.entry {
            WalEntry::Truncate { from } if from < lsn => Some((from, lsn)),
            _ => None,
        })
        .collect();

    std::fs::create_dir_all(&a.dest)
        .with_context(|| format!("cannot create {}", a.dest.display()))?;
    let wal = Wal::open(&a.dest, Config::default())
        .with_context(|| format!("cannot create a log in {}", a.dest.display()))?;
    let mut asm = Assembler {
        wal: &wal,
        open: HashMap::new(),
        certain: HashSet::new(),
        after_gap: false,
        t: Tally {
            overlapping,
            ..Tally::default()
        },
    };
    let mut end: Option<u64> = None;
    let mut unit: Vec<WalEntry> = Vec::new();
    for (lsn, f) in frames {
        match end {
            Some(e) if lsn < e => {
                asm.t.overlapping += 1;
                continue;
            }
            Some(e) if lsn == e => {}
            // A gap, or readable data that starts above LSN 0.
            _ if lsn > 0 => {
                asm.t.broken_unit += unit.len() as u64;
                unit.clear();
                asm.gap();
            }
            _ => {}
        }
        end = Some(lsn + f.len);
        if deleted.iter().any(|&(from, at)| lsn >= from && lsn < at) {
            asm.t.truncated += 1;
            continue;
        }
        unit.push(f.entry);
        if !f.continues {
            for e in unit.drain(..) {
                asm.feed(e)?;
            }
        }
    }
    asm.t.broken_unit += unit.len() as u64;
    asm.t.incomplete += asm.open.len() as u64;
    let end_lsn = wal.end_lsn();
    let t = std::mem::take(&mut asm.t);
    wal.sync()
        .with_context(|| format!("cannot sync the new log in {}", a.dest.display()))?;
    wal.close()
        .with_context(|| format!("cannot close the new log in {}", a.dest.display()))?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    print_report(&mut out, &a, &found, &t, end_lsn)?;
    out.flush()?;
    Ok(EXIT_OK)
}

/// DEST must be new: absent, or an empty directory.
fn check_dest(dest: &Path) -> Result<()> {
    match std::fs::metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => bail!("cannot access {}: {e}", dest.display()),
        Ok(m) if !m.is_dir() => bail!("{} exists and is not a directory", dest.display()),
        Ok(_) => {
            let mut rd = std::fs::read_dir(dest)
                .with_context(|| format!("cannot read {}", dest.display()))?;
            if rd.next().is_some() {
                bail!(
                    "{} is not empty: salvage writes only into a new log (give a new or empty directory)",
                    dest.display()
                );
            }
            Ok(())
        }
    }
}

fn print_report(
    out: &mut impl Write,
    a: &Args,
    found: &[SegmentInspection],
    t: &Tally,
    end_lsn: u64,
) -> Result<()> {
    let discarded = found.iter().filter(|s| s.file.discarded).count();
    let frames: u64 = found.iter().map(|s| s.frames).sum();
    let unreadable: u64 = found.iter().map(|s| s.unreadable_bytes()).sum();
    let ranges: usize = found.iter().map(|s| s.unreadable.len()).sum();
    writeln!(out, "salvage {} -> {}", a.src.display(), a.dest.display())?;
    writeln!(
        out,
        "  read      {} segment files ({discarded} discarded): {} valid frames, {} bytes unreadable in {ranges} ranges",
        found.len(),
        fmt_int(frames),
        fmt_int(unreadable)
    )?;
    writeln!(
        out,
        "  wrote     {} committed transactions and {} standalone writes (LSN 0..{end_lsn} of the new log)",
        fmt_int(t.committed),
        fmt_int(t.standalone)
    )?;
    writeln!(
        out,
        "  skipped   {} aborted, {} incomplete (never committed), {} cut by a gap (open at unreadable bytes), \
         {} entries of runs whose transaction may have begun in a gap, {} frames of units broken by a gap",
        fmt_int(t.aborted),
        fmt_int(t.incomplete),
        fmt_int(t.cut),
        fmt_int(t.uncertain),
        fmt_int(t.broken_unit)
    )?;
    writeln!(
        out,
        "            {} overlapping frames (another file's history at the same LSN), {} deleted by truncation records, \
         {} checkpoint/truncate/raft entries not copied",
        fmt_int(t.overlapping),
        fmt_int(t.truncated),
        fmt_int(t.other)
    )?;
    for s in found {
        if let Some(h) = &s.header_problem {
            writeln!(out, "  header    {}: {h}", s.file.name)?;
        }
        for u in &s.unreadable {
            let lsn = u.lsn.map(|l| format!(" (LSN {l})")).unwrap_or_default();
            writeln!(
                out,
                "  unreadable {} bytes {}..{}{lsn}: {}",
                s.file.name,
                u.offset,
                u.end,
                without_location(&u.detail)
            )?;
        }
    }
    Ok(())
}
