//! Where a job's results wait in the parent, typed from end to end.
//!
//! A job is type-erased twice over: the worker runs it through a trampoline (`task.rs`),
//! and the dispatcher keeps every job in one map, whatever its types (`core.rs`). Its
//! results must come back typed all the same. So they are not kept in the job: a
//! [`Results<R, K>`] is made with the job and shared, behind an `Arc`, by two ends that
//! each see it through a trait of their own:
//!
//! * the job holds it as a [`Sink`], which takes the bytes a worker sent and decodes them
//!   as `R`, the result type of the trampoline the same call instantiated;
//! * the handle the caller keeps ([`AsyncResult`](super::AsyncResult), [`Imap`](super::Imap))
//!   holds it as an [`Outcome<T>`] or a [`Stream<R>`] and takes values out as `R`.
//!
//! Both ends are coerced from one `Arc<Results<R, K>>` made in `Pool::submit`, so the
//! type the worker's answer is decoded as and the type the caller reads can only be the
//! same: there is nothing to check at run time. This is how `std::thread` hands a result
//! from a spawned closure (erased into a boxed `FnOnce`) to its typed `JoinHandle<T>`,
//! and how rayon's `StackJob` keeps its `JobResult<R>` in the typed frame that waits for
//! it while the pool only holds an erased reference.
//!
//! `K` says how a handle takes the results: [`One`] (`apply`: the one task's value),
//! [`All`] (`map`: every value in order, or the first failure), [`Each`] (`imap`: task by
//! task). It costs nothing at run time; it lets the one allocation serve as the handle's
//! trait object.
//!
//! The store has a lock of its own, always taken after the pool's (a job is fed while the
//! dispatcher holds the pool's lock, and handles read while driving the pool), so it is
//! never contended and the two locks never wait on each other.

use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::panic::RefUnwindSafe;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::multiprocessing::MpError;
use crate::sync::{Mutex, MutexGuard};

use super::task::ChunkOut;

/// The results of one submitted job, kept in the parent.
///
/// Values and errors are kept apart: an `MpError` is several times the size of a small
/// result, and with one slot able to hold either, a 100,000-task `map` of `u64` took the
/// process to a peak of 11.9 MB, against 7.9 MB now. The peak matters after the job too:
/// glibc keeps much of what it frees, and every later fork copies the page tables of
/// what the heap grew to.
pub(crate) struct Store<R> {
    /// Each task's value once it arrived; `None` before, after it was taken, and for a
    /// task that failed.
    values: Vec<Option<R>>,
    /// The failed tasks' errors, by task index.
    errors: BTreeMap<usize, MpError>,
    /// Whether each task has finished, so a late second outcome for a task is ignored.
    finished: Vec<bool>,
    /// Finished tasks not yet handed out in completion order (`imap_unordered`).
    done_order: VecDeque<usize>,
    remaining: usize,
    failed: bool,
}

impl<R> Store<R> {
    fn new(n: usize) -> Store<R> {
        Store {
            values: (0..n).map(|_| None).collect(),
            errors: BTreeMap::new(),
            finished: vec![false; n],
            done_order: VecDeque::new(),
            remaining: n,
            failed: false,
        }
    }

    fn set(&mut self, i: usize, r: Result<R, MpError>) {
        let Some(finished) = self.finished.get_mut(i) else {
            return;
        };
        if *finished {
            return;
        }
        *finished = true;
        match r {
            Ok(value) => self.values[i] = Some(value),
            Err(error) => {
                self.failed = true;
                self.errors.insert(i, error);
            }
        }
        self.remaining -= 1;
        self.done_order.push_back(i);
    }

    /// Task `i`'s outcome, once: `None` while it runs and after it was taken.
    pub(crate) fn take(&mut self, i: usize) -> Option<Result<R, MpError>> {
        if let Some(error) = self.errors.remove(&i) {
            return Some(Err(error));
        }
        self.values.get_mut(i)?.take().map(Ok)
    }

    /// The outcome of the earliest finished task not handed out yet.
    pub(crate) fn take_next_finished(&mut self) -> Option<Result<R, MpError>> {
        let i = self.done_order.pop_front()?;
        self.take(i)
    }

    /// Every value in task order, or the error of the first task that failed.
    fn take_all(&mut self) -> Result<Vec<R>, MpError> {
        if let Some((_, error)) = self.errors.pop_first() {
            return Err(error);
        }
        Ok(std::mem::take(&mut self.values)
            .into_iter()
            .flatten()
            .collect())
    }
}

/// A job's results, shared by the job that fills them and the handle that reads them.
pub(crate) struct Results<R, K> {
    store: Mutex<Store<R>>,
    // `fn() -> K`: a kind is a name, never a value, and must not affect auto traits.
    kind: PhantomData<fn() -> K>,
}

/// `apply`: the handle takes the one task's value.
pub(crate) enum One {}
/// `map`: the handle takes every value in order, or the first failure.
pub(crate) enum All {}
/// `imap`: the handle takes the tasks' outcomes one by one.
pub(crate) enum Each {}

impl<R, K> Results<R, K> {
    /// Room for the results of `n` tasks.
    pub(crate) fn new(n: usize) -> Arc<Results<R, K>> {
        Arc::new(Results {
            store: Mutex::new(Store::new(n)),
            kind: PhantomData,
        })
    }

    fn store(&self) -> MutexGuard<'_, Store<R>> {
        self.store.lock()
    }

    fn done(&self) -> bool {
        self.store().remaining == 0
    }

    fn failed(&self) -> bool {
        self.store().failed
    }
}

/// The job's end of its results: outcomes arrive as a worker's bytes or as errors the
/// dispatcher decides on (a dead worker, a terminated pool), and are decoded here, where
/// `R` is known.
pub(crate) trait Sink: Send + Sync {
    /// Decodes the outcome of the chunk of tasks `idx`.
    fn deliver(&self, idx: &[usize], bytes: &[u8]);
    /// Task `i` failed without running to the end.
    fn fail(&self, i: usize, err: MpError);
}

impl<R, K> Sink for Results<R, K>
where
    R: DeserializeOwned + Send,
{
    fn deliver(&self, idx: &[usize], bytes: &[u8]) {
        let mut guard = self.store();
        // Once through the guard, not once a task: a chunk of `map` holds thousands.
        let store = &mut *guard;
        match bincode::deserialize::<ChunkOut<R>>(bytes) {
            Ok(Ok(values)) => {
                let n = values.len();
                for (&i, v) in idx.iter().zip(values) {
                    store.set(i, v.map_err(MpError::TaskPanicked));
                }
                for &i in idx.iter().skip(n) {
                    store.set(
                        i,
                        Err(MpError::Codec("a worker sent too few results".into())),
                    );
                }
            }
            Ok(Err(msg)) => idx
                .iter()
                .for_each(|&i| store.set(i, Err(MpError::Codec(msg.clone())))),
            Err(e) => idx
                .iter()
                .for_each(|&i| store.set(i, Err(MpError::Codec(e.to_string())))),
        }
    }

    fn fail(&self, i: usize, err: MpError) {
        self.store().set(i, Err(err));
    }
}

/// What an [`AsyncResult<T>`](super::AsyncResult) reads: `T` is the task's `R` for
/// `apply`, `Vec<R>` for `map`.
///
/// `Send + Sync + RefUnwindSafe`, so that the handle is so whatever `T` is, as it was
/// when it held no results of its own.
pub(crate) trait Outcome<T>: Send + Sync + RefUnwindSafe {
    /// Whether every task has finished.
    fn done(&self) -> bool;
    /// Whether any task failed.
    fn failed(&self) -> bool;
    /// Takes the outcome, once every task has finished; the handle lets go of its
    /// results after that. `None` if it was taken already.
    fn take(&self) -> Option<Result<T, MpError>>;
}

impl<R: Send> Outcome<R> for Results<R, One> {
    fn done(&self) -> bool {
        Results::done(self)
    }
    fn failed(&self) -> bool {
        Results::failed(self)
    }
    fn take(&self) -> Option<Result<R, MpError>> {
        self.store().take(0)
    }
}

impl<R: Send> Outcome<Vec<R>> for Results<R, All> {
    fn done(&self) -> bool {
        Results::done(self)
    }
    fn failed(&self) -> bool {
        Results::failed(self)
    }
    fn take(&self) -> Option<Result<Vec<R>, MpError>> {
        Some(self.store().take_all())
    }
}

/// What the `imap` iterators read, task by task.
pub(crate) trait Stream<R>: Send + Sync + RefUnwindSafe {
    /// Task `i`'s outcome, once it finished; `None` before and after it was taken.
    fn take(&self, i: usize) -> Option<Result<R, MpError>>;
    /// The outcome of the earliest finished task not taken yet.
    fn take_next_finished(&self) -> Option<Result<R, MpError>>;
}

impl<R: Send> Stream<R> for Results<R, Each> {
    fn take(&self, i: usize) -> Option<Result<R, MpError>> {
        self.store().take(i)
    }
    fn take_next_finished(&self) -> Option<Result<R, MpError>> {
        self.store().take_next_finished()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(what: &str) -> MpError {
        MpError::TaskPanicked(what.to_string())
    }

    #[test]
    fn each_outcome_is_kept_once_and_taken_once() {
        let mut store = Store::<u64>::new(3);
        store.set(1, Ok(10));
        store.set(1, Err(failure("late"))); // a second outcome for task 1 is ignored
        store.set(0, Err(failure("zero")));
        assert_eq!((store.remaining, store.failed), (1, true));
        assert_eq!(store.done_order, [1, 0]);
        assert!(store.take(2).is_none(), "task 2 has not finished");
        assert_eq!(store.take(1).map(|r| r.ok()), Some(Some(10)));
        assert!(store.take(1).is_none(), "taken already");
        assert!(matches!(store.take(0), Some(Err(MpError::TaskPanicked(m))) if m == "zero"));
        store.set(9, Ok(1)); // no such task
        assert_eq!(store.remaining, 1);
    }

    #[test]
    fn take_all_gives_every_value_in_order_or_the_first_failure() {
        let mut store = Store::<u64>::new(3);
        for (i, v) in [(2, 30), (0, 10), (1, 20)] {
            store.set(i, Ok(v));
        }
        assert_eq!(store.take_all().ok(), Some(vec![10, 20, 30]));

        let mut store = Store::<u64>::new(3);
        store.set(2, Err(failure("two")));
        store.set(0, Ok(1));
        store.set(1, Err(failure("one")));
        assert!(matches!(store.take_all(), Err(MpError::TaskPanicked(m)) if m == "one"));
    }

    #[test]
    fn finished_tasks_come_out_in_completion_order() {
        let mut store = Store::<u64>::new(3);
        store.set(2, Ok(30));
        store.set(0, Err(failure("zero")));
        assert_eq!(store.take_next_finished().map(|r| r.ok()), Some(Some(30)));
        assert!(matches!(
            store.take_next_finished(),
            Some(Err(MpError::TaskPanicked(m))) if m == "zero"
        ));
        assert!(
            store.take_next_finished().is_none(),
            "task 1 is still running"
        );
    }

    #[test]
    fn a_worker_answer_is_decoded_as_the_job_result_type() {
        let results = Results::<u64, Each>::new(3);
        let answer: ChunkOut<u64> = Ok(vec![Ok(7), Err("boom".to_string())]);
        results.deliver(&[0, 1, 2], &bincode::serialize(&answer).unwrap());
        assert_eq!(Stream::take(&*results, 0), Some(Ok(7)));
        assert!(matches!(
            Stream::take(&*results, 1),
            Some(Err(MpError::TaskPanicked(m))) if m == "boom"
        ));
        assert!(matches!(
            Stream::take(&*results, 2),
            Some(Err(MpError::Codec(m))) if m.contains("too few")
        ));

        let results = Results::<u64, One>::new(1);
        results.deliver(&[0], b"not bincode of a chunk");
        assert!(Outcome::done(&*results) && Outcome::failed(&*results));
        assert!(matches!(
            Outcome::take(&*results),
            Some(Err(MpError::Codec(_)))
        ));
    }
}
