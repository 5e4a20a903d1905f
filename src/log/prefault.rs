//! Faulting segment pages in ahead of the writer without ever touching a
//! page a sync has cleaned (DESIGN.md §5, "Creating a segment"; §8).
//!
//! `MADV_POPULATE_WRITE` changes no byte, but on a page that is present and
//! clean (written back, or cleaned by a sync) it is a write fault: the page
//! is dirty again and the device writes it once more. So the background
//! thread populates only pages strictly past where the writer is *when the
//! populate runs*: it works in small chunks, and for each one reads the
//! writer's position first and starts at the next page boundary after it.
//!
//! That alone leaves a race: the writer may pass the chunk, publish, and a
//! sync clean those pages while the `madvise` is still running. A claim
//! closes it. The populating thread publishes the chunk it is about to
//! fault in (`claim`, under a mutex), and a sync waits, before it cleans a
//! range of a segment, until no claimed chunk overlaps its pages. Either
//! the sync checks first — then it read its range's end before, the claim
//! reads the writer's position after (the mutex orders them), and the
//! claimed pages lie past the sync's — or the claim comes first, and the
//! sync cleans those pages only after the populate has finished with
//! them. A chunk is 64 KiB (16 pages, tens of microseconds), so a sync
//! waits at most that long, and only when the writer has caught up with
//! the populating thread.
//!
//! The argument is about pages, and the page cache keeps dirtiness per
//! folio. Faults through a map bring pages in as folios of one page, but a
//! read (the recovery scan) may bring in folios of many, which would let a
//! fault past the writer dirty synced pages: open drops what the scan read
//! in at and past the writer (`Segment::evict_from`, DESIGN.md §5).

use crate::format::header::DATA_START;
use crate::format::Lsn;
use crate::os::segment::Segment;
use crate::read::snapshot::SegRef;
use crate::sync::{Condvar, Mutex};

/// Pages faulted in per claim.
const CHUNK: usize = 64 << 10;

/// The system's page size: what a sync cleans and a fault dirties.
fn page() -> usize {
    crate::os::segment::page_size()
}

/// The chunk being faulted in: (segment identity, pages `[lo, hi)`).
type Claim = (usize, usize, usize);

/// The claim protocol of one log.
#[derive(Default)]
pub(crate) struct Prefault {
    claim: Mutex<Option<Claim>>,
    cv: Condvar,
}

fn id(seg: &Segment) -> usize {
    seg as *const Segment as usize
}

impl Prefault {
    /// Faults in the pages of `[from, to)` of `sref` (file offsets) that
    /// lie past the writer, chunk by chunk; `here()` reads the writer's
    /// position (an LSN: where its next byte goes, at least the published
    /// end). Stops once the writer has left the segment.
    /// Nothing, where the system cannot fault pages in without writing
    /// them ([`crate::os::segment::CAN_POPULATE`]): no claim, so no sync
    /// ever waits.
    pub(crate) fn populate(&self, sref: &SegRef, from: usize, to: usize, here: impl Fn() -> Lsn) {
        if !crate::os::segment::CAN_POPULATE {
            return;
        }
        let seg = id(&sref.seg);
        let fault = |lo, hi| sref.seg.populate(lo, hi);
        self.populate_range(seg, sref.first_lsn, sref.seg.len(), (from, to), here, fault);
    }

    /// [`Prefault::populate`] of segment `seg` (an identity), whose first
    /// frame is at LSN `first_lsn` and whose map is `len` bytes; `fault`
    /// faults a range in.
    pub(crate) fn populate_range(
        &self,
        seg: usize,
        first_lsn: Lsn,
        len: usize,
        (from, to): (usize, usize),
        here: impl Fn() -> Lsn,
        fault: impl Fn(usize, usize),
    ) {
        let mut at = from;
        while at < to.min(len) {
            let chunk_end = (at + CHUNK).min(to).min(len);
            let lo = {
                let mut claim = self.claim.lock();
                let writer = here();
                let past = if writer <= first_lsn {
                    DATA_START
                } else {
                    // The page holding the writer's next byte has bytes a
                    // sync may have cleaned: start at the next page.
                    let off = writer - first_lsn;
                    match usize::try_from(off)
                        .ok()
                        .and_then(|o| o.checked_add(DATA_START))
                    {
                        Some(o) if o < len => o.div_ceil(page()) * page(),
                        _ => return, // the writer left the segment
                    }
                };
                let lo = at.max(past).div_ceil(page()) * page();
                if lo >= chunk_end {
                    None
                } else {
                    *claim = Some((seg, lo, chunk_end));
                    Some(lo)
                }
            };
            if let Some(lo) = lo {
                fault(lo, chunk_end);
                let mut claim = self.claim.lock();
                *claim = None;
                self.cv.notify_all();
            }
            at = chunk_end;
        }
    }

    /// Waits until no chunk being faulted in overlaps the pages of
    /// `[start, end)` of `seg`: called before a sync cleans them.
    pub(crate) fn before_sync(&self, seg: &Segment, start: usize, end: usize) {
        self.wait_clear(id(seg), start, end);
    }

    /// [`Prefault::before_sync`] of segment `seg` (an identity).
    pub(crate) fn wait_clear(&self, seg: usize, start: usize, end: usize) {
        let page = page();
        let (first, last) = (start / page * page, end.div_ceil(page) * page);
        let mut claim = self.claim.lock();
        while let Some((s, lo, hi)) = *claim {
            if s != seg || hi <= first || last <= lo {
                break;
            }
            self.cv.wait(&mut claim);
        }
    }
}
