//! The segment header and the names of segment files: pure functions over
//! bytes, no I/O. See DESIGN.md §2 for the byte layout.

use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

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
/// The largest LSN a log may reach. Every header field is bounded before
/// any arithmetic on it (a header with a valid CRC may still be hostile),
/// and the writer refuses an append that would pass this: LSN, offset and
/// sequence arithmetic can then never overflow.
pub const MAX_LSN: u64 = 1 << 62;
/// The largest segment sequence number.
pub const MAX_SEQ: u64 = 1 << 62;
/// The largest segment size accepted (1 TiB).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 40;

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
        if h.seq.get() > MAX_SEQ {
            return HeaderState::Invalid(format!(
                "sequence number {} is above the limit {MAX_SEQ}",
                h.seq.get()
            ));
        }
        if h.first_lsn.get() > MAX_LSN {
            return HeaderState::Invalid(format!(
                "first LSN {} is above the limit {MAX_LSN}",
                h.first_lsn.get()
            ));
        }
        let size = h.segment_size.get();
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&size) || size % 4096 != 0 {
            return HeaderState::Invalid(format!("header gives an impossible segment size {size}"));
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

/// The sequence number in a segment file name, or `None` if `name` is not
/// one (or names a sequence number above [`MAX_SEQ`]).
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&seq| seq <= MAX_SEQ)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_header_fields_are_invalid() {
        for (seq, lsn, size) in [
            (u64::MAX, 0, 8192),
            (0, u64::MAX - 10, 8192),
            (0, 0, u64::MAX),
            (0, 0, 4096),
        ] {
            let h = Header::new(Uuid::from_u128(1), seq, lsn, size);
            assert!(
                matches!(Header::read(h.as_bytes()), HeaderState::Invalid(_)),
                "{seq} {lsn} {size}"
            );
        }
    }

    #[test]
    fn error_messages_name_segments_by_their_file_name() {
        let at = crate::error::Location::in_segment(7, 9);
        assert_eq!(
            at.to_string(),
            format!("segment {} at offset 9", file_name(7))
        );
    }
}
