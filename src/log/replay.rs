//! Replay from a position, and the last checkpoint, for [`Wal`] and
//! [`WalReader`] (DESIGN.md §9): the builder ([`Replayer`]) and the
//! assembly live in `read/replay.rs`; here each log hands it its view.

use crate::error::Result;
use crate::log::reader::WalReader;
use crate::log::wal::Wal;
use crate::read::replay::{IndexQuery, Indexed, Replayer};
use crate::read::snapshot::{Checkpoint, Snapshot};

impl Indexed for Wal {
    /// The published log and, under the writer lock, the run index as of
    /// it: no append, truncation or retention comes between the two.
    fn indexed_view(&self, query: Option<IndexQuery<'_>>) -> Snapshot {
        let Some(query) = query else {
            return self.shared.snapshot();
        };
        let w = self.shared.writer.lock();
        let snap = self.shared.snapshot();
        query(&snap, &w.index);
        drop(w);
        snap
    }
}

impl Wal {
    /// A replay of the log, to set up and run: from a position
    /// ([`Replayer::from`], [`Replayer::from_checkpoint`]), of one run
    /// ([`Replayer::run`]), with a callback that may fail or stop
    /// ([`Replayer::try_for_each`]). It sees the log as published when it
    /// runs. A replay of one run reads only that run's stretches; one from
    /// a position reads, before it, only what the transactions open there
    /// need (DESIGN.md §9).
    pub fn replayer(&self) -> Replayer<'_> {
        Replayer::indexed(self)
    }

    /// The last Checkpoint in the log, if any: see
    /// [`Snapshot::last_checkpoint`]. Reads the log backwards from its end
    /// to the segment holding that checkpoint, not the whole log.
    ///
    /// Rebuilding from the last checkpoint: the caller saves its state
    /// (under a snapshot id) when it appends a checkpoint, and later loads
    /// that state and replays from the checkpoint. A transaction open when
    /// the checkpoint was taken is not in the saved state, and the replay
    /// delivers it whole.
    ///
    /// ```
    /// use std::collections::{BTreeMap, HashMap};
    /// use durability::{BorrowedEntry, Config, Op, RunId, Txn, Wal};
    /// use uuid::Uuid;
    ///
    /// type State = BTreeMap<Vec<u8>, Vec<u8>>;
    /// fn apply(state: &mut State, txn: &Txn<'_, '_>) {
    ///     for op in txn.ops {
    ///         let key = op.entry.key().unwrap_or_default().to_vec();
    ///         match op.entry.value() {
    ///             Some(v) => state.insert(key, v.to_vec()),
    ///             None => state.remove(&key),
    ///         };
    ///     }
    /// }
    ///
    /// # fn main() -> durability::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let wal = Wal::open(dir.path(), Config::default().segment_size(1 << 20))?;
    /// let run = RunId::new();
    /// let mut saved: HashMap<Uuid, State> = HashMap::new();
    ///
    /// wal.append_txn(run, 1, &[Op::Write { key: b"a", value: b"1", version: 1 }])?;
    /// // Transaction 2 is open while the checkpoint is taken.
    /// wal.append_entry(BorrowedEntry::BeginTxn { txn_id: 2, run_id: run, timestamp: 0 })?;
    /// wal.append_entry(BorrowedEntry::Write { run_id: run, key: b"b", value: b"2", version: 2 })?;
    ///
    /// // Checkpoint: save the state of what committed so far, then log it.
    /// let mut state = State::new();
    /// wal.replayer().for_each(|txn| apply(&mut state, txn))?;
    /// let id = Uuid::new_v4();
    /// saved.insert(id, state);
    /// wal.checkpoint(id, 1, &[run])?;
    ///
    /// wal.append_entry(BorrowedEntry::CommitTxn { txn_id: 2, run_id: run })?;
    /// wal.append_txn(run, 3, &[Op::Write { key: b"c", value: b"3", version: 3 }])?;
    ///
    /// // Rebuild: the saved state, then what committed from the checkpoint on.
    /// let cp = wal.last_checkpoint()?.expect("a checkpoint");
    /// let mut state = saved[&cp.snapshot_id].clone();
    /// let stats = wal.replayer().from_checkpoint(&cp).for_each(|txn| apply(&mut state, txn))?;
    /// assert_eq!(stats.committed, 2); // transactions 2 (begun before the checkpoint) and 3
    ///
    /// let mut whole = State::new();
    /// wal.replayer().for_each(|txn| apply(&mut whole, txn))?;
    /// assert_eq!(state, whole);
    /// # Ok(())
    /// # }
    /// ```
    pub fn last_checkpoint(&self) -> Result<Option<Checkpoint>> {
        self.snapshot().last_checkpoint()
    }
}

impl WalReader {
    /// A replay of the log as of opening, to set up and run: see
    /// [`Wal::replayer`]. The reader's run index is not reachable from
    /// here, so a replay from a position reads every entry from the last
    /// segment boundary before it where no transaction is open (usually
    /// less than a segment), and one of a single run reads the whole log
    /// from where it starts; [`WalReader::replay_run`] reads only the run's
    /// stretches.
    pub fn replayer(&self) -> Replayer<'_> {
        self.snapshot().replayer()
    }

    /// The last Checkpoint in the log as of opening, if any: see
    /// [`Snapshot::last_checkpoint`].
    pub fn last_checkpoint(&self) -> Result<Option<Checkpoint>> {
        self.snapshot().last_checkpoint()
    }
}
