//! One segment file: its header, its creation, its mapping.
//!
//! A segment is a preallocated file of fixed size, mapped whole with
//! `MAP_SHARED`. Its first 4 KiB page holds the [`Header`] and nothing else;
//! frames start at [`DATA_START`]. See `DESIGN.md` for the byte layout and for
//! the argument that makes the raw slices handed out here sound.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::{Advice, MmapOptions, MmapRaw};
use uuid::Uuid;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Error, Result};

/// The magic bytes that open every segment file.
pub const MAGIC: [u8; 8] = *b"DURWAL\r\n";
/// The on-disk format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the header proper (the rest of the first page is zero).
pub const HEADER_LEN: usize = 128;
/// Offset of the first frame: the header has the first page to itself, so a
/// torn write of a frame page can never damage it.
pub const DATA_START: usize = 4096;
/// The smallest segment size accepted.
pub const MIN_SEGMENT_SIZE: u64 = 2 * DATA_START as u64;
/// The sector size assumed atomic for writes (see DESIGN.md).
pub const SECTOR: usize = 512;
/// The suffix of segment files.
pub const SUFFIX: &str = ".wal";
/// The suffix of a segment being created.
pub const TMP_SUFFIX: &str = ".wal.tmp";

/// The segment header, first bytes of every segment file.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub version: U32,
    /// Reserved for format flags; zero.
    pub flags: U32,
    /// The id shared by every segment of one log.
    pub instance_id: [u8; 16],
    /// This segment's sequence number; must match the file name.
    pub seq: U64,
    /// The LSN of this segment's first frame: where the previous segment's
    /// frames ended.
    pub first_lsn: U64,
    /// The file's size when created; the file must still have it.
    pub segment_size: U64,
    /// When the segment was put into use (µs since the Unix epoch).
    pub created_micros: U64,
    /// Zero.
    pub reserved: [u8; 60],
    /// CRC-32C of the 124 bytes before it.
    pub crc: U32,
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_LEN);
const _: () = assert!(
    HEADER_LEN <= SECTOR,
    "the header must sit in one atomic sector"
);
const _: () = assert!(DATA_START % SECTOR == 0 && DATA_START >= HEADER_LEN);

/// What the first bytes of a segment file hold.
#[derive(Debug, Clone)]
pub enum HeaderState {
    /// A valid header.
    Valid(Header),
    /// All zero: a segment prepared for use whose header was never written.
    Blank,
    /// Anything else; the string says what is wrong.
    Invalid(String),
}

impl Header {
    /// A header for segment `seq` of log `instance`, starting at `first_lsn`.
    pub fn new(instance: Uuid, seq: u64, first_lsn: u64, segment_size: u64) -> Self {
        let mut h = Header {
            magic: MAGIC,
            version: FORMAT_VERSION.into(),
            flags: 0.into(),
            instance_id: *instance.as_bytes(),
            seq: seq.into(),
            first_lsn: first_lsn.into(),
            segment_size: segment_size.into(),
            created_micros: now_micros().into(),
            reserved: [0; 60],
            crc: 0.into(),
        };
        h.crc = h.compute_crc().into();
        h
    }

    fn compute_crc(&self) -> u32 {
        crc32c::crc32c(&self.as_bytes()[..HEADER_LEN - 4])
    }

    /// Parses and checks the header at the start of `bytes`.
    pub fn read(bytes: &[u8]) -> HeaderState {
        let Ok((h, _)) = Header::read_from_prefix(bytes) else {
            return HeaderState::Invalid(format!(
                "file is {} bytes, shorter than a header",
                bytes.len()
            ));
        };
        if h.as_bytes().iter().all(|&b| b == 0) {
            return HeaderState::Blank;
        }
        if h.magic != MAGIC {
            return HeaderState::Invalid("bad magic: not a segment of this log format".into());
        }
        if h.crc.get() != h.compute_crc() {
            return HeaderState::Invalid(format!(
                "header checksum mismatch (stored {:#010x}, computed {:#010x})",
                h.crc.get(),
                h.compute_crc()
            ));
        }
        if h.version.get() != FORMAT_VERSION {
            return HeaderState::Invalid(format!(
                "format version {} (this build reads version {FORMAT_VERSION})",
                h.version.get()
            ));
        }
        HeaderState::Valid(h)
    }

    /// The log instance id.
    pub fn instance(&self) -> Uuid {
        Uuid::from_bytes(self.instance_id)
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The file name of segment `seq`: 20 zero-padded decimal digits and `.wal`.
pub fn file_name(seq: u64) -> String {
    format!("{seq:020}{SUFFIX}")
}

/// The sequence number in a segment file name, or `None` if `name` is not one.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The per-log salt mixed into every frame's CRC seed.
pub fn salt(instance: &Uuid) -> u32 {
    crc32c::crc32c(instance.as_bytes())
}

/// The CRC seed of the frame at `lsn` in a log with `salt`: a frame only
/// validates at the position, and in the log, it was written for.
#[inline]
pub fn seed(salt: u32, lsn: u64) -> u32 {
    salt ^ (lsn.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// Fsyncs a directory, so renames and unlinks in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// A mapped segment file.
///
/// The map is shared by the writer (which writes only past the published end
/// of the log) and readers (which read only below it). It is never resized:
/// the file is allocated whole before it is mapped and never truncated while
/// mapped, so every address in `[0, len)` stays backed.
pub struct Segment {
    seq: u64,
    path: PathBuf,
    file: File,
    map: MmapRaw,
    len: usize,
    /// True once the segment's header is written and durable.
    sealed: std::sync::atomic::AtomicBool,
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

impl Segment {
    /// Maps the segment file at `path`, read-write or read-only.
    pub fn open(path: &Path, seq: u64, writable: bool) -> Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| Error::io("open segment", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat segment", path, e))?
            .len();
        if len < DATA_START as u64 {
            return Err(Error::SegmentHeader {
                segment: seq,
                detail: format!("file is {len} bytes, shorter than its header page"),
            });
        }
        let len = usize::try_from(len).map_err(|_| Error::SegmentHeader {
            segment: seq,
            detail: "file too large to map".into(),
        })?;
        Self::map(file, path.to_path_buf(), seq, len, writable)
    }

    fn map(file: File, path: PathBuf, seq: u64, len: usize, writable: bool) -> Result<Segment> {
        let mut opts = MmapOptions::new();
        opts.len(len);
        let map = if writable {
            opts.map_raw(&file)
        } else {
            opts.map_raw_read_only(&file)
        }
        .map_err(|e| Error::io("map segment", &path, e))?;
        Ok(Segment {
            seq,
            path,
            file,
            map,
            len,
            sealed: std::sync::atomic::AtomicBool::new(false),
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

    /// The file's (and the map's) length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a segment has at least its header page.
    pub fn is_empty(&self) -> bool {
        false
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
    pub unsafe fn bytes(&self, start: usize, end: usize) -> &[u8] {
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
    pub unsafe fn bytes_mut(&self, start: usize, end: usize) -> &mut [u8] {
        assert!(
            start <= end && end <= self.len,
            "segment range out of bounds"
        );
        // SAFETY: in bounds (checked), mapped for `self`'s lifetime, and the
        // caller guarantees exclusive access to the range.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(start), end - start) }
    }

    /// Copies mapped bytes from `start` into `dst` without ever forming a
    /// reference to them, so it is sound even while another process writes
    /// them. Copies fewer bytes at the end of the file; returns the count.
    pub fn copy_out(&self, start: usize, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len.saturating_sub(start));
        // SAFETY: `[start, start + n)` is inside the mapping; the copy reads
        // through a raw pointer into `dst`, which we own exclusively. A
        // concurrent write by another process can only make the copied
        // bytes stale or mixed, which the caller's validation rejects.
        unsafe { std::ptr::copy_nonoverlapping(self.map.as_ptr().add(start), dst.as_mut_ptr(), n) };
        n
    }

    /// Makes the bytes `[start, end)` durable (`msync(MS_SYNC)`).
    pub fn sync_range(&self, start: usize, end: usize) -> io::Result<()> {
        if end <= start {
            return Ok(());
        }
        self.map.flush_range(start, end - start)
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
    pub fn set_sealed(&self) {
        self.sealed
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Creates segment `seq` in `dir`, whole: under a temporary name, allocated
/// with `fallocate` (so a full disk fails here, never later as SIGBUS on a
/// mapped page), synced, renamed into place, directory synced, mapped, and
/// pre-faulted for writing. Its header page is left zero ("blank") until the
/// writer puts it into use; see [`write_header`].
pub fn create(dir: &Path, seq: u64, size: u64, prefault: bool) -> Result<Segment> {
    let final_path = dir.join(file_name(seq));
    let tmp_path = dir.join(format!("{seq:020}{TMP_SUFFIX}"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp_path)
        .map_err(|e| Error::io("create segment", &tmp_path, e))?;
    let cleanup = |e: Error| {
        let _ = fs::remove_file(&tmp_path);
        e
    };
    crate::durability::faults::before_allocate()
        .map_err(|e| cleanup(Error::io("fallocate", &tmp_path, e)))?;
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, size)
        .map_err(|e| cleanup(Error::io("fallocate", &tmp_path, e.into())))?;
    file.sync_all()
        .map_err(|e| cleanup(Error::io("fsync new segment", &tmp_path, e)))?;
    fs::rename(&tmp_path, &final_path)
        .map_err(|e| cleanup(Error::io("rename new segment", &final_path, e)))?;
    sync_dir(dir)?;
    let len = usize::try_from(size).map_err(|_| Error::Config("segment size too large".into()))?;
    let seg = Segment::map(file, final_path, seq, len, true)?;
    if prefault {
        // Fault every page in writable now, off the append path. Advice
        // only: without it the first write to each page faults instead.
        let _ = seg
            .map
            .advise_range(Advice::PopulateWrite, DATA_START, len - DATA_START);
    }
    Ok(seg)
}

/// Writes `header` into the first page of `seg` (through the map). Durable
/// once the page is synced.
///
/// # Safety
///
/// The caller must be the only thread writing headers, and no reference to
/// the header page of `seg` may exist (readers slice frames from
/// [`DATA_START`] and parse headers from private copies).
pub unsafe fn write_header(seg: &Segment, header: &Header) {
    // SAFETY: the caller holds the writer role and no one reads this page.
    let page = unsafe { seg.bytes_mut(0, HEADER_LEN) };
    page.copy_from_slice(header.as_bytes());
}
