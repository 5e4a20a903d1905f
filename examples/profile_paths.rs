//! One hot path at a time, for instruction counts under callgrind (which
//! are deterministic where wall time on a shared machine is not):
//!
//! ```console
//! cargo build --release --example profile_paths
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='profile_paths::measured*' \
//!     target/release/examples/profile_paths iter 200000
//! ```
//!
//! Paths: `append` (W1: one 100-byte Write per `append_entry`, Async mode),
//! `batch` (the same entries, 64 per `append_batch`), `iter` (a validated
//! scan through `Snapshot::iter`), `replay` (`Wal::replay`) and `open`
//! (recovery: `Wal::open` of the log). Each builds a log of N W1 entries
//! (default 200,000) in a temporary directory, then runs the path once
//! inside `measured`, the only function callgrind counts with the command
//! above; it prints the instructions' denominator (entries) and wall time.
//! A third argument repeats a read path (`iter`, `replay`, `open`) that many
//! times, so that under `perf record` it outweighs building the log.

use std::hint::black_box;
use std::time::Instant;

use durability::{BorrowedEntry, Config, RunId, SyncMode, Wal};

const KEY: [u8; 16] = *b"agent/step/00001";

fn config() -> Config {
    Config::default().sync_mode(SyncMode::Async { interval_ms: 100 })
}

fn entry(run: RunId, value: &[u8; 100], i: u64) -> BorrowedEntry<'_> {
    BorrowedEntry::Write {
        run_id: run,
        key: &KEY,
        value,
        version: i,
    }
}

fn fill(wal: &Wal, n: u64) {
    let run = RunId::from_bytes([7; 16]);
    let value = [0x5A; 100];
    for i in 0..n {
        wal.append_entry(entry(run, &value, i)).expect("append");
    }
}

#[inline(never)]
fn measured(path: &str, wal: Option<&Wal>, dir: &std::path::Path, n: u64) -> u64 {
    let run = RunId::from_bytes([7; 16]);
    let value = [0x5A; 100];
    match path {
        "append" => {
            let wal = wal.expect("open");
            for i in 0..n {
                black_box(wal.append_entry(entry(run, &value, i)).expect("append"));
            }
            n
        }
        "batch" => {
            let wal = wal.expect("open");
            let mut batch = Vec::with_capacity(64);
            let mut i = 0;
            while i < n {
                batch.clear();
                let k = (n - i).min(64);
                batch.extend((i..i + k).map(|v| entry(run, &value, v)));
                black_box(wal.append_batch(&batch).expect("append_batch"));
                i += k;
            }
            n
        }
        "iter" => {
            let snap = wal.expect("open").snapshot();
            let mut count = 0;
            for e in snap.iter() {
                black_box(e.expect("valid entry"));
                count += 1;
            }
            count
        }
        "replay" => {
            let mut count = 0;
            wal.expect("open")
                .replay(|txn| count += txn.ops.len() as u64)
                .expect("replay");
            count
        }
        "open" => {
            let wal = Wal::open(dir, config()).expect("reopen");
            black_box(wal.size())
        }
        other => panic!("unknown path {other}: append, batch, iter, replay or open"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "iter".into());
    let n: u64 = args.next().map_or(200_000, |s| s.parse().expect("N"));
    let tmp = tempfile::tempdir_in(".").expect("temporary directory");
    let dir = tmp.path().join("log");
    let wal = Wal::open(&dir, config()).expect("open");
    let keep_open = match path.as_str() {
        "append" | "batch" => true,
        _ => {
            fill(&wal, n);
            wal.sync().expect("sync");
            path != "open"
        }
    };
    let wal = if keep_open {
        Some(wal)
    } else {
        wal.close().expect("close");
        None
    };
    // Repeats of the read paths (for perf, so they outweigh the fill).
    let reps: u32 = args.next().map_or(1, |s| s.parse().expect("REPEATS"));
    let reps = if keep_open && wal.is_some() && path.starts_with('a') || path == "batch" {
        1
    } else {
        reps.max(1)
    };
    let start = Instant::now();
    let mut count = 0;
    for _ in 0..reps {
        count = measured(&path, wal.as_ref(), &dir, n);
    }
    let took = start.elapsed() / reps;
    println!(
        "{path}: {n} entries ({count} counted) in {:.1} ms, {:.1} ns/entry",
        took.as_secs_f64() * 1e3,
        took.as_nanos() as f64 / n as f64
    );
}
