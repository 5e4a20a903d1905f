//! Disk space: whether a full disk is a clean `ENOSPC` or a `SIGBUS`.
//!
//! A segment is allocated whole before it is mapped (`allocate`:
//! `fallocate` on Linux, `F_PREALLOCATE` on Apple systems), and is then
//! written through a shared map. On ext4, xfs, tmpfs and HFS+ the
//! allocation reserves the blocks: a full disk fails the allocation with
//! `ENOSPC` when the segment is created, and writes into the map never need
//! more space.
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
//! APFS, the filesystem of every current Mac, is copy-on-write and has no
//! `NOCOW`: `F_PREALLOCATE` reserves blocks, but an overwrite goes
//! elsewhere whenever a snapshot (Time Machine's local snapshots) or a
//! clone shares the block. macOS allocates no space when a page of a map
//! is first written, only when it is written back, so a full APFS disk is
//! expected to surface as a failed `msync` (the log is then poisoned, and
//! the commit that asked for the sync fails) rather than as `SIGBUS`; this
//! is read from how the system works and not verified on a Mac (DESIGN.md
//! §6).
//!
//! [`space_reservation`] says which case a log directory is in.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;

use crate::error::{Error, Result};

/// How the filesystem under a log handles the space of its segment files,
/// and so what a full disk does to a writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SpaceReservation {
    /// The allocation reserves the blocks: a full disk is `ENOSPC` when a
    /// segment is created, a clean error. ext4, xfs, tmpfs, HFS+, and any
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
    /// A copy-on-write filesystem where neither the allocation nor `NOCOW`
    /// reserves space for overwrites (ZFS, bcachefs, btrfs where `NOCOW`
    /// could not be set, and APFS): on Linux a full disk may surface as
    /// `SIGBUS` on a write into the map, which the library cannot turn into
    /// an error; on macOS (APFS) it is expected to fail a sync instead,
    /// which poisons the log (see the module's documentation). Keep free
    /// space on such filesystems, or put the log elsewhere.
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

/// Allocates `size` bytes of the new, empty segment file `file`, so that
/// a full disk fails here: `fallocate` on Linux; `F_PREALLOCATE` then
/// `ftruncate` on Apple systems (`posix_fallocate` elsewhere).
pub(crate) fn allocate(file: &File, size: u64) -> io::Result<()> {
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size)
        .map_err(io::Error::from)
}

/// Deallocates `[from, from + len)` of `file` without changing its size,
/// where the system can (`FALLOC_FL_PUNCH_HOLE` on Linux); false where it
/// could not, and the caller must write zeros instead.
pub(crate) fn punch_hole(file: &File, from: u64, len: u64) -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::FallocateFlags;
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        rustix::fs::fallocate(file, flags, from, len).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, from, len);
        false
    }
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
    sys::reservation(dir, &st)
}

/// Prepares a freshly created, still empty segment file before it is
/// allocated: on Linux, sets the `NOCOW` attribute (`FS_NOCOW_FL`) where the
/// filesystem supports it (btrfs), so that its `fallocate` reserves the
/// space of the writes into the map and a full disk fails cleanly with
/// `ENOSPC`. btrfs honours the attribute only on an empty file. Nothing to
/// do on other systems.
///
/// A filesystem without the attribute (ext4, xfs, tmpfs, NFS, ...) is not an
/// error; other errors are returned.
pub(crate) fn prepare_new_file(file: &File) -> io::Result<()> {
    sys::prepare_new_file(file)
}

/// Apple systems and FreeBSD: the filesystem's name (`f_fstypename`)
/// decides.
#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
mod sys {
    use super::*;

    /// The filesystem names that copy on write: APFS, and OpenZFS.
    pub(super) const COPY_ON_WRITE: [&str; 2] = ["apfs", "zfs"];

    /// The filesystem's name, from `f_fstypename` (`apfs`, `hfs`, ...).
    pub(super) fn type_name(st: &rustix::fs::StatFs) -> String {
        st.f_fstypename
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8 as char)
            .collect()
    }

    pub(super) fn reservation(_dir: &Path, st: &rustix::fs::StatFs) -> Result<SpaceReservation> {
        let name = type_name(st);
        Ok(if COPY_ON_WRITE.contains(&name.as_str()) {
            SpaceReservation::NotReserved
        } else {
            SpaceReservation::Reserved
        })
    }

    pub(super) fn prepare_new_file(_file: &File) -> io::Result<()> {
        Ok(())
    }
}

/// Other Unix systems: nothing is known here of their filesystems, so
/// nothing is promised.
#[cfg(not(any(target_os = "linux", target_vendor = "apple", target_os = "freebsd")))]
mod sys {
    use super::*;

    pub(super) fn reservation(_dir: &Path, _st: &rustix::fs::StatFs) -> Result<SpaceReservation> {
        Ok(SpaceReservation::NotReserved)
    }

    pub(super) fn prepare_new_file(_file: &File) -> io::Result<()> {
        Ok(())
    }
}

/// Linux: the filesystem's magic number decides, and btrfs's `NOCOW`.
#[cfg(target_os = "linux")]
mod sys {
    use super::*;
    use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};
    use std::path::PathBuf;

    /// `statfs` `f_type` of btrfs (`BTRFS_SUPER_MAGIC`).
    pub(super) const BTRFS_MAGIC: u32 = 0x9123_683e;
    /// `statfs` `f_type` of ZFS (OpenZFS's `ZFS_SUPER_MAGIC`).
    pub(super) const ZFS_MAGIC: u32 = 0x2fc1_2fc1;
    /// `statfs` `f_type` of bcachefs (`BCACHEFS_SUPER_MAGIC`).
    pub(super) const BCACHEFS_MAGIC: u32 = 0xca45_1a4e;

    pub(super) fn reservation(dir: &Path, st: &rustix::fs::StatFs) -> Result<SpaceReservation> {
        // The magic numbers are 32-bit; `f_type`'s type varies by target.
        #[allow(clippy::unnecessary_cast)]
        let magic = st.f_type as u32;
        match magic {
            BTRFS_MAGIC => btrfs_reservation(dir),
            ZFS_MAGIC | BCACHEFS_MAGIC => Ok(SpaceReservation::NotReserved),
            _ => Ok(SpaceReservation::Reserved),
        }
    }

    /// True for the errors the inode-flag ioctls give where a filesystem has no
    /// such flags or not this one: not a failure, just nothing to do.
    fn flags_unsupported(e: rustix::io::Errno) -> bool {
        use rustix::io::Errno;
        // EOPNOTSUPP is ENOTSUP on Linux.
        e == Errno::NOTTY || e == Errno::OPNOTSUPP || e == Errno::INVAL || e == Errno::PERM
    }

    /// Sets `NOCOW` on a new empty file where the filesystem has it.
    pub(super) fn prepare_new_file(file: &File) -> io::Result<()> {
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
    pub(super) fn has_nocow(file: &File, path: &Path) -> Result<bool> {
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

    /// [`space_reservation`] on btrfs: `NoCow` if the directory has the
    /// attribute (new files inherit it) or its newest segment file has it.
    fn btrfs_reservation(dir: &Path) -> Result<SpaceReservation> {
        let d = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
        if has_nocow(&d, dir)? {
            return Ok(SpaceReservation::NoCow);
        }
        if let Some(seg) = newest_segment(dir)? {
            let f = crate::os::files::open_read(&seg)
                .map_err(|e| Error::io("open segment", &seg, e))?;
            if has_nocow(&f, &seg)? {
                return Ok(SpaceReservation::NoCow);
            }
        }
        Ok(SpaceReservation::NotReserved)
    }
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

    #[test]
    fn a_new_file_is_prepared_and_allocated_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.wal.tmp");
        let file = File::create(&path).unwrap();
        prepare_new_file(&file).unwrap();
        // Still empty, still usable: preparing changes no bytes.
        assert_eq!(file.metadata().unwrap().len(), 0);
        allocate(&file, 1 << 16).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 1 << 16);
        // Twice is fine (the flag is already there, or unsupported).
        prepare_new_file(&file).unwrap();
    }

    #[test]
    fn punched_bytes_read_as_zeros_and_the_size_stays() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        file.write_all_at(&[7u8; 3 << 12], 0).unwrap();
        let punched = punch_hole(&file, 1 << 12, 1 << 12);
        // Every filesystem a Linux test runs on (ext4, xfs, btrfs, tmpfs)
        // punches holes; other systems write zeros instead.
        assert_eq!(punched, cfg!(target_os = "linux"));
        if punched {
            let mut buf = [1u8; 3 << 12];
            file.read_exact_at(&mut buf, 0).unwrap();
            assert!(buf[..1 << 12].iter().all(|&b| b == 7));
            assert!(buf[1 << 12..2 << 12].iter().all(|&b| b == 0));
            assert!(buf[2 << 12..].iter().all(|&b| b == 7));
        }
        assert_eq!(file.metadata().unwrap().len(), 3 << 12);
    }

    #[test]
    fn errors_name_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = space_reservation(&missing).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
    }

    /// The filesystem type of `dir`, from `statfs`.
    #[cfg(target_os = "linux")]
    fn magic(dir: &Path) -> u32 {
        #[allow(clippy::unnecessary_cast)]
        let m = rustix::fs::statfs(dir).unwrap().f_type as u32;
        m
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reservation_of_the_local_filesystem() {
        use sys::{BCACHEFS_MAGIC, BTRFS_MAGIC, ZFS_MAGIC};
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
            assert!(sys::has_nocow(&f, &seg).unwrap());
        } else {
            assert_eq!(with_segment, got);
        }
    }

    /// macOS: APFS (and ZFS) copy on write; HFS+ and the rest reserve.
    #[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
    #[test]
    fn reservation_of_the_local_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let got = space_reservation(dir.path()).unwrap();
        let name = sys::type_name(&rustix::fs::statfs(dir.path()).unwrap());
        let want = if sys::COPY_ON_WRITE.contains(&name.as_str()) {
            SpaceReservation::NotReserved
        } else {
            SpaceReservation::Reserved
        };
        assert_eq!(got, want, "{name}");
    }
}
