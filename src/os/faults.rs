//! The fault-injection seam. With the `fault-injection` feature, tests can
//! make the next syncs or segment allocations fail; without it every hook is
//! an empty inline function, so release builds pay nothing.
//!
//! The switches are process-wide: a test arms them with
//! `faults::fail_syncs_after` and friends (present only with the feature),
//! which affect every log in the process, so tests that use them run in
//! their own process (a separate test binary) or serially.

#[cfg(feature = "fault-injection")]
use std::sync::atomic::{AtomicI64, Ordering};

#[cfg(feature = "fault-injection")]
static SYNCS_LEFT: AtomicI64 = AtomicI64::new(-1);
#[cfg(feature = "fault-injection")]
static ALLOCS_LEFT: AtomicI64 = AtomicI64::new(-1);

/// After `n` more successful syncs, every sync fails with EIO.
/// A negative `n` disarms.
#[cfg(feature = "fault-injection")]
pub fn fail_syncs_after(n: i64) {
    SYNCS_LEFT.store(n, Ordering::SeqCst);
}

/// After `n` more successful segment allocations, every allocation fails
/// with ENOSPC. A negative `n` disarms.
#[cfg(feature = "fault-injection")]
pub fn fail_allocations_after(n: i64) {
    ALLOCS_LEFT.store(n, Ordering::SeqCst);
}

#[cfg(feature = "fault-injection")]
fn countdown(left: &AtomicI64, err: std::io::ErrorKind, what: &str) -> std::io::Result<()> {
    let mut cur = left.load(Ordering::SeqCst);
    loop {
        if cur < 0 {
            return Ok(());
        }
        if cur == 0 {
            return Err(std::io::Error::new(err, format!("injected {what} failure")));
        }
        match left.compare_exchange(cur, cur - 1, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return Ok(()),
            Err(now) => cur = now,
        }
    }
}

#[inline(always)]
pub(crate) fn before_sync() -> std::io::Result<()> {
    #[cfg(feature = "fault-injection")]
    return countdown(&SYNCS_LEFT, std::io::ErrorKind::Other, "sync");
    #[cfg(not(feature = "fault-injection"))]
    Ok(())
}

#[inline(always)]
pub(crate) fn before_allocate() -> std::io::Result<()> {
    #[cfg(feature = "fault-injection")]
    return countdown(&ALLOCS_LEFT, std::io::ErrorKind::StorageFull, "allocation");
    #[cfg(not(feature = "fault-injection"))]
    Ok(())
}

/// Test-only: how often each directory was fsynced (so tests can check
/// that a rename or creation was made durable, which no crash-free test
/// could otherwise observe).
#[cfg(feature = "fault-injection")]
pub mod dir_syncs {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, OnceLock};

    fn counts() -> &'static Mutex<HashMap<PathBuf, u64>> {
        static COUNTS: OnceLock<Mutex<HashMap<PathBuf, u64>>> = OnceLock::new();
        COUNTS.get_or_init(|| Mutex::new(HashMap::new()))
    }

    pub(crate) fn note(dir: &Path) {
        let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        if let Ok(mut c) = counts().lock() {
            *c.entry(key).or_default() += 1;
        }
    }

    /// Fsyncs of `dir` so far in this process.
    pub fn count(dir: &Path) -> u64 {
        let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        counts()
            .lock()
            .map(|c| c.get(&key).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}
