//! The state machine's own behaviour: applying transactions, and the
//! snapshot a persistent store saves and restores.

use durability_raft::scenarios::{key, seeded_run, txn, value};
use durability_raft::state_machine::{StateMachineError, StateMachineStore, TxnIds, SNAPSHOT_FILE};
use durability_raft::types::{Entry, RunTxn, TxnOp, TxnResponse};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn normal(index: u64, t: durability_raft::types::RunTxn) -> Entry {
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(t),
    }
}

#[tokio::test]
async fn applies_puts_and_deletes_per_run() {
    let mut sm = StateMachineStore::new();
    let a = seeded_run(1, 0);
    let b = seeded_run(1, 1);
    let deleting = durability_raft::types::RunTxn {
        run_id: a,
        txn_id: 9,
        ops: vec![TxnOp::Delete { key: key(0) }],
        timestamp: 0,
    };
    let resp = sm
        .apply([
            Entry {
                log_id: log_id(1, 0),
                payload: EntryPayload::Blank,
            },
            normal(1, txn(a, 0)),
            normal(2, txn(b, 1)),
            normal(3, deleting),
        ])
        .await
        .expect("apply");
    assert_eq!(
        resp,
        vec![
            TxnResponse {
                index: 0,
                ops_applied: 0,
                duplicate: false
            },
            // txn 0 also puts and deletes the scratch key.
            TxnResponse {
                index: 1,
                ops_applied: 3,
                duplicate: false
            },
            TxnResponse {
                index: 2,
                ops_applied: 1,
                duplicate: false
            },
            TxnResponse {
                index: 3,
                ops_applied: 1,
                duplicate: false
            },
        ]
    );
    assert_eq!(sm.get(&a, &key(0)), None);
    assert!(sm.run(&a).is_none(), "an emptied run is dropped");
    assert_eq!(sm.get(&b, &key(1)), Some(value(b, 1)));
    assert_eq!(sm.applied_txns(), 3);
    assert_eq!(sm.last_applied(), Some(log_id(1, 3)));
}

/// A client that resends a write whose answer it lost must not apply it
/// twice: a retry that lands after a newer write would undo it.
#[tokio::test]
async fn a_retried_transaction_is_applied_once() {
    let mut sm = StateMachineStore::new();
    let run = seeded_run(4, 0);
    let put = |id: u64, v: &str| RunTxn::put(run, id, "k", v);
    let resp = sm
        .apply([
            normal(1, put(1, "a")),
            normal(2, put(2, "b")),
            normal(3, put(1, "a")),
        ])
        .await
        .expect("apply");
    assert_eq!(resp[2].ops_applied, 0);
    assert!(resp[2].duplicate && !resp[0].duplicate && !resp[1].duplicate);
    assert_eq!(sm.get(&run, b"k").as_deref(), Some(&b"b"[..]));
    assert_eq!(sm.applied_txns(), 2);
    // Ids out of order are each applied once; a run whose keys were all
    // deleted still knows its ids.
    let resp = sm
        .apply([
            normal(4, put(7, "c")),
            normal(5, put(5, "d")),
            normal(6, put(7, "x")),
            normal(
                7,
                RunTxn {
                    run_id: run,
                    txn_id: 6,
                    ops: vec![TxnOp::Delete { key: b"k".to_vec() }],
                    timestamp: 0,
                },
            ),
            normal(8, put(2, "y")),
        ])
        .await
        .expect("apply");
    let dup: Vec<bool> = resp.iter().map(|r| r.duplicate).collect();
    assert_eq!(dup, [false, false, true, false, true]);
    assert!(sm.run(&run).is_none());
    assert_eq!(sm.applied_txns(), 5);
}

#[test]
fn txn_ids_merge_into_ranges() {
    let mut ids = TxnIds::default();
    for id in [5, 3, 4, 9, 0, u64::MAX, 1, 2, u64::MAX - 1] {
        assert!(!ids.contains(id), "{id}");
        ids.insert(id);
        assert!(ids.contains(id), "{id}");
    }
    ids.insert(4);
    let ranges: Vec<(u64, u64)> = ids.ranges().collect();
    assert_eq!(ranges, [(0, 5), (9, 9), (u64::MAX - 1, u64::MAX)]);
    assert!(!ids.contains(6) && !ids.contains(8) && !ids.contains(10));
}

#[tokio::test]
async fn a_persistent_store_restores_its_last_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = seeded_run(2, 0);
    let mut sm = StateMachineStore::open(dir.path()).expect("open");
    sm.apply((0..10).map(|i| normal(i, txn(run, i))))
        .await
        .expect("apply");
    let snap = sm.build_snapshot().await.expect("snapshot");
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 9)));
    // Applied after the snapshot: not in the file.
    sm.apply([normal(10, txn(run, 10))]).await.expect("apply");
    let at_snapshot = {
        let mut data = sm.data();
        data.runs.get_mut(&run).expect("run").remove(&key(10));
        data.applied_txns -= 1;
        let mut ids = TxnIds::default();
        (0..10).for_each(|i| ids.insert(i));
        data.applied_ids.insert(run, ids);
        data.last_applied = Some(log_id(1, 9));
        data
    };
    drop(sm);

    let mut reopened = StateMachineStore::open(dir.path()).expect("reopen");
    assert_eq!(reopened.data(), at_snapshot);
    let (applied, _) = reopened.applied_state().await.expect("applied state");
    assert_eq!(applied, Some(log_id(1, 9)));
    let current = reopened
        .get_current_snapshot()
        .await
        .expect("current snapshot")
        .expect("a snapshot");
    assert_eq!(current.meta, snap.meta);
}

#[tokio::test]
async fn an_installed_snapshot_replaces_the_state_and_is_saved() {
    let run = seeded_run(3, 0);
    let mut leader = StateMachineStore::new();
    leader
        .apply((0..5).map(|i| normal(i, txn(run, i))))
        .await
        .expect("apply");
    let snap = leader.build_snapshot().await.expect("snapshot");

    let dir = tempfile::tempdir().expect("temp dir");
    let mut follower = StateMachineStore::open(dir.path()).expect("open");
    follower
        .apply([normal(0, txn(seeded_run(3, 1), 0))])
        .await
        .expect("apply");
    let mut received = follower.begin_receiving_snapshot().await.expect("begin");
    *received = *snap.snapshot;
    follower
        .install_snapshot(&snap.meta, received)
        .await
        .expect("install");
    assert_eq!(follower.data(), leader.data());
    assert_eq!(follower.digest(), leader.digest());
    // The snapshot carries the applied ids: a retry is still one.
    let resp = follower
        .apply([normal(5, txn(run, 2))])
        .await
        .expect("apply");
    assert!(resp[0].duplicate);

    let reopened = StateMachineStore::open(dir.path()).expect("reopen");
    assert_eq!(reopened.data(), leader.data());
}

#[tokio::test]
async fn a_closed_store_saves_no_more_snapshots() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sm = StateMachineStore::open(dir.path()).expect("open");
    sm.apply([normal(0, txn(seeded_run(4, 0), 0))])
        .await
        .expect("apply");
    sm.close();
    assert!(sm.build_snapshot().await.is_err());
    assert!(!dir.path().join(SNAPSHOT_FILE).exists());
}

#[test]
fn a_corrupt_snapshot_file_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(SNAPSHOT_FILE), b"{not json").expect("write");
    match StateMachineStore::open(dir.path()) {
        Err(StateMachineError::Corrupt { .. }) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
