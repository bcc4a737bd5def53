//! [`as_completed`] and [`wait`]: waiting on many futures at once.
//!
//! Both take any iterator of `&Future<T>` (a `Vec`'s `.iter()`, a `HashMap`'s `.keys()`,
//! a slice), whoever completes the futures: this crate's thread pool or process pool. Each
//! registers a small notifier with every pending future; a finishing future pushes its
//! position there, so waiting costs nothing per future while it runs.

use super::future::{Future, Notifier};
use super::TaskError;
use crate::sync::Arc;
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// When [`wait`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`, `ALL_COMPLETED`).
///
/// ```
/// use conclab::futures::ReturnWhen;
/// assert_ne!(ReturnWhen::FirstCompleted, ReturnWhen::AllCompleted);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any future finishes or is cancelled.
    FirstCompleted,
    /// As soon as any future finishes with an error (not a cancellation); if none does,
    /// when all have finished.
    FirstException,
    /// When every future has finished.
    AllCompleted,
}

/// Python's constant name for [`ReturnWhen::FirstCompleted`].
///
/// ```
/// assert_eq!(conclab::futures::FIRST_COMPLETED, conclab::futures::ReturnWhen::FirstCompleted);
/// ```
pub const FIRST_COMPLETED: ReturnWhen = ReturnWhen::FirstCompleted;
/// Python's constant name for [`ReturnWhen::FirstException`].
///
/// ```
/// assert_eq!(conclab::futures::FIRST_EXCEPTION, conclab::futures::ReturnWhen::FirstException);
/// ```
pub const FIRST_EXCEPTION: ReturnWhen = ReturnWhen::FirstException;
/// Python's constant name for [`ReturnWhen::AllCompleted`].
///
/// ```
/// assert_eq!(conclab::futures::ALL_COMPLETED, conclab::futures::ReturnWhen::AllCompleted);
/// ```
pub const ALL_COMPLETED: ReturnWhen = ReturnWhen::AllCompleted;

/// What [`wait`] found: the futures that finished and those that did not, each in input
/// order (Python returns the two as sets).
///
/// ```
/// use conclab::futures::{wait, ReturnWhen, ThreadPoolExecutor};
/// let executor = ThreadPoolExecutor::new().unwrap();
/// let futures: Vec<_> = (0..3).map(|i| executor.submit(move || i)).collect();
/// let outcome = wait(&futures, None, ReturnWhen::AllCompleted);
/// assert_eq!(outcome.done.len(), 3);
/// assert!(outcome.not_done.is_empty());
/// ```
pub struct Waited<'a, T> {
    /// Futures that had finished when `wait` returned.
    pub done: Vec<&'a Future<T>>,
    /// Futures still pending or running.
    pub not_done: Vec<&'a Future<T>>,
}

impl<T> fmt::Debug for Waited<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waited")
            .field("done", &self.done.len())
            .field("not_done", &self.not_done.len())
            .finish()
    }
}

/// Waits until `return_when` is satisfied or `timeout` (if any) passes, then splits the
/// futures into done and not done (Python's `concurrent.futures.wait`).
///
/// ```
/// use conclab::futures::{wait, FIRST_COMPLETED, ThreadPoolExecutor};
/// use std::time::Duration;
///
/// let executor = ThreadPoolExecutor::with_max_workers(2).unwrap();
/// let quick = executor.submit(|| "quick");
/// let slow = executor.submit(|| { std::thread::sleep(Duration::from_millis(300)); "slow" });
/// let outcome = wait([&quick, &slow], None, FIRST_COMPLETED);
/// assert_eq!(outcome.done, vec![&quick]);
/// assert_eq!(outcome.not_done, vec![&slow]);
/// ```
pub fn wait<'a, T: 'a>(
    futures: impl IntoIterator<Item = &'a Future<T>>,
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> Waited<'a, T> {
    let futures: Vec<&'a Future<T>> = futures.into_iter().collect();
    let deadline = timeout.map(|t| Instant::now() + t);
    let notifier = Notifier::new();
    let mut finished = vec![false; futures.len()];
    for (index, future) in futures.iter().enumerate() {
        if !future.subscribe(&notifier, index) {
            finished[index] = true;
        }
    }
    let satisfied = |finished: &[bool]| {
        let all = finished.iter().all(|&f| f);
        match return_when {
            ReturnWhen::AllCompleted => all,
            ReturnWhen::FirstCompleted => all || finished.iter().any(|&f| f),
            ReturnWhen::FirstException => {
                all || finished
                    .iter()
                    .zip(&futures)
                    .any(|(&f, future)| f && future.failed())
            }
        }
    };
    let mut ready = notifier.ready.lock();
    loop {
        for index in ready.drain(..) {
            finished[index] = true;
        }
        if satisfied(&finished) {
            break;
        }
        match deadline {
            None => notifier.changed.wait(&mut ready),
            Some(deadline) => {
                if notifier
                    .changed
                    .wait_until(&mut ready, deadline)
                    .timed_out()
                {
                    break;
                }
            }
        }
    }
    drop(ready);
    for future in &futures {
        future.unsubscribe(&notifier);
    }
    let (done, not_done) = futures.into_iter().partition(|future| future.done());
    Waited { done, not_done }
}

/// Yields futures as they finish, fastest first (Python's `as_completed`).
///
/// Takes any iterator of `&Future<T>`. To know which input a finished future belongs
/// to, keep the futures as keys of a map (futures hash by identity, as in the Python
/// idiom below), or use [`AsCompleted::indexed`] for positions.
///
/// ```
/// use conclab::futures::{as_completed, ThreadPoolExecutor};
/// use std::collections::HashMap;
///
/// fn factorial(n: u64) -> u64 { (1..=n).product() }
///
/// let executor = ThreadPoolExecutor::new().unwrap();
/// // futures = {executor.submit(calculate_factorial, n): n for n in numbers}
/// let futures: HashMap<_, u64> =
///     (1..=10).map(|n| (executor.submit(move || factorial(n)), n)).collect();
/// let mut seen = 0;
/// for future in as_completed(futures.keys()) {
///     let number = futures[future];
///     match future.result() {
///         Ok(result) => println!("Factorial of {number} is {result}"),
///         Err(e) => println!("An error occurred calculating factorial of {number}: {e}"),
///     }
///     seen += 1;
/// }
/// assert_eq!(seen, 10);
/// ```
pub fn as_completed<'a, T: 'a>(
    futures: impl IntoIterator<Item = &'a Future<T>>,
) -> AsCompleted<'a, T> {
    let futures: Vec<&'a Future<T>> = futures.into_iter().collect();
    let notifier = Notifier::new();
    let mut ready = VecDeque::new();
    for (index, future) in futures.iter().enumerate() {
        if !future.subscribe(&notifier, index) {
            ready.push_back(index);
        }
    }
    let remaining = futures.len();
    AsCompleted {
        futures,
        notifier,
        ready,
        remaining,
        deadline: None,
    }
}

/// The iterator of [`as_completed`]: yields each future once, as it finishes.
///
/// ```
/// use conclab::futures::{as_completed, ThreadPoolExecutor};
/// let executor = ThreadPoolExecutor::new().unwrap();
/// let futures = vec![executor.submit(|| 1), executor.submit(|| 2)];
/// let total: i32 = as_completed(&futures).map(|f| *f.result().unwrap()).sum();
/// assert_eq!(total, 3);
/// ```
pub struct AsCompleted<'a, T> {
    futures: Vec<&'a Future<T>>,
    notifier: Arc<Notifier>,
    ready: VecDeque<usize>,
    remaining: usize,
    deadline: Option<Instant>,
}

impl<'a, T> AsCompleted<'a, T> {
    /// Yields `(position in the input, future)` pairs instead of bare futures.
    ///
    /// ```
    /// use conclab::futures::{as_completed, ThreadPoolExecutor};
    /// let executor = ThreadPoolExecutor::new().unwrap();
    /// let inputs = [3u64, 4, 5];
    /// let futures: Vec<_> = inputs.iter().map(|&n| executor.submit(move || n * n)).collect();
    /// for (i, future) in as_completed(&futures).indexed() {
    ///     assert_eq!(*future.result().unwrap(), inputs[i] * inputs[i]);
    /// }
    /// ```
    pub fn indexed(self) -> Indexed<'a, T> {
        Indexed(self)
    }

    /// Gives up when `timeout` (counted from now) passes: the iterator then yields one
    /// `Err(TaskError::Timeout)` and ends (Python raises `TimeoutError`).
    ///
    /// ```
    /// use conclab::futures::{as_completed, TaskError, ThreadPoolExecutor};
    /// use std::time::Duration;
    /// let executor = ThreadPoolExecutor::with_max_workers(1).unwrap();
    /// let slow = executor.submit(|| std::thread::sleep(Duration::from_millis(300)));
    /// let mut it = as_completed([&slow]).timeout(Duration::from_millis(10));
    /// assert_eq!(it.next().map(|r| r.err()), Some(Some(TaskError::Timeout)));
    /// assert!(it.next().is_none());
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> WithTimeout<'a, T> {
        self.deadline = Some(Instant::now() + timeout);
        WithTimeout {
            inner: self,
            timed_out: false,
        }
    }

    /// How many futures have not been yielded yet.
    ///
    /// ```
    /// use conclab::futures::{as_completed, ThreadPoolExecutor};
    /// let executor = ThreadPoolExecutor::new().unwrap();
    /// let f = executor.submit(|| 1);
    /// let it = as_completed([&f]);
    /// assert_eq!(it.remaining(), 1);
    /// ```
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// The next finished position; `Err` when the deadline passed first.
    fn next_index(&mut self) -> Option<Result<usize, TaskError>> {
        if self.remaining == 0 {
            return None;
        }
        if self.ready.is_empty() {
            let mut arrived = self.notifier.ready.lock();
            while arrived.is_empty() {
                match self.deadline {
                    None => self.notifier.changed.wait(&mut arrived),
                    Some(deadline) => {
                        if self
                            .notifier
                            .changed
                            .wait_until(&mut arrived, deadline)
                            .timed_out()
                            && arrived.is_empty()
                        {
                            return Some(Err(TaskError::Timeout));
                        }
                    }
                }
            }
            self.ready.extend(arrived.drain(..));
        }
        let index = self.ready.pop_front()?;
        self.remaining -= 1;
        Some(Ok(index))
    }
}

impl<'a, T> Iterator for AsCompleted<'a, T> {
    type Item = &'a Future<T>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_index()? {
            Ok(index) => Some(self.futures[index]),
            // Without a deadline there is no timeout.
            Err(_) => None,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<T> Drop for AsCompleted<'_, T> {
    fn drop(&mut self) {
        if self.remaining > 0 {
            for future in &self.futures {
                future.unsubscribe(&self.notifier);
            }
        }
    }
}

impl<T> fmt::Debug for AsCompleted<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// [`as_completed`] yielding `(position, future)`; made by [`AsCompleted::indexed`].
///
/// ```
/// use conclab::futures::{as_completed, ThreadPoolExecutor};
/// let executor = ThreadPoolExecutor::new().unwrap();
/// let futures = [executor.submit(|| 'a')];
/// let (i, f) = as_completed(&futures).indexed().next().unwrap();
/// assert_eq!((i, *f.result().unwrap()), (0, 'a'));
/// ```
#[derive(Debug)]
pub struct Indexed<'a, T>(AsCompleted<'a, T>);

impl<'a, T> Iterator for Indexed<'a, T> {
    type Item = (usize, &'a Future<T>);

    fn next(&mut self) -> Option<Self::Item> {
        match self.0.next_index()? {
            Ok(index) => Some((index, self.0.futures[index])),
            Err(_) => None,
        }
    }
}

/// [`as_completed`] with an overall timeout; made by [`AsCompleted::timeout`].
///
/// ```
/// use conclab::futures::{as_completed, ThreadPoolExecutor};
/// use std::time::Duration;
/// let executor = ThreadPoolExecutor::new().unwrap();
/// let futures = [executor.submit(|| 1)];
/// for future in as_completed(&futures).timeout(Duration::from_secs(10)) {
///     assert_eq!(*future.unwrap().result().unwrap(), 1);
/// }
/// ```
#[derive(Debug)]
pub struct WithTimeout<'a, T> {
    inner: AsCompleted<'a, T>,
    timed_out: bool,
}

impl<'a, T> Iterator for WithTimeout<'a, T> {
    type Item = Result<&'a Future<T>, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.timed_out {
            return None;
        }
        match self.inner.next_index()? {
            Ok(index) => Some(Ok(self.inner.futures[index])),
            Err(error) => {
                self.timed_out = true;
                Some(Err(error))
            }
        }
    }
}
