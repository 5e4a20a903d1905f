//! The log against itself: readers on a live log, rotation, retention,
//! reopening, hostile headers, tails and closing. Each test is named after
//! what it guards; the concurrency suite (concurrency_test.rs) stresses the
//! same paths at random.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durability::format::header::{self, Header, MAX_LSN};
use durability::{Config, Error, Op, RecoveryMode, RunId, SyncMode, Wal, WalEntry, WalReader};
use uuid::Uuid;

fn cfg(seg: u64) -> Config {
    Config::default()
        .segment_size(seg)
        .sync_mode(SyncMode::Async { interval_ms: 20 })
}

fn run(n: u8) -> RunId {
    RunId::from_bytes([n; 16])
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(header::file_name(seq))
}

fn write(key: &[u8], value: &[u8], version: u64) -> WalEntry {
    WalEntry::Write {
        run_id: run(0),
        key: key.to_vec(),
        value: value.to_vec(),
        version,
    }
}

/// Snapshots taken while the writer rotates are consistent: the end never
/// lies past the segments the snapshot holds, so its last entries read.
#[test]
fn a_snapshot_taken_during_rotation_reads_its_last_entry() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), cfg(8 << 10)).unwrap());
    let lsns = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (wal, lsns, stop) = (Arc::clone(&wal), Arc::clone(&lsns), Arc::clone(&stop));
        std::thread::spawn(move || {
            let value = [7u8; 700];
            for i in 0..20_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let lsn = wal.append(&write(b"k", &value, i)).map(|p| p.lsn).unwrap();
                lsns.lock().unwrap().push(lsn);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut checked = 0u64;
    while Instant::now() < deadline && !writer.is_finished() {
        let snap = wal.snapshot();
        let last = {
            let l = lsns.lock().unwrap();
            let k = l.partition_point(|&x| x < snap.end_lsn());
            (k > 0).then(|| l[k - 1])
        };
        if let Some(lsn) = last {
            if lsn >= snap.start_lsn() {
                let e = snap.read_at(lsn).unwrap_or_else(|e| {
                    panic!("snapshot {snap:?}: its entry at {lsn} does not read: {e}")
                });
                assert_eq!(e.lsn, lsn);
                checked += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(checked > 100, "only {checked} snapshots checked");
}

/// Retention never cuts a transaction: neither one written entry by entry
/// and aborted, nor one appended whole that is larger than a segment. So a
/// replay after retention never delivers half a transaction as standalone
/// writes.
#[test]
fn retention_never_delivers_half_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let seg = 8u64 << 10;
    let wal = Wal::open(dir.path(), cfg(seg)).unwrap();
    let a = run(1);
    let b = run(2);
    let value = [b'v'; 1000];
    // Run A: a transaction written entry by entry across segments, aborted.
    wal.append(&WalEntry::BeginTxn {
        txn_id: 1,
        run_id: a,
        timestamp: 1,
    })
    .unwrap();
    for i in 0..12 {
        wal.append(&WalEntry::Write {
            run_id: a,
            key: b"a".to_vec(),
            value: value.to_vec(),
            version: i,
        })
        .unwrap();
    }
    wal.append(&WalEntry::AbortTxn {
        txn_id: 1,
        run_id: a,
    })
    .unwrap();
    // Run B: a committed transaction larger than a segment, so it spans.
    let ops: Vec<Op<'_>> = (0..12)
        .map(|i| Op::Write {
            key: b"b",
            value: &value,
            version: i,
        })
        .collect();
    let big = wal.append_txn(b, 2, &ops).unwrap();
    // Filler, so there are whole segments to remove after them.
    for i in 0..40 {
        wal.append_txn(
            run(3),
            100 + i,
            &[Op::Write {
                key: b"c",
                value: &value,
                version: i,
            }],
        )
        .unwrap();
    }
    let ck = wal
        .checkpoint(Uuid::from_u128(9), 1, &[])
        .map(|p| p.lsn)
        .unwrap();
    let removed = wal.purge_to_checkpoint(ck).unwrap();
    assert!(removed > 0, "retention removed nothing");
    let check =
        |what: &str, stats: durability::ReplayStats, txns: &[(RunId, Option<u64>, usize)]| {
            assert_eq!(stats.standalone, 0, "{what}: standalone writes delivered");
            for &(r, txn, n) in txns {
                assert_ne!(
                    r, a,
                    "{what}: a write of the aborted transaction was delivered"
                );
                if r == b {
                    assert_eq!(
                        (txn, n),
                        (Some(2), 12),
                        "{what}: run B's transaction not whole"
                    );
                }
            }
        };
    let mut got = Vec::new();
    let stats = wal
        .replay(|t| got.push((t.run_id, t.txn_id, t.ops.len())))
        .unwrap();
    check("replay", stats, &got);
    for r in [a, b] {
        let mut got = Vec::new();
        let stats = wal
            .replay_run(r, |t| got.push((t.run_id, t.txn_id, t.ops.len())))
            .unwrap();
        check("replay_run", stats, &got);
    }
    let start = wal.start_lsn();
    drop(wal);
    let reader = WalReader::open(dir.path(), cfg(seg)).unwrap();
    assert_eq!(reader.snapshot().start_lsn(), start);
    let mut got = Vec::new();
    let stats = reader
        .replay(|t| got.push((t.run_id, t.txn_id, t.ops.len())))
        .unwrap();
    check("replay after reopen", stats, &got);
    assert!(big.begin < ck);
}

/// A write open that finds a last segment grown past its created size
/// (a filesystem that appended to it) never shrinks the file: a reader in
/// another process may map it at that length. It zeroes the excess.
#[test]
fn a_write_open_never_shrinks_a_segment_a_reader_maps() {
    let dir = tempfile::tempdir().unwrap();
    let seg = 64u64 << 10;
    let wal = Wal::open(dir.path(), cfg(seg).prefault(false)).unwrap();
    for i in 0..10 {
        wal.append(&write(b"k", b"value", i)).unwrap();
    }
    wal.close().unwrap();
    let path = seg_path(dir.path(), 0);
    {
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&vec![0xA5; 1 << 20]).unwrap();
    }
    let grown = fs::metadata(&path).unwrap().len();
    let reader = WalReader::open(dir.path(), cfg(seg)).unwrap();
    assert_eq!(reader.snapshot().iter().count(), 10);
    let wal = Wal::open(dir.path(), cfg(seg).prefault(false)).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        grown,
        "the segment file was shrunk under a reader"
    );
    let bytes = fs::read(&path).unwrap();
    assert!(bytes[seg as usize..].iter().all(|&b| b == 0));
    // The reader still reads everything it saw; the writer goes on.
    assert_eq!(reader.snapshot().iter().filter(|e| e.is_ok()).count(), 10);
    wal.append(&write(b"k", b"more", 10)).unwrap();
    wal.close().unwrap();
    let again = WalReader::open(dir.path(), cfg(seg)).unwrap();
    assert!(again.recovery_report().problem.is_none());
    assert_eq!(again.snapshot().iter().count(), 11);
}

/// `(Rss, Private_Dirty + Shared_Dirty)` in KiB of this process's mappings
/// of `path`. Linux only: it reads `/proc/self/smaps`.
#[cfg(target_os = "linux")]
fn mapping_kib(path: &Path) -> (u64, u64) {
    let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
    let name = path.canonicalize().unwrap();
    let name = name.to_string_lossy();
    let (mut rss, mut dirty, mut inside) = (0, 0, false);
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = line.trim_end().ends_with(&*name);
            continue;
        }
        if !inside {
            continue;
        }
        let kib = |l: &str| -> u64 {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        if line.starts_with("Rss:") {
            rss += kib(line);
        } else if line.starts_with("Private_Dirty:") || line.starts_with("Shared_Dirty:") {
            dirty += kib(line);
        }
    }
    (rss, dirty)
}

/// Pre-faulting runs a window ahead of the writer: the pages it faults in
/// for writing (and so dirties, as zeros) are never more than two windows
/// past the data, so writeback never writes a whole segment of zeros.
/// Linux only: only Linux pre-faults (`MADV_POPULATE_WRITE`), and the
/// measure is `/proc/self/smaps`.
#[cfg(target_os = "linux")]
#[test]
fn prefaulting_dirties_only_a_window_ahead_of_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let seg = 16u64 << 20;
    let window = durability::os::segment::PREFAULT_WINDOW as u64 / 1024;
    let wal = Wal::open(dir.path(), cfg(seg)).unwrap();
    let (rss, dirty) = mapping_kib(&seg_path(dir.path(), 0));
    assert!(
        rss >= window / 2,
        "the active segment was not pre-faulted (Rss {rss} KiB)"
    );
    assert!(
        dirty <= 2 * window + 64,
        "pre-faulting dirtied {dirty} KiB of a {} KiB segment",
        seg / 1024
    );
    let value = vec![1u8; 4000];
    for i in 0..1024 {
        wal.append(&write(b"k", &value, i)).unwrap();
    }
    // 4 MiB appended: at most two windows of zeros beyond them.
    std::thread::sleep(Duration::from_millis(50));
    let (_, dirty) = mapping_kib(&seg_path(dir.path(), 0));
    assert!(
        dirty <= 4100 + 2 * window + 64,
        "4 MiB appended, {dirty} KiB dirty"
    );
    wal.close().unwrap();
}

/// Writes a segment file whose header is valid (CRC and all) but carries
/// the given fields.
fn forge_log(dir: &Path, seq_in_header: u64, first_lsn: u64) {
    fs::create_dir_all(dir).unwrap();
    let size = 64u64 << 10;
    let h = Header::new(Uuid::from_u128(5), seq_in_header, first_lsn, size);
    let mut bytes = vec![0u8; size as usize];
    bytes[..header::HEADER_LEN].copy_from_slice(zerocopy::IntoBytes::as_bytes(&h));
    fs::write(seg_path(dir, 0), bytes).unwrap();
}

/// Header fields near the limits of u64 are refused with a typed error,
/// never a panic or a wrapped LSN; a log near the LSN limit refuses the
/// append that would pass it, in every mode.
#[test]
fn hostile_header_fields_are_refused_and_the_lsn_never_wraps() {
    for (seq, lsn) in [(u64::MAX, 0), (0, u64::MAX - 100), (0, u64::MAX / 2)] {
        let dir = tempfile::tempdir().unwrap();
        forge_log(dir.path(), seq, lsn);
        assert!(
            matches!(
                WalReader::open(dir.path(), cfg(64 << 10)),
                Err(Error::SegmentHeader { .. })
            ),
            "seq {seq} lsn {lsn}"
        );
        assert!(matches!(
            Wal::open(dir.path(), cfg(64 << 10)),
            Err(Error::SegmentHeader { .. })
        ));
    }
    // A file named past the sequence limit is not a segment at all.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("18446744073709551615.wal"), [0u8; 8192]).unwrap();
    assert!(matches!(
        WalReader::open(dir.path(), cfg(64 << 10)),
        Err(Error::NotALog { .. })
    ));
    for mode in [SyncMode::Strict, SyncMode::default()] {
        let dir = tempfile::tempdir().unwrap();
        forge_log(dir.path(), 0, MAX_LSN - 300);
        let wal = Wal::open(dir.path(), cfg(64 << 10).sync_mode(mode)).unwrap();
        assert_eq!(wal.end_lsn(), MAX_LSN - 300);
        wal.append(&write(b"k", b"v", 1)).unwrap();
        let before = wal.end_lsn();
        assert!(matches!(
            wal.append(&write(b"k", &[0u8; 400], 2)),
            Err(Error::LogFull { .. })
        ));
        assert!(matches!(
            wal.append_txn(
                run(1),
                1,
                &[Op::Write {
                    key: b"k",
                    value: &[0u8; 400],
                    version: 3
                }]
            ),
            Err(Error::LogFull { .. })
        ));
        assert_eq!(wal.end_lsn(), before, "nothing written");
        wal.sync().unwrap();
        assert!(wal.stats().synced_lsn >= before);
        wal.close().unwrap();
        let r = WalReader::open(dir.path(), cfg(64 << 10)).unwrap();
        assert!(r.recovery_report().problem.is_none());
        assert_eq!(r.snapshot().iter().count(), 1);
    }
}

/// Limits an entry's 32-bit archive offsets cannot address are refused
/// when the log is opened, not half-way through a transaction.
#[test]
fn limits_beyond_32_bit_offsets_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let huge = Config::default()
        .segment_size(8 << 30)
        .max_entry_size(3 << 30);
    assert!(matches!(Wal::open(dir.path(), huge), Err(Error::Config(_))));
    let too_big = Config::default().segment_size((1 << 40) + 4096);
    assert!(matches!(
        Wal::open(dir.path(), too_big),
        Err(Error::Config(_))
    ));
}

/// `next_timeout(Duration::MAX)` means "no deadline"; a tail waiting for an
/// entry returns when one is appended, and with `Error::Closed` when the log
/// closes.
#[test]
fn a_tail_accepts_any_timeout_and_wakes_when_the_log_closes() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(64 << 10)).unwrap();
    let first = wal.append(&write(b"k", b"v", 0)).map(|p| p.lsn).unwrap();
    let mut tail = wal.tail(first);
    assert_eq!(tail.next_timeout(Duration::MAX).unwrap().unwrap().0, first);
    let wal = Arc::new(wal);
    let appender = {
        let wal = Arc::clone(&wal);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            wal.append(&write(b"k", b"w", 1)).map(|p| p.lsn).unwrap()
        })
    };
    let (lsn, _) = tail.next_timeout(Duration::MAX).unwrap().unwrap();
    assert_eq!(lsn, appender.join().unwrap());
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        Arc::into_inner(wal).unwrap().close().unwrap();
    });
    let t = Instant::now();
    assert!(matches!(
        tail.next_timeout(Duration::from_secs(30)),
        Err(Error::Closed)
    ));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    closer.join().unwrap();
}

/// `runs()` forgets runs whose entries retention deleted, and agrees with a
/// reopen.
#[test]
fn runs_forget_what_retention_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let seg = 8u64 << 10;
    let wal = Wal::open(dir.path(), cfg(seg)).unwrap();
    let value = [b'r'; 500];
    for n in 10..40u8 {
        wal.append_txn(
            run(n),
            1,
            &[Op::Write {
                key: b"k",
                value: &value,
                version: 1,
            }],
        )
        .unwrap();
    }
    let ck = wal
        .checkpoint(Uuid::from_u128(1), 1, &[])
        .map(|p| p.lsn)
        .unwrap();
    wal.append_txn(run(99), 1, &[]).unwrap();
    assert!(wal.purge_to_checkpoint(ck).unwrap() > 0);
    let live: BTreeSet<RunId> = wal.runs().into_iter().collect();
    assert!(live.len() < 31, "{} runs kept", live.len());
    let reader: BTreeSet<RunId> = WalReader::open(dir.path(), cfg(seg))
        .unwrap()
        .runs()
        .into_iter()
        .collect();
    assert_eq!(live, reader);
    wal.close().unwrap();
    let reopened: BTreeSet<RunId> = Wal::open(dir.path(), cfg(seg))
        .unwrap()
        .runs()
        .into_iter()
        .collect();
    assert_eq!(live, reopened);
}

/// A read-only open in the process that writes the log reads the writer's
/// published view: never a false problem, never refused, always a prefix.
#[test]
fn a_reader_beside_a_writer_of_this_process_sees_no_problem() {
    let dir = tempfile::tempdir().unwrap();
    let seg = 64u64 << 10;
    let wal = Arc::new(Wal::open(dir.path(), cfg(seg)).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (wal, stop) = (Arc::clone(&wal), Arc::clone(&stop));
        std::thread::spawn(move || {
            let value = vec![b'x'; 2000];
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 200_000 {
                wal.append_txn(
                    run((i % 5) as u8),
                    i,
                    &[Op::Write {
                        key: b"k",
                        value: &value,
                        version: i,
                    }],
                )
                .unwrap();
                i += 1;
            }
        })
    };
    let strict = cfg(seg).recovery_mode(RecoveryMode::AbsoluteConsistency);
    for k in 0..40 {
        let r = WalReader::open(dir.path(), &strict)
            .unwrap_or_else(|e| panic!("open {k} beside a live writer: {e}"));
        assert!(
            r.recovery_report().problem.is_none(),
            "{:?}",
            r.recovery_report()
        );
        let mut next = r.snapshot().start_lsn();
        for e in r.snapshot().iter() {
            let e = e.unwrap();
            assert_eq!(e.lsn, next);
            next += e.len as u64;
        }
        assert_eq!(next, r.snapshot().end_lsn());
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

/// Creating a log fsyncs the parent of every directory it creates, and a
/// prepared segment reused at open has its name made durable before
/// anything is appended to it.
#[test]
fn new_directories_and_reused_segments_are_made_durable() {
    use durability::faults::dir_syncs;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a").join("b");
    let wal = Wal::open(&dir, cfg(64 << 10)).unwrap();
    assert!(dir_syncs::count(root.path()) >= 1, "root not synced");
    assert!(
        dir_syncs::count(&root.path().join("a")) >= 1,
        "a not synced"
    );
    // Wait for the writer to prepare segment 1, then close: it stays blank.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seg_path(&dir, 1).exists() {
        assert!(Instant::now() < deadline, "segment 1 never prepared");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    wal.close().unwrap();
    let before = dir_syncs::count(&dir);
    let wal = Wal::open(&dir, cfg(64 << 10)).unwrap();
    assert!(seg_path(&dir, 1).exists());
    assert!(
        dir_syncs::count(&dir) > before,
        "the reused segment's name was not made durable"
    );
    wal.close().unwrap();
}

/// A huge sparse segment (a header that gives 64 GiB, a file of that size
/// that is nearly all hole) is scanned without reading its holes.
#[test]
fn a_huge_sparse_segment_is_scanned_without_reading_its_holes() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg(64 << 10).prefault(false)).unwrap();
    for i in 0..20 {
        wal.append(&write(b"k", b"sparse", i)).unwrap();
    }
    let instance = wal.instance_id();
    wal.close().unwrap();
    let size = 64u64 << 30;
    let path = seg_path(dir.path(), 0);
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    let h = Header::new(instance, 0, 0, size);
    use std::os::unix::fs::FileExt;
    f.write_all_at(zerocopy::IntoBytes::as_bytes(&h), 0)
        .unwrap();
    f.set_len(size).unwrap();
    drop(f);
    let t = Instant::now();
    let r = WalReader::open(dir.path(), cfg(64 << 10)).unwrap();
    assert!(
        r.recovery_report().problem.is_none(),
        "{:?}",
        r.recovery_report()
    );
    assert_eq!(r.snapshot().iter().count(), 20);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "scanning took {:?}: the holes were read",
        t.elapsed()
    );
}

const WRITER_DIR: &str = "DURABILITY_LIFECYCLE_WRITER_DIR";

/// The writer side of `a_reader_beside_retention_in_another_process`: runs
/// only when the parent starts this binary with the environment set.
#[test]
fn retention_writer_process() {
    let Ok(dir) = std::env::var(WRITER_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let wal = Wal::open(&dir, cfg(16 << 10)).unwrap();
    let value = [b'w'; 700];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0u64;
    while !dir.join("stop").exists() && Instant::now() < deadline {
        wal.append_txn(
            run((i % 4) as u8),
            i,
            &[Op::Write {
                key: b"k",
                value: &value,
                version: i,
            }],
        )
        .unwrap();
        if i % 40 == 39 {
            let ck = wal
                .checkpoint(Uuid::from_u128(i.into()), i, &[])
                .map(|p| p.lsn)
                .unwrap();
            wal.purge_to_checkpoint(ck).unwrap();
        }
        i += 1;
    }
    wal.close().unwrap();
}

/// A read-only open in one process while another process appends and
/// deletes old segments: a segment deleted between the listing and its
/// opening makes the scan start again; never an I/O error, never a false
/// problem, never a refusal.
#[test]
fn a_reader_beside_retention_in_another_process() {
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "retention_writer_process", "--test-threads=1"])
        .env(WRITER_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Kill(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    // Retention deletes old segments as fast as the writer makes new ones:
    // wait for any segment numbered 3 or more.
    let newest = |dir: &Path| {
        fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| header::parse_file_name(e.ok()?.file_name().to_str()?))
                    .max()
            })
            .ok()
            .flatten()
    };
    while newest(dir.path()).is_none_or(|s| s < 3) {
        assert!(Instant::now() < deadline, "the writer never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
    let strict = cfg(16 << 10).recovery_mode(RecoveryMode::AbsoluteConsistency);
    let mut starts = BTreeSet::new();
    // At least 300 opens, and on until retention has moved the start.
    let until = Instant::now() + Duration::from_secs(20);
    let mut k = 0;
    while k < 300 || (starts.len() < 2 && Instant::now() < until) {
        k += 1;
        let r = WalReader::open(dir.path(), &strict)
            .unwrap_or_else(|e| panic!("open {k} beside retention: {e}"));
        assert!(
            r.recovery_report().problem.is_none(),
            "open {k}: {:?}",
            r.recovery_report()
        );
        assert!(r.snapshot().iter().all(|e| e.is_ok()));
        starts.insert(r.snapshot().start_lsn());
    }
    fs::write(dir.path().join("stop"), b"").unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the writer process failed: {status:?}"
    );
    assert!(starts.len() > 1, "retention never ran during the opens");
}

/// Whether the page at `off` is dirty (1) or not (0).
#[cfg(target_os = "linux")]
fn dirty_pages_at(file: &fs::File, off: u64) -> Option<u64> {
    dirty_pages_in(file, off, 4096)
}

/// The page cache's own count of dirty pages in `[0, len)` of `file`
/// (`cachestat(2)`, Linux 6.5+); `None` where the kernel lacks it.
#[cfg(target_os = "linux")]
fn dirty_pages(file: &fs::File, len: u64) -> Option<u64> {
    dirty_pages_in(file, 0, len)
}

#[cfg(target_os = "linux")]
fn dirty_pages_in(file: &fs::File, off: u64, len: u64) -> Option<u64> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451;
    let range = Range { off, len };
    let mut stat = Stat::default();
    // SAFETY: cachestat reads `range` and writes `stat`, both live and of
    // the layout the kernel defines; `file` is an open descriptor.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0,
        )
    };
    if r == 0 {
        Some(stat.nr_dirty)
    } else {
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOSYS)
        );
        None
    }
}

/// Pages a Strict sync made durable stay clean: prefaulting ahead of the
/// writer never faults in (and so dirties again) a page at or below where
/// the writer is, however late the background thread runs, so the device
/// never writes acknowledged pages twice. Checked with the page cache's own
/// accounting after every acknowledgement (every page up to the one
/// holding the end: a Strict sync cleaned them all) and right after every
/// reopen (whose recovery synced the tail), across rotations of 1 MiB
/// segments (where the first window of a new segment is faulted in while
/// the writer already fills it). Linux only: the accounting is
/// `cachestat(2)`, and only Linux pre-faults.
#[cfg(target_os = "linux")]
#[test]
fn synced_pages_stay_clean_while_pages_are_faulted_in_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default()
        .segment_size(1 << 20)
        .sync_mode(SyncMode::Strict);
    let value = vec![b'v'; 700];
    let mut checks = 0;
    let mut segments = BTreeSet::new();
    // Every page of the segment holding `lsn`'s entry, up to the page
    // holding its end, and every earlier segment, must be clean.
    let check = |wal: &Wal, lsn: u64, what: &str| -> Option<u64> {
        let snap = wal.snapshot();
        let e = snap.read_at(lsn).unwrap();
        let file = fs::File::open(dir.path().join(header::file_name(e.segment))).unwrap();
        let clean_to = ((e.offset + e.len) as u64).div_ceil(4096) * 4096;
        let dirty = dirty_pages(&file, clean_to)?;
        if dirty > 0 {
            let pages: Vec<u64> = (0..clean_to / 4096)
                .filter(|p| dirty_pages_at(&file, p * 4096) == Some(1))
                .collect();
            panic!(
                "{what}: {dirty} synced pages of segment {} are dirty again: pages {pages:?} \
                 (the entry ends at offset {})",
                e.segment,
                e.offset + e.len
            );
        }
        if e.segment > 0 {
            let prev = fs::File::open(dir.path().join(header::file_name(e.segment - 1))).unwrap();
            assert_eq!(
                dirty_pages(&prev, 1 << 20),
                Some(0),
                "{what}: the previous segment is dirty"
            );
        }
        Some(e.segment)
    };
    let mut last = None;
    for round in 0..4u64 {
        let wal = Wal::open(dir.path(), cfg.clone()).unwrap();
        if let Some(lsn) = last {
            if check(&wal, lsn, &format!("reopen {round}")).is_none() {
                eprintln!("cachestat(2) is not available: nothing checked");
                return;
            }
        }
        for i in 0..1_000u64 {
            let pos = wal.append(&write(b"k", &value, i)).unwrap();
            let Some(seg) = check(&wal, pos.lsn, &format!("round {round}, append {i}")) else {
                eprintln!("cachestat(2) is not available: nothing checked");
                return;
            };
            segments.insert(seg);
            last = Some(pos.lsn);
            checks += 1;
        }
        wal.close().unwrap();
    }
    assert!(segments.len() >= 3, "the test never rotated");
    assert_eq!(checks, 4_000);
}

/// A store after a reopen dirties only the pages it writes. The reopen's
/// recovery scan reads the tail in, and the kernel may group what it reads
/// into folios of many pages, whose dirtiness it keeps per folio: a store
/// into one would mark every page of it dirty, synced pages below the
/// writer among them, and every sync would write them all again (measured
/// before the log dropped what the scan read: ~700 KiB written per
/// 240-byte Strict commit). Checked with the page cache's own accounting,
/// in Async mode with no background sync in the way, after the log's
/// pages were dropped from the cache so the scan reads them in afresh.
/// Linux only: the accounting is `cachestat(2)`, and the folios and the
/// eviction are Linux's page cache.
#[cfg(target_os = "linux")]
#[test]
fn a_store_after_reopen_dirties_only_its_own_pages() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default()
        .segment_size(16 << 20)
        .sync_mode(SyncMode::Async {
            interval_ms: 3_600_000,
        });
    let value = vec![b'v'; 200];
    for round in 0..3u64 {
        let wal = Wal::open(dir.path(), cfg.clone()).unwrap();
        for i in 0..5_000u64 {
            wal.append(&write(b"k", &value, round * 10_000 + i))
                .unwrap();
        }
        wal.close().unwrap();
        for entry in fs::read_dir(dir.path()).unwrap() {
            let file = fs::File::open(entry.unwrap().path()).unwrap();
            // SAFETY: plain advice on an open descriptor.
            let r =
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            assert_eq!(r, 0);
        }
        let wal = Wal::open(dir.path(), cfg.clone()).unwrap();
        let pos = wal.append(&write(b"k", &value, round)).unwrap();
        let snap = wal.snapshot();
        let e = snap.read_at(pos.lsn).unwrap();
        let file = fs::File::open(dir.path().join(header::file_name(e.segment))).unwrap();
        let below = (e.offset as u64) / 4096 * 4096;
        let Some(dirty) = dirty_pages(&file, below) else {
            eprintln!("cachestat(2) is not available: nothing checked");
            return;
        };
        assert_eq!(
            dirty, 0,
            "round {round}: a store at offset {} dirtied {dirty} synced pages below it",
            e.offset
        );
        wal.close().unwrap();
    }
}

/// A last segment whose header claims the largest size a header may give
/// (1 TiB, under a valid CRC) while its file is small: a write open never
/// allocates what the header says. The short file is kept as it is (its
/// frames are read), and the log goes on in a new segment.
#[test]
fn a_header_claiming_a_huge_size_never_makes_an_open_allocate_it() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(64 << 10);
    let wal = Wal::open(dir.path(), c.clone()).unwrap();
    for i in 0..5 {
        wal.append(&write(b"k", b"v", i)).unwrap();
    }
    let (id, end) = (wal.instance_id(), wal.end_lsn());
    wal.close().unwrap();
    let path = dir.path().join(header::file_name(0));
    let header = Header::new(id, 0, 0, header::MAX_SEGMENT_SIZE);
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, zerocopy::IntoBytes::as_bytes(&header), 0)
        .unwrap();
    drop(file);
    let before = fs::metadata(&path).unwrap();
    let wal = Wal::open(dir.path(), c.clone()).unwrap();
    let after = fs::metadata(&path).unwrap();
    assert_eq!(after.len(), before.len(), "the segment was resized");
    assert_eq!(
        after.blocks(),
        before.blocks(),
        "blocks were allocated for it"
    );
    assert_eq!(wal.end_lsn(), end);
    assert_eq!(wal.snapshot().iter().count(), 5);
    for i in 5..10 {
        wal.append(&write(b"k", b"w", i)).unwrap();
    }
    assert_eq!(
        wal.stats().segments,
        2,
        "the log did not go on in a new segment"
    );
    wal.close().unwrap();
    let reader = WalReader::open(dir.path(), &c).unwrap();
    assert_eq!(reader.recovery_report().problem, None);
    assert_eq!(reader.snapshot().iter().count(), 10);
}
