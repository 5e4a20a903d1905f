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
//! The public modules: [`entry`] (the entry model), [`frame`] (the frame
//! codec over byte slices), [`segment`] (one segment file), [`position`]
//! (what an append returns), [`durability`] (sync modes and group commit),
//! [`commit`] (commit notification), [`recovery`] (scanning and
//! classifying damage), [`replay`] (reading, replay, run diffs),
//! [`retention`], [`tail`], [`reader`], [`meta`], [`space`] and [`wal`]
//! (the log itself). DESIGN.md in the repository gives the byte layout,
//! the crash argument and the concurrency argument.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod commit;
pub(crate) mod crc;
pub mod durability;
pub mod entry;
pub mod error;
pub(crate) mod files;
pub mod frame;
pub mod meta;
pub mod position;
pub mod reader;
pub mod recovery;
mod registry;
pub mod replay;
pub mod retention;
pub mod segment;
pub mod space;
pub mod tail;
pub(crate) mod truncation;
pub mod wal;

#[cfg(all(test, loom))]
mod loom_tests;
pub(crate) mod notify;
pub(crate) mod pool;
pub(crate) mod prefault;
pub(crate) mod publish;
pub(crate) mod sync;

pub use crate::commit::Durable;
pub use crate::durability::SyncMode;
pub use entry::{ArchivedWalEntry, BorrowedEntry, EntryKind, Op, RunId, WalEntry};
pub use error::{Error, Location, ProblemClass, Result};
pub use frame::{Decoder, EntryRef, Frame};
pub use position::{Appended, BatchPosition, End, EntryPosition, TxnPosition};
pub use reader::WalReader;
pub use recovery::{Problem, RecoveryMode, RecoveryReport};
pub use replay::{Iter, KeyDiff, KeyState, LogEntry, Lsn, ReplayStats, Snapshot, Txn};
pub use tail::Tail;
pub use wal::{Config, Stats, Wal};

// The README's examples are compiled and run as doctests of
// `durability-raft` (raft/src/lib.rs), which can name both crates.
