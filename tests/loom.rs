//! loom model checks of the primitives conclab implements itself.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --test loom --release` (and the
//! `Future`/`Promise` models with `RUSTFLAGS="--cfg loom" cargo test --lib --release loom`).
//! Under `--cfg loom` the primitives are built on loom's `Mutex`, `Condvar`, atomics and
//! `Arc` (see `src/sync.rs`), so loom explores every interleaving of their
//! internals. loom does not model time: timed waits there behave like untimed ones, so the
//! deadlock model checks that the first walk of the wait-for graph always finds a cycle,
//! without the periodic re-check that backs it up in real runs.
//!
//! Not modelled: `Thread`/`JoinHandle` and `ThreadPoolExecutor` (thin layers over
//! `std::thread` and crossbeam-channel, which loom cannot see into), the GIL (built on
//! time slices), and the futex word behind `Lock` in real builds (loom checks the same
//! `Lock` logic over a loom mutex instead; `raw_lock.rs` has the futex word's own tests).
#![cfg(loom)]

use conclab::queue::Queue;
use conclab::threading::{Barrier, Condition, Event, Lock, RLock, Semaphore, ThreadingError};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// A read and a separate write inside the lock: any interleaving where two threads are
/// inside at once loses an update, which the final assertion catches.
#[test]
fn lock_excludes() {
    model(|| {
        let lock = Arc::new(Lock::named("l", ()));
        let count = Arc::new(AtomicUsize::new(0));
        let other = {
            let (lock, count) = (Arc::clone(&lock), Arc::clone(&count));
            thread::spawn(move || {
                let _g = lock.acquire().unwrap();
                let v = count.load(Ordering::Relaxed);
                count.store(v + 1, Ordering::Relaxed);
            })
        };
        {
            let _g = lock.acquire().unwrap();
            let v = count.load(Ordering::Relaxed);
            count.store(v + 1, Ordering::Relaxed);
        }
        other.join().unwrap();
        assert_eq!(count.load(Ordering::Relaxed), 2);
    });
}

/// Opposite lock orders: in every interleaving the program ends (loom fails a model in
/// which all threads block), and whatever error comes back is a deadlock report.
#[test]
fn opposite_orders_never_hang() {
    model(|| {
        let a = Arc::new(Lock::named("a", ()));
        let b = Arc::new(Lock::named("b", ()));
        let other = {
            let (a, b) = (Arc::clone(&a), Arc::clone(&b));
            thread::spawn(move || {
                let _gb = b.acquire().unwrap();
                a.acquire().map(|_| ())
            })
        };
        let mine = {
            let _ga = a.acquire().unwrap();
            b.acquire().map(|_| ())
        };
        let theirs = other.join().unwrap();
        for result in [mine, theirs] {
            if let Err(error) = result {
                assert!(matches!(error, ThreadingError::Deadlock(_)), "{error}");
            }
        }
    });
}

/// The same order everywhere: never reported as a deadlock.
#[test]
fn same_order_is_never_a_deadlock() {
    model(|| {
        let a = Arc::new(Lock::named("a", ()));
        let b = Arc::new(Lock::named("b", ()));
        let other = {
            let (a, b) = (Arc::clone(&a), Arc::clone(&b));
            thread::spawn(move || {
                let _ga = a.acquire().unwrap();
                let _gb = b.acquire().unwrap();
            })
        };
        {
            let _ga = a.acquire().unwrap();
            let _gb = b.acquire().unwrap();
        }
        other.join().unwrap();
    });
}

#[test]
fn rlock_reenters_and_excludes() {
    model(|| {
        let lock = Arc::new(RLock::named("r", ()));
        let count = Arc::new(AtomicUsize::new(0));
        let other = {
            let (lock, count) = (Arc::clone(&lock), Arc::clone(&count));
            thread::spawn(move || {
                let _g = lock.acquire().unwrap();
                let v = count.load(Ordering::Relaxed);
                count.store(v + 1, Ordering::Relaxed);
            })
        };
        {
            let _outer = lock.acquire().unwrap();
            let _inner = lock.acquire().unwrap();
            let v = count.load(Ordering::Relaxed);
            count.store(v + 1, Ordering::Relaxed);
        }
        other.join().unwrap();
        assert_eq!(count.load(Ordering::Relaxed), 2);
    });
}

/// A notify sent right after the waiter released the lock is never lost.
#[test]
fn condition_wait_for_sees_the_notify() {
    model(|| {
        let cond = Arc::new(Condition::named("c", false));
        let waiter = {
            let cond = Arc::clone(&cond);
            thread::spawn(move || {
                let guard = cond.acquire().unwrap();
                let guard = guard.wait_for(|ready| *ready).unwrap();
                assert!(*guard);
            })
        };
        {
            let mut guard = cond.acquire().unwrap();
            *guard = true;
            guard.notify(1);
        }
        waiter.join().unwrap();
    });
}

#[test]
fn semaphore_of_one_excludes() {
    model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let count = Arc::new(AtomicUsize::new(0));
        let other = {
            let (sem, count) = (Arc::clone(&sem), Arc::clone(&count));
            thread::spawn(move || {
                let _p = sem.acquire();
                let v = count.load(Ordering::Relaxed);
                count.store(v + 1, Ordering::Relaxed);
            })
        };
        {
            let _p = sem.acquire();
            let v = count.load(Ordering::Relaxed);
            count.store(v + 1, Ordering::Relaxed);
        }
        other.join().unwrap();
        assert_eq!(count.load(Ordering::Relaxed), 2);
        assert_eq!(sem.value(), 1);
    });
}

#[test]
fn event_set_wakes_waiter() {
    model(|| {
        let event = Arc::new(Event::new());
        let waiter = {
            let event = Arc::clone(&event);
            thread::spawn(move || assert!(event.wait()))
        };
        event.set();
        waiter.join().unwrap();
    });
}

#[test]
fn barrier_releases_both_with_distinct_indices() {
    model(|| {
        let barrier = Arc::new(Barrier::new(2));
        let other = {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || barrier.wait().unwrap())
        };
        let mine = barrier.wait().unwrap();
        let theirs = other.join().unwrap();
        assert_eq!(mine + theirs, 1);
    });
}

#[test]
fn bounded_queue_hands_over_in_order() {
    model(|| {
        let q = Arc::new(Queue::with_maxsize(1));
        let producer = {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                q.put(1).unwrap();
                q.put(2).unwrap();
            })
        };
        assert_eq!(q.get(), Ok(1));
        assert_eq!(q.get(), Ok(2));
        producer.join().unwrap();
    });
}
