//! Linux futex wait and wake on an `AtomicU32`, with a timeout: the sleeping under
//! conclab's own `Lock` word (in this process) and the process-shared condition variables
//! of the inter-process queue and shared values (in shared memory, across processes).
//!
//! Why the raw system call and not parking_lot's parking lot: parking_lot queues sleeping
//! threads in a table held in a `static`, and every notebook cell has its own statics
//! (ARCHITECTURE.md, "Every cell has its own statics"). A futex is keyed by the address of
//! the word itself, so every copy of the crate meets the same sleepers; std's `Mutex`,
//! `Condvar` and `thread::park` work across cells for the same reason. nix does not wrap
//! the futex, so this is `libc`.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Who may wait on and wake a futex word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Threads of this process only (`FUTEX_PRIVATE_FLAG`: the kernel keys the word by
    /// address alone, which is cheaper).
    // Under loom, `Lock` sleeps on loom's condition variable instead.
    #[cfg_attr(loom, allow(dead_code))]
    Process,
    /// Every process that maps the word's shared memory.
    Shared,
}

impl Scope {
    fn flag(self) -> libc::c_int {
        match self {
            Scope::Process => libc::FUTEX_PRIVATE_FLAG,
            Scope::Shared => 0,
        }
    }
}

/// Sleeps while `word` still holds `expected`, at most `timeout` (for ever with `None`).
///
/// Returns on a wake-up, at once when the word already differs, on a signal, when the time
/// is up, or spuriously: callers re-check their condition in a loop.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>, scope: Scope) {
    let limit = timeout.map(|left| libc::timespec {
        // A wait longer than `time_t` can count is a wait for ever in practice.
        tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(left.subsec_nanos()),
    });
    let limit_ptr = limit
        .as_ref()
        .map_or(std::ptr::null(), |spec| spec as *const libc::timespec);
    // SAFETY: `word` is a live, aligned `u32` for the whole call, and `limit_ptr` is null or
    // points at `limit`, which outlives the call. The result is ignored on purpose: EAGAIN,
    // EINTR and ETIMEDOUT all mean "look at the word again", which every caller does.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | scope.flag(),
            expected,
            limit_ptr,
        );
    }
}

/// Wakes at most `n` threads sleeping in [`wait`] on `word` (`i32::MAX`: all of them).
pub(crate) fn wake(word: &AtomicU32, n: i32, scope: Scope) {
    // SAFETY: `word` is a live, aligned `u32`; FUTEX_WAKE reads no other argument.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | scope.flag(),
            n,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_wait_on_a_changed_word_returns_at_once() {
        let word = AtomicU32::new(1);
        let start = Instant::now();
        wait(&word, 0, None, Scope::Process);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_wait_ends_when_its_time_is_up() {
        let word = AtomicU32::new(0);
        let start = Instant::now();
        wait(&word, 0, Some(Duration::from_millis(30)), Scope::Process);
        assert!(start.elapsed() >= Duration::from_millis(25));
    }

    #[test]
    fn a_wake_ends_a_wait() {
        let word = Arc::new(AtomicU32::new(0));
        let sleeper = {
            let word = Arc::clone(&word);
            std::thread::spawn(move || {
                while word.load(Ordering::Acquire) == 0 {
                    wait(&word, 0, None, Scope::Process);
                }
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        word.store(1, Ordering::Release);
        wake(&word, 1, Scope::Process);
        sleeper.join().unwrap();
    }
}
