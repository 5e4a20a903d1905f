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

/// xorshift64*: seeded, so every run of a test does the same.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// A follower that applies what a tail delivers (a Truncate deletes every
/// entry it holds from the record's `from` on) holds exactly the live log,
/// whatever is truncated: entries, transactions, and truncation records
/// themselves (whose deleted ranges then merge with the new one).
#[test]
fn a_follower_of_a_tail_holds_the_live_log_when_truncations_nest() {
    for seed in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::default()
            .segment_size(8 << 10)
            .sync_mode(SyncMode::Async { interval_ms: 1_000 });
        let wal = Wal::open(dir.path(), cfg).unwrap();
        let mut rng = Rng::new(seed);
        let mut tail = wal.tail(0);
        let mut follower: Vec<(u64, durability::WalEntry)> = Vec::new();
        let mut follow = |tail: &mut durability::Tail, n: u64| {
            for _ in 0..n {
                let Some((lsn, e)) = tail.poll().unwrap() else {
                    break;
                };
                if let durability::WalEntry::Truncate { from } = e {
                    follower.retain(|(l, _)| *l < from);
                }
                follower.push((lsn, e));
            }
        };
        for step in 0..60u64 {
            match rng.below(4) {
                0 | 1 => {
                    wal.append_txn(
                        run(1),
                        step,
                        &[Op::Write {
                            key: b"k",
                            value: b"v",
                            version: step,
                        }],
                    )
                    .unwrap();
                }
                2 => {
                    // Truncate from a live entry, records included (half the
                    // time the newest record, when there is one).
                    let live: Vec<(u64, bool)> = wal
                        .snapshot()
                        .iter()
                        .map(|e| {
                            let e = e.unwrap();
                            (e.lsn, e.entry.truncate_from().is_some())
                        })
                        .collect();
                    let records: Vec<u64> = live.iter().filter(|l| l.1).map(|l| l.0).collect();
                    let lsn = match (rng.below(2), records.last()) {
                        (0, Some(&r)) => r,
                        _ if live.is_empty() => continue,
                        _ => live[rng.below(live.len() as u64) as usize].0,
                    };
                    wal.truncate_from(lsn).unwrap();
                }
                _ => follow(&mut tail, rng.below(6)),
            }
        }
        follow(&mut tail, u64::MAX);
        let live: Vec<(u64, durability::WalEntry)> = wal
            .snapshot()
            .iter()
            .map(|e| {
                let e = e.unwrap();
                (e.lsn, e.entry.to_owned())
            })
            .collect();
        let strip =
            |v: &[(u64, durability::WalEntry)]| -> Vec<u64> { v.iter().map(|e| e.0).collect() };
        assert_eq!(
            strip(&follower),
            strip(&live),
            "seed {seed}: the follower kept deleted entries"
        );
        wal.close().unwrap();
    }
}

/// A log written before records named the whole range they end (a record
/// that truncated an earlier record, written byte for byte here): a tail
/// still tells its reader where the deleted range starts.
#[test]
fn a_tail_names_the_whole_deleted_range_of_an_older_log() {
    use durability::{frame, segment};
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default()
        .segment_size(64 << 10)
        .sync_mode(SyncMode::Strict);
    let wal = Wal::open(dir.path(), cfg.clone()).unwrap();
    let mut lsns = Vec::new();
    for i in 0..3 {
        lsns.push(
            wal.append_txn(
                run(1),
                i,
                &[Op::Write {
                    key: b"k",
                    value: b"v",
                    version: i,
                }],
            )
            .unwrap(),
        );
    }
    let (salt, end) = (segment::salt(&wal.instance_id()), wal.end_lsn());
    wal.close().unwrap();
    // R1 deletes the second and third transactions; R2 deletes R1, naming
    // only R1's position, as an older writer did.
    let b = lsns[1].begin;
    let r1 = BorrowedEntry::Truncate { from: b };
    let r2 = BorrowedEntry::Truncate { from: end };
    let mut bytes = vec![0u8; frame_len(&r1) + frame_len(&r2)];
    let n = frame::encode_into(&r1, segment::seed(salt, end), &mut bytes).unwrap();
    let r2_lsn = end + n as u64;
    frame::encode_into(&r2, segment::seed(salt, r2_lsn), &mut bytes[n..]).unwrap();
    let seg = dir.path().join(segment::file_name(0));
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &bytes, 4096 + end).unwrap();
    drop(file);
    let wal = Wal::open(dir.path(), cfg).unwrap();
    assert_eq!(wal.snapshot().truncated(), &[(b, r2_lsn)]);
    // A follower that holds everything up to R1 learns that R2 deletes
    // from B, not only from R1.
    let mut tail = wal.tail(end);
    let (lsn, e) = tail.poll().unwrap().unwrap();
    assert_eq!(lsn, r2_lsn);
    assert_eq!(e, durability::WalEntry::Truncate { from: b });
    wal.close().unwrap();
}
