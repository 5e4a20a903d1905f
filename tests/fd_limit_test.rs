//! A log holds no file descriptor per segment: under a 256-descriptor
//! limit, a log of a thousand segments is written, reopened, appended to
//! and replayed. (Its own test binary: the limit applies to the process.)

use durability::{Config, Op, RunId, SyncMode, Wal, WalReader};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

#[test]
fn a_thousand_segments_under_a_256_descriptor_limit() {
    let old = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(256),
            maximum: old.maximum,
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default()
        .segment_size(8 << 10)
        .prefault(false)
        .sync_mode(SyncMode::Async { interval_ms: 50 });
    let run = RunId::from_bytes([1; 16]);
    let value = [b'f'; 1800];
    let op = |i: u64| Op::Write {
        key: b"k",
        value: &value,
        version: i,
    };
    let wal = Wal::open(dir.path(), config.clone()).unwrap();
    for i in 0..4000u64 {
        wal.append_txn(run, i, &[op(i)])
            .unwrap_or_else(|e| panic!("append {i}: {e}"));
    }
    assert!(wal.stats().segments >= 1000, "{}", wal.stats().segments);
    wal.close().unwrap();
    let wal = Wal::open(dir.path(), config.clone()).unwrap();
    wal.append_txn(run, 4000, &[op(4000)]).unwrap();
    let mut n = 0;
    wal.replay(|_| n += 1).unwrap();
    assert_eq!(n, 4001);
    let reader = WalReader::open(dir.path(), &config).unwrap();
    let mut m = 0;
    reader.replay(|_| m += 1).unwrap();
    assert_eq!(m, 4001);
    drop(reader);
    wal.close().unwrap();
    // And a read-only scan of all of it, with no writer.
    let reader = WalReader::open(dir.path(), &config).unwrap();
    assert!(reader.recovery_report().problem.is_none());
    assert_eq!(reader.recovery_report().committed_txns, 4001);
    setrlimit(Resource::Nofile, old).unwrap();
}
