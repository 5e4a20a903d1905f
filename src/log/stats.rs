//! What the log has done, for monitoring: the counters a handle keeps and
//! [`Stats`], their snapshot.
//!
//! A snapshot of plain numbers, not a metrics facade: the application
//! scrapes [`Wal::stats`](crate::Wal::stats) as often as it likes and hands
//! the numbers to whatever it exports with (Prometheus, `metrics`,
//! OpenTelemetry, a log line), as RocksDB's users read its `Statistics`
//! tickers and histograms and raft-engine's read its counters; the library
//! depends on no exporter and costs nothing when nobody reads. Every count
//! is since this handle opened the log and only grows; a rate is the
//! difference of two snapshots over the time between them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::format::Lsn;
use crate::os::space::SpaceReservation;

/// Upper bounds of the sync-latency buckets, in microseconds; the last
/// bucket holds everything slower than the last bound.
pub const SYNC_LATENCY_BOUNDS_US: [u64; 15] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

const BUCKETS: usize = SYNC_LATENCY_BOUNDS_US.len() + 1;

/// A snapshot of what the log has done since this handle opened it
/// ([`Wal::stats`](crate::Wal::stats)): cheap (a few atomic loads), safe to
/// call from any thread at any rate.
///
/// ```
/// # fn main() -> durability::Result<()> {
/// use durability::{Config, Op, RunId, SyncMode, Wal};
///
/// let dir = tempfile::tempdir().unwrap();
/// let wal = Wal::open(dir.path(), Config::default().sync_mode(SyncMode::Strict))?;
/// let run = RunId::new();
/// for txn in 1..=10 {
///     wal.append_txn(run, txn, &[Op::Write { key: b"k", value: b"v", version: txn }])?;
/// }
/// let s = wal.stats();
/// assert_eq!(s.appends, 10);
/// assert!(s.syncs >= 1 && s.bytes_appended > 0);
/// // Mean group-commit size, and a latency quantile for a dashboard.
/// let group = s.waited_appends as f64 / s.syncs as f64;
/// assert!(group >= 1.0);
/// let p99 = s.sync_latency.quantile(0.99);
/// assert!(p99 <= s.sync_time_max.max(std::time::Duration::from_micros(50)) * 100);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Append calls (`append*`, `submit_*`, `append_txn`, `checkpoint`)
    /// completed.
    pub appends: u64,
    /// Bytes of log appended (frames, as LSNs count them).
    pub bytes_appended: u64,
    /// Bytes made durable by syncs (a sync covers everything appended
    /// since the one before it).
    pub bytes_synced: u64,
    /// Appends that waited for a sync (Strict mode's appends). Divided by
    /// `syncs`, the mean group-commit size: how many appends one sync
    /// acknowledged.
    pub waited_appends: u64,
    /// Segments put into use after the one the log opened on (rotations).
    pub rotations: u64,
    /// Time spent in syncs, summed over all of them.
    pub sync_time_total: Duration,
    /// The longest sync.
    pub sync_time_max: Duration,
    /// How long syncs took, as a histogram.
    pub sync_latency: SyncLatency,
    /// How long opening took: recovery (the scan and its verdict), repair
    /// and making the recovered tail durable.
    pub open_time: Duration,
    /// Whether the filesystem reserves the space of a preallocated segment
    /// (so that a full disk is an error at segment creation, never a signal
    /// on a write into the map); see [`SpaceReservation`].
    pub space: SpaceReservation,
}

/// Sync latencies: `counts[i]` syncs took at most
/// [`SYNC_LATENCY_BOUNDS_US`]`[i]` µs and more than the bound before it; the
/// last count, more than the last bound. Cumulate the counts for a
/// Prometheus-style histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncLatency {
    /// Syncs per bucket.
    pub counts: [u64; BUCKETS],
}

impl SyncLatency {
    /// The bucket bounds, in microseconds ([`SYNC_LATENCY_BOUNDS_US`]).
    pub fn bounds_us(&self) -> &'static [u64] {
        &SYNC_LATENCY_BOUNDS_US
    }

    /// Syncs counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// An upper bound of the `q` quantile (`0.0..=1.0`): the bound of the
    /// bucket it falls in; for the last bucket, the last bound. Zero when
    /// no sync was counted.
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.total();
        if total == 0 {
            return Duration::ZERO;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        // The rank of the quantile, 1-based: at least the first sync.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let i = i.min(SYNC_LATENCY_BOUNDS_US.len() - 1);
                return Duration::from_micros(SYNC_LATENCY_BOUNDS_US[i]);
            }
        }
        Duration::from_micros(SYNC_LATENCY_BOUNDS_US[SYNC_LATENCY_BOUNDS_US.len() - 1])
    }
}

/// The counters behind [`Stats`] that the published view and group commit
/// do not already keep. Relaxed atomics: each is a count on its own, read
/// for monitoring, never to decide anything.
pub(crate) struct Counters {
    /// The end of the log when it opened: `bytes_appended` counts from it.
    pub opened_end: Lsn,
    pub rotations: AtomicU64,
    pub waited_appends: AtomicU64,
    pub bytes_synced: AtomicU64,
    sync_ns_total: AtomicU64,
    sync_ns_max: AtomicU64,
    sync_buckets: [AtomicU64; BUCKETS],
    pub open_ns: AtomicU64,
}

impl Counters {
    pub(crate) fn new(opened_end: Lsn) -> Self {
        Counters {
            opened_end,
            rotations: AtomicU64::new(0),
            waited_appends: AtomicU64::new(0),
            bytes_synced: AtomicU64::new(0),
            sync_ns_total: AtomicU64::new(0),
            sync_ns_max: AtomicU64::new(0),
            sync_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            open_ns: AtomicU64::new(0),
        }
    }

    /// Counts one completed sync of `bytes` that took `took`.
    pub(crate) fn note_sync(&self, bytes: u64, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.bytes_synced.fetch_add(bytes, Ordering::Relaxed);
        self.sync_ns_total.fetch_add(ns, Ordering::Relaxed);
        self.sync_ns_max.fetch_max(ns, Ordering::Relaxed);
        let us = ns.div_ceil(1_000);
        let i = SYNC_LATENCY_BOUNDS_US.partition_point(|&b| b < us);
        self.sync_buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_open(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.open_ns.store(ns, Ordering::Relaxed);
    }

    pub(crate) fn sync_time_total(&self) -> Duration {
        Duration::from_nanos(self.sync_ns_total.load(Ordering::Relaxed))
    }

    pub(crate) fn sync_time_max(&self) -> Duration {
        Duration::from_nanos(self.sync_ns_max.load(Ordering::Relaxed))
    }

    pub(crate) fn sync_latency(&self) -> SyncLatency {
        SyncLatency {
            counts: std::array::from_fn(|i| self.sync_buckets[i].load(Ordering::Relaxed)),
        }
    }

    pub(crate) fn open_time(&self) -> Duration {
        Duration::from_nanos(self.open_ns.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_lands_in_the_bucket_of_its_bound() {
        let c = Counters::new(0);
        c.note_sync(10, Duration::from_micros(50)); // at the first bound
        c.note_sync(10, Duration::from_micros(51)); // just past it
        c.note_sync(10, Duration::from_secs(60)); // past every bound
        let l = c.sync_latency();
        assert_eq!(l.counts[0], 1);
        assert_eq!(l.counts[1], 1);
        assert_eq!(l.counts[BUCKETS - 1], 1);
        assert_eq!(l.total(), 3);
        assert_eq!(l.quantile(0.0), Duration::from_micros(50));
        assert_eq!(l.quantile(0.5), Duration::from_micros(100));
        assert_eq!(l.quantile(1.0), Duration::from_secs(5));
        assert_eq!(c.sync_time_max(), Duration::from_secs(60));
        assert_eq!(c.bytes_synced.load(Ordering::Relaxed), 30);
    }

    #[test]
    fn no_sync_is_a_zero_quantile() {
        let l = Counters::new(0).sync_latency();
        assert_eq!(l.quantile(0.99), Duration::ZERO);
        assert_eq!(l.quantile(f64::NAN), Duration::ZERO);
    }
}
