//! The lecture's race condition, made visible without undefined behaviour.
//!
//! Python's `counter += 1` is a read, an add and a write; two threads interleaving them
//! lose updates. Rust does not compile that program with a plain integer, so
//! [`RacyCounter`] does the same three steps with *separate* atomic operations: every access
//! is well defined, but the read-modify-write as a whole is not atomic, so updates are
//! really lost. [`LockedCounter`] is the fix with a [`Lock`].

use super::lock::Lock;
use crate::explore::sched::{self, Obj};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter whose [`increment`](RacyCounter::increment) is a separate load and store, so
/// two threads incrementing it at once lose updates: the lecture's race condition.
///
/// Between the load and the store it spins briefly, which widens the window the way a
/// longer Python statement would, so the loss shows up reliably on two cores. How many
/// updates are lost changes from run to run; it is never more than the true count.
///
/// ```
/// use conclab::threading::{RacyCounter, Thread};
/// use std::sync::Arc;
///
/// let counter = Arc::new(RacyCounter::new());
/// let handles: Vec<_> = (0..2).map(|_| {
///     let counter = Arc::clone(&counter);
///     Thread::new(move || for _ in 0..100_000 { counter.increment() }).start().unwrap()
/// }).collect();
/// for h in handles { h.join().unwrap(); }
/// let total = counter.get();
/// assert!(total <= 200_000);
/// println!("expected 200000, got {total} ({} updates lost)", 200_000 - total);
/// ```
#[derive(Default)]
pub struct RacyCounter {
    value: AtomicU64,
}

impl RacyCounter {
    /// A counter at zero.
    ///
    /// ```
    /// assert_eq!(conclab::threading::RacyCounter::new().get(), 0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the value, then writes it back plus one, as two separate steps.
    ///
    /// ```
    /// let c = conclab::threading::RacyCounter::new();
    /// c.increment();
    /// assert_eq!(c.get(), 1); // alone, it is right
    /// ```
    ///
    /// Inside [`explore`](crate::explore) the read and the write are two switch points,
    /// and a write that overwrites a write made since the read is reported as a lost
    /// update.
    #[inline(never)]
    pub fn increment(&self) {
        if sched::active() {
            return self.increment_explored();
        }
        let read = self.value.load(Ordering::Relaxed);
        // The gap between reading and writing, where another thread's update gets lost.
        for _ in 0..16 {
            std::hint::spin_loop();
        }
        self.value.store(read + 1, Ordering::Relaxed);
    }

    #[cold]
    fn increment_explored(&self) {
        let obj = Obj::new(self, "counter", None);
        sched::point("read", &obj);
        let read = self.value.load(Ordering::Relaxed);
        sched::step("read", &obj, Some(read.to_string()));
        sched::point("write", &obj);
        let found = self.value.load(Ordering::Relaxed);
        self.value.store(read + 1, Ordering::Relaxed);
        if found == read {
            sched::step("write", &obj, Some((read + 1).to_string()));
        } else {
            sched::step(
                "write",
                &obj,
                Some(format!("{} (lost update: it was {found})", read + 1)),
            );
            sched::lost_update(&obj, read, found);
        }
    }

    /// The current value (a racing read too, inside [`explore`](crate::explore)).
    ///
    /// ```
    /// assert_eq!(conclab::threading::RacyCounter::new().get(), 0);
    /// ```
    pub fn get(&self) -> u64 {
        if sched::active() {
            let obj = Obj::new(self, "counter", None);
            sched::point("read", &obj);
            let value = self.value.load(Ordering::Relaxed);
            sched::step("read", &obj, Some(value.to_string()));
            return value;
        }
        self.value.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for RacyCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RacyCounter")
            .field("value", &self.value.load(Ordering::Relaxed))
            .finish()
    }
}

/// The same counter with its increment inside a [`Lock`]: always exact.
///
/// ```
/// use conclab::threading::{LockedCounter, Thread};
/// use std::sync::Arc;
///
/// let counter = Arc::new(LockedCounter::new());
/// let handles: Vec<_> = (0..2).map(|_| {
///     let counter = Arc::clone(&counter);
///     Thread::new(move || for _ in 0..100_000 { counter.increment() }).start().unwrap()
/// }).collect();
/// for h in handles { h.join().unwrap(); }
/// assert_eq!(counter.get(), 200_000);
/// ```
pub struct LockedCounter {
    value: Lock<u64>,
}

impl LockedCounter {
    /// A counter at zero.
    ///
    /// ```
    /// assert_eq!(conclab::threading::LockedCounter::new().get(), 0);
    /// ```
    pub fn new() -> Self {
        Self {
            value: Lock::named("LockedCounter", 0),
        }
    }

    /// Adds one while holding the lock.
    ///
    /// ```
    /// let c = conclab::threading::LockedCounter::new();
    /// c.increment();
    /// assert_eq!(c.get(), 1);
    /// ```
    pub fn increment(&self) {
        *self.guard() += 1;
    }

    /// The current value.
    ///
    /// ```
    /// assert_eq!(conclab::threading::LockedCounter::new().get(), 0);
    /// ```
    pub fn get(&self) -> u64 {
        *self.guard()
    }

    fn guard(&self) -> super::LockGuard<'_, u64> {
        // The lock is private and never held while other code runs, so no cycle can
        // include it and the acquire cannot report a deadlock.
        match self.value.acquire() {
            Ok(guard) => guard,
            Err(error) => unreachable!("LockedCounter's private lock: {error}"),
        }
    }
}

impl Default for LockedCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LockedCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedCounter")
            .field("value", &self.get())
            .finish()
    }
}
