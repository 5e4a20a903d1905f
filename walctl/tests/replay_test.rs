//! `walctl replay --from LSN` and `--from-checkpoint`: the transactions
//! that commit at or after the position, each whole, even one begun
//! before it.

use std::process::Command;

use durability::{BorrowedEntry, Config, Op, RunId, Wal};
use serde_json::Value;

fn replay(args: &[&str]) -> (i32, Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_walctl"))
        .arg("replay")
        .args(args)
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn put(v: u64) -> Op<'static> {
    Op::Write {
        key: b"k",
        value: b"v",
        version: v,
    }
}

#[test]
fn replay_from_a_position_or_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunId::from_bytes([9; 16]);
    let third = {
        let wal = Wal::open(dir.path(), Config::default()).unwrap();
        wal.append_txn(run, 1, &[put(1)]).unwrap();
        // Transaction 2 is open across the checkpoint.
        wal.append_entry(BorrowedEntry::BeginTxn {
            txn_id: 2,
            run_id: run,
            timestamp: 0,
        })
        .unwrap();
        wal.append_entry(put(2).entry(run)).unwrap();
        wal.checkpoint(uuid::Uuid::from_u128(7), 1, &[run]).unwrap();
        wal.append_entry(BorrowedEntry::CommitTxn {
            txn_id: 2,
            run_id: run,
        })
        .unwrap();
        wal.append_txn(run, 3, &[put(3)]).unwrap()
    };
    let d = dir.path().to_str().unwrap();
    let r = run.to_string();
    let ids = |lines: &[Value]| -> Vec<u64> {
        lines
            .iter()
            .map(|t| t["txn_id"].as_u64().unwrap())
            .collect()
    };

    let (code, all, _) = replay(&[d, "--run", &r, "--json"]);
    assert_eq!((code, ids(&all)), (0, vec![1, 2, 3]));

    let (code, after_cp, err) = replay(&[d, "--run", &r, "--from-checkpoint", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        ids(&after_cp),
        [2, 3],
        "transaction 2 began before the checkpoint"
    );
    assert_eq!(after_cp[0], all[1], "and comes whole");
    assert!(err.contains("last checkpoint"), "{err}");

    let from = third.begin.to_string();
    let (code, last, _) = replay(&[d, "--run", &r, "--from", &from, "--json"]);
    assert_eq!((code, ids(&last)), (0, vec![3]));

    // No checkpoint: a usage error, said in one line.
    let fresh = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(fresh.path(), Config::default()).unwrap();
        wal.append_txn(run, 1, &[put(1)]).unwrap();
    }
    let f = fresh.path().to_str().unwrap();
    let (code, _, err) = replay(&[f, "--run", &r, "--from-checkpoint"]);
    assert_eq!(code, 2);
    assert!(err.contains("no checkpoint"), "{err}");
}
