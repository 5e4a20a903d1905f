//! `LogStore` beyond openraft's suite (which never reopens a store): every
//! operation survives a reopen, truncated entries never come back, a
//! callback fires only after a sync covers its entries, the Async mode is
//! refused, and a reader beside append, truncate and purge never sees an
//! entry that is gone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use durability::{Config, RunId, SyncMode};
use durability_raft::log_store::{LogStore, OpenError};
use durability_raft::types::{Entry, RunTxn, TxnOp, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftLogReader, Vote};

type Store = LogStore<TypeConfig>;

fn cfg() -> Config {
    Config::default()
        .segment_size(64 << 10)
        .sync_mode(SyncMode::Strict)
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

/// Entry `index` of `term`: a run's transaction (every third one blank).
fn entry(term: u64, index: u64) -> Entry {
    let payload = if index % 3 == 0 {
        EntryPayload::Blank
    } else {
        EntryPayload::Normal(RunTxn {
            run_id: RunId::from_bytes([(index % 4) as u8 + 1; 16]),
            txn_id: index,
            ops: vec![
                TxnOp::Put {
                    key: format!("k{index}").into_bytes(),
                    value: format!("t{term}-{index}").into_bytes(),
                },
                TxnOp::Delete {
                    key: b"gone".to_vec(),
                },
            ],
            // The leader's clock, carried into every replica's BeginTxn
            // and read back.
            timestamp: 1_700_000_000_000_000 + index,
        })
    };
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

fn entries(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range.map(|i| entry(term, i)).collect()
}

/// What a reopen must reproduce.
#[derive(Debug, PartialEq)]
struct Seen {
    state: (Option<LogId<u64>>, Option<LogId<u64>>),
    vote: Option<Vote<u64>>,
    entries: Vec<Entry>,
}

fn seen(rt: &tokio::runtime::Runtime, s: &mut Store) -> Seen {
    rt.block_on(async {
        let st = s.get_log_state().await.unwrap();
        Seen {
            state: (st.last_purged_log_id, st.last_log_id),
            vote: s.read_vote().await.unwrap(),
            entries: s.try_get_log_entries(..).await.unwrap(),
        }
    })
}

#[test]
fn every_operation_survives_a_reopen() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut s = Store::open(&path, cfg()).unwrap();
    let check = |s: Store, what: &str| -> Store {
        let mut s = s;
        let before = seen(&rt, &mut s);
        drop(s);
        let mut s = Store::open(&path, cfg()).unwrap();
        assert_eq!(seen(&rt, &mut s), before, "after {what}");
        s
    };
    rt.block_on(s.blocking_append(entries(1, 1..=40))).unwrap();
    s = check(s, "append");
    rt.block_on(s.truncate(log_id(1, 30))).unwrap();
    s = check(s, "truncate");
    rt.block_on(s.blocking_append(entries(2, 30..=50))).unwrap();
    s = check(s, "append after truncate");
    rt.block_on(s.purge(log_id(1, 10))).unwrap();
    s = check(s, "purge");
    rt.block_on(s.save_vote(&Vote::new(3, 2))).unwrap();
    s = check(s, "save_vote");
    rt.block_on(s.save_committed(Some(log_id(2, 45)))).unwrap();
    s = check(s, "save_committed");
    assert_eq!(
        rt.block_on(s.read_committed()).unwrap(),
        Some(log_id(2, 45))
    );
    // Purge past the last entry: the next append is at purged + 1.
    rt.block_on(s.purge(log_id(2, 70))).unwrap();
    s = check(s, "purge past the end");
    let st = seen(&rt, &mut s);
    assert_eq!(st.state, (Some(log_id(2, 70)), Some(log_id(2, 70))));
    assert!(st.entries.is_empty());
    rt.block_on(s.blocking_append(entries(2, 71..=80))).unwrap();
    s = check(s, "append after purge past the end");
    let st = seen(&rt, &mut s);
    assert_eq!(st.state, (Some(log_id(2, 70)), Some(log_id(2, 80))));
    assert_eq!(st.entries, entries(2, 71..=80));
    // A committed log id the log no longer holds is not believed.
    assert_eq!(
        rt.block_on(s.read_committed()).unwrap(),
        Some(log_id(2, 45))
    );
}

#[test]
fn entries_of_a_truncated_term_never_come_back() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let crashed = dir.path().join("crashed");
    {
        let mut s = Store::open(&path, cfg()).unwrap();
        rt.block_on(s.blocking_append(entries(1, 1..=100))).unwrap();
        rt.block_on(s.truncate(log_id(1, 50))).unwrap();
        rt.block_on(s.blocking_append(entries(2, 50..=60))).unwrap();
        // A crash of the process: the files as they are now (what the page
        // cache holds), without a close or a final sync. Power cuts are in
        // crash_test.rs.
        std::fs::create_dir(&crashed).unwrap();
        for f in std::fs::read_dir(&path).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), crashed.join(f.file_name())).unwrap();
        }
    }
    let mut s = Store::open(&crashed, cfg()).unwrap();
    let got = rt.block_on(s.try_get_log_entries(..)).unwrap();
    let mut want = entries(1, 1..=49);
    want.extend(entries(2, 50..=60));
    assert_eq!(got, want);
    let st = rt.block_on(s.get_log_state()).unwrap();
    assert_eq!(st.last_log_id, Some(log_id(2, 60)));
    // The log underneath is still a log of runs: no run sees a deleted txn.
    let wal = s.wal();
    for r in 1..=4u8 {
        let run = RunId::from_bytes([r; 16]);
        wal.replay_run(run, |t| {
            let txn = t.txn_id.unwrap();
            assert!(txn <= 60, "txn {txn} of a truncated entry replayed");
            for op in t.ops {
                if let Some(v) = op.entry.value() {
                    let v = String::from_utf8_lossy(v);
                    assert!(txn < 50 || v.starts_with("t2-"), "{v}");
                }
            }
        })
        .unwrap();
    }
}

#[test]
fn a_callback_fires_only_after_a_sync_covers_its_entries() {
    for mode in [
        SyncMode::Strict,
        SyncMode::Batched {
            interval_ms: 10,
            batch_size: 7,
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg().sync_mode(mode)).unwrap();
        let bad = Arc::new(Mutex::new(Vec::<String>::new()));
        let fired = Arc::new(AtomicU64::new(0));
        let last = Arc::new(AtomicU64::new(0));
        let syncs_before = s.wal().stats().syncs;
        for batch in 0..50u64 {
            let first = batch * 4 + 1;
            s.append_entries(entries(1, first..=first + 3), {
                let (s2, bad, fired, last) = (
                    s.clone(),
                    Arc::clone(&bad),
                    Arc::clone(&fired),
                    Arc::clone(&last),
                );
                // The log's end when the batch was appended: the callback
                // must find it durable.
                let end = s.wal().end_lsn();
                move |r| {
                    r.unwrap();
                    let durable = s2.wal().durable_lsn();
                    if durable < end {
                        bad.lock()
                            .unwrap()
                            .push(format!("batch {batch}: durable {durable} < {end}"));
                    }
                    if last.swap(batch, Ordering::SeqCst) > batch {
                        bad.lock()
                            .unwrap()
                            .push(format!("batch {batch} out of order"));
                    }
                    fired.fetch_add(1, Ordering::SeqCst);
                }
            })
            .unwrap();
        }
        s.wal()
            .wait_durable(durability::End(s.wal().end_lsn()))
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while fired.load(Ordering::SeqCst) < 50 {
            assert!(std::time::Instant::now() < deadline, "callbacks missing");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(bad.lock().unwrap().is_empty(), "{:?}", bad.lock().unwrap());
        let syncs = s.wal().stats().syncs - syncs_before;
        assert!(syncs >= 1, "{mode:?}: no sync, yet callbacks fired");
    }
}

#[test]
fn the_async_mode_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(
        dir.path(),
        cfg().sync_mode(SyncMode::Async { interval_ms: 10 }),
    )
    .unwrap_err();
    assert!(matches!(err, OpenError::AsyncMode(_)), "{err}");
    assert!(err.to_string().contains("Strict"), "{err}");
}

#[test]
fn a_reader_beside_append_truncate_and_purge_never_sees_a_deleted_entry() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), cfg()).unwrap();
    // The log ids deleted so far (truncated), and the purged boundary.
    let deleted = Arc::new(Mutex::new(std::collections::BTreeSet::<LogId<u64>>::new()));
    let purged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let mut r = rt.block_on(s.get_log_reader());
        let (deleted, purged, stop) =
            (Arc::clone(&deleted), Arc::clone(&purged), Arc::clone(&stop));
        std::thread::spawn(move || {
            let rt = rt_for_thread();
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Read the boundary and the deleted set before the entries:
                // anything deleted before this point must not show.
                let p = purged.load(Ordering::SeqCst);
                let gone = deleted.lock().unwrap().clone();
                let got = rt.block_on(r.try_get_log_entries(..)).unwrap();
                for w in got.windows(2) {
                    assert_eq!(w[0].log_id.index + 1, w[1].log_id.index, "a hole");
                }
                for e in &got {
                    assert!(e.log_id.index > p, "purged entry {} read", e.log_id);
                    assert!(
                        !gone.contains(&e.log_id),
                        "truncated entry {} read",
                        e.log_id
                    );
                    assert_eq!(*e, entry(e.log_id.leader_id.term, e.log_id.index));
                }
                reads += 1;
            }
            reads
        })
    };
    let mut next = 1u64;
    let mut term = 1u64;
    for round in 0..300u64 {
        rt.block_on(s.blocking_append(entries(term, next..=next + 9)))
            .unwrap();
        next += 10;
        if round % 3 == 2 {
            // Truncate the last five and start a new term there.
            let at = next - 5;
            let old: Vec<LogId<u64>> = (at..next).map(|i| log_id(term, i)).collect();
            rt.block_on(s.truncate(log_id(term, at))).unwrap();
            deleted.lock().unwrap().extend(old);
            term += 1;
            next = at;
        }
        if round % 10 == 9 {
            let p = next - 20;
            rt.block_on(s.purge(log_id(term, p))).unwrap();
            purged.store(p, Ordering::SeqCst);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 0);
}

fn rt_for_thread() -> tokio::runtime::Runtime {
    rt()
}

/// One append larger than a segment (a batch is one unit in one segment)
/// is written as several batches, cut between entries: every entry is
/// there, indexed, and survives a reopen; one entry larger than a segment
/// is refused with the log's error, and nothing of it is written.
#[test]
fn an_append_larger_than_a_segment_goes_in_whole_entries() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let small = Config::default()
        .segment_size(16 << 10)
        .sync_mode(SyncMode::Strict);
    let mut s = Store::open(&path, small.clone()).unwrap();
    let big = |i: u64| Entry {
        log_id: log_id(1, i),
        payload: EntryPayload::Normal(RunTxn {
            run_id: RunId::from_bytes([1; 16]),
            txn_id: i,
            ops: vec![TxnOp::Put {
                key: format!("k{i}").into_bytes(),
                value: vec![b'x'; 3000],
            }],
            timestamp: 0,
        }),
    };
    let batch: Vec<Entry> = (1..=20).map(big).collect();
    rt.block_on(s.blocking_append(batch.clone())).unwrap();
    assert!(s.wal().stats().segments >= 5);
    let got = rt.block_on(s.try_get_log_entries(..)).unwrap();
    assert_eq!(got, batch);
    drop(s);
    let mut s = Store::open(&path, small).unwrap();
    assert_eq!(rt.block_on(s.try_get_log_entries(..)).unwrap(), batch);
    let huge = Entry {
        log_id: log_id(1, 21),
        payload: EntryPayload::Normal(RunTxn {
            run_id: RunId::from_bytes([1; 16]),
            txn_id: 21,
            ops: (0..8)
                .map(|k| TxnOp::Put {
                    key: vec![k],
                    value: vec![b'y'; 3000],
                })
                .collect(),
            timestamp: 0,
        }),
    };
    let end = s.wal().end_lsn();
    assert!(rt.block_on(s.blocking_append(vec![huge])).is_err());
    assert_eq!(
        s.wal().end_lsn(),
        end,
        "part of a refused entry was written"
    );
}

/// A node that installs a snapshot purges its whole log and goes on from
/// the snapshot's index: a replay of a run from its log starts at the
/// purge point and says so, never 1..806 then 2003.. with the middle only
/// in the snapshot. Also after a reopen, and through a read-only reader.
#[test]
fn a_replay_after_a_snapshot_install_starts_at_the_purge_point() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let run = RunId::from_bytes([9; 16]);
    let txn = |i: u64| Entry {
        log_id: log_id(1, i),
        payload: EntryPayload::Normal(RunTxn::put(run, i, format!("k{i}"), "v")),
    };
    let mut s = Store::open(&path, cfg()).unwrap();
    rt.block_on(s.blocking_append((1..=806).map(txn))).unwrap();
    // The snapshot covers up to 2002; the log is purged through it.
    rt.block_on(s.purge(log_id(1, 2002))).unwrap();
    rt.block_on(s.blocking_append((2003..=2100).map(txn)))
        .unwrap();
    let ids = |wal: &durability::Wal| {
        let mut ids = Vec::new();
        let stats = wal
            .replay_run(run, |t| ids.push(t.txn_id.unwrap()))
            .unwrap();
        (ids, stats.purged)
    };
    let want: Vec<u64> = (2003..=2100).collect();
    assert_eq!(ids(s.wal()), (want.clone(), true), "live");
    drop(s);
    let s = Store::open(&path, cfg()).unwrap();
    assert_eq!(ids(s.wal()), (want.clone(), true), "after a reopen");
    drop(s);
    let reader = durability::WalReader::open(&path, cfg()).unwrap();
    let mut seen = Vec::new();
    let stats = reader
        .replay_run(run, |t| seen.push(t.txn_id.unwrap()))
        .unwrap();
    assert_eq!((seen, stats.purged), (want, true), "read-only");
}
