//! [`LogStore`]: the durability log as openraft's log storage
//! (`RaftLogStorage` + `RaftLogReader`, openraft 0.9 `storage-v2`).
//!
//! # On disk (DESIGN.md §10)
//!
//! Each Raft entry is one unit appended with [`Wal::submit_batch`]: a
//! [`Raft`](durability::WalEntry::Raft) frame holding the entry's index,
//! term and `data` = JSON `[leader_id, payload]`, where payload is
//! `"Blank"`, `{"Membership": ..}`, `{"App": ..}` (opaque application data)
//! or `"RunTxn"`: then the frame is followed by the transaction's BeginTxn,
//! its Writes and Deletes (version = the Raft index) and its CommitTxn, so
//! the log stays a log of runs (`replay_run`, `diff_runs` and
//! `walctl replay --run` read it). A batch of entries is one unit, published
//! at once and acknowledged (its [`LogFlushed`] callback) only after a
//! completed sync covers it.
//!
//! `truncate` appends a [`Truncate`](durability::WalEntry::Truncate) record
//! and syncs: published bytes are never rewritten, and every reader, reopen
//! and crash image that holds a later entry holds the record. `purge`
//! records the purged log id in the log's metadata file (durable first),
//! then deletes whole segments below the first kept entry. The vote lives
//! in the same metadata file, written durably before `save_vote` returns.
//! The committed log id is kept best-effort in `raft-committed.json`
//! (written without a sync): at open it is believed only if the log holds
//! an entry with exactly that log id.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use durability::format::frame::frame_len;
use durability::{BorrowedEntry, Config, EntryKind, Lsn, Op, Snapshot, SyncMode, Wal};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, LogState, Membership,
    OptionalSend, RaftLogReader, RaftTypeConfig, StorageError, StorageIOError, Vote,
};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::types::{RunTxn, TxnOp};

/// How a type configuration's application data is stored in the log.
///
/// The defaults store it as opaque JSON inside the Raft frame
/// (`impl LogPayload for MyData {}`). Data that is an agent-run
/// transaction says so, and is written as that run's transaction frames.
pub trait LogPayload: Sized {
    /// The run transaction this data is, if it is one.
    fn run_txn(&self) -> Option<&RunTxn> {
        None
    }

    /// The data a stored run transaction was written from.
    fn from_run_txn(_txn: RunTxn) -> Option<Self> {
        None
    }
}

impl LogPayload for RunTxn {
    fn run_txn(&self) -> Option<&RunTxn> {
        Some(self)
    }

    fn from_run_txn(txn: RunTxn) -> Option<Self> {
        Some(txn)
    }
}

/// Why a [`LogStore`] could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The log's mode acknowledges before data is durable.
    #[error(
        "a Raft log must not acknowledge entries before they are durable: open it in \
         SyncMode::Strict or SyncMode::Batched, not {0:?}"
    )]
    AsyncMode(SyncMode),
    /// The log itself failed.
    #[error(transparent)]
    Wal(#[from] durability::Error),
    /// The Raft state stored in the log does not make sense.
    #[error("{dir}: {detail}")]
    Corrupt {
        /// The log directory.
        dir: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// The durable state kept in the log's metadata file.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct MetaState<C: RaftTypeConfig> {
    vote: Option<Vote<C::NodeId>>,
    last_purged: Option<LogId<C::NodeId>>,
}

impl<C: RaftTypeConfig> Clone for MetaState<C> {
    fn clone(&self) -> Self {
        MetaState {
            vote: self.vote.clone(),
            last_purged: self.last_purged.clone(),
        }
    }
}

/// A Raft entry's payload as stored in its frame's `data`.
#[derive(Serialize)]
#[serde(bound = "")]
enum PayloadRef<'a, C: RaftTypeConfig> {
    Blank,
    Membership(&'a Membership<C::NodeId, C::Node>),
    App(&'a C::D),
    RunTxn,
}

#[derive(Deserialize)]
#[serde(bound = "")]
enum PayloadOwned<C: RaftTypeConfig> {
    Blank,
    Membership(Membership<C::NodeId, C::Node>),
    App(C::D),
    RunTxn,
}

/// The log position of every present entry, by index. openraft appends
/// in index order; indices are contiguous in a running cluster, though a
/// caller (openraft's test suite does) may leave gaps.
struct Index<C: RaftTypeConfig> {
    entries: BTreeMap<u64, (Lsn, LogId<C::NodeId>)>,
}

impl<C: RaftTypeConfig> Index<C> {
    fn first(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    fn last(&self) -> Option<&LogId<C::NodeId>> {
        self.entries.values().next_back().map(|(_, id)| id)
    }

    fn get(&self, index: u64) -> Option<&(Lsn, LogId<C::NodeId>)> {
        self.entries.get(&index)
    }
}

struct State<C: RaftTypeConfig> {
    index: Index<C>,
    meta: MetaState<C>,
    committed: Option<LogId<C::NodeId>>,
}

struct Shared<C: RaftTypeConfig> {
    wal: Wal,
    state: RwLock<State<C>>,
}

/// The durability log as openraft's log storage. See the module docs.
///
/// Clones share the log; [`RaftLogStorage::get_log_reader`] hands out such
/// a clone, read concurrently by replication tasks.
pub struct LogStore<C: RaftTypeConfig> {
    shared: Arc<Shared<C>>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: RaftTypeConfig> Debug for LogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.state.read();
        f.debug_struct("LogStore")
            .field("dir", &self.shared.wal.dir())
            .field("first", &st.index.first())
            .field("last", &st.index.last())
            .field("last_purged", &st.meta.last_purged)
            .field("vote", &st.meta.vote)
            .finish()
    }
}

const COMMITTED_FILE: &str = "raft-committed.json";

fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

fn write_err<NID: openraft::NodeId>(e: impl std::error::Error + 'static) -> StorageError<NID> {
    StorageIOError::write_logs(io_err(e)).into()
}

fn read_err<NID: openraft::NodeId>(e: impl std::error::Error + 'static) -> StorageError<NID> {
    StorageIOError::read_logs(io_err(e)).into()
}

fn corrupt(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

/// An entry read back from the log, and where its unit ends.
fn decode_entry<C>(snap: &Snapshot, lsn: Lsn) -> Result<Entry<C>, io::Error>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: LogPayload,
{
    let mut it = snap.iter_from(lsn).map_err(io::Error::other)?;
    let head = it
        .next()
        .ok_or_else(|| corrupt(format!("no entry at LSN {lsn}")))?
        .map_err(io::Error::other)?;
    let Some((index, _term, data)) = head.entry.raft() else {
        return Err(corrupt(format!(
            "LSN {lsn} holds a {}, not a Raft entry",
            head.entry.kind()
        )));
    };
    let (leader_id, payload): (openraft::CommittedLeaderId<C::NodeId>, PayloadOwned<C>) =
        serde_json::from_slice(data)
            .map_err(|e| corrupt(format!("Raft entry {index} at LSN {lsn}: {e}")))?;
    let payload = match payload {
        PayloadOwned::Blank => EntryPayload::Blank,
        PayloadOwned::Membership(m) => EntryPayload::Membership(m),
        PayloadOwned::App(d) => EntryPayload::Normal(d),
        PayloadOwned::RunTxn => {
            let txn = read_txn(&mut it, index, lsn)?;
            let d = C::D::from_run_txn(txn).ok_or_else(|| {
                corrupt(format!(
                    "Raft entry {index} at LSN {lsn} is a run transaction, which this type \
                     configuration's data cannot hold"
                ))
            })?;
            EntryPayload::Normal(d)
        }
    };
    Ok(Entry {
        log_id: LogId { leader_id, index },
        payload,
    })
}

/// The run transaction after a Raft frame: BeginTxn, ops, CommitTxn.
fn read_txn(it: &mut durability::Iter<'_>, index: u64, lsn: Lsn) -> Result<RunTxn, io::Error> {
    let bad = |what: &str| corrupt(format!("Raft entry {index} at LSN {lsn}: {what}"));
    let eof = || {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("Raft entry {index} at LSN {lsn}: the log ends inside its transaction"),
        )
    };
    let begin = it.next().ok_or_else(eof)?.map_err(io::Error::other)?;
    let (Some(run_id), Some(txn_id), EntryKind::BeginTxn) = (
        begin.entry.run_id(),
        begin.entry.txn_id(),
        begin.entry.kind(),
    ) else {
        return Err(bad("no BeginTxn after it"));
    };
    let timestamp = begin.entry.timestamp().unwrap_or(0);
    let mut ops = Vec::new();
    for e in it {
        let e = e.map_err(io::Error::other)?;
        match e.entry.kind() {
            EntryKind::Write => ops.push(TxnOp::Put {
                key: e.entry.key().unwrap_or_default().to_vec(),
                value: e.entry.value().unwrap_or_default().to_vec(),
            }),
            EntryKind::Delete => ops.push(TxnOp::Delete {
                key: e.entry.key().unwrap_or_default().to_vec(),
            }),
            EntryKind::CommitTxn if e.entry.txn_id() == Some(txn_id) => {
                return Ok(RunTxn {
                    run_id,
                    txn_id,
                    ops,
                    timestamp,
                })
            }
            k => return Err(bad(&format!("a {k} inside its transaction"))),
        }
    }
    Err(eof())
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: LogPayload,
{
    /// Opens (or creates) the Raft log in `dir`. `config`'s mode must make
    /// entries durable before they are acknowledged: `Strict` (each append
    /// is synced at once, appends in flight share a sync) or `Batched`
    /// (acknowledged at the mode's syncs); `Async` is refused.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Self, OpenError> {
        let dir = dir.as_ref().to_path_buf();
        if let mode @ SyncMode::Async { .. } = config.sync_mode {
            return Err(OpenError::AsyncMode(mode));
        }
        let wal = Wal::open(&dir, config)?;
        let bad = |detail: String| OpenError::Corrupt {
            dir: dir.clone(),
            detail,
        };
        let meta: MetaState<C> = match wal.meta()? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| bad(format!("the Raft metadata does not parse: {e}")))?,
            None => MetaState {
                vote: None,
                last_purged: None,
            },
        };
        let purged = meta.last_purged.as_ref().map(|l| l.index);
        let mut index = Index::<C> {
            entries: BTreeMap::new(),
        };
        // A unit torn by a crash (its Raft frame kept, its transaction cut
        // short) was never acknowledged: it is deleted below.
        let mut torn: Option<Lsn> = None;
        {
            let snap = wal.snapshot();
            for e in snap.iter() {
                let e = e.map_err(OpenError::Wal)?;
                let Some((i, _, _)) = e.entry.raft() else {
                    continue;
                };
                let entry = match decode_entry::<C>(&snap, e.lsn) {
                    Ok(entry) => entry,
                    // The log ends inside this unit: a torn tail.
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                        torn = Some(e.lsn);
                        break;
                    }
                    Err(err) => return Err(bad(err.to_string())),
                };
                if purged.is_some_and(|p| i <= p) {
                    continue;
                }
                if let Some(last) = index.last().filter(|l| l.index >= i) {
                    return Err(bad(format!(
                        "Raft entry {i} at LSN {} after entry {}: entries go backwards \
                         without a truncation",
                        e.lsn, last.index
                    )));
                }
                index.entries.insert(i, (e.lsn, entry.log_id));
            }
        }
        if let Some(lsn) = torn {
            wal.truncate_from(lsn)?;
            wal.sync()?;
        }
        let committed = read_committed_file::<C>(&dir).filter(|c| {
            meta.last_purged.as_ref().is_some_and(|p| c <= p)
                || index.get(c.index).is_some_and(|(_, id)| id == c)
        });
        Ok(LogStore {
            shared: Arc::new(Shared {
                wal,
                state: RwLock::new(State {
                    index,
                    meta,
                    committed,
                }),
            }),
        })
    }

    /// The index openraft last told this store is committed, if any.
    pub fn committed(&self) -> Option<u64> {
        self.shared.state.read().committed.as_ref().map(|c| c.index)
    }

    /// The log underneath (to replay its runs, take snapshots, read stats).
    pub fn wal(&self) -> &Wal {
        &self.shared.wal
    }

    /// The last purged log id and the last log id.
    pub fn log_state(&self) -> LogState<C> {
        let st = self.shared.state.read();
        LogState {
            last_purged_log_id: st.meta.last_purged.clone(),
            last_log_id: st
                .index
                .last()
                .cloned()
                .or_else(|| st.meta.last_purged.clone()),
        }
    }

    /// The saved vote.
    pub fn vote(&self) -> Option<Vote<C::NodeId>> {
        self.shared.state.read().meta.vote.clone()
    }

    /// The entries with index in `range` that the log holds, in order.
    pub fn entries<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry<C>>, io::Error> {
        let st = self.shared.state.read();
        let Some(first) = st.index.first() else {
            return Ok(Vec::new());
        };
        let last = st.index.last().map_or(first, |l| l.index);
        let lo = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => first,
        }
        .max(first);
        let hi = match range.end_bound() {
            Bound::Included(&e) => e,
            Bound::Excluded(&e) => match e.checked_sub(1) {
                Some(e) => e,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => last,
        }
        .min(last);
        if lo > hi {
            return Ok(Vec::new());
        }
        // Under the read lock: truncate and purge change the index and the
        // log together, so every position here is live in this snapshot.
        let snap = self.shared.wal.snapshot();
        st.index
            .entries
            .range(lo..=hi)
            .map(|(_, &(lsn, _))| decode_entry::<C>(&snap, lsn))
            .collect()
    }

    /// Appends `entries` (one batch: readable when this returns) and calls
    /// `on_durable` once a completed sync covers all of them, or with the
    /// error that means it never will. What [`RaftLogStorage::append`]
    /// does with openraft's callback; for callers that drive the log
    /// themselves.
    pub fn append_entries<I>(
        &self,
        entries: I,
        on_durable: impl FnOnce(Result<(), io::Error>) + Send + 'static,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry<C>>,
    {
        let entries: Vec<Entry<C>> = entries.into_iter().collect();
        let datas = entries
            .iter()
            .map(payload_json)
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::other)?;
        let mut units = Vec::with_capacity(entries.len() * 4);
        let mut starts = Vec::with_capacity(entries.len());
        for (e, d) in entries.iter().zip(&datas) {
            starts.push(units.len());
            frames(e, d, &mut units);
        }
        let mut st = self.shared.state.write();
        // Entries only move forward; a conflicting suffix is truncated
        // first (openraft always does).
        let mut prev = st.index.last().map(|l| l.index);
        for e in &entries {
            if let Some(p) = prev.filter(|&p| p >= e.log_id.index) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "append of entry {} after entry {p}: truncate first",
                        e.log_id.index
                    ),
                ));
            }
            prev = Some(e.log_id.index);
        }
        // A batch is one all-or-nothing unit in one segment: entries go in
        // batches that each fit a segment, cut between entries (a crash
        // then leaves a prefix of whole entries, which Raft allows).
        let room =
            self.shared.wal.config().segment_size - durability::format::header::DATA_START as u64;
        let mut chunk_start = 0;
        let mut chunk_len = 0u64;
        let mut last = None;
        for k in 0..=entries.len() {
            let unit_end = starts.get(k + 1).copied().unwrap_or(units.len());
            let unit_len: u64 = match starts.get(k) {
                Some(&s) => units[s..unit_end].iter().map(|u| frame_len(u) as u64).sum(),
                None => 0,
            };
            let flush = k == entries.len() || (chunk_len > 0 && chunk_len + unit_len > room);
            if flush && chunk_start < k {
                let (from, to) = (
                    starts[chunk_start],
                    starts.get(k).copied().unwrap_or(units.len()),
                );
                let pos = self
                    .shared
                    .wal
                    .submit_batch(&units[from..to])
                    .map_err(io::Error::other)?;
                let mut lsn = pos.first;
                let mut next = chunk_start;
                for (i, u) in units[from..to].iter().enumerate() {
                    if starts.get(next) == Some(&(from + i)) {
                        let id = entries[next].log_id.clone();
                        st.index.entries.insert(id.index, (lsn, id));
                        next += 1;
                    }
                    lsn += frame_len(u) as u64;
                }
                debug_assert_eq!(lsn, pos.end);
                last = Some(pos);
                chunk_start = k;
                chunk_len = 0;
            }
            chunk_len += unit_len;
        }
        drop(st);
        let Some(last) = last else {
            on_durable(Ok(()));
            return Ok(());
        };
        self.shared.wal.on_durable(last, move |r| {
            on_durable(r.map_err(io::Error::other));
        });
        Ok(())
    }

    fn write_meta(&self, meta: &MetaState<C>) -> Result<(), durability::Error> {
        let bytes = serde_json::to_vec(meta).expect("Raft metadata serialises");
        self.shared.wal.set_meta(&bytes)
    }
}

fn read_committed_file<C: RaftTypeConfig>(dir: &Path) -> Option<LogId<C::NodeId>> {
    let bytes = std::fs::read(dir.join(COMMITTED_FILE)).ok()?;
    serde_json::from_slice::<Option<LogId<C::NodeId>>>(&bytes).ok()?
}

/// The frames of one Raft entry, borrowing from `entry` and `data`.
fn frames<'a, C>(entry: &'a Entry<C>, data: &'a [u8], out: &mut Vec<BorrowedEntry<'a>>)
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: LogPayload,
{
    let index = entry.log_id.index;
    out.push(BorrowedEntry::Raft {
        index,
        term: entry.log_id.leader_id.term,
        data,
    });
    if let EntryPayload::Normal(d) = &entry.payload {
        if let Some(txn) = d.run_txn() {
            out.push(BorrowedEntry::BeginTxn {
                txn_id: txn.txn_id,
                run_id: txn.run_id,
                timestamp: txn.timestamp,
            });
            for op in &txn.ops {
                out.push(match op {
                    TxnOp::Put { key, value } => Op::Write {
                        key,
                        value,
                        version: index,
                    }
                    .entry(txn.run_id),
                    TxnOp::Delete { key } => Op::Delete {
                        key,
                        version: index,
                    }
                    .entry(txn.run_id),
                });
            }
            out.push(BorrowedEntry::CommitTxn {
                txn_id: txn.txn_id,
                run_id: txn.run_id,
            });
        }
    }
}

fn payload_json<C>(entry: &Entry<C>) -> Result<Vec<u8>, serde_json::Error>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: LogPayload,
{
    let payload = match &entry.payload {
        EntryPayload::Blank => PayloadRef::<C>::Blank,
        EntryPayload::Membership(m) => PayloadRef::Membership(m),
        EntryPayload::Normal(d) if d.run_txn().is_some() => PayloadRef::RunTxn,
        EntryPayload::Normal(d) => PayloadRef::App(d),
    };
    serde_json::to_vec(&(&entry.log_id.leader_id, payload))
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: LogPayload,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        self.entries(range).map_err(read_err)
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: LogPayload,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        Ok(self.log_state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let mut st = self.shared.state.write();
        let mut meta = st.meta.clone();
        meta.vote = Some(vote.clone());
        self.write_meta(&meta)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(io_err(e))))?;
        st.meta = meta;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.vote())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        // Best effort, not synced: at open it is checked against the log.
        let dir = self.shared.wal.dir().to_path_buf();
        let tmp = dir.join("raft-committed.json.new");
        let bytes = serde_json::to_vec(&committed).map_err(write_err)?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, dir.join(COMMITTED_FILE)))
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.shared.state.write().committed = committed;
        Ok(())
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.shared.state.read().committed.clone())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.append_entries(entries, move |r| callback.log_io_completed(r))
            .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let mut st = self.shared.state.write();
        let Some((&i, &(lsn, _))) = st.index.entries.range(log_id.index..).next() else {
            return Ok(());
        };
        let wal = &self.shared.wal;
        wal.truncate_from(lsn).map_err(write_err)?;
        wal.sync().map_err(write_err)?;
        st.index.entries.split_off(&i);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let mut st = self.shared.state.write();
        // Purging never moves back (by index: a later term with a lower
        // index is still below what is purged).
        if st
            .meta
            .last_purged
            .as_ref()
            .is_some_and(|p| p.index >= log_id.index)
        {
            return Ok(());
        }
        // The marker is durable before anything is deleted: a crash in
        // between leaves entries that a reopen skips.
        let mut meta = st.meta.clone();
        meta.last_purged = Some(log_id.clone());
        self.write_meta(&meta).map_err(write_err)?;
        st.meta = meta;
        let kept = st.index.entries.split_off(&(log_id.index + 1));
        st.index.entries = kept;
        let wal = &self.shared.wal;
        let below = st
            .index
            .entries
            .values()
            .next()
            .map_or(wal.end_lsn(), |&(l, _)| l);
        wal.purge_before(below).map_err(write_err)?;
        Ok(())
    }
}
