//! openraft's storage test suite against the in-memory log store and the
//! state machine.

use durability_raft::mem_log::MemLogStore;
use durability_raft::state_machine::StateMachineStore;
use durability_raft::types::{StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};

struct MemBuilder;

impl StoreBuilder<TypeConfig, MemLogStore<TypeConfig>, StateMachineStore, ()> for MemBuilder {
    async fn build(
        &self,
    ) -> Result<((), MemLogStore<TypeConfig>, StateMachineStore), StorageError> {
        Ok(((), MemLogStore::new(), StateMachineStore::new()))
    }
}

/// Persistent state machines, each in its own temporary folder (the guard).
struct PersistentSmBuilder;

impl StoreBuilder<TypeConfig, MemLogStore<TypeConfig>, StateMachineStore, tempfile::TempDir>
    for PersistentSmBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            MemLogStore<TypeConfig>,
            StateMachineStore,
        ),
        StorageError,
    > {
        let dir = tempfile::tempdir().map_err(|e| {
            openraft::StorageIOError::write_state_machine(openraft::AnyError::new(&e))
        })?;
        let sm = StateMachineStore::open(dir.path()).map_err(|e| {
            openraft::StorageIOError::write_state_machine(openraft::AnyError::new(&e))
        })?;
        Ok((dir, MemLogStore::new(), sm))
    }
}

// The suite builds its own tokio runtime for every case (`Runtime::new()` +
// `block_on`): it must run from a plain, synchronous #[test], never inside a
// tokio runtime.
#[test]
fn mem_log_store_passes_the_openraft_suite() {
    if let Err(e) = Suite::test_all(MemBuilder) {
        panic!("openraft suite: {e}");
    }
}

#[test]
fn persistent_state_machine_passes_the_openraft_suite() {
    if let Err(e) = Suite::test_all(PersistentSmBuilder) {
        panic!("openraft suite: {e}");
    }
}
