//! [`Cluster`]: an in-process Raft cluster for tests, demos and benchmarks,
//! generic over the log store.
//!
//! Every node has its own folder, `base_dir/node-{id}`: the log store is
//! opened on `node-{id}/log` by the caller's `open_log(dir, id)`, and a
//! persistent state machine (in durable mode) keeps its snapshot in
//! `node-{id}/sm`. The nodes talk through a shared in-memory [`Router`].
//!
//! Everything that waits is bounded by a timeout: nothing here can hang.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError as WriteApiError, Fatal, InitializeError, RaftError};
use openraft::metrics::WaitError;
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Config, LogState, RaftMetrics, ServerState, SnapshotPolicy, Vote};

use crate::router::Router;
use crate::state_machine::{StateMachineError, StateMachineStore};
use crate::types::{
    ClientWriteError, ClientWriteResponse, LogId, Node, NodeId, Raft, RunTxn, StorageError,
    TypeConfig,
};

/// What a log opener may fail with.
pub type OpenLogError = Box<dyn std::error::Error + Send + Sync>;

type Opener<LS> = Arc<dyn Fn(&Path, NodeId) -> Result<LS, OpenLogError> + Send + Sync>;

/// How long one `client_write` attempt may take before [`Client::write`]
/// tries again (possibly on another node).
pub const WRITE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long [`Cluster::shutdown`] waits for a node to stop.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Cluster::restart`] keeps retrying to open a log whose previous
/// incarnation may still be held by a task of the stopped node.
pub const REOPEN_TIMEOUT: Duration = Duration::from_secs(3);

/// How the cluster is built.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// How many voters (ids `1..=nodes`).
    pub nodes: u64,
    /// The openraft config of every node; validated by [`Cluster::start`].
    pub config: Config,
    /// Whether the log store keeps its state across a restart. If so the
    /// state machines are persistent too ([`StateMachineStore::open`]), so a
    /// restarted node has its vote, log and last snapshot back; if not, a
    /// restarted node is blank, log and state machine alike.
    pub durable: bool,
    /// How long [`Client::write`] keeps trying.
    pub write_timeout: Duration,
}

impl ClusterOptions {
    /// Three nodes with [`ClusterOptions::test_config`].
    pub fn new(durable: bool) -> Self {
        ClusterOptions {
            nodes: 3,
            config: Self::test_config(),
            durable,
            write_timeout: Duration::from_secs(10),
        }
    }

    /// Short timeouts for tests: heartbeat 50 ms, election 150-300 ms,
    /// snapshots only on demand.
    pub fn test_config() -> Config {
        Config {
            cluster_name: "durability-raft-test".to_string(),
            heartbeat_interval: 50,
            election_timeout_min: 150,
            election_timeout_max: 300,
            install_snapshot_timeout: 2_000,
            max_payload_entries: 300,
            snapshot_policy: SnapshotPolicy::Never,
            ..Config::default()
        }
    }

    /// The same, snapshotting every `every` logs and purging all the logs a
    /// snapshot covers (`max_in_snapshot_log_to_keep = 0`).
    pub fn with_snapshots(mut self, every: u64) -> Self {
        self.config.snapshot_policy = SnapshotPolicy::LogsSinceLast(every);
        self.config.max_in_snapshot_log_to_keep = 0;
        self.config.purge_batch_size = 1;
        self
    }
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The openraft config does not validate.
    #[error("invalid raft config: {0}")]
    Config(Box<openraft::ConfigError>),
    /// A node folder could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The caller's opener failed.
    #[error("cannot open the log of node {node}: {source}")]
    OpenLog {
        /// The node.
        node: NodeId,
        /// The opener's error.
        #[source]
        source: OpenLogError,
    },
    /// The persistent state machine could not be opened.
    #[error("cannot open the state machine of node {node}: {source}")]
    StateMachine {
        /// The node.
        node: NodeId,
        /// The underlying error.
        #[source]
        source: StateMachineError,
    },
    /// Reading the recovered state of a freshly opened log failed.
    #[error("cannot read the log of node {node}: {source}")]
    ReadLog {
        /// The node.
        node: NodeId,
        /// The storage error.
        #[source]
        source: Box<StorageError>,
    },
    /// Raft failed to start, or stopped.
    #[error("raft of node {node} failed: {source}")]
    Fatal {
        /// The node.
        node: NodeId,
        /// The fatal error.
        #[source]
        source: Box<Fatal<NodeId>>,
    },
    /// Initialising the cluster failed.
    #[error("cannot initialise the cluster: {0}")]
    Initialize(Box<RaftError<NodeId, InitializeError<NodeId, Node>>>),
    /// A write failed in a way retrying cannot fix.
    #[error("write failed: {0}")]
    Write(Box<ClientWriteError>),
    /// No such node id.
    #[error("node {0} is not part of the cluster")]
    NoSuchNode(NodeId),
    /// The node is shut down.
    #[error("node {0} is not running")]
    NotRunning(NodeId),
    /// The node is already running.
    #[error("node {0} is already running")]
    AlreadyRunning(NodeId),
    /// A wait ran out of time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        timeout: Duration,
    },
    /// A node stopped while being waited on.
    #[error("node {node} stopped while waiting for {what}")]
    Stopped {
        /// The node.
        node: NodeId,
        /// What was waited for.
        what: String,
    },
}

impl From<openraft::ConfigError> for ClusterError {
    fn from(e: openraft::ConfigError) -> Self {
        ClusterError::Config(Box::new(e))
    }
}

impl From<RaftError<NodeId, InitializeError<NodeId, Node>>> for ClusterError {
    fn from(e: RaftError<NodeId, InitializeError<NodeId, Node>>) -> Self {
        ClusterError::Initialize(Box::new(e))
    }
}

impl From<ClientWriteError> for ClusterError {
    fn from(e: ClientWriteError) -> Self {
        ClusterError::Write(Box::new(e))
    }
}

impl ClusterError {
    /// The error of a Raft call on `node` that failed fatally.
    pub fn fatal(node: NodeId, source: Fatal<NodeId>) -> Self {
        ClusterError::Fatal {
            node,
            source: Box::new(source),
        }
    }

    fn timeout(what: impl Into<String>, timeout: Duration) -> Self {
        ClusterError::Timeout {
            what: what.into(),
            timeout,
        }
    }

    fn from_wait(node: NodeId, e: WaitError) -> Self {
        match e {
            WaitError::Timeout(timeout, what) => ClusterError::Timeout { what, timeout },
            WaitError::ShuttingDown => ClusterError::Stopped {
                node,
                what: "metrics".to_string(),
            },
        }
    }
}

/// A node's state as its metrics last reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// The node.
    pub id: NodeId,
    /// Leader, follower, ...
    pub server_state: ServerState,
    /// The current term.
    pub current_term: u64,
    /// The vote.
    pub vote: Vote<NodeId>,
    /// The index of the last log entry.
    pub last_log_index: Option<u64>,
    /// The last applied log id.
    pub last_applied: Option<LogId>,
    /// The last log id of the current snapshot.
    pub snapshot: Option<LogId>,
    /// The last purged log id.
    pub purged: Option<LogId>,
}

impl NodeState {
    /// The state in `m`.
    pub fn from_metrics(m: &RaftMetrics<NodeId, Node>) -> Self {
        NodeState {
            id: m.id,
            server_state: m.state,
            current_term: m.current_term,
            vote: m.vote,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied,
            snapshot: m.snapshot,
            purged: m.purged,
        }
    }
}

/// What a log store held when it was (re)opened, read before Raft started
/// on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredState {
    /// The node.
    pub id: NodeId,
    /// `read_vote()`.
    pub vote: Option<Vote<NodeId>>,
    /// `get_log_state()`.
    pub log_state: LogState<TypeConfig>,
    /// `read_committed()`.
    pub committed: Option<LogId>,
    /// The state machine's last applied log id (from its saved snapshot).
    pub sm_last_applied: Option<LogId>,
}

/// A cheap, cloneable handle that writes to whichever node leads.
#[derive(Clone, Debug)]
pub struct Client {
    router: Router,
    timeout: Duration,
}

impl Client {
    /// A client over `router`, trying each write for up to `timeout`.
    pub fn new(router: Router, timeout: Duration) -> Self {
        Client { router, timeout }
    }

    /// Write `txn` through the leader: retried on `ForwardToLeader` (at the
    /// named leader), on a stopped node and on a slow attempt, until the
    /// write timeout. A retried write may be applied twice if its first
    /// attempt committed without an answer.
    pub async fn write(&self, txn: RunTxn) -> Result<ClientWriteResponse, ClusterError> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut target: Option<NodeId> = None;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(ClusterError::timeout(
                    format!("write of {txn}"),
                    self.timeout,
                ));
            }
            let raft = match target.and_then(|id| self.reachable(id)) {
                Some(raft) => raft,
                None => match self.router.leader() {
                    Some((id, raft)) => {
                        target = Some(id);
                        raft
                    }
                    None => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let attempt = (deadline - now).min(WRITE_ATTEMPT_TIMEOUT);
            match tokio::time::timeout(attempt, raft.client_write(txn.clone())).await {
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(RaftError::APIError(WriteApiError::ForwardToLeader(fwd)))) => {
                    if fwd.leader_id.is_none() || fwd.leader_id == target {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    target = fwd.leader_id;
                }
                Ok(Err(e @ RaftError::APIError(WriteApiError::ChangeMembershipError(_)))) => {
                    return Err(ClusterError::from(e));
                }
                Ok(Err(RaftError::Fatal(_))) => {
                    // The node stopped: look for the leader again.
                    target = None;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_elapsed) => target = None,
            }
        }
    }

    fn reachable(&self, id: NodeId) -> Option<Raft> {
        if self.router.is_isolated(id) {
            return None;
        }
        self.router.get(id)
    }
}

struct NodeSlot {
    sm: StateMachineStore,
    raft: Option<Raft>,
}

/// An in-process cluster of `opts.nodes` voters over log stores of type `LS`.
pub struct Cluster<LS> {
    opts: ClusterOptions,
    config: Arc<Config>,
    base_dir: PathBuf,
    router: Router,
    open_log: Opener<LS>,
    nodes: BTreeMap<NodeId, NodeSlot>,
}

impl<LS: RaftLogStorage<TypeConfig>> fmt::Debug for Cluster<LS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("base_dir", &self.base_dir)
            .field("durable", &self.opts.durable)
            .field("running", &self.running())
            .field("router", &self.router)
            .finish()
    }
}

impl<LS> Cluster<LS>
where
    LS: RaftLogStorage<TypeConfig>,
{
    /// Start `opts.nodes` nodes under `base_dir`, initialise node 1 with all
    /// of them as voters, and wait (up to 10 s) for a leader.
    pub async fn start<F>(
        opts: ClusterOptions,
        base_dir: impl Into<PathBuf>,
        open_log: F,
    ) -> Result<Self, ClusterError>
    where
        F: Fn(&Path, NodeId) -> Result<LS, OpenLogError> + Send + Sync + 'static,
    {
        let config = Arc::new(opts.config.clone().validate()?);
        let mut cluster = Cluster {
            opts,
            config,
            base_dir: base_dir.into(),
            router: Router::new(),
            open_log: Arc::new(open_log),
            nodes: BTreeMap::new(),
        };
        for id in 1..=cluster.opts.nodes {
            cluster.spawn(id).await?;
        }
        let members: BTreeMap<NodeId, BasicNode> = (1..=cluster.opts.nodes)
            .map(|id| (id, BasicNode::new(format!("node-{id}"))))
            .collect();
        let first = cluster.running_raft(1)?;
        first.initialize(members).await?;
        cluster.wait_for_leader(Duration::from_secs(10)).await?;
        Ok(cluster)
    }

    /// The options the cluster was started with.
    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    /// The validated openraft config of every node.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The folder holding every node's folder.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// `base_dir/node-{id}`.
    pub fn node_dir(&self, id: NodeId) -> PathBuf {
        self.base_dir.join(format!("node-{id}"))
    }

    /// `base_dir/node-{id}/log`, the folder `open_log` gets.
    pub fn log_dir(&self, id: NodeId) -> PathBuf {
        self.node_dir(id).join("log")
    }

    /// `base_dir/node-{id}/sm`, the folder of a persistent state machine.
    pub fn sm_dir(&self, id: NodeId) -> PathBuf {
        self.node_dir(id).join("sm")
    }

    /// Every node id, running or not.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The running nodes.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, slot)| slot.raft.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The shared router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// A cloneable client writing through the leader.
    pub fn client(&self) -> Client {
        Client::new(self.router.clone(), self.opts.write_timeout)
    }

    /// The Raft handle of a running node.
    pub fn raft(&self, id: NodeId) -> Option<Raft> {
        self.nodes.get(&id).and_then(|slot| slot.raft.clone())
    }

    /// The state machine of the node's latest incarnation (kept after a
    /// shutdown, until the next restart).
    pub fn state_machine(&self, id: NodeId) -> Option<StateMachineStore> {
        self.nodes.get(&id).map(|slot| slot.sm.clone())
    }

    /// The state machines of the running nodes.
    pub fn running_state_machines(&self) -> Vec<(NodeId, StateMachineStore)> {
        self.nodes
            .iter()
            .filter(|(_, slot)| slot.raft.is_some())
            .map(|(id, slot)| (*id, slot.sm.clone()))
            .collect()
    }

    /// The latest metrics of a running node.
    pub fn metrics(&self, id: NodeId) -> Option<RaftMetrics<NodeId, Node>> {
        self.raft(id).map(|raft| raft.metrics().borrow().clone())
    }

    /// The latest state of a running node.
    pub fn node_state(&self, id: NodeId) -> Option<NodeState> {
        self.metrics(id).map(|m| NodeState::from_metrics(&m))
    }

    /// The current leader among the running, reachable nodes.
    pub fn leader(&self) -> Option<NodeId> {
        self.router.leader().map(|(id, _)| id)
    }

    /// Wait for a leader among the running, reachable nodes.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(id) = self.leader() {
                return Ok(id);
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::timeout("a leader", timeout));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait for a leader other than `old`.
    pub async fn wait_for_new_leader(
        &self,
        old: NodeId,
        timeout: Duration,
    ) -> Result<NodeId, ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(id) = self.leader().filter(|id| *id != old) {
                return Ok(id);
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::timeout(
                    format!("a leader other than {old}"),
                    timeout,
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Write `txn` through the leader (see [`Client::write`]).
    pub async fn write(&self, txn: RunTxn) -> Result<ClientWriteResponse, ClusterError> {
        self.client().write(txn).await
    }

    /// One `client_write` on node `id`, isolated or not, without retry or
    /// timeout of its own.
    pub async fn write_to(
        &self,
        id: NodeId,
        txn: RunTxn,
    ) -> Result<ClientWriteResponse, ClusterError> {
        let raft = self.running_raft(id)?;
        Ok(raft.client_write(txn).await?)
    }

    /// Make `voters` the voter set (through the leader, retried on
    /// `ForwardToLeader` until `timeout`). Nodes dropped from it are removed.
    pub async fn change_voters(
        &self,
        voters: BTreeSet<NodeId>,
        timeout: Duration,
    ) -> Result<ClientWriteResponse, ClusterError> {
        let what = format!("voters {voters:?}");
        self.on_leader(&what, timeout, move |raft| {
            let voters = voters.clone();
            async move { raft.change_membership(voters, false).await }
        })
        .await
    }

    /// Add node `id` as a learner and wait until it caught up (through the
    /// leader, retried on `ForwardToLeader` until `timeout`).
    pub async fn add_learner(
        &self,
        id: NodeId,
        timeout: Duration,
    ) -> Result<ClientWriteResponse, ClusterError> {
        self.on_leader(&format!("learner {id}"), timeout, move |raft| async move {
            raft.add_learner(id, BasicNode::new(format!("node-{id}")), true)
                .await
        })
        .await
    }

    async fn on_leader<F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        op: F,
    ) -> Result<ClientWriteResponse, ClusterError>
    where
        F: Fn(Raft) -> Fut,
        Fut: std::future::Future<Output = Result<ClientWriteResponse, ClientWriteError>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClusterError::timeout(what, timeout));
            }
            let Some((_, raft)) = self.router.leader() else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            match tokio::time::timeout(left, op(raft)).await {
                Err(_) => return Err(ClusterError::timeout(what, timeout)),
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(RaftError::APIError(WriteApiError::ForwardToLeader(_))))
                | Ok(Err(RaftError::Fatal(_))) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(Err(e)) => return Err(ClusterError::from(e)),
            }
        }
    }

    /// Partition `id` away from the others.
    pub fn isolate(&self, id: NodeId) {
        self.router.isolate(id);
    }

    /// Undo [`Cluster::isolate`].
    pub fn heal(&self, id: NodeId) {
        self.router.heal(id);
    }

    /// Wait until every running node applied `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), ClusterError> {
        let ids = self.running();
        self.wait_applied_on(&ids, index, timeout).await
    }

    /// Wait until the nodes `ids` applied `index`.
    pub async fn wait_applied_on(
        &self,
        ids: &[NodeId],
        index: u64,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        for &id in ids {
            let raft = self.running_raft(id)?;
            let left = deadline.saturating_duration_since(Instant::now());
            raft.wait(Some(left))
                .applied_index_at_least(Some(index), format!("node {id} applies {index}"))
                .await
                .map_err(|e| ClusterError::from_wait(id, e))?;
        }
        Ok(())
    }

    /// Wait until node `id`'s metrics satisfy `pred`.
    pub async fn wait_metrics<P>(
        &self,
        id: NodeId,
        timeout: Duration,
        what: &str,
        pred: P,
    ) -> Result<NodeState, ClusterError>
    where
        P: Fn(&NodeState) -> bool + Send + Sync,
    {
        let raft = self.running_raft(id)?;
        let m = raft
            .wait(Some(timeout))
            .metrics(
                |m| pred(&NodeState::from_metrics(m)),
                format!("node {id}: {what}"),
            )
            .await
            .map_err(|e| ClusterError::from_wait(id, e))?;
        Ok(NodeState::from_metrics(&m))
    }

    /// Make node `id` build a snapshot of everything it applied, then purge
    /// all the log that snapshot covers. Triggers are retried: one that
    /// arrives while a snapshot is being built is ignored by openraft.
    /// Returns the node's state once purged.
    pub async fn snapshot_and_purge(
        &self,
        id: NodeId,
        timeout: Duration,
    ) -> Result<NodeState, ClusterError> {
        let deadline = Instant::now() + timeout;
        let raft = self.running_raft(id)?;
        let fatal = |source| ClusterError::fatal(id, source);
        let applied = self
            .wait_metrics(id, timeout, "applies its log", |s| {
                s.last_applied.map(|l| l.index) == s.last_log_index
            })
            .await?
            .last_applied
            .map(|l| l.index)
            .unwrap_or_default();
        let retry = Duration::from_millis(500);
        loop {
            raft.trigger().snapshot().await.map_err(fatal)?;
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .wait_metrics(id, retry.min(left), "snapshot of the applied log", |s| {
                    s.snapshot.map(|l| l.index) >= Some(applied)
                })
                .await
            {
                Ok(_) => break,
                Err(ClusterError::Timeout { .. }) if Instant::now() < deadline => continue,
                Err(e) => return Err(e),
            }
        }
        loop {
            raft.trigger().purge_log(applied).await.map_err(fatal)?;
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .wait_metrics(id, retry.min(left), "purge of the snapshot's log", |s| {
                    s.purged.map(|l| l.index) >= Some(applied)
                })
                .await
            {
                Ok(state) => return Ok(state),
                Err(ClusterError::Timeout { .. }) if Instant::now() < deadline => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Wait for a leader, then until every running node applied the
    /// leader's last log entry. Returns that index. Call it with no write in
    /// flight.
    pub async fn sync(&self, timeout: Duration) -> Result<u64, ClusterError> {
        let deadline = Instant::now() + timeout;
        let leader = self.wait_for_leader(timeout).await?;
        let raft = self.running_raft(leader)?;
        let left = deadline.saturating_duration_since(Instant::now());
        // A new leader's blank entry must be applied before its last index is final.
        let m = raft
            .wait(Some(left))
            .metrics(
                |m| {
                    m.last_log_index.is_some()
                        && m.last_applied.map(|l| l.index) == m.last_log_index
                },
                format!("leader {leader} applies its log"),
            )
            .await
            .map_err(|e| ClusterError::from_wait(leader, e))?;
        let index = m.last_log_index.unwrap_or_default();
        let left = deadline.saturating_duration_since(Instant::now());
        self.wait_applied(index, left).await?;
        Ok(index)
    }

    /// Shut node `id` down and unregister it; returns its last reported state.
    pub async fn shutdown(&mut self, id: NodeId) -> Result<NodeState, ClusterError> {
        let durable = self.opts.durable;
        let slot = self
            .nodes
            .get_mut(&id)
            .ok_or(ClusterError::NoSuchNode(id))?;
        let raft = slot.raft.take().ok_or(ClusterError::NotRunning(id))?;
        self.router.remove(id);
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, raft.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(_join)) => {
                // The core task panicked: it is stopped all the same.
            }
            Err(_) => {
                return Err(ClusterError::timeout(
                    format!("node {id} to shut down"),
                    SHUTDOWN_TIMEOUT,
                ))
            }
        }
        if durable {
            slot.sm.close();
        }
        let m = raft.metrics().borrow().clone();
        Ok(NodeState::from_metrics(&m))
    }

    /// Shut every running node down.
    pub async fn shutdown_all(&mut self) -> Result<Vec<NodeState>, ClusterError> {
        let mut states = Vec::new();
        for id in self.running() {
            states.push(self.shutdown(id).await?);
        }
        Ok(states)
    }

    /// Start node `id` again from its folder, with the same `open_log`.
    /// Returns what the reopened log (and state machine) held.
    pub async fn restart(&mut self, id: NodeId) -> Result<RecoveredState, ClusterError> {
        match self.nodes.get(&id) {
            None => return Err(ClusterError::NoSuchNode(id)),
            Some(slot) if slot.raft.is_some() => return Err(ClusterError::AlreadyRunning(id)),
            Some(_) => {}
        }
        self.spawn(id).await
    }

    fn running_raft(&self, id: NodeId) -> Result<Raft, ClusterError> {
        let slot = self.nodes.get(&id).ok_or(ClusterError::NoSuchNode(id))?;
        slot.raft.clone().ok_or(ClusterError::NotRunning(id))
    }

    /// Open node `id`'s log and state machine, start its Raft and register it.
    async fn spawn(&mut self, id: NodeId) -> Result<RecoveredState, ClusterError> {
        let log_dir = self.log_dir(id);
        let sm_dir = self.sm_dir(id);
        for dir in [&log_dir, &sm_dir] {
            std::fs::create_dir_all(dir).map_err(|source| ClusterError::Io {
                path: dir.clone(),
                source,
            })?;
        }

        let mut log = self.open_log_retrying(&log_dir, id).await?;
        let read_err = |source| ClusterError::ReadLog {
            node: id,
            source: Box::new(source),
        };
        let vote = log.read_vote().await.map_err(read_err)?;
        let log_state = log.get_log_state().await.map_err(read_err)?;
        let committed = log.read_committed().await.map_err(read_err)?;

        let sm = if self.opts.durable {
            StateMachineStore::open(&sm_dir)
                .map_err(|source| ClusterError::StateMachine { node: id, source })?
        } else {
            StateMachineStore::new()
        };
        let recovered = RecoveredState {
            id,
            vote,
            log_state,
            committed,
            sm_last_applied: sm.last_applied(),
        };

        let raft = openraft::Raft::new(
            id,
            Arc::clone(&self.config),
            self.router.network(id),
            log,
            sm.clone(),
        )
        .await
        .map_err(|source| ClusterError::fatal(id, source))?;
        self.router.add(id, raft.clone());
        self.nodes.insert(
            id,
            NodeSlot {
                sm,
                raft: Some(raft),
            },
        );
        Ok(recovered)
    }

    /// Open a log, retrying for a while: tasks of a node that just stopped
    /// may still hold its previous log handle.
    async fn open_log_retrying(&self, dir: &Path, id: NodeId) -> Result<LS, ClusterError> {
        let deadline = Instant::now() + REOPEN_TIMEOUT;
        loop {
            match (self.open_log)(dir, id) {
                Ok(log) => return Ok(log),
                Err(source) => {
                    if Instant::now() >= deadline {
                        return Err(ClusterError::OpenLog { node: id, source });
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}
