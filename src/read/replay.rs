//! Replay: the committed transactions of a snapshot, all of them or one
//! run's, assembled from its entries without allocating per entry.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::format::entry::{EntryKind, RunId};
use crate::format::Lsn;
use crate::read::runs::RunMap;
use crate::read::snapshot::{LogEntry, Snapshot};

impl Snapshot {
    /// Calls `f` with every committed transaction in commit order; see
    /// [`Txn`] for what counts as one.
    ///
    /// The replay starts at [`Snapshot::start_lsn`] (the returned stats say
    /// where, and whether entries before it were purged). A transaction
    /// whose BeginTxn lies below the purge mark is not delivered: its
    /// entries after the mark are skipped (counted in
    /// [`ReplayStats::begun_before_start`]).
    pub fn replay<'s>(&'s self, mut f: impl FnMut(&Txn<'_, 's>)) -> Result<ReplayStats> {
        let mut asm = Assembler::new(self);
        for &(run, txn_id) in &self.purge.cut {
            asm.cut(run, txn_id);
        }
        for e in self.iter() {
            asm.feed(e?, &mut f);
        }
        Ok(asm.finish())
    }

    /// Replays only the entries of `run`, reading only its stretches.
    pub(crate) fn replay_stretches<'s>(
        &'s self,
        run: RunId,
        stretches: &[Lsn],
        mut f: impl FnMut(&Txn<'_, 's>),
    ) -> Result<ReplayStats> {
        let mut asm = Assembler::new(self);
        if let Some(txn_id) = self.purge.cut_txn(&run) {
            asm.cut(run, txn_id);
        }
        for &start in stretches {
            if start < self.start || start >= self.end {
                continue;
            }
            for e in self.iter_from(start)? {
                let e = e?;
                if e.entry.run_id_ref() != Some(&run) {
                    break;
                }
                asm.feed(e, &mut f);
            }
        }
        Ok(asm.finish())
    }

    /// The final state of every key `run` touched, from its committed
    /// transactions: `Some(value)`, or `None` if its last change deleted it.
    pub(crate) fn final_state(
        &self,
        run: RunId,
        stretches: &[Lsn],
    ) -> Result<BTreeMap<Vec<u8>, Option<Vec<u8>>>> {
        let mut state: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        self.replay_stretches(run, stretches, |txn| {
            for op in txn.ops {
                if let Some(key) = op.entry.key() {
                    state.insert(key, op.entry.value());
                }
            }
        })?;
        Ok(state
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect())
    }
}

/// A committed unit delivered by replay.
///
/// A transaction is a BeginTxn, the Writes and Deletes of the same run that
/// follow it, and the CommitTxn with the same txn id. A Write or Delete of a
/// run with no open transaction is delivered as its own unit, with
/// `txn_id: None`. Aborted transactions, and transactions that never
/// committed, are not delivered.
#[derive(Debug, Clone, Copy)]
pub struct Txn<'t, 's> {
    /// The run.
    pub run_id: RunId,
    /// The transaction id; `None` for a standalone write or delete.
    pub txn_id: Option<u64>,
    /// The BeginTxn's timestamp (µs since the epoch); `None` if standalone.
    pub timestamp: Option<u64>,
    /// LSN of the BeginTxn (or of the standalone entry).
    pub begin_lsn: Lsn,
    /// LSN of the CommitTxn (or of the standalone entry).
    pub commit_lsn: Lsn,
    /// The writes and deletes, in order.
    pub ops: &'t [LogEntry<'s>],
}

/// Counts from one replay, and where it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// The LSN the replay started at: the log's start
    /// ([`Snapshot::start_lsn`]).
    pub start_lsn: Lsn,
    /// Entries before `start_lsn` were deleted ([`Wal::purge_before`],
    /// or retention): this history does not begin with the log's first
    /// entry, and whatever those entries held (a snapshot the caller keeps,
    /// say) is not in it.
    ///
    /// [`Wal::purge_before`]: crate::Wal::purge_before
    pub purged: bool,
    /// Transactions begun before `start_lsn` (their BeginTxn purged) whose
    /// later entries were skipped: never delivered, neither whole nor in
    /// part.
    pub begun_before_start: u64,
    /// Entries read.
    pub entries: u64,
    /// Transactions delivered.
    pub committed: u64,
    /// Standalone writes/deletes delivered (not counted in `committed`).
    pub standalone: u64,
    /// Transactions dropped because they aborted.
    pub aborted: u64,
    /// Transactions dropped because they never ended (or a new BeginTxn of
    /// the same run replaced them).
    pub incomplete: u64,
    /// Checkpoints seen.
    pub checkpoints: u64,
}

struct Open<'a> {
    /// Begun below the purge mark: never delivered (DESIGN.md §9).
    cut: bool,
    txn_id: u64,
    timestamp: u64,
    begin: Lsn,
    ops: Vec<LogEntry<'a>>,
}

/// Turns entries into committed transactions. Reuses its buffers, so a
/// replay allocates only while transactions grow past sizes seen before.
/// Open transactions are found by run in a hash map: many runs left open by
/// crashes cost nothing per entry.
struct Assembler<'a> {
    open: RunMap<Open<'a>>,
    pool: Vec<Vec<LogEntry<'a>>>,
    stats: ReplayStats,
}

impl<'a> Assembler<'a> {
    /// An assembler for a replay of `snap`, from its start.
    fn new(snap: &Snapshot) -> Self {
        Assembler {
            open: RunMap::default(),
            pool: Vec::new(),
            stats: ReplayStats {
                start_lsn: snap.start,
                purged: snap.start > 0,
                ..ReplayStats::default()
            },
        }
    }

    /// Transaction `txn_id` of `run` is open at the start, its BeginTxn
    /// purged: its entries are skipped until it ends or is replaced.
    fn cut(&mut self, run: RunId, txn_id: u64) {
        self.open.insert(
            run,
            Open {
                cut: true,
                txn_id,
                timestamp: 0,
                begin: self.stats.start_lsn,
                ops: Vec::new(),
            },
        );
    }

    /// Counts a transaction that ended, or was replaced, unfinished.
    fn dropped(&mut self, o: Open<'a>) {
        if o.cut {
            self.stats.begun_before_start += 1;
        } else {
            self.stats.incomplete += 1;
        }
        self.recycle(o);
    }

    fn recycle(&mut self, o: Open<'a>) {
        let mut ops = o.ops;
        ops.clear();
        self.pool.push(ops);
    }

    #[inline]
    fn feed(&mut self, e: LogEntry<'a>, f: &mut impl FnMut(&Txn<'_, 'a>)) {
        self.stats.entries += 1;
        let entry = e.entry;
        let Some(&run) = entry.run_id_ref() else {
            // A checkpoint, a truncation (whose effect the iterator already
            // applied) or a Raft entry's identity: no run's data.
            if entry.kind() == EntryKind::Checkpoint {
                self.stats.checkpoints += 1;
            }
            return;
        };
        match entry.kind() {
            EntryKind::Write | EntryKind::Delete => {
                if let Some(o) = self.open.get_mut(&run) {
                    if !o.cut {
                        o.ops.push(e);
                    }
                } else {
                    self.stats.standalone += 1;
                    f(&Txn {
                        run_id: run,
                        txn_id: None,
                        timestamp: None,
                        begin_lsn: e.lsn,
                        commit_lsn: e.lsn,
                        ops: std::slice::from_ref(&e),
                    });
                }
            }
            EntryKind::BeginTxn => {
                let ops = self.pool.pop().unwrap_or_default();
                let new = Open {
                    cut: false,
                    txn_id: entry.txn_id().unwrap_or(0),
                    timestamp: entry.timestamp().unwrap_or(0),
                    begin: e.lsn,
                    ops,
                };
                if let Some(old) = self.open.insert(run, new) {
                    self.dropped(old);
                }
            }
            EntryKind::CommitTxn | EntryKind::AbortTxn => {
                let matches = self
                    .open
                    .get(&run)
                    .is_some_and(|o| Some(o.txn_id) == entry.txn_id());
                if !matches {
                    return;
                }
                let Some(o) = self.open.remove(&run) else {
                    return;
                };
                if o.cut {
                    self.stats.begun_before_start += 1;
                } else if entry.kind() == EntryKind::CommitTxn {
                    self.stats.committed += 1;
                    f(&Txn {
                        run_id: run,
                        txn_id: Some(o.txn_id),
                        timestamp: Some(o.timestamp),
                        begin_lsn: o.begin,
                        commit_lsn: e.lsn,
                        ops: &o.ops,
                    });
                } else {
                    self.stats.aborted += 1;
                }
                self.recycle(o);
            }
            EntryKind::Checkpoint | EntryKind::Truncate | EntryKind::Raft => {}
        }
    }

    fn finish(mut self) -> ReplayStats {
        for o in self.open.values() {
            if o.cut {
                self.stats.begun_before_start += 1;
            } else {
                self.stats.incomplete += 1;
            }
        }
        self.stats
    }
}
