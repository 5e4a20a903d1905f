//! An ordered pool of jobs: jobs `0..n`, done by whichever thread claims
//! them first, their results consumed strictly in order by one thread (the
//! consumer), which also does jobs itself rather than wait.
//!
//! Recovery uses it to scan the sealed segments of a large log on two
//! cores (see [`crate::recovery`] and DESIGN.md §8, "Parallel recovery"):
//! the helper thread calls [`Ordered::work`]; the opening thread calls
//! [`Ordered::take`] for segment after segment and applies each result to
//! its sequential accounting before it asks for the next.
//!
//! The protocol, all under one mutex:
//!
//! * A job is claimed exactly once, by the thread that moves `next` past
//!   it; only the claimer runs it.
//! * A helper claims a job only within `window` jobs of the next one the
//!   consumer takes, so at most `window` results wait in memory.
//! * The consumer asking for job `i`: if it is done, it takes the result;
//!   if nobody claimed it, it claims it and runs it itself, directly (the
//!   caller's fast path, with no result to hand over); if a helper is on
//!   it, the consumer runs the next unclaimed job within the window instead
//!   of waiting, and only waits when there is none.
//! * [`Ordered::stop`] (the consumer is done, e.g. it found damage and
//!   needs nothing further) makes helpers claim nothing more.
//! * A helper that unwinds while running a job gives the job back as
//!   abandoned: the consumer runs it itself instead of waiting forever.
//!
//! Written against [`crate::sync`], so `loom_tests` model-checks it.

use crate::sync::{Condvar, Mutex};

/// The pool: see the [module docs](self).
pub(crate) struct Ordered<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
    jobs: usize,
    window: usize,
}

struct State<T> {
    /// The first job nobody has claimed.
    next: usize,
    /// The next job the consumer takes; jobs before it are consumed.
    taken: usize,
    /// Results of claimed jobs, by job.
    slots: Vec<Slot<T>>,
    stopped: bool,
}

enum Slot<T> {
    /// Not claimed, or claimed and running, or consumed.
    Empty,
    Ready(T),
    /// Its claimer unwound: the consumer runs it.
    Abandoned,
}

/// What [`Ordered::take`] hands the consumer for a job.
pub(crate) enum Taken<T> {
    /// Another thread ran the job: its result.
    Done(T),
    /// Nobody had claimed the job; the consumer now has, and runs it.
    Yours,
}

impl<T> Ordered<T> {
    /// A pool of jobs `0..jobs`; helpers run at most `window` (at least 1)
    /// ahead of the consumer.
    pub(crate) fn new(jobs: usize, window: usize) -> Self {
        Ordered {
            state: Mutex::new(State {
                next: 0,
                taken: 0,
                slots: (0..jobs).map(|_| Slot::Empty).collect(),
                stopped: false,
            }),
            changed: Condvar::new(),
            jobs,
            window: window.max(1),
        }
    }

    /// A helper's loop: claims and runs jobs (`run(j)`) until none is left
    /// within reach, or the pool is stopped.
    pub(crate) fn work(&self, run: impl Fn(usize) -> T) {
        loop {
            let job = {
                let mut s = self.state.lock();
                loop {
                    if s.stopped || s.next >= self.jobs {
                        return;
                    }
                    if s.next < s.taken + self.window {
                        break;
                    }
                    self.changed.wait(&mut s);
                }
                s.next += 1;
                s.next - 1
            };
            self.run_claimed(job, &run);
        }
    }

    /// Runs claimed job `job` and stores its result (or, if `run` unwinds,
    /// marks it abandoned).
    fn run_claimed(&self, job: usize, run: &impl Fn(usize) -> T) {
        struct Abandon<'p, T> {
            pool: &'p Ordered<T>,
            job: usize,
            armed: bool,
        }
        impl<T> Drop for Abandon<'_, T> {
            fn drop(&mut self) {
                if self.armed {
                    let mut s = self.pool.state.lock();
                    s.slots[self.job] = Slot::Abandoned;
                    s.stopped = true;
                    self.pool.changed.notify_all();
                }
            }
        }
        let mut guard = Abandon {
            pool: self,
            job,
            armed: true,
        };
        let result = run(job);
        guard.armed = false;
        let mut s = self.state.lock();
        s.slots[job] = Slot::Ready(result);
        self.changed.notify_all();
    }

    /// The consumer: job `i`'s outcome. Jobs must be taken in order, each
    /// once (`i` is the number of jobs taken before). While a helper runs
    /// job `i`, the consumer runs later jobs with `run` rather than wait.
    pub(crate) fn take(&self, i: usize, run: impl Fn(usize) -> T) -> Taken<T> {
        let mut s = self.state.lock();
        debug_assert_eq!(s.taken, i, "jobs are taken in order");
        loop {
            match std::mem::replace(&mut s.slots[i], Slot::Empty) {
                Slot::Ready(result) => {
                    s.taken = i + 1;
                    self.changed.notify_all();
                    return Taken::Done(result);
                }
                Slot::Abandoned => {
                    s.taken = i + 1;
                    return Taken::Yours;
                }
                Slot::Empty => {}
            }
            if s.next <= i {
                s.next = i + 1;
                s.taken = i + 1;
                self.changed.notify_all();
                return Taken::Yours;
            }
            // A helper has job `i`: run a later one meanwhile, or wait.
            if s.next < self.jobs && s.next < s.taken + self.window {
                let job = s.next;
                s.next += 1;
                drop(s);
                self.run_claimed(job, &run);
                s = self.state.lock();
                continue;
            }
            self.changed.wait(&mut s);
        }
    }

    /// The consumer needs nothing more: helpers claim no further job (one
    /// already running finishes, and its result is dropped with the pool).
    pub(crate) fn stop(&self) {
        let mut s = self.state.lock();
        s.stopped = true;
        self.changed.notify_all();
    }

    /// A guard that [`stop`](Self::stop)s the pool when dropped, also when
    /// the consumer unwinds: a helper waiting for room in the window is
    /// then released, so joining it cannot hang.
    pub(crate) fn stop_on_drop(&self) -> StopOnDrop<'_, T> {
        StopOnDrop(self)
    }
}

/// See [`Ordered::stop_on_drop`].
pub(crate) struct StopOnDrop<'p, T>(&'p Ordered<T>);

impl<T> Drop for StopOnDrop<'_, T> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Every job runs exactly once and the consumer sees them in order,
    /// whichever thread ran each, with real threads racing.
    #[test]
    fn every_job_runs_once_and_results_arrive_in_order() {
        for round in 0..200 {
            let jobs = 1 + round % 13;
            let pool = Ordered::new(jobs, 1 + round % 3);
            let runs: Vec<AtomicUsize> = (0..jobs).map(|_| AtomicUsize::new(0)).collect();
            let run = |j: usize| {
                runs[j].fetch_add(1, Ordering::Relaxed);
                if j % 2 == 0 {
                    std::thread::yield_now();
                }
                j * 10
            };
            std::thread::scope(|s| {
                s.spawn(|| pool.work(run));
                for i in 0..jobs {
                    let got = match pool.take(i, run) {
                        Taken::Done(r) => r,
                        Taken::Yours => run(i),
                    };
                    assert_eq!(got, i * 10);
                }
                pool.stop();
            });
            for (j, r) in runs.iter().enumerate() {
                assert_eq!(r.load(Ordering::Relaxed), 1, "job {j} of {jobs}");
            }
        }
    }

    /// A consumer that unwinds stops the pool through its guard: the
    /// helper waiting for room in the window is released and the scope
    /// ends (with the consumer's panic) instead of hanging.
    #[test]
    fn a_consumer_that_panics_releases_the_helper() {
        let pool = Ordered::new(8, 1);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|s| {
                let _stop = pool.stop_on_drop();
                s.spawn(|| pool.work(|j| j));
                let _ = pool.take(0, |j| j);
                panic!("the consumer fails");
            })
        }));
        assert!(outcome.is_err());
    }

    /// A consumer that stops early leaves the helper nothing to wait for.
    #[test]
    fn stop_releases_a_helper_waiting_on_the_window() {
        for _ in 0..100 {
            let pool = Ordered::new(8, 1);
            std::thread::scope(|s| {
                s.spawn(|| pool.work(|j| j));
                let _ = pool.take(0, |j| j);
                pool.stop();
            });
        }
    }

    /// A helper that panics in a job hands it back: the consumer runs it
    /// and the scope ends (with the helper's panic) instead of hanging.
    #[test]
    fn a_helper_that_panics_abandons_its_job_to_the_consumer() {
        let pool = Ordered::new(3, 3);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|s| {
                let helper = s.spawn(|| {
                    pool.work(|j| {
                        if j == 1 {
                            panic!("job 1 fails in the helper");
                        }
                        j
                    })
                });
                // Let the helper claim the first jobs.
                while !helper.is_finished() {
                    std::thread::yield_now();
                }
                let mut got = Vec::new();
                for i in 0..3 {
                    got.push(match pool.take(i, |j| j) {
                        Taken::Done(r) => r,
                        Taken::Yours => i,
                    });
                }
                assert_eq!(got, [0, 1, 2]);
            })
        }));
        assert!(outcome.is_err(), "the helper's panic reaches the scope");
    }
}
