//! Following a log opened read-only: [`ReaderTail`], from
//! [`WalReader::tail`], delivers the entries of the reader's view and then
//! those a writer appends later, in this process or in another one
//! (DESIGN.md §8, "Tails of read-only opens").
//!
//! Nothing notifies a reader of another process's appends, so the tail looks
//! again when it has delivered everything it holds: beside a writer of this
//! process it takes that writer's published view; otherwise it copies each
//! frame past its view's end into a private buffer and validates it before
//! it extends the view over it (the read-only open's rule: no byte another
//! process may still be writing is ever borrowed before a copy of it
//! validated). A blocking wait looks again every poll interval.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::frame::{Decoder, FRAME_OVERHEAD, MIN_PAYLOAD};
use crate::format::header::{self, HeaderState, DATA_START, MAX_SEQ};
use crate::format::entry::WalEntry;
use crate::format::Lsn;
use crate::log::reader::WalReader;
use crate::log::registry::{self, DirId};
use crate::log::tail::{settle, take, TailEntry};
use crate::os::lock::{lock_generation, LOCK_FILE};
use crate::os::segment::Segment;
use crate::read::dead::Truncations;
use crate::read::snapshot::{SegRef, Snapshot};

/// How often a blocking wait of a [`ReaderTail`] looks for new entries,
/// unless [`ReaderTail::set_poll_interval`] says otherwise.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The shortest and longest poll intervals a [`ReaderTail`] takes.
const POLL_INTERVAL_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_secs(60));

/// Follows a log opened read-only ([`WalReader::tail`]) as a writer, in this
/// process or another, appends to it: each entry once, in log order, the
/// reader's view first.
///
/// A read-only reader cannot be notified of another process's appends, so
/// [`ReaderTail::next_timeout`] looks again every poll interval
/// ([`DEFAULT_POLL_INTERVAL`], [`ReaderTail::set_poll_interval`]), and there
/// is no async form: an async program polls [`ReaderTail::poll_ref`] on its
/// own timer, or blocks in a blocking task. What it looks at:
///
/// - beside a [`Wal`](crate::Wal) of this process, that writer's published
///   view, as [`WalReader::open`] takes it;
/// - otherwise, the frames past its view's end, each copied into a private
///   buffer and validated (length, CRC seeded by its LSN, structure) before
///   the view is extended over it, and only by whole units (a batch counts
///   once its last frame is there); then the next segment, once its first
///   frame validates where the last one's frames end. Each time a writer
///   opens the log (the lock file counts write opens), and on the first look
///   past the reader's own view, it scans the whole log again as
///   [`WalReader::open`] does (in the default
///   [`RecoveryMode`](crate::RecoveryMode), whatever the reader was opened
///   with), since a write open may have repaired the end.
///
/// It holds no pin: it does not hold back the writer's retention. A tail
/// whose next entry was purged ([`Wal::purge_before`](crate::Wal::purge_before)),
/// or deleted by retention before it read it, gets one [`Error::BadLsn`]
/// ("purged") and goes on from the log's start. It never reports
/// [`Error::Closed`]: a writer that closes the log says nothing of the
/// next one.
pub struct ReaderTail {
    dir: PathBuf,
    instance: Uuid,
    /// The view the tail reads: every byte below its end was published by a
    /// writer of this process or validated from a private copy.
    snap: Snapshot,
    /// The truncation records of `snap`, to extend its deleted ranges.
    truncations: Truncations,
    next: Lsn,
    /// Nothing below it is delivered: the highest purge mark (or start)
    /// seen.
    mark: Lsn,
    /// The lock file's count of write opens when `snap` was last scanned
    /// whole (`None`: unknown, so the next look scans).
    generation: Option<u64>,
    /// The view's end when a whole scan made it, until the view changes.
    scanned_end: Option<Lsn>,
    /// A mapping of the segment after the view's last one, kept while its
    /// first frame is not there yet (a segment the writer prepared).
    following: Option<SegRef>,
    interval: Duration,
    buf: Vec<u8>,
}

impl std::fmt::Debug for ReaderTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderTail")
            .field("dir", &self.dir)
            .field("next", &self.next)
            .field("end", &self.snap.end)
            .finish()
    }
}

impl WalReader {
    /// A tail that delivers the entries of this reader's view from `lsn`
    /// (0: from the log's start), then the entries a writer appends later,
    /// in this process or another: see [`ReaderTail`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use durability::{Config, Wal, WalEntry, WalReader, RunId};
    /// # fn main() -> durability::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let config = Config::default().segment_size(1 << 20);
    /// let abort = |txn_id| WalEntry::AbortTxn { txn_id, run_id: RunId::new() };
    /// Wal::open(dir.path(), &config)?.append(&abort(1))?;
    ///
    /// let reader = WalReader::open(dir.path(), &config)?;
    /// let mut tail = reader.tail(0);
    /// assert!(matches!(tail.poll()?, Some((_, WalEntry::AbortTxn { txn_id: 1, .. }))));
    ///
    /// // A writer appends later (here in this process; another would do).
    /// let wal = Wal::open(dir.path(), &config)?;
    /// wal.append(&abort(2))?;
    /// let (_, e) = tail.next_timeout(Duration::from_secs(60))?.expect("appended");
    /// assert!(matches!(e, WalEntry::AbortTxn { txn_id: 2, .. }));
    /// # Ok(())
    /// # }
    /// ```
    pub fn tail(&self, lsn: Lsn) -> ReaderTail {
        let snap = copy_view(self.snapshot());
        let start = snap.start_lsn();
        ReaderTail {
            dir: self.dir().to_path_buf(),
            instance: self.instance_id(),
            truncations: truncations_of(&snap),
            next: if lsn == 0 { start } else { lsn },
            mark: start,
            generation: None,
            scanned_end: None,
            following: None,
            interval: DEFAULT_POLL_INTERVAL,
            buf: Vec::new(),
            snap,
        }
    }
}

/// The same view of the log, sharing its mappings.
fn copy_view(s: &Snapshot) -> Snapshot {
    Snapshot {
        segs: s.segs.clone(),
        start: s.start,
        end: s.end,
        salt: s.salt,
        decoder: s.decoder,
        dead: std::sync::Arc::clone(&s.dead),
        purge: std::sync::Arc::clone(&s.purge),
    }
}

/// The records of `snap`'s deleted ranges, to add more to.
fn truncations_of(snap: &Snapshot) -> Truncations {
    let mut t = Truncations::default();
    for &(from, at) in snap.dead.ranges() {
        t.add(from, at);
    }
    t
}

/// Whether the view can go on into the segment after its last one.
enum Following {
    /// It does: the segment, starting where the view ends.
    Continues(SegRef),
    /// Not yet (the writer has not put it into use, or not written its first
    /// frame so far as this reader can see).
    NotYet,
    /// The view cannot be extended from here: a scan of the whole log must
    /// decide (retention deleted segments the tail never read, or the next
    /// segment does not continue the view).
    Rescan,
}

impl ReaderTail {
    /// The LSN of the next entry to deliver.
    ///
    /// ```
    /// # use durability::{Config, RunId, Wal, WalEntry, WalReader};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let config = Config::default().segment_size(1 << 20);
    /// let wal = Wal::open(dir.path(), &config).unwrap();
    /// let p = wal.append(&WalEntry::AbortTxn { txn_id: 1, run_id: RunId::new() }).unwrap();
    /// let mut tail = WalReader::open(dir.path(), &config).unwrap().tail(0);
    /// assert_eq!(tail.position(), p.lsn);
    /// tail.poll().unwrap().unwrap();
    /// assert_eq!(tail.position(), p.end);
    /// ```
    pub fn position(&self) -> Lsn {
        self.next
    }

    /// How often [`ReaderTail::next_timeout`] looks for new entries while it
    /// waits, bounded to between 1 ms and 60 s.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use durability::{Config, Wal, WalReader};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let config = Config::default().segment_size(1 << 20);
    /// # Wal::open(dir.path(), &config).unwrap().close().unwrap();
    /// let mut tail = WalReader::open(dir.path(), &config).unwrap().tail(0);
    /// tail.set_poll_interval(Duration::from_millis(100));
    /// assert_eq!(tail.poll_interval(), Duration::from_millis(100));
    /// tail.set_poll_interval(Duration::ZERO);
    /// assert_eq!(tail.poll_interval(), Duration::from_millis(1), "never a busy loop");
    /// ```
    pub fn set_poll_interval(&mut self, interval: Duration) {
        let (lo, hi) = POLL_INTERVAL_BOUNDS;
        self.interval = interval.clamp(lo, hi);
    }

    /// The poll interval ([`ReaderTail::set_poll_interval`]).
    ///
    /// ```
    /// # use durability::{Config, Wal, WalReader};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let config = Config::default().segment_size(1 << 20);
    /// # Wal::open(dir.path(), &config).unwrap().close().unwrap();
    /// let tail = WalReader::open(dir.path(), &config).unwrap().tail(0);
    /// assert_eq!(tail.poll_interval(), durability::log::reader_tail::DEFAULT_POLL_INTERVAL);
    /// ```
    pub fn poll_interval(&self) -> Duration {
        self.interval
    }

    /// The next entry if the tail holds one, or finds one looking again
    /// now; does not wait. Errors as [`Tail::poll`](crate::Tail::poll)
    /// does, and with what a scan of the log reports when it has to scan
    /// again (the log is not there any more, or is another log).
    ///
    /// ```
    /// # use durability::{Config, RunId, Wal, WalEntry, WalReader};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let config = Config::default().segment_size(1 << 20);
    /// let wal = Wal::open(dir.path(), &config).unwrap();
    /// let abort = WalEntry::AbortTxn { txn_id: 1, run_id: RunId::new() };
    /// let at = wal.append(&abort).unwrap().lsn;
    /// let mut tail = WalReader::open(dir.path(), &config).unwrap().tail(0);
    /// assert_eq!(tail.poll().unwrap(), Some((at, abort)));
    /// assert_eq!(tail.poll().unwrap(), None);
    /// ```
    pub fn poll(&mut self) -> Result<Option<(Lsn, WalEntry)>> {
        Ok(self.poll_ref()?.map(TailEntry::into_owned))
    }

    /// [`ReaderTail::poll`], zero-copy: the entry is borrowed from the
    /// mapped log until the tail's next call.
    ///
    /// ```
    /// use durability::{Config, Op, RunId, Wal, WalReader};
    /// # fn main() -> durability::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let config = Config::default().segment_size(1 << 20);
    /// let wal = Wal::open(dir.path(), &config)?;
    /// wal.append_txn(RunId::new(), 1, &[Op::Write { key: b"k", value: b"v", version: 1 }])?;
    /// wal.close()?;
    /// let mut tail = WalReader::open(dir.path(), &config)?.tail(0);
    /// let mut values = Vec::new();
    /// while let Some(e) = tail.poll_ref()? {
    ///     values.extend(e.entry().value().map(<[u8]>::len));
    /// }
    /// assert_eq!(values, [1]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_ref(&mut self) -> Result<Option<TailEntry<'_>>> {
        if !self.advance()? {
            return Ok(None);
        }
        take(&self.snap, &mut self.next).map(Some)
    }

    /// The next entry, looking again every poll interval for up to
    /// `timeout` (`Duration::MAX`: no deadline). Returns `Ok(None)` on time
    /// out; never [`Error::Closed`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use durability::{Config, RunId, Wal, WalEntry, WalReader};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let config = Config::default().segment_size(1 << 20);
    /// let wal = Wal::open(dir.path(), &config).unwrap();
    /// let mut tail = WalReader::open(dir.path(), &config).unwrap().tail(0);
    /// let abort = WalEntry::AbortTxn { txn_id: 1, run_id: RunId::new() };
    /// let appender = std::thread::spawn(move || wal.append(&abort).map(|p| p.lsn));
    /// let (at, _) = tail.next_timeout(Duration::from_secs(60)).unwrap().expect("appended");
    /// assert_eq!(at, appender.join().unwrap().unwrap());
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<(Lsn, WalEntry)>> {
        Ok(self
            .next_ref_timeout(timeout)?
            .map(TailEntry::into_owned))
    }

    /// [`ReaderTail::next_timeout`], zero-copy: the entry is borrowed from
    /// the mapped log until the tail's next call.
    ///
    /// ```
    /// use std::time::Duration;
    /// use durability::{Config, Wal, WalEntry, WalReader, RunId};
    /// # fn main() -> durability::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let config = Config::default().segment_size(1 << 20);
    /// Wal::open(dir.path(), &config)?.close()?;
    /// let mut tail = WalReader::open(dir.path(), &config)?.tail(0);
    /// assert!(tail.next_ref_timeout(Duration::from_millis(5))?.is_none(), "empty");
    ///
    /// let wal = Wal::open(dir.path(), &config)?;
    /// let at = wal.append(&WalEntry::AbortTxn { txn_id: 9, run_id: RunId::new() })?.lsn;
    /// let e = tail.next_ref_timeout(Duration::MAX)?.expect("no deadline");
    /// assert_eq!((e.lsn(), e.entry().txn_id()), (at, Some(9)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn next_ref_timeout(&mut self, timeout: Duration) -> Result<Option<TailEntry<'_>>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if self.advance()? {
                return take(&self.snap, &mut self.next).map(Some);
            }
            let now = Instant::now();
            let wait = match deadline {
                Some(d) if d <= now => return Ok(None),
                Some(d) => (d - now).min(self.interval),
                None => self.interval,
            };
            std::thread::sleep(wait);
        }
    }

    /// Looks again if the tail has delivered its whole view, and settles
    /// the position on the entry to deliver; false if there is none yet.
    fn advance(&mut self) -> Result<bool> {
        if self.next >= self.snap.end {
            self.refresh()?;
        }
        if self.next < self.mark {
            let e = Error::BadLsn {
                lsn: self.next,
                detail: format!(
                    "purged: every entry below LSN {} was purged; the log starts there",
                    self.mark
                ),
            };
            self.next = self.mark;
            return Err(e);
        }
        if self.next >= self.snap.end {
            return Ok(false);
        }
        settle(&self.snap, &mut self.next)?;
        Ok(true)
    }

    /// Brings the view up to date: the published view of a writer of this
    /// process; else the view extended by the frames validated past its
    /// end, or, after a write open (or when the tail cannot tell), a scan of
    /// the whole log. Then takes up the purge mark.
    fn refresh(&mut self) -> Result<()> {
        let state = registry::dir_state(DirId::of(&self.dir)?);
        let settled = {
            // Held while copying: a write open of this process waits, so it
            // never repairs bytes this copy reads, and no writer of this
            // process stores bytes it copies (DESIGN.md §8).
            let gate = state.gate.read();
            if let Some(live) = registry::live_writer(&gate) {
                drop(gate);
                if live.instance() != self.instance {
                    return Err(self.other_log());
                }
                self.install(live.snapshot());
                // When it closes, the view is scanned whole again.
                self.generation = None;
                return self.take_mark();
            }
            let known = self.generation == Some(self.write_opens());
            if known && self.extend() {
                return self.take_mark();
            }
            // A whole scan that ended here already judged what follows (a
            // damaged segment, say): scanning again before the log changes
            // would only repeat it, every poll interval.
            known && self.scanned_end == Some(self.snap.end)
        };
        if !settled {
            self.rescan()?;
        }
        self.take_mark()
    }

    /// Scans the whole log as [`WalReader::open`] does (without holding the
    /// gate, which the open takes) and takes its view.
    fn rescan(&mut self) -> Result<()> {
        // Read before: a write open during the scan makes the next look scan
        // again. The default recovery mode (PointInTime): the tail wants the
        // valid log, whatever the reader was opened with.
        let generation = self.write_opens();
        let reader = WalReader::open(&self.dir, crate::log::config::Config::default())?;
        if reader.instance_id() != self.instance {
            return Err(self.other_log());
        }
        self.install(copy_view(reader.snapshot()));
        self.generation = Some(generation);
        self.scanned_end = Some(self.snap.end);
        Ok(())
    }

    /// The write opens the lock file has counted (0 if it has none). A
    /// write open counts itself before it repairs anything (DESIGN.md §8,
    /// "Read-only opens"). Read without the lock probe: whether a writer
    /// runs now does not matter, only whether one opened.
    fn write_opens(&self) -> u64 {
        crate::os::files::open_read(&self.dir.join(LOCK_FILE)).map_or(0, |f| lock_generation(&f))
    }

    fn other_log(&self) -> Error {
        Error::InvalidArgument {
            detail: format!(
                "{} now holds another log (instance {}), not the one this tail follows",
                self.dir.display(),
                self.instance
            ),
        }
    }

    fn install(&mut self, snap: Snapshot) {
        self.scanned_end = None;
        self.mark = self.mark.max(snap.start_lsn());
        self.truncations = truncations_of(&snap);
        self.following = None;
        self.snap = snap;
    }

    /// Reads the purge mark: nothing below it is delivered.
    fn take_mark(&mut self) -> Result<()> {
        if let Some(mark) = crate::os::purge::read(&self.dir, self.instance)? {
            self.mark = self.mark.max(mark);
        }
        if self.mark > self.snap.start && self.mark <= self.snap.end {
            self.snap.start = self.mark;
        }
        Ok(())
    }

    /// Extends the view over the whole units validated, from private copies,
    /// past its end, into the following segments as far as they continue
    /// it. False if a scan of the whole log must decide instead.
    fn extend(&mut self) -> bool {
        loop {
            let Some(last) = self.snap.segs.last().cloned() else {
                return false;
            };
            if self.snap.end < last.first_lsn {
                return false;
            }
            self.extend_in(&last);
            match self.following(&last) {
                Following::Continues(next) => {
                    self.following = None;
                    self.snap.segs.push(next);
                }
                Following::NotYet => return true,
                Following::Rescan => return false,
            }
        }
    }

    /// Extends the view over the whole units that validate, copied, from
    /// its end in `last`, its last segment.
    fn extend_in(&mut self, last: &SegRef) {
        let salt = self.snap.salt;
        let decoder = self.snap.decoder;
        let mut off = last.offset_of(self.snap.end);
        // Truncation records of the unit being read.
        let mut records: Vec<(Lsn, Lsn)> = Vec::new();
        while let Some(f) = copy_frame(
            &last.seg,
            off,
            header::seed(salt, last.lsn_of(off)),
            &decoder,
            &mut self.buf,
        ) {
            if let Some(from) = f.truncate_from {
                records.push((from, last.lsn_of(off)));
            }
            off += f.len;
            if !f.continues {
                self.snap.end = last.lsn_of(off);
                for (from, at) in records.drain(..) {
                    self.truncations.add(from, at);
                    self.snap.dead = self.truncations.visible(self.snap.end);
                }
            }
        }
    }

    /// Whether the segment after `last` continues the view (its first frame
    /// lies where the view ends).
    fn following(&mut self, last: &SegRef) -> Following {
        let end = self.snap.end;
        let seq = last.seg.seq() + 1;
        if seq > MAX_SEQ {
            return Following::NotYet;
        }
        let seg = match self.following.take() {
            Some(s) if s.seg.seq() == seq => s.seg,
            _ => match Segment::open(&self.dir.join(header::file_name(seq)), seq, false) {
                Ok(seg) => std::sync::Arc::new(seg),
                Err(Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
                    // Retention deletes the oldest segments first and never
                    // the last: if the view's last segment is gone too, so
                    // are segments the tail never read.
                    return if last.seg.path().exists() {
                        Following::NotYet
                    } else {
                        Following::Rescan
                    };
                }
                // Shorter than a header page: not a segment of the log yet
                // (the writer renames segments into place whole).
                Err(Error::SegmentHeader { .. }) => return Following::NotYet,
                // A scan reports what is wrong with it.
                Err(_) => return Following::Rescan,
            },
        };
        let sref = SegRef {
            seg,
            first_lsn: end,
            txn_open: false,
        };
        match sref.seg.header() {
            HeaderState::Valid(h) if h.instance() != self.instance || h.seq.get() != seq => {
                Following::Rescan
            }
            HeaderState::Valid(h) if h.first_lsn.get() == end => Following::Continues(sref),
            // The view's last segment holds frames this tail has not seen
            // yet (a header is written once everything before it is
            // durable).
            HeaderState::Valid(h) if h.first_lsn.get() > end => Following::NotYet,
            HeaderState::Valid(_) => Following::Rescan,
            // A segment the writer put into use before writing its header:
            // it continues the view if its first frame validates at the
            // view's end (the seed binds a frame to its LSN).
            HeaderState::Blank => {
                let seed = header::seed(self.snap.salt, end);
                if copy_frame(&sref.seg, DATA_START, seed, &self.snap.decoder, &mut self.buf)
                    .is_some()
                {
                    Following::Continues(sref)
                } else {
                    self.following = Some(sref);
                    Following::NotYet
                }
            }
            HeaderState::Invalid(_) => Following::NotYet,
        }
    }
}

/// What the view needs of a validated frame.
struct Copied {
    len: usize,
    continues: bool,
    truncate_from: Option<Lsn>,
}

/// Copies the frame at `off` of `seg` into `buf` (volatile loads: another
/// process may be writing it) and validates the copy; `None` if no whole
/// valid frame is there (nothing yet, a frame being written, or damage).
/// Never allocates more than the segment holds past `off`.
fn copy_frame(
    seg: &Segment,
    off: usize,
    seed: u32,
    decoder: &Decoder,
    buf: &mut Vec<u8>,
) -> Option<Copied> {
    let mut len = [0u8; 4];
    if seg.copy_out(off, &mut len) < len.len() {
        return None;
    }
    let len = u32::from_le_bytes(len) as usize;
    let whole = len.checked_add(FRAME_OVERHEAD)?;
    if len < MIN_PAYLOAD || whole > seg.len().saturating_sub(off) {
        return None;
    }
    buf.clear();
    buf.resize(whole, 0);
    if seg.copy_out(off, buf) < whole {
        return None;
    }
    let frame = decoder.decode(buf, 0, seed).ok()??;
    Some(Copied {
        len: frame.len,
        continues: frame.continues,
        truncate_from: frame.entry.truncate_from(),
    })
}
