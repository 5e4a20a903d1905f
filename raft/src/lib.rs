//! Raft replication (openraft 0.9, `storage-v2`) of agent-run transactions
//! over the `durability` write-ahead log.
//!
//! - [`types`]: the openraft type configuration and the replicated
//!   transaction ([`types::RunTxn`]).
//! - [`state_machine`]: the replicated state of every run, with snapshots.
//! - [`log_store`]: the durable log store on the write-ahead log.
//! - `node` (feature `node`): the `walnode` HTTP node and its client.
//!
//! The test harness is compiled only with the `test-support` feature (the
//! crate's own tests, benches and doctests enable it): `mem_log` (an
//! in-memory log store, the no-durability reference), `router` (an
//! in-memory network between nodes, with partitions), `cluster` (an
//! in-process cluster harness generic over the log store) and `scenarios`
//! (the cluster scenarios the tests run against each log store),
//! `history` (a recorded client history and its linearizability check) and,
//! with `node` too, `faults` (partitions between `walnode` processes).

#[cfg(feature = "test-support")]
pub mod cluster;
#[cfg(all(feature = "test-support", feature = "node"))]
pub mod faults;
#[cfg(feature = "test-support")]
pub mod history;
pub mod log_store;
#[cfg(feature = "test-support")]
pub mod mem_log;
#[cfg(feature = "node")]
pub mod node;
#[cfg(feature = "test-support")]
pub mod router;
#[cfg(feature = "test-support")]
pub mod scenarios;
pub mod state_machine;
pub mod types;

/// The README's examples (the log's quick start and replication), compiled
/// and run as doctests: `cargo test --workspace` runs them.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
