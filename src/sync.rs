//! The blocking building blocks every conclab primitive is written against.
//!
//! Normally: std's `Mutex` and `Condvar`, atomics and `Arc`. Under `--cfg loom`: loom's
//! model-checked twins, so `tests/loom.rs` explores every interleaving of conclab's own
//! primitives (locks' deadlock detection, `Condition`, `Semaphore`, `Event`, `Barrier`,
//! the queues and `Future`).
//!
//! Why std and not parking_lot: parking_lot keeps its sleeping threads in a `static`
//! table, and every notebook cell has its own statics, so a thread asleep since one cell
//! is never woken from the next (ARCHITECTURE.md, "Every cell has its own statics").
//! std's `Mutex` and `Condvar` sleep on a futex keyed by their own address.
//!
//! The wrappers give both bases parking_lot's signatures: `lock()` without poisoning (a
//! panic while holding a lock just releases it, as in Python), `wait(&mut guard)`, and
//! `wait_until(&mut guard, deadline)`.

#[cfg(not(loom))]
use std::sync as base;
#[cfg(not(loom))]
use std::sync::atomic::AtomicUsize;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

#[cfg(loom)]
use loom::sync as base;
#[cfg(loom)]
use loom::sync::atomic::AtomicUsize;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A mutex whose `lock` ignores poisoning.
#[derive(Default)]
pub(crate) struct Mutex<T>(base::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(base::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        MutexGuard {
            guard: Some(self.0.lock().unwrap_or_else(|e| e.into_inner())),
            mutex: &self.0,
        }
    }
}

/// Holds the base guard in an `Option` so `Condvar::wait` can take it by `&mut`, and the
/// mutex, so that a wait under `explore` can let go of it and take it again.
pub(crate) struct MutexGuard<'a, T> {
    guard: Option<base::MutexGuard<'a, T>>,
    #[cfg_attr(loom, allow(dead_code))]
    mutex: &'a base::Mutex<T>,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard
            .as_deref()
            .expect("guard present outside of a wait")
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard
            .as_deref_mut()
            .expect("guard present outside of a wait")
    }
}

/// Whether a timed wait ended because its time was up.
pub(crate) struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    pub(crate) fn timed_out(&self) -> bool {
        self.0
    }
}

/// A condition variable that waits on a [`MutexGuard`] in place.
///
/// It counts its sleepers so a notify with no one waiting costs no system call: std's
/// futex `Condvar` always makes one, which halved the executor bench's tasks per second
/// (every finished task notifies its future). The count is exact for the only correct way
/// to use a condition variable: the waiter counts itself while holding the mutex, before it
/// sleeps, and the notifier changed the state under that mutex before it notifies.
#[derive(Default)]
pub(crate) struct Condvar {
    inner: base::Condvar,
    sleepers: AtomicUsize,
}

impl Condvar {
    pub(crate) fn new() -> Self {
        Self {
            inner: base::Condvar::new(),
            sleepers: AtomicUsize::new(0),
        }
    }

    pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
        #[cfg(not(loom))]
        if crate::explore::sched::active() && self.wait_explored(guard, false).is_some() {
            return;
        }
        let inner = guard.guard.take().expect("guard present");
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner.wait(inner).unwrap_or_else(|e| e.into_inner());
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        guard.guard = Some(inner);
    }

    /// A wait inside an `explore` run: the scheduler runs other threads until this
    /// condvar is notified. `Some(timed out)`, or `None` when the run is over and the
    /// caller should wait for real. Counted in `sleepers` like a real wait, so a notify
    /// reaches the scheduler.
    #[cfg(not(loom))]
    #[cold]
    fn wait_explored<T>(&self, guard: &mut MutexGuard<'_, T>, timed: bool) -> Option<bool> {
        use crate::explore::sched::{self, Obj, Waiting, Woke};
        let obj = Obj::new(self, "", None);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        drop(guard.guard.take());
        let woke = sched::block(
            &obj,
            Waiting {
                addr: obj.addr,
                lock: None,
                join: false,
                timed,
                what: String::new(),
            },
        );
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        guard.guard = Some(guard.mutex.lock().unwrap_or_else(|e| e.into_inner()));
        match woke {
            Woke::Signalled => Some(false),
            Woke::TimedOut => Some(true),
            Woke::Abandoned => None,
        }
    }

    /// Waits until notified or until `deadline`.
    #[cfg(not(loom))]
    pub(crate) fn wait_until<T>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        deadline: Instant,
    ) -> WaitTimeoutResult {
        if crate::explore::sched::active() {
            if let Some(timed_out) = self.wait_explored(guard, true) {
                return WaitTimeoutResult(timed_out);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let inner = guard.guard.take().expect("guard present");
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let (inner, result) = self
            .inner
            .wait_timeout(inner, left)
            .unwrap_or_else(|e| e.into_inner());
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        guard.guard = Some(inner);
        WaitTimeoutResult(result.timed_out())
    }

    /// loom does not model time: this waits like `wait` and never times out.
    #[cfg(loom)]
    pub(crate) fn wait_until<T>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        _deadline: Instant,
    ) -> WaitTimeoutResult {
        self.wait(guard);
        WaitTimeoutResult(false)
    }

    pub(crate) fn notify_one(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.wake_explored();
            self.inner.notify_one();
        }
    }

    pub(crate) fn notify_all(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.wake_explored();
            self.inner.notify_all();
        }
    }

    /// Inside an `explore` run, the waits on this condvar are the scheduler's: wake them
    /// there (all of them; a condvar may always wake more than asked).
    #[inline]
    fn wake_explored(&self) {
        #[cfg(not(loom))]
        if crate::explore::sched::active() {
            crate::explore::sched::wake(std::ptr::from_ref(self).addr());
        }
    }
}

/// The name of the calling thread as std (or loom) knows it.
pub(crate) fn current_thread_name() -> Option<String> {
    #[cfg(not(loom))]
    let thread = std::thread::current();
    #[cfg(loom)]
    let thread = loom::thread::current();
    thread.name().map(str::to_owned)
}

/// A cell written once before a release and read after the matching acquire.
///
/// Normally a plain `UnsafeCell`; under loom, loom's checked one, so a missing
/// happens-before edge shows up as a model failure.
#[cfg(not(loom))]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_panic_while_locked_does_not_poison() {
        let mutex = Arc::new(Mutex::new(1));
        let other = Arc::clone(&mutex);
        let _ = std::thread::spawn(move || {
            let _guard = other.lock();
            panic!("while holding the lock");
        })
        .join();
        assert_eq!(*mutex.lock(), 1);
    }

    #[test]
    fn wait_until_times_out_and_keeps_the_guard() {
        let mutex = Mutex::new(5);
        let condvar = Condvar::new();
        let mut guard = mutex.lock();
        let start = Instant::now();
        let result = condvar.wait_until(&mut guard, start + Duration::from_millis(20));
        assert!(result.timed_out());
        assert!(start.elapsed() >= Duration::from_millis(20));
        *guard += 1;
        assert_eq!(*guard, 6);
    }

    #[test]
    fn a_notify_ends_a_wait() {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let other = Arc::clone(&pair);
        let waiter = std::thread::spawn(move || {
            let mut ready = other.0.lock();
            while !*ready {
                other.1.wait(&mut ready);
            }
        });
        *pair.0.lock() = true;
        pair.1.notify_all();
        waiter.join().unwrap();
    }
}
