//! The log: opening (create or recover), appending, syncing, closing.
//!
//! Writing: an entry is encoded straight into the mapped active segment past
//! the published end, then the end is published (Release); readers load it
//! (Acquire) and only look below it. The [`SyncMode`] decides when published
//! bytes are made durable. See DESIGN.md, "Write and publish protocol".
//! Following the log is in `tail`, read-only opens in `reader`, retention
//! in `retention`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::log::publish::Published;
use crate::sync::{Condvar, Mutex};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::entry::{BorrowedEntry, EntryKind, Op, RunId, WalEntry};
use crate::format::frame::{self, Decoder, FRAME_OVERHEAD};
use crate::format::header::{self, Header, DATA_START, MAX_LSN, MAX_SEQ, MIN_SEGMENT_SIZE};
use crate::format::Lsn;
use crate::log::commit::{Durable, DurableNotify};
use crate::log::group::{Committer, GroupCommit, Ticker};
use crate::log::mode::SyncMode;
use crate::log::notify::TailNotify;
pub use crate::log::position::{Appended, BatchPosition, EntryPosition, TxnPosition};
use crate::log::registry::{self, DirId, DirState};
use crate::log::retention::Pins;
use crate::log::tail::Tail;
use crate::os::lock::{create_log_dir, lock_dir, lock_generation, LOCK_FILE};
use crate::os::segment::{self, Segment};
use crate::os::space::SpaceReservation;
use crate::read::dead::Truncations;
use crate::read::replay::{ReplayStats, Txn};
use crate::read::runs::{diff_states, KeyDiff, OpenTxns, RunIndex};
use crate::read::snapshot::SegRef;
use crate::read::snapshot::Snapshot;
use crate::recovery::{self, RecoveryMode, RecoveryReport, ScanOptions};

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
    /// ([`segment::PREFAULT_WINDOW`]) ahead of the writer, so appends take
    /// no page faults, and without dirtying more than that window ahead of
    /// the data. Default on.
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

    /// Turns pre-faulting of new segments on or off.
    pub fn prefault(mut self, on: bool) -> Self {
        self.prefault = on;
        self
    }

    fn validate(&self) -> Result<()> {
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

/// The decoder the log reads its own files with. `max_entry_size` limits
/// appends only: a log written under a larger limit (or with larger
/// segments and the default limit) must read back whole under a smaller
/// one, or a write open would discard its large entries as damage. The
/// bound that remains is structural: a frame must fit in the segment that
/// holds it, which every read checks before touching the payload.
pub(crate) const READ_DECODER: Decoder = Decoder::new(u32::MAX);

/// Counters that show what the log has done, for tests and monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Completed syncs.
    pub syncs: u64,
    /// Everything below this LSN is durable.
    pub synced_lsn: Lsn,
    /// The end of the published log: the next append's LSN.
    pub end_lsn: Lsn,
    /// The first LSN still in the log.
    pub start_lsn: Lsn,
    /// Segments in the log.
    pub segments: usize,
    /// Append calls (`append*`, `append_txn`, `checkpoint`) completed.
    pub appends: u64,
    /// Whether the filesystem reserves the space of a preallocated segment
    /// (so that a full disk is an error at segment creation, never a signal
    /// on a write into the map); see [`SpaceReservation`].
    pub space: SpaceReservation,
}

/// State shared by the handle, its background threads and tail readers.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub config: Config,
    pub instance: Uuid,
    pub salt: u32,
    pub decoder: Decoder,
    /// The segment list and the published range (DESIGN.md §8).
    pub log: Published<SegRef>,
    pub group: GroupCommit,
    pub appends: AtomicU64,
    pub tail_notify: TailNotify,
    /// Positions tails still have to read: retention keeps them.
    pub pins: Pins,
    /// Held for the whole of a `truncate_before`.
    pub retention: Mutex<()>,
    /// Waiters for durability (commit notification).
    pub durable: DurableNotify,
    /// This directory's entry in the process-wide registry.
    pub dir_state: Arc<DirState>,
    pub space: SpaceReservation,
    /// Pages faulted in ahead of the writer, never below it (§5, §8).
    pub prefault: crate::log::prefault::Prefault,
    /// Where the writer's next byte goes (the published end, or past it
    /// while a unit is being written): read by the prefault thread.
    pub written: AtomicU64,
    pub writer: Mutex<Writer>,
}

impl Shared {
    /// A consistent view of the published log: every LSN in its range lies
    /// in one of its segments ([`Published::view`], DESIGN.md §8).
    pub(crate) fn snapshot(&self) -> Snapshot {
        // One read-locked section gives the segments, the range and the
        // deleted ranges of one moment (DESIGN.md §8).
        let v = self.log.view();
        Snapshot {
            start: v.start,
            segs: v.segs,
            end: v.end,
            salt: self.salt,
            decoder: self.decoder,
            dead: v.dead,
        }
    }

    /// Makes everything below `target` durable (group commit). A failed
    /// sync poisons the handle and records, process-wide, where the durable
    /// log ended (the poisoned-log rule, DESIGN.md §7).
    pub(crate) fn sync_to(&self, target: Lsn) -> Result<()> {
        self.sync_to_as(target, false)
    }

    /// [`Shared::sync_to`]; `appender`: the caller is an append counted by
    /// a [`Committer`], which a leader absorbs others for.
    pub(crate) fn sync_to_as(&self, target: Lsn, appender: bool) -> Result<()> {
        let result = self
            .group
            .sync_to(
                target,
                appender,
                || self.log.end(),
                |from, to| {
                    crate::os::faults::before_sync()
                        .and_then(|()| self.sync_range(from, to))
                        .inspect_err(|_| {
                            // Everything below `from` was durable before
                            // this sync began.
                            self.dir_state.poison(&self.dir, self.instance, from);
                        })
                },
            )
            .map_err(|cause| Error::Poisoned { cause });
        match &result {
            // The leader of a completed sync wakes the callbacks' thread
            // (never runs them here: a durability promise may depend on
            // this thread, and the caller may hold the log's locks).
            Ok(true) => self.durable.synced(),
            Ok(false) => {}
            Err(Error::Poisoned { cause }) => self.durable.poison(cause.clone()),
            Err(_) => {}
        }
        result.map(drop)
    }

    /// Poisons the handle (a write failed half-way). No sync failed, so
    /// the page cache still tells the truth: a reopen keeps everything.
    pub(crate) fn poison(&self, cause: String) {
        self.group.set_poison(cause.clone());
        self.durable.poison(cause);
    }

    /// Makes `[from, to)` durable: `msync`s its bytes in every segment it
    /// touches, oldest first. A segment not yet sealed gets its header
    /// written first and its header page synced with its data, so (R): a
    /// header is written only once everything before it is durable (the
    /// parts of earlier segments are synced earlier in this loop, or were
    /// by an earlier sync), and any synced data has a durable header.
    ///
    /// Called only by the group-commit leader (one at a time) or by `open`
    /// before any other thread exists: it is the only writer of headers.
    fn sync_range(&self, from: Lsn, to: Lsn) -> std::io::Result<()> {
        let parts: Vec<(SegRef, usize, usize)> = self.log.with_segs(|segs| {
            let mut parts = Vec::new();
            // The segment holding `from` and those after it, up to `to`.
            let first = segs
                .partition_point(|s| s.first_lsn <= from)
                .saturating_sub(1);
            for (i, s) in segs.iter().enumerate().skip(first) {
                if s.first_lsn > to {
                    break;
                }
                let seg_end = segs.get(i + 1).map_or(u64::MAX, |n| n.first_lsn);
                if seg_end <= from {
                    continue;
                }
                let start = if from <= s.first_lsn {
                    0
                } else {
                    s.offset_of(from)
                };
                let end = s.offset_of(to.min(seg_end));
                parts.push((s.clone(), start, end));
            }
            parts
        });
        for (s, start, end) in parts {
            let start = if s.seg.is_sealed() {
                start
            } else {
                let header =
                    Header::new(self.instance, s.seg.seq(), s.first_lsn, s.seg.len() as u64);
                // SAFETY: readers never borrow a segment's header page (they
                // slice from DATA_START), and this function is the only
                // writer of headers, run by one thread at a time.
                unsafe { segment::write_header(&s.seg, &header) };
                0
            };
            // Never clean a page the prefault thread is faulting in: it
            // would be dirty again (DESIGN.md §8).
            self.prefault.before_sync(&s.seg, start, end);
            s.seg.sync_range(start, end)?;
            s.seg.set_sealed();
        }
        Ok(())
    }
}

/// What the writer owns: the active segment and where the next frame goes.
pub(crate) struct Writer {
    active: SegRef,
    off: usize,
    next_lsn: Lsn,
    since_sync: u64,
    appends: u64,
    pub(crate) index: RunIndex,
    /// Transactions opened by `append` of a BeginTxn and not yet ended.
    open_txns: OpenTxns,
    /// An `append_txn` is being written (its transaction is open).
    in_txn: bool,
    /// Pages of the active segment below this offset are faulted in (or
    /// asked to be): see [`segment::PREFAULT_WINDOW`].
    populated: usize,
}

/// The next segment, prepared by a background thread.
struct Prep {
    slot: Mutex<PrepSlot>,
    cv: Condvar,
}

struct PrepSlot {
    /// Pages to fault in ahead of the writer (taken before `want`).
    populate: Option<(SegRef, usize, usize)>,
    want: Option<u64>,
    ready: Option<(u64, Result<Segment>)>,
    stop: bool,
}

/// A write-ahead log open for appending.
///
/// `Wal` is `Send + Sync`: share it (e.g. in an `Arc`) and append from many
/// threads; appends are serialised, syncs are shared (group commit).
pub struct Wal {
    pub(crate) shared: Arc<Shared>,
    prep: Arc<Prep>,
    ticker: Arc<Ticker>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The thread that runs commit-notification callbacks.
    notifier: Mutex<Option<JoinHandle<()>>>,
    report: RecoveryReport,
    closed: AtomicBool,
    /// Serialises metadata writes (they share `META.new`).
    meta_lock: Mutex<()>,
    _lock: File,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Saves a copy of a damaged segment (`*.discarded-*`) before its tail is
/// zeroed: the copy is synced, and its name made durable, first.
fn save_copy(path: &Path) -> Result<()> {
    let keep = recovery::discarded_name(path);
    fs::copy(path, &keep).map_err(|e| Error::io("save damaged segment", &keep, e))?;
    crate::os::files::open_read(&keep)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("sync saved segment", &keep, e))?;
    if let Some(dir) = keep.parent() {
        segment::sync_dir(dir)?;
    }
    Ok(())
}

/// The poisoned-log repair of the last kept segment: its first `keep`
/// bytes (header and trusted frames) are written to a new file that then
/// replaces it by rename. The old file is never written: mappings of it
/// (snapshots, tails and readers of the failed handle, in any process) keep
/// the bytes they borrow, since an inode lives while it is mapped; and the
/// bytes the disk may lack are not carried over.
fn rewrite_trusted_prefix(dir: &Path, old: &SegRef, keep: usize) -> Result<SegRef> {
    let seg = segment::replace_with_prefix(dir, &old.seg, keep)?;
    Ok(SegRef {
        seg: Arc::new(seg),
        first_lsn: old.first_lsn,
        txn_open: old.txn_open,
    })
}

impl Wal {
    /// Opens the log in `dir`, creating the directory and a new log if there
    /// is none, or recovering the existing one (see [`Wal::recovery_report`]).
    ///
    /// Only one handle, in one process, may hold a log open for writing; a
    /// second gets [`Error::Locked`].
    ///
    /// If a sync of this log failed earlier in this process, the reopen
    /// trusts nothing past the last sync that completed: the kernel may have
    /// marked the failed pages clean, so the page cache can show bytes the
    /// disk does not have. Those bytes are dropped (zeroed and synced) and
    /// reported as a torn tail; appends continue after the durable prefix.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Wal> {
        let dir = dir.as_ref().to_path_buf();
        config.validate()?;
        create_log_dir(&dir)?;
        let lock = lock_dir(&dir)?;
        let dir_state = registry::dir_state(DirId::of(&dir)?);
        // Held exclusively until the writer is published: a read-only open
        // of this process never scans bytes this recovery repairs.
        let mut gate = dir_state.gate.write();
        let limit = dir_state.poisoned_at(&dir)?;
        let decoder = READ_DECODER;
        let expect_max = config.effective_max_entry_size();
        let opts = ScanOptions {
            writable: true,
            copy: false,
            live: false,
            limit,
            parallel: true,
        };
        let recovered = recovery::recover(&dir, decoder, expect_max, opts)?;
        let mut changed = false;
        if let Some(r) = &recovered {
            recovery::enforce(config.recovery_mode, &r.report)?;
        }
        // Counted before anything is repaired, so that a read-only scan in
        // another process can tell a writer came (and perhaps went) while
        // it scanned. Not synced: it only matters while both run.
        {
            use std::os::unix::fs::FileExt;
            let generation = lock_generation(&lock).wrapping_add(1);
            lock.write_all_at(&generation.to_le_bytes(), 0)
                .map_err(|e| Error::io("write lock file", dir.join(LOCK_FILE), e))?;
        }
        if let Some(r) = &recovered {
            for t in &r.temps {
                fs::remove_file(t).map_err(|e| Error::io("remove temporary file", t, e))?;
                changed = true;
            }
        }
        let (instance, segments, adopted, end_lsn, report, index, open_txns, truncations, reuse) =
            match recovered {
                Some(mut r) if !r.segments.is_empty() => {
                    if let (Some(keep), Some(_)) = (r.limited_at, r.zero_range) {
                        // The poisoned-log repair: never rewrite the old
                        // file, which snapshots, tails and readers of the
                        // failed handle (in any process) may still borrow.
                        let old = r.segments.pop().expect("nonempty");
                        r.segments.push(rewrite_trusted_prefix(&dir, &old, keep)?);
                        r.zero_range = None;
                    }
                    let last = r.segments.last().expect("nonempty").clone();
                    if let Some((start, end)) = r.zero_range {
                        if matches!(&r.report.problem, Some(p) if p.class == crate::ProblemClass::MidLogCorruption)
                        {
                            save_copy(last.seg.path())?;
                            changed = true;
                        }
                        // SAFETY: we hold the write lock and the registry
                        // gate, so no reader or writer of this log in this
                        // process exists yet (readers in other processes
                        // only copy); the bytes lie past the valid end.
                        unsafe { last.seg.bytes_mut(start, end) }.fill(0);
                        last.seg.sync_range(start, end).map_err(|e| {
                            // The page cache now shows zeros the disk may
                            // not have, and the frames that share their
                            // page: the poisoned-log rule applies, from
                            // what the disk itself holds (§7).
                            let salt = header::salt(&r.instance);
                            let valid = last.lsn_of(start);
                            // From the last segment whose header is
                            // durable: everything before it is (§5, R).
                            let from = r.segments[r.segments.len() - 1 - r.adopted].first_lsn;
                            let durable = recovery::disk_valid_end(&r.segments, salt, from, valid)
                                .unwrap_or(from)
                                .min(valid);
                            dir_state.poison(&dir, r.instance, durable);
                            Error::io("zero torn tail", last.seg.path(), e)
                        })?;
                    }
                    // Highest sequence first: an interrupted repair leaves the
                    // log a prefix of segments, never one with a hole.
                    let mut discard = r.discard.clone();
                    discard.sort_unstable_by(|a, b| b.file_name().cmp(&a.file_name()));
                    for path in &discard {
                        let to = recovery::discarded_name(path);
                        fs::rename(path, &to)
                            .map_err(|e| Error::io("move discarded segment", path, e))?;
                        changed = true;
                    }
                    let mut reuse = None;
                    for (seq, path) in &r.blanks {
                        let fits = fs::metadata(path)
                            .map(|m| m.len() == config.segment_size)
                            .unwrap_or(false);
                        if reuse.is_none() && *seq == last.seg.seq() + 1 && fits {
                            reuse = Some(Segment::open(path, *seq, true)?);
                            // Its creation may have crashed between the
                            // rename and the directory sync: make its name
                            // durable before anything is acknowledged in it.
                            changed = true;
                        } else {
                            fs::remove_file(path)
                                .map_err(|e| Error::io("remove blank segment", path, e))?;
                            changed = true;
                        }
                    }
                    drop(last);
                    for sref in &r.segments {
                        segment::zero_past_size(&sref.seg)?;
                    }
                    // A last segment cut short is never extended (its
                    // header's size would decide what to allocate, up to
                    // 1 TiB): it is full, and the log goes on in the next
                    // segment, put into use now, whose header the resync
                    // below writes once the short one's tail is durable.
                    let mut segments = r.segments;
                    let mut adopted = r.adopted;
                    if r.last_short {
                        let seq = segments.last().expect("nonempty").seg.seq() + 1;
                        if seq > MAX_SEQ {
                            return Err(Error::LogFull {
                                detail: format!("segment sequence number {seq} is above {MAX_SEQ}"),
                            });
                        }
                        let seg = match reuse.take() {
                            Some(s) => s,
                            None => segment::create(&dir, seq, config.segment_size)?,
                        };
                        segments.push(SegRef {
                            seg: Arc::new(seg),
                            first_lsn: r.end_lsn,
                            txn_open: !r.open_txns.is_empty(),
                        });
                        adopted += 1;
                    }
                    (
                        r.instance,
                        segments,
                        adopted,
                        r.end_lsn,
                        r.report,
                        r.index,
                        r.open_txns,
                        r.truncations,
                        reuse,
                    )
                }
                other => {
                    if let Some(r) = &other {
                        for (_, path) in &r.blanks {
                            fs::remove_file(path)
                                .map_err(|e| Error::io("remove blank segment", path, e))?;
                        }
                    }
                    let instance = config.instance_id.unwrap_or_else(Uuid::new_v4);
                    let seg = segment::create(&dir, 0, config.segment_size)?;
                    let header = Header::new(instance, 0, 0, config.segment_size);
                    // SAFETY: the segment is new and private to this function.
                    unsafe { segment::write_header(&seg, &header) };
                    seg.sync_range(0, DATA_START)
                        .map_err(|e| Error::io("sync new segment header", seg.path(), e))?;
                    seg.set_sealed();
                    let sref = SegRef {
                        seg: Arc::new(seg),
                        first_lsn: 0,
                        txn_open: false,
                    };
                    let report = RecoveryReport {
                        segments: 1,
                        ..RecoveryReport::default()
                    };
                    (
                        instance,
                        vec![sref],
                        0,
                        0,
                        report,
                        RunIndex::default(),
                        OpenTxns::default(),
                        Truncations::default(),
                        None,
                    )
                }
            };
        if changed {
            segment::sync_dir(&dir)?;
        }
        let active = segments.last().expect("a log has a segment").clone();
        let start = segments[0].first_lsn;
        // Make whatever the previous process left in the page cache durable
        // before acknowledging anything after it: the last segment and any
        // it had not sealed (which get their headers now).
        let resync_from = segments[segments.len() - 1 - adopted].first_lsn;
        let next_seq = active.seg.seq() + 1;
        let space = crate::os::space::space_reservation(&dir)?;
        let writer = Writer {
            off: active.offset_of(end_lsn),
            active: active.clone(),
            next_lsn: end_lsn,
            since_sync: 0,
            appends: 0,
            index,
            open_txns,
            in_txn: false,
            populated: 0,
        };
        let shared = Arc::new(Shared {
            dir,
            salt: header::salt(&instance),
            instance,
            decoder,
            log: Published::new(segments, start, end_lsn, truncations),
            group: GroupCommit::new(end_lsn),
            appends: AtomicU64::new(0),
            tail_notify: TailNotify::new(),
            pins: Pins::default(),
            retention: Mutex::new(()),
            durable: DurableNotify::default(),
            dir_state: Arc::clone(&dir_state),
            space,
            prefault: crate::log::prefault::Prefault::default(),
            written: AtomicU64::new(end_lsn),
            writer: Mutex::new(writer),
            config,
        });
        let prep = Arc::new(Prep {
            slot: Mutex::new(PrepSlot {
                populate: None,
                want: if reuse.is_some() {
                    None
                } else {
                    Some(next_seq)
                },
                ready: reuse.map(|s| (next_seq, Ok(s))),
                stop: false,
            }),
            cv: Condvar::new(),
        });
        let resynced =
            crate::os::faults::before_sync().and_then(|()| shared.sync_range(resync_from, end_lsn));
        resynced.map_err(|e| {
            // What the disk holds of the tail is trusted, no more: the
            // previous process's acknowledged entries are there (its syncs
            // completed), bytes the failed sync left only in the page
            // cache are not (§7, the poisoned-log rule).
            let segs = shared.log.view().segs;
            let durable = recovery::disk_valid_end(&segs, shared.salt, resync_from, end_lsn)
                .unwrap_or(resync_from);
            dir_state.poison(&shared.dir, instance, durable);
            Error::io("sync recovered log", &shared.dir, e)
        })?;
        if shared.config.prefault {
            let mut w = shared.writer.lock();
            // Past the page-cache folio that holds the end: the recovery
            // scan read the tail in, and a folio read in may span many
            // pages, synced ones among them; populating any page of it
            // dirties all of it (§5). A read-in folio is at most a PMD.
            let from = w.off.div_ceil(crate::log::prefault::largest_folio())
                * crate::log::prefault::largest_folio();
            w.active.seg.populate(from, from + segment::PREFAULT_WINDOW);
            w.populated = (from + segment::PREFAULT_WINDOW).max(w.off);
        }
        // On disk now: the trusted prefix, and zeros (or nothing) after it.
        dir_state.clear_poison(&shared.dir)?;
        let ticker = Arc::new(Ticker::new());
        let mut threads = vec![spawn_preparer(Arc::clone(&shared), Arc::clone(&prep))?];
        threads.push(spawn_flusher(
            Arc::clone(&shared),
            Arc::clone(&ticker),
            shared.config.sync_mode.interval(),
        )?);
        let notifier = spawn_notifier(Arc::clone(&shared))?;
        *gate = Some(Arc::downgrade(&shared));
        drop(gate);
        Ok(Wal {
            shared,
            prep,
            ticker,
            threads: Mutex::new(threads),
            notifier: Mutex::new(Some(notifier)),
            report,
            closed: AtomicBool::new(false),
            meta_lock: Mutex::new(()),
            _lock: lock,
        })
    }

    /// What opening found (for a new log: one empty segment).
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The log's instance id, shared by all its segments.
    pub fn instance_id(&self) -> Uuid {
        self.shared.instance
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(cause) = self.shared.group.poison() {
            return Err(Error::Poisoned { cause });
        }
        Ok(())
    }

    fn check_size(&self, entry: &BorrowedEntry<'_>) -> Result<()> {
        let len = frame::payload_len(entry) as u64;
        let max = u64::from(self.shared.config.effective_max_entry_size());
        if len > max {
            return Err(Error::EntryTooLarge { len, max });
        }
        Ok(())
    }

    /// Appends one entry; returns where it landed. Durable on return in
    /// `Strict` mode, otherwise as the mode says.
    pub fn append(&self, entry: &WalEntry) -> Result<EntryPosition> {
        self.append_entry(entry.as_borrowed())
    }

    /// Appends one borrowed entry (no allocation); returns where it landed.
    pub fn append_entry(&self, entry: BorrowedEntry<'_>) -> Result<EntryPosition> {
        self.one(entry, Wait::Mode)
    }

    /// Appends one entry without waiting for a sync, whatever the mode,
    /// and returns where it landed. In `Strict` mode the background syncer
    /// is asked to sync at once (one sync covers every append submitted
    /// meanwhile); in the other modes the mode's own syncs cover it. Learn
    /// when it is durable by passing the position to [`Wal::on_durable`],
    /// [`Wal::durable`] or [`Wal::wait_durable`] (they wait for its end).
    pub fn submit_entry(&self, entry: BorrowedEntry<'_>) -> Result<EntryPosition> {
        self.one(entry, Wait::Never)
    }

    fn one(&self, entry: BorrowedEntry<'_>, wait: Wait) -> Result<EntryPosition> {
        self.check_size(&entry)?;
        if let BorrowedEntry::Truncate { .. } = entry {
            return Err(Error::InvalidArgument {
                detail: "a Truncate entry is appended by Wal::truncate_from".into(),
            });
        }
        let committer = self.committer(wait);
        let (lsn, (end, sync_now, wake)) = {
            let mut w = self.shared.writer.lock();
            self.check_open()?;
            let lsn = self.write_one(&mut w, &entry)?;
            note_boundary(&mut w, &entry, lsn);
            (lsn, self.publish(&mut w)?)
        };
        self.after_append(end, sync_now, wake, wait, committer)
            .map(|()| EntryPosition { lsn, end })
    }

    /// Appends `entries` as one unit, all or nothing: every reader (in this
    /// process or another) and every recovery after a crash sees all of
    /// them or none. Its frames are contiguous, in one segment, and marked
    /// as one unit on disk ([`frame::CONTINUES`]); they are published at
    /// once, and in `Strict` mode one sync covers them. A batch of two or
    /// more entries must fit one segment ([`Error::BatchTooLarge`]
    /// otherwise: split it, or use larger segments). Entries get
    /// consecutive LSNs: the first is `first`, each next one starts where
    /// the previous frame ends ([`frame::frame_len`]).
    pub fn append_batch(&self, entries: &[BorrowedEntry<'_>]) -> Result<BatchPosition> {
        self.batch(entries, Wait::Mode)
    }

    /// [`Wal::append_batch`] without waiting for a sync (see
    /// [`Wal::submit_entry`]).
    pub fn submit_batch(&self, entries: &[BorrowedEntry<'_>]) -> Result<BatchPosition> {
        self.batch(entries, Wait::Never)
    }

    fn batch(&self, entries: &[BorrowedEntry<'_>], wait: Wait) -> Result<BatchPosition> {
        let mut total = 0u64;
        for e in entries {
            if let BorrowedEntry::Truncate { .. } = e {
                return Err(Error::InvalidArgument {
                    detail: "a Truncate entry is appended by Wal::truncate_from".into(),
                });
            }
            self.check_size(e)?;
            total += frame::frame_len(e) as u64;
        }
        let room = self.shared.config.segment_size - DATA_START as u64;
        if entries.len() > 1 && total > room {
            return Err(Error::BatchTooLarge {
                len: total,
                max: room,
            });
        }
        let committer = self.committer(wait);
        let (pos, sync_now, wake) = {
            let mut w = self.shared.writer.lock();
            self.check_open()?;
            if entries.is_empty() {
                let end = w.next_lsn;
                return Ok(BatchPosition { first: end, end });
            }
            check_lsn_room(w.next_lsn, total)?;
            self.rotate_to_fit(&mut w, total)?;
            let first = w.next_lsn;
            let last = entries.len() - 1;
            // One segment holds the whole unit: recovery never finds one
            // spanning two (a unit open at a segment's end is damage).
            debug_assert!(entries.len() == 1 || w.off as u64 + total <= w.active.seg.len() as u64);
            let mut write_all = || -> Result<()> {
                for (i, e) in entries.iter().enumerate() {
                    let lsn = self.write_frame(&mut w, e, i < last)?;
                    note_boundary(&mut w, e, lsn);
                }
                Ok(())
            };
            if let Err(e) = write_all() {
                // Part of the unit sits past the published end; a later
                // append would write over it, but a sync may already have
                // covered it. Fail stop.
                self.fail_unit(first, &e);
                return Err(e);
            }
            let (end, sync_now, wake) = self.publish(&mut w)?;
            (BatchPosition { first, end }, sync_now, wake)
        };
        self.after_append(pos.end, sync_now, wake, wait, committer)?;
        Ok(pos)
    }

    /// Appends a whole transaction of run `run_id` — its BeginTxn (timestamp
    /// now), the `ops` as Writes and Deletes, and its CommitTxn — as one
    /// contiguous unit that readers see all at once, durable on return
    /// according to the mode.
    pub fn append_txn(&self, run_id: RunId, txn_id: u64, ops: &[Op<'_>]) -> Result<TxnPosition> {
        self.txn(run_id, txn_id, header::now_micros(), ops, Wait::Mode)
    }

    /// [`Wal::append_txn`] with an explicit BeginTxn timestamp.
    pub fn append_txn_at(
        &self,
        run_id: RunId,
        txn_id: u64,
        timestamp: u64,
        ops: &[Op<'_>],
    ) -> Result<TxnPosition> {
        self.txn(run_id, txn_id, timestamp, ops, Wait::Mode)
    }

    /// [`Wal::append_txn`] without waiting for a sync (see
    /// [`Wal::submit_entry`]): durable once its end is.
    pub fn submit_txn(&self, run_id: RunId, txn_id: u64, ops: &[Op<'_>]) -> Result<TxnPosition> {
        self.txn(run_id, txn_id, header::now_micros(), ops, Wait::Never)
    }

    fn txn(
        &self,
        run_id: RunId,
        txn_id: u64,
        timestamp: u64,
        ops: &[Op<'_>],
        wait: Wait,
    ) -> Result<TxnPosition> {
        let begin = BorrowedEntry::BeginTxn {
            txn_id,
            run_id,
            timestamp,
        };
        let commit = BorrowedEntry::CommitTxn { txn_id, run_id };
        // The whole unit's size, checked before anything is written: a
        // transaction that cannot fit the log's LSN space is refused whole.
        let mut total = (frame::frame_len(&begin) + frame::frame_len(&commit)) as u64;
        for op in ops {
            let e = op.entry(run_id);
            self.check_size(&e)?;
            total += frame::frame_len(&e) as u64;
        }
        let committer = self.committer(wait);
        let (pos, sync_now, wake) = {
            let mut w = self.shared.writer.lock();
            self.check_open()?;
            check_lsn_room(w.next_lsn, total)?;
            self.rotate_to_fit(&mut w, total)?;
            let txn_start = w.next_lsn;
            w.in_txn = false;
            let begin_lsn = self.write_one(&mut w, &begin)?;
            w.in_txn = true;
            let mut write_rest = || -> Result<Lsn> {
                for op in ops {
                    self.write_one(&mut w, &op.entry(run_id))?;
                }
                self.write_one(&mut w, &commit)
            };
            let written = write_rest();
            w.in_txn = false;
            let commit_lsn = match written {
                Ok(l) => l,
                Err(e) => {
                    self.fail_unit(txn_start, &e);
                    return Err(e);
                }
            };
            // Its BeginTxn replaced any transaction of the run left open.
            w.open_txns.closed_by_unit(&run_id);
            let (end, sync_now, wake) = self.publish(&mut w)?;
            (
                TxnPosition {
                    begin: begin_lsn,
                    commit: commit_lsn,
                    end,
                },
                sync_now,
                wake,
            )
        };
        self.after_append(pos.end, sync_now, wake, wait, committer)?;
        Ok(pos)
    }

    /// A unit that fits a segment is never split across two: retention can
    /// then cut at any boundary without cutting a transaction, and a run's
    /// transaction is read from one map. The segment it would move to has
    /// the configured size.
    fn rotate_to_fit(&self, w: &mut Writer, total: u64) -> Result<()> {
        let room = self.shared.config.segment_size - DATA_START as u64;
        // An empty active segment too small for the unit (created under a
        // smaller size) is left empty: the unit goes whole into the next.
        if w.off as u64 + total > w.active.seg.len() as u64 && total <= room {
            self.rotate(w)?;
        }
        Ok(())
    }

    /// A unit failed half-way: part of it sits past the published end,
    /// where a later append would write over it while a sync may already
    /// have covered it. Fail stop.
    #[cold]
    fn fail_unit(&self, start: Lsn, e: &Error) {
        let cause = format!(
            "append failed after LSN {start}: {}",
            crate::error::with_causes(e)
        );
        self.shared.poison(cause);
    }

    /// Deletes every entry from `lsn` to the end of the log, by appending a
    /// [`Truncate`](WalEntry::Truncate) record (durable as the mode says;
    /// call [`Wal::sync`] to make it durable now). Published bytes are never
    /// rewritten, so snapshots taken before keep reading what they read;
    /// every snapshot, replay, tail and reopen after it skips the deleted
    /// entries, in this and any other process. `lsn` must be the start of
    /// a live entry, or the end (then nothing is deleted and no record is
    /// written). Returns the record's position (when nothing was deleted,
    /// an empty one at the end: `lsn == end`).
    pub fn truncate_from(&self, lsn: Lsn) -> Result<EntryPosition> {
        let (at, (end, sync_now, wake)) = {
            let mut w = self.shared.writer.lock();
            self.check_open()?;
            if lsn == w.next_lsn {
                return Ok(EntryPosition { lsn, end: lsn });
            }
            // Checks `lsn` is a live entry of the published log (which,
            // under the writer lock, is the whole log): a position that is
            // not an entry's start is `BadLsn`.
            let snap = self.shared.snapshot();
            snap.read_at(lsn)?;
            // At an earlier record, whose deleted range ends where `lsn`
            // starts, the two ranges become one: the record says so, so a
            // reader that learns of deletions from records (a tail, a
            // follower) is told everything this one deletes (§10).
            let from = snap.dead.start_of_range_ending_at(lsn).unwrap_or(lsn);
            drop(snap);
            let record = BorrowedEntry::Truncate { from };
            let at = self.write_one(&mut w, &record)?;
            // Before the publish that makes the record visible: a snapshot
            // that sees the record sees its range (DESIGN.md §8).
            self.shared.log.add_truncation(from, at);
            w.index.truncate_from(from);
            let published = self.publish(&mut w)?;
            // Transactions whose end the truncation deleted are open again:
            // recompute the open set, and the boundaries' flags, from the
            // live log (DESIGN.md §10).
            match crate::read::runs::reopened_txns(&self.shared.snapshot(), from) {
                Ok(crate::read::runs::Reopened { open, flags, .. }) => {
                    w.open_txns = open;
                    self.shared.log.with_segs_mut(|segs| {
                        for s in segs.iter_mut() {
                            if let Ok(i) = flags.binary_search_by_key(&s.first_lsn, |f| f.0) {
                                s.txn_open = flags[i].1;
                            }
                        }
                    });
                }
                Err(e) => {
                    self.fail_unit(lsn, &e);
                    return Err(e);
                }
            }
            (at, published)
        };
        self.after_append(end, sync_now, wake, Wait::Mode, None)?;
        Ok(EntryPosition { lsn: at, end })
    }

    /// The blob last stored with [`Wal::set_meta`], if any (read from the
    /// directory's `META` file; [`Error::BadMeta`] if it is damaged).
    pub fn meta(&self) -> Result<Option<Vec<u8>>> {
        crate::os::meta::read(&self.shared.dir)
    }

    /// Stores `data` (at most [`MAX_META`](crate::os::meta::MAX_META) bytes)
    /// as the log's metadata, replacing what was there atomically and
    /// durably before it returns: after a crash, [`Wal::meta`] gives the
    /// old blob or this one. Independent of the log's entries and mode.
    pub fn set_meta(&self, data: &[u8]) -> Result<()> {
        self.check_open()?;
        let _one = self.meta_lock.lock();
        crate::os::meta::write(&self.shared.dir, data)
    }

    /// The LSN below which everything is durable (covered by a completed
    /// sync).
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.group.synced()
    }

    /// Calls `f` once `pos` is durable (everything below its end: see
    /// [`Appended`]; a bare LSN goes in [`End`](crate::End)), with
    /// `Ok(())`; or with the error that means it never will be (a failed
    /// sync: [`Error::Poisoned`]; the log closed before reaching it:
    /// [`Error::Closed`]).
    ///
    /// Callbacks run on the log's own `wal-notify` thread, one at a time,
    /// in LSN order (failures too, after the successes of what is
    /// durable), never on the caller's thread, never on a thread that
    /// syncs or appends, and never under any of the log's locks: a slow
    /// callback delays other callbacks, never a sync, and a callback may
    /// use the log (append, truncate, retention; even drop the last
    /// handle). It must not block waiting for another callback of this
    /// log: [`Durable::wait`] refuses inside one. A callback that panics is
    /// caught (and reported on standard error); the others still run.
    /// [`Wal::close`] returns after every callback has run.
    ///
    /// Waiting never changes when syncs happen; the mode (and
    /// `submit_*`'s request in `Strict` mode) does.
    pub fn on_durable(&self, pos: impl Appended, f: impl FnOnce(Result<()>) + Send + 'static) {
        self.shared.durable.register(pos.end(), Box::new(f));
    }

    /// A future that resolves once `pos` is durable (see
    /// [`Wal::on_durable`]). It needs no particular async runtime.
    pub fn durable(&self, pos: impl Appended) -> Durable {
        let (fut, complete) = Durable::new();
        self.on_durable(pos, complete);
        fut
    }

    /// Blocks until `pos` is durable (see [`Wal::on_durable`]).
    pub fn wait_durable(&self, pos: impl Appended) -> Result<()> {
        if self.shared.group.synced() >= pos.end() {
            return Ok(());
        }
        self.durable(pos).wait()
    }

    /// Encodes one frame at the writer's position, rotating first if it
    /// does not fit. Does not publish.
    #[inline]
    fn write_one(&self, w: &mut Writer, entry: &BorrowedEntry<'_>) -> Result<Lsn> {
        self.write_frame(w, entry, false)
    }

    /// [`Wal::write_one`] for a frame of a unit of several: `continues`
    /// marks every frame but the unit's last ([`frame::CONTINUES`]).
    #[inline]
    fn write_frame(
        &self,
        w: &mut Writer,
        entry: &BorrowedEntry<'_>,
        continues: bool,
    ) -> Result<Lsn> {
        let len = frame::frame_len(entry);
        check_lsn_room(w.next_lsn, len as u64)?;
        if w.off + len > w.active.seg.len() {
            self.rotate(w)?;
        }
        let lsn = w.next_lsn;
        // SAFETY: we hold the writer lock, and `[off, off + len)` lies at or
        // past the published end, where no reader looks (DESIGN.md,
        // "Soundness").
        let out = unsafe { w.active.seg.bytes_mut(w.off, w.off + len) };
        let seed = header::seed(self.shared.salt, lsn);
        let written = frame::encode_unit_frame(entry, seed, continues, out)?;
        debug_assert_eq!(written, len);
        w.off += len;
        w.next_lsn += len as u64;
        self.shared.written.store(w.next_lsn, Ordering::Relaxed);
        if w.off + segment::PREFAULT_WINDOW > w.populated && self.shared.config.prefault {
            self.populate_ahead(w);
        }
        w.index.note(entry.run_id(), lsn, w.next_lsn);
        Ok(lsn)
    }

    /// Publishes everything written; returns the new end and whether this
    /// append must sync now (Batched mode's count).
    #[inline]
    fn publish(&self, w: &mut Writer) -> Result<(Lsn, bool, bool)> {
        self.shared.log.publish(w.next_lsn);
        w.appends += 1;
        self.shared.appends.store(w.appends, Ordering::Relaxed);
        // Read under the writer lock, which waiters also take to register:
        // either a waiter registered before this publish (and is woken), or
        // it reads the new end when it registers. No fence on this path.
        let wake = self.shared.tail_notify.has_waiters();
        let sync_now = match self.shared.config.sync_mode {
            SyncMode::Batched { batch_size, .. } => {
                w.since_sync += 1;
                if w.since_sync >= batch_size.max(1) {
                    w.since_sync = 0;
                    true
                } else {
                    false
                }
            }
            _ => false,
        };
        Ok((w.next_lsn, sync_now, wake))
    }

    /// Counts an append that will wait for its Strict sync (group commit's
    /// leader absorbs such appenders: [`GroupCommit`]), until it returns.
    #[inline]
    fn committer(&self, wait: Wait) -> Option<Committer<'_>> {
        (wait == Wait::Mode && self.shared.config.sync_mode == SyncMode::Strict)
            .then(|| self.shared.group.committer())
    }

    #[inline]
    fn after_append(
        &self,
        end: Lsn,
        sync_now: bool,
        wake: bool,
        wait: Wait,
        committer: Option<Committer<'_>>,
    ) -> Result<()> {
        if wake {
            self.shared.tail_notify.wake();
        }
        if sync_now || self.shared.config.sync_mode == SyncMode::Strict {
            match wait {
                Wait::Mode => self.shared.sync_to_as(end, committer.is_some())?,
                Wait::Never => self.ticker.kick(),
            }
        }
        drop(committer);
        Ok(())
    }

    /// Asks the background thread to fault in the next window of the
    /// active segment (merged with a request not yet taken).
    #[cold]
    fn populate_ahead(&self, w: &mut Writer) {
        let len = w.active.seg.len();
        let from = w.populated.max(w.off);
        if from >= len {
            w.populated = len;
            return;
        }
        let to = (from + segment::PREFAULT_WINDOW).min(len);
        w.populated = to;
        let mut slot = self.prep.slot.lock();
        let from = match &slot.populate {
            Some((s, f, _)) if Arc::ptr_eq(&s.seg, &w.active.seg) => (*f).min(from),
            _ => from,
        };
        // The background thread starts past wherever the writer is by the
        // time it runs, whatever `from` says.
        slot.populate = Some((w.active.clone(), from, to));
        self.prep.cv.notify_all();
    }

    /// Moves to the next segment. Its header is written later, by the sync
    /// that first covers its data (the group-commit leader), once
    /// everything before it is durable; until then
    /// recovery recognises it by its first frame, which only validates at
    /// the LSN where this segment ends (DESIGN.md, "Rotation").
    #[cold]
    fn rotate(&self, w: &mut Writer) -> Result<()> {
        let seq = w.active.seg.seq() + 1;
        if seq > MAX_SEQ {
            return Err(Error::LogFull {
                detail: format!("segment sequence number {seq} is above {MAX_SEQ}"),
            });
        }
        let seg = self.take_prepared(seq)?;
        let sref = SegRef {
            seg: Arc::new(seg),
            first_lsn: w.next_lsn,
            txn_open: w.in_txn || !w.open_txns.is_empty(),
        };
        self.shared.log.push(sref.clone());
        w.active = sref;
        w.off = DATA_START;
        // Nothing of it is faulted in yet (`segment::create` touches no
        // page): the background thread starts on its first window now.
        w.populated = DATA_START;
        if self.shared.config.prefault {
            self.populate_ahead(w);
        }
        Ok(())
    }

    /// The prepared segment `seq`, or a new one made here if none is ready.
    /// After a failure the next segment is not prepared in the background:
    /// the next rotation tries again in the foreground (no retry storm while
    /// the disk is full).
    fn take_prepared(&self, seq: u64) -> Result<Segment> {
        let size = self.shared.config.segment_size;
        let mut slot = self.prep.slot.lock();
        while slot.ready.is_none() && slot.want == Some(seq) && !slot.stop {
            self.prep.cv.wait(&mut slot);
        }
        let ready = slot.ready.take();
        slot.want = None;
        match ready {
            Some((s, Ok(seg))) if s == seq && seg.len() as u64 == size => {
                slot.want = Some(seq + 1);
                self.prep.cv.notify_all();
                return Ok(seg);
            }
            Some((s, Err(e))) if s == seq => return Err(e),
            Some((_, Ok(other))) => {
                // Prepared for another number or size: blank and never
                // used, so it goes (creating never replaces a file).
                let path = other.path().to_path_buf();
                drop(other);
                fs::remove_file(&path).map_err(|e| Error::io("remove unused segment", &path, e))?;
            }
            // Nothing ready: make one here.
            _ => {}
        }
        drop(slot);
        let seg = segment::create(&self.shared.dir, seq, size)?;
        let mut slot = self.prep.slot.lock();
        slot.want = Some(seq + 1);
        self.prep.cv.notify_all();
        Ok(seg)
    }

    /// Checks the handle is usable. Appended bytes are handed to the
    /// operating system (the page cache, through the shared mapping) as soon
    /// as an append returns: they are visible to other processes and survive
    /// a crash of this process. `flush` does not make them durable against
    /// power loss; [`Wal::sync`] does.
    pub fn flush(&self) -> Result<()> {
        self.check_open()
    }

    /// Makes everything appended so far durable, and writes the headers of
    /// segments put into use since the last sync.
    pub fn sync(&self) -> Result<()> {
        self.check_open()?;
        self.shared.sync_to(self.shared.log.end())
    }

    /// Bytes of log: from the first entry still kept to the end.
    pub fn size(&self) -> u64 {
        let (start, end) = (self.shared.log.start(), self.shared.log.end());
        end.saturating_sub(start)
    }

    /// The LSN the next append gets.
    pub fn end_lsn(&self) -> Lsn {
        self.shared.log.end()
    }

    /// The LSN of the first entry still in the log.
    pub fn start_lsn(&self) -> Lsn {
        self.shared.log.start()
    }

    /// Counters: syncs, the synced and published ends, segments, appends.
    pub fn stats(&self) -> Stats {
        Stats {
            syncs: self.shared.group.syncs(),
            synced_lsn: self.shared.group.synced(),
            end_lsn: self.end_lsn(),
            start_lsn: self.start_lsn(),
            segments: self.shared.log.len(),
            appends: self.shared.appends.load(Ordering::Relaxed),
            space: self.shared.space,
        }
    }

    /// A consistent view of everything published so far, to read from.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// Every committed transaction, in commit order; see [`Txn`].
    pub fn replay(&self, f: impl FnMut(&Txn<'_, '_>)) -> Result<ReplayStats> {
        self.snapshot().replay(f)
    }

    /// The committed transactions of one run, reading only that run's part
    /// of the log.
    pub fn replay_run(&self, run: RunId, f: impl FnMut(&Txn<'_, '_>)) -> Result<ReplayStats> {
        let (snap, stretches) = self.run_view(&run);
        snap.replay_stretches(run, &stretches, f)
    }

    /// The keys whose final state differs between runs `a` and `b`.
    pub fn diff_runs(&self, a: RunId, b: RunId) -> Result<Vec<KeyDiff>> {
        let (snap, sa) = self.run_view(&a);
        let sb = self.shared.writer.lock().index.stretches(&b);
        Ok(diff_states(
            snap.final_state(a, &sa)?,
            snap.final_state(b, &sb)?,
        ))
    }

    /// Every run with an entry in the log.
    pub fn runs(&self) -> Vec<RunId> {
        self.shared.writer.lock().index.runs().copied().collect()
    }

    fn run_view(&self, run: &RunId) -> (Snapshot, Vec<Lsn>) {
        let w = self.shared.writer.lock();
        let stretches = w.index.stretches(run);
        let snap = self.shared.snapshot();
        drop(w);
        (snap, stretches)
    }

    /// A reader that follows the log from `lsn` as entries are appended.
    /// It holds back retention at its position while it lives.
    pub fn tail(&self, lsn: Lsn) -> Tail {
        Tail::new(Arc::clone(&self.shared), lsn)
    }

    /// Syncs, stops the background threads and closes the log. Returns the
    /// error of the final sync, if any (the log is then poisoned: reopen it
    /// to recover what reached the disk).
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.ticker.stop();
        {
            let mut slot = self.prep.slot.lock();
            slot.stop = true;
            self.prep.cv.notify_all();
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        self.shared.tail_notify.close();
        // A read-only open of this process from now on scans the files: a
        // tail that outlives the handle must not make it take this frozen
        // view (another process may write the log next).
        {
            let mut gate = self.shared.dir_state.gate.write();
            if gate
                .as_ref()
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.shared)))
            {
                *gate = None;
            }
        }
        let end = self.shared.log.end();
        let result = self.shared.sync_to(end);
        // Whoever still waits waits for an LSN this log never reached.
        self.shared.durable.close();
        // The callbacks' thread stops once it has run every callback. When
        // a callback closed the log (dropped its last handle), this is
        // that thread: it goes on delivering after the callback returns.
        if let Some(t) = self.notifier.lock().take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        result
    }
}

impl Drop for Wal {
    /// Closes the log like [`Wal::close`]. A drop cannot return an error, so
    /// if the final sync fails the error is written to standard error; the
    /// appends since the last successful sync may then be lost to a power
    /// cut (a process crash loses nothing). Call [`Wal::close`] to see it.
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!(
                "durability: closing the log in {} failed: {e}",
                self.shared.dir.display()
            );
        }
    }
}

fn spawn_preparer(shared: Arc<Shared>, prep: Arc<Prep>) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("wal-prepare".into())
        .spawn(move || loop {
            let seq = {
                let mut slot = prep.slot.lock();
                loop {
                    if slot.stop {
                        return;
                    }
                    if let Some((sref, from, to)) = slot.populate.take() {
                        drop(slot);
                        let here = || {
                            let written = shared.written.load(Ordering::Relaxed);
                            written.max(shared.log.end())
                        };
                        shared.prefault.populate(&sref, from, to, here);
                        slot = prep.slot.lock();
                        continue;
                    }
                    match slot.want {
                        Some(seq) if slot.ready.is_none() => break seq,
                        _ => prep.cv.wait(&mut slot),
                    }
                }
            };
            let result = segment::create(&shared.dir, seq, shared.config.segment_size);
            let mut slot = prep.slot.lock();
            if slot.want == Some(seq) {
                slot.want = None;
                slot.ready = Some((seq, result));
            }
            prep.cv.notify_all();
        })
        .map_err(|e| Error::io("spawn thread", "wal-prepare", e))
}

/// The background syncer: every interval in Batched and Async modes, and
/// whenever an append that does not wait (`submit_*`) asks for a sync.
fn spawn_flusher(
    shared: Arc<Shared>,
    ticker: Arc<Ticker>,
    period: Option<Duration>,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("wal-flush".into())
        .spawn(move || {
            while ticker.wait(period) {
                let end = shared.log.end();
                if end > shared.group.synced() && shared.sync_to(end).is_err() {
                    // Poisoned: the handle reports it on the next call.
                    return;
                }
            }
        })
        .map_err(|e| Error::io("spawn thread", "wal-flush", e))
}

/// The thread that runs commit-notification callbacks (DESIGN.md §8): no
/// durability promise ever waits on it.
fn spawn_notifier(shared: Arc<Shared>) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("wal-notify".into())
        .spawn(move || shared.durable.run(|| shared.group.synced()))
        .map_err(|e| Error::io("spawn thread", "wal-notify", e))
}

/// Whether an append waits for the sync its mode calls for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// As the mode says (`Strict`: synced on return).
    Mode,
    /// Never: the background syncer runs the sync instead.
    Never,
}

/// Keeps the writer's open transactions up to date after `entry` was
/// written at `lsn`.
#[inline]
fn note_boundary(w: &mut Writer, entry: &BorrowedEntry<'_>, lsn: Lsn) {
    match *entry {
        BorrowedEntry::BeginTxn { txn_id, run_id, .. } => {
            w.open_txns
                .note(EntryKind::BeginTxn, run_id, Some(txn_id), lsn);
        }
        BorrowedEntry::CommitTxn { txn_id, run_id } => {
            w.open_txns
                .note(EntryKind::CommitTxn, run_id, Some(txn_id), lsn);
        }
        BorrowedEntry::AbortTxn { txn_id, run_id } => {
            w.open_txns
                .note(EntryKind::AbortTxn, run_id, Some(txn_id), lsn);
        }
        _ => {}
    }
}

/// Refuses an append of `len` bytes at `lsn` that would pass [`MAX_LSN`].
#[inline]
fn check_lsn_room(lsn: Lsn, len: u64) -> Result<()> {
    if len > MAX_LSN.saturating_sub(lsn) {
        return Err(Error::LogFull {
            detail: format!("an append of {len} bytes at LSN {lsn} would pass LSN {MAX_LSN}"),
        });
    }
    Ok(())
}
