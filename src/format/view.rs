//! [`EntryRef`]: a zero-copy view of one entry the frame codec validated,
//! borrowed from the bytes it was decoded from (a mapped segment, in the
//! log), with the entry's fields read in place.

use uuid::Uuid;

use crate::format::entry::{ArchivedWalEntry, BorrowedEntry, EntryKind, RunId, WalEntry};

/// A zero-copy view of one validated entry, borrowed from the bytes it was
/// decoded from (a mapped segment, in the log).
#[derive(Clone, Copy)]
pub struct EntryRef<'a> {
    pub(crate) archived: &'a ArchivedWalEntry,
}

impl std::fmt::Debug for EntryRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.archived, f)
    }
}

impl PartialEq for EntryRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.to_owned() == other.to_owned()
    }
}

impl<'a> EntryRef<'a> {
    /// The archived entry itself.
    #[inline]
    pub fn archived(&self) -> &'a ArchivedWalEntry {
        self.archived
    }

    /// The kind of the entry.
    #[inline]
    pub fn kind(&self) -> EntryKind {
        match self.archived {
            ArchivedWalEntry::BeginTxn { .. } => EntryKind::BeginTxn,
            ArchivedWalEntry::Write { .. } => EntryKind::Write,
            ArchivedWalEntry::Delete { .. } => EntryKind::Delete,
            ArchivedWalEntry::CommitTxn { .. } => EntryKind::CommitTxn,
            ArchivedWalEntry::AbortTxn { .. } => EntryKind::AbortTxn,
            ArchivedWalEntry::Checkpoint { .. } => EntryKind::Checkpoint,
            ArchivedWalEntry::Truncate { .. } => EntryKind::Truncate,
            ArchivedWalEntry::Raft { .. } => EntryKind::Raft,
        }
    }

    /// The run the entry belongs to; `None` for a checkpoint, a truncation
    /// and a Raft entry's identity.
    #[inline]
    pub fn run_id(&self) -> Option<RunId> {
        self.run_id_ref().copied()
    }

    /// The run id as stored, without copying it.
    #[inline]
    pub fn run_id_ref(&self) -> Option<&'a RunId> {
        match self.archived {
            ArchivedWalEntry::BeginTxn { run_id, .. }
            | ArchivedWalEntry::Write { run_id, .. }
            | ArchivedWalEntry::Delete { run_id, .. }
            | ArchivedWalEntry::CommitTxn { run_id, .. }
            | ArchivedWalEntry::AbortTxn { run_id, .. } => Some(run_id),
            ArchivedWalEntry::Checkpoint { .. }
            | ArchivedWalEntry::Truncate { .. }
            | ArchivedWalEntry::Raft { .. } => None,
        }
    }

    /// The transaction id of a boundary entry (Begin/Commit/Abort).
    #[inline]
    pub fn txn_id(&self) -> Option<u64> {
        match self.archived {
            ArchivedWalEntry::BeginTxn { txn_id, .. }
            | ArchivedWalEntry::CommitTxn { txn_id, .. }
            | ArchivedWalEntry::AbortTxn { txn_id, .. } => Some(txn_id.to_native()),
            _ => None,
        }
    }

    /// The version of a write, delete or checkpoint.
    #[inline]
    pub fn version(&self) -> Option<u64> {
        match self.archived {
            ArchivedWalEntry::Write { version, .. }
            | ArchivedWalEntry::Delete { version, .. }
            | ArchivedWalEntry::Checkpoint { version, .. } => Some(version.to_native()),
            _ => None,
        }
    }

    /// The key of a write or delete.
    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        match self.archived {
            ArchivedWalEntry::Write { key, .. } | ArchivedWalEntry::Delete { key, .. } => {
                Some(key.as_slice())
            }
            _ => None,
        }
    }

    /// The value of a write.
    #[inline]
    pub fn value(&self) -> Option<&'a [u8]> {
        match self.archived {
            ArchivedWalEntry::Write { value, .. } => Some(value.as_slice()),
            _ => None,
        }
    }

    /// The timestamp (µs since the Unix epoch) of a BeginTxn.
    #[inline]
    pub fn timestamp(&self) -> Option<u64> {
        match self.archived {
            ArchivedWalEntry::BeginTxn { timestamp, .. } => Some(timestamp.to_native()),
            _ => None,
        }
    }

    /// The snapshot id of a checkpoint.
    #[inline]
    pub fn snapshot_id(&self) -> Option<Uuid> {
        match self.archived {
            ArchivedWalEntry::Checkpoint { snapshot_id, .. } => Some(*snapshot_id),
            _ => None,
        }
    }

    /// The active runs of a checkpoint (empty for other entries).
    #[inline]
    pub fn active_runs(&self) -> &'a [RunId] {
        match self.archived {
            ArchivedWalEntry::Checkpoint { active_runs, .. } => active_runs.as_slice(),
            _ => &[],
        }
    }

    /// The first deleted LSN of a [`Truncate`](WalEntry::Truncate).
    #[inline]
    pub fn truncate_from(&self) -> Option<u64> {
        match self.archived {
            ArchivedWalEntry::Truncate { from } => Some(from.to_native()),
            _ => None,
        }
    }

    /// The `(index, term, data)` of a [`Raft`](WalEntry::Raft) entry.
    #[inline]
    pub fn raft(&self) -> Option<(u64, u64, &'a [u8])> {
        match self.archived {
            ArchivedWalEntry::Raft { index, term, data } => {
                Some((index.to_native(), term.to_native(), data.as_slice()))
            }
            _ => None,
        }
    }

    /// True for BeginTxn, CommitTxn and AbortTxn.
    #[inline]
    pub fn is_txn_boundary(&self) -> bool {
        self.kind().is_txn_boundary()
    }

    /// True for Checkpoint.
    #[inline]
    pub fn is_checkpoint(&self) -> bool {
        self.kind() == EntryKind::Checkpoint
    }

    /// The entry as a borrowed entry (for re-encoding or appending elsewhere).
    pub fn as_borrowed(&self) -> BorrowedEntry<'a> {
        match self.archived {
            ArchivedWalEntry::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            } => BorrowedEntry::BeginTxn {
                txn_id: txn_id.to_native(),
                run_id: *run_id,
                timestamp: timestamp.to_native(),
            },
            ArchivedWalEntry::Write {
                run_id,
                key,
                value,
                version,
            } => BorrowedEntry::Write {
                run_id: *run_id,
                key: key.as_slice(),
                value: value.as_slice(),
                version: version.to_native(),
            },
            ArchivedWalEntry::Delete {
                run_id,
                key,
                version,
            } => BorrowedEntry::Delete {
                run_id: *run_id,
                key: key.as_slice(),
                version: version.to_native(),
            },
            ArchivedWalEntry::CommitTxn { txn_id, run_id } => BorrowedEntry::CommitTxn {
                txn_id: txn_id.to_native(),
                run_id: *run_id,
            },
            ArchivedWalEntry::AbortTxn { txn_id, run_id } => BorrowedEntry::AbortTxn {
                txn_id: txn_id.to_native(),
                run_id: *run_id,
            },
            ArchivedWalEntry::Checkpoint {
                snapshot_id,
                version,
                active_runs,
            } => BorrowedEntry::Checkpoint {
                snapshot_id: *snapshot_id,
                version: version.to_native(),
                active_runs: active_runs.as_slice(),
            },
            ArchivedWalEntry::Truncate { from } => BorrowedEntry::Truncate {
                from: from.to_native(),
            },
            ArchivedWalEntry::Raft { index, term, data } => BorrowedEntry::Raft {
                index: index.to_native(),
                term: term.to_native(),
                data: data.as_slice(),
            },
        }
    }

    /// The owned entry.
    pub fn to_owned(&self) -> WalEntry {
        self.as_borrowed().to_owned()
    }
}
