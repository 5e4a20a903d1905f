//! The crate's one error type.
//!
//! Every corruption carries a [`Location`]: the byte offset where the bad
//! bytes start and, when the bytes came from a segment file, that segment's
//! sequence number (its file name is derived from it). `Display` always says
//! both, so an operator can point `xxd -s OFFSET` at the file.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Where a problem was found: a byte offset, inside a segment when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    /// The segment's sequence number, when the bytes came from a segment.
    pub segment: Option<u64>,
    /// The byte offset: within the segment file when `segment` is set,
    /// otherwise within the buffer handed to the decoder.
    pub offset: u64,
}

impl Location {
    /// A location in a plain buffer.
    pub const fn at(offset: u64) -> Self {
        Location {
            segment: None,
            offset,
        }
    }

    /// A location in segment `seq`.
    pub const fn in_segment(seq: u64, offset: u64) -> Self {
        Location {
            segment: Some(seq),
            offset,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.segment {
            Some(seq) => write!(f, "segment {} at offset {}", segment_file(seq), self.offset),
            None => write!(f, "offset {}", self.offset),
        }
    }
}

/// What a recovery found wrong, in the terms of DESIGN.md's crash table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ProblemClass {
    /// Bad bytes at the end of the last segment with nothing valid after
    /// them: what a crash leaves. Expected; the valid prefix is whole.
    TornTail,
    /// Damage that a crash cannot explain: valid frames follow the bad one,
    /// a segment before the last is damaged, or the segment files disagree.
    MidLogCorruption,
}

impl fmt::Display for ProblemClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProblemClass::TornTail => "torn tail",
            ProblemClass::MidLogCorruption => "mid-log corruption",
        })
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The CRC-32C stored in a frame does not match its type and payload.
    #[error("{at}: checksum mismatch (stored {expected:#010x}, computed {got:#010x}); the frame is damaged")]
    Checksum {
        /// Where the frame starts.
        at: Location,
        /// The CRC stored in the frame.
        expected: u32,
        /// The CRC computed over the frame's type and payload.
        got: u32,
    },

    /// A frame's length runs past the bytes available (a torn or lying length).
    #[error("{at}: frame needs {needed} bytes but only {available} remain; the frame is truncated or its length is damaged")]
    Truncated {
        /// Where the frame starts.
        at: Location,
        /// Bytes the frame claims to occupy, header and CRC included.
        needed: u64,
        /// Bytes left in the buffer or segment from the frame's start.
        available: u64,
    },

    /// A frame's length exceeds the limit of the [`Decoder`](crate::format::frame::Decoder)
    /// that read it. (The log reads its own files with no limit but the
    /// segment's size: a damaged length there is [`Error::Truncated`].)
    #[error("{at}: frame payload length {len} exceeds the decoder's limit of {max} bytes; the length is damaged or the frame was written under a larger limit")]
    TooLarge {
        /// Where the frame starts.
        at: Location,
        /// The payload length read.
        len: u64,
        /// The configured maximum.
        max: u64,
    },

    /// A frame's payload is shorter than the smallest possible entry.
    #[error("{at}: frame payload length {len} is below the smallest entry ({min} bytes); the length is damaged")]
    TooSmall {
        /// Where the frame starts.
        at: Location,
        /// The payload length read.
        len: u64,
        /// The smallest valid payload.
        min: u64,
    },

    /// The frame's type tag is not one this version knows. The CRC matched,
    /// so the frame was probably written by a newer version of this crate.
    #[error("{at}: unknown entry type tag {tag}; written by a newer version? upgrade the reader")]
    UnknownType {
        /// Where the frame starts.
        at: Location,
        /// The tag read.
        tag: u8,
    },

    /// The frame's type tag and the entry in its payload disagree.
    #[error("{at}: frame type tag {tag} does not match its payload's entry type {payload_tag}")]
    TypeMismatch {
        /// Where the frame starts.
        at: Location,
        /// The tag in the frame header.
        tag: u8,
        /// The tag of the entry the payload holds.
        payload_tag: u8,
    },

    /// The payload failed rkyv validation or is not in canonical form.
    #[error("{at}: invalid payload: {detail}")]
    InvalidPayload {
        /// Where the frame starts.
        at: Location,
        /// What the validator said.
        detail: String,
    },

    /// An entry is too large to append.
    #[error("entry of {len} bytes exceeds the maximum entry size {max} (raise Config::max_entry_size, which must fit an empty segment)")]
    EntryTooLarge {
        /// The payload size of the entry.
        len: u64,
        /// The largest payload allowed.
        max: u64,
    },

    /// A batch of entries, which is written as one unit in one segment,
    /// is larger than a segment can hold. Nothing was written.
    #[error("a batch of {len} bytes does not fit one segment ({max} bytes of room); split it into smaller batches, or use larger segments")]
    BatchTooLarge {
        /// The batch's frames, in bytes.
        len: u64,
        /// The most a segment holds.
        max: u64,
    },

    /// A segment file's header is missing, damaged or belongs elsewhere.
    #[error("segment {}: {detail}", segment_file(*.segment))]
    SegmentHeader {
        /// The segment's sequence number (from its file name).
        segment: u64,
        /// What is wrong with it.
        detail: String,
    },

    /// The segment files of a log do not form one log: a gap, a duplicate,
    /// a segment that does not start where the previous one ended.
    #[error("{dir}: {detail}")]
    Layout {
        /// The log directory.
        dir: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// Recovery in [`RecoveryMode::AbsoluteConsistency`](crate::RecoveryMode)
    /// found more than a torn tail.
    #[error(
        "{at}: {class}: {detail}; open with RecoveryMode::PointInTime to keep the valid prefix"
    )]
    Corrupt {
        /// Where the first problem is.
        at: Location,
        /// What kind of problem it is.
        class: ProblemClass,
        /// What was wrong.
        detail: String,
    },

    /// Another handle or process holds the log open for writing.
    #[error("the log is locked for writing by another handle or process (lock file {lock_file})")]
    Locked {
        /// The lock file held.
        lock_file: PathBuf,
    },

    /// The directory exists but holds no log, and the call does not create one.
    #[error("{dir} is not a log: no segment files")]
    NotALog {
        /// The directory.
        dir: PathBuf,
    },

    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// An earlier sync failed, so nothing written since can be trusted to be
    /// durable; the handle refuses further work. Reopen the log to recover.
    #[error("the log handle is poisoned by a failed sync ({cause}); reopen the log to recover")]
    Poisoned {
        /// The failure that poisoned the handle.
        cause: String,
    },

    /// The log was closed.
    #[error("the log is closed")]
    Closed,

    /// An append would take the log past the largest LSN or segment
    /// sequence number it may reach
    /// ([`MAX_LSN`](crate::format::header::MAX_LSN),
    /// [`MAX_SEQ`](crate::format::header::MAX_SEQ)). Nothing was written.
    #[error("the log is full: {detail}; start a new log")]
    LogFull {
        /// What limit was reached.
        detail: String,
    },

    /// A call's argument is not something the log can do, e.g. a
    /// `Truncate` entry passed to an append.
    #[error("invalid argument: {detail}")]
    InvalidArgument {
        /// What is wrong.
        detail: String,
    },

    /// The log's metadata file ([`Wal::meta`](crate::Wal::meta)) is damaged.
    #[error("{}: damaged metadata file: {detail}", .path.display())]
    BadMeta {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// The log's poisoned-log record (`POISONED`: a sync of this log failed
    /// in an earlier run, DESIGN.md §7) cannot be read. A write open
    /// refuses rather than trust the page cache the record warns about.
    #[error("{}: damaged poisoned-log record: {detail}; a sync of this log failed earlier and how much of it reached the disk is unknown. If the machine has restarted since, the page cache holds only what the disk has: remove the file and open again", .path.display())]
    BadPoisonRecord {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// The log's purge mark (`PURGED`: the LSN below which every entry is
    /// purged, DESIGN.md §9) cannot be read, or belongs to another log.
    /// Opens refuse rather than take it for "no mark", which would bring
    /// purged entries back into reads.
    #[error("{}: damaged purge mark: {detail}; entries below the log's purge point would reappear without it. Restore the file from a backup, or, if reading entries that were purged is acceptable, remove it", .path.display())]
    BadPurgeMark {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// An LSN that does not name the start of an entry in this log.
    #[error("LSN {lsn} is not the position of an entry in this log ({detail})")]
    BadLsn {
        /// The LSN asked for.
        lsn: u64,
        /// Why it is rejected.
        detail: String,
    },

    /// An I/O call failed. The message names the call, the file and the
    /// operating system's error, once: the error is in the message, not a
    /// [`source`](std::error::Error::source), so a reporter that prints
    /// the chain (`anyhow`'s `{:#}`) does not print it twice.
    #[error("{op} {}: {error}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error from the operating system.
        error: io::Error,
    },
}

impl Error {
    /// The location of a frame-level corruption, if this is one.
    pub fn location(&self) -> Option<Location> {
        match self {
            Error::Checksum { at, .. }
            | Error::Truncated { at, .. }
            | Error::TooLarge { at, .. }
            | Error::TooSmall { at, .. }
            | Error::UnknownType { at, .. }
            | Error::TypeMismatch { at, .. }
            | Error::InvalidPayload { at, .. }
            | Error::Corrupt { at, .. } => Some(*at),
            _ => None,
        }
    }

    /// The same error, located in segment `seq`.
    pub(crate) fn in_segment(mut self, seq: u64) -> Self {
        if let Error::Checksum { at, .. }
        | Error::Truncated { at, .. }
        | Error::TooLarge { at, .. }
        | Error::TooSmall { at, .. }
        | Error::UnknownType { at, .. }
        | Error::TypeMismatch { at, .. }
        | Error::InvalidPayload { at, .. } = &mut self
        {
            at.segment = Some(seq);
        }
        self
    }

    /// The same error with its offset moved by `delta` (a frame decoded from
    /// a copy of the bytes at `delta`).
    pub(crate) fn shifted(mut self, delta: u64) -> Self {
        if let Error::Checksum { at, .. }
        | Error::Truncated { at, .. }
        | Error::TooLarge { at, .. }
        | Error::TooSmall { at, .. }
        | Error::UnknownType { at, .. }
        | Error::TypeMismatch { at, .. }
        | Error::InvalidPayload { at, .. } = &mut self
        {
            at.offset += delta;
        }
        self
    }

    /// True for errors that mean bytes read were damaged (as opposed to I/O,
    /// configuration or usage errors).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Checksum { .. }
                | Error::Truncated { .. }
                | Error::TooLarge { .. }
                | Error::TooSmall { .. }
                | Error::UnknownType { .. }
                | Error::TypeMismatch { .. }
                | Error::InvalidPayload { .. }
                | Error::SegmentHeader { .. }
                | Error::Layout { .. }
                | Error::Corrupt { .. }
        )
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, error: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            error,
        }
    }
}

/// A segment's file name, as `format::header::file_name` gives it (a test
/// there holds the two equal): the error type is the crate's ground floor
/// and imports nothing of it.
fn segment_file(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `e` and the chain of its sources, `: `-separated: the whole story in one
/// line, for messages built from an error (a poisoning cause).
pub(crate) fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
