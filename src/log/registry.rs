//! The process-wide registry of log directories: which log this process
//! has open for writing, and which it saw fail a sync.
//!
//! Keyed by the directory's device and inode, so two paths to one directory
//! (a symlink, a relative path) are one entry. Two things need it:
//!
//! - **A read-only open beside a writer of this process** must not copy
//!   bytes the writer may be storing at that moment (that would be a data
//!   race, undefined behaviour, in one process). It reads the writer's
//!   published view instead, which is exact: no scan of a moving tail, no
//!   false problem. The gate is a read-write lock: a write open holds it
//!   exclusively while it recovers (and may zero a torn tail), so a reader
//!   of this process never scans bytes that recovery is changing.
//! - **A log that failed a sync in this process** (DESIGN.md §7, "the
//!   poisoned-log rule"): after `fsync`/`msync` reports an error, the kernel
//!   may have marked the pages clean with their new contents still cached,
//!   so this process's page cache can show bytes that never reached the
//!   disk. A later write open in the same process must not trust anything
//!   past the last sync that succeeded.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::os::poison::{read_poison_file, write_poison_file, POISON_FILE};
use crate::read::snapshot::Snapshot;

/// A directory's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct DirId {
    dev: u64,
    ino: u64,
}

impl DirId {
    /// The identity of directory `dir`.
    pub(crate) fn of(dir: &Path) -> Result<DirId> {
        let (dev, ino) =
            crate::os::files::file_id(dir).map_err(|e| Error::io("stat directory", dir, e))?;
        Ok(DirId { dev, ino })
    }
}

/// What this process knows of one log directory.
#[derive(Default)]
pub(crate) struct DirState {
    /// The log's writer in this process, if one is open. Held for writing
    /// by a write open while it recovers; held for reading by a read-only
    /// open while it scans.
    pub gate: RwLock<Option<Weak<dyn Live>>>,
    /// Set when a writer of this process failed a sync: the log's instance
    /// and the LSN below which a sync completed. Cleared by the write open
    /// that made the log consistent again on disk.
    poisoned: Mutex<Option<(Uuid, u64)>>,
}

impl DirState {
    /// Records that a sync of log `instance` in `dir` failed with
    /// everything below `synced` durable; the lowest such LSN wins. The
    /// record is also written to the directory ([`POISON_FILE`]): the page
    /// cache is shared by every process on the machine, so a reopen by
    /// another process must honour it too. Writing it is best effort (the
    /// disk has just failed a sync); the in-memory record stays either way.
    pub(crate) fn poison(&self, dir: &Path, instance: Uuid, synced: u64) {
        let mut p = self.poisoned.lock();
        let synced = match *p {
            Some((id, old)) if id == instance => old.min(synced),
            _ => synced,
        };
        *p = Some((instance, synced));
        let _ = write_poison_file(dir, instance, synced);
    }

    /// The poisoned-log record that applies to `dir`: this process's, or
    /// the one in the directory, the lower LSN if both name one instance.
    /// A record in the directory that cannot be read is an error
    /// ([`Error::BadPoisonRecord`]), never "no record": the rule exists to
    /// stop an open from trusting the page cache.
    pub(crate) fn poisoned_at(&self, dir: &Path) -> Result<Option<(Uuid, u64)>> {
        let mem = *self.poisoned.lock();
        let file = read_poison_file(dir)?;
        Ok(match (mem, file) {
            (Some((a, x)), Some((b, y))) if a == b => Some((a, x.min(y))),
            (Some(m), _) => Some(m),
            (None, f) => f,
        })
    }

    /// The log was made consistent on disk again: forget the record and
    /// remove the directory's (durably).
    pub(crate) fn clear_poison(&self, dir: &Path) -> Result<()> {
        *self.poisoned.lock() = None;
        let path = dir.join(POISON_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => crate::os::durable::sync_dir(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove poison record", path, e)),
        }
    }

    fn is_poisoned(&self) -> bool {
        self.poisoned.lock().is_some()
    }
}

/// The state of directory `id` (created empty on first use).
pub(crate) fn dir_state(id: DirId) -> Arc<DirState> {
    static DIRS: OnceLock<Mutex<HashMap<DirId, Arc<DirState>>>> = OnceLock::new();
    let dirs = DIRS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut dirs = dirs.lock();
    // Forget directories nobody holds and nothing is recorded for, so the
    // map does not grow with every log a long-lived process ever opened.
    if dirs.len() > 64 {
        dirs.retain(|_, s| {
            Arc::strong_count(s) > 1
                || s.is_poisoned()
                || s.gate.try_read().is_none_or(|g| g.is_some())
        });
    }
    Arc::clone(dirs.entry(id).or_default())
}

/// What a read-only open of this process needs of a live writer: its
/// published view. (The writer's state implements it; the registry knows
/// no more of the writer.)
pub(crate) trait Live: Send + Sync {
    /// A consistent view of the published log.
    fn snapshot(&self) -> Snapshot;
    /// The log's instance id.
    fn instance(&self) -> Uuid;
}

/// The live writer of this process in `state`, if there is one.
pub(crate) fn live_writer(gate: &Option<Weak<dyn Live>>) -> Option<Arc<dyn Live>> {
    gate.as_ref().and_then(Weak::upgrade)
}
