//! Data parallelism on threads: rayon's `par_iter`, on a pool the notebook holds.
//!
//! [rayon] turns `for` loops over a collection into work spread over a pool of threads:
//! `v.par_iter().map(f).sum()` splits `v` into pieces, lets every thread of the pool
//! work on pieces, and combines the results. It is Rust's usual answer to CPU-bound
//! work, where Python reaches for a process pool: the threads share the data, so nothing
//! is copied or serialised.
//!
//! ## Why a pool value, and never rayon's global pool
//!
//! Called outside any pool, `par_iter` runs on rayon's *global* pool, which rayon starts
//! on first use and which lives as long as the process. In a notebook that is a leak:
//! evcxr compiles every cell into its own shared library with its own copy of rayon, so
//! every cell that uses the global pool starts one more global pool, and its threads
//! never exit (measured: 3, 5, 7 threads in the kernel's process after 1, 2, 3 such
//! cells on 2 cores).
//!
//! [`RayonPool`] is a pool *value*. Parallel iterators run inside
//! [`install`](RayonPool::install) use its threads, and dropping it stops and joins every
//! one of them, so a cell that builds, uses and drops a pool leaves the thread count where
//! it was. A pool kept in a variable and used again in a later cell notices that the
//! later cell brought its own copy of rayon and replaces its threads with ones that run
//! that copy (the old ones are joined first), so it never falls back to a global pool.
//!
//! ## Threads and `fork`
//!
//! A pool's threads are threads like any other: a process forked while they exist (a
//! [`Process`](crate::multiprocessing::Process), a [`Pool`](crate::multiprocessing::Pool))
//! gets a copy of the forking thread only, and conclab prints a warning on stderr. Drop
//! the pool before forking.
//!
//! ```
//! use conclab::prelude::*;
//!
//! let before = os_thread_count();
//! let pool = RayonPool::new(2)?;
//! let total: u64 = pool.install(|| (1..=1_000u64).into_par_iter().map(|n| n * n).sum());
//! assert_eq!(total, 333_833_500);
//! drop(pool); // joins its two threads
//! assert_eq!(os_thread_count(), before);
//! # Ok::<(), conclab::parallel::ParallelError>(())
//! ```

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A lock of ours is never left inconsistent by a panic, so a poisoned one is used as is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What can go wrong when starting a [`RayonPool`].
#[derive(Debug, thiserror::Error)]
pub enum ParallelError {
    /// The operating system refused a thread, or rayon refused the configuration.
    #[error("could not start the rayon pool's threads: {0}; free some threads (join or drop other pools) and try again")]
    Build(#[from] rayon::ThreadPoolBuildError),
}

/// The address of this function differs between two copies of this crate, so it tells
/// the copy (the notebook cell) that built a pool from the one that uses it.
#[inline(never)]
fn which_copy() -> usize {
    which_copy as fn() -> usize as usize
}

/// What a pool keeps of each thread it started: the handle that joins it, and its Linux
/// thread id, which stays in `/proc/self/task` for a moment after `join` returns.
#[derive(Default)]
struct Started {
    handles: Vec<JoinHandle<()>>,
    tids: Vec<libc::pid_t>,
}

/// One set of rayon threads, and what it takes to see them gone.
struct Threads {
    pool: Option<rayon::ThreadPool>,
    started: Arc<Mutex<Started>>,
    copy: usize,
}

impl Threads {
    fn start(threads: usize) -> Result<Threads, ParallelError> {
        let started: Arc<Mutex<Started>> = Arc::default();
        let keep = Arc::clone(&started);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("rayon-{i}"))
            .spawn_handler(move |thread| {
                let mut builder = std::thread::Builder::new();
                if let Some(name) = thread.name() {
                    builder = builder.name(name.to_owned());
                }
                if let Some(size) = thread.stack_size() {
                    builder = builder.stack_size(size);
                }
                let tids = Arc::clone(&keep);
                let handle = builder.spawn(move || {
                    // SAFETY: gettid has no preconditions.
                    let tid = unsafe { libc::gettid() };
                    lock(&tids).tids.push(tid);
                    thread.run()
                })?;
                lock(&keep).handles.push(handle);
                Ok(())
            })
            .build()?;
        Ok(Threads {
            pool: Some(pool),
            started,
            copy: which_copy(),
        })
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        // Dropping rayon's pool only asks its threads to stop; joining them waits until
        // they have ended.
        drop(self.pool.take());
        let handles = std::mem::take(&mut lock(&self.started).handles);
        for handle in handles {
            let _ = handle.join();
        }
        // `join` returns when a thread's stack is free, a moment before Linux drops the
        // thread from `/proc/self/task`: wait for that too (at most a second), so that a
        // thread count taken right after the drop is already down.
        let deadline = Instant::now() + Duration::from_secs(1);
        for tid in std::mem::take(&mut lock(&self.started).tids) {
            let entry = format!("/proc/self/task/{tid}");
            while Path::new(&entry).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}

/// A rayon thread pool that the notebook holds, and whose threads end when it is dropped.
///
/// Run parallel iterators inside [`install`](RayonPool::install); they then use this
/// pool's threads. See the [module documentation](self) for why a notebook should never
/// use rayon's global pool.
///
/// ```
/// use conclab::prelude::*;
///
/// let pool = RayonPool::new(0)?; // 0: one thread per core
/// assert_eq!(pool.threads(), cpu_count());
/// let words = ["fork", "join", "lock"];
/// let lengths: Vec<usize> = pool.install(|| words.par_iter().map(|w| w.len()).collect());
/// assert_eq!(lengths, [4, 4, 4]);
/// # Ok::<(), conclab::parallel::ParallelError>(())
/// ```
pub struct RayonPool {
    threads: usize,
    current: Mutex<Arc<Threads>>,
}

impl std::fmt::Debug for RayonPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RayonPool")
            .field("threads", &self.threads)
            .finish()
    }
}

impl RayonPool {
    /// Starts a pool of `threads` threads, named `rayon-0`, `rayon-1`, ...; `0` means one
    /// per core ([`cpu_count`](crate::multiprocessing::cpu_count)).
    ///
    /// ```
    /// use conclab::prelude::*;
    ///
    /// let pool = RayonPool::new(3)?;
    /// assert_eq!(pool.threads(), 3);
    /// # Ok::<(), conclab::parallel::ParallelError>(())
    /// ```
    pub fn new(threads: usize) -> Result<RayonPool, ParallelError> {
        let threads = if threads == 0 {
            crate::multiprocessing::cpu_count()
        } else {
            threads
        };
        Ok(RayonPool {
            threads,
            current: Mutex::new(Arc::new(Threads::start(threads)?)),
        })
    }

    /// How many threads the pool runs.
    ///
    /// ```
    /// use conclab::prelude::*;
    ///
    /// assert_eq!(RayonPool::new(2)?.threads(), 2);
    /// # Ok::<(), conclab::parallel::ParallelError>(())
    /// ```
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `op` on one of the pool's threads and returns its result; every parallel
    /// iterator (and `rayon::join`, `rayon::scope`) inside `op` uses this pool.
    ///
    /// Called from a notebook cell other than the one that built the pool, it first
    /// replaces the pool's threads with ones that run this cell's copy of rayon (see the
    /// [module documentation](self)). It panics only if that replacement cannot start
    /// its threads.
    ///
    /// ```
    /// use conclab::prelude::*;
    ///
    /// let pool = RayonPool::new(2)?;
    /// let sum: u64 = pool.install(|| (1..=100u64).into_par_iter().sum());
    /// assert_eq!(sum, 5050);
    /// // The calling thread is not one of the pool's: `op` ran on a pool thread.
    /// let on: String = pool.install(|| current_thread().name);
    /// assert!(on.starts_with("rayon-"), "{on}");
    /// # Ok::<(), conclab::parallel::ParallelError>(())
    /// ```
    pub fn install<R, OP>(&self, op: OP) -> R
    where
        OP: FnOnce() -> R + Send,
        R: Send,
    {
        let threads = {
            let mut current = lock(&self.current);
            if current.copy != which_copy() {
                // Built by another cell's copy of rayon: its threads would not see this
                // cell's parallel iterators as running inside a pool.
                let fresh = Threads::start(self.threads)
                    .unwrap_or_else(|error| panic!("RayonPool: {error}"));
                *current = Arc::new(fresh);
            }
            Arc::clone(&current)
        };
        match &threads.pool {
            Some(pool) => pool.install(op),
            None => unreachable!("a pool's threads are stopped only when it is dropped"),
        }
    }
}

/// The number of threads this process has now, as Linux counts them (the `Threads:` line
/// of `/proc/self/status`); 0 where that file cannot be read.
///
/// ```
/// use conclab::prelude::*;
///
/// let before = os_thread_count();
/// let helper = std::thread::spawn(move || os_thread_count());
/// assert_eq!(helper.join().unwrap(), before + 1);
/// ```
pub fn os_thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}
