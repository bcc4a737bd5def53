//! A simulated Global Interpreter Lock, to show what CPython's GIL does to threads.
//!
//! Rust has no GIL: its threads run in parallel. To teach what the GIL means, a [`Gil`]
//! is a value (never a global: evcxr gives every cell its own statics) that threads
//! hold while they "run Python": one thread at a time computes, a holder gives the GIL
//! up at a switch point once it has held it for the switch interval and someone waits
//! (CPython's `sys.getswitchinterval()`, 5 ms by default), and sleeping or waiting
//! releases it, as CPython releases it around blocking I/O.
//!
//! What a notebook shows with it, in a few lines each:
//! - N CPU-bound threads doing [`Gil::cpu_work`] take about N times one thread's time;
//! - N I/O-bound threads doing [`Gil::sleep`] still overlap: about one sleep in all;
//! - the same work with the free function [`cpu_work`] in plain threads runs in parallel.
//!
//! ```
//! use conclab::gil::{cpu_work, Gil};
//! use conclab::threading::Thread;
//! use std::time::{Duration, Instant};
//!
//! let gil = Gil::new(Duration::from_millis(5));
//! let work = 2_000_000;
//! let start = Instant::now();
//! let threads: Vec<_> = (0..2).map(|_| {
//!     let gil = gil.clone();
//!     Thread::new(move || gil.cpu_work(work)).start().unwrap()
//! }).collect();
//! for t in threads { t.join().unwrap(); }
//! println!("2 threads under the GIL: {:?}", start.elapsed());
//!
//! let start = Instant::now();
//! let threads: Vec<_> = (0..2)
//!     .map(|_| Thread::new(move || cpu_work(work)).start().unwrap())
//!     .collect();
//! for t in threads { t.join().unwrap(); }
//! println!("2 free threads: {:?}", start.elapsed());
//! ```

use crate::sync::{Arc, Condvar, Mutex};
use std::fmt;
use std::hint::black_box;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// Iterations of [`cpu_work`] between two switch points in [`Gil::cpu_work`] (a few
/// microseconds: CPython checks its eval breaker about as often).
const CHUNK: u64 = 4096;

/// Pure computation for `iterations` steps (a xorshift generator; the result keeps the
/// optimiser from removing it). About a nanosecond per step; holds no GIL.
///
/// ```
/// let a = conclab::gil::cpu_work(1000);
/// assert_eq!(a, conclab::gil::cpu_work(1000)); // deterministic
/// ```
pub fn cpu_work(iterations: u64) -> u64 {
    let mut x = black_box(0x9E37_79B9_7F4A_7C15u64);
    for _ in 0..iterations {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

struct State {
    /// Tickets make hand-offs first come, first served, like CPython's forced switch
    /// that lets the waiting thread in before the old holder can take it back.
    next_ticket: u64,
    now_serving: u64,
    holder: Option<ThreadId>,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    switch_interval: Duration,
    /// Threads waiting for the GIL; read without the lock at every switch point.
    waiting: AtomicU64,
    switches: AtomicU64,
}

/// The simulated GIL: one holder at a time, handed over at switch points and around
/// sleeps. Cloning gives another handle to the same GIL (share it with your threads).
///
/// ```
/// use conclab::gil::Gil;
/// use std::time::Duration;
///
/// let gil = Gil::new(Duration::from_millis(5));
/// let answer = gil.run(|py| {
///     let x = py.cpu_work(10_000);
///     py.sleep(Duration::from_millis(1)); // releases the GIL while sleeping
///     x
/// });
/// assert_eq!(answer, conclab::gil::cpu_work(10_000));
/// ```
#[derive(Clone)]
pub struct Gil {
    inner: Arc<Inner>,
}

impl Gil {
    /// A GIL that a holder gives up after `switch_interval` when another thread waits.
    ///
    /// ```
    /// let gil = conclab::gil::Gil::new(std::time::Duration::from_millis(5));
    /// assert_eq!(gil.switch_interval(), std::time::Duration::from_millis(5));
    /// ```
    pub fn new(switch_interval: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    next_ticket: 0,
                    now_serving: 0,
                    holder: None,
                }),
                changed: Condvar::new(),
                switch_interval,
                waiting: AtomicU64::new(0),
                switches: AtomicU64::new(0),
            }),
        }
    }

    /// The switch interval given at creation.
    ///
    /// ```
    /// let gil = conclab::gil::Gil::new(std::time::Duration::ZERO);
    /// assert!(gil.switch_interval().is_zero());
    /// ```
    pub fn switch_interval(&self) -> Duration {
        self.inner.switch_interval
    }

    /// How many times the GIL passed from one thread to another so far.
    ///
    /// ```
    /// let gil = conclab::gil::Gil::new(std::time::Duration::from_millis(5));
    /// assert_eq!(gil.switches(), 0);
    /// ```
    pub fn switches(&self) -> u64 {
        self.inner.switches.load(Ordering::Relaxed)
    }

    /// Waits for the GIL and holds it until the guard is dropped. Re-entrant: a thread
    /// that holds it gets a guard at once.
    ///
    /// ```
    /// let gil = conclab::gil::Gil::new(std::time::Duration::from_millis(5));
    /// let py = gil.acquire();
    /// let again = gil.acquire(); // same thread: no wait
    /// drop(again);
    /// drop(py);
    /// ```
    pub fn acquire(&self) -> GilGuard<'_> {
        let me = std::thread::current().id();
        let state = self.inner.state.lock();
        if state.holder == Some(me) {
            return GilGuard {
                gil: self,
                nested: true,
                acquired_at: Instant::now(),
                _not_send: PhantomData,
            };
        }
        drop(state);
        self.take(me);
        GilGuard {
            gil: self,
            nested: false,
            acquired_at: Instant::now(),
            _not_send: PhantomData,
        }
    }

    fn take(&self, me: ThreadId) {
        let mut state = self.inner.state.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        if state.now_serving != ticket || state.holder.is_some() {
            self.inner.waiting.fetch_add(1, Ordering::Relaxed);
            while state.now_serving != ticket || state.holder.is_some() {
                self.inner.changed.wait(&mut state);
            }
            self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        state.holder = Some(me);
    }

    fn give(&self, handing_over: bool) {
        let mut state = self.inner.state.lock();
        state.holder = None;
        state.now_serving += 1;
        drop(state);
        if handing_over {
            self.inner.switches.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.changed.notify_all();
    }

    /// Runs `f` holding the GIL; `f` gets the guard for switch points and sleeps.
    ///
    /// ```
    /// let gil = conclab::gil::Gil::new(std::time::Duration::from_millis(5));
    /// assert_eq!(gil.run(|_py| 1 + 1), 2);
    /// ```
    pub fn run<R>(&self, f: impl FnOnce(&mut GilGuard<'_>) -> R) -> R {
        let mut guard = self.acquire();
        f(&mut guard)
    }

    /// [`cpu_work`] done the way a Python thread computes: holding the GIL, with a
    /// switch point every few microseconds.
    ///
    /// ```
    /// let gil = conclab::gil::Gil::new(std::time::Duration::from_millis(5));
    /// assert_eq!(gil.cpu_work(5000), conclab::gil::cpu_work(5000));
    /// ```
    pub fn cpu_work(&self, iterations: u64) -> u64 {
        self.run(|py| py.cpu_work(iterations))
    }

    /// A simulated blocking I/O call (`time.sleep`, a download): takes the GIL as the
    /// Python code around the call would, then releases it for the whole wait.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let gil = conclab::gil::Gil::new(Duration::from_millis(5));
    /// let start = Instant::now();
    /// gil.sleep(Duration::from_millis(2));
    /// assert!(start.elapsed() >= Duration::from_millis(2));
    /// ```
    pub fn sleep(&self, duration: Duration) {
        self.run(|py| py.sleep(duration));
    }
}

impl fmt::Debug for Gil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gil")
            .field("switch_interval", &self.inner.switch_interval)
            .field("switches", &self.switches())
            .field("waiting", &self.inner.waiting.load(Ordering::Relaxed))
            .finish()
    }
}

/// Holding the simulated GIL. Dropping it releases the GIL; it cannot leave its thread.
///
/// ```
/// let gil = conclab::gil::Gil::new(std::time::Duration::from_millis(5));
/// let mut py = gil.acquire();
/// py.switch_point(); // nobody waits: keeps the GIL
/// ```
#[must_use = "the GIL is released as soon as the guard is dropped"]
pub struct GilGuard<'a> {
    gil: &'a Gil,
    /// A re-entrant acquire: the outer guard releases.
    nested: bool,
    acquired_at: Instant,
    _not_send: PhantomData<*const ()>,
}

impl GilGuard<'_> {
    /// Gives the GIL to a waiting thread if this one has held it for the switch interval;
    /// returns whether it did (and has it back now). Call it often in long computations.
    ///
    /// ```
    /// let gil = conclab::gil::Gil::new(std::time::Duration::ZERO);
    /// let mut py = gil.acquire();
    /// assert!(!py.switch_point()); // no other thread waits
    /// ```
    pub fn switch_point(&mut self) -> bool {
        if self.nested
            || self.gil.inner.waiting.load(Ordering::Relaxed) == 0
            || self.acquired_at.elapsed() < self.gil.inner.switch_interval
        {
            return false;
        }
        let me = std::thread::current().id();
        self.gil.give(true);
        self.gil.take(me);
        self.acquired_at = Instant::now();
        true
    }

    /// [`cpu_work`] holding the GIL, with a switch point every few microseconds.
    ///
    /// ```
    /// let gil = conclab::gil::Gil::new(std::time::Duration::from_millis(5));
    /// let mut py = gil.acquire();
    /// assert_eq!(py.cpu_work(100), conclab::gil::cpu_work(100));
    /// ```
    pub fn cpu_work(&mut self, iterations: u64) -> u64 {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut left = iterations;
        while left > 0 {
            let step = left.min(CHUNK);
            x = continue_work(x, step);
            left -= step;
            self.switch_point();
        }
        black_box(x)
    }

    /// Sleeps without the GIL (as CPython releases it around blocking calls) and takes
    /// it back afterwards.
    ///
    /// ```
    /// let gil = conclab::gil::Gil::new(std::time::Duration::from_millis(5));
    /// gil.run(|py| py.sleep(std::time::Duration::from_millis(1)));
    /// ```
    pub fn sleep(&mut self, duration: Duration) {
        self.allow_threads(|| std::thread::sleep(duration));
    }

    /// Runs `f` with the GIL released (PyO3's `allow_threads`, C extensions'
    /// `Py_BEGIN_ALLOW_THREADS`): use it around any blocking wait, such as acquiring a
    /// lock another GIL thread holds.
    ///
    /// ```
    /// let gil = conclab::gil::Gil::new(std::time::Duration::from_millis(5));
    /// let n = gil.run(|py| py.allow_threads(|| conclab::gil::cpu_work(10)));
    /// assert_eq!(n, conclab::gil::cpu_work(10));
    /// ```
    pub fn allow_threads<R>(&mut self, f: impl FnOnce() -> R) -> R {
        if self.nested {
            // The outer guard owns the GIL; releasing it here would pull it from under it.
            return f();
        }
        self.gil.give(false);
        let result = f();
        self.gil.take(std::thread::current().id());
        self.acquired_at = Instant::now();
        result
    }
}

/// Continues the xorshift sequence of [`cpu_work`] from `x` for `steps` steps.
fn continue_work(mut x: u64, steps: u64) -> u64 {
    for _ in 0..steps {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

impl Drop for GilGuard<'_> {
    fn drop(&mut self) {
        if !self.nested {
            self.gil.give(false);
        }
    }
}

impl fmt::Debug for GilGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GilGuard")
            .field("held_for", &self.acquired_at.elapsed())
            .finish()
    }
}
