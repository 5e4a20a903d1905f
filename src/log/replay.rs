//! Replay from a position for [`Wal`] and
//! [`WalReader`] (DESIGN.md §9): the builder ([`Replayer`]) and the
//! assembly live in `read/replay.rs`; here each log hands it its view.

use crate::log::reader::WalReader;
use crate::log::wal::Wal;
use crate::read::replay::{IndexQuery, Indexed, Replayer};
use crate::read::snapshot::Snapshot;

impl Indexed for Wal {
    /// The published log and, under the writer lock, the run index as of
    /// it: no append, truncation or retention comes between the two.
    fn indexed_view(&self, query: Option<IndexQuery<'_>>) -> Snapshot {
        let Some(query) = query else {
            return self.shared.snapshot();
        };
        let w = self.shared.writer.lock();
        let snap = self.shared.snapshot();
        query(&snap, &w.index);
        drop(w);
        snap
    }
}

impl Wal {
    /// A replay of the log, to set up and run: from a position
    /// ([`Replayer::from`]), of one run
    /// ([`Replayer::run`]), with a callback that may fail or stop
    /// ([`Replayer::try_for_each`]). It sees the log as published when it
    /// runs. A replay of one run reads only that run's stretches; one from
    /// a position reads, before it, only what the transactions open there
    /// need (DESIGN.md §9).
    pub fn replayer(&self) -> Replayer<'_> {
        Replayer::indexed(self)
    }
}

impl WalReader {
    /// A replay of the log as of opening, to set up and run: see
    /// [`Wal::replayer`]. The reader's run index is not reachable from
    /// here, so a replay from a position reads every entry from the last
    /// segment boundary before it where no transaction is open (usually
    /// less than a segment), and one of a single run reads the whole log
    /// from where it starts; [`WalReader::replay_run`] reads only the run's
    /// stretches.
    pub fn replayer(&self) -> Replayer<'_> {
        self.snapshot().replayer()
    }
}
