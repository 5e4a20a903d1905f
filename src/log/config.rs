//! How a log is laid out and how it syncs ([`Config`]), and what it has
//! done ([`Stats`](crate::Stats)).

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::frame::{self, FRAME_OVERHEAD};
use crate::format::header::{self, DATA_START, MIN_SEGMENT_SIZE};
use crate::log::mode::SyncMode;
use crate::recovery::RecoveryMode;

/// How a log is laid out and how it syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Size of every segment file, in bytes. Default 16 MiB (below the
    /// size at which ext4 made frequent syncs of a mapped file slow down:
    /// DESIGN.md §5). Fixed when a segment is created; a log may be
    /// reopened with another size (new segments get the new size).
    pub segment_size: u64,
    /// The largest entry payload an append accepts, in bytes; it must fit
    /// an empty segment. `None` (the default): 16 MiB, or less if the
    /// segment is smaller (with the default segment size, 16 MiB less the
    /// header page and the frame's 9 bytes). Reading is not limited by it: entries already in
    /// the log are kept and read whatever their size.
    pub max_entry_size: Option<u32>,
    /// When appends become durable. Default `Batched { 100 ms, 1000 }`.
    pub sync_mode: SyncMode,
    /// What opening does about damage. Default `PointInTime`.
    pub recovery_mode: RecoveryMode,
    /// Fault segment pages in writable in the background, a window
    /// ([`PREFAULT_WINDOW`](crate::os::segment::PREFAULT_WINDOW)) ahead of the writer, so appends take
    /// no page faults, and without dirtying more than that window ahead of
    /// the data. Default on. Linux only (see [`Config::prefault`]).
    pub prefault: bool,
    /// The id a log created by this open gets (the CRC seeds derive from
    /// it). Default `None`: a random v4 UUID. Fixing it makes a new log's
    /// bytes reproducible (tests, fixtures); an existing log keeps its id.
    pub instance_id: Option<Uuid>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            segment_size: 16 << 20,
            max_entry_size: None,
            sync_mode: SyncMode::default(),
            recovery_mode: RecoveryMode::default(),
            prefault: true,
            instance_id: None,
        }
    }
}

impl Config {
    /// Sets the segment size.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Sets the maximum entry payload.
    pub fn max_entry_size(mut self, bytes: u32) -> Self {
        self.max_entry_size = Some(bytes);
        self
    }

    /// The largest entry payload accepted under this configuration.
    pub fn effective_max_entry_size(&self) -> u32 {
        let room = self
            .segment_size
            .saturating_sub(DATA_START as u64 + FRAME_OVERHEAD as u64);
        self.max_entry_size
            .unwrap_or_else(|| room.min(16 << 20) as u32)
    }

    /// Sets the sync mode.
    pub fn sync_mode(mut self, mode: SyncMode) -> Self {
        self.sync_mode = mode;
        self
    }

    /// Sets the recovery mode.
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery_mode = mode;
        self
    }

    /// Sets the id of a log this open creates (see [`Config::instance_id`]).
    pub fn instance_id(mut self, id: Uuid) -> Self {
        self.instance_id = Some(id);
        self
    }

    /// Turns pre-faulting of new segments on or off. Only Linux can fault
    /// pages in ahead of the writer without writing them
    /// (`MADV_POPULATE_WRITE`); elsewhere the setting changes nothing.
    pub fn prefault(mut self, on: bool) -> Self {
        self.prefault = on;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.segment_size < MIN_SEGMENT_SIZE
            || self.segment_size > header::MAX_SEGMENT_SIZE
            || self.segment_size % 4096 != 0
        {
            return Err(Error::Config(format!(
                "segment_size {} must be a multiple of 4096, at least {MIN_SEGMENT_SIZE} and at most {}",
                self.segment_size,
                header::MAX_SEGMENT_SIZE
            )));
        }
        let room = self.segment_size - DATA_START as u64 - FRAME_OVERHEAD as u64;
        let max = self.effective_max_entry_size();
        if u64::from(max) > room {
            return Err(Error::Config(format!(
                "max_entry_size {max} does not fit an empty segment of {} bytes (at most {room})",
                self.segment_size
            )));
        }
        if max > MAX_ENTRY_SIZE {
            return Err(Error::Config(format!(
                "max_entry_size {max} is above {MAX_ENTRY_SIZE}, the most an entry's 32-bit archive offsets can address"
            )));
        }
        if (max as usize) < frame::MIN_PAYLOAD {
            return Err(Error::Config(format!(
                "max_entry_size {max} is below the smallest entry ({} bytes)",
                frame::MIN_PAYLOAD
            )));
        }
        Ok(())
    }
}

/// The largest `max_entry_size` accepted (1 GiB): rkyv archives payloads
/// with 32-bit relative offsets, so a payload must stay well inside 2 GiB;
/// a limit above this would let an append pass its size check and then
/// fail half-way through a transaction.
pub const MAX_ENTRY_SIZE: u32 = 1 << 30;

