//! [`Semaphore`] and [`BoundedSemaphore`]: Python's counting semaphores.
//!
//! std has no semaphore and parking_lot has none either; this one is a counter under a
//! `Mutex` with a `Condvar` to wait on, as in CPython's pure-Python implementation.

use super::ThreadingError;
use crate::explore::sched::{self, Obj};
use crate::sync::{Condvar, Mutex};
use std::fmt;
use std::time::{Duration, Instant};

struct Permits {
    available: Mutex<usize>,
    freed: Condvar,
    /// `Some(initial)` for a bounded semaphore.
    bound: Option<usize>,
}

impl Permits {
    fn new(value: usize, bound: Option<usize>) -> Self {
        Self {
            available: Mutex::new(value),
            freed: Condvar::new(),
            bound,
        }
    }

    /// How `explore` names this semaphore in its steps.
    fn obj(&self) -> Obj<'_> {
        Obj::new(self, "semaphore", None)
    }

    fn acquire(&self) {
        sched::point("acquire", &self.obj());
        let mut available = self.available.lock();
        while *available == 0 {
            self.freed.wait(&mut available);
        }
        *available -= 1;
        sched::note("acquire", &self.obj(), || format!("{} left", *available));
    }

    fn try_acquire(&self) -> bool {
        sched::point("try acquire", &self.obj());
        let mut available = self.available.lock();
        if *available == 0 {
            sched::note("try acquire", &self.obj(), || "none left".to_owned());
            return false;
        }
        *available -= 1;
        sched::note("try acquire", &self.obj(), || {
            format!("{} left", *available)
        });
        true
    }

    fn acquire_until(&self, deadline: Instant) -> bool {
        sched::point("acquire", &self.obj());
        let mut available = self.available.lock();
        while *available == 0 {
            if self.freed.wait_until(&mut available, deadline).timed_out() && *available == 0 {
                sched::note("acquire", &self.obj(), || "timed out".to_owned());
                return false;
            }
        }
        *available -= 1;
        sched::note("acquire", &self.obj(), || format!("{} left", *available));
        true
    }

    fn release(&self, n: usize) -> Result<(), ThreadingError> {
        sched::point("release", &self.obj());
        let mut available = self.available.lock();
        let after = available.saturating_add(n);
        if let Some(bound) = self.bound {
            if after > bound {
                return Err(ThreadingError::OverReleased { bound });
            }
        }
        *available = after;
        sched::note("release", &self.obj(), || format!("{after} left"));
        drop(available);
        for _ in 0..n {
            self.freed.notify_one();
        }
        Ok(())
    }

    fn value(&self) -> usize {
        *self.available.lock()
    }
}

/// A counter of permits: `acquire` takes one (waiting while there are none), dropping the
/// guard gives it back. Python's `threading.Semaphore`.
///
/// Typical use: at most N threads inside a section at once (N connections, N downloads).
/// For signalling between threads ("one item ready"), [`release`](Semaphore::release)
/// adds a permit without a guard and [`SemaphoreGuard::forget`] keeps one taken.
///
/// ```
/// use conclab::threading::{Semaphore, Thread};
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// let slots = Arc::new(Semaphore::new(2));
/// let inside = Arc::new(AtomicUsize::new(0));
/// let handles: Vec<_> = (0..6).map(|_| {
///     let (slots, inside) = (Arc::clone(&slots), Arc::clone(&inside));
///     Thread::new(move || {
///         let _permit = slots.acquire();
///         let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
///         assert!(now <= 2, "never more than two inside");
///         std::thread::sleep(std::time::Duration::from_millis(2));
///         inside.fetch_sub(1, Ordering::SeqCst);
///     }).start().unwrap()
/// }).collect();
/// for h in handles { h.join().unwrap(); }
/// assert_eq!(slots.value(), 2);
/// ```
pub struct Semaphore {
    permits: Permits,
}

impl Semaphore {
    /// A semaphore with `value` permits.
    ///
    /// ```
    /// assert_eq!(conclab::threading::Semaphore::new(3).value(), 3);
    /// ```
    pub fn new(value: usize) -> Self {
        Self {
            permits: Permits::new(value, None),
        }
    }

    /// Takes a permit, waiting while there is none; the guard gives it back.
    ///
    /// ```
    /// let sem = conclab::threading::Semaphore::new(1);
    /// let permit = sem.acquire();
    /// assert_eq!(sem.value(), 0);
    /// drop(permit);
    /// assert_eq!(sem.value(), 1);
    /// ```
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        self.permits.acquire();
        SemaphoreGuard {
            permits: &self.permits,
        }
    }

    /// Takes a permit if one is free now.
    ///
    /// ```
    /// let sem = conclab::threading::Semaphore::new(1);
    /// let _p = sem.try_acquire().unwrap();
    /// assert!(sem.try_acquire().is_none());
    /// ```
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_>> {
        self.permits.try_acquire().then_some(SemaphoreGuard {
            permits: &self.permits,
        })
    }

    /// Waits at most `timeout` for a permit; [`ThreadingError::Timeout`] otherwise.
    ///
    /// ```
    /// use std::time::Duration;
    /// let sem = conclab::threading::Semaphore::new(0);
    /// assert!(sem.acquire_timeout(Duration::from_millis(5)).is_err());
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>, ThreadingError> {
        if self.permits.acquire_until(Instant::now() + timeout) {
            Ok(SemaphoreGuard {
                permits: &self.permits,
            })
        } else {
            Err(ThreadingError::Timeout(timeout))
        }
    }

    /// Adds `n` permits without a guard (Python's `release(n)`), waking up to `n` waiters.
    ///
    /// ```
    /// let sem = conclab::threading::Semaphore::new(0);
    /// sem.release(2);
    /// assert_eq!(sem.value(), 2);
    /// ```
    pub fn release(&self, n: usize) {
        // An unbounded semaphore has no bound to exceed.
        let _ = self.permits.release(n);
    }

    /// The number of free permits now.
    ///
    /// ```
    /// assert_eq!(conclab::threading::Semaphore::new(4).value(), 4);
    /// ```
    pub fn value(&self) -> usize {
        self.permits.value()
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .finish()
    }
}

/// A semaphore that refuses to go above its initial value (Python's
/// `threading.BoundedSemaphore`): an extra [`release`](BoundedSemaphore::release) is an
/// error, which catches "released more often than acquired" bugs.
///
/// ```
/// use conclab::threading::{BoundedSemaphore, ThreadingError};
/// let sem = BoundedSemaphore::new(1);
/// let permit = sem.acquire();
/// drop(permit);
/// assert_eq!(sem.release(1), Err(ThreadingError::OverReleased { bound: 1 }));
/// ```
pub struct BoundedSemaphore {
    /// A semaphore whose permits carry the bound; only `release` differs.
    inner: Semaphore,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` permits, which is also its upper bound.
    ///
    /// ```
    /// assert_eq!(conclab::threading::BoundedSemaphore::new(2).value(), 2);
    /// ```
    pub fn new(value: usize) -> Self {
        Self {
            inner: Semaphore {
                permits: Permits::new(value, Some(value)),
            },
        }
    }

    /// Takes a permit, waiting while there is none.
    ///
    /// ```
    /// let sem = conclab::threading::BoundedSemaphore::new(1);
    /// let _p = sem.acquire();
    /// assert_eq!(sem.value(), 0);
    /// ```
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        self.inner.acquire()
    }

    /// Takes a permit if one is free now.
    ///
    /// ```
    /// let sem = conclab::threading::BoundedSemaphore::new(0);
    /// assert!(sem.try_acquire().is_none());
    /// ```
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_>> {
        self.inner.try_acquire()
    }

    /// Waits at most `timeout` for a permit.
    ///
    /// ```
    /// use std::time::Duration;
    /// let sem = conclab::threading::BoundedSemaphore::new(1);
    /// assert!(sem.acquire_timeout(Duration::from_millis(5)).is_ok());
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>, ThreadingError> {
        self.inner.acquire_timeout(timeout)
    }

    /// Gives back `n` permits taken with [`SemaphoreGuard::forget`];
    /// [`ThreadingError::OverReleased`] (and no change) if that would exceed the bound.
    ///
    /// ```
    /// let sem = conclab::threading::BoundedSemaphore::new(1);
    /// sem.acquire().forget();
    /// assert_eq!(sem.value(), 0);
    /// sem.release(1).unwrap();
    /// assert_eq!(sem.value(), 1);
    /// ```
    pub fn release(&self, n: usize) -> Result<(), ThreadingError> {
        self.inner.permits.release(n)
    }

    /// The number of free permits now.
    ///
    /// ```
    /// assert_eq!(conclab::threading::BoundedSemaphore::new(3).value(), 3);
    /// ```
    pub fn value(&self) -> usize {
        self.inner.value()
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.value())
            .field("bound", &self.inner.permits.bound)
            .finish()
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`], given back when dropped.
///
/// ```
/// let sem = conclab::threading::Semaphore::new(1);
/// {
///     let _permit = sem.acquire();
///     assert_eq!(sem.value(), 0);
/// }
/// assert_eq!(sem.value(), 1);
/// ```
#[must_use = "dropping the guard gives the permit back at once"]
pub struct SemaphoreGuard<'a> {
    permits: &'a Permits,
}

impl SemaphoreGuard<'_> {
    /// Keeps the permit taken (for signalling; give it back with `release`).
    ///
    /// ```
    /// let sem = conclab::threading::Semaphore::new(1);
    /// sem.acquire().forget();
    /// assert_eq!(sem.value(), 0);
    /// ```
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // Giving back a permit taken from this semaphore never exceeds its bound.
        let _ = self.permits.release(1);
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SemaphoreGuard")
    }
}
