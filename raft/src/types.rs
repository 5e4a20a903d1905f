//! The type configuration of the replicated log and its application data.
//!
//! One log entry carries one [`RunTxn`]: an agent-run transaction, i.e. a run
//! id, a transaction id and its ops. The state machine answers with a
//! [`TxnResponse`].

use std::fmt;

use durability::RunId;
use serde::{Deserialize, Serialize};

/// A Raft node id.
pub type NodeId = u64;

/// The node description stored in memberships.
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// The openraft type configuration of this crate.
    pub TypeConfig:
        D = RunTxn,
        R = TxnResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// A Raft handle of this crate's type configuration.
pub type Raft = openraft::Raft<TypeConfig>;

/// A log entry of this crate's type configuration.
pub type Entry = openraft::Entry<TypeConfig>;

/// A log id (term, leader, index).
pub type LogId = openraft::LogId<NodeId>;

/// What `Raft::client_write` answers on success.
pub type ClientWriteResponse = openraft::raft::ClientWriteResponse<TypeConfig>;

/// What `Raft::client_write` fails with.
pub type ClientWriteError =
    openraft::error::RaftError<NodeId, openraft::error::ClientWriteError<NodeId, Node>>;

/// A storage error of this crate's type configuration.
pub type StorageError = openraft::StorageError<NodeId>;

/// One operation of a transaction.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// Set `key` of the run to `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` from the run.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

impl fmt::Debug for TxnOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnOp::Put { key, value } => write!(
                f,
                "Put({:?} = {} bytes)",
                String::from_utf8_lossy(key),
                value.len()
            ),
            TxnOp::Delete { key } => write!(f, "Delete({:?})", String::from_utf8_lossy(key)),
        }
    }
}

/// An agent-run transaction: the unit one Raft log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTxn {
    /// The run the transaction belongs to.
    pub run_id: RunId,
    /// The transaction id, chosen by the client, unique within its run:
    /// a transaction whose id the run already applied is not applied
    /// again, so a client may resend a write whose answer it did not get.
    pub txn_id: u64,
    /// The ops, applied in order.
    pub ops: Vec<TxnOp>,
}

impl RunTxn {
    /// A transaction of a single put.
    pub fn put(
        run_id: RunId,
        txn_id: u64,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Self {
        RunTxn {
            run_id,
            txn_id,
            ops: vec![TxnOp::Put {
                key: key.into(),
                value: value.into(),
            }],
        }
    }
}

impl fmt::Display for RunTxn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "txn {} of run {} ({} ops)",
            self.txn_id,
            self.run_id,
            self.ops.len()
        )
    }
}

/// What the state machine answers for one applied entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// The log index of the applied entry.
    pub index: u64,
    /// How many ops of the entry were applied (0 for blank and membership
    /// entries, and for a duplicate).
    pub ops_applied: usize,
    /// True if the entry's run had already applied a transaction of its
    /// id (a client's retry of a write that did commit): nothing was
    /// applied. Writes are idempotent by `(run_id, txn_id)`.
    #[serde(default)]
    pub duplicate: bool,
}
