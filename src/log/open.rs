//! Opening a log for writing: recovery, then the repair its verdict calls
//! for, then the writer and its threads (DESIGN.md §7, "Repair on a write
//! open").

use std::borrow::Borrow;
use std::fs::{self, File};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::frame::READ_DECODER;
use crate::format::header::{self, Header, DATA_START, MAX_SEQ};
use crate::log::commit::DurableNotify;
use crate::log::config::Config;
use crate::log::group::{GroupCommit, Ticker};
use crate::log::notify::TailNotify;
use crate::log::pins::Pins;
use crate::log::prepare::{spawn_preparer, Prep, PrepSlot};
use crate::log::publish::Published;
use crate::log::registry::{self, DirId, DirState};
use crate::log::shared::{Shared, Writer};
use crate::log::wal::{spawn_flusher, spawn_notifier, Wal};
use crate::os::lock::{count_write_open, create_log_dir, lock_dir};
use crate::os::segment::{self, Segment};
use crate::read::dead::Truncations;
use crate::read::runs::{OpenTxns, RunIndex};
use crate::read::snapshot::SegRef;
use crate::recovery::{self, Recovered, RecoveryReport, ScanOptions};
use crate::sync::{Condvar, Mutex};

/// Saves a copy of a damaged segment (`*.discarded-*`) before its tail is
/// zeroed: the copy is synced, and its name made durable, first.
fn save_copy(path: &Path) -> Result<()> {
    let keep = recovery::discarded_name(path);
    fs::copy(path, &keep).map_err(|e| Error::io("save damaged segment", &keep, e))?;
    crate::os::files::open_read(&keep)
        .and_then(|f| crate::os::durable::sync_file(&f))
        .map_err(|e| Error::io("sync saved segment", &keep, e))?;
    if let Some(dir) = keep.parent() {
        crate::os::durable::sync_dir(dir)?;
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

/// What a write open starts the writer from, once recovery's verdict is
/// applied (or a new log made).
struct Start {
    instance: Uuid,
    segments: Vec<SegRef>,
    /// Trailing segments whose headers the first sync writes (adopted
    /// unsealed ones, and the one after a short last segment).
    adopted: usize,
    end_lsn: u64,
    report: RecoveryReport,
    index: RunIndex,
    open_txns: OpenTxns,
    truncations: Truncations,
    /// A prepared segment, blank and unused, to rotate into next.
    reuse: Option<Segment>,
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
    ///
    /// `config` is a [`Config`], by value or by reference (as for
    /// [`WalReader::open`](crate::WalReader::open)).
    pub fn open(dir: impl AsRef<Path>, config: impl Borrow<Config>) -> Result<Wal> {
        let opening = std::time::Instant::now();
        let config = config.borrow().clone();
        let dir = dir.as_ref().to_path_buf();
        config.validate()?;
        create_log_dir(&dir)?;
        let lock = lock_dir(&dir)?;
        let dir_state = registry::dir_state(DirId::of(&dir)?);
        // Held exclusively until the writer is published: a read-only open
        // of this process never scans bytes this recovery repairs.
        let mut gate = dir_state.gate.write();
        let recovered = recover_for_write(&dir, &config, &dir_state, &lock)?;
        // Read before anything is repaired: a damaged mark refuses the open.
        let mark = match &recovered {
            Some(r) if !r.segments.is_empty() => crate::os::purge::read(&dir, r.instance)?,
            _ => no_mark_without_a_log(&dir)?,
        };
        let mut changed = false;
        let start = match recovered {
            Some(r) if !r.segments.is_empty() => {
                repair(&dir, &config, &dir_state, r, &mut changed)?
            }
            other => new_log(&dir, &config, other)?,
        };
        if changed {
            crate::os::durable::sync_dir(&dir)?;
        }
        // Make whatever the previous process left in the page cache durable
        // before acknowledging anything after it: the last segment and any
        // it had not sealed (which get their headers now).
        let resync_from = start.segments[start.segments.len() - 1 - start.adopted].first_lsn;
        let (shared, prep, report) = start_writer(dir, config, &dir_state, start)?;
        resync(&shared, &dir_state, resync_from)?;
        if let Some(mark) = mark {
            crate::log::retention::restore_mark(&shared, mark)?;
        }
        settle_tail_pages(&shared);
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
        let notifier_thread = notifier.thread().id();
        shared.counters.note_open(opening.elapsed());
        let live: Arc<dyn registry::Live> = shared.clone();
        *gate = Some(Arc::downgrade(&live));
        drop(gate);
        Ok(Wal {
            shared,
            prep,
            ticker,
            threads: Mutex::new(threads),
            notifier: Mutex::new(Some(notifier)),
            report,
            closed: AtomicBool::new(false),
            closing: Mutex::new(()),
            notifier_thread,
            meta_lock: Mutex::new(()),
            _lock: lock,
        })
    }
}

/// A directory with no log (or only blank segments) must hold no purge
/// mark: a mark is written only while a segment with a durable header
/// exists, and purging never deletes the last segment. One found there
/// belonged to a log whose segments went some other way; making a new log
/// beside it would leave a mark of another log in its directory.
fn no_mark_without_a_log(dir: &Path) -> Result<Option<u64>> {
    if crate::os::purge::exists(dir) {
        let path = dir.join(crate::os::purge::PURGE_FILE);
        return Err(Error::BadPurgeMark {
            path,
            detail: "a purge mark, but no segment of a log".into(),
        });
    }
    Ok(None)
}

/// Recovery for a write open: the scan (under the poisoned-log limit, if a
/// record applies), the recovery mode's verdict, then the write open
/// counted in the lock file and leftover temporary files removed.
fn recover_for_write(
    dir: &Path,
    config: &Config,
    dir_state: &DirState,
    lock: &File,
) -> Result<Option<Recovered>> {
    let opts = ScanOptions {
        writable: true,
        copy: false,
        live: false,
        limit: dir_state.poisoned_at(dir)?,
        parallel: true,
    };
    let expect_max = config.effective_max_entry_size();
    let recovered = recovery::recover(dir, READ_DECODER, expect_max, opts)?;
    if let Some(r) = &recovered {
        recovery::enforce(config.recovery_mode, &r.report)?;
    }
    // Counted before anything is repaired, so that a read-only scan in
    // another process can tell a writer came (and perhaps went) while it
    // scanned. Not synced: it only matters while both run.
    count_write_open(lock, dir)?;
    if let Some(r) = &recovered {
        for t in &r.temps {
            fs::remove_file(t).map_err(|e| Error::io("remove temporary file", t, e))?;
        }
    }
    Ok(recovered)
}

/// Applies recovery's verdict to an existing log (DESIGN.md §7, "Repair on
/// a write open"): the trusted or valid tail of the last kept segment, the
/// segments after it moved aside, blank segments reused or removed, grown
/// files trimmed of their excess, and a short last segment followed by a
/// new one.
fn repair(
    dir: &Path,
    config: &Config,
    dir_state: &DirState,
    mut r: Recovered,
    changed: &mut bool,
) -> Result<Start> {
    *changed |= !r.temps.is_empty();
    repair_tail(dir, dir_state, &mut r, changed)?;
    // Highest sequence first: an interrupted repair leaves the log a
    // prefix of segments, never one with a hole.
    let mut discard = r.discard.clone();
    discard.sort_unstable_by(|a, b| b.file_name().cmp(&a.file_name()));
    for path in &discard {
        let to = recovery::discarded_name(path);
        fs::rename(path, &to).map_err(|e| Error::io("move discarded segment", path, e))?;
        *changed = true;
    }
    let last_seq = r.segments.last().expect("nonempty").seg.seq();
    let mut reuse = None;
    for (seq, path) in &r.blanks {
        let fits = fs::metadata(path)
            .map(|m| m.len() == config.segment_size)
            .unwrap_or(false);
        if reuse.is_none() && *seq == last_seq + 1 && fits {
            // Its creation may have crashed between the rename and the
            // directory sync: its name is made durable (`changed`) before
            // anything is acknowledged in it.
            let seg = Segment::open(path, *seq, true)?;
            // The scan read it in, in folios that may span many pages.
            seg.evict_from(0);
            reuse = Some(seg);
        } else {
            fs::remove_file(path).map_err(|e| Error::io("remove blank segment", path, e))?;
        }
        *changed = true;
    }
    for sref in &r.segments {
        segment::zero_past_size(&sref.seg)?;
    }
    let mut adopted = r.adopted;
    if r.last_short {
        // A last segment cut short is never extended (its header's size
        // would decide what to allocate, up to 1 TiB): it is full, and the
        // log goes on in the next segment, put into use now, whose header
        // the resync writes once the short one's tail is durable.
        let seq = last_seq + 1;
        if seq > MAX_SEQ {
            return Err(Error::LogFull {
                detail: format!("segment sequence number {seq} is above {MAX_SEQ}"),
            });
        }
        let seg = match reuse.take() {
            Some(s) => s,
            None => segment::create(dir, seq, config.segment_size)?,
        };
        r.segments.push(SegRef {
            seg: Arc::new(seg),
            first_lsn: r.end_lsn,
            txn_open: !r.open_txns.is_empty(),
        });
        adopted += 1;
    }
    Ok(Start {
        instance: r.instance,
        segments: r.segments,
        adopted,
        end_lsn: r.end_lsn,
        report: r.report,
        index: r.index,
        open_txns: r.open_txns,
        truncations: r.truncations,
        reuse,
    })
}

/// The tail of the last kept segment: past the poisoned-log limit, its
/// trusted prefix goes into a new file (the old one is never rewritten:
/// snapshots, tails and readers of the failed handle, in any process, may
/// still borrow it); otherwise the bytes after the valid end are zeroed and
/// synced (after saving a copy of a segment damaged mid-log).
fn repair_tail(
    dir: &Path,
    dir_state: &DirState,
    r: &mut Recovered,
    changed: &mut bool,
) -> Result<()> {
    if let (Some(keep), Some(_)) = (r.limited_at, r.zero_range) {
        let old = r.segments.pop().expect("nonempty");
        r.segments.push(rewrite_trusted_prefix(dir, &old, keep)?);
        r.zero_range = None;
    }
    let Some((start, end)) = r.zero_range else {
        return Ok(());
    };
    let last = r.segments.last().expect("nonempty").clone();
    if matches!(&r.report.problem, Some(p) if p.class == crate::error::ProblemClass::MidLogCorruption)
    {
        save_copy(last.seg.path())?;
        *changed = true;
    }
    // SAFETY: we hold the write lock and the registry gate, so no reader or
    // writer of this log in this process exists yet (readers in other
    // processes only copy); the bytes lie past the valid end.
    unsafe { last.seg.bytes_mut(start, end) }.fill(0);
    last.seg.sync_range(start, end).map_err(|e| {
        // The page cache now shows zeros the disk may not have, and the
        // frames that share their page: the poisoned-log rule applies, from
        // what the disk itself holds (§7), read from the last segment whose
        // header is durable (everything before it is: §5, R).
        let salt = header::salt(&r.instance);
        let valid = last.lsn_of(start);
        let from = r.segments[r.segments.len() - 1 - r.adopted].first_lsn;
        let durable = recovery::disk_valid_end(&r.segments, salt, from, valid)
            .unwrap_or(from)
            .min(valid);
        dir_state.poison(dir, r.instance, durable);
        Error::io("zero torn tail", last.seg.path(), e)
    })
}

/// A new log (the directory held none, or only blank segments, which go):
/// segment 0 with its header durable.
fn new_log(dir: &Path, config: &Config, found: Option<Recovered>) -> Result<Start> {
    if let Some(r) = &found {
        for (_, path) in &r.blanks {
            fs::remove_file(path).map_err(|e| Error::io("remove blank segment", path, e))?;
        }
    }
    let instance = config.instance_id.unwrap_or_else(Uuid::new_v4);
    let seg = segment::create(dir, 0, config.segment_size)?;
    let header = Header::new(instance, 0, 0, config.segment_size);
    // SAFETY: the segment is new and private to this function.
    unsafe { segment::write_header(&seg, &header) };
    seg.sync_range(0, DATA_START)
        .map_err(|e| Error::io("sync new segment header", seg.path(), e))?;
    seg.set_sealed();
    Ok(Start {
        instance,
        segments: vec![SegRef {
            seg: Arc::new(seg),
            first_lsn: 0,
            txn_open: false,
        }],
        adopted: 0,
        end_lsn: 0,
        report: RecoveryReport {
            segments: 1,
            ..RecoveryReport::default()
        },
        index: RunIndex::default(),
        open_txns: OpenTxns::default(),
        truncations: Truncations::default(),
        reuse: None,
    })
}

/// The writer's state and the shared state, and the slot of the thread
/// that prepares the next segment (the reused blank one, or a new one).
fn start_writer(
    dir: std::path::PathBuf,
    config: Config,
    dir_state: &Arc<DirState>,
    start: Start,
) -> Result<(Arc<Shared>, Arc<Prep>, RecoveryReport)> {
    let Start {
        instance,
        segments,
        end_lsn,
        report,
        index,
        open_txns,
        truncations,
        reuse,
        ..
    } = start;
    let active = segments.last().expect("a log has a segment").clone();
    let first_lsn = segments[0].first_lsn;
    let next_seq = active.seg.seq() + 1;
    let space = crate::os::space::space_reservation(&dir)?;
    let writer = Writer {
        off: active.offset_of(end_lsn),
        active,
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
        decoder: READ_DECODER,
        log: Published::new(segments, first_lsn, end_lsn, truncations),
        group: GroupCommit::new(end_lsn),
        appends: AtomicU64::new(0),
        counters: crate::log::stats::Counters::new(end_lsn),
        tail_notify: TailNotify::new(),
        pins: Pins::default(),
        retention: Mutex::new(()),
        durable: DurableNotify::default(),
        dir_state: Arc::clone(dir_state),
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
    Ok((shared, prep, report))
}

/// Makes the recovered tail durable from `resync_from` (sealing the
/// segments put into use but not sealed). If that fails, the poisoned-log
/// record names what the disk itself holds of the tail, no more: the
/// previous process's acknowledged entries are there (its syncs
/// completed), bytes the failed sync left only in the page cache are not
/// (§7).
fn resync(shared: &Shared, dir_state: &DirState, resync_from: u64) -> Result<()> {
    let end_lsn = shared.log.end();
    let resynced =
        crate::os::faults::before_sync().and_then(|()| shared.sync_range(resync_from, end_lsn));
    resynced.map_err(|e| {
        let segs = shared.log.view().segs;
        let durable = recovery::disk_valid_end(&segs, shared.salt, resync_from, end_lsn)
            .unwrap_or(resync_from);
        dir_state.poison(&shared.dir, shared.instance, durable);
        Error::io("sync recovered log", &shared.dir, e)
    })
}

/// Drops what the recovery scan read in at and past the writer (in
/// folios that may span synced pages and pages past the end: §5), then
/// faults the first window ahead of the writer in, from the next page.
fn settle_tail_pages(shared: &Shared) {
    let mut w = shared.writer.lock();
    w.active.seg.evict_from(w.off - 1);
    if shared.config.prefault {
        w.active
            .seg
            .populate(w.off, w.off + segment::PREFAULT_WINDOW);
        w.populated = w.off + segment::PREFAULT_WINDOW;
    }
}
