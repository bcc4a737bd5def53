//! [`Lock`]: Python's `threading.Lock`, holding the data it protects.

use super::graph::{current_node, LockCore};
use super::ThreadingError;
use crate::sync::Arc;
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

/// A mutual-exclusion lock around a value: Python's `threading.Lock`, Rust's `Mutex`.
///
/// Python's `Lock()` guards whatever the program agrees it guards; a conclab `Lock<T>`
/// owns the value, and the [`LockGuard`] that [`acquire`](Lock::acquire) returns is the only
/// way to reach it. Dropping the guard releases the lock, so there is no `release()` to
/// forget. Use `Lock<()>` (`Lock::new(())`) for a lock that guards nothing but a section.
///
/// What it adds to `std::sync::Mutex` (which, like it, sleeps on a futex):
/// - **deadlocks are reported**: an `acquire` that would wait forever in a cycle of threads
///   (or on a lock the same thread already holds) returns [`ThreadingError::Deadlock`]
///   naming the threads and locks, where CPython hangs;
/// - a **name** for messages ([`Lock::named`]); an unnamed lock is named after the line
///   that created it;
/// - no poisoning: like Python, a panic while holding the lock just releases it.
///
/// The uncontended path is one compare-and-swap to take the lock (the lock word holds the
/// owner) and one swap to release it; the deadlock bookkeeping only runs once a thread is
/// about to sleep (see `benches/threads.rs`).
///
/// ```
/// use conclab::threading::{Lock, Thread};
/// use std::sync::Arc;
///
/// let counter = Arc::new(Lock::new(0));
/// let handles: Vec<_> = (0..2)
///     .map(|_| {
///         let counter = Arc::clone(&counter);
///         Thread::new(move || {
///             for _ in 0..1000 {
///                 *counter.acquire().unwrap() += 1;
///             }
///         })
///         .start()
///         .unwrap()
///     })
///     .collect();
/// for handle in handles {
///     handle.join().unwrap();
/// }
/// assert_eq!(*counter.acquire().unwrap(), 2000);
/// ```
pub struct Lock<T = ()> {
    core: Arc<LockCore>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reached through a guard, which exists on one thread at a time
// because the raw lock is held while it lives (the same argument as `std::sync::Mutex`).
unsafe impl<T: Send> Send for Lock<T> {}
// SAFETY: see above.
unsafe impl<T: Send> Sync for Lock<T> {}

impl<T> Lock<T> {
    /// A new, unlocked lock around `value`, named after the line that calls this.
    ///
    /// ```
    /// let lock = conclab::threading::Lock::new(vec![1, 2]);
    /// assert!(lock.name().starts_with("Lock at "));
    /// ```
    #[track_caller]
    pub fn new(value: T) -> Self {
        let at = std::panic::Location::caller();
        Self::named(format!("Lock at {}:{}", at.file(), at.line()), value)
    }

    /// A new lock with a name that deadlock reports use (`"fork 1"`, `"account A"`).
    ///
    /// ```
    /// let fork = conclab::threading::Lock::named("fork 1", ());
    /// assert_eq!(fork.name(), "fork 1");
    /// ```
    pub fn named(name: impl Into<String>, value: T) -> Self {
        Self {
            core: LockCore::new(name.into()),
            data: UnsafeCell::new(value),
        }
    }

    /// The lock's name.
    ///
    /// ```
    /// assert_eq!(conclab::threading::Lock::named("db", 0).name(), "db");
    /// ```
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Waits until the lock is free and takes it (Python's `lock.acquire()` / `with lock:`).
    ///
    /// Returns [`ThreadingError::Deadlock`] instead of waiting forever when this thread and
    /// others wait for each other's conclab locks in a cycle, or when this thread already
    /// holds this lock (a `Lock` is not re-entrant: see [`RLock`](super::RLock)).
    ///
    /// ```
    /// let lock = conclab::threading::Lock::new(1);
    /// let mut guard = lock.acquire().unwrap();
    /// *guard += 1;
    /// // Taking it again on the same thread would wait for ever: it is reported instead.
    /// assert!(matches!(lock.acquire(), Err(conclab::threading::ThreadingError::Deadlock(_))));
    /// drop(guard);
    /// assert_eq!(*lock.acquire().unwrap(), 2);
    /// ```
    #[inline]
    pub fn acquire(&self) -> Result<LockGuard<'_, T>, ThreadingError> {
        LockCore::lock(&self.core, current_node())?;
        Ok(LockGuard::new(self))
    }

    /// Takes the lock only if it is free right now (Python's `acquire(blocking=False)`).
    ///
    /// ```
    /// let lock = conclab::threading::Lock::new(());
    /// let held = lock.try_acquire().unwrap();
    /// assert!(lock.try_acquire().is_none());
    /// drop(held);
    /// assert!(lock.try_acquire().is_some());
    /// ```
    pub fn try_acquire(&self) -> Option<LockGuard<'_, T>> {
        if self.core.try_lock(current_node()) {
            Some(LockGuard::new(self))
        } else {
            None
        }
    }

    /// Waits at most `timeout` for the lock (Python's `acquire(timeout=...)`).
    ///
    /// Returns [`ThreadingError::Timeout`] when the time ran out. A timed wait is not part
    /// of deadlock detection: it ends by itself.
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = conclab::threading::Lock::new(());
    /// let _held = lock.acquire().unwrap();
    /// let err = lock.acquire_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(err, conclab::threading::ThreadingError::Timeout(Duration::from_millis(10)));
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_, T>, ThreadingError> {
        if !LockCore::lock_until(&self.core, current_node(), Instant::now() + timeout) {
            return Err(ThreadingError::Timeout(timeout));
        }
        Ok(LockGuard::new(self))
    }

    /// Runs `f` with the lock held, like Python's `with lock:` block.
    ///
    /// ```
    /// let lock = conclab::threading::Lock::new(vec![1]);
    /// let len = lock.with(|v| { v.push(2); v.len() }).unwrap();
    /// assert_eq!(len, 2);
    /// ```
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R, ThreadingError> {
        let mut guard = self.acquire()?;
        Ok(f(&mut guard))
    }

    /// Whether some thread holds the lock now (Python's `lock.locked()`).
    ///
    /// ```
    /// let lock = conclab::threading::Lock::new(());
    /// assert!(!lock.locked());
    /// let _g = lock.acquire().unwrap();
    /// assert!(lock.locked());
    /// ```
    pub fn locked(&self) -> bool {
        self.core.is_locked()
    }

    /// The protected value, when no other thread can have the lock (`&mut self`).
    ///
    /// ```
    /// let mut lock = conclab::threading::Lock::new(5);
    /// *lock.get_mut() += 1;
    /// assert_eq!(lock.into_inner(), 6);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Gives back the protected value.
    ///
    /// ```
    /// assert_eq!(conclab::threading::Lock::new("x").into_inner(), "x");
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: Default> Default for Lock<T> {
    #[track_caller]
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> fmt::Debug for Lock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.core.name)
            .field("locked", &self.locked())
            .finish_non_exhaustive()
    }
}

/// Proof that the current thread holds a [`Lock`]; gives access to the value and releases
/// the lock when dropped.
///
/// It cannot move to another thread (`!Send`), so only the thread that acquired a lock can
/// release it, the rule Python documents but does not enforce for `RLock`:
///
/// ```compile_fail
/// let lock = conclab::threading::Lock::new(0);
/// let guard = lock.acquire().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard)); // error: `*const ()` cannot be sent between threads
/// });
/// ```
///
/// ```
/// let lock = conclab::threading::Lock::new(String::from("a"));
/// let mut guard = lock.acquire().unwrap();
/// guard.push('b');
/// assert_eq!(*guard, "ab");
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a, T> {
    lock: &'a Lock<T>,
    _not_send: PhantomData<*const ()>,
}

impl<'a, T> LockGuard<'a, T> {
    fn new(lock: &'a Lock<T>) -> Self {
        Self {
            lock,
            _not_send: PhantomData,
        }
    }
}

impl<T> Deref for LockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard's existence means this thread holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for LockGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.core.unlock();
    }
}

impl<T: fmt::Debug> fmt::Debug for LockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
