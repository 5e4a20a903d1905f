//! `walctl bench`: writes a workload (each transaction a BeginTxn, N Writes
//! and a CommitTxn, appended with `append_txn` from one or more threads
//! sharing the log; runs spread over the transactions), then reopens the log
//! (recovery) and replays it (a full validated read of every entry).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use durability::{Config, Op, RunId, SyncMode, Wal};
use serde::Serialize;

use crate::common::{
    fmt_bytes, fmt_count, fmt_int, fmt_secs, fmt_size, progress, spinner, write_json_line, EXIT_OK,
};

/// The sync modes, as named on the command line.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every commit durable before append_txn returns (group commit).
    Strict,
    /// Sync every 1000 appends or 100 ms.
    Batched,
    /// A background thread syncs every 100 ms; appends never wait.
    Async,
}

impl Mode {
    fn sync_mode(self) -> SyncMode {
        match self {
            Mode::Strict => SyncMode::Strict,
            Mode::Batched => SyncMode::Batched {
                interval_ms: 100,
                batch_size: 1000,
            },
            Mode::Async => SyncMode::Async { interval_ms: 100 },
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Strict => "strict",
            Mode::Batched => "batched",
            Mode::Async => "async",
        }
    }
}

/// Arguments of `walctl bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write the log here and leave it (a new or empty directory). Default:
    /// a fresh temporary directory, removed afterwards.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The sync mode.
    #[arg(long, value_enum, default_value_t = Mode::Async)]
    pub mode: Mode,
    /// Threads appending to the shared log.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    /// Transactions in all.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub txns: u64,
    /// Writes in each transaction (between its BeginTxn and CommitTxn).
    #[arg(long, default_value_t = 4)]
    pub writes_per_txn: u32,
    /// Bytes per key.
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Bytes per segment file (a multiple of 4096).
    #[arg(long, default_value_t = 16 << 20)]
    pub segment_size: u64,
    /// Print one JSON object with the results.
    #[arg(long)]
    pub json: bool,
}

/// What `bench --json` prints: exactly these keys.
#[derive(Debug, Serialize)]
pub struct Results {
    pub mode: &'static str,
    pub threads: u32,
    pub txns: u64,
    pub entries: u64,
    pub bytes: u64,
    pub append_entries_per_s: f64,
    pub commits_per_s: f64,
    pub commit_p50_us: f64,
    pub commit_p99_us: f64,
    pub replay_bytes_per_s: f64,
    pub replay_entries_per_s: f64,
    pub recovery_s: f64,
}

/// How many runs the transactions are spread over.
const RUNS: usize = 64;

pub fn run(a: Args) -> Result<u8> {
    let temp;
    let dir: &Path = match &a.dir {
        Some(d) => {
            if d.exists() {
                let meta = std::fs::metadata(d)?;
                if !meta.is_dir() {
                    bail!("not a directory: {}", d.display());
                }
                let mut rd =
                    std::fs::read_dir(d).with_context(|| format!("cannot read {}", d.display()))?;
                if rd.next().is_some() {
                    bail!(
                        "bench --dir needs a new or empty directory, and {} is not empty",
                        d.display()
                    );
                }
            }
            d
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("walctl-bench-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            temp.path()
        }
    };
    let config = Config::default()
        .segment_size(a.segment_size)
        .sync_mode(a.mode.sync_mode());
    let (r, tail) = bench(dir, &config, &a)?;
    // The disk's own durable-write rate, measured right after, beside the
    // log (text output only; the JSON keys are fixed).
    let raw = if a.mode == Mode::Strict && !a.json {
        Some(raw_sync_rate(dir, 1000).context("measuring the raw sync rate")?)
    } else {
        None
    };
    if a.json {
        write_json_line(&mut std::io::stdout().lock(), &r)?;
    } else {
        let where_ = if a.dir.is_some() {
            format!("{} (kept)", dir.display())
        } else {
            format!("{} (removed)", dir.display())
        };
        println!(
            "bench: mode {}, {} thread{}, {} txns x {} writes (key {} B, value {} B), {} segments",
            r.mode,
            r.threads,
            if r.threads == 1 { "" } else { "s" },
            fmt_int(r.txns),
            a.writes_per_txn,
            a.key_size,
            a.value_size,
            fmt_size(a.segment_size)
        );
        println!("  dir       {where_}");
        println!(
            "  wrote     {} entries, {} ({:.0} B per entry)",
            fmt_int(r.entries),
            fmt_bytes(r.bytes as f64),
            r.bytes as f64 / r.entries.max(1) as f64
        );
        println!(
            "  append    {} entries/s, {}/s",
            fmt_count(r.append_entries_per_s),
            fmt_bytes(r.append_entries_per_s * r.bytes as f64 / r.entries.max(1) as f64)
        );
        println!("  commits   {} txns/s", fmt_count(r.commits_per_s));
        println!(
            "  latency   p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs per append_txn",
            r.commit_p50_us, r.commit_p99_us, tail.p999_us, tail.max_us
        );
        if let Some(raw) = raw {
            println!(
                "  raw sync  {} syncs/s (pwrite 4 KiB + fdatasync into a fallocated file beside \
                 the log, same run): commits run at {:.2}x that",
                fmt_count(raw),
                r.commits_per_s / raw
            );
        }
        println!(
            "  replay    {}/s, {} entries/s (full validated read, page cache warm: one pass \
             through a fresh read-only mapping of this log, page faults included; \
             not W3, which re-reads 166-byte writes through a mapping already faulted in)",
            fmt_bytes(r.replay_bytes_per_s),
            fmt_count(r.replay_entries_per_s)
        );
        println!(
            "  recovery  {} (Wal::open of the whole log)",
            fmt_secs(r.recovery_s)
        );
    }
    Ok(EXIT_OK)
}

/// Latency tail figures shown in text mode only (the JSON keys are fixed).
pub struct Tail {
    pub p999_us: f64,
    pub max_us: f64,
}

/// Runs the workload on a log in `dir` and measures it.
pub fn bench(dir: &Path, config: &Config, a: &Args) -> Result<(Results, Tail)> {
    let wal = Arc::new(
        Wal::open(dir, config.clone())
            .with_context(|| format!("cannot open a log in {}", dir.display()))?,
    );
    let runs: Arc<Vec<RunId>> = Arc::new((0..RUNS).map(|_| RunId::new()).collect());
    let threads = a.threads as u64;
    let pb = progress(a.txns, "appending");
    let barrier = Arc::new(std::sync::Barrier::new(a.threads as usize + 1));
    let mut handles = Vec::new();
    for t in 0..threads {
        let wal = Arc::clone(&wal);
        let runs = Arc::clone(&runs);
        let barrier = Arc::clone(&barrier);
        let pb = pb.clone();
        let (txns, writes, key_size, value_size) =
            (a.txns, a.writes_per_txn as usize, a.key_size, a.value_size);
        handles.push(std::thread::spawn(
            move || -> durability::Result<Vec<u32>> {
                let mine = txns.saturating_sub(t).div_ceil(threads);
                let mut lat = Vec::with_capacity(mine as usize);
                let mut keys = vec![vec![b'k'; key_size]; writes];
                let mut value = vec![0u8; value_size];
                for (i, b) in value.iter_mut().enumerate() {
                    *b = b'a' + (i % 26) as u8;
                }
                barrier.wait();
                let mut i = t;
                let mut done = 0u64;
                while i < txns {
                    for (w, key) in keys.iter_mut().enumerate() {
                        stamp(key, i * 64 + w as u64);
                    }
                    stamp(&mut value, i);
                    let ops: Vec<Op<'_>> = keys
                        .iter()
                        .enumerate()
                        .map(|(w, key)| Op::Write {
                            key,
                            value: &value,
                            version: i * 64 + w as u64,
                        })
                        .collect();
                    let run = runs[(i % RUNS as u64) as usize];
                    let start = Instant::now();
                    wal.append_txn(run, i, &ops)?;
                    lat.push(start.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                    done += 1;
                    if done % 1024 == 0 {
                        pb.inc(1024);
                    }
                    i += threads;
                }
                Ok(lat)
            },
        ));
    }
    barrier.wait();
    let start = Instant::now();
    let mut lat: Vec<u32> = Vec::with_capacity(a.txns as usize);
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(l)) => lat.extend(l),
            Ok(Err(e)) => first_err = first_err.or(Some(anyhow::Error::new(e))),
            Err(_) => first_err = first_err.or(Some(anyhow::anyhow!("a writer thread panicked"))),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    if let Some(e) = first_err {
        return Err(e.context("append failed"));
    }
    let bytes = wal.size();
    let entries = a.txns * (a.writes_per_txn as u64 + 2);
    let wal = Arc::try_unwrap(wal).map_err(|_| anyhow::anyhow!("log still shared"))?;
    wal.close().context("closing the log")?;

    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() - 1) as f64 * p).round() as usize;
        lat[i] as f64 / 1e3
    };

    // Recovery: open the whole log again.
    let spin = spinner("reopening (recovery)".into());
    let t0 = Instant::now();
    let wal = Wal::open(dir, config.clone()).context("reopening the log")?;
    let recovery_s = t0.elapsed().as_secs_f64();
    spin.finish_and_clear();

    wal.close().context("closing the log")?;

    // Replay: read and validate every entry, touching its key and value,
    // through a read-only open (so no background work of a writer competes).
    let reader = durability::WalReader::open(dir, config).context("opening the log read-only")?;
    let spin = spinner("replaying".into());
    let snap = reader.snapshot();
    let t0 = Instant::now();
    let mut n = 0u64;
    let mut sum = 0usize;
    for e in snap.iter() {
        let e = e.context("reading the log back")?;
        n += 1;
        sum += e.entry.key().map_or(0, <[u8]>::len) + e.entry.value().map_or(0, <[u8]>::len);
    }
    let replay_s = t0.elapsed().as_secs_f64().max(1e-9);
    std::hint::black_box(sum);
    spin.finish_and_clear();
    let replay_bytes = snap.len_bytes();
    if n != entries {
        bail!("replay read {n} entries, expected {entries}");
    }

    let tail = Tail {
        p999_us: pct(0.999),
        max_us: pct(1.0),
    };
    let results = Results {
        mode: a.mode.name(),
        threads: a.threads,
        txns: a.txns,
        entries,
        bytes,
        append_entries_per_s: entries as f64 / elapsed,
        commits_per_s: a.txns as f64 / elapsed,
        commit_p50_us: pct(0.50),
        commit_p99_us: pct(0.99),
        replay_bytes_per_s: replay_bytes as f64 / replay_s,
        replay_entries_per_s: n as f64 / replay_s,
        recovery_s,
    };
    Ok((results, tail))
}

/// Writes `n` in decimal at the end of `buf` (as much as fits).
#[inline]
fn stamp(buf: &mut [u8], mut n: u64) {
    let mut i = buf.len();
    while i > 0 {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
}

/// `pwrite` of 4 KiB at advancing offsets plus `fdatasync`, `n` times, into
/// a file fallocated in `dir` (as a new segment is) and removed after:
/// syncs per second.
fn raw_sync_rate(dir: &Path, n: u64) -> Result<f64> {
    use std::os::unix::fs::FileExt;
    let file = tempfile::Builder::new()
        .prefix(".raw-sync-")
        .tempfile_in(dir)
        .context("cannot create the raw sync probe file")?;
    rustix::fs::fallocate(
        file.as_file(),
        rustix::fs::FallocateFlags::empty(),
        0,
        n * 4096,
    )?;
    file.as_file().sync_all()?;
    let page = [0xA5u8; 4096];
    let t0 = Instant::now();
    for i in 0..n {
        file.as_file().write_all_at(&page, i * 4096)?;
        file.as_file().sync_data()?;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64().max(1e-9))
}
