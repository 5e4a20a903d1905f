//! The cluster scenarios, generic over the log store: each starts a
//! three-node [`Cluster`] on `open_log`, drives it, checks it, and returns a
//! [`ScenarioReport`] or the first failed check as a [`ScenarioError`].
//!
//! The scenarios choose nodes deterministically (the lowest-numbered
//! follower, ...) and derive run ids from fixed seeds; the only randomness
//! is openraft's election timeouts.
//!
//! [`ScenarioSetup::durable`] says whether the log keeps its state across a
//! restart. Without it a restarted node comes back blank: the checks of the
//! recovered vote and log are replaced by a check that it is blank, the node
//! is removed from the voters before its restart and re-added (learner, then
//! voter) after it, and [`all_restart`] is refused.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use durability::RunId;
use openraft::storage::RaftLogStorage;
use tokio::task::JoinSet;

use crate::cluster::{
    Client, Cluster, ClusterError, ClusterOptions, NodeState, OpenLogError, RecoveredState,
};
use openraft::error::ClientWriteError as WriteApiError;

use crate::types::{ClientWriteError, NodeId, RunTxn, TxnOp, TypeConfig};

/// Timeout of every wait for convergence in the scenarios.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(15);
/// Timeout of every wait for a leader in the scenarios.
pub const ELECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how a scenario runs.
#[derive(Clone, Debug)]
pub struct ScenarioSetup {
    /// The folder the nodes' folders go in.
    pub base_dir: PathBuf,
    /// Whether the log store keeps its state across a restart.
    pub durable: bool,
}

impl ScenarioSetup {
    /// A setup under `base_dir`.
    pub fn new(base_dir: impl Into<PathBuf>, durable: bool) -> Self {
        ScenarioSetup {
            base_dir: base_dir.into(),
            durable,
        }
    }
}

/// What a passed scenario did.
#[derive(Clone, Debug)]
pub struct ScenarioReport {
    /// The scenario.
    pub name: &'static str,
    /// How many writes were acknowledged (and checked present).
    pub acked_writes: usize,
    /// Wall time of the whole scenario.
    pub elapsed: Duration,
    /// What was observed along the way.
    pub notes: Vec<String>,
}

impl fmt::Display for ScenarioReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} acknowledged writes, {:.2?}",
            self.name, self.acked_writes, self.elapsed
        )?;
        for note in &self.notes {
            write!(f, "\n  - {note}")?;
        }
        Ok(())
    }
}

/// Why a scenario failed.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A cluster operation failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A check failed.
    #[error("check failed: {0}")]
    Check(String),
    /// A client task panicked or was cancelled.
    #[error("client task failed: {0}")]
    Task(String),
    /// The scenario needs a log that survives restarts.
    #[error("scenario {0} needs a durable log store")]
    NeedsDurableLog(&'static str),
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(ScenarioError::Check(format!($($fmt)+)));
        }
    };
}

/// The run id of client `n` of scenario seed `seed`.
pub fn seeded_run(seed: u64, n: u64) -> RunId {
    RunId::from(uuid::Uuid::from_u128(((seed as u128) << 64) | n as u128))
}

/// Transaction `i` of `run`: puts `key-{i}`; every seventh one also puts and
/// deletes a scratch key, so deletes are replicated too.
pub fn txn(run: RunId, i: u64) -> RunTxn {
    let mut ops = vec![TxnOp::Put {
        key: key(i),
        value: value(run, i),
    }];
    if i % 7 == 0 {
        ops.push(TxnOp::Put {
            key: b"scratch".to_vec(),
            value: i.to_le_bytes().to_vec(),
        });
        ops.push(TxnOp::Delete {
            key: b"scratch".to_vec(),
        });
    }
    RunTxn {
        run_id: run,
        txn_id: i,
        ops,
        timestamp: 0,
    }
}

/// The key of transaction `i`.
pub fn key(i: u64) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

/// The value transaction `i` of `run` puts.
pub fn value(run: RunId, i: u64) -> Vec<u8> {
    format!("value-{i}-of-{run}").into_bytes()
}

/// Write transactions `range` of `run`, `concurrency` at a time; returns the
/// acknowledged ones.
pub async fn write_batches(
    client: &Client,
    run: RunId,
    range: std::ops::Range<u64>,
    concurrency: usize,
) -> Result<Vec<RunTxn>, ScenarioError> {
    let mut acked = Vec::with_capacity((range.end - range.start) as usize);
    let ids: Vec<u64> = range.collect();
    for batch in ids.chunks(concurrency.max(1)) {
        let mut tasks = JoinSet::new();
        for &i in batch {
            let client = client.clone();
            let t = txn(run, i);
            tasks.spawn(async move { client.write(t.clone()).await.map(|_| t) });
        }
        while let Some(res) = tasks.join_next().await {
            let t = res.map_err(|e| ScenarioError::Task(e.to_string()))??;
            acked.push(t);
        }
    }
    Ok(acked)
}

/// Check that every running node holds every acknowledged write.
pub fn check_present<LS: RaftLogStorage<TypeConfig>>(
    cluster: &Cluster<LS>,
    acked: &[RunTxn],
) -> Result<(), ScenarioError> {
    for (id, sm) in cluster.running_state_machines() {
        for t in acked {
            let got = sm.get(&t.run_id, &key(t.txn_id));
            ensure!(
                got.as_deref() == Some(value(t.run_id, t.txn_id).as_slice()),
                "node {id} lacks acknowledged {t} (has {:?})",
                got.map(|v| String::from_utf8_lossy(&v).into_owned())
            );
        }
        ensure!(
            sm.get(
                &acked
                    .first()
                    .map(|t| t.run_id)
                    .unwrap_or_else(|| seeded_run(0, 0)),
                b"scratch"
            )
            .is_none(),
            "node {id} kept a deleted scratch key"
        );
    }
    Ok(())
}

/// Check that the running nodes' state machines are equal, bookkeeping
/// included; returns the common digest as a note.
pub fn check_equal<LS: RaftLogStorage<TypeConfig>>(
    cluster: &Cluster<LS>,
) -> Result<String, ScenarioError> {
    let sms = cluster.running_state_machines();
    let Some((first_id, first)) = sms.first() else {
        return Err(ScenarioError::Check("no running node".to_string()));
    };
    let want = first.data();
    for (id, sm) in &sms[1..] {
        let got = sm.data();
        ensure!(
            got == want,
            "node {id} differs from node {first_id}: {:?} / last applied {:?} vs {:?} / last applied {:?}",
            sm.digest(),
            got.last_applied,
            first.digest(),
            want.last_applied
        );
    }
    Ok(format!(
        "{} nodes equal at {:?}: {:?}",
        sms.len(),
        want.last_applied,
        first.digest()
    ))
}

/// In durable mode, check that a restarted node got back the vote and log it
/// had when it stopped quiescent.
fn check_recovered(
    durable: bool,
    before: &NodeState,
    after: &RecoveredState,
) -> Result<String, ScenarioError> {
    if !durable {
        ensure!(
            after.log_state.last_log_id.is_none() && after.vote.is_none(),
            "a volatile store came back non-empty: {after:?}"
        );
        return Ok(format!("node {} restarted blank (volatile log)", after.id));
    }
    ensure!(
        after.vote.as_ref() == Some(&before.vote),
        "node {} vote {:?} after restart, {:?} before",
        after.id,
        after.vote,
        before.vote
    );
    ensure!(
        after.log_state.last_log_id.map(|l| l.index) == before.last_log_index,
        "node {} last log {:?} after restart, index {:?} before",
        after.id,
        after.log_state.last_log_id,
        before.last_log_index
    );
    ensure!(
        after.log_state.last_purged_log_id == before.purged,
        "node {} last purged {:?} after restart, {:?} before",
        after.id,
        after.log_state.last_purged_log_id,
        before.purged
    );
    ensure!(
        after.committed.is_none() || after.committed.map(|c| c.index) <= before.last_log_index,
        "node {} committed {:?} beyond its last log {:?}",
        after.id,
        after.committed,
        before.last_log_index
    );
    Ok(format!(
        "node {} recovered vote {:?}, last log {:?}, purged {:?}, committed {:?}, sm at {:?}",
        after.id,
        after.vote,
        after.log_state.last_log_id,
        after.log_state.last_purged_log_id,
        after.committed,
        after.sm_last_applied
    ))
}

fn follower_of<LS: RaftLogStorage<TypeConfig>>(
    cluster: &Cluster<LS>,
    leader: NodeId,
) -> Result<NodeId, ScenarioError> {
    cluster
        .running()
        .into_iter()
        .find(|id| *id != leader)
        .ok_or_else(|| ScenarioError::Check("no follower".to_string()))
}

/// With a volatile log, remove the stopped node `id` from the voters before
/// it comes back blank.
///
/// A node that lost its log must not rejoin as the voter it was: the leader
/// remembers what it had matched there, and openraft refuses a follower log
/// that goes backwards (a debug assertion in the leader's replication
/// progress panics, unless the `loosen-follower-log-revert` feature is on).
/// So such a node is removed, then re-added as a learner and promoted
/// ([`rejoin_voter`]), the Raft way of replacing a lost disk. A durable log
/// needs none of this.
async fn forget_voter<LS: RaftLogStorage<TypeConfig>>(
    cluster: &Cluster<LS>,
    setup: &ScenarioSetup,
    id: NodeId,
    notes: &mut Vec<String>,
) -> Result<(), ScenarioError> {
    if setup.durable {
        return Ok(());
    }
    let others: BTreeSet<NodeId> = cluster
        .node_ids()
        .into_iter()
        .filter(|n| *n != id)
        .collect();
    cluster.change_voters(others, CONVERGE_TIMEOUT).await?;
    notes.push(format!("volatile log: node {id} removed from the voters"));
    Ok(())
}

/// With a volatile log, re-add the restarted (blank) node `id` as a learner
/// and promote it back to voter (see [`forget_voter`]).
async fn rejoin_voter<LS: RaftLogStorage<TypeConfig>>(
    cluster: &Cluster<LS>,
    setup: &ScenarioSetup,
    id: NodeId,
    notes: &mut Vec<String>,
) -> Result<(), ScenarioError> {
    if setup.durable {
        return Ok(());
    }
    cluster.add_learner(id, CONVERGE_TIMEOUT).await?;
    let all: BTreeSet<NodeId> = cluster.node_ids().into_iter().collect();
    cluster.change_voters(all, CONVERGE_TIMEOUT).await?;
    notes.push(format!("node {id} re-added as a learner and promoted"));
    Ok(())
}

async fn start<LS, F>(
    setup: &ScenarioSetup,
    opts: ClusterOptions,
    open_log: F,
) -> Result<Cluster<LS>, ScenarioError>
where
    LS: RaftLogStorage<TypeConfig>,
    F: Fn(&Path, NodeId) -> Result<LS, OpenLogError> + Send + Sync + 'static,
{
    Ok(Cluster::start(opts, &setup.base_dir, open_log).await?)
}

/// (a) 1,000 writes from four concurrent clients (ten in flight each, one
/// run each): all three state machines end equal and hold every write.
pub async fn converge<LS, F>(
    setup: &ScenarioSetup,
    open_log: F,
) -> Result<ScenarioReport, ScenarioError>
where
    LS: RaftLogStorage<TypeConfig>,
    F: Fn(&Path, NodeId) -> Result<LS, OpenLogError> + Send + Sync + 'static,
{
    let started = Instant::now();
    let mut cluster = start(setup, ClusterOptions::new(setup.durable), open_log).await?;
    let mut notes = Vec::new();

    let write_started = Instant::now();
    let mut clients = JoinSet::new();
    for c in 0..4u64 {
        let client = cluster.client();
        clients.spawn(async move { write_batches(&client, seeded_run(0xa, c), 0..250, 10).await });
    }
    let mut acked = Vec::new();
    while let Some(res) = clients.join_next().await {
        acked.extend(res.map_err(|e| ScenarioError::Task(e.to_string()))??);
    }
    let write_time = write_started.elapsed();
    ensure!(
        acked.len() == 1000,
        "{} of 1000 writes acknowledged",
        acked.len()
    );
    notes.push(format!(
        "1000 writes in {write_time:.2?} ({:.0} writes/s)",
        1000.0 / write_time.as_secs_f64()
    ));

    let index = cluster.sync(CONVERGE_TIMEOUT).await?;
    notes.push(format!("converged at index {index}"));
    check_present(&cluster, &acked)?;
    notes.push(check_equal(&cluster)?);
    for (id, sm) in cluster.running_state_machines() {
        ensure!(
            sm.applied_txns() >= 1000,
            "node {id} applied {} txns",
            sm.applied_txns()
        );
    }
    cluster.shutdown_all().await?;
    Ok(ScenarioReport {
        name: "converge",
        acked_writes: acked.len(),
        elapsed: started.elapsed(),
        notes,
    })
}

/// (b) The leader shuts down: a new one is elected, every acknowledged write
/// is still there, writes go on; the old leader restarts and catches up.
pub async fn leader_failover<LS, F>(
    setup: &ScenarioSetup,
    open_log: F,
) -> Result<ScenarioReport, ScenarioError>
where
    LS: RaftLogStorage<TypeConfig>,
    F: Fn(&Path, NodeId) -> Result<LS, OpenLogError> + Send + Sync + 'static,
{
    let started = Instant::now();
    let mut cluster = start(setup, ClusterOptions::new(setup.durable), open_log).await?;
    let mut notes = Vec::new();
    let client = cluster.client();
    let run = seeded_run(0xb, 0);

    let mut acked = write_batches(&client, run, 0..100, 10).await?;
    let old = cluster.wait_for_leader(ELECTION_TIMEOUT).await?;
    let before = cluster.shutdown(old).await?;
    let t = Instant::now();
    let new = cluster.wait_for_new_leader(old, ELECTION_TIMEOUT).await?;
    notes.push(format!(
        "leader {old} shut down at last log {:?}; node {new} leads after {:.2?}",
        before.last_log_index,
        t.elapsed()
    ));
    // The survivors hold every acknowledged write once the new leader has
    // committed in its term and they have applied up to it: right after the
    // election a follower may hold the last acknowledged entries without
    // knowing yet that they are committed (it learns that from a leader).
    cluster.sync(CONVERGE_TIMEOUT).await?;
    check_present(&cluster, &acked)?;
    forget_voter(&cluster, setup, old, &mut notes).await?;

    acked.extend(write_batches(&client, run, 100..200, 10).await?);
    cluster.sync(CONVERGE_TIMEOUT).await?;
    check_present(&cluster, &acked)?;
    notes.push(check_equal(&cluster)?);

    let recovered = cluster.restart(old).await?;
    notes.push(check_recovered(setup.durable, &before, &recovered)?);
    rejoin_voter(&cluster, setup, old, &mut notes).await?;
    cluster.sync(CONVERGE_TIMEOUT).await?;
    check_present(&cluster, &acked)?;
    notes.push(check_equal(&cluster)?);
    cluster.shutdown_all().await?;
    Ok(ScenarioReport {
        name: "leader_failover",
        acked_writes: acked.len(),
        elapsed: started.elapsed(),
        notes,
    })
}

/// (c) A follower shuts down and restarts while the others go on: it comes
/// back with its vote and log (durable) and catches up. With a volatile log
/// it comes back blank, so it is first removed from the voters, then
/// re-added as a learner and promoted.
pub async fn follower_restart<LS, F>(
    setup: &ScenarioSetup,
    open_log: F,
) -> Result<ScenarioReport, ScenarioError>
where
    LS: RaftLogStorage<TypeConfig>,
    F: Fn(&Path, NodeId) -> Result<LS, OpenLogError> + Send + Sync + 'static,
{
    let started = Instant::now();
    let mut cluster = start(setup, ClusterOptions::new(setup.durable), open_log).await?;
    let mut notes = Vec::new();
    let client = cluster.client();
    let run = seeded_run(0xc, 0);

    let mut acked = write_batches(&client, run, 0..100, 10).await?;
    cluster.sync(CONVERGE_TIMEOUT).await?;
    let leader = cluster.wait_for_leader(ELECTION_TIMEOUT).await?;
    let follower = follower_of(&cluster, leader)?;
    let before = cluster.shutdown(follower).await?;
    notes.push(format!("follower {follower} shut down: {before:?}"));

    forget_voter(&cluster, setup, follower, &mut notes).await?;

    acked.extend(write_batches(&client, run, 100..200, 10).await?);
    let recovered = cluster.restart(follower).await?;
    notes.push(check_recovered(setup.durable, &before, &recovered)?);
    rejoin_voter(&cluster, setup, follower, &mut notes).await?;
    let index = cluster.sync(CONVERGE_TIMEOUT).await?;
    notes.push(format!("follower {follower} caught up to {index}"));
    check_present(&cluster, &acked)?;
    notes.push(check_equal(&cluster)?);
    cluster.shutdown_all().await?;
    Ok(ScenarioReport {
        name: "follower_restart",
        acked_writes: acked.len(),
        elapsed: started.elapsed(),
        notes,
    })
}

/// (d) The leader is partitioned away while clients send it writes that
/// cannot commit; the majority elects a new leader and commits other writes;
/// once healed, the old leader's uncommitted entries are replaced, its
/// clients are told to go elsewhere, and every node converges.
pub async fn partitioned_leader<LS, F>(
    setup: &ScenarioSetup,
    open_log: F,
) -> Result<ScenarioReport, ScenarioError>
where
    LS: RaftLogStorage<TypeConfig>,
    F: Fn(&Path, NodeId) -> Result<LS, OpenLogError> + Send + Sync + 'static,
{
    const STRANDED: u64 = 20;
    let started = Instant::now();
    let mut cluster = start(setup, ClusterOptions::new(setup.durable), open_log).await?;
    let mut notes = Vec::new();
    let client = cluster.client();
    let run = seeded_run(0xd, 0);
    let stranded_run = seeded_run(0xd, 1);

    let mut acked = write_batches(&client, run, 0..50, 10).await?;
    cluster.sync(CONVERGE_TIMEOUT).await?;
    let old = cluster.wait_for_leader(ELECTION_TIMEOUT).await?;
    let old_raft = cluster
        .raft(old)
        .ok_or(ScenarioError::Cluster(ClusterError::NotRunning(old)))?;
    let last_before = old_raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or_default();

    cluster.isolate(old);
    let mut stranded = JoinSet::new();
    for i in 0..STRANDED {
        let raft = old_raft.clone();
        let t = txn(stranded_run, i);
        stranded.spawn(async move {
            tokio::time::timeout(CONVERGE_TIMEOUT, raft.client_write(t)).await
        });
    }
    let appended = cluster
        .wait_metrics(
            old,
            Duration::from_secs(5),
            "stranded writes appended",
            |s| s.last_log_index >= Some(last_before + STRANDED),
        )
        .await?;
    notes.push(format!(
        "isolated leader {old} appended {STRANDED} uncommittable entries up to {:?}",
        appended.last_log_index
    ));

    let new = cluster.wait_for_new_leader(old, ELECTION_TIMEOUT).await?;
    acked.extend(write_batches(&client, run, 50..100, 10).await?);
    let new_state = cluster.node_state(new);
    notes.push(format!(
        "node {new} leads the majority, log at {:?}",
        new_state.and_then(|s| s.last_log_index)
    ));
    let old_state = cluster.node_state(old);
    ensure!(
        old_state.as_ref().map(|s| s.last_applied.map(|l| l.index)) == Some(Some(last_before)),
        "the isolated leader applied something: {old_state:?}"
    );

    cluster.heal(old);
    let mut refused = 0;
    while let Some(res) = stranded.join_next().await {
        match res.map_err(|e| ScenarioError::Task(e.to_string()))? {
            Err(_elapsed) => {
                return Err(ScenarioError::Check(
                    "a stranded write got no answer after the heal".to_string(),
                ))
            }
            Ok(Ok(resp)) => {
                return Err(ScenarioError::Check(format!(
                    "a stranded write committed at {}",
                    resp.log_id
                )))
            }
            Ok(Err(ClientWriteError::APIError(WriteApiError::ForwardToLeader(_)))) => refused += 1,
            Ok(Err(e)) => {
                return Err(ScenarioError::Check(format!(
                    "a stranded write failed with {e} instead of ForwardToLeader"
                )))
            }
        }
    }
    notes.push(format!(
        "all {refused} stranded writes answered ForwardToLeader after the heal"
    ));

    let index = cluster.sync(CONVERGE_TIMEOUT).await?;
    notes.push(format!("converged at index {index}"));
    check_present(&cluster, &acked)?;
    for (id, sm) in cluster.running_state_machines() {
        ensure!(
            sm.run(&stranded_run).is_none(),
            "node {id} applied a stranded write: {:?}",
            sm.run(&stranded_run).map(|kv| kv.len())
        );
    }
    notes.push(check_equal(&cluster)?);
    if setup.durable {
        // The truncation of the stranded entries survives a reopen: the
        // old leader restarted from its directory holds the majority's
        // entries at those indices, and never applies a stranded write.
        let before = cluster.shutdown(old).await?;
        let recovered = cluster.restart(old).await?;
        ensure!(
            recovered.log_state.last_log_id.map(|l| l.index) == before.last_log_index,
            "the old leader's log changed across its restart: {before:?} -> {recovered:?}"
        );
        acked.extend(write_batches(&client, run, 100..110, 10).await?);
        let index = cluster.sync(CONVERGE_TIMEOUT).await?;
        check_present(&cluster, &acked)?;
        for (id, sm) in cluster.running_state_machines() {
            ensure!(
                sm.run(&stranded_run).is_none(),
                "node {id} applied a stranded write after the restart"
            );
        }
        notes.push(format!(
            "old leader {old} restarted from its log, caught up to {index}: {}",
            check_equal(&cluster)?
        ));
    }
    cluster.shutdown_all().await?;
    Ok(ScenarioReport {
        name: "partitioned_leader",
        acked_writes: acked.len(),
        elapsed: started.elapsed(),
        notes,
    })
}

/// (e) A follower is down while the leader snapshots and purges its log past
/// the follower's last entry; restarted, the follower installs a snapshot
/// and converges.
pub async fn snapshot_catch_up<LS, F>(
    setup: &ScenarioSetup,
    open_log: F,
) -> Result<ScenarioReport, ScenarioError>
where
    LS: RaftLogStorage<TypeConfig>,
    F: Fn(&Path, NodeId) -> Result<LS, OpenLogError> + Send + Sync + 'static,
{
    let started = Instant::now();
    let opts = ClusterOptions::new(setup.durable).with_snapshots(50);
    let mut cluster = start(setup, opts, open_log).await?;
    let mut notes = Vec::new();
    let client = cluster.client();
    let run = seeded_run(0xe, 0);

    let mut acked = write_batches(&client, run, 0..20, 10).await?;
    cluster.sync(CONVERGE_TIMEOUT).await?;
    let leader = cluster.wait_for_leader(ELECTION_TIMEOUT).await?;
    let follower = follower_of(&cluster, leader)?;
    let before = cluster.shutdown(follower).await?;
    let follower_last = before.last_log_index.unwrap_or_default();
    forget_voter(&cluster, setup, follower, &mut notes).await?;

    acked.extend(write_batches(&client, run, 20..220, 10).await?);
    let leader = cluster.wait_for_leader(ELECTION_TIMEOUT).await?;
    // Snapshot everything applied and purge all of it, so the follower's
    // next entry is gone from the leader's log.
    let purged = cluster
        .snapshot_and_purge(leader, CONVERGE_TIMEOUT)
        .await?
        .purged;
    ensure!(
        purged.map(|l| l.index) > Some(follower_last),
        "leader {leader} purged only up to {purged:?}, the follower has {follower_last}"
    );
    notes.push(format!(
        "follower {follower} down at last log {follower_last}; leader {leader} purged up to {purged:?}"
    ));

    let recovered = cluster.restart(follower).await?;
    notes.push(check_recovered(setup.durable, &before, &recovered)?);
    rejoin_voter(&cluster, setup, follower, &mut notes).await?;
    let purged_index = purged.map(|l| l.index).unwrap_or_default();
    let caught_up = cluster
        .wait_metrics(follower, CONVERGE_TIMEOUT, "snapshot installed", |s| {
            s.snapshot.map(|l| l.index) >= Some(purged_index)
        })
        .await?;
    notes.push(format!(
        "follower {follower} installed a snapshot at {:?}",
        caught_up.snapshot
    ));
    let index = cluster.sync(CONVERGE_TIMEOUT).await?;
    notes.push(format!("converged at index {index}"));
    check_present(&cluster, &acked)?;
    notes.push(check_equal(&cluster)?);
    cluster.shutdown_all().await?;
    Ok(ScenarioReport {
        name: "snapshot_catch_up",
        acked_writes: acked.len(),
        elapsed: started.elapsed(),
        notes,
    })
}

/// (f) All three nodes shut down and restart: each gets its vote and log
/// back, a leader is elected, every acknowledged write is present, and
/// writes go on. Needs a durable log.
pub async fn all_restart<LS, F>(
    setup: &ScenarioSetup,
    open_log: F,
) -> Result<ScenarioReport, ScenarioError>
where
    LS: RaftLogStorage<TypeConfig>,
    F: Fn(&Path, NodeId) -> Result<LS, OpenLogError> + Send + Sync + 'static,
{
    if !setup.durable {
        return Err(ScenarioError::NeedsDurableLog("all_restart"));
    }
    let started = Instant::now();
    // Snapshots every 60 logs: the restart recovers from a snapshot plus
    // the log after it.
    let opts = ClusterOptions::new(setup.durable).with_snapshots(60);
    let mut cluster = start(setup, opts, open_log).await?;
    let mut notes = Vec::new();
    let client = cluster.client();
    let run = seeded_run(0xf, 0);

    let mut acked = write_batches(&client, run, 0..150, 10).await?;
    cluster.sync(CONVERGE_TIMEOUT).await?;
    let before = cluster.shutdown_all().await?;
    let ids: BTreeSet<NodeId> = before.iter().map(|s| s.id).collect();
    ensure!(ids.len() == 3, "shut down {ids:?}");
    for state in &before {
        let recovered = cluster.restart(state.id).await?;
        notes.push(check_recovered(true, state, &recovered)?);
    }
    let t = Instant::now();
    let leader = cluster.wait_for_leader(ELECTION_TIMEOUT).await?;
    notes.push(format!(
        "node {leader} leads {:.2?} after the restart",
        t.elapsed()
    ));
    cluster.sync(CONVERGE_TIMEOUT).await?;
    check_present(&cluster, &acked)?;

    acked.extend(write_batches(&client, run, 150..200, 10).await?);
    cluster.sync(CONVERGE_TIMEOUT).await?;
    check_present(&cluster, &acked)?;
    notes.push(check_equal(&cluster)?);
    cluster.shutdown_all().await?;
    Ok(ScenarioReport {
        name: "all_restart",
        acked_writes: acked.len(),
        elapsed: started.elapsed(),
        notes,
    })
}
