//! What recovery found: the recovery mode that judges it, the first
//! problem, and the report of an open.

use std::time::Duration;

use crate::error::{Error, Location, ProblemClass};
use crate::format::header::{self};
use crate::os::segment::Segment;
use crate::read::snapshot::SegRef;

/// What to do when recovery finds more than a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum RecoveryMode {
    /// Keep the valid prefix, whatever stopped the scan, and report what was
    /// dropped. The default.
    #[default]
    PointInTime,
    /// Refuse to open ([`Error::Corrupt`]) unless the only problem is a torn
    /// tail. Use it with [`SyncMode::Strict`](crate::SyncMode::Strict).
    AbsoluteConsistency,
}

/// The first problem recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Problem {
    /// Torn tail or mid-log corruption.
    pub class: ProblemClass,
    /// The segment's sequence number.
    pub segment: u64,
    /// The segment's file name.
    pub file: String,
    /// The byte offset in that file where the valid data ends.
    pub offset: u64,
    /// The LSN where the valid log ends.
    pub lsn: u64,
    /// What was found there.
    pub detail: String,
}

impl Problem {
    /// The problem's location.
    pub fn location(&self) -> Location {
        Location::in_segment(self.segment, self.offset)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.location(), self.class, self.detail)
    }
}

/// What opening a log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RecoveryReport {
    /// Segments in the recovered log.
    pub segments: usize,
    /// Valid entries.
    pub entries: u64,
    /// Transactions with a BeginTxn and a CommitTxn.
    pub committed_txns: u64,
    /// Transactions ended by AbortTxn.
    pub aborted_txns: u64,
    /// Transactions with a BeginTxn and no end: dropped by replay.
    pub incomplete_txns: u64,
    /// The LSN of the first entry still in the log.
    pub first_lsn: u64,
    /// The LSN of the last valid entry, if there is one.
    pub last_lsn: Option<u64>,
    /// The LSN the next append gets: the end of the valid log.
    pub end_lsn: u64,
    /// Bytes of frames found after the valid end and dropped.
    pub bytes_discarded: u64,
    /// The first problem found, if any.
    pub problem: Option<Problem>,
    /// How long the recovery scan took.
    #[cfg_attr(feature = "serde", serde(with = "duration_secs"))]
    pub duration: Duration,
}

#[cfg(feature = "serde")]
mod duration_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = <f64 as serde::Deserialize>::deserialize(d)?;
        Ok(Duration::from_secs_f64(secs.max(0.0)))
    }
}

pub(crate) fn header_problem(seg: &Segment, lsn: u64, detail: String) -> Problem {
    Problem {
        class: ProblemClass::MidLogCorruption,
        segment: seg.seq(),
        file: header::file_name(seg.seq()),
        offset: 0,
        lsn,
        detail,
    }
}

pub(crate) fn problem_at(
    sref: &SegRef,
    off: usize,
    class: ProblemClass,
    error: Option<Error>,
    fallback: &str,
) -> Problem {
    let seq = sref.seg.seq();
    Problem {
        class,
        segment: seq,
        file: header::file_name(seq),
        offset: off as u64,
        lsn: sref.lsn_of(off),
        detail: match error {
            Some(e) => e.to_string(),
            None => format!("{}: {fallback}", Location::in_segment(seq, off as u64)),
        },
    }
}
