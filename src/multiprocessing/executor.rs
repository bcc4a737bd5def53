//! `ProcessPoolExecutor`: Python's `concurrent.futures.ProcessPoolExecutor` on a [`Pool`],
//! handing out the same [`Future`] as the thread side's `ThreadPoolExecutor`.
//!
//! A [`Pool`] moves work only while someone calls into it, but a [`Future`] is waited on
//! by its own means (`result`, `as_completed`). So the executor forks its workers first and
//! then starts one driver thread that feeds the pool and completes the futures. That
//! thread makes the process multi-threaded: workers replaced after a crash are forked
//! with it alive, and such forks print the fork-with-threads warning (CPython's executor
//! has the same management thread). Tasks wait in the executor's queue until a worker has
//! room, so a queued future can still be cancelled.
//!
//! Unlike CPython, a worker that dies fails only its own task
//! ([`TaskError::WorkerDied`]); the executor is not "broken" and keeps running.

use std::collections::VecDeque;
use std::time::Duration;

use crate::sync::Mutex;
use crossbeam_channel::{Receiver, Sender};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::pool::{AsyncResult, Pool, StarCall};
use super::MpError;
use crate::futures::{promise, Future, Promise, TaskError};

/// What to do with a queued task: run it on the pool, or finish its future without
/// running it.
enum Mode<'a> {
    Run(&'a Pool),
    Cancel,
    Shutdown,
}

type Queued = Box<dyn FnOnce(Mode<'_>) -> Option<Box<dyn Running>> + Send>;

enum Msg {
    Task(Queued),
    Shutdown { cancel_futures: bool },
}

trait Running: Send {
    /// Drives the pool for at most `wait`; true once the future is completed.
    fn poll(&mut self, wait: Duration) -> bool;
}

struct InFlight<R> {
    result: Option<AsyncResult<R>>,
    promise: Option<Promise<R>>,
}

impl<R: Send> Running for InFlight<R> {
    fn poll(&mut self, wait: Duration) -> bool {
        let ready = self.result.as_ref().is_none_or(|r| r.wait(Some(wait)));
        if !ready {
            return false;
        }
        let value = match self.result.take() {
            Some(r) => r.get().map_err(task_error),
            None => Err(TaskError::Shutdown),
        };
        if let Some(p) = self.promise.take() {
            p.complete(value);
        }
        true
    }
}

fn task_error(e: MpError) -> TaskError {
    match e {
        MpError::TaskPanicked(m) => TaskError::Panicked(m),
        MpError::WorkerDied(m) => TaskError::WorkerDied(m),
        MpError::PoolClosed | MpError::PoolTerminated | MpError::PoolWithoutWorkers => {
            TaskError::Shutdown
        }
        other => TaskError::WorkerDied(other.to_string()),
    }
}

/// Python's `concurrent.futures.ProcessPoolExecutor`: `submit` returns a [`Future`] that
/// works with `as_completed` and `wait` from [`crate::futures`].
///
/// Dropping it is `shutdown(wait = true)`: queued tasks still run, then the workers exit.
///
/// ```
/// use conclab::futures::as_completed;
/// use conclab::multiprocessing::ProcessPoolExecutor;
///
/// fn factorial(n: u64) -> u64 {
///     (1..=n).product()
/// }
///
/// let executor = ProcessPoolExecutor::new(2).unwrap();
/// let futures: Vec<_> = (1..=10).map(|n| executor.submit(factorial, (n,))).collect();
/// let mut total = 0;
/// for f in as_completed(&futures) {
///     total += f.result().unwrap();
/// }
/// assert_eq!(total, (1..=10u64).map(factorial).sum::<u64>());
/// ```
pub struct ProcessPoolExecutor {
    tx: Mutex<Option<Sender<Msg>>>,
    driver: Mutex<Option<std::thread::JoinHandle<()>>>,
    workers: usize,
    owner: u32,
}

impl std::fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPoolExecutor")
            .field("max_workers", &self.workers)
            .finish()
    }
}

impl ProcessPoolExecutor {
    /// Forks `max_workers` workers (0: [`cpu_count`](super::cpu_count)), then starts the
    /// driver thread.
    ///
    /// ```
    /// let ex = conclab::multiprocessing::ProcessPoolExecutor::new(2).unwrap();
    /// assert_eq!(ex.max_workers(), 2);
    /// ```
    pub fn new(max_workers: usize) -> Result<ProcessPoolExecutor, MpError> {
        let pool = Pool::new(max_workers)?;
        let workers = pool.processes();
        let (tx, rx) = crossbeam_channel::unbounded();
        let driver = std::thread::Builder::new()
            .name("conclab-process-executor".into())
            .spawn(move || drive(pool, rx))
            .map_err(|e| MpError::io("start the executor's driver thread", &e))?;
        Ok(ProcessPoolExecutor {
            tx: Mutex::new(Some(tx)),
            driver: Mutex::new(Some(driver)),
            workers,
            owner: std::process::id(),
        })
    }

    /// The number of worker processes.
    ///
    /// ```
    /// let ex = conclab::multiprocessing::ProcessPoolExecutor::new(1).unwrap();
    /// assert_eq!(ex.max_workers(), 1);
    /// ```
    pub fn max_workers(&self) -> usize {
        self.workers
    }

    /// Schedules `f(args...)` in a worker process (Python's `submit(fn, *args)`).
    /// After shutdown the future fails with [`TaskError::Shutdown`].
    ///
    /// ```
    /// use conclab::futures::TaskError;
    /// let ex = conclab::multiprocessing::ProcessPoolExecutor::new(1).unwrap();
    /// let ok = ex.submit(|a: u32, b: u32| a + b, (2, 3));
    /// let bad = ex.submit(|| -> u8 { panic!("boom") }, ());
    /// assert_eq!(ok.result(), Ok(&5));
    /// assert_eq!(bad.result(), Err(TaskError::Panicked("boom".into())));
    /// ```
    pub fn submit<F, Args, R>(&self, f: F, args: Args) -> Future<R>
    where
        F: StarCall<Args, R>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let (promise, future) = promise::<R>();
        let queued: Queued = Box::new(move |mode: Mode<'_>| {
            let pool = match mode {
                Mode::Run(pool) => pool,
                Mode::Cancel => {
                    promise.cancel();
                    return None;
                }
                Mode::Shutdown => {
                    promise.complete(Err(TaskError::Shutdown));
                    return None;
                }
            };
            if !promise.set_running() {
                return None; // cancelled while queued
            }
            let result = pool.apply_async(f, args);
            let (result, promise) = match result {
                Ok(r) => (Some(r), Some(promise)),
                Err(e) => {
                    promise.complete(Err(task_error(e)));
                    (None, None)
                }
            };
            Some(Box::new(InFlight { result, promise }) as Box<dyn Running>)
        });
        let unsent = match self.tx.lock().as_ref() {
            Some(tx) => match tx.send(Msg::Task(queued)) {
                Ok(()) => None,
                Err(crossbeam_channel::SendError(Msg::Task(q))) => Some(q),
                Err(_) => None,
            },
            None => Some(queued),
        };
        if let Some(q) = unsent {
            q(Mode::Shutdown);
        }
        future
    }

    /// Applies `f` to every item in worker processes; results in input order (Python's
    /// `executor.map`).
    ///
    /// ```
    /// let ex = conclab::multiprocessing::ProcessPoolExecutor::new(2).unwrap();
    /// let squares: Vec<u64> = ex.map(|n: u64| n * n, 1..=5).map(|r| r.unwrap()).collect();
    /// assert_eq!(squares, vec![1, 4, 9, 16, 25]);
    /// ```
    pub fn map<F, A, R, I>(&self, f: F, items: I) -> impl Iterator<Item = Result<R, TaskError>>
    where
        F: StarCall<(A,), R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
    {
        let futures: Vec<Future<R>> = items.into_iter().map(|a| self.submit(f, (a,))).collect();
        futures.into_iter().map(|fut| fut.into_result())
    }

    /// Stops taking tasks (Python's `shutdown(wait, cancel_futures)`). With
    /// `cancel_futures`, tasks still queued are cancelled; with `wait`, returns after the
    /// running ones finished and the workers exited.
    ///
    /// ```
    /// use conclab::futures::TaskError;
    /// let ex = conclab::multiprocessing::ProcessPoolExecutor::new(1).unwrap();
    /// let f = ex.submit(|x: i32| x, (1,));
    /// ex.shutdown(true, false);
    /// assert_eq!(f.result(), Ok(&1));
    /// assert_eq!(ex.submit(|x: i32| x, (2,)).result(), Err(TaskError::Shutdown));
    /// ```
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        if let Some(tx) = self.tx.lock().take() {
            let _ = tx.send(Msg::Shutdown { cancel_futures });
        }
        if wait {
            if let Some(handle) = self.driver.lock().take() {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for ProcessPoolExecutor {
    fn drop(&mut self) {
        if std::process::id() != self.owner {
            // A copy inside a forked child: the driver thread does not exist here, and
            // joining it would hang.
            return;
        }
        self.shutdown(true, false);
    }
}

/// The driver thread: feeds the pool from the queue (at most two tasks per worker in
/// flight, so queued ones stay cancellable) and completes futures as results arrive.
fn drive(pool: Pool, rx: Receiver<Msg>) {
    let limit = pool.processes() * 2;
    let mut queue: VecDeque<Queued> = VecDeque::new();
    let mut running: Vec<Box<dyn Running>> = Vec::new();
    let mut open = true;
    loop {
        // Take new messages: block only when there is nothing else to do.
        let msg = if running.is_empty() && queue.is_empty() && open {
            rx.recv().ok()
        } else {
            rx.try_recv().ok()
        };
        match msg {
            Some(Msg::Task(q)) => queue.push_back(q),
            Some(Msg::Shutdown { cancel_futures }) => {
                open = false;
                if cancel_futures {
                    for q in queue.drain(..) {
                        q(Mode::Cancel);
                    }
                }
            }
            None if open && rx.is_empty() && running.is_empty() && queue.is_empty() => {
                // The sender is gone without a shutdown message (cannot happen through
                // the public API): treat it as a shutdown.
                open = false;
            }
            None => {}
        }
        while running.len() < limit {
            let Some(q) = queue.pop_front() else { break };
            if let Some(r) = q(Mode::Run(&pool)) {
                running.push(r);
            }
        }
        if let Some(first) = running.first_mut() {
            if first.poll(Duration::from_millis(5)) {
                running.remove(0);
            }
        }
        running.retain_mut(|r| !r.poll(Duration::ZERO));
        if !open && running.is_empty() && queue.is_empty() {
            break;
        }
    }
    pool.close();
    let _ = pool.join();
}
