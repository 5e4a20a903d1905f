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

/// Bytes in JSON as people write them: a string when they are UTF-8
/// (`"k1"`), else `{"base64": "..."}` (standard alphabet, padded). Reading
/// also accepts an array of numbers, as older nodes sent them.
///
/// Use with `#[serde(with = "bytes_json")]` on a `Vec<u8>`.
pub mod bytes_json {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr<'a> {
        Text(std::borrow::Cow<'a, str>),
        Base64 { base64: std::borrow::Cow<'a, str> },
        Numbers(Vec<u8>),
    }

    /// Writes `bytes` as a string, or as `{"base64": ...}`.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => s.serialize_str(text),
            Err(_) => Repr::Base64 {
                base64: base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into(),
            }
            .serialize(s),
        }
    }

    /// Reads a string, `{"base64": ...}` or an array of numbers.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Text(t) => Ok(t.into_owned().into_bytes()),
            Repr::Base64 { base64 } => base64::engine::general_purpose::STANDARD
                .decode(base64.as_bytes())
                .map_err(|e| serde::de::Error::custom(format!("bad base64: {e}"))),
            Repr::Numbers(n) => Ok(n),
        }
    }

    /// The same for an `Option<Vec<u8>>` (`null` for `None`).
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super")] Vec<u8>);

        /// Writes `null`, or the bytes as [`super::serialize`] does.
        pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match bytes {
                Some(b) => super::serialize(b, s),
                None => s.serialize_none(),
            }
        }

        /// Reads `null`, or bytes as [`super::deserialize`] does.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
        }
    }
}

/// One operation of a transaction. In JSON, keys and values are strings
/// when they are UTF-8, else `{"base64": "..."}` ([`bytes_json`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// Set `key` of the run to `value`.
    Put {
        /// The key.
        #[serde(with = "bytes_json")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "bytes_json")]
        value: Vec<u8>,
    },
    /// Remove `key` from the run.
    Delete {
        /// The key.
        #[serde(with = "bytes_json")]
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
    /// When the leader accepted the transaction, in µs since the Unix
    /// epoch: stamped by the node that takes the client's write (only a
    /// leader's write succeeds), whatever the client sent, and written
    /// into the BeginTxn on every replica, so `walctl dump` shows the same
    /// time everywhere. 0: not stamped (absent in the JSON is 0).
    #[serde(default)]
    pub timestamp: u64,
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
            timestamp: 0,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_travel_as_text_or_base64_and_old_arrays_still_read() {
        let run = RunId::from_bytes([7; 16]);
        let txn = RunTxn::put(run, 1, "k1", "hello");
        let json = serde_json::to_string(&txn).unwrap();
        assert!(json.contains(r#""key":"k1","value":"hello""#), "{json}");
        assert_eq!(serde_json::from_str::<RunTxn>(&json).unwrap(), txn);

        let binary = RunTxn::put(run, 2, "k2", vec![0xff, 0x00, 0x80]);
        let json = serde_json::to_string(&binary).unwrap();
        assert!(json.contains(r#""value":{"base64":"/wCA"}"#), "{json}");
        assert_eq!(serde_json::from_str::<RunTxn>(&json).unwrap(), binary);

        let old = json.replace(r#"{"base64":"/wCA"}"#, "[255,0,128]");
        assert_eq!(serde_json::from_str::<RunTxn>(&old).unwrap(), binary);

        let bad = json.replace("/wCA", "not base64!");
        let e = serde_json::from_str::<RunTxn>(&bad).unwrap_err();
        assert!(e.to_string().contains("bad base64"), "{e}");
    }
}
