//! Raft replication (openraft 0.9, `storage-v2`) of agent-run transactions
//! over the `durability` write-ahead log.
//!
//! - [`types`]: the openraft type configuration and the replicated
//!   transaction ([`types::RunTxn`]).
//! - [`state_machine`]: the replicated state of every run, with snapshots.
//! - [`mem_log`]: an in-memory log store, the no-durability reference.
//! - [`log_store`]: the durable log store on the write-ahead log.
//! - [`router`]: an in-memory network between nodes, with partitions.
//! - [`cluster`]: an in-process cluster harness generic over the log store.
//! - [`scenarios`]: the cluster scenarios the tests run against each log store.

pub mod cluster;
pub mod log_store;
pub mod mem_log;
#[cfg(feature = "node")]
pub mod node;
pub mod router;
pub mod scenarios;
pub mod state_machine;
pub mod types;

/// The README's examples (the log's quick start and replication), compiled
/// and run as doctests: `cargo test --workspace` runs them.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
