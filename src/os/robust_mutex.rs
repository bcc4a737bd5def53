//! A robust, process-shared pthread mutex, initialised in place in shared memory.
//!
//! Robust (`PTHREAD_MUTEX_ROBUST`): if a process dies holding it, the next locker gets it
//! back (`EOWNERDEAD`, then `pthread_mutex_consistent`) instead of hanging. nix has no
//! wrapper for pthread mutexes, so this is `libc`.

use std::cell::UnsafeCell;
use std::io;

/// The mutex; lives inside a [`Region`](super::shm::Region), never on the stack.
#[repr(C)]
pub(crate) struct RobustMutex {
    inner: UnsafeCell<libc::pthread_mutex_t>,
}

impl RobustMutex {
    /// Initialises the mutex at `this`.
    ///
    /// # Safety
    /// `this` points to writable, suitably aligned memory for a `RobustMutex` that no
    /// process uses yet, in a shared mapping that outlives every use of the mutex.
    pub(crate) unsafe fn init(this: *mut RobustMutex) -> io::Result<()> {
        // SAFETY: `attr` is initialised by pthread_mutexattr_init before any other use
        // and destroyed after the last; `this` is valid per the caller's contract, and
        // nobody else can lock it during initialisation.
        let r = unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            let r = libc::pthread_mutex_init((*this).inner.get(), &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
            r
        };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(())
    }

    /// Locks; recovers the lock if its previous owner died while holding it.
    pub(crate) fn lock(&self) {
        // SAFETY: `self` was initialised by `init` (the only way to get a reference to a
        // live one is through the structure that called it) and stays mapped while
        // borrowed.
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
        // SAFETY: initialised as for `lock`; unlocking a robust mutex this thread does not
        // hold fails with EPERM instead of corrupting it.
        unsafe { libc::pthread_mutex_unlock(self.inner.get()) };
    }
}
