//! The sync modes: when appended data is made durable.

use std::time::Duration;

/// When appended data is made durable (synced to disk).
///
/// Whatever the mode, an append is visible to readers of the same process
/// as soon as it returns, and survives a crash of the *process* (the page
/// cache outlives it). The mode decides what survives a crash of the
/// *machine*: only what a completed sync covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SyncMode {
    /// Every append is durable before it returns. Concurrent appenders share
    /// syncs (group commit): one leader syncs for everyone waiting.
    Strict,
    /// Sync once `batch_size` appends have accumulated or `interval_ms` has
    /// passed since the last sync, whichever comes first; a background
    /// flusher keeps the interval even when no append arrives.
    Batched {
        /// The most time unsynced data may wait.
        interval_ms: u64,
        /// The most appends that may wait.
        batch_size: u64,
    },
    /// A background thread syncs every `interval_ms`; appends never wait.
    Async {
        /// The sync period.
        interval_ms: u64,
    },
}

impl Default for SyncMode {
    /// `Batched { interval_ms: 100, batch_size: 1000 }`: agents prefer speed;
    /// losing at most 100 ms of appends to a power cut is accepted.
    fn default() -> Self {
        SyncMode::Batched {
            interval_ms: 100,
            batch_size: 1000,
        }
    }
}

impl SyncMode {
    /// The flusher's period, if this mode has one.
    pub(crate) fn interval(&self) -> Option<Duration> {
        match *self {
            SyncMode::Strict => None,
            SyncMode::Batched { interval_ms, .. } | SyncMode::Async { interval_ms } => {
                Some(Duration::from_millis(interval_ms.max(1)))
            }
        }
    }
}
