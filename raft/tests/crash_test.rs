//! Crashes of a node's log, through the Raft adapter.
//!
//! * Process kills: a child process (this binary, re-run with an
//!   environment variable) appends through `LogStore` without waiting,
//!   truncates, purges and votes, and reports each acknowledgement; the
//!   parent SIGKILLs it at seeded moments and checks, on reopen, that every
//!   acknowledged entry is there, that the log is a contiguous run of
//!   indices, that no acknowledged truncation is undone and that the vote
//!   never goes backwards.
//! * Power cuts: for every operation of a seeded workload (append,
//!   truncate, purge, vote), the disk images a power cut during it could
//!   leave (each page written during it old, new or torn at 512-byte
//!   sectors; the metadata file old or new; a prefix of the deleted
//!   segments gone). Each image must open, hold every entry both sides of
//!   the operation agree on, and hold no entry that neither side has: a
//!   truncated entry never reappears, an acknowledged one is never lost,
//!   and there is no hole.
//!
//! A binary of its own: a forked child holds copies of the parent's file
//! descriptors until it execs.

#[path = "../../tests/common/rng.rs"]
mod rng;

use rng::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use durability::{Config, RunId, SyncMode};
use durability_raft::log_store::LogStore;
use durability_raft::types::{Entry, RunTxn, TxnOp, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftLogReader, Vote};

type Store = LogStore<TypeConfig>;

fn cfg() -> Config {
    Config::default()
        .segment_size(16 << 10)
        .sync_mode(SyncMode::Strict)
        .prefault(false)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, size: usize) -> Entry {
    let payload = if index % 5 == 0 {
        EntryPayload::Blank
    } else {
        EntryPayload::Normal(RunTxn {
            run_id: RunId::from_bytes([(index % 3) as u8 + 1; 16]),
            txn_id: index,
            ops: vec![TxnOp::Put {
                key: format!("k{index}").into_bytes(),
                value: vec![(term as u8).wrapping_add(index as u8); size],
            }],
            timestamp: 0,
        })
    };
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

// ---------------------------------------------------------------------------
// Process kills.

const CHILD_DIR: &str = "DURABILITY_RAFT_CRASH_CHILD_DIR";
const CHILD_SEED: &str = "DURABILITY_RAFT_CRASH_CHILD_SEED";

/// The child side of `a_killed_node_keeps_every_acknowledged_entry`.
#[test]
fn crash_child_node() {
    let (Ok(dir), Ok(seed)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_SEED)) else {
        return;
    };
    let rt = rt();
    let mut rng = Rng::new(seed.parse().unwrap());
    let mut s = Store::open(&dir, cfg()).unwrap();
    let state = s.log_state();
    let mut next = state.last_log_id.map_or(1, |l| l.index + 1);
    let mut term = state.last_log_id.map_or(0, |l| l.leader_id.term) + 1;
    let submitted = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    // Every acknowledgement before an operation that must follow them.
    let drain = |s: &Store| {
        s.wal()
            .wait_durable(durability::End(s.wal().end_lsn()))
            .unwrap();
        while acked.load(Ordering::SeqCst) < submitted.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
    };
    loop {
        match rng.below(20) {
            0 if next > 3 => {
                drain(&s);
                let at = next - 1 - rng.below((next - 1).min(6));
                say(format!("truncating {at}"));
                rt.block_on(s.truncate(log_id(term, at))).unwrap();
                term += 1;
                next = at;
                say(format!("truncated {at}"));
            }
            1 if next > 10 => {
                drain(&s);
                let p = next - 1 - rng.below(8);
                rt.block_on(s.purge(log_id(term, p))).unwrap();
                say(format!("purged {p}"));
            }
            2 => {
                rt.block_on(s.save_vote(&Vote::new(term, 1))).unwrap();
                say(format!("voted {term}"));
            }
            _ => {
                let n = 1 + rng.below(4);
                let batch: Vec<Entry> = (next..next + n)
                    .map(|i| entry(term, i, rng.below(1500) as usize))
                    .collect();
                let (first, last) = (next, next + n - 1);
                next += n;
                submitted.fetch_add(1, Ordering::SeqCst);
                let acked = Arc::clone(&acked);
                s.append_entries(batch, move |r| {
                    r.unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {first} {last} {term}").unwrap();
                    out.flush().unwrap();
                    acked.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
            }
        }
    }
}

#[test]
fn a_killed_node_keeps_every_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let rt = rt();
    let mut rng = Rng::new(0x5EED_0012);
    // index -> term of every acknowledged entry still live.
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    // Acknowledged entries an acknowledged truncation deleted.
    let mut dead: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut vote = 0u64;
    let mut purged = 0u64;
    let mut kills = 0;
    for round in 0..16u64 {
        let want = 20 + rng.below(200);
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_node",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_SEED, (round + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = 0;
        let mut pending_truncate = None;
        let mut apply = |line: &str, pending_truncate: &mut Option<u64>| -> bool {
            let Some(at) = ["ack ", "truncating ", "truncated ", "purged ", "voted "]
                .iter()
                .filter_map(|m| line.find(m))
                .min()
            else {
                return false;
            };
            let words: Vec<&str> = line[at..].split_whitespace().collect();
            let num = |i: usize| words[i].parse::<u64>().unwrap();
            match words[0] {
                "ack" => {
                    for i in num(1)..=num(2) {
                        acked.insert(i, num(3));
                    }
                }
                "truncating" => *pending_truncate = Some(num(1)),
                "truncated" => {
                    let gone = acked.split_off(&num(1));
                    dead.extend(gone);
                    *pending_truncate = None;
                }
                "purged" => purged = purged.max(num(1)),
                "voted" => vote = vote.max(num(1)),
                _ => {}
            }
            true
        };
        let mut reader = BufReader::new(stdout).lines();
        for line in reader.by_ref() {
            if apply(&line.unwrap(), &mut pending_truncate) {
                lines += 1;
                if lines == want {
                    break;
                }
            }
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: the child was not killed");
        kills += 1;
        // The child ran on until the signal landed: whatever it printed
        // meanwhile (an acknowledgement, a truncation it began) happened.
        for line in reader {
            let Ok(line) = line else { break };
            apply(&line, &mut pending_truncate);
        }

        let mut s = Store::open(dir.path(), cfg())
            .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let state = s.log_state();
        let got = rt.block_on(s.try_get_log_entries(..)).unwrap();
        let p = state.last_purged_log_id.map_or(0, |l| l.index);
        assert!(p >= purged, "round {round}: purge {purged} undone ({p})");
        for w in got.windows(2) {
            assert_eq!(
                w[0].log_id.index + 1,
                w[1].log_id.index,
                "round {round}: a hole"
            );
        }
        if let Some(first) = got.first() {
            assert_eq!(
                first.log_id.index,
                p + 1,
                "round {round}: a hole after the purge"
            );
        }
        let present: BTreeMap<u64, u64> = got
            .iter()
            .map(|e| (e.log_id.index, e.log_id.leader_id.term))
            .collect();
        for (&i, &t) in acked.range(p + 1..) {
            if pending_truncate.is_some_and(|at| i >= at) {
                continue;
            }
            let debug_tail = if present.get(&i) != Some(&t) {
                let r = durability::WalReader::open(dir.path(), Config::default()).unwrap();
                let mut v: Vec<String> = r
                    .snapshot()
                    .iter_all()
                    .map(|e| {
                        let e = e.unwrap();
                        format!(
                            "{}:{}{}",
                            e.lsn,
                            e.entry.kind(),
                            e.entry
                                .raft()
                                .map(|x| format!("#{}", x.0))
                                .or(e.entry.truncate_from().map(|f| format!("<{f}")))
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                let n = v.len();
                v.drain(..n.saturating_sub(40));
                format!(
                    "{:?} truncated {:?} report {:?}",
                    v,
                    r.snapshot().truncated(),
                    s.wal().recovery_report()
                )
            } else {
                String::new()
            };
            assert_eq!(
                present.get(&i),
                Some(&t),
                "round {round}: acknowledged entry {i} lost; tail before reopen {debug_tail}; log state {state:?}, present {:?}..{:?} ({} entries), pending truncate {pending_truncate:?}, acked {:?}..{:?}",
                present.keys().next(),
                present.keys().next_back(),
                present.len(),
                acked.keys().next(),
                acked.keys().next_back(),
            );
        }
        for e in &got {
            let id = (e.log_id.index, e.log_id.leader_id.term);
            assert!(
                !dead.contains(&id),
                "round {round}: truncated entry {id:?} is back"
            );
        }
        let v = rt.block_on(s.read_vote()).unwrap();
        assert!(
            v.map_or(0, |v| v.leader_id.term) >= vote,
            "round {round}: the vote went back"
        );
        // What the reopen found is the truth from here on (unacknowledged
        // entries that survived are now part of the log).
        acked = present;
        drop(s);
    }
    assert!(kills >= 16);
}

// ---------------------------------------------------------------------------
// Power cuts.

type Files = BTreeMap<String, Vec<u8>>;

fn read_files(dir: &Path) -> Files {
    let mut out = Files::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "LOCK" || name.ends_with(".new") || name.ends_with(".tmp") {
            continue;
        }
        if let Ok(bytes) = fs::read(e.path()) {
            out.insert(name, bytes);
        }
    }
    out
}

/// The Raft state a store shows: entries by index, last purged, vote.
#[derive(Clone, Debug, PartialEq)]
struct View {
    entries: BTreeMap<u64, Entry>,
    purged: u64,
    vote: Option<Vote<u64>>,
}

fn view(rt: &tokio::runtime::Runtime, s: &mut Store) -> View {
    let entries = rt
        .block_on(s.try_get_log_entries(..))
        .unwrap()
        .into_iter()
        .map(|e| (e.log_id.index, e))
        .collect();
    View {
        entries,
        purged: s.log_state().last_purged_log_id.map_or(0, |l| l.index),
        vote: s.vote(),
    }
}

/// One image a power cut while `before` became `after` could leave.
fn crash_image(before: &Files, after: &Files, rng: &mut Rng) -> Files {
    const PAGE: usize = 4096;
    const SECTOR: usize = 512;
    let mut out = Files::new();
    // Segments deleted meanwhile: unlinked oldest first, each durable.
    let deleted: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    // The metadata file is replaced (after an fsync, by rename) before
    // any segment is deleted: old or new, whole; and old only if nothing
    // was deleted yet.
    let meta_new = rng.below(2) == 0;
    let gone = if meta_new {
        rng.below(deleted.len() as u64 + 1) as usize
    } else {
        0
    };
    for name in deleted.iter().skip(gone) {
        out.insert((*name).clone(), before[*name].clone());
    }
    for (name, new) in after {
        if !name.ends_with(".wal") {
            let pick = match before.get(name) {
                Some(old) if !meta_new => old.clone(),
                _ => new.clone(),
            };
            out.insert(name.clone(), pick);
            continue;
        }
        let zero = vec![0u8; new.len()];
        let old = before.get(name).unwrap_or(&zero);
        let mut img = old.clone();
        img.resize(new.len(), 0);
        for page in (0..new.len()).step_by(PAGE) {
            let range = page..(page + PAGE).min(new.len());
            if old.get(range.clone()) == Some(&new[range.clone()]) {
                continue;
            }
            match rng.below(3) {
                0 => {}
                1 => img[range.clone()].copy_from_slice(&new[range.clone()]),
                _ => {
                    for s in range.clone().step_by(SECTOR) {
                        let sr = s..(s + SECTOR).min(range.end);
                        if rng.below(2) == 0 {
                            img[sr.clone()].copy_from_slice(&new[sr.clone()]);
                        }
                    }
                }
            }
        }
        out.insert(name.clone(), img);
    }
    out
}

fn check_image(
    rt: &tokio::runtime::Runtime,
    image: &Files,
    before: &View,
    after: &View,
    what: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in image {
        fs::write(dir.path().join(name), bytes).unwrap();
    }
    let mut s =
        Store::open(dir.path(), cfg()).unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    let got = view(rt, &mut s);
    assert!(
        got.purged == before.purged || got.purged == after.purged,
        "{what}: purged {} (before {}, after {})",
        got.purged,
        before.purged,
        after.purged
    );
    assert!(
        got.vote == before.vote || got.vote == after.vote,
        "{what}: vote {:?}",
        got.vote
    );
    let indices: Vec<u64> = got.entries.keys().copied().collect();
    for w in indices.windows(2) {
        assert_eq!(w[0] + 1, w[1], "{what}: a hole after entry {}", w[0]);
    }
    for (i, e) in &got.entries {
        assert!(
            before.entries.get(i) == Some(e) || after.entries.get(i) == Some(e),
            "{what}: entry {} is neither before nor after (a truncated entry back?)\n got {:?}\n before {:?}\n after {:?}\n truncated {:?}",
            e.log_id,
            got.entries.values().map(|e| e.log_id.to_string()).collect::<Vec<_>>(),
            before.entries.values().map(|e| e.log_id.to_string()).collect::<Vec<_>>(),
            after.entries.values().map(|e| e.log_id.to_string()).collect::<Vec<_>>(),
            s.wal().snapshot().truncated(),
        );
    }
    for (i, e) in &before.entries {
        if *i <= got.purged || after.entries.get(i) != Some(e) {
            continue;
        }
        assert_eq!(
            got.entries.get(i),
            Some(e),
            "{what}: acknowledged entry {i} lost"
        );
    }
    // The store keeps working: append after what it holds.
    let next = s.log_state().last_log_id.map_or(1, |l| l.index + 1);
    rt.block_on(s.blocking_append([entry(1000, next, 10)]))
        .unwrap();
}

#[test]
fn power_cuts_around_append_truncate_and_purge_lose_nothing_acknowledged() {
    let rt = rt();
    let mut images = 0;
    for seed in 0..12u64 {
        let mut rng = Rng::new(seed + 100);
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), cfg()).unwrap();
        let mut next = 1u64;
        let mut term = 1u64;
        for step in 0..70u64 {
            let before_files = read_files(dir.path());
            let before = view(&rt, &mut s);
            let what = match rng.below(10) {
                0 if next > 4 => {
                    let at = next - 1 - rng.below(4);
                    rt.block_on(s.truncate(log_id(term, at))).unwrap();
                    term += 1;
                    next = at;
                    "truncate"
                }
                1 if next > 10 => {
                    let p = next - 1 - rng.below(10);
                    rt.block_on(s.purge(log_id(term, p))).unwrap();
                    "purge"
                }
                2 => {
                    rt.block_on(s.save_vote(&Vote::new(term, step))).unwrap();
                    "vote"
                }
                _ => {
                    let n = 1 + rng.below(5);
                    let batch: Vec<Entry> = (next..next + n)
                        .map(|i| entry(term, i, rng.below(3000) as usize))
                        .collect();
                    next += n;
                    rt.block_on(s.blocking_append(batch)).unwrap();
                    "append"
                }
            };
            let after_files = read_files(dir.path());
            let after = view(&rt, &mut s);
            for k in 0..3 {
                let image = crash_image(&before_files, &after_files, &mut rng);
                let ctx = format!("seed {seed} step {step} ({what}) image {k}");
                check_image(&rt, &image, &before, &after, &ctx);
                images += 1;
            }
        }
    }
    eprintln!("power-cut images checked: {images}");
    assert!(images >= 2500);
}
