//! Futures and a thread pool: Python's `concurrent.futures`.
//!
//! | Python | conclab | Rust's own |
//! | --- | --- | --- |
//! | `ThreadPoolExecutor(max_workers)` | [`ThreadPoolExecutor::new`], [`ThreadPoolExecutor::with_max_workers`] | a `crossbeam_channel` worker pool, rayon's `ThreadPool` |
//! | `executor.submit(fn, *args)` | [`ThreadPoolExecutor::submit`]`(move \|\| f(args))` | `rayon::spawn` + a channel |
//! | `executor.map(fn, items, timeout=)` | [`ThreadPoolExecutor::map`], [`ThreadPoolExecutor::map_timeout`] | `par_iter().map()` |
//! | `shutdown(wait, cancel_futures)`, `with` block | [`ThreadPoolExecutor::shutdown`], drop | - |
//! | `Future.result(timeout)`, `exception`, `cancel`, `done`, `running`, `add_done_callback` | [`Future`]'s methods of those names | `std::thread::JoinHandle`, a `bounded(1)` channel |
//! | `as_completed(fs, timeout)` | [`as_completed`] (+ [`AsCompleted::timeout`], [`AsCompleted::indexed`]) | `crossbeam_channel::Select` |
//! | `wait(fs, timeout, return_when)` | [`wait`] with [`ReturnWhen`] | - |
//! | exceptions in the task, `CancelledError`, `TimeoutError`, `BrokenExecutor` | [`TaskError`] | `JoinHandle::join`'s `Err(panic payload)` |
//!
//! Rust's `std::future::Future` is something else (a value polled by an async runtime);
//! this [`Future`] is the blocking, thread-based one of Python's `concurrent.futures`.
//!
//! A [`Future`] does not care who completes it: [`as_completed`] and [`wait`] take any
//! iterator of `&Future<T>`, from this thread pool or from the process pool of the
//! `multiprocessing` side, which completes its futures through the same crate-internal
//! `promise()` interface (`Promise::set_running`, `Promise::complete`; a dropped promise
//! finishes its future with [`TaskError::WorkerDied`] so nobody waits forever).

mod executor;
mod future;
mod wait;

pub use executor::{MapResults, ThreadPoolExecutor};
pub use future::Future;
#[allow(unused_imports)] // used by the process pool, which lives in another module
pub(crate) use future::{promise, Promise};
pub use wait::{
    as_completed, wait, AsCompleted, Indexed, ReturnWhen, Waited, WithTimeout, ALL_COMPLETED,
    FIRST_COMPLETED, FIRST_EXCEPTION,
};

/// Why a task gave no value.
///
/// ```
/// use conclab::futures::{TaskError, ThreadPoolExecutor};
/// let executor = ThreadPoolExecutor::new().unwrap();
/// let f = executor.submit(|| -> i32 { panic!("bad input {}", 7) });
/// let error = f.result().unwrap_err();
/// assert_eq!(error, TaskError::Panicked("bad input 7".into()));
/// assert_eq!(error.to_string(), "the task panicked: bad input 7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The task panicked; the panic's message (Python: the exception the task raised).
    #[error("the task panicked: {0}")]
    Panicked(String),
    /// The future was cancelled before its task started.
    #[error("the task was cancelled before it started")]
    Cancelled,
    /// A timed wait ran out before the task finished (the task itself goes on).
    #[error("timed out waiting for the task; it keeps running: wait longer, or cancel() it if it has not started")]
    Timeout,
    /// The worker running the task died (a process worker crashed, or a worker dropped the
    /// task): the cause as text. Resubmit the task to a working pool.
    #[error("the worker running the task died: {0}")]
    WorkerDied(String),
    /// The executor was shut down before the task could run; submit to a live executor.
    #[error("the executor was shut down before the task ran; submit to a new executor")]
    Shutdown,
}
