//! Making a file's bytes durable: the one place that decides what "synced"
//! means on each system (DESIGN.md §6, "What each system promises").
//!
//! - Linux: `fsync` (and `msync(MS_SYNC)` for a map) returns once the
//!   device has the bytes: the block layer sends the drive a cache flush
//!   (or writes with FUA) unless the device says it has no volatile cache.
//! - macOS: `fsync` and `msync` return once the drive has the bytes *in
//!   its cache*; a power loss may still lose them, or reorder them. Only
//!   `fcntl(F_FULLFSYNC)` asks the drive to flush its cache, so every sync
//!   here ends with it. Some filesystems refuse it (SMB, some FUSE and
//!   FAT mounts: `ENOTSUP`, `EINVAL` or `ENOTTY`); there `fsync` is the best
//!   the system offers, and is used instead, as SQLite, Go and libuv do.
//!   `F_BARRIERFSYNC` (ordering without a flush) gives no loss bound, so it
//!   is never used.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Makes everything written to `file` durable, data and metadata (its size,
/// its blocks): `fsync` on Linux, `F_FULLFSYNC` on Apple systems (with the
/// fallback the module describes). A `File` of a directory makes the
/// directory's entries durable.
pub fn sync_file(file: &File) -> io::Result<()> {
    #[cfg(target_vendor = "apple")]
    {
        use rustix::io::Errno;
        match retry(|| rustix::fs::fcntl_fullfsync(file)) {
            Err(e) if e == Errno::NOTSUP || e == Errno::INVAL || e == Errno::NOTTY => {}
            other => return other.map_err(io::Error::from),
        }
    }
    retry(|| rustix::fs::fsync(file)).map_err(io::Error::from)
}

/// Runs `f` again while it fails with `EINTR`.
fn retry(f: impl Fn() -> rustix::io::Result<()>) -> rustix::io::Result<()> {
    loop {
        match f() {
            Err(rustix::io::Errno::INTR) => {}
            other => return other,
        }
    }
}

/// Makes the entries of directory `dir` durable (creations, renames and
/// unlinks in it), as [`sync_file`] does.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(feature = "fault-injection")]
    crate::os::faults::dir_syncs::note(dir);
    File::open(dir)
        .and_then(|d| sync_file(&d))
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// What [`replace_file`] is replacing, for its error messages: the
/// operation names of each step.
pub(crate) struct Replace {
    /// Removing a stale temporary file.
    pub remove: &'static str,
    /// Creating the temporary file.
    pub create: &'static str,
    /// Writing it.
    pub write: &'static str,
    /// Syncing it.
    pub sync: &'static str,
    /// Renaming it over the file.
    pub rename: &'static str,
}

/// Replaces `dir/name` with `bytes`, atomically and durably before it
/// returns: the bytes go to `dir/tmp` (whatever a crashed write, or anyone
/// else, left there is removed first, so the create makes a new regular
/// file), which is synced, renamed over `name`, and the directory synced.
/// After a crash the file holds its old contents or the new ones, never a
/// mix. The caller serialises writes that share `tmp`.
pub(crate) fn replace_file(
    dir: &Path,
    tmp: &str,
    name: &str,
    bytes: &[u8],
    ops: &Replace,
) -> Result<()> {
    let new = dir.join(tmp);
    match fs::remove_file(&new) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(ops.remove, &new, e)),
    }
    let mut f =
        crate::os::files::open_regular(&new, OpenOptions::new().write(true).create_new(true))
            .map_err(|e| Error::io(ops.create, &new, e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io(ops.write, &new, e))?;
    crate::os::faults::before_sync()
        .and_then(|()| sync_file(&f))
        .map_err(|e| Error::io(ops.sync, &new, e))?;
    drop(f);
    let path = dir.join(name);
    fs::rename(&new, &path).map_err(|e| Error::io(ops.rename, &path, e))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"bytes").unwrap();
        sync_file(&File::open(&path).unwrap()).unwrap();
        sync_dir(dir.path()).unwrap();
        let e = sync_dir(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
