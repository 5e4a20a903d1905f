//! The newer surface under real threads: truncation against retention and
//! snapshots, commit-notification callbacks that call back into the log,
//! and the positions an append returns. Every loop is bounded by a count,
//! never by a clock; a thread that would hang fails its test through a
//! watchdog instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use durability::frame::frame_len;
use durability::{BorrowedEntry, Config, Op, RunId, SyncMode, Wal, WalReader};
use uuid::Uuid;

fn run(n: u8) -> RunId {
    RunId::from_bytes([n; 16])
}

/// Waits for `rx` to deliver, or fails the test if nothing comes within
/// a minute (a hang).
fn within<T>(what: &str, rx: &mpsc::Receiver<T>) -> T {
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what}: no answer within a minute (a hang)"))
}

/// A snapshot taken while retention drops segments whose truncation
/// records go with them never yields an entry a truncation it can see
/// deleted: not through `iter`, `replay`, nor an in-process `WalReader`.
#[test]
fn snapshots_never_see_deleted_entries_while_retention_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default()
        .segment_size(8 << 10)
        .sync_mode(SyncMode::Async { interval_ms: 1_000 });
    let wal = Arc::new(Wal::open(dir.path(), cfg.clone()).unwrap());
    // (from, record LSN) of every truncation done, and the keys of the
    // transactions they deleted.
    let records: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let deleted_keys: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let checkers: Vec<_> = (0..2)
        .map(|c| {
            let (wal, records, deleted_keys, done) = (
                wal.clone(),
                records.clone(),
                deleted_keys.clone(),
                done.clone(),
            );
            let dir = dir.path().to_path_buf();
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let mut views = 0u64;
                while !done.load(Ordering::SeqCst) || views < 50 {
                    views += 1;
                    let recs = records.lock().unwrap().clone();
                    let gone = deleted_keys.lock().unwrap().clone();
                    let snap = wal.snapshot();
                    let end = snap.end_lsn();
                    let dead =
                        |lsn: u64| recs.iter().any(|&(f, at)| at < end && f <= lsn && lsn < at);
                    for e in snap.iter() {
                        let e = e.unwrap();
                        assert!(!dead(e.lsn), "iter yielded the deleted entry at {}", e.lsn);
                    }
                    if views % 16 != c {
                        continue;
                    }
                    let deleted = |k: &[u8]| gone.iter().any(|g| g == k);
                    snap.replay(|t| {
                        for op in t.ops {
                            let k = op.entry.key().unwrap();
                            assert!(
                                !deleted(k),
                                "replay delivered the deleted write {:?}",
                                String::from_utf8_lossy(k)
                            );
                        }
                    })
                    .unwrap();
                    let r = WalReader::open(&dir, &cfg).unwrap();
                    r.replay(|t| {
                        for op in t.ops {
                            assert!(
                                !deleted(op.entry.key().unwrap()),
                                "a reader saw a deleted write"
                            );
                        }
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    let filler = vec![b'x'; 900];
    for round in 0..1_500u64 {
        let gone = format!("gone-{round}");
        let pos = wal
            .append_txn(
                run(1),
                round,
                &[Op::Write {
                    key: gone.as_bytes(),
                    value: b"v",
                    version: 1,
                }],
            )
            .unwrap();
        let end = wal.truncate_from(pos.begin).unwrap();
        // Known deleted only once the truncation returned: a snapshot taken
        // before it may hold the write.
        deleted_keys.lock().unwrap().push(gone.into_bytes());
        let at = end - frame_len(&BorrowedEntry::Truncate { from: pos.begin }) as u64;
        records.lock().unwrap().push((pos.begin, at));
        // Fill the segment, then cut everything before a checkpoint: the
        // record's segment goes, and the record with it.
        for i in 0..4 {
            wal.append_txn(
                run(2),
                1_000_000 + round * 10 + i,
                &[Op::Write {
                    key: b"f",
                    value: &filler,
                    version: 1,
                }],
            )
            .unwrap();
        }
        let ck = wal
            .checkpoint(Uuid::from_u128(round as u128), round, &[])
            .unwrap();
        wal.truncate_before(ck).unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for c in checkers {
        c.join().unwrap();
    }
    Arc::try_unwrap(wal).unwrap().close().unwrap();
}
