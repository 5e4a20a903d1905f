//! The state the handle, its background threads, its tails and in-process
//! readers share: the published view, group commit, the waiters for
//! durability, the writer's own state behind its mutex, and the sync path
//! that seals segments (DESIGN.md §5, §8).

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::frame::Decoder;
use crate::format::header::Header;
use crate::format::Lsn;
use crate::log::commit::DurableNotify;
use crate::log::config::Config;
use crate::log::group::GroupCommit;
use crate::log::notify::TailNotify;
use crate::log::pins::Pins;
use crate::log::publish::Published;
use crate::log::registry::{self, DirState};
use crate::os::segment::{self};
use crate::os::space::SpaceReservation;
use crate::read::runs::{OpenTxns, RunIndex};
use crate::read::snapshot::{SegRef, Snapshot};
use crate::sync::Mutex;

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
    /// What `Stats` reports beyond the view and group commit.
    pub counters: crate::log::stats::Counters,
    pub tail_notify: TailNotify,
    /// Positions tails still have to read: retention keeps them.
    pub pins: Pins,
    /// Held for the whole of a `purge_to_checkpoint`.
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
            purge: v.purge,
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
                    let started = std::time::Instant::now();
                    crate::os::faults::before_sync()
                        .and_then(|()| self.sync_range(from, to))
                        .inspect(|()| {
                            self.counters.note_sync(to - from, started.elapsed());
                        })
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
    pub(crate) fn sync_range(&self, from: Lsn, to: Lsn) -> std::io::Result<()> {
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
    pub(crate) active: SegRef,
    pub(crate) off: usize,
    pub(crate) next_lsn: Lsn,
    pub(crate) since_sync: u64,
    pub(crate) appends: u64,
    pub(crate) index: RunIndex,
    /// Transactions opened by `append` of a BeginTxn and not yet ended.
    pub(crate) open_txns: OpenTxns,
    /// An `append_txn` is being written (its transaction is open).
    pub(crate) in_txn: bool,
    /// Pages of the active segment below this offset are faulted in (or
    /// asked to be): see [`segment::PREFAULT_WINDOW`].
    pub(crate) populated: usize,
}

impl registry::Live for Shared {
    fn snapshot(&self) -> Snapshot {
        Shared::snapshot(self)
    }

    fn instance(&self) -> Uuid {
        self.instance
    }
}
