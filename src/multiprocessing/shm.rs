//! Raw shared memory: a `MAP_SHARED` anonymous mapping made before the fork, a robust
//! process-shared pthread mutex and a futex condition variable living inside it.
//!
//! The mutex is robust (`PTHREAD_MUTEX_ROBUST`): if a process dies holding it, the next
//! locker gets it back (`EOWNERDEAD`, then `pthread_mutex_consistent`) instead of hanging.
//! The condition variable is a futex on a sequence number rather than a pthread condvar,
//! because glibc's condvar can lose a wake-up to a waiter that was killed while waiting.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::MpError;
use crate::futex::{self, Scope};

/// An anonymous `MAP_SHARED` mapping: forked children share it with the parent.
pub(crate) struct Region {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory; every user synchronises through the locks in it.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// A zeroed shared mapping of at least `len` bytes.
    pub(crate) fn new(len: usize) -> Result<Region, MpError> {
        let len = len.max(1);
        // SAFETY: a fresh anonymous mapping; checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(MpError::os("map shared memory"));
        }
        Ok(Region {
            ptr: ptr.cast(),
            len,
        })
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: we own this mapping.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A robust, process-shared pthread mutex, initialised in place in shared memory.
#[repr(C)]
pub(crate) struct RawLock {
    inner: UnsafeCell<libc::pthread_mutex_t>,
}

impl RawLock {
    /// Initialises the mutex at `this` (which must be zeroed shared memory).
    ///
    /// # Safety
    /// `this` points to writable memory for a `RawLock` that nobody uses yet.
    pub(crate) unsafe fn init(this: *mut RawLock) -> Result<(), MpError> {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        libc::pthread_mutexattr_init(&mut attr);
        libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
        let r = libc::pthread_mutex_init((*this).inner.get(), &attr);
        libc::pthread_mutexattr_destroy(&mut attr);
        if r != 0 {
            return Err(MpError::Os {
                what: "initialise a process-shared mutex",
                message: std::io::Error::from_raw_os_error(r).to_string(),
            });
        }
        Ok(())
    }

    /// Locks; recovers the lock if its previous owner died while holding it.
    pub(crate) fn lock(&self) {
        // SAFETY: the mutex was initialised by `init` and lives as long as `self`.
        unsafe {
            let r = libc::pthread_mutex_lock(self.inner.get());
            if r == libc::EOWNERDEAD {
                // The holder died mid-update; the data it guarded is plain data, so we
                // declare the lock usable again rather than failing every later caller.
                libc::pthread_mutex_consistent(self.inner.get());
            }
        }
    }

    /// Unlocks. Only the holder may call this.
    pub(crate) fn unlock(&self) {
        // SAFETY: called by the holder, after `lock`.
        unsafe { libc::pthread_mutex_unlock(self.inner.get()) };
    }
}

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
