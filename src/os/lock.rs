//! The lock file (`LOCK`): the one writer's `flock`, the count of write
//! opens a read-only scan compares, and the probe a reader makes; and the
//! creation of a log's directory.

use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

/// The name of the lock file in a log directory.
pub const LOCK_FILE: &str = "LOCK";

/// Opens and locks (`flock`, exclusive) the lock file of `dir` for the one
/// writer; [`Error::Locked`] if another handle or process holds it.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = crate::os::files::open_regular(
        &path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
    )
    .map_err(|e| Error::io("open lock file", &path, e))?;
    // A process that forks keeps a copy of our descriptor in the child
    // until the child execs, so a lock just released can look held for a
    // moment: retry briefly before calling it held.
    let mut tries = 0;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::WOULDBLOCK) if tries < 10 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(Error::Locked { lock_file: path }),
            // Some network filesystems (SMB, NFS without a lock daemon)
            // have no advisory locks: one writer cannot be ensured there.
            Err(e) if e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::OPNOTSUPP => {
                return Err(Error::io(
                    "lock (this filesystem has no advisory locks: keep the log on a local disk)",
                    &path,
                    e.into(),
                ))
            }
            Err(e) => return Err(Error::io("lock", &path, e.into())),
        }
    }
}

/// The number of write opens recorded in a log's lock file (0 if none).
pub(crate) fn lock_generation(file: &File) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 8];
    match file.read_at(&mut buf, 0) {
        Ok(8) => u64::from_le_bytes(buf),
        _ => 0,
    }
}

/// Counts one more write open in `lock`, the lock file of `dir` (see
/// [`lock_generation`]). Not synced: it only matters while a reader and a
/// writer both run.
pub(crate) fn count_write_open(lock: &File, dir: &Path) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let generation = lock_generation(lock).wrapping_add(1);
    lock.write_all_at(&generation.to_le_bytes(), 0)
        .map_err(|e| Error::io("write lock file", dir.join(LOCK_FILE), e))
}

/// Creates `dir` and any missing parents, fsyncing the parent of each
/// directory it creates, so the new log's directory entry is as durable as
/// the segments in it.
pub(crate) fn create_log_dir(dir: &Path) -> Result<()> {
    // Something else by that name is not a log directory (and creating
    // one "failed" with EEXIST, which says nothing useful).
    if let Ok(m) = fs::metadata(dir) {
        if !m.is_dir() {
            let e = std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "a file is there, not a directory: a log is a directory",
            );
            return Err(Error::io("open log directory", dir, e));
        }
    }
    let mut missing = Vec::new();
    let mut p = Some(dir);
    while let Some(d) = p {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        p = d.parent();
    }
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::os::durable::sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Whether a process holds the log's lock file for writing, and how many
/// write opens the lock file has counted. The probe takes a shared lock and
/// drops it at once; it changes no byte.
pub(crate) fn writer_state(dir: &Path) -> (bool, u64) {
    let Ok(file) = crate::os::files::open_read(&dir.join(LOCK_FILE)) else {
        return (false, 0);
    };
    let generation = lock_generation(&file);
    let live = matches!(
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared),
        Err(rustix::io::Errno::WOULDBLOCK)
    );
    (live, generation)
}
