//! Measures how much anonymous memory a full replay of a 1 GiB log takes
//! (the benchmark target: under 32 MiB). Replay borrows entries from the
//! mapped segments, so the mapped log is file-backed memory, not anonymous.
//!
//! ```console
//! cargo run --release --example replay_rss [DIR]
//! ```
//!
//! DIR defaults to a fresh temporary directory under the current one and
//! is removed afterwards. Linux only (reads `RssAnon` from /proc).

use std::time::Instant;

use durability::{BorrowedEntry, Config, RunId, SyncMode, Wal, WalReader};

fn rss_anon_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> durability::Result<()> {
    let tmp = tempfile::tempdir_in(".").expect("temporary directory");
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("log"));
    let runs: Vec<RunId> = (0..100).map(|_| RunId::new()).collect();
    let value = [7u8; 100];
    let wal = Wal::open(
        &dir,
        Config::default().sync_mode(SyncMode::Async { interval_ms: 100 }),
    )?;
    let mut i = 0u64;
    let t = Instant::now();
    while wal.size() < 1 << 30 {
        let key = u128::from(i).to_le_bytes();
        wal.append_entry(BorrowedEntry::Write {
            run_id: runs[((i / 64) % 100) as usize],
            key: &key,
            value: &value,
            version: i,
        })?;
        i += 1;
    }
    wal.close()?;
    println!("wrote {i} W1 entries (1 GiB) in {:.2?}", t.elapsed());

    let reader = WalReader::open(&dir, Config::default())?;
    let before = rss_anon_kib();
    let t = Instant::now();
    let mut ops = 0u64;
    let stats = reader.replay(|txn| ops += txn.ops.len() as u64)?;
    let took = t.elapsed();
    let after = rss_anon_kib();
    println!(
        "replayed {} entries ({} MiB) in {took:.2?}; anonymous RSS {before} KiB -> {after} KiB (+{} KiB)",
        stats.entries,
        reader.snapshot().len_bytes() >> 20,
        after.saturating_sub(before)
    );
    Ok(())
}
