//! [`ThreadPoolExecutor`]: a fixed set of worker threads taking tasks from a channel.

use super::future::{promise, Future, Promise};
use super::TaskError;
use crate::sync::{Arc, Condvar, Mutex};
use crossbeam_channel::{Receiver, Sender};
use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// A queued task: run it, or cancel it without running (shutdown with `cancel_futures`).
trait Job: Send {
    fn run(self: Box<Self>);
    fn cancel(self: Box<Self>);
}

struct Task<F, T> {
    work: F,
    promise: Promise<T>,
}

impl<F, T> Job for Task<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn run(self: Box<Self>) {
        let Task { work, promise } = *self;
        if !promise.set_running() {
            return; // cancelled while queued
        }
        // The panic hook prints the panic (as `thread 'ThreadPoolExecutor_0' panicked`);
        // the message travels back to the caller in the future.
        let outcome = catch_unwind(AssertUnwindSafe(work)).map_err(|payload| {
            TaskError::Panicked(crate::threading::thread::panic_message(payload.as_ref()))
        });
        promise.complete(outcome);
    }

    fn cancel(self: Box<Self>) {
        self.promise.cancel();
    }
}

/// Counts live workers, so a shutdown can wait for them with a time limit.
struct Alive {
    count: Mutex<usize>,
    changed: Condvar,
}

struct LeaveOnDrop(Arc<Alive>);

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        *self.0.count.lock() -= 1;
        self.0.changed.notify_all();
    }
}

/// How long a shutdown waits quietly before it says what it is waiting for.
const SHUTDOWN_NOTICE_AFTER: Duration = Duration::from_secs(2);

/// A pool of worker threads running submitted closures: Python's
/// `concurrent.futures.ThreadPoolExecutor`.
///
/// [`submit`](ThreadPoolExecutor::submit) queues a closure and returns its [`Future`];
/// [`map`](ThreadPoolExecutor::map) runs a function over items and yields the results in
/// order. A task that panics gives [`TaskError::Panicked`] with the message; the worker
/// survives and takes the next task.
///
/// The pool is a value the notebook holds (not a global pool like rayon's, which evcxr
/// would rebuild in every cell). Dropping it shuts it down and joins the workers after
/// the queued tasks ran, like leaving Python's `with ThreadPoolExecutor() as executor:`
/// block. If a task is still running two seconds into that wait, one line on stderr
/// says so; the wait goes on (a thread cannot be stopped from outside safely).
///
/// Built on a `crossbeam_channel` of boxed tasks; a bare crossbeam worker pool is the
/// baseline in `benches/threads.rs`.
///
/// ```
/// use conclab::futures::ThreadPoolExecutor;
///
/// let executor = ThreadPoolExecutor::new().unwrap();
/// let futures: Vec<_> = (1..=5u64).map(|n| executor.submit(move || n * n)).collect();
/// let squares: Vec<u64> = futures.iter().map(|f| *f.result().unwrap()).collect();
/// assert_eq!(squares, vec![1, 4, 9, 16, 25]);
/// ```
pub struct ThreadPoolExecutor {
    sender: Mutex<Option<Sender<Box<dyn Job>>>>,
    /// Kept to drain queued tasks on `shutdown(.., cancel_futures = true)`.
    receiver: Receiver<Box<dyn Job>>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    alive: Arc<Alive>,
    max_workers: usize,
}

impl ThreadPoolExecutor {
    /// A pool with one worker per available core (Python's default is `cpu_count + 4`,
    /// capped at 32, because Python threads mostly wait on I/O; Rust threads compute).
    ///
    /// ```
    /// let executor = conclab::futures::ThreadPoolExecutor::new().unwrap();
    /// assert!(executor.max_workers() >= 1);
    /// ```
    pub fn new() -> Result<Self, TaskError> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::with_max_workers(workers)
    }

    /// A pool with `max_workers` threads (at least 1), named `ThreadPoolExecutor_<i>`.
    ///
    /// ```
    /// let executor = conclab::futures::ThreadPoolExecutor::with_max_workers(3).unwrap();
    /// assert_eq!(executor.max_workers(), 3);
    /// ```
    pub fn with_max_workers(max_workers: usize) -> Result<Self, TaskError> {
        Self::with_name_prefix(max_workers, "ThreadPoolExecutor")
    }

    /// A pool whose threads are named `<prefix>_<i>` (Python's `thread_name_prefix`).
    ///
    /// ```
    /// let executor = conclab::futures::ThreadPoolExecutor::with_name_prefix(1, "fetch").unwrap();
    /// let name = executor.submit(|| conclab::threading::current_thread().name);
    /// assert_eq!(name.result().unwrap(), "fetch_0");
    /// ```
    pub fn with_name_prefix(max_workers: usize, prefix: &str) -> Result<Self, TaskError> {
        let max_workers = max_workers.max(1);
        let (sender, receiver) = crossbeam_channel::unbounded::<Box<dyn Job>>();
        let alive = Arc::new(Alive {
            count: Mutex::new(0),
            changed: Condvar::new(),
        });
        let executor = Self {
            sender: Mutex::new(Some(sender)),
            receiver: receiver.clone(),
            workers: Mutex::new(Vec::with_capacity(max_workers)),
            alive: Arc::clone(&alive),
            max_workers,
        };
        for index in 0..max_workers {
            let jobs = receiver.clone();
            let leave = LeaveOnDrop(Arc::clone(&alive));
            *alive.count.lock() += 1;
            let spawned = std::thread::Builder::new()
                .name(format!("{prefix}_{index}"))
                .spawn(move || {
                    let _leave = leave;
                    while let Ok(job) = jobs.recv() {
                        job.run();
                    }
                });
            match spawned {
                Ok(handle) => executor.workers.lock().push(handle),
                // `executor` is dropped here, which shuts down the workers already started.
                Err(error) => {
                    return Err(TaskError::WorkerDied(format!(
                        "could not start worker thread {index}: {error}"
                    )))
                }
            }
        }
        Ok(executor)
    }

    /// The number of worker threads.
    ///
    /// ```
    /// assert_eq!(conclab::futures::ThreadPoolExecutor::with_max_workers(2).unwrap().max_workers(), 2);
    /// ```
    pub fn max_workers(&self) -> usize {
        self.max_workers
    }

    /// Queues `work` and returns its future (Python's `submit(fn, *args)`: the arguments
    /// go into the closure). After [`shutdown`](Self::shutdown) the future is already
    /// finished with [`TaskError::Shutdown`].
    ///
    /// ```
    /// let executor = conclab::futures::ThreadPoolExecutor::new().unwrap();
    /// let (a, b) = (20, 22);
    /// assert_eq!(executor.submit(move || a + b).result(), Ok(&42));
    /// ```
    pub fn submit<F, T>(&self, work: F) -> Future<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (promise, future) = promise();
        let sender = self.sender.lock();
        match &*sender {
            // A send cannot fail while `self.receiver` exists; if it somehow did, the
            // dropped task's promise would finish the future with `WorkerDied`.
            Some(sender) => drop(sender.send(Box::new(Task { work, promise }))),
            None => {
                drop(sender);
                promise.complete(Err(TaskError::Shutdown));
            }
        }
        future
    }

    /// Runs `function` on every item in the pool; yields the results in input order
    /// (Python's `executor.map`). All items are submitted at once; dropping the iterator
    /// early cancels those not started.
    ///
    /// ```
    /// let executor = conclab::futures::ThreadPoolExecutor::new().unwrap();
    /// let lengths: Vec<usize> = executor
    ///     .map(|s: &str| s.len(), ["a", "bb", "ccc"])
    ///     .map(|r| r.unwrap())
    ///     .collect();
    /// assert_eq!(lengths, vec![1, 2, 3]);
    /// ```
    pub fn map<I, F, T>(&self, function: F, items: I) -> MapResults<T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let function = Arc::new(function);
        let futures = items
            .into_iter()
            .map(|item| {
                let function = Arc::clone(&function);
                self.submit(move || function(item))
            })
            .collect();
        MapResults {
            futures,
            deadline: None,
        }
    }

    /// [`map`](Self::map) with an overall `timeout` counted from this call: a result not
    /// ready by then comes out as [`TaskError::Timeout`] (Python raises `TimeoutError`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let executor = conclab::futures::ThreadPoolExecutor::new().unwrap();
    /// let results: Vec<_> = executor
    ///     .map_timeout(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), [0, 500], Duration::from_millis(100))
    ///     .collect();
    /// assert!(results[0].is_ok());
    /// assert_eq!(results[1], Err(conclab::futures::TaskError::Timeout));
    /// ```
    pub fn map_timeout<I, F, T>(&self, function: F, items: I, timeout: Duration) -> MapResults<T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let deadline = Instant::now() + timeout;
        let mut results = self.map(function, items);
        results.deadline = Some(deadline);
        results
    }

    /// Stops taking tasks (Python's `shutdown(wait, cancel_futures)`).
    ///
    /// Queued tasks still run unless `cancel_futures`, which cancels those not started.
    /// With `wait` it returns once every worker has finished (printing one line to
    /// stderr if that takes more than two seconds). Calling it again is harmless.
    ///
    /// ```
    /// use conclab::futures::{ThreadPoolExecutor, TaskError};
    /// let executor = ThreadPoolExecutor::new().unwrap();
    /// let before = executor.submit(|| 1);
    /// executor.shutdown(true, false);
    /// assert_eq!(before.result(), Ok(&1));
    /// assert_eq!(executor.submit(|| 2).result(), Err(TaskError::Shutdown));
    /// ```
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        // Dropping the sender disconnects the channel once it is drained: workers end.
        self.sender.lock().take();
        if cancel_futures {
            while let Ok(job) = self.receiver.try_recv() {
                job.cancel();
            }
        }
        if wait {
            self.wait_for_workers();
        }
    }

    fn wait_for_workers(&self) {
        let notice_at = Instant::now() + SHUTDOWN_NOTICE_AFTER;
        let mut noticed = false;
        let mut count = self.alive.count.lock();
        while *count > 0 {
            if noticed {
                self.alive.changed.wait(&mut count);
            } else if self
                .alive
                .changed
                .wait_until(&mut count, notice_at)
                .timed_out()
                && *count > 0
            {
                noticed = true;
                eprintln!(
                    "conclab: ThreadPoolExecutor shutdown is waiting for {} worker(s) still \
                     running a task",
                    *count
                );
            }
        }
        drop(count);
        for handle in self.workers.lock().drain(..) {
            // Workers catch task panics, so joining reports nothing new.
            let _ = handle.join();
        }
    }
}

impl Drop for ThreadPoolExecutor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

impl fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolExecutor")
            .field("max_workers", &self.max_workers)
            .field("queued", &self.receiver.len())
            .field("shut_down", &self.sender.lock().is_none())
            .finish()
    }
}

/// The ordered results of [`ThreadPoolExecutor::map`].
///
/// ```
/// let executor = conclab::futures::ThreadPoolExecutor::new().unwrap();
/// let mut results = executor.map(|x: i32| x + 1, vec![1, 2]);
/// assert_eq!(results.len(), 2);
/// assert_eq!(results.next(), Some(Ok(2)));
/// ```
pub struct MapResults<T> {
    futures: VecDeque<Future<T>>,
    deadline: Option<Instant>,
}

impl<T> Iterator for MapResults<T> {
    type Item = Result<T, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        let future = self.futures.pop_front()?;
        Some(future.take_until(self.deadline))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.futures.len(), Some(self.futures.len()))
    }
}

impl<T> ExactSizeIterator for MapResults<T> {}

impl<T> Drop for MapResults<T> {
    fn drop(&mut self) {
        for future in &self.futures {
            future.cancel();
        }
    }
}

impl<T> fmt::Debug for MapResults<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapResults")
            .field("remaining", &self.futures.len())
            .finish()
    }
}
