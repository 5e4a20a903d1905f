//! Process kills: a child process (this test binary, re-run with an
//! environment variable) appends transactions in a loop and reports each
//! acknowledged one on stdout; the parent SIGKILLs it at a random moment,
//! reopens the log and checks every acknowledged transaction is there (the
//! page cache survives a process crash, so this holds in every mode), and
//! that the log keeps accepting appends. Seeded; 24 kills across the three
//! modes.
//!
//! This is a test binary of its own: while a forked child has not yet
//! exec'd, it holds copies of the parent's file descriptors, including
//! other tests' lock files.

mod common;

use common::Rng;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use durability::{Config, Op, ProblemClass, RunId, SyncMode, Wal, WalReader};

const CHILD_DIR: &str = "DURABILITY_CRASH_CHILD_DIR";
const CHILD_MODE: &str = "DURABILITY_CRASH_CHILD_MODE";
const CHILD_RUN: &str = "DURABILITY_CRASH_CHILD_RUN";

fn mode_named(name: &str) -> SyncMode {
    match name {
        "strict" => SyncMode::Strict,
        "batched" => SyncMode::default(),
        _ => SyncMode::Async { interval_ms: 50 },
    }
}

fn kill_config(mode: SyncMode) -> Config {
    Config::default().segment_size(64 << 10).sync_mode(mode)
}

/// The child side of `process_kill_loses_no_acknowledged_transaction`: runs
/// only when the parent starts this binary with the environment set.
#[test]
fn crash_child_writer() {
    let (Ok(dir), Ok(mode), Ok(run)) = (
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_MODE),
        std::env::var(CHILD_RUN),
    ) else {
        return;
    };
    use std::io::Write;
    let run: RunId = run.parse().unwrap();
    let wal = Wal::open(&dir, kill_config(mode_named(&mode))).unwrap();
    let mut out = std::io::stdout().lock();
    let mut rng = Rng::new(run.as_bytes()[0] as u64);
    for i in 0.. {
        let value = vec![b'x'; rng.below(3000) as usize];
        let key = format!("key-{i}");
        wal.append_txn(
            run,
            i,
            &[Op::Write {
                key: key.as_bytes(),
                value: &value,
                version: i,
            }],
        )
        .unwrap();
        // Acknowledged: append_txn returned.
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn process_kill_loses_no_acknowledged_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng::new(0xDEAD_BEEF);
    let mut kills = 0;
    for round in 0..24u64 {
        let mode = ["strict", "batched", "async"][(round % 3) as usize];
        let run = RunId::from_bytes([round as u8 + 1; 16]);
        let want = 1 + rng.below(400);
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_MODE, mode)
            .env(CHILD_RUN, run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut acked = Vec::new();
        let stdout = child.stdout.take().unwrap();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // The harness may print "test crash_child_writer ... " before
            // the first line, so look for the marker anywhere.
            if let Some(n) = line.find("ack ").map(|i| &line[i + 4..]) {
                acked.push(n.parse::<u64>().unwrap());
                if acked.len() as u64 == want {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL, mid-append
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: the child was not killed");
        kills += 1;
        assert_eq!(
            acked.len() as u64,
            want,
            "round {round} ({mode}): child died early"
        );

        let wal = Wal::open(dir.path(), kill_config(mode_named(mode)))
            .unwrap_or_else(|e| panic!("round {round} ({mode}): reopen failed: {e}"));
        let report = wal.recovery_report().clone();
        if let Some(p) = &report.problem {
            assert_eq!(p.class, ProblemClass::TornTail, "round {round}: {p}");
        }
        let mut seen = Vec::new();
        wal.replay_run(run, |t| seen.push(t.txn_id.unwrap()))
            .unwrap();
        assert!(
            seen.len() >= acked.len() && seen[..acked.len()] == acked[..],
            "round {round} ({mode}): acknowledged {} txns, recovered {}: first acked {:?}, first seen {:?}",
            acked.len(),
            seen.len(),
            &acked[..acked.len().min(5)],
            &seen[..seen.len().min(5)]
        );
        // The log keeps accepting appends after the crash.
        wal.append_txn(run, u64::MAX, &[]).unwrap();
        wal.close().unwrap();
    }
    eprintln!("process kills: {kills}");
    assert!(kills >= 20);
    // Everything from every round is still there.
    let reader = WalReader::open(dir.path(), Config::default()).unwrap();
    assert!(reader.recovery_report().problem.is_none());
    assert_eq!(reader.runs().len(), 24);
}

const BATCH_CHILD_DIR: &str = "DURABILITY_BATCH_CHILD_DIR";
/// Entries per batch, and bytes per entry, of the batch child.
const BATCH_LEN: u64 = 8;
const BATCH_VALUE: usize = 16 << 10;

fn batch_config() -> Config {
    Config::default()
        .segment_size(1 << 20)
        .sync_mode(SyncMode::Async { interval_ms: 1_000 })
        // Page faults while copying make a batch's copy slow: a reader
        // often meets one half written.
        .prefault(false)
}

/// The child of `batches_are_whole_for_a_reader_in_another_process_and_after_a_kill`:
/// appends batches of `BATCH_LEN` writes (key `<batch>-<i>`) for ever,
/// printing `ack <batch>` after each, and purges below a batch's start
/// now and then so the log stays small.
#[test]
fn batch_child_writer() {
    let Ok(dir) = std::env::var(BATCH_CHILD_DIR) else {
        return;
    };
    use std::io::Write;
    let wal = Wal::open(&dir, batch_config()).unwrap();
    let run = RunId::from_bytes([7; 16]);
    let value = vec![b'v'; BATCH_VALUE];
    let mut out = std::io::stdout().lock();
    let mut starts = std::collections::VecDeque::new();
    for n in 0u64.. {
        let keys: Vec<String> = (0..BATCH_LEN).map(|i| format!("{n}-{i}")).collect();
        let batch: Vec<durability::BorrowedEntry<'_>> = keys
            .iter()
            .map(|k| durability::BorrowedEntry::Write {
                run_id: run,
                key: k.as_bytes(),
                value: &value,
                version: n,
            })
            .collect();
        let pos = wal.append_batch(&batch).unwrap();
        starts.push_back(pos.first);
        writeln!(out, "ack {n}").unwrap();
        out.flush().unwrap();
        if n % 16 == 15 {
            // Purge at a batch's start (a purge inside a batch would hide
            // its first writes, as asked): the oldest kept stays whole.
            let keep_from = wal.end_lsn().saturating_sub(2 << 20);
            while starts.len() > 1 && starts[1] <= keep_from {
                starts.pop_front();
            }
            if let Some(&first) = starts.front().filter(|&&f| f <= keep_from) {
                wal.purge_before(first).unwrap();
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
}

/// Batches, per key prefix: how many of each batch's writes a view holds.
fn batch_counts(snap: &durability::Snapshot) -> std::collections::BTreeMap<u64, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for e in snap.iter() {
        let e = e.unwrap();
        let Some(key) = e.entry.key() else { continue };
        let key = std::str::from_utf8(key).unwrap();
        let n: u64 = key.split('-').next().unwrap().parse().unwrap();
        *counts.entry(n).or_insert(0) += 1;
    }
    counts
}

/// A batch is all or nothing for a reader in another process, which sees
/// the writer copy it into the shared mapping, and after the writer is
/// killed in the middle of one: never a prefix of a batch.
#[test]
fn batches_are_whole_for_a_reader_in_another_process_and_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(&exe)
        .args([
            "--exact",
            "batch_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(BATCH_CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = 0u64;
    let mut wait_acks = |n: u64, acked: &mut u64| {
        while *acked < n {
            let line = lines.next().expect("the child stopped").unwrap();
            if line.contains("ack ") {
                *acked += 1;
            }
        }
    };
    wait_acks(4, &mut acked);
    let mut views = 0;
    for open in 0..150 {
        let reader = WalReader::open(dir.path(), batch_config()).unwrap();
        assert!(
            reader.recovery_report().problem.is_none(),
            "{:?}",
            reader.recovery_report().problem
        );
        let counts = batch_counts(reader.snapshot());
        // Purges delete whole segments, and a batch never spans two: the
        // oldest batch kept is whole too.
        for (n, c) in &counts {
            assert_eq!(
                *c, BATCH_LEN,
                "open {open}: batch {n} has {c} of its {BATCH_LEN} writes"
            );
        }
        views += counts.len();
        wait_acks(acked + 1, &mut acked);
    }
    assert!(views > 0);
    child.kill().unwrap(); // SIGKILL, most likely in the middle of a batch
    child.wait().unwrap();
    let wal = Wal::open(dir.path(), batch_config()).unwrap();
    if let Some(p) = &wal.recovery_report().problem {
        assert_eq!(p.class, ProblemClass::TornTail, "{p}");
    }
    let counts = batch_counts(&wal.snapshot());
    let last = *counts.keys().last().unwrap();
    assert!(last + 1 >= acked, "acknowledged batch {} lost", acked - 1);
    for (n, c) in counts {
        assert_eq!(
            c, BATCH_LEN,
            "after the kill: batch {n} has {c} of its {BATCH_LEN} writes"
        );
    }
    wal.close().unwrap();
}
