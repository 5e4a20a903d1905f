//! Everything the operating system does for the log: opening files
//! (regular files only, never blocking), segment files and their maps,
//! syncs, space reservation, the lock file, the metadata, poisoned-log and
//! purge-mark files, and the fault-injection seam. Every system call of the crate is
//! in this folder (DESIGN.md §5, §6).

pub mod durable;
pub mod faults;
pub(crate) mod files;
pub mod lock;
pub mod meta;
pub(crate) mod poison;
pub(crate) mod purge;
pub mod segment;
pub mod space;
