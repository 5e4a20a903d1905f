//! The parallel scan (a helper thread scanning sealed segments ahead)
//! against the sequential one, on the same logs, damaged in seeded
//! ways: every part of the outcome must be the same.

use std::time::Duration;

use std::fs;

use super::walk::list;
use super::*;
use crate::format::entry::{BorrowedEntry, Op, RunId, WalEntry};
use crate::format::frame::DEFAULT_MAX_PAYLOAD;
use crate::format::header::DATA_START;
use crate::log::config::Config;
use crate::log::wal::Wal;
use crate::SyncMode;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Segments whose scan a recovery took from its helper.
pub(super) static HELPED: AtomicUsize = AtomicUsize::new(0);

#[path = "../../tests/common/rng.rs"]
mod rng;

use rng::Rng as Seeded;

/// A log of many 16 KiB segments holding transactions (some spanning
/// segments, some never ended), plain writes of interleaved runs,
/// checkpoints and truncations.
fn build(dir: &Path, rng: &mut Seeded) {
    let config = Config::default()
        .segment_size(16 << 10)
        .sync_mode(SyncMode::Async { interval_ms: 1000 });
    let wal = Wal::open(dir, config).expect("open");
    let runs: Vec<RunId> = (1..=5u8).map(|b| RunId::from_bytes([b; 16])).collect();
    let mut lsns = Vec::new();
    let value = vec![0xA5u8; 600];
    for step in 0..400u64 {
        let run = runs[rng.below(runs.len() as u64) as usize];
        let len = 1 + rng.below(value.len() as u64) as usize;
        match rng.below(10) {
            0..=3 => {
                // A burst of plain writes of one run: one stretch.
                for i in 0..1 + rng.below(12) {
                    let lsn = wal
                        .append_entry(BorrowedEntry::Write {
                            run_id: run,
                            key: b"key",
                            value: &value[..len / (1 + i as usize)],
                            version: step,
                        })
                        .map(|p| p.lsn)
                        .expect("write");
                    lsns.push(lsn);
                }
            }
            4..=5 => {
                let ops = [
                    Op::Write {
                        key: b"a",
                        value: &value[..len],
                        version: step,
                    },
                    Op::Delete {
                        key: b"b",
                        version: step,
                    },
                ];
                let pos = wal.append_txn(run, step, &ops).expect("txn");
                lsns.push(pos.begin);
            }
            6 => {
                // Begun here, ended (or not) by a later step.
                let lsn = wal
                    .append(&WalEntry::BeginTxn {
                        txn_id: step % 3,
                        run_id: run,
                        timestamp: 0,
                    })
                    .map(|p| p.lsn)
                    .expect("begin");
                lsns.push(lsn);
            }
            7 => {
                let end = if rng.below(2) == 0 {
                    WalEntry::CommitTxn {
                        txn_id: step % 3,
                        run_id: run,
                    }
                } else {
                    WalEntry::AbortTxn {
                        txn_id: step % 3,
                        run_id: run,
                    }
                };
                lsns.push(wal.append(&end).map(|p| p.lsn).expect("end"));
            }
            8 => {
                let lsn = wal
                    .append(&WalEntry::Checkpoint {
                        snapshot_id: Uuid::from_u128(u128::from(step)),
                        version: step,
                        active_runs: runs[..2].to_vec(),
                    })
                    .map(|p| p.lsn)
                    .expect("checkpoint");
                lsns.push(lsn);
            }
            _ => {
                if let Some(back) = lsns.len().checked_sub(1 + rng.below(6) as usize) {
                    // A dead LSN (behind an earlier truncation) is refused.
                    let _ = wal.truncate_from(lsns[back]);
                }
            }
        }
    }
    wal.close().expect("close");
}

/// Damages one of the log's files the way a crash or a bad disk may.
fn damage(dir: &Path, rng: &mut Seeded) -> String {
    let listing = list(dir).expect("list");
    let segs = &listing.segments;
    let k = rng.below(segs.len() as u64) as usize;
    let path = &segs[k].1;
    let mut bytes = fs::read(path).expect("read");
    let what = rng.below(6);
    let at = DATA_START + rng.below((bytes.len() - DATA_START) as u64 / 4) as usize;
    match what {
        0 => return "none".into(),
        1 => bytes[at] ^= 1 << rng.below(8),
        2 => bytes[at..at + 64].fill(0),
        3 => bytes.truncate(at),
        4 => bytes[..64].fill(0xEE),
        _ => {
            fs::remove_file(path).expect("remove");
            return format!("removed segment {k}");
        }
    }
    fs::write(path, &bytes).expect("write");
    format!("damage {what} at {at} of segment {k}")
}

/// Everything a recovery decides, as text.
fn outcome(dir: &Path, parallel: bool, limit: Option<(Uuid, u64)>) -> String {
    let opts = ScanOptions {
        writable: false,
        copy: false,
        live: false,
        limit,
        parallel,
    };
    match recover(dir, Decoder::default(), DEFAULT_MAX_PAYLOAD, opts) {
        Err(e) => format!("error: {e}"),
        Ok(None) => "no log".into(),
        Ok(Some(r)) => {
            let report = RecoveryReport {
                duration: Duration::ZERO,
                ..r.report.clone()
            };
            let segs: Vec<_> = r
                .segments
                .iter()
                .map(|s| (s.seg.seq(), s.first_lsn, s.txn_open))
                .collect();
            format!(
                "{report:?}\nsegments {segs:?} adopted {} end {}\nindex {:?}\nopen {:?}\ntruncations {:?}\nlimited {:?} zero {:?}\ndiscard {:?} blanks {:?}",
                r.adopted,
                r.end_lsn,
                r.index.canonical(),
                r.open_txns.canonical(),
                r.truncations,
                r.limited_at,
                r.zero_range,
                r.discard,
                r.blanks,
            )
        }
    }
}

#[test]
fn parallel_recovery_decides_what_sequential_recovery_decides() {
    let helped_before = HELPED.load(Ordering::Relaxed);
    for seed in 0..24u64 {
        let mut rng = Seeded::new(seed);
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("log");
        build(&dir, &mut rng);
        assert!(
            list(&dir).expect("list").segments.len() >= 4,
            "seed {seed}: a multi-segment log"
        );
        let what = damage(&dir, &mut rng);
        let sequential = outcome(&dir, false, None);
        let parallel = outcome(&dir, true, None);
        assert_eq!(parallel, sequential, "seed {seed}, {what}");
        // A log that failed a sync: nothing past a (seeded) LSN is
        // trusted, whichever thread scans the segment holding it.
        let opts = ScanOptions {
            writable: false,
            copy: false,
            live: false,
            limit: None,
            parallel: false,
        };
        if let Ok(Some(r)) = recover(&dir, Decoder::default(), DEFAULT_MAX_PAYLOAD, opts) {
            let limit = Some((r.instance, rng.below(r.end_lsn + 1)));
            let sequential = outcome(&dir, false, limit);
            let parallel = outcome(&dir, true, limit);
            assert_eq!(parallel, sequential, "seed {seed}, {what}, limit {limit:?}");
        }
    }
    if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
        assert!(
            HELPED.load(Ordering::Relaxed) > helped_before,
            "the helper scanned no segment the loop used"
        );
    }
}
