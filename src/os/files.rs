//! Opening the files of a log directory defensively: only regular files,
//! never blocking in `open`, and never reading more than the most a file
//! can legitimately hold.
//!
//! A log directory is shared with whoever else can write to it, so a name
//! the log expects (`LOCK`, `META`, `POISONED`, a segment) may hold a FIFO
//! (whose `open` blocks until a peer opens the other end), a device, a
//! socket, a directory, or a regular file of any size. Every open here
//! passes `O_NONBLOCK` (which regular files ignore) and checks the opened
//! descriptor with `fstat`, so the check and the use concern the same file;
//! every read of a small file is bounded by the caller's limit before a
//! byte is allocated.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Opens `path` with `opts`, without blocking, and only if it is a regular
/// file: anything else is `InvalidInput` naming what it is.
pub(crate) fn open_regular(path: &Path, opts: &mut OpenOptions) -> io::Result<File> {
    open_regular_with(path, opts, rustix::fs::OFlags::empty())
}

/// [`open_regular`] with more open flags (`O_DIRECT`).
pub(crate) fn open_regular_with(
    path: &Path,
    opts: &mut OpenOptions,
    extra: rustix::fs::OFlags,
) -> io::Result<File> {
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC | extra;
    let file = opts.custom_flags(flags.bits() as i32).open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}, where the log expects a regular file"),
    ))
}

/// Opens `path` for reading, as [`open_regular`] does.
pub(crate) fn open_read(path: &Path) -> io::Result<File> {
    open_regular(path, OpenOptions::new().read(true))
}

/// The contents of the regular file at `path`, or `None` if there is none.
/// A file longer than `max` bytes is refused (`InvalidData`) before any of
/// it is read: the caller knows the most the file can hold.
pub(crate) fn read_small(path: &Path, max: usize) -> io::Result<Option<Vec<u8>>> {
    let file = match open_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len > max as u64 {
        return Err(too_long(len, max));
    }
    // The file may grow between the stat and the read: read one byte more
    // than allowed, and refuse if it is there.
    let mut buf = Vec::with_capacity(len as usize);
    file.take(max as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > max {
        return Err(too_long(buf.len() as u64, max));
    }
    Ok(Some(buf))
}

/// The device and inode of the file at `path` (following symlinks): what
/// makes two paths the same file.
pub(crate) fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    Ok(id_of(&std::fs::metadata(path)?))
}

/// The device and inode in `meta` (of a path, or of an open file).
pub(crate) fn id_of(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Renames `from` to `to` in one step. Over an existing `to` only if
/// `replace`; otherwise an existing `to` is an error (`AlreadyExists`) and
/// is left as it was: `renameat2(RENAME_NOREPLACE)` on Linux,
/// `renameatx_np(RENAME_EXCL)` on Apple systems, and elsewhere a hard link
/// (which never replaces) then the unlink of `from`.
pub(crate) fn rename(from: &Path, to: &Path, replace: bool) -> io::Result<()> {
    if replace {
        return std::fs::rename(from, to);
    }
    #[cfg(any(target_os = "linux", target_vendor = "apple"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(io::Error::from)
    }
    #[cfg(not(any(target_os = "linux", target_vendor = "apple")))]
    {
        std::fs::hard_link(from, to)?;
        std::fs::remove_file(from)
    }
}

fn too_long(len: u64, max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{len} bytes or more, longer than the {max} bytes this file can hold"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that outlives the call, which
        // only reads it. (rustix has no `mkfifoat` on Apple systems.)
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o400) };
        assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
    }

    #[test]
    fn refuses_what_is_not_a_regular_file_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let e = open_read(&fifo).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("FIFO"), "{e}");
        // Opening a FIFO for writing without a reader fails at once too.
        let e = open_regular(&fifo, OpenOptions::new().write(true)).unwrap_err();
        assert!(matches!(e.raw_os_error(), Some(6)) || e.kind() == io::ErrorKind::InvalidInput);
        let e = open_read(dir.path()).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
    }

    #[test]
    fn a_rename_replaces_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"new").unwrap();
        std::fs::write(&b, b"old").unwrap();
        let e = rename(&a, &b, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read(&b).unwrap(), b"old");
        assert_eq!(std::fs::read(&a).unwrap(), b"new");
        rename(&a, &b, true).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"new");
        assert!(!a.exists());
        std::fs::write(&a, b"again").unwrap();
        std::fs::remove_file(&b).unwrap();
        rename(&a, &b, false).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"again");
        assert!(!a.exists());
    }

    #[test]
    fn small_reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert!(read_small(&path, 10).unwrap().is_none());
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_small(&path, 10).unwrap().unwrap(), b"0123456789");
        let e = read_small(&path, 9).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
