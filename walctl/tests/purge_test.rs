//! `walctl` on a purged log: the commands start at the purge mark and say
//! so (the library's side is the core crate's `tests/purge_test.rs`).

use assert_cmd::Command;
use durability::{Config, Op, RunId, SyncMode, Wal};
use uuid::Uuid;

fn run(n: u8) -> RunId {
    RunId::from_bytes([n; 16])
}

fn cfg() -> Config {
    Config::default()
        .segment_size(16 << 10)
        .sync_mode(SyncMode::Strict)
        .instance_id(Uuid::from_u128(0x9E_0000_0000_4000_8000_0000_0000_0001))
}

/// Appends transactions `ids` of `r`, each one write of ~300 bytes; returns
/// each one's id and BeginTxn LSN.
fn txns(wal: &Wal, r: RunId, ids: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
    let value = [7u8; 300];
    ids.into_iter()
        .map(|i| {
            let key = format!("k{i}");
            let op = Op::Write {
                key: key.as_bytes(),
                value: &value,
                version: 1,
            };
            let pos = wal.append_txn(r, i, &[op]).unwrap();
            (i, pos.begin)
        })
        .collect()
}

fn walctl(args: &[&str]) -> (i32, String) {
    let out = Command::cargo_bin("walctl")
        .unwrap()
        .args(args)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "walctl {args:?}: {stderr}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `walctl replay` says where the log starts when entries were purged (in
/// text and JSON), and shows nothing below; `dump` starts there too.
#[test]
fn walctl_replay_says_the_log_starts_at_the_purge_point() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(1);
    let mark = {
        let wal = Wal::open(dir.path(), cfg()).unwrap();
        let pos = txns(&wal, r, 1..=100);
        wal.purge_before(pos[70].1).unwrap();
        pos[70].1
    };
    let d = dir.path().to_str().unwrap();
    let run_s = r.to_string();
    let (code, out) = walctl(&["replay", d, "--run", &run_s]);
    assert_eq!(code, 0, "{out}");
    let first = out.lines().next().unwrap();
    assert!(
        first.contains(&format!("log starts at LSN {mark}")) && first.contains("purged"),
        "{out}"
    );
    assert!(!out.contains("txn 70 "), "{out}");
    assert!(out.contains("txn 71 "), "{out}");
    let (code, out) = walctl(&["replay", d, "--run", &run_s, "--json"]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["start_lsn"], mark);
    assert_eq!(lines[0]["purged"], true);
    assert_eq!(lines[1]["txn_id"], 71);
    assert_eq!(lines.len(), 1 + 30);
    // verify reads from the start, and finds nothing wrong with purged
    // frames a kept segment still holds.
    let (code, out) = walctl(&["verify", d, "--json"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["first_lsn"],
        mark
    );
    let (_, out) = walctl(&["dump", d, "--json"]);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["lsn"], mark, "{out}");
    // An unpurged log prints no such line.
    let fresh = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(fresh.path(), cfg()).unwrap();
        txns(&wal, r, 1..=3);
    }
    let (_, out) = walctl(&["replay", fresh.path().to_str().unwrap(), "--run", &run_s]);
    assert!(!out.contains("purged"), "{out}");
}
