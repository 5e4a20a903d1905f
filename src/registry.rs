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
use crate::wal::Shared;

/// A directory's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct DirId {
    dev: u64,
    ino: u64,
}

impl DirId {
    /// The identity of directory `dir`.
    pub(crate) fn of(dir: &Path) -> Result<DirId> {
        let st = rustix::fs::stat(dir).map_err(|e| Error::io("stat directory", dir, e.into()))?;
        Ok(DirId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

/// What this process knows of one log directory.
#[derive(Default)]
pub(crate) struct DirState {
    /// The log's writer in this process, if one is open. Held for writing
    /// by a write open while it recovers; held for reading by a read-only
    /// open while it scans.
    pub gate: RwLock<Option<Weak<Shared>>>,
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
            Ok(()) => crate::segment::sync_dir(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove poison record", path, e)),
        }
    }

    fn is_poisoned(&self) -> bool {
        self.poisoned.lock().is_some()
    }
}

/// The name of the poisoned-log record in a log directory: one line,
/// `DURPOIS1 <instance id> <LSN below which a sync completed> <CRC-32C>`,
/// the CRC (8 hex digits) over everything before its separating space.
pub const POISON_FILE: &str = "POISONED";
const POISON_MAGIC: &str = "DURPOIS1";
/// The longest record: magic, a hyphenated UUID, a u64, a CRC, separators.
const MAX_POISON_RECORD: usize = 8 + 1 + 36 + 1 + 20 + 1 + 8 + 1;

fn poison_record(instance: Uuid, synced: u64) -> String {
    let body = format!("{POISON_MAGIC} {instance} {synced}");
    let crc = crc32c::crc32c(body.as_bytes());
    format!("{body} {crc:08x}\n")
}

/// Parses a record: the checksummed form, or the form written before it
/// had one (`<instance> <LSN>` and a newline, exactly as that version
/// wrote it). Anything else is damage.
fn parse_poison_record(bytes: &[u8]) -> std::result::Result<(Uuid, u64), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
    let line = text
        .strip_suffix('\n')
        .ok_or_else(|| "no line end: the record is cut short".to_string())?;
    if let Some(rest) = line.strip_prefix(POISON_MAGIC) {
        let (body, crc) = line
            .rsplit_once(' ')
            .ok_or_else(|| "no checksum".to_string())?;
        let crc = u32::from_str_radix(crc, 16).map_err(|_| "bad checksum field".to_string())?;
        let computed = crc32c::crc32c(body.as_bytes());
        if crc != computed {
            return Err(format!(
                "checksum mismatch (stored {crc:#010x}, computed {computed:#010x})"
            ));
        }
        let mut it = rest.split(' ').skip(1);
        let parsed = (|| {
            let id: Uuid = it.next()?.parse().ok()?;
            let lsn: u64 = it.next()?.parse().ok()?;
            Some((id, lsn))
        })();
        return match parsed {
            Some((id, lsn)) if poison_record(id, lsn) == text => Ok((id, lsn)),
            _ => Err("fields do not parse".to_string()),
        };
    }
    // The form without a checksum: believed only if it is byte for byte
    // what that version wrote for the values it parses to.
    let mut it = line.split(' ');
    let legacy = (|| {
        let id: Uuid = it.next()?.parse().ok()?;
        let lsn: u64 = it.next()?.parse().ok()?;
        Some((id, lsn))
    })();
    match legacy {
        Some((id, lsn)) if format!("{id} {lsn}\n") == text => Ok((id, lsn)),
        _ => Err("not a poisoned-log record".to_string()),
    }
}

fn write_poison_file(dir: &Path, instance: Uuid, synced: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{POISON_FILE}.tmp"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = crate::files::open_regular(
        &tmp,
        std::fs::OpenOptions::new().write(true).create_new(true),
    )?;
    f.write_all(poison_record(instance, synced).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(POISON_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

fn read_poison_file(dir: &Path) -> Result<Option<(Uuid, u64)>> {
    let path = dir.join(POISON_FILE);
    let bad = |detail: String| Error::BadPoisonRecord {
        path: path.clone(),
        detail,
    };
    match crate::files::read_small(&path, MAX_POISON_RECORD) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => parse_poison_record(&bytes).map(Some).map_err(bad),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            ) =>
        {
            Err(bad(e.to_string()))
        }
        Err(e) => Err(Error::io("read poison record", &path, e)),
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

/// The live writer of this process in `state`, if there is one.
pub(crate) fn live_writer(gate: &Option<Weak<Shared>>) -> Option<Arc<Shared>> {
    gate.as_ref().and_then(Weak::upgrade)
}
