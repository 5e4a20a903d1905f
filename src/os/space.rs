//! Disk space: whether a full disk is a clean `ENOSPC` or a `SIGBUS`.
//!
//! A segment is allocated whole with `fallocate` before it is mapped, and is
//! then written through a shared map. On ext4, xfs and tmpfs the allocation
//! reserves the blocks: a full disk fails `fallocate` with `ENOSPC` when the
//! segment is created, and writes into the map never need more space.
//!
//! Copy-on-write filesystems write every overwritten block somewhere new, so
//! the blocks `fallocate` reserved do not cover the writes into the map. When
//! such a filesystem runs out of space while the kernel faults in a page of
//! the map for writing, the process gets `SIGBUS`, which no library can turn
//! into an error. btrfs can be told not to copy a file's data on write (the
//! `NOCOW` attribute, `chattr +C`), and then its preallocation reserves the
//! space like ext4's: `prepare_new_file` sets the attribute on every new
//! segment. ZFS and bcachefs reserve nothing either way.
//!
//! [`space_reservation`] says which case a log directory is in.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};

use crate::error::{Error, Result};

/// `statfs` `f_type` of btrfs (`BTRFS_SUPER_MAGIC`).
const BTRFS_MAGIC: u32 = 0x9123_683e;
/// `statfs` `f_type` of ZFS (OpenZFS's `ZFS_SUPER_MAGIC`).
const ZFS_MAGIC: u32 = 0x2fc1_2fc1;
/// `statfs` `f_type` of bcachefs (`BCACHEFS_SUPER_MAGIC`).
const BCACHEFS_MAGIC: u32 = 0xca45_1a4e;

/// How the filesystem under a log handles the space of its segment files,
/// and so what a full disk does to a writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SpaceReservation {
    /// `fallocate` reserves the blocks: a full disk is `ENOSPC` when a
    /// segment is created, a clean error. ext4, xfs, tmpfs, and any
    /// filesystem not known to lack it.
    Reserved,
    /// btrfs with the `NOCOW` attribute on the segment files: `fallocate`
    /// reserves the blocks, and a full disk is `ENOSPC` when a segment is
    /// created.
    ///
    /// A caveat (measured on Linux 6.18): btrfs still reserves data space
    /// for each page of the map the writer dirties, until writeback. If the
    /// disk fills to the last block while a segment is in use (another
    /// process fills it, or the last segment creation took the last free
    /// blocks), a write into the map waits in the kernel for space that
    /// never comes (measured: still waiting after four minutes).
    NoCow,
    /// A copy-on-write filesystem where neither `fallocate` nor `NOCOW`
    /// reserves space for overwrites (ZFS, bcachefs, and btrfs where `NOCOW`
    /// could not be set): a full disk may surface as `SIGBUS` on a write into
    /// the map, which the library cannot turn into an error. Keep free space
    /// on such filesystems, or put the log elsewhere.
    NotReserved,
}

impl SpaceReservation {
    /// A short name: `reserved`, `nocow` or `not-reserved`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SpaceReservation::Reserved => "reserved",
            SpaceReservation::NoCow => "nocow",
            SpaceReservation::NotReserved => "not-reserved",
        }
    }
}

impl fmt::Display for SpaceReservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True for the errors the inode-flag ioctls give where a filesystem has no
/// such flags or not this one: not a failure, just nothing to do.
fn flags_unsupported(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    // EOPNOTSUPP is ENOTSUP on Linux.
    e == Errno::NOTTY || e == Errno::OPNOTSUPP || e == Errno::INVAL || e == Errno::PERM
}

/// Prepares a freshly created, still empty segment file before it is
/// allocated: sets the `NOCOW` attribute (`FS_NOCOW_FL`) where the
/// filesystem supports it (btrfs), so that its `fallocate` reserves the space
/// of the writes into the map and a full disk fails cleanly with `ENOSPC`.
/// btrfs honours the attribute only on an empty file.
///
/// A filesystem without the attribute (ext4, xfs, tmpfs, NFS, ...) is not an
/// error; other errors are returned.
pub(crate) fn prepare_new_file(file: &File) -> io::Result<()> {
    let flags = match ioctl_getflags(file) {
        Ok(flags) => flags,
        Err(e) if flags_unsupported(e) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if flags.contains(IFlags::NOCOW) {
        // Inherited from a `chattr +C` directory, or a nodatacow mount.
        return Ok(());
    }
    // NOCOW also turns off btrfs's data checksums (and compression) for the
    // file. We lose nothing by it: every frame and the header carry their
    // own CRC-32C, checked by recovery and by every read, so the log itself
    // detects damaged segment data.
    match ioctl_setflags(file, flags | IFlags::NOCOW) {
        Ok(()) => Ok(()),
        Err(e) if flags_unsupported(e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether the inode-flag ioctl reports `NOCOW` on `file`; a filesystem
/// without inode flags reports no.
fn has_nocow(file: &File, path: &Path) -> Result<bool> {
    match ioctl_getflags(file) {
        Ok(flags) => Ok(flags.contains(IFlags::NOCOW)),
        Err(e) if flags_unsupported(e) => Ok(false),
        Err(e) => Err(Error::io("FS_IOC_GETFLAGS", path, e.into())),
    }
}

/// The newest segment file (highest sequence number) in `dir`, if any. The
/// newest, not the oldest: segments are written once, so what matters is
/// the one being written and those to come, which the current code created
/// (an old log may have segments from before `NOCOW` was set).
fn newest_segment(dir: &Path) -> Result<Option<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(crate::format::header::parse_file_name)
        else {
            continue;
        };
        if newest.as_ref().is_none_or(|(s, _)| seq > *s) {
            newest = Some((seq, entry.path()));
        }
    }
    Ok(newest.map(|(_, p)| p))
}

/// What a full disk does to a log in `dir` (an existing directory): see
/// [`SpaceReservation`]. Reads only: `statfs` of the directory and, on
/// btrfs, the `NOCOW` attribute of the directory (which new files inherit)
/// and of its newest segment file.
///
/// The answer comes from the filesystem type `statfs` reports, so a log on
/// a stacking filesystem (overlayfs, FUSE) is judged by that layer, not by
/// the filesystem under it.
pub fn space_reservation(dir: &Path) -> Result<SpaceReservation> {
    let st = rustix::fs::statfs(dir).map_err(|e| Error::io("statfs", dir, e.into()))?;
    // The magic numbers are 32-bit; `f_type`'s type varies by target.
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as u32;
    match magic {
        BTRFS_MAGIC => btrfs_reservation(dir),
        ZFS_MAGIC | BCACHEFS_MAGIC => Ok(SpaceReservation::NotReserved),
        _ => Ok(SpaceReservation::Reserved),
    }
}

/// [`space_reservation`] on btrfs: `NoCow` if the directory has the
/// attribute (new files inherit it) or its newest segment file has it.
fn btrfs_reservation(dir: &Path) -> Result<SpaceReservation> {
    let d = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    if has_nocow(&d, dir)? {
        return Ok(SpaceReservation::NoCow);
    }
    if let Some(seg) = newest_segment(dir)? {
        let f =
            crate::os::files::open_read(&seg).map_err(|e| Error::io("open segment", &seg, e))?;
        if has_nocow(&f, &seg)? {
            return Ok(SpaceReservation::NoCow);
        }
    }
    Ok(SpaceReservation::NotReserved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (r, s) in [
            (SpaceReservation::Reserved, "reserved"),
            (SpaceReservation::NoCow, "nocow"),
            (SpaceReservation::NotReserved, "not-reserved"),
        ] {
            assert_eq!(r.as_str(), s);
            assert_eq!(r.to_string(), s);
        }
    }

    /// The filesystem type of `dir`, from `statfs`.
    fn magic(dir: &Path) -> u32 {
        #[allow(clippy::unnecessary_cast)]
        let m = rustix::fs::statfs(dir).unwrap().f_type as u32;
        m
    }

    #[test]
    fn prepare_new_file_is_ok_on_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.wal.tmp");
        let file = File::create(&path).unwrap();
        prepare_new_file(&file).unwrap();
        // Still empty, still usable: the flag changes no bytes.
        assert_eq!(file.metadata().unwrap().len(), 0);
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, 1 << 16).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 1 << 16);
        if magic(dir.path()) == BTRFS_MAGIC {
            assert!(has_nocow(&file, &path).unwrap());
        }
        // Twice is fine (the flag is already there, or unsupported).
        prepare_new_file(&file).unwrap();
    }

    #[test]
    fn reservation_of_the_local_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let got = space_reservation(dir.path()).unwrap();
        match magic(dir.path()) {
            BTRFS_MAGIC => assert!(
                matches!(got, SpaceReservation::NoCow | SpaceReservation::NotReserved),
                "{got:?}"
            ),
            ZFS_MAGIC | BCACHEFS_MAGIC => assert_eq!(got, SpaceReservation::NotReserved),
            // ext4, xfs, tmpfs, overlayfs, ...: the kinds that reserve.
            _ => assert_eq!(got, SpaceReservation::Reserved),
        }
        // A segment file in the directory changes nothing off btrfs.
        let seg = dir.path().join(crate::format::header::file_name(3));
        let f = File::create(&seg).unwrap();
        prepare_new_file(&f).unwrap();
        let with_segment = space_reservation(dir.path()).unwrap();
        if magic(dir.path()) == BTRFS_MAGIC {
            assert_eq!(with_segment, SpaceReservation::NoCow);
        } else {
            assert_eq!(with_segment, got);
        }
    }

    #[test]
    fn errors_name_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = space_reservation(&missing).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
    }
}
