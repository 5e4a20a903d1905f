//! The entry model: run ids, the six kinds of log entry, and borrowed forms for appends.
//!
//! [`WalEntry`] is the owned entry a caller builds or gets back from
//! [`EntryRef::to_owned`](crate::EntryRef::to_owned). Its rkyv archive,
//! [`ArchivedWalEntry`], is the payload of every frame on disk.
//!
//! Appending never needs an owned entry: [`BorrowedEntry`] and [`Op`] hold
//! `&[u8]` keys and values and archive to exactly the same bytes as the
//! equivalent [`WalEntry`] (rkyv's `#[rkyv(as = ArchivedWalEntry)]`), so a
//! caller appends without allocating.

use std::fmt;
use std::str::FromStr;

use rkyv::rancor::Fallible;
use rkyv::ser::{Allocator, Writer};
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::with::{ArchiveWith, SerializeWith};
use rkyv::{Archive, Deserialize, Place, Serialize};
use uuid::Uuid;

/// The identifier of one agent run: a UUID.
///
/// Every entry except [`WalEntry::Checkpoint`] names the run it belongs to,
/// which is what makes run-scoped replay and run diffing possible.
///
/// A `RunId` is its own archived form (16 bytes, alignment 1, every bit
/// pattern valid), so archived entries hand out `&RunId` and `&[RunId]`
/// without conversion.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
#[repr(transparent)]
pub struct RunId(pub Uuid);

const _: () = assert!(std::mem::size_of::<RunId>() == 16 && std::mem::align_of::<RunId>() == 1);

// SAFETY: `RunId` is `repr(transparent)` over `Uuid`, which is
// `repr(transparent)` over `[u8; 16]`: a stable layout, the same on every
// target, with no interior mutability.
unsafe impl rkyv::Portable for RunId {}

// SAFETY: `check_bytes` accepts exactly the valid values: every 16-byte
// pattern is a valid `Uuid`, so there is nothing to reject.
unsafe impl<C: Fallible + ?Sized> rkyv::bytecheck::CheckBytes<C> for RunId {
    unsafe fn check_bytes(_value: *const Self, _context: &mut C) -> Result<(), C::Error> {
        Ok(())
    }
}

impl Archive for RunId {
    // SAFETY: `RunId` archives to itself, byte for byte, and has no padding.
    const COPY_OPTIMIZATION: rkyv::traits::CopyOptimization<Self> =
        unsafe { rkyv::traits::CopyOptimization::enable() };

    type Archived = RunId;
    type Resolver = ();

    #[inline]
    fn resolve(&self, _: (), out: Place<RunId>) {
        // SAFETY: a `RunId` is 16 initialized bytes with no padding, so
        // writing it leaves no byte of `out` uninitialized.
        unsafe { out.write_unchecked(*self) }
    }
}

impl<S: Fallible + ?Sized> Serialize<S> for RunId {
    #[inline]
    fn serialize(&self, _: &mut S) -> Result<(), S::Error> {
        Ok(())
    }
}

impl<D: Fallible + ?Sized> Deserialize<RunId, D> for RunId {
    #[inline]
    fn deserialize(&self, _: &mut D) -> Result<RunId, D::Error> {
        Ok(*self)
    }
}

impl RunId {
    /// A new random (version 4) run id.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        RunId(Uuid::new_v4())
    }

    /// The run id with these 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        RunId(Uuid::from_bytes(bytes))
    }

    /// The 16 bytes of this run id.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The UUID inside.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for RunId {
    fn from(uuid: Uuid) -> Self {
        RunId(uuid)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({})", self.0)
    }
}

impl FromStr for RunId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(RunId)
    }
}

/// The kind of an entry, with its type tag on disk as the discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum EntryKind {
    /// [`WalEntry::BeginTxn`], tag 1.
    BeginTxn = 1,
    /// [`WalEntry::Write`], tag 2.
    Write = 2,
    /// [`WalEntry::Delete`], tag 3.
    Delete = 3,
    /// [`WalEntry::CommitTxn`], tag 4.
    CommitTxn = 4,
    /// [`WalEntry::AbortTxn`], tag 5.
    AbortTxn = 5,
    /// [`WalEntry::Checkpoint`], tag 6.
    Checkpoint = 6,
    /// [`WalEntry::Truncate`], tag 7.
    Truncate = 7,
    /// [`WalEntry::Raft`], tag 8.
    Raft = 8,
}

impl EntryKind {
    /// Every kind, in tag order.
    pub const ALL: [EntryKind; 8] = [
        EntryKind::BeginTxn,
        EntryKind::Write,
        EntryKind::Delete,
        EntryKind::CommitTxn,
        EntryKind::AbortTxn,
        EntryKind::Checkpoint,
        EntryKind::Truncate,
        EntryKind::Raft,
    ];

    /// The type tag written in the frame header.
    #[inline]
    pub const fn tag(self) -> u8 {
        self as u8
    }

    /// The kind with this tag, or `None` for a tag this version does not know.
    #[inline]
    pub const fn from_tag(tag: u8) -> Option<EntryKind> {
        Some(match tag {
            1 => EntryKind::BeginTxn,
            2 => EntryKind::Write,
            3 => EntryKind::Delete,
            4 => EntryKind::CommitTxn,
            5 => EntryKind::AbortTxn,
            6 => EntryKind::Checkpoint,
            7 => EntryKind::Truncate,
            8 => EntryKind::Raft,
            _ => return None,
        })
    }

    /// The entry's name as it appears in tools and JSON (`"Write"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            EntryKind::BeginTxn => "BeginTxn",
            EntryKind::Write => "Write",
            EntryKind::Delete => "Delete",
            EntryKind::CommitTxn => "CommitTxn",
            EntryKind::AbortTxn => "AbortTxn",
            EntryKind::Checkpoint => "Checkpoint",
            EntryKind::Truncate => "Truncate",
            EntryKind::Raft => "Raft",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub use owned::{ArchivedWalEntry, WalEntry, WalEntryResolver};

#[allow(missing_docs)] // the resolver rkyv generates
mod owned {
    use super::*;

    /// One entry of the log.
    ///
    /// A transaction is a [`BeginTxn`](WalEntry::BeginTxn), the
    /// [`Write`](WalEntry::Write)s and [`Delete`](WalEntry::Delete)s of the same
    /// run that follow it, and its [`CommitTxn`](WalEntry::CommitTxn) or
    /// [`AbortTxn`](WalEntry::AbortTxn).
    ///
    /// The discriminants are the frame type tags; the enum is archived with rkyv
    /// and the archive is the frame payload.
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    #[rkyv(derive(Debug), attr(allow(missing_docs)))]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    #[repr(u8)]
    pub enum WalEntry {
        /// Opens transaction `txn_id` of run `run_id`.
        BeginTxn {
            /// The transaction id, chosen by the caller.
            txn_id: u64,
            /// The run the transaction belongs to.
            run_id: RunId,
            /// Microseconds since the Unix epoch.
            timestamp: u64,
        } = 1,
        /// Sets `key` to `value` in run `run_id`.
        Write {
            /// The run written to.
            run_id: RunId,
            /// The key, bytes the caller encodes.
            key: Vec<u8>,
            /// The value, bytes the caller encodes.
            value: Vec<u8>,
            /// The version the caller assigns to this write.
            version: u64,
        } = 2,
        /// Removes `key` from run `run_id`.
        Delete {
            /// The run deleted from.
            run_id: RunId,
            /// The key removed.
            key: Vec<u8>,
            /// The version the caller assigns to this delete.
            version: u64,
        } = 3,
        /// Commits transaction `txn_id` of run `run_id`.
        CommitTxn {
            /// The transaction committed.
            txn_id: u64,
            /// Its run.
            run_id: RunId,
        } = 4,
        /// Aborts transaction `txn_id` of run `run_id`: replay drops it.
        AbortTxn {
            /// The transaction aborted.
            txn_id: u64,
            /// Its run.
            run_id: RunId,
        } = 5,
        /// A snapshot of the store was taken at `version`; `active_runs` were
        /// still running then.
        Checkpoint {
            /// The snapshot's id.
            snapshot_id: Uuid,
            /// The version the snapshot covers.
            version: u64,
            /// The runs still active at the checkpoint.
            active_runs: Vec<RunId>,
        } = 6,
        /// Deletes the log's suffix: every entry from LSN `from` up to this
        /// one is gone, for every reader and after any reopen. Appended by
        /// [`Wal::truncate_from`](crate::Wal::truncate_from); published
        /// bytes are never rewritten, so zero-copy borrows stay valid.
        Truncate {
            /// The first LSN deleted.
            from: u64,
        } = 7,
        /// A Raft log entry's identity, written by a replication layer
        /// (`durability-raft`): its `index` and `term`, and `data`, the
        /// layer's encoding of the rest (leader, payload kind, payload).
        /// An entry whose payload is a run's transaction is followed, in
        /// the same append, by that transaction's BeginTxn, ops and
        /// CommitTxn, so a replicated log is still a log of runs.
        Raft {
            /// The Raft log index.
            index: u64,
            /// The term of the leader that created the entry.
            term: u64,
            /// The replication layer's bytes.
            data: Vec<u8>,
        } = 8,
    }
}

impl WalEntry {
    /// The kind of this entry.
    pub fn kind(&self) -> EntryKind {
        match self {
            WalEntry::BeginTxn { .. } => EntryKind::BeginTxn,
            WalEntry::Write { .. } => EntryKind::Write,
            WalEntry::Delete { .. } => EntryKind::Delete,
            WalEntry::CommitTxn { .. } => EntryKind::CommitTxn,
            WalEntry::AbortTxn { .. } => EntryKind::AbortTxn,
            WalEntry::Checkpoint { .. } => EntryKind::Checkpoint,
            WalEntry::Truncate { .. } => EntryKind::Truncate,
            WalEntry::Raft { .. } => EntryKind::Raft,
        }
    }

    /// The run this entry belongs to; `None` for a checkpoint, a truncation
    /// and a Raft entry's identity (its transaction's entries carry the run).
    pub fn run_id(&self) -> Option<RunId> {
        match self {
            WalEntry::BeginTxn { run_id, .. }
            | WalEntry::Write { run_id, .. }
            | WalEntry::Delete { run_id, .. }
            | WalEntry::CommitTxn { run_id, .. }
            | WalEntry::AbortTxn { run_id, .. } => Some(*run_id),
            WalEntry::Checkpoint { .. } | WalEntry::Truncate { .. } | WalEntry::Raft { .. } => None,
        }
    }

    /// The transaction id of a transaction boundary; `None` otherwise
    /// (writes and deletes carry no txn id).
    pub fn txn_id(&self) -> Option<u64> {
        match self {
            WalEntry::BeginTxn { txn_id, .. }
            | WalEntry::CommitTxn { txn_id, .. }
            | WalEntry::AbortTxn { txn_id, .. } => Some(*txn_id),
            _ => None,
        }
    }

    /// The version of a write, delete or checkpoint; `None` otherwise.
    pub fn version(&self) -> Option<u64> {
        match self {
            WalEntry::Write { version, .. }
            | WalEntry::Delete { version, .. }
            | WalEntry::Checkpoint { version, .. } => Some(*version),
            _ => None,
        }
    }

    /// True for `BeginTxn`, `CommitTxn` and `AbortTxn`.
    pub fn is_txn_boundary(&self) -> bool {
        self.kind().is_txn_boundary()
    }

    /// True for `Checkpoint`.
    pub fn is_checkpoint(&self) -> bool {
        matches!(self, WalEntry::Checkpoint { .. })
    }

    /// This entry as a borrowed entry, ready to append.
    pub fn as_borrowed(&self) -> BorrowedEntry<'_> {
        match self {
            WalEntry::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            } => BorrowedEntry::BeginTxn {
                txn_id: *txn_id,
                run_id: *run_id,
                timestamp: *timestamp,
            },
            WalEntry::Write {
                run_id,
                key,
                value,
                version,
            } => BorrowedEntry::Write {
                run_id: *run_id,
                key,
                value,
                version: *version,
            },
            WalEntry::Delete {
                run_id,
                key,
                version,
            } => BorrowedEntry::Delete {
                run_id: *run_id,
                key,
                version: *version,
            },
            WalEntry::CommitTxn { txn_id, run_id } => BorrowedEntry::CommitTxn {
                txn_id: *txn_id,
                run_id: *run_id,
            },
            WalEntry::AbortTxn { txn_id, run_id } => BorrowedEntry::AbortTxn {
                txn_id: *txn_id,
                run_id: *run_id,
            },
            WalEntry::Checkpoint {
                snapshot_id,
                version,
                active_runs,
            } => BorrowedEntry::Checkpoint {
                snapshot_id: *snapshot_id,
                version: *version,
                active_runs,
            },
            WalEntry::Truncate { from } => BorrowedEntry::Truncate { from: *from },
            WalEntry::Raft { index, term, data } => BorrowedEntry::Raft {
                index: *index,
                term: *term,
                data,
            },
        }
    }
}

impl EntryKind {
    /// True for `BeginTxn`, `CommitTxn` and `AbortTxn`.
    #[inline]
    pub const fn is_txn_boundary(self) -> bool {
        matches!(
            self,
            EntryKind::BeginTxn | EntryKind::CommitTxn | EntryKind::AbortTxn
        )
    }
}

/// Archives a borrowed slice exactly as rkyv archives a `Vec` of the same
/// elements, so a [`BorrowedEntry`] and a [`WalEntry`] encode identically.
pub struct SliceAsVec;

impl<'a, T: Archive> ArchiveWith<&'a [T]> for SliceAsVec {
    type Archived = ArchivedVec<T::Archived>;
    type Resolver = VecResolver;

    fn resolve_with(field: &&'a [T], resolver: VecResolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_len(field.len(), resolver, out);
    }
}

impl<'a, T, S> SerializeWith<&'a [T], S> for SliceAsVec
where
    T: Serialize<S>,
    S: Fallible + Allocator + Writer + ?Sized,
{
    fn serialize_with(field: &&'a [T], serializer: &mut S) -> Result<VecResolver, S::Error> {
        ArchivedVec::serialize_from_slice(field, serializer)
    }
}

pub use borrowed::{BorrowedEntry, BorrowedEntryResolver};

#[allow(missing_docs)] // the resolver rkyv generates
mod borrowed {
    use super::*;

    /// An entry whose keys, values and run lists are borrowed: what the log
    /// appends. It archives to an [`ArchivedWalEntry`], byte for byte the same as
    /// the [`WalEntry`] with the same fields.
    #[derive(Archive, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
    #[rkyv(as = ArchivedWalEntry)]
    #[repr(u8)]
    #[allow(missing_docs)]
    pub enum BorrowedEntry<'a> {
        BeginTxn {
            txn_id: u64,
            run_id: RunId,
            timestamp: u64,
        } = 1,
        Write {
            run_id: RunId,
            #[rkyv(with = SliceAsVec)]
            key: &'a [u8],
            #[rkyv(with = SliceAsVec)]
            value: &'a [u8],
            version: u64,
        } = 2,
        Delete {
            run_id: RunId,
            #[rkyv(with = SliceAsVec)]
            key: &'a [u8],
            version: u64,
        } = 3,
        CommitTxn {
            txn_id: u64,
            run_id: RunId,
        } = 4,
        AbortTxn {
            txn_id: u64,
            run_id: RunId,
        } = 5,
        Checkpoint {
            snapshot_id: Uuid,
            version: u64,
            #[rkyv(with = SliceAsVec)]
            active_runs: &'a [RunId],
        } = 6,
        Truncate {
            from: u64,
        } = 7,
        Raft {
            index: u64,
            term: u64,
            #[rkyv(with = SliceAsVec)]
            data: &'a [u8],
        } = 8,
    }
}

impl BorrowedEntry<'_> {
    /// The kind of this entry.
    pub fn kind(&self) -> EntryKind {
        match self {
            BorrowedEntry::BeginTxn { .. } => EntryKind::BeginTxn,
            BorrowedEntry::Write { .. } => EntryKind::Write,
            BorrowedEntry::Delete { .. } => EntryKind::Delete,
            BorrowedEntry::CommitTxn { .. } => EntryKind::CommitTxn,
            BorrowedEntry::AbortTxn { .. } => EntryKind::AbortTxn,
            BorrowedEntry::Checkpoint { .. } => EntryKind::Checkpoint,
            BorrowedEntry::Truncate { .. } => EntryKind::Truncate,
            BorrowedEntry::Raft { .. } => EntryKind::Raft,
        }
    }

    /// The run this entry belongs to; `None` for a checkpoint, a truncation
    /// and a Raft entry's identity.
    pub fn run_id(&self) -> Option<RunId> {
        match self {
            BorrowedEntry::BeginTxn { run_id, .. }
            | BorrowedEntry::Write { run_id, .. }
            | BorrowedEntry::Delete { run_id, .. }
            | BorrowedEntry::CommitTxn { run_id, .. }
            | BorrowedEntry::AbortTxn { run_id, .. } => Some(*run_id),
            BorrowedEntry::Checkpoint { .. }
            | BorrowedEntry::Truncate { .. }
            | BorrowedEntry::Raft { .. } => None,
        }
    }

    /// The owned entry with the same fields.
    pub fn to_owned(&self) -> WalEntry {
        match *self {
            BorrowedEntry::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            } => WalEntry::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            },
            BorrowedEntry::Write {
                run_id,
                key,
                value,
                version,
            } => WalEntry::Write {
                run_id,
                key: key.to_vec(),
                value: value.to_vec(),
                version,
            },
            BorrowedEntry::Delete {
                run_id,
                key,
                version,
            } => WalEntry::Delete {
                run_id,
                key: key.to_vec(),
                version,
            },
            BorrowedEntry::CommitTxn { txn_id, run_id } => WalEntry::CommitTxn { txn_id, run_id },
            BorrowedEntry::AbortTxn { txn_id, run_id } => WalEntry::AbortTxn { txn_id, run_id },
            BorrowedEntry::Checkpoint {
                snapshot_id,
                version,
                active_runs,
            } => WalEntry::Checkpoint {
                snapshot_id,
                version,
                active_runs: active_runs.to_vec(),
            },
            BorrowedEntry::Truncate { from } => WalEntry::Truncate { from },
            BorrowedEntry::Raft { index, term, data } => WalEntry::Raft {
                index,
                term,
                data: data.to_vec(),
            },
        }
    }
}

impl<'a> From<&'a WalEntry> for BorrowedEntry<'a> {
    fn from(entry: &'a WalEntry) -> Self {
        entry.as_borrowed()
    }
}

/// One operation inside a transaction appended with
/// [`Wal::append_txn`](crate::Wal::append_txn); keys and values are borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    /// Set `key` to `value`.
    Write {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
        /// The caller's version for this write.
        version: u64,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: &'a [u8],
        /// The caller's version for this delete.
        version: u64,
    },
}

impl<'a> Op<'a> {
    /// The entry this operation becomes inside run `run_id`.
    #[inline]
    pub fn entry(self, run_id: RunId) -> BorrowedEntry<'a> {
        match self {
            Op::Write {
                key,
                value,
                version,
            } => BorrowedEntry::Write {
                run_id,
                key,
                value,
                version,
            },
            Op::Delete { key, version } => BorrowedEntry::Delete {
                run_id,
                key,
                version,
            },
        }
    }
}
