//! The live log: opening it (recovery, then repair), the writer (append,
//! publish, rotation, batches, truncation), the sync modes and group
//! commit, commit notification, retention, following it (tails), and
//! opening it read-only beside a writer or without one (DESIGN.md §5, §8,
//! §10).

mod append;
pub mod commit;
pub mod config;
pub(crate) mod group;
pub mod mode;
pub(crate) mod notify;
mod open;
pub(crate) mod pins;
pub mod position;
pub(crate) mod prefault;
pub(crate) mod prepare;
pub(crate) mod publish;
pub mod reader;
pub mod reader_tail;
pub(crate) mod registry;
mod replay;
pub mod retention;
pub(crate) mod shared;
pub mod stats;
pub mod tail;
mod truncate;
pub mod wal;
pub(crate) mod writer;
