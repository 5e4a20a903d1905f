//! The positions tails still have to read: retention keeps every segment
//! from the one holding the lowest of them on (DESIGN.md §8).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::format::Lsn;

/// The positions tails still have to read. Retention keeps every segment
/// from the one holding the lowest of them on.
#[derive(Default)]
pub(crate) struct Pins {
    next_id: AtomicU64,
    at: Mutex<HashMap<u64, Lsn>>,
}

impl Pins {
    /// Pins `lsn`; returns the pin's id.
    pub(crate) fn pin(&self, lsn: Lsn) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.at.lock().insert(id, lsn);
        id
    }

    /// Moves pin `id` forward to `lsn` (everything before it was read).
    pub(crate) fn move_to(&self, id: u64, lsn: Lsn) {
        if let Some(p) = self.at.lock().get_mut(&id) {
            *p = lsn;
        }
    }

    /// Drops pin `id`.
    pub(crate) fn unpin(&self, id: u64) {
        self.at.lock().remove(&id);
    }

    /// The lowest pinned position, if any.
    pub(crate) fn lowest(&self) -> Option<Lsn> {
        self.at.lock().values().copied().min()
    }
}
