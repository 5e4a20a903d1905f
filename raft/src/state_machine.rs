//! [`StateMachineStore`]: the replicated state of agent runs.
//!
//! The state is an in-memory map from each run to its keys and values, plus
//! the Raft bookkeeping: the last applied log id, the last membership and a
//! count of the applied transactions. Snapshots are the serde_json encoding of
//! that state.
//!
//! A store made by [`StateMachineStore::new`] is volatile. One made by
//! [`StateMachineStore::open`] also writes every snapshot it builds or
//! installs to `snapshot.json` in its folder (write, fsync, rename, fsync the
//! folder) and starts from that snapshot when opened again, so that a node
//! whose durable log was purged up to the snapshot can restart: openraft then
//! re-applies the log entries after the snapshot.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use durability::RunId;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::types::{Entry, LogId, Node, NodeId, StorageError, TxnOp, TxnResponse, TypeConfig};

/// The file a persistent store keeps its last snapshot in.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

/// The keys and values of every run.
pub type Runs = BTreeMap<RunId, BTreeMap<Vec<u8>, Vec<u8>>>;

/// The transaction ids a run has applied, as disjoint inclusive ranges
/// (start -> end): a run whose ids come in order holds one range, so
/// remembering every id costs a few bytes per run, not per transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TxnIds(BTreeMap<u64, u64>);

impl TxnIds {
    /// Whether `id` is in the set.
    pub fn contains(&self, id: u64) -> bool {
        self.0
            .range(..=id)
            .next_back()
            .is_some_and(|(_, &end)| end >= id)
    }

    /// Adds `id`, merging it with the ranges it touches.
    pub fn insert(&mut self, id: u64) {
        if self.contains(id) {
            return;
        }
        let mut start = id;
        let mut end = id;
        if let Some((&s, &e)) = self.0.range(..id).next_back() {
            if e.checked_add(1) == Some(id) {
                start = s;
            }
        }
        if let Some(next) = id.checked_add(1) {
            if let Some(e) = self.0.remove(&next) {
                end = e;
            }
        }
        self.0.insert(start, end);
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|(&s, &e)| (s, e))
    }
}

/// The whole state of a state machine, cloneable so tests can compare nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateMachineData {
    /// The log id of the last applied entry.
    pub last_applied: Option<LogId>,
    /// The last applied membership.
    pub last_membership: StoredMembership<NodeId, Node>,
    /// Each run's keys and values.
    pub runs: Runs,
    /// How many transactions (normal entries) were applied; a retry of one
    /// already applied is not counted.
    pub applied_txns: u64,
    /// The transaction ids each run has applied: a transaction whose id
    /// its run already applied is not applied again (a client's retry).
    /// Kept after a run's keys are all deleted.
    pub applied_ids: BTreeMap<RunId, TxnIds>,
}

/// A compact summary of the application state (runs and applied-transaction
/// count, not the Raft bookkeeping), equal on nodes that applied the same log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateDigest {
    /// How many transactions were applied.
    pub applied_txns: u64,
    /// How many runs hold at least one key.
    pub runs: usize,
    /// How many keys all runs hold together.
    pub keys: usize,
    /// A hash of every run, key and value.
    pub hash: u64,
}

/// Why a persistent state machine could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StateMachineError {
    /// The folder or the snapshot file could not be read or created.
    #[error("state machine I/O on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The snapshot file does not decode.
    #[error("state machine snapshot {path} is corrupt: {source}")]
    Corrupt {
        /// The snapshot file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

/// A run's keys and values as a list of pairs.
type RunPairs = (RunId, Vec<(Vec<u8>, Vec<u8>)>);

/// The wire and file form of the state (JSON maps need string keys, so the
/// byte-keyed maps travel as lists of pairs).
#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    last_applied: Option<LogId>,
    last_membership: StoredMembership<NodeId, Node>,
    applied_txns: u64,
    runs: Vec<RunPairs>,
    /// Each run's applied transaction ids, as inclusive ranges (absent in
    /// snapshots written before writes were idempotent).
    #[serde(default)]
    applied_ids: Vec<(RunId, Vec<(u64, u64)>)>,
}

impl SnapshotPayload {
    fn from_data(data: &StateMachineData) -> Self {
        SnapshotPayload {
            last_applied: data.last_applied,
            last_membership: data.last_membership.clone(),
            applied_txns: data.applied_txns,
            runs: data
                .runs
                .iter()
                .map(|(run, kv)| {
                    (
                        *run,
                        kv.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    )
                })
                .collect(),
            applied_ids: data
                .applied_ids
                .iter()
                .map(|(run, ids)| (*run, ids.ranges().collect()))
                .collect(),
        }
    }

    fn into_data(self) -> StateMachineData {
        StateMachineData {
            last_applied: self.last_applied,
            last_membership: self.last_membership,
            applied_txns: self.applied_txns,
            runs: self
                .runs
                .into_iter()
                .map(|(run, kv)| (run, kv.into_iter().collect()))
                .collect(),
            applied_ids: self
                .applied_ids
                .into_iter()
                .map(|(run, ranges)| (run, TxnIds(ranges.into_iter().collect())))
                .collect(),
        }
    }
}

/// The snapshot file: its meta and its data (the JSON of a `SnapshotPayload`).
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, Node>,
    data: String,
}

#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    data: Vec<u8>,
}

struct Inner {
    state: Mutex<StateMachineData>,
    /// The current snapshot. Held while a snapshot file is written, so the
    /// file and this field change together.
    snapshot: Mutex<Option<StoredSnapshot>>,
    snapshot_idx: AtomicU64,
    dir: Option<PathBuf>,
    closed: AtomicBool,
}

/// The state machine of one node. Clones share the same state, so a test can
/// read it while Raft owns another clone.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Inner>,
}

impl Default for StateMachineStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for StateMachineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.state.lock();
        f.debug_struct("StateMachineStore")
            .field("last_applied", &state.last_applied)
            .field("applied_txns", &state.applied_txns)
            .field("runs", &state.runs.len())
            .field("dir", &self.inner.dir)
            .finish()
    }
}

impl StateMachineStore {
    /// An empty, volatile state machine.
    pub fn new() -> Self {
        Self::with(StateMachineData::default(), None, None)
    }

    /// A persistent state machine in `dir` (created if missing): it starts
    /// from the snapshot saved there, if any, and saves every later snapshot.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateMachineError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| StateMachineError::Io {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(SNAPSHOT_FILE);
        let (data, snapshot) = match fs::read(&path) {
            Ok(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(|source| {
                    StateMachineError::Corrupt {
                        path: path.clone(),
                        source,
                    }
                })?;
                let payload: SnapshotPayload =
                    serde_json::from_str(&file.data).map_err(|source| {
                        StateMachineError::Corrupt {
                            path: path.clone(),
                            source,
                        }
                    })?;
                let mut data = payload.into_data();
                // The meta is authoritative for the Raft bookkeeping.
                data.last_applied = file.meta.last_log_id;
                data.last_membership = file.meta.last_membership.clone();
                let stored = StoredSnapshot {
                    meta: file.meta,
                    data: file.data.into_bytes(),
                };
                (data, Some(stored))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (StateMachineData::default(), None)
            }
            Err(source) => return Err(StateMachineError::Io { path, source }),
        };
        Ok(Self::with(data, snapshot, Some(dir)))
    }

    fn with(
        data: StateMachineData,
        snapshot: Option<StoredSnapshot>,
        dir: Option<PathBuf>,
    ) -> Self {
        StateMachineStore {
            inner: Arc::new(Inner {
                state: Mutex::new(data),
                snapshot: Mutex::new(snapshot),
                snapshot_idx: AtomicU64::new(0),
                dir,
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The folder snapshots are saved in, for a persistent store.
    pub fn dir(&self) -> Option<&Path> {
        self.inner.dir.as_deref()
    }

    /// The value of `key` in `run`.
    pub fn get(&self, run: &RunId, key: &[u8]) -> Option<Vec<u8>> {
        self.inner
            .state
            .lock()
            .runs
            .get(run)
            .and_then(|kv| kv.get(key))
            .cloned()
    }

    /// Every key and value of `run`.
    pub fn run(&self, run: &RunId) -> Option<BTreeMap<Vec<u8>, Vec<u8>>> {
        self.inner.state.lock().runs.get(run).cloned()
    }

    /// A copy of the whole state.
    pub fn data(&self) -> StateMachineData {
        self.inner.state.lock().clone()
    }

    /// A compact summary of the application state.
    pub fn digest(&self) -> StateDigest {
        let state = self.inner.state.lock();
        let mut hasher = DefaultHasher::new();
        state.runs.hash(&mut hasher);
        StateDigest {
            applied_txns: state.applied_txns,
            runs: state.runs.len(),
            keys: state.runs.values().map(BTreeMap::len).sum(),
            hash: hasher.finish(),
        }
    }

    /// How many transactions were applied.
    pub fn applied_txns(&self) -> u64 {
        self.inner.state.lock().applied_txns
    }

    /// The log id of the last applied entry.
    pub fn last_applied(&self) -> Option<LogId> {
        self.inner.state.lock().last_applied
    }

    /// The last applied membership.
    pub fn last_membership(&self) -> StoredMembership<NodeId, Node> {
        self.inner.state.lock().last_membership.clone()
    }

    /// The meta of the current snapshot.
    pub fn current_snapshot_meta(&self) -> Option<SnapshotMeta<NodeId, Node>> {
        self.inner.snapshot.lock().as_ref().map(|s| s.meta.clone())
    }

    /// Stop saving snapshots to disk: called once the node owning this store
    /// has shut down, so that a snapshot still being built by the dead node
    /// cannot overwrite the file a restarted node uses.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
    }

    fn apply_entry(state: &mut StateMachineData, entry: Entry) -> TxnResponse {
        let index = entry.log_id.index;
        state.last_applied = Some(entry.log_id);
        let mut duplicate = false;
        let ops_applied = match entry.payload {
            EntryPayload::Blank => 0,
            EntryPayload::Normal(txn) if Self::seen(state, &txn) => {
                duplicate = true;
                0
            }
            EntryPayload::Normal(txn) => {
                state
                    .applied_ids
                    .entry(txn.run_id)
                    .or_default()
                    .insert(txn.txn_id);
                let n = txn.ops.len();
                for op in txn.ops {
                    match op {
                        TxnOp::Put { key, value } => {
                            state.runs.entry(txn.run_id).or_default().insert(key, value);
                        }
                        TxnOp::Delete { key } => {
                            if let Some(kv) = state.runs.get_mut(&txn.run_id) {
                                kv.remove(&key);
                                if kv.is_empty() {
                                    state.runs.remove(&txn.run_id);
                                }
                            }
                        }
                    }
                }
                state.applied_txns += 1;
                n
            }
            EntryPayload::Membership(membership) => {
                state.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                0
            }
        };
        TxnResponse {
            index,
            ops_applied,
            duplicate,
        }
    }

    /// Whether `txn`'s run already applied a transaction of its id.
    fn seen(state: &StateMachineData, txn: &crate::types::RunTxn) -> bool {
        state
            .applied_ids
            .get(&txn.run_id)
            .is_some_and(|ids| ids.contains(txn.txn_id))
    }

    /// Make `snapshot` the current one, unless a newer one already is; save
    /// it first for a persistent store.
    fn set_current(&self, snapshot: StoredSnapshot) -> std::io::Result<()> {
        let mut current = self.inner.snapshot.lock();
        if let Some(cur) = current.as_ref() {
            if cur.meta.last_log_id > snapshot.meta.last_log_id {
                return Ok(());
            }
        }
        if let Some(dir) = &self.inner.dir {
            if self.inner.closed.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("the state machine is closed"));
            }
            write_snapshot_file(dir, &snapshot)?;
        }
        *current = Some(snapshot);
        Ok(())
    }
}

/// The storage error of a failed snapshot save.
fn snapshot_write_error(meta: &SnapshotMeta<NodeId, Node>, e: &std::io::Error) -> StorageError {
    StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(e)).into()
}

/// Write the snapshot file atomically: a temporary file, synced, renamed
/// over the old one, the folder synced; each sync as the log's own
/// (`F_FULLFSYNC` on macOS).
fn write_snapshot_file(dir: &Path, snapshot: &StoredSnapshot) -> std::io::Result<()> {
    let data = String::from_utf8(snapshot.data.clone()).map_err(std::io::Error::other)?;
    let file = SnapshotFile {
        meta: snapshot.meta.clone(),
        data,
    };
    let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        durability::os::durable::sync_file(&f)?;
    }
    fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
    durability::os::durable::sync_file(&File::open(dir)?)?;
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let payload = {
            let state = self.inner.state.lock();
            SnapshotPayload::from_data(&state)
        };
        let data = serde_json::to_vec(&payload)
            .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?;
        let idx = self.inner.snapshot_idx.fetch_add(1, Ordering::Relaxed) + 1;
        let snapshot_id = match &payload.last_applied {
            Some(last) => format!("{}-{}-{}", last.leader_id, last.index, idx),
            None => format!("--{idx}"),
        };
        let meta = SnapshotMeta {
            last_log_id: payload.last_applied,
            last_membership: payload.last_membership,
            snapshot_id,
        };
        self.set_current(StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })
        .map_err(|e| snapshot_write_error(&meta, &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, Node>), StorageError> {
        let state = self.inner.state.lock();
        Ok((state.last_applied, state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<TxnResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.inner.state.lock();
        Ok(entries
            .into_iter()
            .map(|entry| Self::apply_entry(&mut state, entry))
            .collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let payload: SnapshotPayload = serde_json::from_slice(&data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        let mut new_state = payload.into_data();
        new_state.last_applied = meta.last_log_id;
        new_state.last_membership = meta.last_membership.clone();
        // Save the snapshot before the state changes: once this returns, a
        // restart must find it.
        self.set_current(StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .map_err(|e| snapshot_write_error(meta, &e))?;
        *self.inner.state.lock() = new_state;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.inner.snapshot.lock().as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}
