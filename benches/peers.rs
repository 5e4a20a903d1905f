//! Thin wrappers over the peer logs from the package registry, so the
//! benchmark groups call every system the same way. Every peer is handed
//! the same entry bytes: the payload our log writes for that entry (its
//! rkyv archive), encoded once up front. The peers thus skip the per-append
//! encoding our log does (in their favour); they add their own framing.
//!
//! What each peer offers, and so where a table says "n/a":
//!
//! * `commitlog` 0.2: appends with one `write(2)` per call and has no sync
//!   at all (`CommitLog::flush` calls `File::flush`, a no-op for a file, and
//!   `msync`s only the offset index), so it takes part in W1 and W3 but
//!   not in W2 (durable commit: n/a).
//! * `okaywal` 0.3: every `EntryWriter::commit` fsyncs, there is no
//!   unsynced append, so it takes part in W2 only (W1 no-sync: n/a). It has
//!   no read-back API outside recovery into a `LogManager`, so W3: n/a.
//! * `walrus-rust` 0.2: `FsyncSchedule::NoFsync` for W1 and W3,
//!   `FsyncSchedule::SyncEach` for W2. Its schedule for O_SYNC is a
//!   process-wide `OnceLock` set by the first instance, so
//!   [`walrus_open`] always creates a `NoFsync` instance first: the
//!   SyncEach instances then fsync after each write (or batch) through a
//!   file opened without O_SYNC, the cheaper of its two behaviours. Every
//!   instance starts a background thread that never ends and keeps its
//!   files open until the process exits; we open as few as we can.

use std::io;
use std::path::Path;
use std::sync::Once;

use commitlog::message::MessageSet;

/// `commitlog`: a segmented log of CRC-32C'd messages with an mmap'd
/// offset index.
pub struct CommitLogPeer {
    log: commitlog::CommitLog,
    buf: commitlog::message::MessageBuf,
}

impl CommitLogPeer {
    /// Opens (creating) the log in `dir`, segments of 1 GiB.
    pub fn open(dir: &Path) -> io::Result<CommitLogPeer> {
        let mut opts = commitlog::LogOptions::new(dir);
        opts.segment_max_bytes(1 << 30)
            .index_max_items(2 << 20)
            .message_max_bytes(1 << 20);
        Ok(CommitLogPeer {
            log: commitlog::CommitLog::new(opts)?,
            buf: commitlog::message::MessageBuf::default(),
        })
    }

    /// Appends one message (no sync). Reuses one message buffer, so the
    /// append allocates nothing of ours (`append_msg` would allocate one).
    #[inline]
    pub fn append(&mut self, payload: &[u8]) -> io::Result<u64> {
        self.buf.clear();
        self.buf
            .push(payload)
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        let r = self
            .log
            .append(&mut self.buf)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(r.first())
    }

    /// The offset the next append gets.
    pub fn next_offset(&self) -> u64 {
        self.log.next_offset()
    }

    /// Reads every message from the start, 1 MiB at a time; `read`
    /// verifies every message's CRC-32C. Returns (messages, payload bytes).
    pub fn read_all(&self) -> io::Result<(u64, u64)> {
        let mut next = 0u64;
        let mut count = 0u64;
        let mut bytes = 0u64;
        loop {
            let msgs = self
                .log
                .read(next, commitlog::ReadLimit::max_bytes(1 << 20))
                .map_err(|e| io::Error::other(e.to_string()))?;
            let mut any = false;
            for m in msgs.iter() {
                any = true;
                count += 1;
                bytes += m.payload().len() as u64;
                next = m.offset() + 1;
            }
            if !any {
                return Ok((count, bytes));
            }
        }
    }
}

/// Opens a `commitlog` read-only view for recovery timing: `CommitLog::new`
/// on an existing directory.
pub fn commitlog_reopen(dir: &Path) -> io::Result<CommitLogPeer> {
    CommitLogPeer::open(dir)
}

/// `okaywal`: a log whose every entry commit is fsynced; entries are
/// written in chunks.
pub struct OkayWalPeer {
    wal: okaywal::WriteAheadLog,
}

impl OkayWalPeer {
    /// Opens (creating) the log in `dir` with the default configuration
    /// and a manager that keeps nothing (checkpoints are free).
    pub fn open(dir: &Path) -> io::Result<OkayWalPeer> {
        Ok(OkayWalPeer {
            wal: okaywal::Configuration::default_for(dir).open(okaywal::LogVoid)?,
        })
    }

    /// Writes one entry made of `chunks` and commits it (durable on
    /// return: okaywal fsyncs every commit, sharing syncs across threads).
    #[inline]
    pub fn commit(&self, chunks: &[&[u8]]) -> io::Result<()> {
        let mut entry = self.wal.begin_entry()?;
        for c in chunks {
            entry.write_chunk(c)?;
        }
        entry.commit().map(|_| ())
    }

    /// Shuts the log down.
    pub fn close(self) -> io::Result<()> {
        self.wal.shutdown()
    }
}

/// `walrus-rust`: topics of entries in 10 MB blocks of 1 GB files.
pub struct WalrusPeer {
    wal: walrus_rust::Walrus,
}

static WALRUS_PIN: Once = Once::new();

/// Opens (creating) the walrus instance `key` under `root` (its own
/// directory `root/key`). The first call in the process pins walrus's
/// process-wide fsync schedule to `NoFsync` (see the module doc).
/// `WALRUS_DATA_DIR` must already be `root` and `WALRUS_QUIET` set (the
/// bench's `main` sets both before any thread starts).
pub fn walrus_open(
    root: &Path,
    key: &str,
    schedule: walrus_rust::FsyncSchedule,
) -> io::Result<WalrusPeer> {
    debug_assert_eq!(
        std::env::var_os("WALRUS_DATA_DIR").as_deref(),
        Some(root.as_os_str())
    );
    WALRUS_PIN.call_once(|| {
        let pin = walrus_rust::Walrus::with_consistency_and_schedule_for_key(
            "pin-nofsync",
            walrus_rust::ReadConsistency::AtLeastOnce {
                persist_every: u32::MAX,
            },
            walrus_rust::FsyncSchedule::NoFsync,
        )
        .expect("walrus pin instance");
        drop(pin);
    });
    let wal = walrus_rust::Walrus::with_consistency_and_schedule_for_key(
        key,
        // Reads persist their position only every u32::MAX reads: the
        // cheapest reads walrus offers, and the log can be read again by a
        // new instance.
        walrus_rust::ReadConsistency::AtLeastOnce {
            persist_every: u32::MAX,
        },
        schedule,
    )?;
    Ok(WalrusPeer { wal })
}

impl WalrusPeer {
    /// Appends one entry to `topic`.
    #[inline]
    pub fn append(&self, topic: &str, payload: &[u8]) -> io::Result<()> {
        self.wal.append_for_topic(topic, payload)
    }

    /// Appends entries to `topic` as one atomic batch (walrus fsyncs a
    /// batch once, whatever the schedule).
    #[inline]
    pub fn append_batch(&self, topic: &str, batch: &[&[u8]]) -> io::Result<()> {
        self.wal.batch_append_for_topic(topic, batch)
    }

    /// Reads (consuming) every entry of `topic`, verifying each entry's
    /// checksum, in batches of up to 1 MiB (walrus's batched read, which
    /// is about 5x faster here than `read_next` one entry at a time).
    /// Returns (entries, payload bytes).
    pub fn read_all(&self, topic: &str) -> io::Result<(u64, u64)> {
        let mut count = 0u64;
        let mut bytes = 0u64;
        loop {
            let batch = self.wal.batch_read_for_topic(topic, 1 << 20, true)?;
            if batch.is_empty() {
                return Ok((count, bytes));
            }
            for e in &batch {
                count += 1;
                bytes += e.data.len() as u64;
            }
        }
    }

    /// Forgets the persisted read position, so a new instance reads the
    /// log from the start again.
    pub fn forget_read_position(dir: &Path) {
        let _ = std::fs::remove_file(dir.join("read_offset_idx_index.db"));
    }
}
