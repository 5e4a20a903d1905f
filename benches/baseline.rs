//! The user's original design, as small as it was specified, for the
//! benchmarks to compare against: one file, a `BufWriter`, bincode payloads
//! of a serde entry enum, crc32fast, and the same frame layout as ours
//! (`[len u32][type u8][payload][crc u32]`, `crc` over `[type][payload]`).
//! Strict mode is an fsync (here `fdatasync`, see [`Baseline::append`])
//! after every append; otherwise nothing is synced and the `BufWriter`
//! writes when its buffer fills.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The entry model of the original design: the same six kinds as
/// `durability::WalEntry`, owned, serialized with bincode.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum BaselineEntry {
    BeginTxn {
        txn_id: u64,
        run_id: [u8; 16],
        timestamp: u64,
    },
    Write {
        run_id: [u8; 16],
        key: Vec<u8>,
        value: Vec<u8>,
        version: u64,
    },
    Delete {
        run_id: [u8; 16],
        key: Vec<u8>,
        version: u64,
    },
    CommitTxn {
        txn_id: u64,
        run_id: [u8; 16],
    },
    AbortTxn {
        txn_id: u64,
        run_id: [u8; 16],
    },
    Checkpoint {
        snapshot_id: [u8; 16],
        version: u64,
        active_runs: Vec<[u8; 16]>,
    },
}

impl BaselineEntry {
    /// The frame type tag (the same tags as ours).
    pub fn tag(&self) -> u8 {
        match self {
            BaselineEntry::BeginTxn { .. } => 1,
            BaselineEntry::Write { .. } => 2,
            BaselineEntry::Delete { .. } => 3,
            BaselineEntry::CommitTxn { .. } => 4,
            BaselineEntry::AbortTxn { .. } => 5,
            BaselineEntry::Checkpoint { .. } => 6,
        }
    }

    /// The value of a write (for the read benchmarks to touch).
    pub fn value_len(&self) -> usize {
        match self {
            BaselineEntry::Write { value, .. } => value.len(),
            _ => 0,
        }
    }
}

/// One log file written through a `BufWriter`.
pub struct Baseline {
    out: BufWriter<File>,
    strict: bool,
    /// Reused for the bincode payload, so an append allocates nothing (a
    /// small kindness to the baseline: the design as written called
    /// `bincode::serialize`, which allocates a `Vec` per append).
    scratch: Vec<u8>,
    /// Bytes appended so far (the next frame's offset).
    end: u64,
}

impl Baseline {
    /// Creates (truncating) the log file `path`. `strict`: fsync after
    /// every append.
    pub fn create(path: &Path, strict: bool) -> io::Result<Baseline> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok(Baseline {
            out: BufWriter::with_capacity(64 << 10, file),
            strict,
            scratch: Vec::with_capacity(8 << 10),
            end: 0,
        })
    }

    /// Appends one entry; returns its offset. In strict mode the entry is
    /// durable on return: the buffer is flushed and the file synced with
    /// `fdatasync` (`File::sync_data`). On a file that grows with every
    /// append `fdatasync` must also commit the new size, so it costs what
    /// `fsync` costs; it is the cheaper of the two where they differ.
    pub fn append(&mut self, entry: &BaselineEntry) -> io::Result<u64> {
        self.scratch.clear();
        bincode::serialize_into(&mut self.scratch, entry).map_err(io::Error::other)?;
        let tag = entry.tag();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[tag]);
        crc.update(&self.scratch);
        let at = self.end;
        self.out
            .write_all(&(self.scratch.len() as u32).to_le_bytes())?;
        self.out.write_all(&[tag])?;
        self.out.write_all(&self.scratch)?;
        self.out.write_all(&crc.finalize().to_le_bytes())?;
        self.end += self.scratch.len() as u64 + 9;
        if self.strict {
            self.out.flush()?;
            self.out.get_ref().sync_data()?;
        }
        Ok(at)
    }

    /// Flushes the buffer and syncs the file.
    pub fn close(mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_all()
    }
}

/// What a full read found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    /// Valid entries read.
    pub entries: u64,
    /// Bytes of valid frames (where the valid log ends).
    pub end: u64,
    /// Sum of the values' lengths (something to consume).
    pub value_bytes: u64,
}

/// Reads the log file `path` from the start, checking every frame's CRC and
/// decoding every payload with bincode into an owned entry, up to the first
/// invalid or incomplete frame. This is both the original design's replay
/// and its recovery (finding the valid end).
pub fn read_all(path: &Path, mut f: impl FnMut(&BaselineEntry)) -> io::Result<ReadStats> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut stats = ReadStats::default();
    let mut header = [0u8; 5];
    let mut payload = Vec::with_capacity(8 << 10);
    let mut crc_bytes = [0u8; 4];
    loop {
        if read_exact_or_eof(&mut r, &mut header)? {
            break;
        }
        let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
        if len == 0 || len > 16 << 20 {
            break;
        }
        payload.resize(len, 0);
        if read_exact_or_eof(&mut r, &mut payload)? || read_exact_or_eof(&mut r, &mut crc_bytes)? {
            break;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header[4..]);
        crc.update(&payload);
        if crc.finalize() != u32::from_le_bytes(crc_bytes) {
            break;
        }
        let Ok(entry) = bincode::deserialize::<BaselineEntry>(&payload) else {
            break;
        };
        if entry.tag() != header[4] {
            break;
        }
        stats.entries += 1;
        stats.end += len as u64 + 9;
        stats.value_bytes += entry.value_len() as u64;
        f(&entry);
    }
    Ok(stats)
}

/// `read_exact`, but a clean or partial end of file returns `true`.
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(true),
        Err(e) => Err(e),
    }
}
