//! Reading the log: snapshots of mapped segments and the entry iterator,
//! the deleted ranges of truncation records, the purge point, replay of committed
//! transactions (from the start or from a position, set up by a
//! [`Replayer`](replay::Replayer)), runs and run diffs (DESIGN.md §9, §10).
//! Nothing here writes, and nothing here knows the writer.

pub(crate) mod dead;
pub(crate) mod purge;
pub mod replay;
pub mod runs;
pub mod snapshot;
