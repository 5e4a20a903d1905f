//! The crash of `walctl demo`, step 2: a child process (this executable,
//! the hidden `walctl __crash-writer`) appends to the log and is killed
//! with SIGKILL in the middle of its writes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use durability::format::header::now_micros;
use durability::{Config, Op, RunId, SyncMode, Wal};

use crate::common::EXIT_OK;
use crate::demo::{Rng, SEGMENT_SIZE};

/// Arguments of the hidden `__crash-writer` subcommand.
#[derive(clap::Args, Debug)]
pub struct CrashArgs {
    /// The log directory.
    pub dir: PathBuf,
    /// Segment size to open the log with.
    #[arg(long, default_value_t = SEGMENT_SIZE)]
    pub segment_size: u64,
}

/// What the crash left: the child, its run, and how many of its commits
/// were acknowledged before the kill.
pub(crate) struct Crash {
    pub pid: u32,
    pub run: RunId,
    pub acked: u64,
    pub ran_s: f64,
    pub status: String,
}

/// Starts `walctl __crash-writer DIR`, waits until it has committed a few
/// hundred transactions, and kills it with SIGKILL. Every `committed N` line
/// it printed was printed after `append_txn` returned: those commits were
/// acknowledged.
pub(crate) fn crash_child(dir: &Path) -> Result<Crash> {
    let exe = std::env::current_exe().context("cannot find the walctl executable")?;
    let mut child = Command::new(exe)
        .arg("__crash-writer")
        .arg(dir)
        .arg("--segment-size")
        .arg(SEGMENT_SIZE.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the crash writer")?;
    let pid = child.id();
    let stdout = child.stdout.take().context("no pipe to the crash writer")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let result = (|| -> Result<(RunId, u64, Instant)> {
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .map_err(|_| anyhow!("the crash writer did not start"))?;
        let run: RunId = first
            .strip_prefix("ready ")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("unexpected output from the crash writer: {first:?}"))?;
        let started = Instant::now();
        // Kill after a few hundred commits (or a second, on a slow machine),
        // at a point that varies from run to run.
        let target = 150 + now_micros() % 250;
        let mut acked = 0;
        while acked < target && started.elapsed() < Duration::from_secs(1) {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(line) => {
                    if let Some(n) = line.strip_prefix("committed ").and_then(|s| s.parse().ok()) {
                        acked = n;
                    }
                }
                Err(_) => bail!("the crash writer stopped writing"),
            }
        }
        // Then let it run a little longer, so the kill does not land at a
        // fixed point of its loop.
        std::thread::sleep(Duration::from_micros(now_micros() % 400));
        Ok((run, acked, started))
    })();
    // SIGKILL: no destructor, no final sync, no unlock; the kernel keeps the
    // page cache, so every appended byte survives, half-written frames too.
    let _ = child.kill();
    let status = child.wait().context("waiting for the crash writer")?;
    let (run, mut acked, started) = result?;
    let ran_s = started.elapsed().as_secs_f64();
    // Lines still in the pipe were acknowledged before the kill too.
    let _ = reader.join();
    for line in rx.try_iter() {
        if let Some(n) = line.strip_prefix("committed ").and_then(|s| s.parse().ok()) {
            acked = acked.max(n);
        }
    }
    let status = match status.signal() {
        Some(9) => "killed by signal 9 (SIGKILL)".to_string(),
        Some(s) => format!("killed by signal {s}"),
        None => format!("exited with {status}"),
    };
    Ok(Crash {
        pid,
        run,
        acked,
        ran_s,
        status,
    })
}

/// The hidden `__crash-writer` subcommand: appends transactions of a new
/// run to the log until killed, printing `committed N` after each.
pub fn crash_writer(a: CrashArgs) -> Result<u8> {
    let config = Config::default()
        .segment_size(a.segment_size)
        .sync_mode(SyncMode::Async { interval_ms: 100 });
    let wal = Wal::open(&a.dir, config)
        .with_context(|| format!("cannot open the log in {}", a.dir.display()))?;
    let run = RunId::new();
    let mut rng = Rng::new(now_micros());
    // A pool of "tool output" text that values are cut from.
    let mut pool = String::with_capacity(80 << 10);
    while pool.len() < (64 << 10) {
        rng.words(64, &mut pool);
        pool.push('\n');
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready {run}")?;
    out.flush()?;
    let keys: Vec<String> = (0..16).map(|i| format!("crash/output/{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut version = 0u64;
    for txn in 1u64.. {
        let mut ops = Vec::with_capacity(keys.len());
        for key in &keys {
            let len = 1024 + rng.below(4096) as usize;
            let start = rng.below((pool.len() - len) as u64) as usize;
            version += 1;
            ops.push(Op::Write {
                key: key.as_bytes(),
                value: &pool.as_bytes()[start..start + len],
                version,
            });
        }
        wal.append_txn(run, txn, &ops)?;
        // If the parent is gone, the write fails and we stop.
        writeln!(out, "committed {txn}")?;
        out.flush()?;
        if Instant::now() > deadline {
            break;
        }
    }
    Ok(EXIT_OK)
}
