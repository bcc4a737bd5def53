//! [`Barrier`]: Python's `threading.Barrier`, with `abort`, `reset` and timeouts.
//!
//! `std::sync::Barrier` has no timeout, abort or reset, so this is a counter of arrivals
//! per generation under a `Mutex` with a `Condvar`, like CPython's implementation.

use super::ThreadingError;
use crate::explore::sched::{self, Obj};
use crate::sync::{Arc, AtomicBool, Condvar, Mutex};
use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

struct State {
    /// Threads waiting in the current generation.
    count: usize,
    /// The current generation's outcome: replaced whenever a generation ends; the flag
    /// in the old one says whether it ended by everyone arriving (`true`) or by breaking.
    /// Waiters keep their generation's `Arc`, so one that wakes late still learns the
    /// outcome of its own generation.
    generation: Arc<AtomicBool>,
    /// Set by `abort` or a timeout; cleared by `reset`.
    broken: bool,
}

/// A meeting point for a fixed number of threads: each `wait` blocks until `parties`
/// threads have called it, then all continue (Python's `threading.Barrier`).
///
/// [`abort`](Barrier::abort) breaks it (every waiter, now and later, gets
/// [`ThreadingError::BrokenBarrier`]) until [`reset`](Barrier::reset); a
/// [`wait_timeout`](Barrier::wait_timeout) that runs out breaks it too, as in Python.
///
/// ```
/// use conclab::threading::{Barrier, Thread};
/// use std::sync::Arc;
///
/// let start = Arc::new(Barrier::new(3));
/// let handles: Vec<_> = (0..3).map(|_| {
///     let start = Arc::clone(&start);
///     Thread::new(move || start.wait()).start().unwrap()
/// }).collect();
/// let mut indices: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
/// indices.sort();
/// assert_eq!(indices, vec![0, 1, 2]);
/// ```
pub struct Barrier {
    parties: usize,
    state: Mutex<State>,
    changed: Condvar,
}

impl Barrier {
    /// A barrier for `parties` threads (0 is treated as 1: a barrier nobody waits at).
    ///
    /// ```
    /// assert_eq!(conclab::threading::Barrier::new(4).parties(), 4);
    /// ```
    pub fn new(parties: usize) -> Self {
        Self {
            parties: parties.max(1),
            state: Mutex::new(State {
                count: 0,
                generation: Arc::new(AtomicBool::new(false)),
                broken: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// How many threads must arrive.
    ///
    /// ```
    /// assert_eq!(conclab::threading::Barrier::new(2).parties(), 2);
    /// ```
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// How many threads are waiting now.
    ///
    /// ```
    /// assert_eq!(conclab::threading::Barrier::new(2).n_waiting(), 0);
    /// ```
    pub fn n_waiting(&self) -> usize {
        self.state.lock().count
    }

    /// Whether the barrier is broken.
    ///
    /// ```
    /// let b = conclab::threading::Barrier::new(2);
    /// b.abort();
    /// assert!(b.broken());
    /// ```
    pub fn broken(&self) -> bool {
        self.state.lock().broken
    }

    /// Waits until all parties arrived; returns this thread's arrival index
    /// (`0..parties`), or [`ThreadingError::BrokenBarrier`].
    ///
    /// ```
    /// let b = conclab::threading::Barrier::new(1);
    /// assert_eq!(b.wait(), Ok(0)); // one party: passes at once
    /// ```
    pub fn wait(&self) -> Result<usize, ThreadingError> {
        self.wait_inner(None)
    }

    /// Like [`wait`](Self::wait) but breaks the barrier when `timeout` runs out first.
    ///
    /// ```
    /// use std::time::Duration;
    /// use conclab::threading::{Barrier, ThreadingError};
    /// let b = Barrier::new(2);
    /// assert_eq!(b.wait_timeout(Duration::from_millis(5)), Err(ThreadingError::BrokenBarrier));
    /// assert!(b.broken());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, ThreadingError> {
        self.wait_inner(Some(Instant::now() + timeout))
    }

    /// Breaks the barrier: current and future waiters get an error until `reset`.
    ///
    /// ```
    /// let b = conclab::threading::Barrier::new(3);
    /// b.abort();
    /// assert!(b.wait().is_err());
    /// ```
    pub fn abort(&self) {
        let obj = Obj::new(self, "barrier", None);
        sched::point("abort", &obj);
        sched::note("abort", &obj, String::new);
        let mut state = self.state.lock();
        state.broken = true;
        if state.count > 0 {
            state.end_generation(false);
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Makes the barrier usable again; threads waiting now get
    /// [`ThreadingError::BrokenBarrier`].
    ///
    /// ```
    /// let b = conclab::threading::Barrier::new(1);
    /// b.abort();
    /// b.reset();
    /// assert_eq!(b.wait(), Ok(0));
    /// ```
    pub fn reset(&self) {
        let obj = Obj::new(self, "barrier", None);
        sched::point("reset", &obj);
        sched::note("reset", &obj, String::new);
        let mut state = self.state.lock();
        if state.count > 0 {
            state.end_generation(false);
        }
        state.broken = false;
        drop(state);
        self.changed.notify_all();
    }

    fn wait_inner(&self, deadline: Option<Instant>) -> Result<usize, ThreadingError> {
        let obj = Obj::new(self, "barrier", None);
        sched::point("wait", &obj);
        let mut state = self.state.lock();
        if state.broken {
            sched::note("wait", &obj, || "broken".to_owned());
            return Err(ThreadingError::BrokenBarrier);
        }
        let index = state.count;
        sched::note("wait", &obj, || {
            format!("arrival {} of {}", index + 1, self.parties)
        });
        let generation = Arc::clone(&state.generation);
        if index + 1 == self.parties {
            state.end_generation(true);
            drop(state);
            self.changed.notify_all();
            return Ok(index);
        }
        state.count += 1;
        while Arc::ptr_eq(&state.generation, &generation) {
            let timed_out = match deadline {
                None => {
                    self.changed.wait(&mut state);
                    false
                }
                Some(deadline) => self.changed.wait_until(&mut state, deadline).timed_out(),
            };
            if timed_out && Arc::ptr_eq(&state.generation, &generation) {
                // Python breaks the barrier for everyone when one wait times out.
                state.broken = true;
                state.end_generation(false);
                drop(state);
                self.changed.notify_all();
                return Err(ThreadingError::BrokenBarrier);
            }
        }
        if generation.load(Ordering::Relaxed) {
            Ok(index)
        } else {
            Err(ThreadingError::BrokenBarrier)
        }
    }
}

impl State {
    /// Ends the current generation with the given outcome and starts a new one.
    fn end_generation(&mut self, released: bool) {
        // Written and read under the barrier's mutex; the atomic only makes it shareable.
        self.generation.store(released, Ordering::Relaxed);
        self.generation = Arc::new(AtomicBool::new(false));
        self.count = 0;
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}
