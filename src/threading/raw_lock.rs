//! The word behind [`Lock`](super::Lock) and [`RLock`](super::RLock): who holds the lock,
//! in one atomic pointer.
//!
//! The word is null when the lock is free and otherwise points at the holder, an owner
//! value of any type `O` the caller names (the thread's node, for `Lock` and `RLock`), with
//! the low bit set when a thread may be asleep waiting for it. Keeping
//! the holder in the lock word itself gives deadlock detection an exact owner at no extra
//! cost: taking the lock is one compare-and-swap, releasing it one swap, and there is no
//! moment when a lock is held but its owner not yet written.
//!
//! Sleepers wait on a separate 32-bit wake-up counter with a futex (ARCHITECTURE.md, "Every
//! cell has its own statics", for why not parking_lot): a waiter reads the counter, sets the sleeper bit while the lock is
//! still held, and sleeps only if the counter has not moved; a release that finds the bit
//! bumps the counter and wakes one sleeper. The woken thread takes the lock with the bit
//! set again, since others may still sleep. The lock is not fair: a running thread may
//! take it before a woken one, which keeps a contended lock passing between cores rarely
//! (the two-thread bench in `benches/threads.rs`).
//!
//! Under loom the same interface is a loom `Mutex` holding the owner plus a `Condvar`.

use std::time::Instant;

#[cfg(not(loom))]
pub(crate) use futex_lock::RawLock;
#[cfg(loom)]
pub(crate) use loom_lock::RawLock;

/// Rounds of exponential spinning before a blocked acquire goes to sleep: about 2^14
/// `spin_loop` hints in all, well under a millisecond. Parking sooner made the two-thread
/// contended bench sleep and wake on almost every increment.
#[cfg(not(loom))]
const SPIN_ROUNDS: u32 = 14;

#[cfg(not(loom))]
mod futex_lock {
    use super::{Instant, SPIN_ROUNDS};
    use crate::os::futex::{self, Scope};
    use std::ptr;
    use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

    /// Set in the word when a thread may be asleep waiting for the lock.
    const SLEEPERS: usize = 1;

    /// A futex-based lock whose word names its holder, an `&'static O`.
    pub(crate) struct RawLock<O: 'static> {
        word: AtomicPtr<O>,
        wakes: AtomicU32,
    }

    fn holder<O>(word: *mut O) -> *mut O {
        word.map_addr(|addr| addr & !SLEEPERS)
    }

    fn me_word<O>(me: &'static O, sleepers: bool) -> *mut O {
        let me = ptr::from_ref(me).cast_mut();
        if sleepers {
            me.map_addr(|addr| addr | SLEEPERS)
        } else {
            me
        }
    }

    impl<O: 'static> RawLock<O> {
        pub(crate) fn new() -> Self {
            // The sleeper bit lives in the owner pointer's lowest bit.
            const { assert!(std::mem::align_of::<O>() >= 2) };
            Self {
                word: AtomicPtr::new(ptr::null_mut()),
                wakes: AtomicU32::new(0),
            }
        }

        /// Takes the lock if it is free right now.
        #[inline]
        pub(crate) fn try_lock(&self, me: &'static O) -> bool {
            self.word
                .compare_exchange(
                    ptr::null_mut(),
                    me_word(me, false),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
                || self.try_lock_keeping_sleepers(me)
        }

        /// Takes a free lock whose sleeper bit is set, keeping the bit.
        fn try_lock_keeping_sleepers(&self, me: &'static O) -> bool {
            let word = self.word.load(Ordering::Relaxed);
            word.addr() == SLEEPERS
                && self
                    .word
                    .compare_exchange(
                        word,
                        me_word(me, true),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
        }

        /// Spins a little, in case the holder is about to release; true if the lock was
        /// taken. Only reads the word between tries, so the holder keeps its cache line.
        pub(crate) fn spin(&self, me: &'static O) -> bool {
            for round in 0..SPIN_ROUNDS {
                for _ in 0..(1u32 << round) {
                    std::hint::spin_loop();
                }
                let word = self.word.load(Ordering::Relaxed);
                if holder(word).is_null()
                    && self
                        .word
                        .compare_exchange(
                            word,
                            me_word(me, word.addr() == SLEEPERS),
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    return true;
                }
            }
            false
        }

        /// Sleeps until the lock is taken (true) or `deadline` passes (false).
        pub(crate) fn lock_until(&self, me: &'static O, deadline: Instant) -> bool {
            // SeqCst on both sides of the sleeper bit: a waiter's read of `wakes` comes
            // before its read or write of the bit in the single total order, and a
            // release's swap comes before its bump of `wakes`. So a release that clears a
            // set bit bumps the counter after the waiter read it, and the waiter's futex
            // wait returns at once instead of sleeping through the wake-up.
            loop {
                let seen = self.wakes.load(Ordering::SeqCst);
                let word = self.word.load(Ordering::SeqCst);
                if holder(word).is_null() {
                    if self
                        .word
                        .compare_exchange(
                            word,
                            me_word(me, true),
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        )
                        .is_ok()
                    {
                        return true;
                    }
                    continue;
                }
                if word.addr() & SLEEPERS == 0
                    && self
                        .word
                        .compare_exchange(
                            word,
                            word.map_addr(|addr| addr | SLEEPERS),
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        )
                        .is_err()
                {
                    continue;
                }
                let now = Instant::now();
                if now >= deadline {
                    return false;
                }
                futex::wait(&self.wakes, seen, Some(deadline - now), Scope::Process);
            }
        }

        /// Releases the lock; only its holder calls this (the guards see to it).
        #[inline]
        pub(crate) fn unlock(&self) {
            let word = self.word.swap(ptr::null_mut(), Ordering::SeqCst);
            if word.addr() & SLEEPERS != 0 {
                self.wake_one();
            }
        }

        #[cold]
        fn wake_one(&self) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
            futex::wake(&self.wakes, 1, Scope::Process);
        }

        /// The holder, if any.
        #[inline]
        pub(crate) fn owner(&self) -> Option<&'static O> {
            let owner = holder(self.word.load(Ordering::SeqCst));
            // SAFETY: the word is only ever written with null or with `me_word` of a
            // `&'static O` (the sleeper bit cleared again by `holder`, and `O`'s alignment
            // of at least 2 keeps that bit out of the address), so a non-null holder points
            // at a live `O` that is never freed.
            unsafe { owner.as_ref() }
        }

        pub(crate) fn is_locked(&self) -> bool {
            self.owner().is_some()
        }
    }
}

#[cfg(loom)]
mod loom_lock {
    use super::Instant;
    use crate::sync::{Condvar, Mutex};

    /// The loom model of the lock: its holder under a loom mutex, sleepers on a condvar.
    pub(crate) struct RawLock<O: 'static> {
        holder: Mutex<Option<&'static O>>,
        freed: Condvar,
    }

    impl<O: 'static> RawLock<O> {
        pub(crate) fn new() -> Self {
            Self {
                holder: Mutex::new(None),
                freed: Condvar::new(),
            }
        }
        pub(crate) fn try_lock(&self, me: &'static O) -> bool {
            let mut holder = self.holder.lock();
            if holder.is_some() {
                return false;
            }
            *holder = Some(me);
            true
        }
        pub(crate) fn spin(&self, me: &'static O) -> bool {
            self.try_lock(me)
        }
        pub(crate) fn lock_until(&self, me: &'static O, deadline: Instant) -> bool {
            let mut holder = self.holder.lock();
            while holder.is_some() {
                if self.freed.wait_until(&mut holder, deadline).timed_out() {
                    return false;
                }
            }
            *holder = Some(me);
            true
        }
        pub(crate) fn unlock(&self) {
            *self.holder.lock() = None;
            self.freed.notify_one();
        }
        pub(crate) fn owner(&self) -> Option<&'static O> {
            *self.holder.lock()
        }
        pub(crate) fn is_locked(&self) -> bool {
            self.owner().is_some()
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::graph::{current_node, ThreadNode};
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn the_word_names_its_holder() {
        let lock = RawLock::<ThreadNode>::new();
        let me = current_node();
        assert!(lock.owner().is_none());
        assert!(lock.try_lock(me));
        assert!(std::ptr::eq(lock.owner().unwrap(), me));
        assert!(!lock.try_lock(me));
        lock.unlock();
        assert!(!lock.is_locked());
    }

    #[test]
    fn a_sleeper_is_woken_by_the_release_and_then_holds_the_lock() {
        let lock = Arc::new(RawLock::<ThreadNode>::new());
        assert!(lock.try_lock(current_node()));
        let waiter = {
            let lock = Arc::clone(&lock);
            std::thread::spawn(move || {
                let me = current_node();
                let got = lock.lock_until(me, Instant::now() + Duration::from_secs(30));
                let mine = lock.owner().is_some_and(|owner| std::ptr::eq(owner, me));
                lock.unlock();
                (got, mine)
            })
        };
        // Give the waiter time to set the sleeper bit and sleep.
        std::thread::sleep(Duration::from_millis(50));
        lock.unlock();
        assert_eq!(waiter.join().unwrap(), (true, true));
        assert!(!lock.is_locked());
    }

    #[test]
    fn a_timed_wait_gives_up_and_leaves_the_holder_alone() {
        let lock = RawLock::<ThreadNode>::new();
        let me = current_node();
        assert!(lock.try_lock(me));
        let other = std::thread::scope(|s| {
            s.spawn(|| lock.lock_until(current_node(), Instant::now() + Duration::from_millis(20)))
                .join()
                .unwrap()
        });
        assert!(!other);
        assert!(std::ptr::eq(lock.owner().unwrap(), me));
        // The sleeper bit the waiter left behind costs one spare wake-up, nothing else.
        lock.unlock();
        assert!(lock.try_lock(me));
        lock.unlock();
    }

    #[test]
    fn many_threads_many_sleeps_no_lost_wake_up() {
        let lock = Arc::new(RawLock::<ThreadNode>::new());
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (lock, count) = (Arc::clone(&lock), Arc::clone(&count));
                std::thread::spawn(move || {
                    let me = current_node();
                    for _ in 0..2_000 {
                        if !lock.try_lock(me) && !lock.spin(me) {
                            assert!(lock.lock_until(me, Instant::now() + Duration::from_secs(60)));
                        }
                        // A non-atomic read-modify-write: lost updates mean broken exclusion.
                        let v = count.load(std::sync::atomic::Ordering::Relaxed);
                        std::hint::spin_loop();
                        count.store(v + 1, std::sync::atomic::Ordering::Relaxed);
                        lock.unlock();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 16_000);
        assert!(!lock.is_locked());
    }
}
