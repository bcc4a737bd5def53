//! Python's `multiprocessing`, built on real `fork()`, safe inside the evcxr kernel.
//!
//! | Python | conclab | std / crates for the thread side |
//! | --- | --- | --- |
//! | `Process(target=f)`, `start`, `join` | [`Process::spawn`], [`Process::join`] (returns `f`'s value) | `std::thread::spawn`, `JoinHandle::join` |
//! | `Pipe()` | [`Pipe::new`] → two [`Connection`]s | `std::sync::mpsc`, `crossbeam_channel` |
//! | `Queue`, `JoinableQueue` | [`Queue`], [`JoinableQueue`] (as `mp::Queue` in the prelude) | `crossbeam_channel`, conclab's `queue::Queue` |
//! | `Value`, `Array`, `Lock` | [`Value`], [`Array`], [`Lock`] (guards instead of `release()`) | `std::sync::Mutex`, `parking_lot::Mutex`, atomics |
//! | `Manager().list()`, `.dict()` | [`Manager::list`], [`Manager::dict`] | `Arc<Mutex<Vec<T>>>` |
//! | `Pool`, `AsyncResult` | [`Pool`], [`AsyncResult`] | rayon's `par_iter`, conclab's thread pool |
//! | `concurrent.futures.ProcessPoolExecutor` | [`ProcessPoolExecutor`] (the same [`Future`](crate::futures::Future) as the thread side) | conclab's `futures::ThreadPoolExecutor` |
//!
//! ## What differs from CPython, and why
//!
//! * **Child hygiene.** A child's stdin reads as end of file (it is never the kernel's
//!   command pipe); the child runs its closure under `catch_unwind`, flushes stdout and
//!   stderr and ends with `_exit`: inside evcxr a child that returned would carry on in the
//!   kernel's own command loop. A panic in a child is printed as
//!   `conclab: process 'NAME' (pid N) panicked: ...` and comes back to the parent as
//!   [`MpError::Panicked`]. Forking while other threads exist prints a warning
//!   (as CPython 3.12 does): locks held by those threads stay locked in the child.
//! * **Reaping.** Every child has an owner that reaps it: a [`Process`] handle, a
//!   [`Pool`], a [`Manager`]. There is no SIGCHLD handler and no registry in a `static`
//!   (evcxr gives every cell its own copy of this crate's statics).
//! * **Results are typed.** Closure results, messages, queue items and pool arguments go
//!   through serde (bincode), not pickle; pool tasks may be closures without captures, so
//!   "lambdas cannot be sent to a pool" does not apply.
//! * **Crashes are values.** A pool worker killed by a signal turns its task into
//!   [`MpError::WorkerDied`], is replaced, and every other result is delivered (CPython's
//!   `Pool` hangs, gh-66587). A pool notices code loaded after its workers were forked
//!   (a later notebook cell) and re-forks them before it dispatches such code.
//! * **Queues never need a feeder thread**, so a child can be joined before the queue is
//!   drained (see the design note on [`Queue`]).

mod codec;
mod error;
mod executor;
mod fork;
mod manager;
mod pipe;
mod pool;
mod process;
mod queue;
mod reload;
mod shared;
mod shm;

pub use error::MpError;
pub use executor::ProcessPoolExecutor;
pub use manager::{DictProxy, ListProxy, Manager};
pub use pipe::{Connection, Pipe};
pub use pool::{AsyncResult, Imap, ImapUnordered, Pool, PoolBuilder, StarCall};
pub use process::{Process, ProcessBuilder, DEFAULT_DROP_GRACE};
pub use queue::{JoinableQueue, Queue};
pub use shared::{Array, ArrayGuard, Lock, LockGuard, Pod, Value, ValueGuard};

/// How many workers a default [`Pool`] has: the available parallelism, as Python's
/// `os.cpu_count()`.
///
/// ```
/// assert!(conclab::multiprocessing::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
