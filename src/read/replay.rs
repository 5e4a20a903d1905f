//! Replay: the committed transactions of a snapshot, all of them or one
//! run's, from the log's start or from a position, assembled from its
//! entries without allocating per entry; and [`Replayer`], the builder that
//! sets one up.
//!
//! **From a position** (DESIGN.md §9, "Replay from a position"): a replay
//! from `from` delivers the transactions whose CommitTxn (or standalone
//! entry) lies at or after `from`, each whole, even one whose BeginTxn and
//! first writes lie before `from`. So it must know the transactions open
//! at `from` without reading the whole prefix. It starts from the last
//! position at or before `from` where they are known (a segment boundary
//! where none is open, or the log's start, where those the purge mark cuts
//! are), and from there either
//! - with a run index (a [`Wal`](crate::Wal)): reads, for each run with an
//!   entry between that position and `from`, its stretches backwards to
//!   its last BeginTxn before `from`, and nothing else
//!   ([`lead_in`](crate::read::runs)); or
//! - without one (a [`Snapshot`] alone, a [`WalReader`](crate::WalReader)):
//!   reads every entry from that position, usually less than a segment.
//!
//! Either way a unit that ends before `from` may be read, but is neither
//! delivered nor counted.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use crate::error::{Error, Result};
use crate::format::entry::{EntryKind, RunId};
use crate::format::Lsn;
use crate::read::runs::{lead_in, RunIndex, RunMap};
use crate::read::snapshot::{Checkpoint, LogEntry, Snapshot};

/// A stretch of one run's entries, `[start, end)`.
type Span = (Lsn, Lsn);

impl Snapshot {
    /// Calls `f` with every committed transaction in commit order; see
    /// [`Txn`] for what counts as one. The same as
    /// `self.replayer().for_each(f)`, except that `f` may keep what it is
    /// given for as long as the snapshot lives.
    ///
    /// The replay starts at [`Snapshot::start_lsn`] (the returned stats say
    /// where, and whether entries before it were purged). A transaction
    /// whose BeginTxn lies below the purge mark is not delivered: its
    /// entries after the mark are skipped (counted in
    /// [`ReplayStats::begun_before_start`]).
    pub fn replay<'s>(&'s self, mut f: impl FnMut(&Txn<'_, 's>)) -> Result<ReplayStats> {
        self.replay_window(0, None, &mut |t| {
            f(t);
            false
        })
    }

    /// A replay of this snapshot, to set up (a position, a run) and run:
    /// see [`Replayer`]. A snapshot has no run index: a replay of one run
    /// reads the whole log from where it starts ([`Wal::replayer`] reads
    /// only the run's stretches).
    ///
    /// [`Wal::replayer`]: crate::Wal::replayer
    pub fn replayer(&self) -> Replayer<'_> {
        Replayer {
            source: Source::Snapshot(self),
            from: 0,
            run: None,
        }
    }

    /// Replays only the entries of `run`, reading only its stretches
    /// (their starts, from the run index).
    pub(crate) fn replay_stretches<'s>(
        &'s self,
        run: RunId,
        stretches: &[Lsn],
        mut f: impl FnMut(&Txn<'_, 's>),
    ) -> Result<ReplayStats> {
        let plan = Plan {
            from: self.start,
            known: self.start,
            lead: Vec::new(),
            main: Some(stretches.iter().map(|&s| (s, Lsn::MAX)).collect()),
        };
        self.replay_planned(&plan, Some(run), &mut |t| {
            f(t);
            false
        })
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

    /// A replay from the caller's position `from` (of `run` only, if set)
    /// without a run index: every entry (of `run`) from the last position
    /// at or before it where the open transactions are known is fed, and
    /// only what ends at or after it is delivered. `f` returns true to
    /// stop.
    fn replay_window<'s>(
        &'s self,
        from: Lsn,
        run: Option<RunId>,
        f: &mut impl FnMut(&Txn<'_, 's>) -> bool,
    ) -> Result<ReplayStats> {
        let from = self.first_entry_at_or_after(from);
        let known = self.known_state_at_or_before(from);
        let mut asm = Assembler::new(self, from);
        if known == self.start {
            asm.seed(self, run.as_ref());
        }
        for e in self.iter_from(known)? {
            let e = e?;
            if run.is_some_and(|r| e.entry.run_id_ref() != Some(&r)) {
                continue;
            }
            if asm.feed(e, f) {
                return Ok(asm.stats);
            }
        }
        Ok(asm.finish())
    }

    /// A replay planned with the run index ([`Plan`]): the lead-in of each
    /// run open at `plan.from`, then every entry from there (or, for one
    /// run, its stretches from there). `f` returns true to stop.
    fn replay_planned<'s>(
        &'s self,
        plan: &Plan,
        run: Option<RunId>,
        f: &mut impl FnMut(&Txn<'_, 's>) -> bool,
    ) -> Result<ReplayStats> {
        let from = self.first_entry_at_or_after(plan.from);
        let mut asm = Assembler::new(self, from);
        let seeded = plan.known == self.start;
        if seeded {
            asm.seed(self, run.as_ref());
        }
        for (r, spans) in &plan.lead {
            let cut = seeded && self.purge.cut_txn(r).is_some();
            for e in lead_in(self, r, spans, plan.known, from, cut)? {
                // Everything here lies before `from`: nothing is delivered.
                if asm.feed(e, f) {
                    return Ok(asm.stats);
                }
            }
        }
        let Some(spans) = &plan.main else {
            for e in self.iter_from(from)? {
                if asm.feed(e?, f) {
                    return Ok(asm.stats);
                }
            }
            return Ok(asm.finish());
        };
        let Some(run) = run else {
            return Ok(asm.finish());
        };
        for &(start, end) in spans {
            let (start, end) = (start.max(from), end.min(self.end));
            if start >= end {
                continue;
            }
            for e in self.iter_from(start)? {
                let e = e?;
                if e.lsn >= end || e.entry.run_id_ref() != Some(&run) {
                    break;
                }
                if asm.feed(e, f) {
                    return Ok(asm.stats);
                }
            }
        }
        Ok(asm.finish())
    }
}

/// A replay of a log's committed transactions, set up step by step: where
/// it starts ([`from`](Replayer::from)), which run
/// ([`run`](Replayer::run)), then run by
/// [`try_for_each`](Replayer::try_for_each) (a callback that may fail or
/// stop) or [`for_each`](Replayer::for_each). Made by
/// [`Wal::replayer`](crate::Wal::replayer),
/// [`WalReader::replayer`](crate::WalReader::replayer) and
/// [`Snapshot::replayer`]. It reads nothing until it runs; a `Wal`'s takes
/// its view of the log then.
///
/// What is delivered: see [`Txn`]. Transactions come in commit order, each
/// whole. From `lsn`, exactly the transactions (and standalone entries) a
/// replay of the whole log delivers whose CommitTxn (or entry) lies at or
/// after `lsn`: one begun before `lsn` and committed after it is delivered
/// with all its writes (a checkpoint taken while it was open does not hold
/// it), and one committed before `lsn` never is.
///
/// ```
/// use std::ops::ControlFlow;
/// use durability::{Config, Op, RunId, Wal};
///
/// #[derive(Debug)]
/// enum AppError {
///     Log(durability::Error),
///     Rejected(u64),
/// }
/// impl From<durability::Error> for AppError {
///     fn from(e: durability::Error) -> Self {
///         AppError::Log(e)
///     }
/// }
///
/// # fn main() -> Result<(), AppError> {
/// let dir = tempfile::tempdir().unwrap();
/// let wal = Wal::open(dir.path(), Config::default().segment_size(1 << 20))?;
/// let run = RunId::new();
/// let mut second = None;
/// for id in 1..=4 {
///     let pos = wal.append_txn(run, id, &[Op::Write { key: b"k", value: b"v", version: id }])?;
///     if id == 2 {
///         second = Some(pos);
///     }
/// }
/// let second = second.expect("appended");
///
/// // From the second transaction on, stopping after the third.
/// let mut seen = Vec::new();
/// let stats = wal.replayer().from(second.begin).run(run).try_for_each(|txn| {
///     seen.push(txn.txn_id);
///     let stop = txn.txn_id == Some(3);
///     Ok::<_, AppError>(if stop { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
/// })?;
/// assert_eq!(seen, [Some(2), Some(3)]);
/// assert_eq!(stats.start_lsn, second.begin);
///
/// // Resume just past the last transaction delivered.
/// let stopped = stats.stopped_at.expect("the callback stopped it");
/// let mut rest = Vec::new();
/// wal.replayer().from(stopped + 1).for_each(|txn| rest.push(txn.txn_id))?;
/// assert_eq!(rest, [Some(4)]);
///
/// // A callback's error comes back as it was returned; nothing more is delivered.
/// let mut calls = 0;
/// let err = wal
///     .replayer()
///     .try_for_each(|txn| {
///         calls += 1;
///         Err(AppError::Rejected(txn.txn_id.unwrap_or(0)))
///     })
///     .unwrap_err();
/// assert!(matches!(err, AppError::Rejected(1)));
/// assert_eq!(calls, 1);
/// # Ok(())
/// # }
/// ```
#[must_use = "a Replayer reads nothing until try_for_each or for_each runs it"]
pub struct Replayer<'a> {
    source: Source<'a>,
    from: Lsn,
    run: Option<RunId>,
}

/// What a [`Replayer`] reads.
enum Source<'a> {
    /// A snapshot alone: no run index.
    Snapshot(&'a Snapshot),
    /// A log with a run index.
    Indexed(&'a (dyn Indexed + Sync)),
}

impl std::fmt::Debug for Replayer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match self.source {
            Source::Snapshot(_) => "snapshot",
            Source::Indexed(_) => "indexed log",
        };
        f.debug_struct("Replayer")
            .field("source", &source)
            .field("from", &self.from)
            .field("run", &self.run)
            .finish()
    }
}

/// A log that keeps a run index (the `Wal`): a replay takes its view from
/// it when it runs.
pub(crate) trait Indexed {
    /// A snapshot of the log; with `query`, which is called with it and the
    /// run index as of that snapshot (under whatever lock keeps the two in
    /// agreement, so it must be quick and read no entry).
    fn indexed_view(&self, query: Option<IndexQuery<'_>>) -> Snapshot;
}

/// What a replay asks of a log's run index, with the snapshot it goes with.
pub(crate) type IndexQuery<'q> = &'q mut dyn FnMut(&Snapshot, &RunIndex);

/// What a replay from a position reads, planned from the run index.
struct Plan {
    /// The caller's position, within the log's range.
    from: Lsn,
    /// The last position at or before `from` where the open transactions
    /// are known ([`Snapshot::known_state_at_or_before`]).
    known: Lsn,
    /// Each run with an entry starting in `[known, from)`: those stretches.
    lead: Vec<(RunId, Vec<Span>)>,
    /// For a replay of one run: its stretches holding an entry at or after
    /// `from`. `None`: every entry from `from` is read.
    main: Option<Vec<Span>>,
}

impl Plan {
    /// The plan for a replay from `from` (of `run` only, if set) of
    /// `snap`, whose run index is `index`. Reads no entry.
    fn new(snap: &Snapshot, index: &RunIndex, from: Lsn, run: Option<RunId>) -> Plan {
        let from = from.max(snap.start).min(snap.end);
        let known = snap.known_state_at_or_before(from);
        // Only live entries starting before `from` matter to the state at
        // `from`, and the first entry a replay from `from` delivers starts
        // at or after it ([`Snapshot::first_entry_at_or_after`]), so this
        // needs no walk of the frames, which would hold the writer back.
        let lead = match &run {
            Some(r) => {
                let s = index.stretches_within(r, known, from);
                if s.is_empty() {
                    Vec::new()
                } else {
                    vec![(*r, s)]
                }
            }
            None => index.all_within(known, from),
        };
        let main = run.map(|r| index.stretches_within(&r, from, Lsn::MAX));
        Plan {
            from,
            known,
            lead,
            main,
        }
    }
}

impl<'a> Replayer<'a> {
    /// A replay of `log`, which has a run index.
    pub(crate) fn indexed(log: &'a (dyn Indexed + Sync)) -> Self {
        Replayer {
            source: Source::Indexed(log),
            from: 0,
            run: None,
        }
    }

    /// Starts at `lsn`: delivers the transactions whose CommitTxn (or
    /// standalone entry) lies at or after `lsn`, each whole (its BeginTxn
    /// and writes may lie before `lsn`), and nothing that committed before.
    ///
    /// Any `lsn` is accepted, and none is an error: below the log's start
    /// (the purge mark) it means the start; at or past the end, nothing is
    /// delivered; inside an entry, the replay starts at the next one (as
    /// the rule says: nothing commits between); in a range a truncation
    /// deleted, at the truncation record. [`ReplayStats::start_lsn`] says
    /// where it started. A transaction begun below the purge mark is never
    /// delivered (DESIGN.md §9). To resume after a replay stopped at
    /// [`ReplayStats::stopped_at`] `= Some(c)`, replay from `c + 1`.
    pub fn from(mut self, lsn: Lsn) -> Self {
        self.from = lsn;
        self
    }

    /// Starts at the checkpoint `cp` (usually the last,
    /// [`Snapshot::last_checkpoint`]): delivers what committed after it,
    /// including a transaction open when it was taken. The same as
    /// `.from(cp.lsn)`: the state the caller saved with the checkpoint plus
    /// these transactions is the state the whole log gives.
    pub fn from_checkpoint(self, cp: &Checkpoint) -> Self {
        self.from(cp.lsn)
    }

    /// Delivers only the transactions of `run`. From a
    /// [`Wal`](crate::Wal), only that run's stretches of the log are read
    /// (DESIGN.md §9); a [`Snapshot`] or [`WalReader`](crate::WalReader)
    /// has no run index to give them, and reads the whole log from where
    /// the replay starts.
    pub fn run(mut self, run: RunId) -> Self {
        self.run = Some(run);
        self
    }

    /// Runs the replay: calls `f` with each transaction, in commit order,
    /// until the log ends, `f` returns `Ok(ControlFlow::Break(()))` (the
    /// stats then say where, [`ReplayStats::stopped_at`]) or `Err(e)`.
    ///
    /// `f`'s error is returned as it is, and nothing more is delivered; an
    /// error reading the log is returned converted into `E`
    /// (`E: From<durability::Error>`).
    pub fn try_for_each<E, F>(self, mut f: F) -> std::result::Result<ReplayStats, E>
    where
        E: From<Error>,
        F: FnMut(&Txn<'_, '_>) -> std::result::Result<ControlFlow<()>, E>,
    {
        // The assembler sees a callback that says "stop"; the caller's
        // error waits here, so nothing of `E`'s size moves per entry.
        let mut failed = None;
        let mut call = |t: &Txn<'_, '_>| match f(t) {
            Ok(flow) => flow.is_break(),
            Err(e) => {
                failed = Some(e);
                true
            }
        };
        let stats = self.drive(&mut call);
        match failed {
            Some(e) => Err(e),
            None => Ok(stats?),
        }
    }

    /// Runs the replay with `f`, which returns true to stop.
    fn drive(self, f: &mut impl FnMut(&Txn<'_, '_>) -> bool) -> Result<ReplayStats> {
        let (from, run) = (self.from, self.run);
        match self.source {
            Source::Snapshot(snap) => snap.replay_window(from, run, f),
            Source::Indexed(log) => {
                if from == 0 && run.is_none() {
                    return log.indexed_view(None).replay_window(0, None, f);
                }
                let mut plan = None;
                let view = log.indexed_view(Some(&mut |snap, index| {
                    plan = Some(Plan::new(snap, index, from, run));
                }));
                match plan {
                    Some(plan) => view.replay_planned(&plan, run, f),
                    None => view.replay_window(from, run, f),
                }
            }
        }
    }

    /// Runs the replay with a callback that neither fails nor stops: see
    /// [`Replayer::try_for_each`].
    pub fn for_each(self, mut f: impl FnMut(&Txn<'_, '_>)) -> Result<ReplayStats> {
        self.drive(&mut |t| {
            f(t);
            false
        })
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

/// Counts from one replay, where it started, and whether it stopped early.
///
/// A replay [`from`](Replayer::from) a position counts only what ends at
/// or after it (a transaction by its CommitTxn or AbortTxn, or the BeginTxn
/// that replaced it; a standalone entry by itself), and what never ends: a
/// transaction begun before the position and left open is `incomplete`. A
/// replay of one run counts that run's entries and transactions only.
/// A replay that stopped early ([`ReplayStats::stopped_at`]) counts what
/// it read until then, and nothing open then as `incomplete`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// The LSN the replay started at: the log's start
    /// ([`Snapshot::start_lsn`]), or for a replay
    /// [`from`](Replayer::from) a position, the first entry at or after
    /// it (the start if it lies below, the end if it lies past).
    pub start_lsn: Lsn,
    /// Entries before the log's start were deleted
    /// ([`Wal::purge_before`], or retention): this history does not begin
    /// with the log's first entry, and whatever those entries held (a
    /// snapshot the caller keeps, say) is not in it.
    ///
    /// [`Wal::purge_before`]: crate::Wal::purge_before
    pub purged: bool,
    /// Transactions begun before the log's start (their BeginTxn purged)
    /// whose later entries were skipped: never delivered, neither whole nor
    /// in part.
    pub begun_before_start: u64,
    /// Entries read at or after `start_lsn` (of the run, for one run's
    /// replay). Entries before it, read to assemble a transaction open
    /// there, are not counted.
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
    /// The callback stopped the replay ([`ControlFlow::Break`]) after the
    /// transaction that ends at this LSN (its [`Txn::commit_lsn`]); `None`
    /// if the replay ran to the end of the log. A replay
    /// [`from`](Replayer::from) one past it delivers the rest.
    pub stopped_at: Option<Lsn>,
}

/// A transaction open while the replay reads.
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
///
/// Entries before `from` are fed only to learn what is open at `from`:
/// a unit that ends before it is neither delivered nor counted.
struct Assembler<'a> {
    open: RunMap<Open<'a>>,
    pool: Vec<Vec<LogEntry<'a>>>,
    stats: ReplayStats,
    from: Lsn,
}

impl<'a> Assembler<'a> {
    /// An assembler for a replay of `snap` that delivers what ends at or
    /// after `from`.
    fn new(snap: &Snapshot, from: Lsn) -> Self {
        Assembler {
            open: RunMap::default(),
            pool: Vec::new(),
            stats: ReplayStats {
                start_lsn: from,
                purged: snap.start > 0,
                ..ReplayStats::default()
            },
            from,
        }
    }

    /// The transactions the purge mark cuts (of `run` only, if set) are
    /// open at the log's start, their BeginTxn purged: their entries are
    /// skipped until they end or are replaced.
    fn seed(&mut self, snap: &Snapshot, run: Option<&RunId>) {
        for &(r, txn_id) in &snap.purge.cut {
            if run.is_none_or(|run| *run == r) {
                self.open.insert(
                    r,
                    Open {
                        cut: true,
                        txn_id,
                        timestamp: 0,
                        begin: snap.start,
                        ops: Vec::new(),
                    },
                );
            }
        }
    }

    /// Counts a transaction that was replaced unfinished, if the entry
    /// that replaced it is counted.
    fn dropped(&mut self, o: Open<'a>, counted: bool) {
        if counted {
            if o.cut {
                self.stats.begun_before_start += 1;
            } else {
                self.stats.incomplete += 1;
            }
        }
        self.recycle(o);
    }

    fn recycle(&mut self, o: Open<'a>) {
        let mut ops = o.ops;
        ops.clear();
        self.pool.push(ops);
    }

    /// Hands `t` to the callback, which returns true to stop; notes where
    /// a stop came.
    fn deliver(&mut self, t: &Txn<'_, 'a>, f: &mut impl FnMut(&Txn<'_, 'a>) -> bool) -> bool {
        let stop = f(t);
        if stop {
            self.stats.stopped_at = Some(t.commit_lsn);
        }
        stop
    }

    /// Takes in the next entry; true if the callback said stop.
    #[inline(always)]
    fn feed(&mut self, e: LogEntry<'a>, f: &mut impl FnMut(&Txn<'_, 'a>) -> bool) -> bool {
        let counted = e.lsn >= self.from;
        self.stats.entries += u64::from(counted);
        let entry = e.entry;
        let Some(&run) = entry.run_id_ref() else {
            // A checkpoint, a truncation (whose effect the iterator already
            // applied) or a Raft entry's identity: no run's data.
            if counted && entry.kind() == EntryKind::Checkpoint {
                self.stats.checkpoints += 1;
            }
            return false;
        };
        match entry.kind() {
            EntryKind::Write | EntryKind::Delete => {
                if let Some(o) = self.open.get_mut(&run) {
                    if !o.cut {
                        o.ops.push(e);
                    }
                } else if counted {
                    self.stats.standalone += 1;
                    let t = Txn {
                        run_id: run,
                        txn_id: None,
                        timestamp: None,
                        begin_lsn: e.lsn,
                        commit_lsn: e.lsn,
                        ops: std::slice::from_ref(&e),
                    };
                    return self.deliver(&t, f);
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
                    self.dropped(old, counted);
                }
            }
            EntryKind::CommitTxn | EntryKind::AbortTxn => {
                let matches = self
                    .open
                    .get(&run)
                    .is_some_and(|o| Some(o.txn_id) == entry.txn_id());
                if !matches {
                    return false;
                }
                let Some(o) = self.open.remove(&run) else {
                    return false;
                };
                let mut stop = false;
                if counted {
                    if o.cut {
                        self.stats.begun_before_start += 1;
                    } else if entry.kind() == EntryKind::CommitTxn {
                        self.stats.committed += 1;
                        let t = Txn {
                            run_id: run,
                            txn_id: Some(o.txn_id),
                            timestamp: Some(o.timestamp),
                            begin_lsn: o.begin,
                            commit_lsn: e.lsn,
                            ops: &o.ops,
                        };
                        stop = self.deliver(&t, f);
                    } else {
                        self.stats.aborted += 1;
                    }
                }
                self.recycle(o);
                return stop;
            }
            EntryKind::Checkpoint | EntryKind::Truncate | EntryKind::Raft => {}
        }
        false
    }

    /// The stats of a replay that read to the end: what is still open
    /// never ended.
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
