//! `durability`: a zero-copy, memory-mapped, segmented write-ahead log for
//! databases whose unit of work is an agent *run*.
//!
//! ```
//! use durability::{Config, Op, RunId, SyncMode, Wal};
//!
//! # fn main() -> durability::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let run = RunId::new();
//! let config = Config::default().segment_size(1 << 20).sync_mode(SyncMode::Strict);
//!
//! // Append a transaction: durable when append_txn returns (Strict mode).
//! let wal = Wal::open(dir.path(), config.clone())?;
//! wal.append_txn(run, 1, &[
//!     Op::Write { key: b"plan", value: b"search, then summarise", version: 1 },
//!     Op::Delete { key: b"scratch", version: 2 },
//! ])?;
//! wal.close()?;
//!
//! // Reopen (recovery) and replay the run, zero-copy.
//! let wal = Wal::open(dir.path(), config)?;
//! let mut writes = Vec::new();
//! wal.replay_run(run, |txn| {
//!     for op in txn.ops {
//!         writes.push((op.entry.key().unwrap().to_vec(), op.entry.value().map(<[u8]>::to_vec)));
//!     }
//! })?;
//! assert_eq!(writes[0], (b"plan".to_vec(), Some(b"search, then summarise".to_vec())));
//! assert_eq!(writes[1], (b"scratch".to_vec(), None));
//! # Ok(())
//! # }
//! ```
//!
//! Every append returns where it landed ([`EntryPosition`], [`TxnPosition`],
//! [`BatchPosition`]); [`Wal::durable`], [`Wal::wait_durable`] and
//! [`Wal::on_durable`] take that position and wait for its *end*, so a
//! unit is never reported durable before its last byte is.
//!
//! The crate is five layers, each a folder, each importing only from the
//! layers before it (DESIGN.md §1 draws them):
//!
//! - [`format`](mod@format): the bytes on disk (entries, frames, CRC, segment header);
//!   pure functions, no I/O.
//! - [`os`]: every system call (segment files and maps, syncs, the lock,
//!   the metadata and poisoned-log files, space reservation).
//! - [`read`]: snapshots, the entry iterator, replay, runs.
//! - [`recovery`]: reading with a verdict (what a crash left, what is
//!   damage), and the report.
//! - [`log`]: the live log: opening, writing, syncing, notification,
//!   retention, tails and read-only opens.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

// The log maps files shared and relies on Unix semantics: an unlinked or
// renamed-over file lives while it is mapped, advisory locks, `msync`.
// On Windows a mapped file cannot be deleted or replaced and file locks are
// mandatory, so retention, repair and readers beside a writer cannot work
// as designed (DESIGN.md §6).
#[cfg(not(unix))]
compile_error!(
    "durability supports Unix systems only (Linux and macOS): on Windows a \
     mapped file cannot be deleted or renamed over, which the log's \
     retention and repair rely on; see DESIGN.md §6"
);

/// Keeps every item of the crate off non-Unix targets, so that building
/// for one stops at the `compile_error!` above alone.
macro_rules! unix_only {
    ($($item:item)*) => { $( #[cfg(unix)] $item )* };
}

unix_only! {
    pub mod error;
    pub mod format;
    pub mod log;
    pub mod os;
    pub mod read;
    pub mod recovery;
    pub(crate) mod sync;

    #[cfg(all(test, loom))]
    mod loom_tests;

    pub use error::{Error, Location, ProblemClass, Result};
    pub use format::entry::{ArchivedWalEntry, BorrowedEntry, EntryKind, Op, RunId, WalEntry};
    pub use format::frame::{Decoder, EntryRef, Frame};
    pub use format::Lsn;
    pub use log::commit::Durable;
    pub use log::config::Config;
    pub use log::stats::{Stats, SyncLatency, SYNC_LATENCY_BOUNDS_US};
    pub use log::mode::SyncMode;
    pub use log::position::{Appended, BatchPosition, End, EntryPosition, TxnPosition};
    pub use log::reader::WalReader;
    pub use log::reader_tail::ReaderTail;
    pub use log::tail::{Tail, TailEntry};
    pub use log::wal::Wal;
    pub use os::faults;
    pub use read::replay::{ReplayStats, Replayer, Txn};
    pub use read::runs::{KeyDiff, KeyState};
    pub use read::snapshot::{Checkpoint, Iter, LogEntry, Snapshot};
    pub use recovery::{Problem, RecoveryMode, RecoveryReport};
}

// The README's examples are compiled and run as doctests of
// `durability-raft` (raft/src/lib.rs), which can name both crates.
