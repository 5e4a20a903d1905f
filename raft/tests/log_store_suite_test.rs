//! openraft's own storage test suite against our log (`LogStore`) and the
//! agent-run state machine. The suite never reopens a store: it checks the
//! logic; `log_store_test.rs` checks durability.

use durability::{Config, SyncMode};
use durability_raft::log_store::LogStore;
use durability_raft::state_machine::StateMachineStore;
use durability_raft::types::{StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};

fn storage_err(e: impl std::error::Error + 'static) -> StorageError {
    openraft::StorageIOError::write_logs(openraft::AnyError::new(&e)).into()
}

struct WalBuilder {
    mode: SyncMode,
}

impl StoreBuilder<TypeConfig, LogStore<TypeConfig>, StateMachineStore, tempfile::TempDir>
    for WalBuilder
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore<TypeConfig>, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().map_err(storage_err)?;
        let config = Config::default()
            .segment_size(64 << 10)
            .sync_mode(self.mode);
        let log = LogStore::open(dir.path().join("log"), config).map_err(storage_err)?;
        Ok((dir, log, StateMachineStore::new()))
    }
}

// The suite builds its own tokio runtime for every case: it must run from a
// plain, synchronous #[test].
#[test]
fn our_log_passes_the_openraft_suite_in_strict_mode() {
    if let Err(e) = Suite::test_all(WalBuilder {
        mode: SyncMode::Strict,
    }) {
        panic!("openraft suite, Strict: {e}");
    }
}

#[test]
fn our_log_passes_the_openraft_suite_in_batched_mode() {
    if let Err(e) = Suite::test_all(WalBuilder {
        mode: SyncMode::Batched {
            interval_ms: 5,
            batch_size: 100,
        },
    }) {
        panic!("openraft suite, Batched: {e}");
    }
}
