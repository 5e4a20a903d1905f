//! The cluster scenarios over the in-memory log store.
//!
//! Two openers: a *volatile* one (a restarted node gets a fresh, empty
//! `MemLogStore`, as after losing its disk) and a *kept* one (a restarted
//! node gets back the very `MemLogStore` it had, as a perfectly durable log
//! would give it), which runs the durable-mode checks before the real
//! durable log exists. The durable log's test file calls the same
//! `durability_raft::scenarios` functions with its own opener.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use durability_raft::cluster::OpenLogError;
use durability_raft::mem_log::MemLogStore;
use durability_raft::scenarios::{self, ScenarioError, ScenarioReport, ScenarioSetup};
use durability_raft::types::{NodeId, TypeConfig};
use parking_lot::Mutex;

type Mem = MemLogStore<TypeConfig>;

/// A fresh, empty store on every open.
fn volatile() -> impl Fn(&Path, NodeId) -> Result<Mem, OpenLogError> + Send + Sync + 'static {
    |_dir, _id| Ok(MemLogStore::new())
}

/// The same store for a node on every open: a log that survives restarts.
fn kept() -> impl Fn(&Path, NodeId) -> Result<Mem, OpenLogError> + Send + Sync + 'static {
    let stores: Arc<Mutex<BTreeMap<NodeId, Mem>>> = Arc::default();
    move |_dir, id| Ok(stores.lock().entry(id).or_default().clone())
}

/// Run one scenario in a fresh folder, bounded by a minute.
async fn run<Fut>(durable: bool, scenario: impl FnOnce(ScenarioSetup) -> Fut) -> ScenarioReport
where
    Fut: Future<Output = Result<ScenarioReport, ScenarioError>>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = ScenarioSetup::new(dir.path(), durable);
    let report = tokio::time::timeout(Duration::from_secs(60), scenario(setup))
        .await
        .expect("scenario timed out")
        .unwrap_or_else(|e| panic!("scenario failed: {e}"));
    println!("{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converge_volatile() {
    let r = run(false, |s| async move {
        scenarios::converge(&s, volatile()).await
    })
    .await;
    assert_eq!(r.acked_writes, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_leader_failover_volatile() {
    run(false, |s| async move {
        scenarios::leader_failover(&s, volatile()).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_leader_failover_kept() {
    run(true, |s| async move {
        scenarios::leader_failover(&s, kept()).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_follower_restart_volatile() {
    run(false, |s| async move {
        scenarios::follower_restart(&s, volatile()).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_follower_restart_kept() {
    run(true, |s| async move {
        scenarios::follower_restart(&s, kept()).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_partitioned_leader_volatile() {
    run(false, |s| async move {
        scenarios::partitioned_leader(&s, volatile()).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_snapshot_catch_up_volatile() {
    run(false, |s| async move {
        scenarios::snapshot_catch_up(&s, volatile()).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_snapshot_catch_up_kept() {
    run(true, |s| async move {
        scenarios::snapshot_catch_up(&s, kept()).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_all_restart_kept() {
    run(
        true,
        |s| async move { scenarios::all_restart(&s, kept()).await },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_all_restart_refuses_a_volatile_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = ScenarioSetup::new(dir.path(), false);
    let res = scenarios::all_restart(&setup, volatile()).await;
    assert!(
        matches!(res, Err(ScenarioError::NeedsDurableLog(_))),
        "{res:?}"
    );
}
