//! `durability`: a zero-copy, memory-mapped, segmented write-ahead log.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod entry;
pub mod error;
pub mod frame;
pub mod segment;

pub use entry::{ArchivedWalEntry, BorrowedEntry, EntryKind, Op, RunId, WalEntry};
pub use error::{Error, Location, ProblemClass, Result};
pub use frame::{Decoder, EntryRef, Frame};
