//! The one error enum of the process side.

use thiserror::Error;

/// Everything that can go wrong on the process side, as a value (Python raises instead).
///
/// Every variant is `Clone`, so a pool can hand the same failure to several callers, and
/// every message says what happened and what to do about it.
///
/// ```
/// use conclab::multiprocessing::{MpError, Process};
///
/// let p = Process::spawn(|| -> i32 { panic!("bad input") }).unwrap();
/// match p.join() {
///     Err(MpError::Panicked { message, .. }) => assert!(message.contains("bad input")),
///     other => panic!("expected a panic report, got {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MpError {
    /// A system call failed (fork, pipe, mmap, ...).
    #[error("could not {what}: {message} (the system may be out of processes, memory or file descriptors; free some and try again)")]
    Os {
        /// What we tried to do.
        what: &'static str,
        /// The operating system's explanation.
        message: String,
    },
    /// The child's closure panicked; the child ended with exit code 1.
    #[error("process '{name}' (pid {pid}) panicked: {message}")]
    Panicked {
        /// The process name.
        name: String,
        /// Its process id.
        pid: i32,
        /// The panic message and where it happened.
        message: String,
    },
    /// The child was killed by a signal before it sent its result.
    #[error("process '{name}' (pid {pid}) was killed by signal {signal} before it sent a result")]
    Signaled {
        /// The process name.
        name: String,
        /// Its process id.
        pid: i32,
        /// The signal's name, such as `SIGKILL`.
        signal: String,
    },
    /// The child exited without sending a result (it called `std::process::exit`, say).
    #[error("process '{name}' (pid {pid}) exited with code {code} before it sent a result; return a value from the closure instead of exiting")]
    NoResult {
        /// The process name.
        name: String,
        /// Its process id.
        pid: i32,
        /// Its exit code.
        code: i32,
    },
    /// A value could not be encoded or decoded with serde/bincode.
    #[error("could not encode or decode a message: {0}; both ends must use the same type")]
    Codec(String),
    /// The other end of a connection (pipe, manager socket) is closed.
    #[error("the other end is closed, so nothing more can be sent or received; check that the other process is still running")]
    Eof,
    /// A wait ran out of time.
    #[error("timed out after {0:?}; the other side may still deliver later, so try again or give it more time")]
    Timeout(std::time::Duration),
    /// `get_nowait` or a timed `get` found the queue empty.
    #[error("the queue is empty")]
    Empty,
    /// `put_nowait` or a timed `put` found a bounded queue full.
    #[error("the queue is full; a consumer must take items first")]
    Full,
    /// `task_done` was called more often than items were put.
    #[error("task_done() was called more times than items were put on the queue")]
    TaskDoneTooOften,
    /// An index was past the end of a shared array or list.
    #[error("index {index} is out of range for length {len}")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The length at that moment.
        len: usize,
    },
    /// A pool task panicked; the worker caught it and carries on.
    #[error("task panicked: {0}")]
    TaskPanicked(String),
    /// The worker running a task died; the pool replaced the worker.
    #[error("the worker running this task died ({0}); the pool replaced it and delivered every other result")]
    WorkerDied(String),
    /// The pool was closed ([`Pool::close`](super::Pool::close)), so it takes no new tasks.
    #[error("the pool is closed, so it takes no new tasks; create a new pool")]
    PoolClosed,
    /// The pool was terminated ([`Pool::terminate`](super::Pool::terminate), or dropped):
    /// it takes no new tasks, and the tasks it had not finished were cancelled.
    #[error("the pool was terminated, so this task was cancelled and no new ones run; create a new pool")]
    PoolTerminated,
    /// [`Pool::join`](super::Pool::join) was called on a pool that is still open.
    #[error(
        "join() waits for a closed pool, but this one is still open; call close() before join()"
    )]
    PoolStillOpen,
    /// Work was waited for in a pool whose workers are gone (it was joined or
    /// terminated), so it can never finish.
    #[error("the pool has no workers left (it was joined or terminated), so this work cannot run; create a new pool")]
    PoolWithoutWorkers,
    /// The result was taken already: each task's result is handed out once.
    #[error("this result was already taken; each result is handed out once")]
    ResultTaken,
    /// The manager's server answered with an error.
    #[error("the manager could not do that: {0}")]
    Manager(String),
}

impl MpError {
    pub(crate) fn io(what: &'static str, err: &std::io::Error) -> MpError {
        MpError::Os {
            what,
            message: err.to_string(),
        }
    }
}

impl From<bincode::Error> for MpError {
    fn from(err: bincode::Error) -> Self {
        MpError::Codec(err.to_string())
    }
}
