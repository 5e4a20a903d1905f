//! Loom models of the concurrency core: group commit and the ticker
//! ([`crate::log::group`]), the published-view protocol
//! ([`crate::log::publish`]), the tail wake-up protocol ([`crate::log::notify`]) and
//! the commit-notification protocol ([`crate::log::commit`]'s `DurableNotify`,
//! with its deliverer thread), the ordered job pool of parallel recovery
//! ([`crate::recovery::pool`]) and the prefault claim ([`crate::log::prefault`]).
//! The code explored is the crate's own, built over loom's primitives by
//! the [`crate::sync`] facade.
//!
//! Compiled only with `--cfg loom`:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test --release --lib loom_ -- --test-threads=1
//! ```
//!
//! The small models are explored exhaustively; the larger ones with a
//! preemption bound (overridable with `LOOM_MAX_PREEMPTIONS`) that keeps
//! each within about 15 s in release mode. Timed waits are
//! plain waits under loom (see [`crate::sync`]), so only untimed waits are
//! checked; a deadlock (every thread blocked) fails the model, which is how
//! a lost wake-up shows.

mod durable;
mod group_commit;
mod pool;
mod prefault;
mod tail;
mod views;

/// Runs `f` under loom, exploring every execution with at most
/// `preemptions` preemptions (`None`: every execution, no bound), unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise. Prints how many executions it
/// explored (visible with `--nocapture`).
pub(super) fn model<F>(preemptions: Option<usize>, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    use std::sync::atomic::{AtomicUsize, Ordering};

    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = preemptions;
    }
    let executions = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = executions.clone();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    eprintln!(
        "loom: {} executions, preemption bound {:?}",
        executions.load(Ordering::Relaxed),
        builder.preemption_bound
    );
}
