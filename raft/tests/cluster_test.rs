//! The cluster scenarios on our log: three nodes in one process over the
//! in-memory router, each node on its own directory with a `LogStore`
//! (Strict mode) and the agent-run state machine (persistent snapshots).
//! Every restart reopens the node's log from its directory and checks its
//! vote and log state are what they were.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use durability::{Config, SyncMode};
use durability_raft::cluster::OpenLogError;
use durability_raft::log_store::LogStore;
use durability_raft::scenarios::{self, ScenarioError, ScenarioReport, ScenarioSetup};
use durability_raft::types::{NodeId, TypeConfig};

type Store = LogStore<TypeConfig>;

fn durable_log() -> impl Fn(&Path, NodeId) -> Result<Store, OpenLogError> + Send + Sync + 'static {
    |dir, _id| {
        let config = Config::default()
            .segment_size(1 << 20)
            .sync_mode(SyncMode::Strict);
        Ok(LogStore::open(dir, config)?)
    }
}

/// One scenario in a fresh folder, bounded by a minute.
async fn run<Fut>(scenario: impl FnOnce(ScenarioSetup) -> Fut) -> ScenarioReport
where
    Fut: Future<Output = Result<ScenarioReport, ScenarioError>>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = ScenarioSetup::new(dir.path(), true);
    let report = tokio::time::timeout(Duration::from_secs(60), scenario(setup))
        .await
        .expect("scenario timed out")
        .unwrap_or_else(|e| panic!("scenario failed: {e}"));
    println!("{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converge() {
    let r = run(|s| async move { scenarios::converge(&s, durable_log()).await }).await;
    assert_eq!(r.acked_writes, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_leader_failover() {
    run(|s| async move { scenarios::leader_failover(&s, durable_log()).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_follower_restart() {
    run(|s| async move { scenarios::follower_restart(&s, durable_log()).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_partitioned_leader() {
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = ScenarioSetup::new(dir.path(), true);
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        scenarios::partitioned_leader(&setup, durable_log()),
    )
    .await
    .expect("scenario timed out")
    .unwrap_or_else(|e| panic!("scenario failed: {e}"));
    println!("{report}");
    // On disk: the old leader's log holds a truncation record, and no
    // node's live log holds a transaction of the stranded run.
    let stranded = scenarios::seeded_run(0xd, 1);
    let mut truncations = 0;
    for id in 1..=3u64 {
        let log = dir.path().join(format!("node-{id}")).join("log");
        let reader = durability::WalReader::open(&log, Config::default()).unwrap();
        truncations += reader
            .snapshot()
            .iter()
            .filter(|e| e.as_ref().unwrap().entry.kind() == durability::EntryKind::Truncate)
            .count();
        let mut n = 0;
        reader.replay_run(stranded, |_| n += 1).unwrap();
        assert_eq!(n, 0, "node {id}'s log replays {n} stranded transactions");
    }
    assert!(truncations >= 1, "the truncate path never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_snapshot_catch_up() {
    run(|s| async move { scenarios::snapshot_catch_up(&s, durable_log()).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_all_restart() {
    run(|s| async move { scenarios::all_restart(&s, durable_log()).await }).await;
}
