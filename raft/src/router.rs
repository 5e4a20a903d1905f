//! An in-memory network: every RPC is a direct call on the target's `Raft`.
//!
//! [`Router`] holds the running nodes. [`Router::network`] gives the
//! [`RaftNetworkFactory`] of one node, whose connections call the target's
//! `Raft::append_entries`, `vote` and `install_snapshot` directly, the pattern
//! of openraft's own test harness and its `raft-kv-memstore` example.
//!
//! A node can be partitioned ([`Router::isolate`]): every RPC it sends or
//! should receive fails with [`Unreachable`], as does every RPC to a node that
//! is not registered (shut down, or not started yet). Nothing here panics on
//! an RPC failure.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::ServerState;
use parking_lot::Mutex;

use crate::types::{Node, NodeId, Raft, TypeConfig};

/// How long openraft waits before retrying an unreachable node.
pub const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(100);

/// Why the router did not deliver an RPC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// The sender or the target is partitioned away.
    #[error("node {node} is isolated")]
    Isolated {
        /// The isolated node.
        node: NodeId,
    },
    /// The target is not running (shut down, or not started).
    #[error("node {node} is not running")]
    NotRunning {
        /// The missing node.
        node: NodeId,
    },
}

#[derive(Default)]
struct RouterInner {
    nodes: BTreeMap<NodeId, Raft>,
    isolated: BTreeSet<NodeId>,
}

/// The running nodes of an in-memory cluster and the partitions between them.
/// Clones share the same routing table.
#[derive(Clone, Default)]
pub struct Router {
    inner: Arc<Mutex<RouterInner>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("Router")
            .field("nodes", &inner.nodes.keys().collect::<Vec<_>>())
            .field("isolated", &inner.isolated)
            .finish()
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a running node, replacing any previous handle of `id`.
    pub fn add(&self, id: NodeId, raft: Raft) {
        self.inner.lock().nodes.insert(id, raft);
    }

    /// Unregister a node: from now on it is unreachable. Returns its handle.
    pub fn remove(&self, id: NodeId) -> Option<Raft> {
        self.inner.lock().nodes.remove(&id)
    }

    /// Partition `id` away: RPCs from it and to it fail with `Unreachable`.
    pub fn isolate(&self, id: NodeId) {
        self.inner.lock().isolated.insert(id);
    }

    /// Undo [`Router::isolate`].
    pub fn heal(&self, id: NodeId) {
        self.inner.lock().isolated.remove(&id);
    }

    /// Whether `id` is partitioned away.
    pub fn is_isolated(&self, id: NodeId) -> bool {
        self.inner.lock().isolated.contains(&id)
    }

    /// The handle of a registered node, isolated or not.
    pub fn get(&self, id: NodeId) -> Option<Raft> {
        self.inner.lock().nodes.get(&id).cloned()
    }

    /// The ids of the registered nodes.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.inner.lock().nodes.keys().copied().collect()
    }

    /// The registered nodes that are not isolated.
    pub fn reachable(&self) -> Vec<(NodeId, Raft)> {
        let inner = self.inner.lock();
        inner
            .nodes
            .iter()
            .filter(|(id, _)| !inner.isolated.contains(id))
            .map(|(id, raft)| (*id, raft.clone()))
            .collect()
    }

    /// The leader among the reachable nodes: a node whose metrics say it is
    /// leader, the one of the highest term if more than one do.
    pub fn leader(&self) -> Option<(NodeId, Raft)> {
        self.reachable()
            .into_iter()
            .filter_map(|(id, raft)| {
                let m = raft.metrics().borrow().clone();
                (m.state == ServerState::Leader && m.running_state.is_ok()).then_some((
                    m.current_term,
                    id,
                    raft,
                ))
            })
            .max_by_key(|(term, id, _)| (*term, *id))
            .map(|(_, id, raft)| (id, raft))
    }

    /// The network factory of node `from`.
    pub fn network(&self, from: NodeId) -> NodeNetwork {
        NodeNetwork {
            router: self.clone(),
            from,
        }
    }

    /// The target's handle, if both ends can talk.
    fn route(&self, from: NodeId, target: NodeId) -> Result<Raft, RouterError> {
        let inner = self.inner.lock();
        for node in [from, target] {
            if inner.isolated.contains(&node) {
                return Err(RouterError::Isolated { node });
            }
        }
        inner
            .nodes
            .get(&target)
            .cloned()
            .ok_or(RouterError::NotRunning { node: target })
    }

    /// Whether a reply can travel back from `target` to `from`.
    fn check_reply(&self, from: NodeId, target: NodeId) -> Result<(), RouterError> {
        let inner = self.inner.lock();
        for node in [from, target] {
            if inner.isolated.contains(&node) {
                return Err(RouterError::Isolated { node });
            }
        }
        Ok(())
    }
}

/// The [`RaftNetworkFactory`] of one node: connections from it to the others.
#[derive(Clone, Debug)]
pub struct NodeNetwork {
    router: Router,
    from: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for NodeNetwork {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &Node) -> Self::Network {
        Connection {
            router: self.router.clone(),
            from: self.from,
            target,
        }
    }
}

/// A connection from one node to another.
#[derive(Clone, Debug)]
pub struct Connection {
    router: Router,
    from: NodeId,
    target: NodeId,
}

/// An RPC error whose cause is the router.
fn unreachable<E: std::error::Error>(e: RouterError) -> RPCError<NodeId, Node, E> {
    RPCError::Unreachable(Unreachable::new(&e))
}

/// The error of an RPC the target answered with a `RaftError`: a target
/// that stopped is unreachable; anything else is its answer.
fn remote<E: std::error::Error>(
    target: NodeId,
    e: RaftError<NodeId, E>,
) -> RPCError<NodeId, Node, RaftError<NodeId, E>> {
    match e {
        RaftError::Fatal(fatal) => RPCError::Unreachable(Unreachable::new(&fatal)),
        api => RPCError::RemoteError(RemoteError::new(target, api)),
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let raft = self
            .router
            .route(self.from, self.target)
            .map_err(unreachable)?;
        let resp = raft
            .append_entries(rpc)
            .await
            .map_err(|e| remote(self.target, e))?;
        self.router
            .check_reply(self.from, self.target)
            .map_err(unreachable)?;
        Ok(resp)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let raft = self
            .router
            .route(self.from, self.target)
            .map_err(unreachable)?;
        let resp = raft
            .install_snapshot(rpc)
            .await
            .map_err(|e| remote(self.target, e))?;
        self.router
            .check_reply(self.from, self.target)
            .map_err(unreachable)?;
        Ok(resp)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let raft = self
            .router
            .route(self.from, self.target)
            .map_err(unreachable)?;
        let resp = raft.vote(rpc).await.map_err(|e| remote(self.target, e))?;
        self.router
            .check_reply(self.from, self.target)
            .map_err(unreachable)?;
        Ok(resp)
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}
