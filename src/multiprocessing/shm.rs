//! What the process side keeps in shared memory: a `MAP_SHARED` mapping made before the
//! fork ([`Region`]), a robust process-shared mutex ([`RawLock`]), both from `crate::os`,
//! and a futex condition variable living beside them.
//!
//! The condition variable is a futex on a sequence number rather than a pthread condvar,
//! because glibc's condvar can lose a wake-up to a waiter that was killed while waiting.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crate::os::futex::{self, Scope};
pub(crate) use crate::os::robust_mutex::RobustMutex as RawLock;
pub(crate) use crate::os::shm::Region;

/// A condition variable for a [`RawLock`], made of a futex sequence number.
#[repr(C)]
pub(crate) struct RawCond {
    seq: AtomicU32,
    waiters: AtomicU32,
}

impl RawCond {
    /// Waits until notified or until `deadline`; the caller holds `lock` and holds it again
    /// on return. Spurious wake-ups happen: callers re-check their condition in a loop.
    pub(crate) fn wait(&self, lock: &RawLock, deadline: Option<Instant>) {
        let seq = self.seq.load(Ordering::Acquire);
        self.waiters.fetch_add(1, Ordering::Relaxed);
        lock.unlock();
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        // Returns at once if the sequence moved since we read it, so no notification
        // between the unlock and the sleep is lost.
        futex::wait(&self.seq, seq, timeout, Scope::Shared);
        lock.lock();
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// Wakes one waiter (call with the lock held).
    pub(crate) fn notify_one(&self) {
        self.wake(1);
    }

    /// Wakes every waiter (call with the lock held).
    pub(crate) fn notify_all(&self) {
        self.wake(i32::MAX);
    }

    fn wake(&self, n: i32) {
        self.seq.fetch_add(1, Ordering::Release);
        if self.waiters.load(Ordering::Relaxed) == 0 {
            return;
        }
        futex::wake(&self.seq, n, Scope::Shared);
    }
}

/// A zeroed shared mapping of at least `len` bytes.
pub(crate) fn map(len: usize) -> Result<Region, super::MpError> {
    Region::new(len).map_err(|e| super::MpError::io("map shared memory", &e))
}

/// Initialises the robust mutex at `this`.
///
/// # Safety
/// As [`RawLock::init`]: writable, aligned memory in a shared mapping nobody uses yet.
pub(crate) unsafe fn init_lock(this: *mut RawLock) -> Result<(), super::MpError> {
    // SAFETY: the caller's contract is RawLock::init's.
    unsafe { RawLock::init(this) }
        .map_err(|e| super::MpError::io("initialise a process-shared mutex", &e))
}
