//! The synchronisation primitives of the concurrency core, behind one facade
//! so the same code runs in the log and under the [loom] model checker (the
//! way tokio and crossbeam do it).
//!
//! Normal builds re-export `parking_lot`'s locks and `std`'s atomics and
//! `Arc`. Under `--cfg loom` the same names are thin wrappers over loom's
//! types that present the `parking_lot` API the crate uses: `lock()` returns
//! the guard (no poisoning), and `Condvar::wait` takes `&mut MutexGuard`.
//!
//! Timed waits cannot be modelled: loom has no clock. Under loom,
//! `Condvar::wait_until` and `Condvar::wait_for` are plain waits that report
//! "not timed out", i.e. a timed wait whose deadline never comes before a
//! notification. The models therefore check the *untimed* waits only: a
//! protocol that is correct without timeouts stays correct with them (a
//! timeout only adds an early return), but the models say nothing about the
//! code that runs after a wait timed out.
//!
//! Only the modules written against this facade ([`crate::log::group`]'s
//! group commit and ticker, [`crate::log::publish`] (with the truncation
//! records), [`crate::log::notify`], [`crate::log::commit`]'s `DurableNotify`,
//! [`crate::recovery::pool`], [`crate::log::prefault`]) are
//! explored by the models in `loom_tests`; other modules use `parking_lot`
//! and `std` directly and are not modelled.
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(loom))]
#[allow(unused_imports)] // The facade offers more than the crate uses yet.
mod imp {
    pub(crate) use parking_lot::{
        Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
    };
    pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use std::sync::Arc;
}

#[cfg(loom)]
#[allow(unused_imports, dead_code)] // The facade offers more than the crate uses yet.
mod imp {
    use std::ops::{Deref, DerefMut};
    use std::sync::PoisonError;
    use std::time::{Duration, Instant};

    pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use loom::sync::Arc;
    pub(crate) use loom::sync::{RwLockReadGuard, RwLockWriteGuard};

    /// `parking_lot::Mutex`'s API over `loom::sync::Mutex`.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    /// The guard of a [`Mutex`]. It holds loom's guard in an `Option` so
    /// [`Condvar::wait`] can take `&mut MutexGuard` (parking_lot's API) over
    /// loom's `wait(guard) -> guard` (std's API): the wait moves the inner
    /// guard out, hands it to loom, and puts the one loom returns back. The
    /// `Option` is `None` only inside that call, where nothing else can see
    /// the guard (it is mutably borrowed); if loom's wait panics, the inner
    /// guard is dropped by loom and this one drops as `None`, which is fine.
    pub(crate) struct MutexGuard<'a, T> {
        inner: Option<loom::sync::MutexGuard<'a, T>>,
    }

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard {
                inner: Some(self.0.lock().unwrap_or_else(PoisonError::into_inner)),
            }
        }

        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.0
                .try_lock()
                .ok()
                .map(|g| MutexGuard { inner: Some(g) })
        }
    }

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Mutex::new(T::default())
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.inner.as_deref().expect("mutex guard taken by a wait")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.inner
                .as_deref_mut()
                .expect("mutex guard taken by a wait")
        }
    }

    /// `parking_lot::RwLock`'s API over `loom::sync::RwLock`.
    #[derive(Debug)]
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub(crate) fn new(value: T) -> Self {
            RwLock(loom::sync::RwLock::new(value))
        }

        pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(PoisonError::into_inner)
        }

        pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// The result of a timed wait, as `parking_lot::WaitTimeoutResult`.
    /// Under loom it never reports a timeout (see the module docs).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct WaitTimeoutResult(bool);

    impl WaitTimeoutResult {
        pub(crate) fn timed_out(&self) -> bool {
            self.0
        }
    }

    /// `parking_lot::Condvar`'s API over `loom::sync::Condvar`.
    #[derive(Debug)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Default for Condvar {
        fn default() -> Self {
            Condvar::new()
        }
    }

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        /// Atomically releases the lock, waits for a notification, and
        /// re-acquires the lock into the same guard.
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.inner.take().expect("mutex guard taken by a wait");
            let inner = self.0.wait(inner).unwrap_or_else(PoisonError::into_inner);
            guard.inner = Some(inner);
        }

        /// Under loom: a plain [`Condvar::wait`] that reports no timeout.
        pub(crate) fn wait_until<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _deadline: Instant,
        ) -> WaitTimeoutResult {
            self.wait(guard);
            WaitTimeoutResult(false)
        }

        /// Under loom: a plain [`Condvar::wait`] that reports no timeout.
        pub(crate) fn wait_for<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _timeout: Duration,
        ) -> WaitTimeoutResult {
            self.wait(guard);
            WaitTimeoutResult(false)
        }
    }
}

#[allow(unused_imports)]
pub(crate) use imp::*;
