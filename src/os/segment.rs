//! One segment file: its creation, its mapping, syncing it, and reading
//! it around the page cache. Every system call on a segment is here; the
//! bytes of its header are `format::header`'s.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::{Advice, MmapOptions, MmapRaw};
use zerocopy::IntoBytes;

use crate::error::{Error, Result};
use crate::format::header::{file_name, Header, HeaderState, DATA_START, HEADER_LEN, TMP_SUFFIX};

/// How far ahead of the writer pages are pre-faulted, in one request: a
/// background thread faults the next window in writable
/// (`MADV_POPULATE_WRITE`) while the writer fills the current one, so
/// appends take no page faults, and only a window's worth of zero pages is
/// ever dirty ahead of the data (writeback may write those zeros once more;
/// faulting a whole segment ahead dirtied all of it).
pub const PREFAULT_WINDOW: usize = 1 << 20;

/// The system's page size (4 KiB on most Linux machines, 16 KiB on Apple
/// silicon): the unit a sync cleans, a fault dirties and a map advises.
pub fn page_size() -> usize {
    rustix::param::page_size()
}

/// Whether this system can fault pages in writable without writing them
/// (`MADV_POPULATE_WRITE`, Linux 5.14+): where it cannot, nothing faults
/// pages in ahead of the writer, whose stores fault them in instead.
pub const CAN_POPULATE: bool = cfg!(target_os = "linux");

/// A mapped segment file.
///
/// The map is shared by the writer (which writes only past the published end
/// of the log) and readers (which read only below it). It is never resized,
/// and it never covers more than the size the segment was created with
/// (its header's `segment_size`) nor more than the file held when it was
/// mapped: the crate never shrinks a segment file (DESIGN.md §8), so every
/// address in `[0, len)` stays backed. The file descriptor is closed once
/// the file is mapped: a log of thousands of segments holds no descriptor
/// per segment (on Apple systems a sync opens the file again for its
/// `F_FULLFSYNC`: see `Segment::sync_range`).
pub struct Segment {
    seq: u64,
    path: PathBuf,
    map: MmapRaw,
    len: usize,
    /// The header as read from the file when it was opened (`Blank` for a
    /// segment this process created).
    header: HeaderState,
    /// The file's size when it was opened (it may exceed `len`).
    file_len: u64,
    /// No byte at or past this offset held data when the file was opened
    /// (the end of its last data extent, from `SEEK_DATA`/`SEEK_HOLE`; the
    /// length when the filesystem cannot tell). Lets recovery skip holes.
    data_end: usize,
    /// True once the segment's header is written and durable.
    sealed: std::sync::atomic::AtomicBool,
    /// The mapped file's device and inode: a sync that opens the file
    /// again checks it has the same one.
    #[cfg(target_vendor = "apple")]
    file_id: (u64, u64),
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("seq", &self.seq)
            .field("path", &self.path)
            .field("len", &self.len)
            .finish()
    }
}

/// Reads the header page prefix of `file` with `pread` (never through a
/// map). A header a writer is sealing at this very moment may read torn:
/// an invalid header is read again a few times before it is believed.
fn pread_header(file: &File) -> io::Result<HeaderState> {
    use std::os::unix::fs::FileExt;
    let mut state = HeaderState::Blank;
    for attempt in 0..4 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut buf = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match file.read_at(&mut buf[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        state = Header::read(&buf[..got]);
        if !matches!(state, HeaderState::Invalid(_)) {
            break;
        }
    }
    Ok(state)
}

/// The end of the last data extent of `file` in `[0, len)`, or `len` if
/// the filesystem cannot say. Bytes past it read as zero.
fn data_end(file: &File, len: u64) -> u64 {
    use rustix::fs::{seek, SeekFrom};
    let mut pos = 0u64;
    let mut end = 0u64;
    // Bounded: a hostile file with millions of extents costs no more than
    // scanning it.
    for _ in 0..4096 {
        let start = match seek(file, SeekFrom::Data(pos)) {
            Ok(s) if s < len => s,
            Ok(_) | Err(rustix::io::Errno::NXIO) => return end,
            Err(_) => return len,
        };
        let hole = match seek(file, SeekFrom::Hole(start)) {
            Ok(h) => h.min(len),
            Err(_) => return len,
        };
        end = hole;
        if hole >= len {
            return len;
        }
        pos = hole;
    }
    len
}

impl Segment {
    /// Maps the segment file at `path`, read-write or read-only: at most
    /// the size its header says it was created with (a file that grew past
    /// it is mapped only that far), and no more than the file holds.
    pub(crate) fn open(path: &Path, seq: u64, writable: bool) -> Result<Segment> {
        let file =
            crate::os::files::open_regular(path, OpenOptions::new().read(true).write(writable))
                .map_err(|e| Error::io("open segment", path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| Error::io("stat segment", path, e))?
            .len();
        if file_len < DATA_START as u64 {
            return Err(Error::SegmentHeader {
                segment: seq,
                detail: format!("file is {file_len} bytes, shorter than its header page"),
            });
        }
        let header = pread_header(&file).map_err(|e| Error::io("read segment header", path, e))?;
        let len = match &header {
            HeaderState::Valid(h) => file_len.min(h.segment_size.get()),
            _ => file_len,
        };
        let len = usize::try_from(len).map_err(|_| Error::SegmentHeader {
            segment: seq,
            detail: "file too large to map".into(),
        })?;
        let data_end = data_end(&file, len as u64) as usize;
        let mut seg = Self::map(
            &file,
            path.to_path_buf(),
            seq,
            len,
            writable,
            header,
            data_end,
        )?;
        seg.file_len = file_len;
        Ok(seg)
    }

    fn map(
        file: &File,
        path: PathBuf,
        seq: u64,
        len: usize,
        writable: bool,
        header: HeaderState,
        data_end: usize,
    ) -> Result<Segment> {
        let mut opts = MmapOptions::new();
        opts.len(len);
        let map = if writable {
            opts.map_raw(file)
        } else {
            opts.map_raw_read_only(file)
        }
        .map_err(|e| Error::io("map segment", &path, e))?;
        #[cfg(target_vendor = "apple")]
        let file_id = file
            .metadata()
            .map(|m| crate::os::files::id_of(&m))
            .map_err(|e| Error::io("stat segment", &path, e))?;
        Ok(Segment {
            seq,
            path,
            map,
            len,
            header,
            file_len: len as u64,
            data_end: data_end.min(len),
            sealed: std::sync::atomic::AtomicBool::new(false),
            #[cfg(target_vendor = "apple")]
            file_id,
        })
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The map's length: the file's size, or the size the header gives if
    /// the file is larger.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a segment has at least its header page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The header as read when the file was opened.
    pub fn header(&self) -> &HeaderState {
        &self.header
    }

    /// No byte at or past this offset held data when the file was opened.
    pub(crate) fn data_end(&self) -> usize {
        self.data_end
    }

    /// The mapped bytes `[start, end)`.
    ///
    /// # Safety
    ///
    /// No one may write these bytes while the returned slice lives: in this
    /// process they must lie below the log's published end (the writer never
    /// writes there again), or the caller must hold the log's write lock and
    /// no writer may run. Bytes another process may be writing must be read
    /// with [`Segment::copy_out`] instead. See DESIGN.md, "Soundness".
    #[inline]
    pub(crate) unsafe fn bytes(&self, start: usize, end: usize) -> &[u8] {
        assert!(
            start <= end && end <= self.len,
            "segment range out of bounds"
        );
        // SAFETY: the range lies inside the mapping (checked above), which
        // stays mapped and backed for `self`'s lifetime (the file is never
        // shrunk); the caller guarantees nobody writes it meanwhile.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(start), end - start) }
    }

    /// The mapped bytes `[start, end)`, for writing.
    ///
    /// # Safety
    ///
    /// The caller must be the only one to read or write these bytes while
    /// the slice lives: the log's writer, at or past the published end, in a
    /// writable map.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn bytes_mut(&self, start: usize, end: usize) -> &mut [u8] {
        assert!(
            start <= end && end <= self.len,
            "segment range out of bounds"
        );
        // SAFETY: in bounds (checked), mapped for `self`'s lifetime, and the
        // caller guarantees exclusive access to the range.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(start), end - start) }
    }

    /// Copies mapped bytes from `start` into `dst` with volatile loads,
    /// never forming a reference to them: another *process* may be writing
    /// them. Copies fewer bytes (none if `start` is past the end) at the end
    /// of the map; returns the count.
    ///
    /// No writer of *this* process runs while it is called on a log's
    /// segment: a read-only open of a log this process writes reads through
    /// the writer's published end instead (see `registry`), and a write open
    /// reads before its writer exists. Concurrent stores from another
    /// process are outside Rust's memory model; volatile loads keep the
    /// compiler from assuming the bytes are stable, and the caller validates
    /// the copy (length, CRC, structure) before trusting any of it.
    pub(crate) fn copy_out(&self, start: usize, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len.saturating_sub(start));
        if n == 0 {
            return 0;
        }
        // SAFETY: `start < self.len`, so the pointer is inside the mapping.
        let src = unsafe { self.map.as_ptr().add(start) };
        let mut i = 0;
        // Bytes up to an 8-byte boundary of the source, then whole words.
        while i < n && (src as usize + i) % 8 != 0 {
            // SAFETY: `start + i < self.len`: inside the mapping, which
            // stays mapped and backed while `self` lives.
            dst[i] = unsafe { std::ptr::read_volatile(src.add(i)) };
            i += 1;
        }
        while i + 8 <= n {
            // SAFETY: `[start + i, start + i + 8)` is inside the mapping and
            // 8-byte aligned (checked by the loop above).
            let w = unsafe { std::ptr::read_volatile(src.add(i).cast::<u64>()) };
            dst[i..i + 8].copy_from_slice(&w.to_ne_bytes());
            i += 8;
        }
        while i < n {
            // SAFETY: as in the first loop.
            dst[i] = unsafe { std::ptr::read_volatile(src.add(i)) };
            i += 1;
        }
        n
    }

    /// Makes the bytes `[start, end)` durable; the range is clamped to the
    /// map. `msync(MS_SYNC)` of the pages, which on Linux returns once the
    /// device has them. On Apple systems `msync` stops at the drive's
    /// cache, so the file is then opened again (the map kept no
    /// descriptor), checked to be the mapped one, and flushed with
    /// `F_FULLFSYNC` (`os::durable`).
    pub(crate) fn sync_range(&self, start: usize, end: usize) -> io::Result<()> {
        let end = end.min(self.len);
        if end <= start {
            return Ok(());
        }
        self.map.flush_range(start, end - start)?;
        #[cfg(target_vendor = "apple")]
        {
            let file = crate::os::files::open_read(&self.path)?;
            if crate::os::files::id_of(&file.metadata()?) != self.file_id {
                return Err(io::Error::other(
                    "the segment's path names another file than the one mapped",
                ));
            }
            crate::os::durable::sync_file(&file)?;
        }
        Ok(())
    }

    /// Faults the pages of `[from, to)` (rounded in to whole pages, clamped
    /// to the map) in writable, without changing a byte: a page holding
    /// bytes before `from` is never touched. Advice only: on failure the
    /// writer's first store to each page faults instead. See
    /// [`CAN_POPULATE`].
    #[cfg(target_os = "linux")]
    pub(crate) fn populate(&self, from: usize, to: usize) {
        let page = page_size();
        let from = from.div_ceil(page) * page;
        let to = to.min(self.len) / page * page;
        if from < to {
            let _ = self
                .map
                .advise_range(Advice::PopulateWrite, from, to - from);
        }
    }

    /// No system but Linux faults pages in writable without writing them
    /// (`MADV_POPULATE_WRITE`): the writer's stores fault them in.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn populate(&self, from: usize, to: usize) {
        let _ = (from, to);
    }

    /// Drops from the page cache the clean pages of `[from, len)`, and of
    /// the largest folio that may hold `from`'s page (from the PMD-aligned
    /// offset at or below it), so the writer's stores and the pre-faulting
    /// thread fault fresh single pages in there.
    ///
    /// A read (the recovery scan, readahead) brings a file in as folios of
    /// up to a PMD (2 MiB with 4 KiB pages), and the page cache keeps
    /// dirtiness per folio: the first store into such a folio after a sync
    /// marks all of it dirty again, so every Strict commit inside it would
    /// write the whole folio (measured: ~700 KiB per 240-byte commit after
    /// a reopen with a cold cache), and pre-faulting past the writer would
    /// dirty its synced pages. Called at open, after the resync made every
    /// page clean, before anything reads the segment through this map.
    /// Advice only: pages another process maps stay cached; failure changes
    /// nothing but what is written twice.
    #[cfg(target_os = "linux")]
    pub(crate) fn evict_from(&self, from: usize) {
        let page = page_size();
        let pmd = page * (page / 8);
        let from = from / pmd * pmd;
        if from >= self.len {
            return;
        }
        // SAFETY: `MADV_DONTNEED` on a shared file mapping only unmaps the
        // pages from this process: the next access maps the file's bytes
        // again (a dirty page's data stays in the page cache). The range
        // lies inside the map, and its start is page-aligned.
        let _ = unsafe {
            self.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                from,
                self.len - from,
            )
        };
        if let Ok(file) = crate::os::files::open_read(&self.path) {
            let _ = rustix::fs::fadvise(
                &file,
                from as u64,
                std::num::NonZeroU64::new((self.len - from) as u64),
                rustix::fs::Advice::DontNeed,
            );
        }
    }

    /// Other systems are not known to group pages this way.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn evict_from(&self, from: usize) {
        let _ = from;
    }

    /// Tells the kernel the whole file will be read in order.
    pub fn advise_sequential(&self) {
        // Advice only: failure changes nothing but speed.
        let _ = self.map.advise(Advice::Sequential);
    }

    /// True once the header is written and durable (set by whoever made it
    /// so: recovery for a valid header, the log's sync path otherwise).
    pub fn is_sealed(&self) -> bool {
        self.sealed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records that the header is written and durable.
    pub(crate) fn set_sealed(&self) {
        self.sealed
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Creates segment `seq` in `dir`, whole: under a temporary name, marked
/// no-copy-on-write where the filesystem has it (btrfs: so the
/// preallocation really reserves the blocks), allocated with `fallocate`
/// (so a full disk fails here, never later as SIGBUS on a mapped page),
/// synced, renamed into place (refusing to replace an existing file),
/// directory synced and mapped. No page of it is touched: the log faults
/// pages in a window ahead of its writer once it uses the segment, so a
/// prepared segment never used holds no page (a recovery scan skips it as
/// a hole, where it would read faulted-in zeros). Its header page is left
/// zero ("blank") until the writer puts it into use; see [`write_header`].
pub(crate) fn create(dir: &Path, seq: u64, size: u64) -> Result<Segment> {
    let (file, final_path) = build_file(dir, seq, size, false, |_, _| Ok(()))?;
    let len = usize::try_from(size).map_err(|_| Error::Config("segment size too large".into()))?;
    let seg = Segment::map(
        &file,
        final_path,
        seq,
        len,
        true,
        HeaderState::Blank,
        DATA_START,
    )?;
    drop(file);
    Ok(seg)
}

/// Replaces segment `old` by a new file holding only its first `keep`
/// bytes (header and trusted frames; zeros after), and maps that. The old
/// file is never written: mappings of it (in any process) keep the bytes
/// they borrow, since an inode lives while it is mapped. Used by the
/// poisoned-log repair (DESIGN.md §7).
pub(crate) fn replace_with_prefix(dir: &Path, old: &Segment, keep: usize) -> Result<Segment> {
    use std::os::unix::fs::FileExt;
    let (file, path) = build_file(dir, old.seq, old.len as u64, true, |file, tmp| {
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < keep {
            let n = old.copy_out(at, &mut buf[..(keep - at).min(1 << 20)]);
            file.write_all_at(&buf[..n], at as u64)
                .map_err(|e| Error::io("write trusted prefix", tmp, e))?;
            at += n;
        }
        Ok(())
    })?;
    drop(file);
    let seg = Segment::open(&path, old.seq, true)?;
    seg.set_sealed();
    Ok(seg)
}

/// Makes `<seq>.wal` whole: a temporary file, marked no-copy-on-write where
/// the filesystem has it, allocated with `fallocate`, filled by `fill`,
/// synced, renamed into place (over an existing file only if `replace`),
/// directory synced. Returns the open file and its final path.
fn build_file(
    dir: &Path,
    seq: u64,
    size: u64,
    replace: bool,
    fill: impl FnOnce(&File, &Path) -> Result<()>,
) -> Result<(File, PathBuf)> {
    let final_path = dir.join(file_name(seq));
    let tmp_path = dir.join(format!("{seq:020}{TMP_SUFFIX}"));
    // A leftover of an interrupted creation (ours, whatever it is now)
    // goes first, so the file created is a new regular file.
    match fs::remove_file(&tmp_path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(Error::io("remove stale segment", &tmp_path, e))
        }
        _ => {}
    }
    let file = crate::os::files::open_regular(
        &tmp_path,
        OpenOptions::new().read(true).write(true).create_new(true),
    )
    .map_err(|e| Error::io("create segment", &tmp_path, e))?;
    let cleanup = |e: Error| {
        let _ = fs::remove_file(&tmp_path);
        e
    };
    crate::os::space::prepare_new_file(&file)
        .map_err(|e| cleanup(Error::io("set no-copy-on-write", &tmp_path, e)))?;
    crate::os::faults::before_allocate()
        .and_then(|()| crate::os::space::allocate(&file, size))
        .map_err(|e| cleanup(Error::io("fallocate", &tmp_path, e)))?;
    fill(&file, &tmp_path).map_err(cleanup)?;
    crate::os::durable::sync_file(&file)
        .map_err(|e| cleanup(Error::io("fsync new segment", &tmp_path, e)))?;
    crate::os::files::rename(&tmp_path, &final_path, replace)
        .map_err(|e| cleanup(Error::io("rename new segment", &final_path, e)))?;
    if let Err(e) = crate::os::durable::sync_dir(dir) {
        if !replace {
            // Never leave the name behind: a later creation of this number
            // would find it and fail (creation never replaces a file).
            let _ = fs::remove_file(&final_path);
        }
        return Err(e);
    }
    Ok((file, final_path))
}

/// Bytes `[from, from + len)` of the file at `path` as the device holds
/// them: read with `O_DIRECT`, around the page cache (which, after a sync
/// failed, may show bytes the device never got). Fewer bytes at the end of
/// the file. `Unsupported` where the system has no such read (tmpfs
/// refuses `O_DIRECT` with `EINVAL`; other systems have none).
pub(crate) fn read_direct(path: &Path, from: u64, len: usize) -> io::Result<Vec<u8>> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::FileExt;
        // Offsets, lengths and the buffer aligned to the largest logical
        // block size in use.
        const ALIGN: u64 = 4096;
        let start = from / ALIGN * ALIGN;
        let end = (from + len as u64).div_ceil(ALIGN) * ALIGN;
        let file = crate::os::files::open_regular_with(
            path,
            OpenOptions::new().read(true),
            rustix::fs::OFlags::DIRECT,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::INVAL.raw_os_error() => {
                io::Error::new(io::ErrorKind::Unsupported, "O_DIRECT is not supported here")
            }
            _ => e,
        })?;
        let n = (end - start) as usize;
        let mut raw = vec![0u8; n + ALIGN as usize];
        let skew = raw.as_ptr().align_offset(ALIGN as usize);
        let buf = &mut raw[skew..skew + n];
        let mut got = 0;
        while got < n {
            match file.read_at(&mut buf[got..], start + got as u64) {
                Ok(0) => break,
                // Whole blocks, except at the end of the file (then the
                // next read returns 0).
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let skip = (from - start) as usize;
        let have = got.saturating_sub(skip).min(len);
        Ok(buf[skip..skip + have].to_vec())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (path, from, len);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no read around the page cache here",
        ))
    }
}

/// Zeroes whatever a file that grew holds past its created size (a
/// filesystem that appended to it), without shrinking it: a reader in
/// another process may have it mapped, and a shrink would turn its reads
/// into SIGBUS. The bytes are deallocated (`FALLOC_FL_PUNCH_HOLE`) where the
/// filesystem can, and overwritten with zeros where it cannot.
pub(crate) fn zero_past_size(seg: &Segment) -> Result<()> {
    let (from, to) = (seg.len as u64, seg.file_len);
    if to <= from {
        return Ok(());
    }
    let path = &seg.path;
    let file = crate::os::files::open_regular(path, OpenOptions::new().write(true))
        .map_err(|e| Error::io("open segment", path, e))?;
    if !crate::os::space::punch_hole(&file, from, to - from) {
        use std::os::unix::fs::FileExt;
        let zeros = vec![0u8; 64 << 10];
        let mut at = from;
        while at < to {
            let n = (to - at).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], at)
                .map_err(|e| Error::io("zero grown segment", path, e))?;
            at += n as u64;
        }
    }
    crate::os::durable::sync_file(&file).map_err(|e| Error::io("zero grown segment", path, e))
}

/// Writes `header` into the first page of `seg` (through the map). Durable
/// once the page is synced.
///
/// # Safety
///
/// The caller must be the only thread writing headers, and no reference to
/// the header page of `seg` may exist (readers slice frames from
/// [`DATA_START`] and parse headers from private copies).
pub(crate) unsafe fn write_header(seg: &Segment, header: &Header) {
    // SAFETY: the caller holds the writer role and no one reads this page.
    let page = unsafe { seg.bytes_mut(0, HEADER_LEN) };
    page.copy_from_slice(header.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_checks_size_and_copy_out_stays_in_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("00000000000000000000.wal");
        std::fs::write(&short, [0u8; 100]).unwrap();
        assert!(matches!(
            Segment::open(&short, 0, false),
            Err(Error::SegmentHeader { .. })
        ));
        assert!(matches!(
            Segment::open(&dir.path().join("missing.wal"), 0, false),
            Err(Error::Io { .. })
        ));
        std::fs::write(&short, vec![0u8; 8192]).unwrap();
        let seg = Segment::open(&short, 0, false).unwrap();
        assert_eq!((seg.seq(), seg.len(), seg.is_empty()), (0, 8192, false));
        assert_eq!(seg.path(), short);
        assert!(format!("{seg:?}").contains("Segment"));
        assert!(matches!(seg.header(), HeaderState::Blank));
        seg.advise_sequential();
        assert!(!seg.is_sealed());
        let mut buf = [1u8; 16];
        assert_eq!(seg.copy_out(8190, &mut buf), 2);
        assert_eq!(seg.copy_out(8192, &mut buf), 0);
        assert_eq!(seg.copy_out(usize::MAX, &mut buf), 0);
        assert!(seg.sync_range(usize::MAX - 1, usize::MAX).is_ok());
    }

    #[test]
    fn a_grown_file_is_mapped_only_to_its_created_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        let header = Header::new(uuid::Uuid::from_u128(1), 0, 0, 8192);
        let mut bytes = vec![0u8; 3 * 4096];
        bytes[..HEADER_LEN].copy_from_slice(header.as_bytes());
        bytes[9000] = 7;
        std::fs::write(&path, &bytes).unwrap();
        let seg = Segment::open(&path, 0, false).unwrap();
        assert_eq!(seg.len(), 8192);
        assert!(matches!(seg.header(), HeaderState::Valid(_)));
    }

    #[test]
    fn create_never_replaces_an_existing_segment() {
        let dir = tempfile::tempdir().unwrap();
        let seg = create(dir.path(), 3, 8192).unwrap();
        drop(seg);
        std::fs::write(dir.path().join(file_name(3)), b"precious").unwrap();
        assert!(matches!(create(dir.path(), 3, 8192), Err(Error::Io { .. })));
        assert_eq!(
            std::fs::read(dir.path().join(file_name(3))).unwrap(),
            b"precious"
        );
    }
}
