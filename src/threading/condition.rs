//! [`Condition`]: Python's `threading.Condition`, a [`Lock`] with a waiting room.
//!
//! std's and parking_lot's `Condvar` only work with their own mutex guards, so this
//! condition keeps its own queue of waiters, each with a one-shot signal, the way CPython
//! implements `Condition` in Python: `notify(n)` wakes the `n` longest waiters, in order.

use super::lock::{Lock, LockGuard};
use super::ThreadingError;
use crate::sync::{Arc, Condvar, Mutex};
use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

/// One waiting thread's wake-up signal.
struct Waiter {
    notified: Mutex<bool>,
    signal: Condvar,
}

impl Waiter {
    fn notify(&self) {
        *self.notified.lock() = true;
        self.signal.notify_one();
    }

    /// Waits for the signal; `false` when `deadline` passed first.
    fn wait(&self, deadline: Option<Instant>) -> bool {
        let mut notified = self.notified.lock();
        while !*notified {
            match deadline {
                None => self.signal.wait(&mut notified),
                Some(deadline) => {
                    if self.signal.wait_until(&mut notified, deadline).timed_out() {
                        return *notified;
                    }
                }
            }
        }
        true
    }
}

/// A lock around a value plus a place to wait until the value changes (Python's
/// `threading.Condition`).
///
/// [`acquire`](Condition::acquire) gives a [`ConditionGuard`]. With it a thread can
/// [`wait`](ConditionGuard::wait) (the lock is released while waiting and held again when
/// `wait` returns), [`wait_for`](ConditionGuard::wait_for) a predicate, and
/// [`notify`](ConditionGuard::notify) / [`notify_all`](ConditionGuard::notify_all). Python
/// raises `RuntimeError` for a `notify` without the lock; here notifying is a method of
/// the guard, so it cannot happen.
///
/// ```
/// use conclab::threading::{Condition, Thread};
/// use std::sync::Arc;
///
/// let items = Arc::new(Condition::new(Vec::new()));
/// let consumer = {
///     let items = Arc::clone(&items);
///     Thread::new(move || {
///         let guard = items.acquire().unwrap();
///         let mut guard = guard.wait_for(|v| !v.is_empty()).unwrap();
///         guard.pop()
///     }).start().unwrap()
/// };
/// {
///     let mut guard = items.acquire().unwrap();
///     guard.push(42);
///     guard.notify(1);
/// }
/// assert_eq!(consumer.join().unwrap(), Some(42));
/// ```
pub struct Condition<T = ()> {
    lock: Lock<T>,
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
}

impl<T> Condition<T> {
    /// A condition around `value` (its lock is named after the calling line).
    ///
    /// ```
    /// let cond = conclab::threading::Condition::new(0);
    /// assert_eq!(*cond.acquire().unwrap(), 0);
    /// ```
    #[track_caller]
    pub fn new(value: T) -> Self {
        let at = std::panic::Location::caller();
        Self::named(format!("Condition at {}:{}", at.file(), at.line()), value)
    }

    /// A condition whose lock has a name for deadlock reports.
    ///
    /// ```
    /// assert_eq!(conclab::threading::Condition::named("buffer", ()).name(), "buffer");
    /// ```
    pub fn named(name: impl Into<String>, value: T) -> Self {
        Self {
            lock: Lock::named(name, value),
            waiters: Mutex::new(VecDeque::new()),
        }
    }

    /// The name of the underlying lock.
    ///
    /// ```
    /// assert!(conclab::threading::Condition::new(()).name().starts_with("Condition at"));
    /// ```
    pub fn name(&self) -> &str {
        self.lock.name()
    }

    /// Takes the lock (like [`Lock::acquire`], deadlocks included).
    ///
    /// ```
    /// let cond = conclab::threading::Condition::new(1);
    /// let mut guard = cond.acquire().unwrap();
    /// *guard += 1;
    /// ```
    pub fn acquire(&self) -> Result<ConditionGuard<'_, T>, ThreadingError> {
        Ok(ConditionGuard {
            cond: self,
            guard: self.lock.acquire()?,
        })
    }

    /// How many threads wait on this condition now.
    ///
    /// ```
    /// assert_eq!(conclab::threading::Condition::new(()).waiting(), 0);
    /// ```
    pub fn waiting(&self) -> usize {
        self.waiters.lock().len()
    }

    fn notify(&self, n: usize) -> usize {
        let obj = crate::explore::sched::Obj::new(self, "condition", Some(self.name()));
        crate::explore::sched::point("notify", &obj);
        let woken: Vec<Arc<Waiter>> = {
            let mut waiters = self.waiters.lock();
            let n = n.min(waiters.len());
            waiters.drain(..n).collect()
        };
        for waiter in &woken {
            waiter.notify();
        }
        crate::explore::sched::note("notify", &obj, || format!("woke {}", woken.len()));
        woken.len()
    }

    fn wait_inner<'a>(
        &'a self,
        guard: ConditionGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> Result<(ConditionGuard<'a, T>, bool), ThreadingError> {
        let waiter = Arc::new(Waiter {
            notified: Mutex::new(false),
            signal: Condvar::new(),
        });
        // Join the queue before releasing the lock: a notify issued right after the
        // release must find us.
        self.waiters.lock().push_back(Arc::clone(&waiter));
        drop(guard);
        let mut notified = waiter.wait(deadline);
        if !notified {
            let mut waiters = self.waiters.lock();
            if let Some(at) = waiters.iter().position(|w| Arc::ptr_eq(w, &waiter)) {
                waiters.remove(at);
            } else {
                // A notifier took us off the queue just as the time ran out: count it,
                // or that notification would be lost.
                notified = true;
            }
        }
        let guard = self.acquire()?;
        Ok((guard, notified))
    }
}

impl<T: Default> Default for Condition<T> {
    #[track_caller]
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> fmt::Debug for Condition<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("name", &self.name())
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

/// The held lock of a [`Condition`]: reaches the value, waits and notifies.
///
/// ```
/// let cond = conclab::threading::Condition::new(String::new());
/// let mut guard = cond.acquire().unwrap();
/// guard.push_str("ready");
/// assert_eq!(guard.notify_all(), 0); // nobody was waiting
/// ```
#[must_use = "the condition's lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a, T> {
    cond: &'a Condition<T>,
    guard: LockGuard<'a, T>,
}

impl<'a, T> ConditionGuard<'a, T> {
    /// Releases the lock, waits for a notification, takes the lock again.
    ///
    /// Like every condition variable it can return after a notification meant for a state
    /// that has changed again since: check the state in a loop, or use
    /// [`wait_for`](Self::wait_for). Errors only if re-taking the lock closes a deadlock.
    ///
    /// ```
    /// use conclab::threading::Condition;
    /// let cond = Condition::new(false);
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         let mut g = cond.acquire().unwrap();
    ///         *g = true;
    ///         g.notify(1);
    ///     });
    ///     let mut g = cond.acquire().unwrap();
    ///     while !*g {
    ///         g = g.wait().unwrap();
    ///     }
    /// });
    /// ```
    pub fn wait(self) -> Result<Self, ThreadingError> {
        let cond = self.cond;
        cond.wait_inner(self, None).map(|(guard, _)| guard)
    }

    /// Like [`wait`](Self::wait) for at most `timeout`; the flag says whether a
    /// notification came (Python's `wait(timeout)` result).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = conclab::threading::Condition::new(());
    /// let guard = cond.acquire().unwrap();
    /// let (_guard, notified) = guard.wait_timeout(Duration::from_millis(5)).unwrap();
    /// assert!(!notified);
    /// ```
    pub fn wait_timeout(self, timeout: Duration) -> Result<(Self, bool), ThreadingError> {
        let cond = self.cond;
        cond.wait_inner(self, Some(Instant::now() + timeout))
    }

    /// Waits until `predicate` holds for the value (checked first, then after each wake-up).
    ///
    /// ```
    /// let cond = conclab::threading::Condition::new(3);
    /// // Already true: returns at once.
    /// let guard = cond.acquire().unwrap().wait_for(|n| *n == 3).unwrap();
    /// assert_eq!(*guard, 3);
    /// ```
    pub fn wait_for(
        mut self,
        mut predicate: impl FnMut(&mut T) -> bool,
    ) -> Result<Self, ThreadingError> {
        while !predicate(&mut self) {
            self = self.wait()?;
        }
        Ok(self)
    }

    /// [`wait_for`](Self::wait_for) with an overall timeout; the flag is the predicate's
    /// last value (Python's `wait_for(predicate, timeout)` result).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = conclab::threading::Condition::new(0);
    /// let (guard, ok) = cond.acquire().unwrap()
    ///     .wait_for_timeout(|n| *n > 0, Duration::from_millis(5)).unwrap();
    /// assert!(!ok);
    /// assert_eq!(*guard, 0);
    /// ```
    pub fn wait_for_timeout(
        mut self,
        mut predicate: impl FnMut(&mut T) -> bool,
        timeout: Duration,
    ) -> Result<(Self, bool), ThreadingError> {
        let deadline = Instant::now() + timeout;
        loop {
            if predicate(&mut self) {
                return Ok((self, true));
            }
            if Instant::now() >= deadline {
                return Ok((self, false));
            }
            let cond = self.cond;
            self = cond.wait_inner(self, Some(deadline))?.0;
        }
    }

    /// Wakes up to `n` waiting threads, longest waiting first; returns how many it woke.
    ///
    /// ```
    /// let cond = conclab::threading::Condition::new(());
    /// assert_eq!(cond.acquire().unwrap().notify(1), 0);
    /// ```
    pub fn notify(&mut self, n: usize) -> usize {
        self.cond.notify(n)
    }

    /// Wakes every waiting thread; returns how many it woke.
    ///
    /// ```
    /// let cond = conclab::threading::Condition::new(());
    /// assert_eq!(cond.acquire().unwrap().notify_all(), 0);
    /// ```
    pub fn notify_all(&mut self) -> usize {
        self.cond.notify(usize::MAX)
    }
}

impl<T> Deref for ConditionGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for ConditionGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: fmt::Debug> fmt::Debug for ConditionGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
