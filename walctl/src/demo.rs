//! `walctl demo [--dir DIR]`: the log end to end, in one command.
//!
//! 1. Twelve agent runs (six tasks, two attempts each) write their steps as
//!    transactions from four threads sharing one log: thoughts, tool calls,
//!    observations, plans, memories, scratch keys that are later deleted,
//!    the odd aborted transaction, and a checkpoint.
//! 2. A child process (this executable, `walctl __crash-writer`) appends to
//!    the log and is killed with SIGKILL in the middle of its writes
//!    (`crash.rs`).
//! 3. The log is reopened with `Wal::open`, which recovers it; the recovery
//!    report is printed and every commit the child acknowledged is checked.
//! 4. One run is replayed, 5. two attempts at the same task are diffed, and
//!    6. the log is verified read-only, as `walctl verify` does.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use durability::format::header::{now_micros, parse_file_name};
use durability::{BorrowedEntry, Config, KeyState, Op, RunId, SyncMode, Txn, Wal};

use crate::common::{
    fmt_bytes, fmt_count, fmt_int, fmt_secs, fmt_size, progress, show_bytes, EXIT_DAMAGED, EXIT_OK,
};
use crate::crash::Crash;

/// Segment size of the demo log: small enough that the demo rotates
/// through several segments.
pub(crate) const SEGMENT_SIZE: u64 = 8 << 20;
/// Threads the agent runs are spread over.
const THREADS: usize = 4;
/// Tasks; each gets two runs (attempts).
const TASKS: [&str; 6] = [
    "triage-ticket-4821",
    "summarise-q3-report",
    "plan-trip-lisbon",
    "refactor-billing-module",
    "answer-support-email",
    "research-battery-chemistry",
];
const TOOLS: [&str; 7] = [
    "web.search",
    "web.fetch",
    "code.run",
    "files.read",
    "calendar.lookup",
    "email.draft",
    "sql.query",
];
const TOPICS: [&str; 4] = ["user_prefs", "constraints", "findings", "open_questions"];
const WORDS: [&str; 64] = [
    "the", "agent", "checks", "latency", "budget", "report", "invoice", "customer", "flight",
    "hotel", "cathode", "lithium", "module", "refactor", "test", "fails", "passes", "because",
    "cache", "retry", "timeout", "schema", "column", "quarter", "revenue", "growth", "risk",
    "summary", "draft", "reply", "ticket", "priority", "owner", "deadline", "museum", "tram",
    "weather", "price", "compare", "source", "cites", "evidence", "claims", "unclear", "verify",
    "next", "step", "plan", "search", "result", "page", "error", "fixed", "patch", "review",
    "approve", "merge", "ship", "monday", "budget", "limit", "users", "prefer", "concise",
];

/// Arguments of `walctl demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to build the demo log; deleted and recreated on each run (only
    /// if it holds nothing but log files).
    #[arg(long, default_value = "./walctl-demo")]
    pub dir: PathBuf,
    /// Steps per agent run (for quick tests).
    #[arg(long, default_value_t = 1500, hide = true)]
    pub steps: u64,
}

/// A small, fast, deterministic PRNG (xorshift64*).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }

    pub(crate) fn words(&mut self, n: u64, out: &mut String) {
        for i in 0..n {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(self.pick(&WORDS));
        }
    }
}

/// One simulated agent run.
struct Agent {
    run: RunId,
    task: usize,
    attempt: usize,
    steps: u64,
    step: u64,
    txn: u64,
    version: u64,
    rng: Rng,
}

/// Counts from the simulation.
#[derive(Default)]
struct Counts {
    committed: AtomicU64,
    aborted: AtomicU64,
    checkpoints: AtomicU64,
}

impl Agent {
    fn done(&self) -> bool {
        self.step >= self.steps
    }

    /// Writes one step of the run as a transaction (sometimes preceded by an
    /// aborted one).
    fn step(&mut self, wal: &Wal, counts: &Counts) -> Result<()> {
        let s = self.step;
        let mut kv: Vec<(String, Option<String>)> = Vec::with_capacity(8);
        let mut v = String::with_capacity(512);

        if self.rng.below(40) == 0 {
            // A tool call the agent's policy rejected: begun, then aborted.
            self.txn += 1;
            self.version += 1;
            let key = format!("run/{s}/tool_call");
            let value = format!(
                "{{\"tool\":\"code.run\",\"args\":{{\"cmd\":\"rm -rf build\"}},\"rejected\":true,\"step\":{s}}}"
            );
            wal.append_entry(BorrowedEntry::BeginTxn {
                txn_id: self.txn,
                run_id: self.run,
                timestamp: now_micros(),
            })?;
            wal.append_entry(BorrowedEntry::Write {
                run_id: self.run,
                key: key.as_bytes(),
                value: value.as_bytes(),
                version: self.version,
            })?;
            wal.append_entry(BorrowedEntry::AbortTxn {
                txn_id: self.txn,
                run_id: self.run,
            })?;
            counts.aborted.fetch_add(1, Ordering::Relaxed);
        }

        let n = 6 + self.rng.below(14);
        write!(v, "{{\"step\":{s},\"thought\":\"")?;
        self.rng.words(n, &mut v);
        v.push_str("\"}");
        kv.push((format!("run/{s}/thought"), Some(std::mem::take(&mut v))));

        let tool = self.rng.pick(&TOOLS);
        write!(v, "{{\"tool\":\"{tool}\",\"args\":{{\"query\":\"")?;
        let n = 2 + self.rng.below(5);
        self.rng.words(n, &mut v);
        write!(v, "\",\"top_k\":{}}}}}", 3 + self.rng.below(8))?;
        kv.push((format!("run/{s}/tool_call"), Some(std::mem::take(&mut v))));

        write!(
            v,
            "{{\"status\":200,\"latency_ms\":{},\"content\":\"",
            20 + self.rng.below(900)
        )?;
        let n = 30 + self.rng.below(200);
        self.rng.words(n, &mut v);
        v.push_str("\"}");
        kv.push((format!("run/{s}/observation"), Some(std::mem::take(&mut v))));

        if s % 5 == 0 {
            write!(
                v,
                "{{\"task\":\"{}\",\"done\":{s},\"next\":[\"",
                TASKS[self.task]
            )?;
            let n = 2 + self.rng.below(4);
            self.rng.words(n, &mut v);
            v.push_str("\",\"");
            let n = 2 + self.rng.below(4);
            self.rng.words(n, &mut v);
            v.push_str("\"]}");
            kv.push(("plan".into(), Some(std::mem::take(&mut v))));
        }
        if s % 7 == 3 {
            let topic = self.rng.pick(&TOPICS);
            v.push_str("{\"fact\":\"");
            let n = 5 + self.rng.below(10);
            self.rng.words(n, &mut v);
            write!(v, "\",\"source_step\":{s}}}")?;
            kv.push((format!("memory/{topic}"), Some(std::mem::take(&mut v))));
        }
        let n = 3 + self.rng.below(6);
        self.rng.words(n, &mut v);
        kv.push((format!("scratch/{s}"), Some(std::mem::take(&mut v))));
        if s >= 2 && self.rng.below(3) > 0 {
            kv.push((format!("scratch/{}", s - 2), None));
        }
        if s + 1 == self.steps {
            write!(
                v,
                "{{\"task\":\"{}\",\"attempt\":{},\"steps\":{},\"answer\":\"",
                TASKS[self.task],
                self.attempt,
                s + 1
            )?;
            let n = 12 + self.rng.below(20);
            self.rng.words(n, &mut v);
            v.push_str("\"}");
            kv.push(("answer".into(), Some(std::mem::take(&mut v))));
        }

        let mut ops = Vec::with_capacity(kv.len());
        for (k, val) in &kv {
            self.version += 1;
            ops.push(match val {
                Some(val) => Op::Write {
                    key: k.as_bytes(),
                    value: val.as_bytes(),
                    version: self.version,
                },
                None => Op::Delete {
                    key: k.as_bytes(),
                    version: self.version,
                },
            });
        }
        self.txn += 1;
        wal.append_txn(self.run, self.txn, &ops)?;
        counts.committed.fetch_add(1, Ordering::Relaxed);
        self.step += 1;
        Ok(())
    }
}

/// What step 1 left: the runs (id, task, attempt) and the append rate.
struct Written {
    runs: Vec<(RunId, usize, usize)>,
    append_rate: f64,
}

/// The agents of step 1: two attempts at each task, of slightly different
/// lengths, each with its own seeded generator.
fn make_agents(steps: u64) -> Vec<Agent> {
    let mut agents: Vec<Agent> = Vec::new();
    let mut master = Rng::new(0xD0_5EED);
    for task in 0..TASKS.len() {
        for attempt in 1..=2 {
            let vary = master.below(steps / 5 + 1);
            agents.push(Agent {
                run: RunId::new(),
                task,
                attempt,
                steps: steps - vary,
                step: 0,
                txn: 0,
                version: 0,
                rng: Rng::new(master.next()),
            });
        }
    }
    agents
}

/// Step 1: the agent runs write their steps from [`THREADS`] threads.
fn write_runs(dir: &Path, config: &Config, steps: u64) -> Result<Written> {
    let agents = make_agents(steps);
    let runs: Vec<(RunId, usize, usize)> =
        agents.iter().map(|g| (g.run, g.task, g.attempt)).collect();
    let total_steps: u64 = agents.iter().map(|g| g.steps).sum();
    println!();
    println!(
        "[1/6] {} agent runs ({} tasks x 2 attempts) write {} steps as transactions from {THREADS} threads",
        agents.len(),
        TASKS.len(),
        fmt_int(total_steps)
    );
    let wal = Arc::new(Wal::open(dir, config.clone()).context("cannot create the demo log")?);
    let counts = Arc::new(Counts::default());
    let pb = progress(total_steps, "agent steps");
    let all_runs: Arc<Vec<RunId>> = Arc::new(runs.iter().map(|r| r.0).collect());
    let mut groups: Vec<Vec<Agent>> = (0..THREADS).map(|_| Vec::new()).collect();
    for (i, g) in agents.into_iter().enumerate() {
        groups[i % THREADS].push(g);
    }
    let started = Instant::now();
    let handles: Vec<_> = groups
        .into_iter()
        .enumerate()
        .map(|(t, mut group)| {
            let wal = Arc::clone(&wal);
            let counts = Arc::clone(&counts);
            let pb = pb.clone();
            let all_runs = Arc::clone(&all_runs);
            std::thread::spawn(move || -> Result<()> {
                let total: u64 = group.iter().map(|g| g.steps).sum();
                let mut done = 0u64;
                let mut checkpointed = false;
                while group.iter().any(|g| !g.done()) {
                    for g in group.iter_mut().filter(|g| !g.done()) {
                        g.step(&wal, &counts)?;
                        done += 1;
                        if done % 64 == 0 {
                            pb.inc(64);
                        }
                    }
                    if t == 0 && !checkpointed && done * 2 >= total {
                        wal.checkpoint(uuid::Uuid::new_v4(), done, &all_runs)?;
                        counts.checkpoints.fetch_add(1, Ordering::Relaxed);
                        checkpointed = true;
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow!("an agent thread panicked"))??;
    }
    let write_s = started.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let stats = wal.stats();
    let written_bytes = wal.size();
    let mut written_entries = 0u64;
    for e in wal.snapshot().iter() {
        e?;
        written_entries += 1;
    }
    let wal = Arc::try_unwrap(wal).map_err(|_| anyhow!("log still shared"))?;
    wal.close().context("closing the demo log")?;
    let append_rate = written_entries as f64 / write_s;
    println!(
        "      {} entries: {} txns committed, {} aborted, {} checkpoint; {} in {} segment(s)",
        fmt_int(written_entries),
        fmt_int(counts.committed.load(Ordering::Relaxed)),
        fmt_int(counts.aborted.load(Ordering::Relaxed)),
        counts.checkpoints.load(Ordering::Relaxed),
        fmt_bytes(written_bytes as f64),
        stats.segments
    );
    println!(
        "      appended in {}: {} entries/s, {}/s (simulation included)",
        fmt_secs(write_s),
        fmt_count(append_rate),
        fmt_bytes(written_bytes as f64 / write_s)
    );

    Ok(Written { runs, append_rate })
}

/// Step 2: a child process appends and is killed mid-write.
fn crash_step(dir: &Path) -> Result<Crash> {
    println!();
    println!(
        "[2/6] crash: a child process appends to the log and is killed with SIGKILL mid-write"
    );
    let crash = crate::crash::crash_child(dir)?;
    println!(
        "      child pid {} (walctl __crash-writer) appended run {} in 16-write transactions",
        crash.pid, crash.run
    );
    println!(
        "      SIGKILL after {} acknowledged commits ({} after it started); exit: {}",
        fmt_int(crash.acked),
        fmt_secs(crash.ran_s),
        crash.status
    );

    Ok(crash)
}

/// What step 3 left: the reopened log and what recovery found.
struct Reopened {
    wal: Wal,
    report: durability::RecoveryReport,
    recovery_s: f64,
    lost: bool,
}

/// Step 3: reopen (recovery) and check every acknowledged commit.
fn recover_step(dir: &Path, config: &Config, crash: &Crash) -> Result<Reopened> {
    println!();
    println!("[3/6] reopen: Wal::open scans the segments and recovers the log");
    let t0 = Instant::now();
    let wal = Wal::open(dir, config.clone()).context("reopening the demo log after the crash")?;
    let recovery_s = t0.elapsed().as_secs_f64();
    let report = wal.recovery_report().clone();
    println!(
        "      segments {}, entries {}, txns {} committed / {} aborted / {} incomplete (dropped)",
        report.segments,
        fmt_int(report.entries),
        fmt_int(report.committed_txns),
        fmt_int(report.aborted_txns),
        fmt_int(report.incomplete_txns)
    );
    println!(
        "      valid log: LSN {}..{}; {} bytes after it discarded (zeroed)",
        report.first_lsn,
        report.end_lsn,
        fmt_int(report.bytes_discarded)
    );
    match &report.problem {
        Some(p) => println!(
            "      found: {} in {} at offset {} (LSN {}): {}",
            p.class,
            p.file,
            p.offset,
            p.lsn,
            crate::common::problem_detail(p)
        ),
        None if report.incomplete_txns > 0 => println!(
            "      found: a clean end; the kill fell between two frames of a transaction, \
             which has no CommitTxn and is dropped"
        ),
        None => println!("      found: a clean end (the kill fell between two transactions)"),
    }
    println!(
        "      recovery took {} (scan {}, {}/s)",
        fmt_secs(recovery_s),
        fmt_secs(report.duration.as_secs_f64()),
        fmt_bytes(wal.size() as f64 / report.duration.as_secs_f64().max(1e-9))
    );
    let mut recovered = 0u64;
    wal.replay_run(crash.run, |_| recovered += 1)?;
    let lost = recovered < crash.acked;
    println!(
        "      crashed run: {} commits acknowledged, {} recovered: {}",
        fmt_int(crash.acked),
        fmt_int(recovered),
        if lost {
            "ACKNOWLEDGED COMMITS WERE LOST"
        } else {
            "every acknowledged commit survived"
        }
    );

    Ok(Reopened {
        wal,
        report,
        recovery_s,
        lost,
    })
}

/// Step 4: replay one run, printing its first and last transactions.
fn replay_one_run(wal: &Wal, run_a: RunId, task: usize) -> Result<()> {
    println!();
    println!(
        "[4/6] replay run {run_a} (task {}, attempt 1): its committed transactions in order",
        TASKS[task]
    );
    let t0 = Instant::now();
    let mut lines: Vec<String> = Vec::new();
    let mut txns = 0u64;
    let mut last = String::new();
    let rs = wal.replay_run(run_a, |txn: &Txn<'_, '_>| {
        txns += 1;
        if txns <= 2 {
            lines.push(describe_txn(txn));
        } else {
            last = describe_txn(txn);
        }
    })?;
    let run_s = t0.elapsed().as_secs_f64();
    for l in &lines {
        println!("{l}");
    }
    if !last.is_empty() {
        println!("        ...");
        println!("{last}");
    }
    println!(
        "      {} committed txns ({} aborted skipped) replayed in {}",
        fmt_int(rs.committed),
        rs.aborted,
        fmt_secs(run_s)
    );

    Ok(())
}

/// Step 5: diff two attempts at the same task.
fn diff_attempts(wal: &Wal, run_a: RunId, run_b: RunId, task: usize) -> Result<()> {
    println!();
    println!("[5/6] diff: attempt 1 vs attempt 2 of {}", TASKS[task]);
    println!("      a = {run_a}");
    println!("      b = {run_b}");
    let diffs = wal.diff_runs(run_a, run_b)?;
    let (named, steps_keys): (Vec<_>, Vec<_>) =
        diffs.iter().partition(|d| !d.key.starts_with(b"run/"));
    for d in named.iter().take(6) {
        println!("      {:<24} a: {}", show_bytes(&d.key, 40), side(&d.a));
        println!("      {:<24} b: {}", "", side(&d.b));
    }
    println!(
        "      {} keys differ: {} task keys (answer, plan, memory/*, scratch/*), {} per-step keys (run/<step>/*)",
        fmt_int(diffs.len() as u64),
        named.len(),
        fmt_int(steps_keys.len() as u64)
    );
    Ok(())
}

/// Step 6: verify the log read-only, as `walctl verify` does.
fn verify_step(dir: &Path) -> Result<crate::verify::Verdict> {
    println!();
    println!(
        "[6/6] verify (read-only, as `walctl verify {}`)",
        dir.display()
    );
    let v = crate::verify::check(dir)?;
    for p in &v.problems {
        println!("      PROBLEM {}", p.describe());
    }
    println!(
        "      {}: {} segments, {} entries, {} problems, in {}",
        if v.ok { "OK" } else { "DAMAGED" },
        v.segments.unwrap_or(0),
        fmt_int(v.entries.unwrap_or(0)),
        v.problems.len(),
        fmt_secs(v.duration_s)
    );

    Ok(v)
}

pub fn run(a: Args) -> Result<u8> {
    let dir = a.dir.as_path();
    let steps = a.steps.max(3);
    prepare_dir(dir)?;
    let config = Config::default()
        .segment_size(SEGMENT_SIZE)
        .sync_mode(SyncMode::default());
    let total_started = Instant::now();

    println!("walctl demo: a zero-copy, mmap'd, segmented write-ahead log, end to end");
    println!(
        "log: {} (recreated), {} segments, sync mode Batched (every 1000 appends or 100 ms)",
        dir.display(),
        fmt_size(SEGMENT_SIZE)
    );

    let Written { runs, append_rate } = write_runs(dir, &config, steps)?;
    let crash = crash_step(dir)?;
    let Reopened {
        wal,
        report,
        recovery_s,
        lost,
    } = recover_step(dir, &config, &crash)?;

    // Full replay, for the throughput figure.
    let t0 = Instant::now();
    let mut ops = 0u64;
    let all = wal.replay(|txn| ops += txn.ops.len() as u64)?;
    let replay_s = t0.elapsed().as_secs_f64().max(1e-9);
    let replay_rate = wal.size() as f64 / replay_s;

    let (run_a, task, _) = runs[4];
    let (run_b, _, _) = runs[5];
    replay_one_run(&wal, run_a, task)?;
    diff_attempts(&wal, run_a, run_b, task)?;
    wal.close().context("closing the demo log")?;
    let v = verify_step(dir)?;

    println!();
    println!(
        "summary: {} entries, {}; append {} entries/s; replay {}/s ({} txns, {} ops); recovery {}; demo took {}",
        fmt_int(report.entries),
        fmt_bytes(wal_bytes(&v)),
        fmt_count(append_rate),
        fmt_bytes(replay_rate),
        fmt_int(all.committed),
        fmt_int(ops),
        fmt_secs(recovery_s),
        fmt_secs(total_started.elapsed().as_secs_f64())
    );
    println!();
    println!("look around (read-only, safe while a writer runs):");
    println!("  walctl stats {}", dir.display());
    println!("  walctl dump {} --run {run_a} | head", dir.display());
    println!("  walctl replay {} --run {run_a}", dir.display());
    println!(
        "  walctl diff {} --run {run_a} --run {run_b}",
        dir.display()
    );
    std::io::stdout().flush()?;
    if lost || !v.ok {
        return Ok(EXIT_DAMAGED);
    }
    Ok(EXIT_OK)
}

fn wal_bytes(v: &crate::verify::Verdict) -> f64 {
    v.bytes.unwrap_or(0) as f64
}

fn side(s: &KeyState) -> String {
    match s {
        KeyState::Absent => "(absent)".into(),
        KeyState::Deleted => "(deleted)".into(),
        KeyState::Value(v) => show_bytes(v, 56),
    }
}

fn describe_txn(txn: &Txn<'_, '_>) -> String {
    let mut s = format!(
        "      txn {} at LSN {}: {} ops",
        txn.txn_id.unwrap_or(0),
        txn.begin_lsn,
        txn.ops.len()
    );
    for op in txn.ops {
        let x = op.entry;
        let key = show_bytes(x.key().unwrap_or_default(), 28);
        match x.value() {
            Some(v) => {
                let _ = write!(
                    s,
                    "\n        {:<6} {key:<24} = {}",
                    "Write",
                    show_bytes(v, 48)
                );
            }
            None => {
                let _ = write!(s, "\n        {:<6} {key}", "Delete");
            }
        }
    }
    s
}

/// Empties (or creates) the demo directory, refusing to delete anything
/// that is not part of a log.
fn prepare_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => bail!("not a directory: {}", dir.display()),
        Ok(_) => {
            for e in
                std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?
            {
                let e = e?;
                let name = e.file_name();
                let name = name.to_string_lossy();
                let ours = parse_file_name(&name).is_some()
                    || name == durability::os::lock::LOCK_FILE
                    || name.ends_with(".wal.tmp")
                    || name.contains(".wal.discarded-");
                if !ours || !e.file_type()?.is_file() {
                    bail!(
                        "refusing to recreate {}: it holds {name:?}, which is not part of a log",
                        dir.display()
                    );
                }
            }
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot access {}: {e}", dir.display()),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}
