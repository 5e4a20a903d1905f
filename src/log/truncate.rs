//! Suffix truncation: a record that deletes everything from an entry to
//! the end, without rewriting a published byte (DESIGN.md §10).

use crate::error::Result;
use crate::format::entry::BorrowedEntry;
use crate::format::Lsn;
use crate::log::position::EntryPosition;
use crate::log::wal::Wal;
use crate::log::writer::Wait;

impl Wal {
    /// Deletes every entry from `lsn` to the end of the log, by appending a
    /// [`Truncate`](crate::WalEntry::Truncate) record (durable as the mode says;
    /// call [`Wal::sync`] to make it durable now). Published bytes are never
    /// rewritten, so snapshots taken before keep reading what they read;
    /// every snapshot, replay, tail and reopen after it skips the deleted
    /// entries, in this and any other process. `lsn` must be the start of
    /// a live entry, or the end (then nothing is deleted and no record is
    /// written); an `lsn` below the log's start
    /// ([`Wal::purge_before`](crate::Wal::purge_before)) is refused
    /// ([`Error::BadLsn`](crate::Error::BadLsn), "purged"): a suffix
    /// truncation never reaches into purged history. Returns the record's position (when nothing was deleted,
    /// an empty one at the end: `lsn == end`).
    ///
    /// ```
    /// # fn main() -> durability::Result<()> {
    /// use durability::{Config, Op, RunId, Wal};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let wal = Wal::open(dir.path(), Config::default())?;
    /// let run = RunId::new();
    /// wal.append_txn(run, 1, &[Op::Write { key: b"k", value: b"kept", version: 1 }])?;
    /// let second = wal.append_txn(run, 2, &[Op::Write { key: b"k", value: b"dropped", version: 2 }])?;
    /// // A Raft follower's conflicting suffix, say: delete from txn 2 on.
    /// wal.truncate_from(second.begin)?;
    /// wal.append_txn(run, 2, &[Op::Write { key: b"k", value: b"leader's", version: 2 }])?;
    /// let mut values = Vec::new();
    /// wal.replay(|txn| values.push(txn.ops[0].entry.value().unwrap().to_vec()))?;
    /// assert_eq!(values, [b"kept".to_vec(), b"leader's".to_vec()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn truncate_from(&self, lsn: Lsn) -> Result<EntryPosition> {
        let (at, (end, sync_now, wake)) = {
            let mut w = self.shared.writer.lock();
            self.check_open()?;
            if lsn == w.next_lsn {
                return Ok(EntryPosition { lsn, end: lsn });
            }
            // Checks `lsn` is a live entry of the published log (which,
            // under the writer lock, is the whole log): a position that is
            // not an entry's start is `BadLsn`.
            let snap = self.shared.snapshot();
            snap.read_at(lsn)?;
            // At an earlier record, whose deleted range ends where `lsn`
            // starts, the two ranges become one: the record says so, so a
            // reader that learns of deletions from records (a tail, a
            // follower) is told everything this one deletes (§10).
            let from = snap.dead.start_of_range_ending_at(lsn).unwrap_or(lsn);
            drop(snap);
            let record = BorrowedEntry::Truncate { from };
            let at = self.write_one(&mut w, &record)?;
            // Before the publish that makes the record visible: a snapshot
            // that sees the record sees its range (DESIGN.md §8).
            self.shared.log.add_truncation(from, at);
            w.index.truncate_from(from);
            let published = self.publish(&mut w)?;
            // Transactions whose end the truncation deleted are open again:
            // recompute the open set, and the boundaries' flags, from the
            // live log (DESIGN.md §10).
            match crate::read::runs::reopened_txns(&self.shared.snapshot(), from) {
                Ok(crate::read::runs::Reopened { open, flags, .. }) => {
                    w.open_txns = open;
                    self.shared.log.with_segs_mut(|segs| {
                        for s in segs.iter_mut() {
                            if let Ok(i) = flags.binary_search_by_key(&s.first_lsn, |f| f.0) {
                                s.txn_open = flags[i].1;
                            }
                        }
                    });
                }
                Err(e) => {
                    self.fail_unit(lsn, &e);
                    return Err(e);
                }
            }
            (at, published)
        };
        self.after_append(end, sync_now, wake, Wait::Mode, None)?;
        Ok(EntryPosition { lsn: at, end })
    }
}
