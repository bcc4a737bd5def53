//! [`RLock`]: Python's `threading.RLock`, a lock the holding thread may take again.

use super::graph::{current_node, LockCore};
use super::ThreadingError;
use crate::sync::Arc;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::{Duration, Instant};

/// A re-entrant lock: the thread holding it may acquire it again (Python's
/// `threading.RLock`, parking_lot's `ReentrantMutex`).
///
/// Each [`acquire`](RLock::acquire) returns an [`RLockGuard`]; the lock is free again when
/// the last guard of the holding thread is dropped. Guards cannot leave their thread, so
/// "release from another thread", a `RuntimeError` in Python, cannot be written.
///
/// Because several guards of one thread may be alive at once, a guard gives shared access
/// (`&T`) only; put a `Cell` or `RefCell` inside for mutation, as with `ReentrantMutex`.
/// Like [`Lock`](super::Lock), a blocked acquire that closes a cycle of waiting threads
/// returns [`ThreadingError::Deadlock`].
///
/// ```
/// use conclab::threading::RLock;
/// use std::cell::Cell;
///
/// fn visit(lock: &RLock<Cell<u32>>, depth: u32) {
///     let guard = lock.acquire().unwrap(); // taken again at every level
///     guard.set(guard.get() + 1);
///     if depth > 0 {
///         visit(lock, depth - 1);
///     }
/// }
/// let lock = RLock::new(Cell::new(0));
/// visit(&lock, 3);
/// assert_eq!(lock.acquire().unwrap().get(), 4);
/// ```
pub struct RLock<T = ()> {
    core: Arc<LockCore>,
    /// How often the owner has taken it; only the owning thread reads or writes it.
    count: Cell<usize>,
    data: T,
}

// SAFETY: `count` is only touched by the thread that holds the raw lock, and the data is
// only shared (`&T`) with that thread, so `T: Send` suffices as for `ReentrantMutex`.
unsafe impl<T: Send> Send for RLock<T> {}
// SAFETY: see above.
unsafe impl<T: Send> Sync for RLock<T> {}

impl<T> RLock<T> {
    /// A new re-entrant lock around `value`, named after the line that calls this.
    ///
    /// ```
    /// let lock = conclab::threading::RLock::new(());
    /// assert!(lock.name().starts_with("RLock at "));
    /// ```
    #[track_caller]
    pub fn new(value: T) -> Self {
        let at = std::panic::Location::caller();
        Self::named(format!("RLock at {}:{}", at.file(), at.line()), value)
    }

    /// A new re-entrant lock with a name for deadlock reports.
    ///
    /// ```
    /// assert_eq!(conclab::threading::RLock::named("tree", ()).name(), "tree");
    /// ```
    pub fn named(name: impl Into<String>, value: T) -> Self {
        Self {
            core: LockCore::new(name.into()),
            count: Cell::new(0),
            data: value,
        }
    }

    /// The lock's name.
    ///
    /// ```
    /// assert_eq!(conclab::threading::RLock::named("r", 1).name(), "r");
    /// ```
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Takes the lock, at once if this thread already holds it; otherwise waits, and
    /// reports a deadlock cycle instead of waiting forever.
    ///
    /// ```
    /// let lock = conclab::threading::RLock::new(7);
    /// let outer = lock.acquire().unwrap();
    /// let inner = lock.acquire().unwrap();
    /// assert_eq!(*outer + *inner, 14);
    /// ```
    pub fn acquire(&self) -> Result<RLockGuard<'_, T>, ThreadingError> {
        let me = current_node();
        if self.core.owned_by(me) {
            return Ok(self.enter_again());
        }
        LockCore::lock(&self.core, me)?;
        Ok(self.enter_first())
    }

    /// Takes the lock only if that needs no waiting.
    ///
    /// ```
    /// let lock = conclab::threading::RLock::new(());
    /// let _a = lock.try_acquire().unwrap();
    /// assert!(lock.try_acquire().is_some()); // same thread: re-entry
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(lock.try_acquire().is_none()));
    /// });
    /// ```
    pub fn try_acquire(&self) -> Option<RLockGuard<'_, T>> {
        let me = current_node();
        if self.core.owned_by(me) {
            Some(self.enter_again())
        } else if self.core.try_lock(me) {
            Some(self.enter_first())
        } else {
            None
        }
    }

    /// Waits at most `timeout`; [`ThreadingError::Timeout`] when it ran out.
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = conclab::threading::RLock::new(());
    /// let _held = lock.acquire().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(lock.acquire_timeout(Duration::from_millis(5)).is_err()));
    /// });
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_, T>, ThreadingError> {
        let me = current_node();
        if self.core.owned_by(me) {
            return Ok(self.enter_again());
        }
        if !LockCore::lock_until(&self.core, me, Instant::now() + timeout) {
            return Err(ThreadingError::Timeout(timeout));
        }
        Ok(self.enter_first())
    }

    /// Whether some thread holds the lock now.
    ///
    /// ```
    /// let lock = conclab::threading::RLock::new(());
    /// assert!(!lock.locked());
    /// ```
    pub fn locked(&self) -> bool {
        self.core.is_locked()
    }

    fn enter_first(&self) -> RLockGuard<'_, T> {
        self.count.set(1);
        RLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    fn enter_again(&self) -> RLockGuard<'_, T> {
        // A count this high means guards were leaked in a loop; wrapping would free the
        // lock while guards still exist, so stop here.
        let count = self.count.get();
        assert!(count < usize::MAX, "RLock acquired usize::MAX times");
        self.count.set(count + 1);
        RLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }
}

impl<T> fmt::Debug for RLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("name", &self.core.name)
            .field("locked", &self.locked())
            .finish_non_exhaustive()
    }
}

/// One level of holding an [`RLock`]; the lock is released when the holder's last guard
/// is dropped. Not `Send`: it is released on the thread that took it.
///
/// ```compile_fail
/// let lock = conclab::threading::RLock::new(0);
/// let guard = lock.acquire().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard)); // error: the guard cannot leave its thread
/// });
/// ```
///
/// ```
/// let lock = conclab::threading::RLock::new(3);
/// assert_eq!(*lock.acquire().unwrap(), 3);
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RLockGuard<'a, T> {
    lock: &'a RLock<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T> Deref for RLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.lock.data
    }
}

impl<T> Drop for RLockGuard<'_, T> {
    fn drop(&mut self) {
        let count = self.lock.count.get() - 1;
        self.lock.count.set(count);
        if count == 0 {
            self.lock.core.unlock();
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for RLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
