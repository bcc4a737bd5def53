//! Threads and the classic synchronisation primitives: Python's `threading` module.
//!
//! | Python | conclab | Rust's own |
//! | --- | --- | --- |
//! | `Thread(target=f, args=(x,), name=..., daemon=...)` | [`Thread::new`]`(move \|\| f(x))` `.name(..)` `.daemon(..)` `.start()` | `std::thread::Builder` |
//! | subclass `Thread`, override `run` | `impl` [`Runnable`] | - |
//! | `t.join()`, `t.join(timeout)`, `t.is_alive()` | [`JoinHandle::join`], [`JoinHandle::join_timeout`], [`JoinHandle::is_alive`] | `std::thread::JoinHandle` (no timeout) |
//! | `current_thread().name`, `get_ident()` | [`current_thread`], [`get_ident`] | `std::thread::current()` |
//! | `threading.local()` | [`ThreadLocal`] | `thread_local!` (a static: one per cell in evcxr) |
//! | `Lock` | [`Lock`] (owns its data) | `std::sync::Mutex`, `parking_lot::Mutex` |
//! | `RLock` | [`RLock`] | `parking_lot::ReentrantMutex` |
//! | `Semaphore`, `BoundedSemaphore` | [`Semaphore`], [`BoundedSemaphore`] | none in std or parking_lot |
//! | `Condition` | [`Condition`] (owns its data) | `std::sync::Condvar`, `parking_lot::Condvar` |
//! | `Event` | [`Event`] | - |
//! | `Barrier` | [`Barrier`] (abort, reset, timeouts) | `std::sync::Barrier` (none of those) |
//!
//! Rust idioms in place of Python's: acquiring returns a guard that releases when dropped
//! (no `release()` to forget), a failure is a [`ThreadingError`] value rather than an
//! exception, and data shared between threads is wrapped in an `Arc` rather than global.
//!
//! What CPython does not do:
//! - **deadlocks are reported**: a [`Lock`] or [`RLock`] acquire that would wait forever
//!   in a cycle returns [`ThreadingError::Deadlock`] naming the threads and locks (the wait-for
//!   information lives in the locks themselves: see `graph.rs`). In a notebook the only
//!   way out of a hung cell is an interrupt, which loses every variable.
//! - **a panicking thread** comes back from [`JoinHandle::join`] as
//!   [`ThreadingError::Panicked`] with the message; the calling thread goes on.
//! - **race conditions without undefined behaviour**: [`RacyCounter`] loses updates like
//!   Python's `counter += 1`, [`LockedCounter`] does not.
//!
//! Inside a notebook: every value here is an ordinary value the notebook holds (no static
//! registry), so locks made in one cell work with threads started in a later one. Every
//! wait sleeps on a futex keyed by the primitive's own address (std's `Mutex`/`Condvar`, or
//! the lock word itself), never in parking_lot's parking table: that table is a `static`,
//! one per cell in evcxr, and a thread asleep in one cell's table is never woken by a
//! later cell's release (ARCHITECTURE.md, "Every cell has its own statics"). Dropped
//! [`JoinHandle`]s wait for their threads, so no thread outlives its cell unless asked.

// The locks' layers, each importing only the ones named before it: the lock word
// (`raw_lock`), the wait-for graph of thread nodes and lock cores (`graph`), the cycle
// search (`cycle`), the blocking acquire (`acquire`). See ARCHITECTURE.md.
mod acquire;
mod cycle;
mod graph;
mod raw_lock;

mod barrier;
mod condition;
mod event;
mod local;
mod lock;
mod race;
mod rlock;
mod semaphore;
pub(crate) mod thread;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use event::Event;
pub use local::ThreadLocal;
pub use lock::{Lock, LockGuard};
pub use race::{LockedCounter, RacyCounter};
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};
pub use thread::{current_thread, get_ident, CurrentThread, JoinHandle, Runnable, Thread};

use std::fmt;
use std::time::Duration;

/// One edge of a deadlock cycle: `thread` waits for lock `waits_for`, held by `held_by`.
///
/// ```
/// use conclab::threading::DeadlockEdge;
/// let edge = DeadlockEdge {
///     thread: "philosopher 0".into(),
///     waits_for: "fork 1".into(),
///     held_by: "philosopher 1".into(),
/// };
/// assert_eq!(
///     edge.to_string(),
///     "thread 'philosopher 0' waits for lock 'fork 1' held by thread 'philosopher 1'"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlockEdge {
    /// The waiting thread's name.
    pub thread: String,
    /// The name of the lock it waits for.
    pub waits_for: String,
    /// The name of the thread holding that lock.
    pub held_by: String,
}

impl fmt::Display for DeadlockEdge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "thread '{}' waits for lock '{}' held by thread '{}'",
            self.thread, self.waits_for, self.held_by
        )
    }
}

fn describe_cycle(cycle: &[DeadlockEdge]) -> String {
    let edges: Vec<String> = cycle.iter().map(ToString::to_string).collect();
    let advice = if cycle.len() == 1 {
        "a Lock is not re-entrant: drop the first guard before acquiring again, or use RLock"
    } else {
        "acquire locks in one fixed order in every thread, or use try_acquire / \
         acquire_timeout and back off"
    };
    format!(
        "deadlock: {}. This acquire gave up instead of waiting forever; {advice}",
        edges.join("; ")
    )
}

/// Everything that can go wrong in [`threading`](self).
///
/// ```
/// use conclab::threading::ThreadingError;
/// use std::time::Duration;
/// let e = ThreadingError::Timeout(Duration::from_millis(5));
/// assert!(e.to_string().contains("5ms"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThreadingError {
    /// A thread's closure panicked; `message` is the panic's text.
    #[error("thread '{thread}' panicked: {message}")]
    Panicked {
        /// The thread's name.
        thread: String,
        /// The panic message.
        message: String,
    },
    /// A timed wait ran out.
    #[error("timed out after {0:?}: nothing became available in time; wait longer or check who holds it")]
    Timeout(Duration),
    /// A blocked acquire closed a cycle of threads waiting for each other's locks.
    #[error("{}", describe_cycle(.0))]
    Deadlock(Vec<DeadlockEdge>),
    /// The system refused to start a thread.
    #[error("could not start {name}: {reason}; too many threads may be running, join some first")]
    SpawnFailed {
        /// The thread's name, if it had one.
        name: String,
        /// The system's reason.
        reason: String,
    },
    /// The barrier was aborted, reset while this thread waited, or a wait on it timed out.
    #[error("the barrier is broken (aborted, reset, or a wait timed out); call reset() before using it again")]
    BrokenBarrier,
    /// A `BoundedSemaphore` was released more often than acquired.
    #[error("released a BoundedSemaphore above its initial value {bound}: release only permits you took")]
    OverReleased {
        /// The semaphore's initial (and maximal) value.
        bound: usize,
    },
}
