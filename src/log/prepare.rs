//! The `wal-prepare` thread: it keeps the next segment ready (so a
//! rotation never waits for allocation) and faults pages in ahead of the
//! writer (`prefault`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::log::shared::Shared;
use crate::os::segment::{self, Segment};
use crate::read::snapshot::SegRef;
use crate::sync::{Condvar, Mutex};

/// The next segment, prepared by a background thread.
pub(crate) struct Prep {
    pub(crate) slot: Mutex<PrepSlot>,
    pub(crate) cv: Condvar,
}

pub(crate) struct PrepSlot {
    /// Pages to fault in ahead of the writer (taken before `want`).
    pub(crate) populate: Option<(SegRef, usize, usize)>,
    pub(crate) want: Option<u64>,
    pub(crate) ready: Option<(u64, Result<Segment>)>,
    pub(crate) stop: bool,
}

pub(crate) fn spawn_preparer(shared: Arc<Shared>, prep: Arc<Prep>) -> Result<JoinHandle<()>> {
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
