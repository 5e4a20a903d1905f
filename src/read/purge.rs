//! The purge point: the log's logical start, and the transactions it cuts
//! (DESIGN.md §9, "The purge point").
//!
//! Everything below the mark is purged: no read returns it, whatever
//! segment files still hold it. A mark may lie where a transaction is open
//! (begun below it, ended above it, or never). Such a transaction is never
//! delivered: its remaining entries are skipped by replay, neither
//! delivered as standalone writes nor as half a transaction. So a replay
//! from the mark delivers exactly the units a replay of the whole log would
//! deliver that begin at or after the mark.

use crate::format::entry::RunId;
use crate::format::Lsn;

/// A log's purge point.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PurgePoint {
    /// Every entry below it is purged (0: none).
    pub mark: Lsn,
    /// The transactions open at the mark, by replay's rule, whose BeginTxn
    /// lies below it: (run, txn id), sorted by run. Empty once the log's
    /// first segment starts at or after the mark (retention cuts only
    /// where none is open). Counted by
    /// [`purge_point`](crate::read::runs::purge_point).
    pub cut: Vec<(RunId, u64)>,
}

impl PurgePoint {
    /// A purge point at `mark` cutting `cut` (in any order).
    pub fn new(mark: Lsn, mut cut: Vec<(RunId, u64)>) -> Self {
        cut.sort_unstable_by_key(|(r, _)| *r.as_bytes());
        PurgePoint { mark, cut }
    }

    /// The transaction of `run` cut by the mark, if any.
    pub fn cut_txn(&self, run: &RunId) -> Option<u64> {
        self.cut
            .binary_search_by_key(run.as_bytes(), |(r, _)| *r.as_bytes())
            .ok()
            .map(|i| self.cut[i].1)
    }
}
