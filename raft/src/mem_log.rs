//! [`MemLogStore`]: an in-memory [`RaftLogStorage`].
//!
//! It keeps everything in a `BTreeMap` and reports every append flushed at
//! once, so it is the upper bound (no durability) the benchmarks compare the
//! durable log against, and the reference implementation the openraft test
//! suite checks. A restart loses everything: a node restarted on a new
//! `MemLogStore` comes back as a blank node.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    LogId, LogState, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig, StorageError, Vote,
};
use parking_lot::Mutex;

/// An in-memory Raft log: entries, vote, committed log id and last purged log id.
///
/// Clones share the same data; the log reader openraft asks for is such a clone.
pub struct MemLogStore<C: RaftTypeConfig> {
    inner: Arc<Mutex<Inner<C>>>,
}

struct Inner<C: RaftTypeConfig> {
    last_purged_log_id: Option<LogId<C::NodeId>>,
    log: BTreeMap<u64, C::Entry>,
    committed: Option<LogId<C::NodeId>>,
    vote: Option<Vote<C::NodeId>>,
}

impl<C: RaftTypeConfig> Clone for MemLogStore<C> {
    fn clone(&self) -> Self {
        MemLogStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: RaftTypeConfig> Default for MemLogStore<C> {
    fn default() -> Self {
        MemLogStore {
            inner: Arc::new(Mutex::new(Inner {
                last_purged_log_id: None,
                log: BTreeMap::new(),
                committed: None,
                vote: None,
            })),
        }
    }
}

impl<C: RaftTypeConfig> Debug for MemLogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("MemLogStore")
            .field("entries", &inner.log.len())
            .field("first", &inner.log.keys().next())
            .field("last", &inner.log.keys().next_back())
            .field("last_purged_log_id", &inner.last_purged_log_id)
            .field("committed", &inner.committed)
            .field("vote", &inner.vote)
            .finish()
    }
}

impl<C: RaftTypeConfig> MemLogStore<C> {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last purged log id and the last log id, as [`RaftLogStorage::get_log_state`] answers.
    pub fn log_state(&self) -> LogState<C> {
        self.inner.lock().log_state()
    }

    /// The last saved vote.
    pub fn vote(&self) -> Option<Vote<C::NodeId>> {
        self.inner.lock().vote.clone()
    }

    /// The last saved committed log id.
    pub fn committed(&self) -> Option<LogId<C::NodeId>> {
        self.inner.lock().committed.clone()
    }

    /// How many entries the log holds.
    pub fn len(&self) -> usize {
        self.inner.lock().log.len()
    }

    /// Whether the log holds no entry.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().log.is_empty()
    }
}

impl<C: RaftTypeConfig> Inner<C> {
    fn log_state(&self) -> LogState<C> {
        let last_entry = self
            .log
            .values()
            .next_back()
            .map(|e| e.get_log_id().clone());
        // The last log id is the last present entry, or the last purged one
        // when there is no entry; never less than the last purged one.
        let last_log_id = std::cmp::max(last_entry, self.last_purged_log_id.clone());
        LogState {
            last_purged_log_id: self.last_purged_log_id.clone(),
            last_log_id,
        }
    }
}

impl<C> RaftLogReader<C> for MemLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let inner = self.inner.lock();
        Ok(inner.log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl<C> RaftLogStorage<C> for MemLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Clone,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        Ok(self.inner.lock().log_state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.inner.lock().vote = Some(vote.clone());
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.inner.lock().vote.clone())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        self.inner.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.inner.lock().committed.clone())
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
        {
            let mut inner = self.inner.lock();
            for entry in entries {
                inner.log.insert(entry.get_log_id().index, entry);
            }
        }
        // Nothing to flush: the entries are as durable as they will ever be.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let mut inner = self.inner.lock();
        // `split_off` keeps [0, index) and returns [index, ..): drop the latter.
        let _removed = inner.log.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let mut inner = self.inner.lock();
        if inner.last_purged_log_id.as_ref() >= Some(&log_id) {
            // Already purged that far.
            return Ok(());
        }
        let kept = match log_id.index.checked_add(1) {
            Some(next) => inner.log.split_off(&next),
            None => BTreeMap::new(),
        };
        inner.log = kept;
        inner.last_purged_log_id = Some(log_id);
        Ok(())
    }
}
