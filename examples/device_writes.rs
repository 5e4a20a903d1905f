//! Device bytes written per appended byte: appends `--mib` MiB (default
//! 1024) of W1-sized entries in Async mode, syncs, closes, and reports the
//! bytes this process caused to be written to storage (`write_bytes` of
//! /proc/self/io: every page it dirtied, whoever writes it back) divided by
//! the bytes appended. The ideal is 1.0 plus the headers.
//!
//! It also counts the page faults the appending thread took (from
//! /proc/thread-self/stat): with pre-faulting, close to none.
//!
//! `--strict` appends in Strict mode instead (every append synced: pages
//! cleaned by a sync must never be dirtied again by pre-faulting, which
//! would make the device write them twice); `--segment-mib N` sets the
//! segment size (default 16).
//!
//! `cargo run --release --example device_writes -- [--mib N] [--dir D] [--no-prefault] [--strict] [--segment-mib N]`

use std::time::Instant;

use durability::{Config, Op, RunId, SyncMode, Wal};

fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| {
                    l.strip_prefix("write_bytes:")
                        .map(|v| v.trim().parse().ok())
                })
                .flatten()
        })
        .unwrap_or(0)
}

/// Minor page faults taken by the calling thread so far.
fn thread_faults() -> u64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            // Fields after the command name: state is field 3, minflt 10.
            rest.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

fn main() {
    let mut mib = 1024u64;
    let mut dir = None;
    let mut prefault = true;
    let mut mode = SyncMode::Async { interval_ms: 100 };
    let mut segment_mib = 16u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mib" => mib = args.next().and_then(|v| v.parse().ok()).expect("--mib N"),
            "--dir" => dir = args.next(),
            "--no-prefault" => prefault = false,
            "--strict" => mode = SyncMode::Strict,
            "--segment-mib" => {
                segment_mib = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--segment-mib N")
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let tmp = tempfile::tempdir_in(dir.as_deref().unwrap_or(".")).expect("temporary directory");
    let config = Config::default()
        .prefault(prefault)
        .segment_size(segment_mib << 20)
        .sync_mode(mode);
    let before = write_bytes();
    let wal = Wal::open(tmp.path(), config).expect("open");
    let run = RunId::from_bytes([7; 16]);
    let value = [0x5au8; 100];
    let target = mib << 20;
    let started = Instant::now();
    let faults_before = thread_faults();
    let mut i = 0u64;
    while wal.size() < target {
        wal.append_txn(
            run,
            i,
            &[Op::Write {
                key: b"key-0000",
                value: &value,
                version: i,
            }],
        )
        .expect("append");
        i += 1;
    }
    let faults = thread_faults() - faults_before;
    let appended = wal.size();
    wal.close().expect("close");
    let elapsed = started.elapsed();
    let written = write_bytes() - before;
    println!(
        "appended {appended} bytes ({i} transactions) in {:.2} s, prefault {}, {mode:?}, {segment_mib} MiB segments",
        elapsed.as_secs_f64(),
        if prefault { "on" } else { "off" }
    );
    println!(
        "device bytes written: {written} = {:.3} per appended byte",
        written as f64 / appended as f64
    );
    println!(
        "page faults in the appending thread: {faults} ({:.1} per MiB appended)",
        faults as f64 / (appended as f64 / f64::from(1u32 << 20))
    );
}
