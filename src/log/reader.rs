//! [`WalReader`]: a log opened read-only, for inspection, beside or without
//! a writer.
//!
//! Three cases (DESIGN.md §8, "Read-only opens"):
//! - no writer anywhere: a recovery scan that copies each frame before
//!   validating it, and judges what ends the log;
//! - a writer in this process: no scan of the moving tail at all; the view
//!   is the writer's published one (exact, and free of data races);
//! - a writer in another process (it holds the lock file): the same scan,
//!   but what stops it in the last segment is the writer's unpublished work
//!   and is not reported as a problem.

use std::borrow::Borrow;
use std::fs;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::entry::RunId;
use crate::format::frame::READ_DECODER;
use crate::format::header;
use crate::log::config::Config;
use crate::log::registry::Live;
use crate::log::registry::{self, DirId};
use crate::os::lock::writer_state;
use crate::read::replay::{ReplayStats, Txn};
use crate::read::runs::{diff_states, KeyDiff, RunIndex};
use crate::read::snapshot::Snapshot;
use crate::recovery::{self, RecoveryReport, ScanOptions};

/// A log opened read-only, for inspection: it never changes a byte of any
/// file, takes no lock, and works while another process (or this one)
/// appends. It sees the log as it was when opened.
pub struct WalReader {
    dir: PathBuf,
    snapshot: Snapshot,
    index: RunIndex,
    report: RecoveryReport,
    instance: Uuid,
}

impl std::fmt::Debug for WalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalReader")
            .field("dir", &self.dir)
            .field("report", &self.report)
            .finish()
    }
}

impl WalReader {
    /// Opens the log in `dir` read-only.
    ///
    /// Without a writer in this process, each frame is copied into a private
    /// buffer before it is validated, since a writer in another process may
    /// be writing the bytes at the end; what validated is then stable and is
    /// read in place (DESIGN.md, "Soundness"). Beside a writer of this
    /// process, the reader takes that writer's published view.
    ///
    /// Of `config`, only `recovery_mode` applies: `AbsoluteConsistency`
    /// refuses mid-log corruption with [`Error::Corrupt`], as a write open
    /// does. The other settings concern writing; entries of any size that
    /// fits a segment are read, whatever `max_entry_size` says.
    ///
    /// ```
    /// # fn main() -> durability::Result<()> {
    /// use durability::{Config, Op, RunId, Wal, WalReader};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let (a, b) = (RunId::new(), RunId::new());
    /// let wal = Wal::open(dir.path(), Config::default())?;
    /// wal.append_txn(a, 1, &[Op::Write { key: b"answer", value: b"41", version: 1 }])?;
    /// wal.append_txn(b, 1, &[Op::Write { key: b"answer", value: b"42", version: 1 }])?;
    ///
    /// // Beside the writer (or from another process): no lock, no change
    /// // to the files.
    /// let reader = WalReader::open(dir.path(), Config::default())?;
    /// assert!(reader.recovery_report().problem.is_none());
    /// assert_eq!(reader.runs().len(), 2);
    /// let diff = reader.diff_runs(a, b)?;
    /// assert_eq!(diff[0].key, b"answer");
    /// for e in reader.snapshot().iter() {
    ///     let e = e?;
    ///     println!("{} {}", e.lsn, e.entry.kind());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Like
    /// [`Wal::open`](crate::Wal::open), it takes the `Config` by value or
    /// by reference.
    pub fn open(dir: impl AsRef<Path>, config: impl Borrow<Config>) -> Result<WalReader> {
        let config: &Config = config.borrow();
        let dir = dir.as_ref().to_path_buf();
        let meta = fs::metadata(&dir).map_err(|e| Error::io("open log directory", &dir, e))?;
        if !meta.is_dir() {
            return Err(Error::io(
                "open log directory",
                &dir,
                std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        let state = registry::dir_state(DirId::of(&dir)?);
        // Held while scanning: a write open of this process waits, so its
        // repairs never change bytes this scan reads.
        let gate = state.gate.read();
        if let Some(shared) = registry::live_writer(&gate) {
            drop(gate);
            return Self::beside(dir, &*shared, config);
        }
        let expect_max = config.effective_max_entry_size();
        let (mut live, mut generation) = writer_state(&dir);
        let mut scans = 0;
        loop {
            scans += 1;
            let opts = ScanOptions {
                writable: false,
                copy: true,
                live,
                limit: None,
                parallel: false,
            };
            let Some(r) = recovery::recover(&dir, READ_DECODER, expect_max, opts)? else {
                return Err(Error::NotALog { dir });
            };
            let (live_now, generation_now) = writer_state(&dir);
            if !live && (live_now || generation_now != generation) {
                // A writer opened during the scan (and may be gone again):
                // its recovery may have repaired the tail under it. Scan
                // again: beside it if it is still there, or after a few
                // writers came and went, as beside one anyway.
                live = live_now || scans >= 4;
                generation = generation_now;
                continue;
            }
            recovery::enforce(config.recovery_mode, &r.report)?;
            let mark = crate::os::purge::read(&dir, r.instance)?;
            let start = r.segments.first().map_or(0, |s| s.first_lsn);
            let mut snapshot = Snapshot {
                segs: r.segments,
                start,
                end: r.end_lsn,
                salt: header::salt(&r.instance),
                decoder: READ_DECODER,
                dead: r.truncations.visible(r.end_lsn),
                purge: Default::default(),
            };
            let mut index = r.index;
            if let Some(mark) = mark {
                apply_mark(&mut snapshot, &mut index, mark)?;
            }
            return Ok(WalReader {
                dir,
                snapshot,
                index,
                report: r.report,
                instance: r.instance,
            });
        }
    }

    /// A reader beside the writer `shared` of this process: its published
    /// view, surveyed for the report and the run index.
    fn beside(dir: PathBuf, shared: &dyn Live, config: &Config) -> Result<WalReader> {
        let snapshot = shared.snapshot();
        let (report, mut index) = recovery::survey(&snapshot)?;
        // The survey indexes every frame the segments hold; reads start at
        // the purge mark.
        index.truncate_before(snapshot.start_lsn());
        recovery::enforce(config.recovery_mode, &report)?;
        Ok(WalReader {
            dir,
            snapshot,
            index,
            report,
            instance: shared.instance(),
        })
    }

    /// What the scan found.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's instance id.
    pub fn instance_id(&self) -> Uuid {
        self.instance
    }

    /// The log's metadata blob ([`Wal::meta`](crate::Wal::meta)), read now.
    pub fn meta(&self) -> Result<Option<Vec<u8>>> {
        crate::os::meta::read(&self.dir)
    }

    /// The valid log as of opening.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Every committed transaction, in commit order.
    pub fn replay(&self, f: impl FnMut(&Txn<'_, '_>)) -> Result<ReplayStats> {
        self.replayer().for_each(f)
    }

    /// The committed transactions of one run.
    pub fn replay_run(&self, run: RunId, f: impl FnMut(&Txn<'_, '_>)) -> Result<ReplayStats> {
        self.snapshot
            .replay_stretches(run, &self.index.stretches(&run), f)
    }

    /// The keys whose final state differs between runs `a` and `b`.
    pub fn diff_runs(&self, a: RunId, b: RunId) -> Result<Vec<KeyDiff>> {
        let sa = self.snapshot.final_state(a, &self.index.stretches(&a))?;
        let sb = self.snapshot.final_state(b, &self.index.stretches(&b))?;
        Ok(diff_states(sa, sb))
    }

    /// Every run with an entry in the log.
    pub fn runs(&self) -> Vec<RunId> {
        self.index.runs().copied().collect()
    }
}

/// Takes up the purge mark `mark` of a scanned log: reads start there (at
/// the end, if the log ends before it: what lay below was lost to damage),
/// and the run index forgets what lies below.
fn apply_mark(snapshot: &mut Snapshot, index: &mut RunIndex, mark: u64) -> Result<()> {
    let at = mark.min(snapshot.end);
    if at <= snapshot.start {
        return Ok(());
    }
    let point = crate::read::runs::purge_point(snapshot, at)?;
    snapshot.start = at;
    snapshot.purge = std::sync::Arc::new(point);
    index.truncate_before(at);
    Ok(())
}
