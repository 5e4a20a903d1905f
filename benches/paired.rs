//! Paired ratios: our log and the system it is compared with, measured
//! alternately inside every criterion sample, so both see the same machine
//! state (page cache writeback, a noisy neighbour, the disk's mood), and the
//! ratio is taken per sample.
//!
//! Group `paired`, one benchmark per comparison. Each sample runs both
//! sides for the same number of operations, in alternating order (ours
//! first in even samples, the other side first in odd ones), and returns our
//! time, so criterion's own estimate for the benchmark is our side measured
//! interleaved. The per-sample ratio is `their time / our time` (above 1:
//! we are faster); the median over the samples, with both sides' median
//! time per operation, is printed and written to
//! `target/criterion/paired/<name>.json` (under `CARGO_TARGET_DIR`).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::Criterion;

/// One comparison's samples: (our ns/op, their ns/op).
#[derive(Default)]
pub struct Samples {
    pairs: RefCell<Vec<(f64, f64)>>,
    next: RefCell<u64>,
}

impl Samples {
    /// Runs one sample of `iters` operations per side, in this sample's
    /// order, records both, and returns our time.
    pub fn sample(
        &self,
        iters: u64,
        mut ours: impl FnMut(u64) -> Duration,
        mut theirs: impl FnMut(u64) -> Duration,
    ) -> Duration {
        let n = {
            let mut next = self.next.borrow_mut();
            *next += 1;
            *next
        };
        let (a, b) = if n % 2 == 0 {
            let a = ours(iters);
            (a, theirs(iters))
        } else {
            let b = theirs(iters);
            (ours(iters), b)
        };
        let per = |d: Duration| d.as_nanos() as f64 / iters.max(1) as f64;
        self.pairs.borrow_mut().push((per(a), per(b)));
        a
    }

    /// Prints and writes the medians; clears the samples.
    pub fn report(&self, name: &str, what: &str) {
        let pairs = std::mem::take(&mut *self.pairs.borrow_mut());
        if pairs.is_empty() {
            return;
        }
        let med = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let m = v.len() / 2;
            if v.len() % 2 == 1 {
                v[m]
            } else {
                (v[m - 1] + v[m]) / 2.0
            }
        };
        let ours = med(pairs.iter().map(|p| p.0).collect());
        let theirs = med(pairs.iter().map(|p| p.1).collect());
        let ratio = med(pairs.iter().map(|p| p.1 / p.0).collect());
        println!(
            "paired/{name}: ours {ours:.1} ns/op, {what} {theirs:.1} ns/op, \
             ratio {ratio:.2}x (median of {} paired samples)",
            pairs.len()
        );
        let dir = target_dir().join("criterion").join("paired");
        if std::fs::create_dir_all(&dir).is_ok() {
            let samples: Vec<String> = pairs
                .iter()
                .map(|(a, b)| format!("[{a:.1},{b:.1}]"))
                .collect();
            let json = format!(
                "{{\"name\":\"{name}\",\"versus\":\"{what}\",\"ours_ns\":{ours:.1},\
                 \"theirs_ns\":{theirs:.1},\"median_ratio\":{ratio:.4},\
                 \"samples_ours_theirs_ns\":[{}]}}\n",
                samples.join(",")
            );
            let _ = std::fs::write(dir.join(format!("{name}.json")), json);
        }
    }
}

/// Cargo's target directory (where criterion writes too).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The `paired` group's settings: more samples than the per-system groups,
/// since the ratio is the point.
pub fn group(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group("paired");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    g
}
