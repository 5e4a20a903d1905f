//! `walctl dump` on a big log: bounds (`--from`, `--to`, `--limit`), a type
//! filter, keys and values as text in JSON when they are UTF-8, and
//! `--follow` printing what another process appends.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use durability::{Config, Op, RunId, SyncMode, Wal};
use serde_json::Value;

fn walctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_walctl"))
}

fn cfg() -> Config {
    Config::default()
        .segment_size(64 << 10)
        .sync_mode(SyncMode::Strict)
}

/// Appends transactions `ids` of `run`, each a write of a UTF-8 key and a
/// binary value, then a UTF-8 one.
fn txns(wal: &Wal, run: RunId, ids: std::ops::RangeInclusive<u64>) {
    for i in ids {
        let key = format!("key/{i}");
        wal.append_txn(
            run,
            i,
            &[
                Op::Write {
                    key: key.as_bytes(),
                    value: &[0xff, 0x00, i as u8],
                    version: i,
                },
                Op::Write {
                    key: key.as_bytes(),
                    value: "héllo".as_bytes(),
                    version: i,
                },
            ],
        )
        .unwrap();
    }
}

/// Runs walctl to completion: (exit code, stdout JSON lines, stderr).
fn dump(args: &[&str]) -> (i32, Vec<Value>, String) {
    let out = walctl().arg("dump").args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dump_bounds_filters_and_text_fields() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunId::from_bytes([3; 16]);
    {
        let wal = Wal::open(dir.path(), cfg()).unwrap();
        txns(&wal, run, 1..=50);
    }
    let d = dir.path().to_str().unwrap();
    // 50 transactions × (BeginTxn, 2 Writes, CommitTxn).
    let (code, all, err) = dump(&[d, "--json"]);
    assert_eq!((code, all.len()), (0, 200), "{err}");

    // UTF-8 keys and values also come as text; binary ones only as hex.
    let w = &all[1];
    assert_eq!(w["type"], "Write");
    assert_eq!(w["key_utf8"], "key/1");
    assert!(w["value_utf8"].is_null(), "{w}");
    assert_eq!(w["value"], "ff0001");
    assert_eq!(all[2]["value_utf8"], "héllo");
    assert!(all[0]["key_utf8"].is_null());

    // --limit
    let (code, some, _) = dump(&[d, "--json", "--limit", "7"]);
    assert_eq!((code, some.len()), (0, 7));
    assert_eq!(some, all[..7]);

    // --from and --to: [from, to), entry starts.
    let from = all[10]["lsn"].as_u64().unwrap().to_string();
    let to = all[30]["lsn"].as_u64().unwrap().to_string();
    let (code, mid, _) = dump(&[d, "--json", "--from", &from, "--to", &to]);
    assert_eq!((code, mid.len()), (0, 20));
    assert_eq!(mid, all[10..30]);

    // --type, repeated and comma-separated, any case.
    let (code, commits, _) = dump(&[d, "--json", "--type", "committxn"]);
    assert_eq!((code, commits.len()), (0, 50));
    assert!(commits.iter().all(|c| c["type"] == "CommitTxn"));
    let (_, both, _) = dump(&[d, "--json", "--type", "BeginTxn,CommitTxn", "--limit", "5"]);
    let kinds: Vec<&str> = both.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["BeginTxn", "CommitTxn", "BeginTxn", "CommitTxn", "BeginTxn"]
    );

    // A type that does not exist is a usage error.
    let (code, _, err) = dump(&[d, "--type", "Commit"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid entry type") && err.contains("CommitTxn"),
        "{err}"
    );
}

/// Stops the child if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--follow` prints what a writer appends after it reached the end, and
/// `--limit` ends it.
#[test]
fn dump_follow_prints_entries_appended_later() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunId::from_bytes([4; 16]);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    txns(&wal, run, 1..=2);
    let mut child = KillOnDrop(
        walctl()
            .args(["dump", dir.path().to_str().unwrap(), "--follow", "--json"])
            .args(["--limit", "16"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reading = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            tx.send(serde_json::from_str::<Value>(&line).unwrap())
                .unwrap();
        }
    });
    let wait = Duration::from_secs(120);
    let mut seen = Vec::new();
    // What was there: 8 entries. Then more, while dump waits at the end.
    for _ in 0..8 {
        seen.push(rx.recv_timeout(wait).expect("dump printed the log"));
    }
    txns(&wal, run, 3..=4);
    for _ in 0..8 {
        seen.push(
            rx.recv_timeout(wait)
                .expect("dump --follow printed the appended entries"),
        );
    }
    let status = child.0.wait().unwrap();
    reading.join().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(rx.try_recv().is_err(), "nothing past --limit");
    let txn_ids: Vec<u64> = seen
        .iter()
        .filter(|e| e["type"] == "CommitTxn")
        .map(|e| e["txn_id"].as_u64().unwrap())
        .collect();
    assert_eq!(txn_ids, [1, 2, 3, 4]);
    let lsns: Vec<u64> = seen.iter().map(|e| e["lsn"].as_u64().unwrap()).collect();
    assert!(
        lsns.windows(2).all(|w| w[0] < w[1]),
        "in log order, once each"
    );
}
