//! Threads, locks and the other primitives of `conclab::threading`, with real threads.
//!
//! Timeouts here are hang guards only: no test depends on how fast the machine is.

use conclab::threading::*;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const GUARD: Duration = Duration::from_secs(30);

#[test]
fn thread_returns_value_and_has_name() {
    let handle = Thread::new(|| current_thread().name)
        .name("Worker-1")
        .start()
        .unwrap();
    assert_eq!(handle.name(), "Worker-1");
    assert_eq!(handle.join().unwrap(), "Worker-1");
}

#[test]
fn unnamed_thread_gets_python_like_name() {
    let handle = Thread::new(current_thread).start().unwrap();
    let expected = format!("Thread-{}", handle.ident());
    let inside = handle.join().unwrap();
    assert_eq!(inside.name, expected);
}

#[test]
fn panic_comes_back_as_error_with_message() {
    let handle = Thread::new(|| -> () { panic!("worker failed: {}", 3) })
        .name("failing")
        .start()
        .unwrap();
    assert_eq!(
        handle.join(),
        Err(ThreadingError::Panicked {
            thread: "failing".into(),
            message: "worker failed: 3".into()
        })
    );
}

#[test]
fn join_timeout_and_is_alive() {
    let gate = Arc::new(Event::new());
    let g = Arc::clone(&gate);
    let handle = Thread::new(move || g.wait()).start().unwrap();
    assert!(handle.is_alive());
    assert!(!handle.join_timeout(Duration::from_millis(10)));
    gate.set();
    assert!(handle.join_timeout(GUARD));
    assert!(!handle.is_alive());
    assert!(handle.join().unwrap());
}

#[test]
fn dropping_a_handle_joins_the_thread() {
    let finished = Arc::new(AtomicUsize::new(0));
    {
        let f = Arc::clone(&finished);
        let _handle = Thread::new(move || {
            std::thread::sleep(Duration::from_millis(20));
            f.store(1, Ordering::SeqCst);
        })
        .start()
        .unwrap();
    }
    assert_eq!(finished.load(Ordering::SeqCst), 1);
}

#[test]
fn daemon_handle_does_not_wait() {
    let gate = Arc::new(Event::new());
    let g = Arc::clone(&gate);
    let handle = Thread::new(move || g.wait_timeout(GUARD))
        .daemon(true)
        .start()
        .unwrap();
    drop(handle); // must return although the thread still waits
    gate.set();
}

#[test]
fn runnable_subclass_keeps_its_state() {
    struct Summer {
        upto: u64,
        total: u64,
    }
    impl Runnable for Summer {
        fn run(&mut self) {
            self.total = (1..=self.upto).sum();
        }
        fn thread_name(&self) -> Option<String> {
            Some("summer".into())
        }
    }
    let handle = Summer {
        upto: 100,
        total: 0,
    }
    .start()
    .unwrap();
    assert_eq!(handle.name(), "summer");
    assert_eq!(handle.join().unwrap().total, 5050);
}

#[test]
fn thread_local_values_are_per_thread() {
    let local = Arc::new(ThreadLocal::new(|| 0usize));
    let handles: Vec<_> = (1..=4)
        .map(|n| {
            let local = Arc::clone(&local);
            Thread::new(move || {
                for _ in 0..n * 100 {
                    local.with(|v| *v += 1);
                }
                local.get()
            })
            .name(format!("t{n}"))
            .start()
            .unwrap()
        })
        .collect();
    let got: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(got, vec![100, 200, 300, 400]);
    let names: Vec<String> = local.snapshot().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["t1", "t2", "t3", "t4"]);
}

#[test]
fn lock_stress_many_threads_exact_count() {
    let counter = Arc::new(Lock::new(0u64));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let counter = Arc::clone(&counter);
            Thread::new(move || {
                for _ in 0..20_000 {
                    *counter.acquire().unwrap() += 1;
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(*counter.acquire().unwrap(), 160_000);
}

#[test]
fn lock_try_and_timeout() {
    let lock = Arc::new(Lock::named("shared", ()));
    let held = lock.acquire().unwrap();
    assert!(lock.locked());
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(lock.try_acquire().is_none());
            assert_eq!(
                lock.acquire_timeout(Duration::from_millis(10)).err(),
                Some(ThreadingError::Timeout(Duration::from_millis(10)))
            );
        });
    });
    drop(held);
    assert!(lock.acquire_timeout(GUARD).is_ok());
}

#[test]
fn lock_blocks_until_released() {
    let lock = Arc::new(Lock::new(Vec::new()));
    let mut guard = lock.acquire().unwrap();
    let l2 = Arc::clone(&lock);
    let waiter = Thread::new(move || {
        l2.acquire().unwrap().push("second");
    })
    .start()
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    guard.push("first");
    drop(guard);
    waiter.join().unwrap();
    assert_eq!(*lock.acquire().unwrap(), vec!["first", "second"]);
}

#[test]
fn panic_while_holding_releases_the_lock() {
    let lock = Arc::new(Lock::new(1));
    let l2 = Arc::clone(&lock);
    let result = Thread::new(move || {
        let _guard = l2.acquire().unwrap();
        panic!("oops");
    })
    .start()
    .unwrap()
    .join();
    assert!(result.is_err());
    assert_eq!(*lock.acquire_timeout(GUARD).unwrap(), 1);
}

#[test]
fn self_deadlock_is_reported() {
    let lock = Lock::named("once", ());
    let _held = lock.acquire().unwrap();
    match lock.acquire() {
        Err(ThreadingError::Deadlock(cycle)) => {
            assert_eq!(cycle.len(), 1);
            assert_eq!(cycle[0].waits_for, "once");
        }
        other => panic!("expected a deadlock, got {:?}", other.map(|_| ())),
    };
}

/// Two threads take two named locks in opposite orders (the classic mistake); a barrier
/// makes sure both hold their first lock before asking for the second.
#[test]
fn two_thread_deadlock_is_reported_with_names() {
    for _ in 0..20 {
        let a = Arc::new(Lock::named("fork 1", ()));
        let b = Arc::new(Lock::named("fork 2", ()));
        let both_hold = Arc::new(Barrier::new(2));
        let spawn = |name: &str, first: Arc<Lock>, second: Arc<Lock>| {
            let both_hold = Arc::clone(&both_hold);
            Thread::new(move || {
                let _first = first.acquire().unwrap();
                both_hold.wait().unwrap();
                second.acquire().map(|_| ())
            })
            .name(name)
            .start()
            .unwrap()
        };
        let p1 = spawn("philosopher 1", Arc::clone(&a), Arc::clone(&b));
        let p2 = spawn("philosopher 2", Arc::clone(&b), Arc::clone(&a));
        let results = [p1.join().unwrap(), p2.join().unwrap()];
        let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(!errors.is_empty(), "a deadlock must be reported");
        let text = errors[0].to_string();
        for word in ["philosopher 1", "philosopher 2", "fork 1", "fork 2"] {
            assert!(text.contains(word), "{text} should name {word}");
        }
    }
}

#[test]
fn three_thread_cycle_is_reported() {
    let locks: Vec<Arc<Lock>> = (0..3)
        .map(|i| Arc::new(Lock::named(format!("L{i}"), ())))
        .collect();
    let all_hold = Arc::new(Barrier::new(3));
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let first = Arc::clone(&locks[i]);
            let second = Arc::clone(&locks[(i + 1) % 3]);
            let all_hold = Arc::clone(&all_hold);
            Thread::new(move || {
                let _first = first.acquire().unwrap();
                all_hold.wait().unwrap();
                second.acquire().map(|_| ())
            })
            .name(format!("T{i}"))
            .start()
            .unwrap()
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let cycle = results
        .iter()
        .find_map(|r| match r {
            Err(ThreadingError::Deadlock(cycle)) => Some(cycle.clone()),
            _ => None,
        })
        .expect("a deadlock must be reported");
    assert_eq!(cycle.len(), 3);
}

#[test]
fn consistent_lock_order_never_reports_deadlock() {
    let a = Arc::new(Lock::named("a", 0u64));
    let b = Arc::new(Lock::named("b", 0u64));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (a, b) = (Arc::clone(&a), Arc::clone(&b));
            Thread::new(move || {
                for _ in 0..5_000 {
                    let mut ga = a.acquire().unwrap();
                    let mut gb = b.acquire().unwrap();
                    *ga += 1;
                    *gb += 1;
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*a.acquire().unwrap(), 20_000);
}

#[test]
fn rlock_reentry_and_exclusion() {
    let lock = Arc::new(RLock::new(Cell::new(0u32)));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let lock = Arc::clone(&lock);
            Thread::new(move || {
                for _ in 0..2_000 {
                    let outer = lock.acquire().unwrap();
                    let inner = lock.acquire().unwrap();
                    inner.set(inner.get() + 1);
                    drop(inner);
                    outer.set(outer.get() + 1);
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(lock.acquire().unwrap().get(), 16_000);
    assert!(!lock.locked());
}

#[test]
fn semaphore_limits_concurrency() {
    let sem = Arc::new(Semaphore::new(3));
    let inside = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let (sem, inside, max_seen) =
                (Arc::clone(&sem), Arc::clone(&inside), Arc::clone(&max_seen));
            Thread::new(move || {
                for _ in 0..50 {
                    let _permit = sem.acquire();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max_seen.fetch_max(now, Ordering::SeqCst);
                    std::thread::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(max_seen.load(Ordering::SeqCst) <= 3);
    assert_eq!(sem.value(), 3);
}

#[test]
fn semaphore_signals_between_threads() {
    let sem = Arc::new(Semaphore::new(0));
    let s2 = Arc::clone(&sem);
    let consumer = Thread::new(move || {
        for _ in 0..100 {
            s2.acquire().forget();
        }
    })
    .start()
    .unwrap();
    for _ in 0..100 {
        sem.release(1);
    }
    consumer.join().unwrap();
    assert_eq!(sem.value(), 0);
}

#[test]
fn bounded_semaphore_rejects_over_release() {
    let sem = BoundedSemaphore::new(2);
    assert_eq!(
        sem.release(1),
        Err(ThreadingError::OverReleased { bound: 2 })
    );
    sem.acquire().forget();
    assert_eq!(sem.release(1), Ok(()));
    assert_eq!(sem.value(), 2);
    assert!(sem.acquire_timeout(GUARD).is_ok());
}

#[test]
fn condition_producer_consumer() {
    let cond = Arc::new(Condition::named("buffer", Vec::<u32>::new()));
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let cond = Arc::clone(&cond);
            Thread::new(move || {
                let mut got = 0;
                loop {
                    let guard = cond.acquire().unwrap();
                    let mut guard = guard.wait_for(|items| !items.is_empty()).unwrap();
                    let item = guard.remove(0);
                    if item == u32::MAX {
                        guard.push(u32::MAX); // leave the stop marker for the others
                        guard.notify_all();
                        return got;
                    }
                    got += 1;
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    for i in 0..300 {
        let mut guard = cond.acquire().unwrap();
        guard.push(i);
        guard.notify(1);
    }
    {
        let mut guard = cond.acquire().unwrap();
        guard.push(u32::MAX);
        guard.notify_all();
    }
    let total: u32 = consumers.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 300);
}

#[test]
fn condition_timeouts() {
    let cond = Condition::new(0);
    let guard = cond.acquire().unwrap();
    let (guard, notified) = guard.wait_timeout(Duration::from_millis(5)).unwrap();
    assert!(!notified);
    let (guard, ok) = guard
        .wait_for_timeout(|n| *n == 1, Duration::from_millis(5))
        .unwrap();
    assert!(!ok);
    assert_eq!(*guard, 0);
    assert_eq!(cond.waiting(), 0);
}

#[test]
fn event_wakes_all_waiters() {
    let event = Arc::new(Event::new());
    let handles: Vec<_> = (0..5)
        .map(|_| {
            let event = Arc::clone(&event);
            Thread::new(move || event.wait_timeout(GUARD))
                .start()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(10));
    event.set();
    for h in handles {
        assert!(h.join().unwrap());
    }
    event.clear();
    assert!(!event.wait_timeout(Duration::from_millis(5)));
}

#[test]
fn barrier_generations_and_indices() {
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            Thread::new(move || {
                let mut indices = Vec::new();
                for _ in 0..50 {
                    indices.push(barrier.wait().unwrap());
                }
                indices
            })
            .start()
            .unwrap()
        })
        .collect();
    let all: Vec<Vec<usize>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for round in 0..50 {
        let mut seen: Vec<usize> = all.iter().map(|v| v[round]).collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3]);
    }
}

#[test]
fn barrier_abort_and_reset() {
    let barrier = Arc::new(Barrier::new(3));
    let b2 = Arc::clone(&barrier);
    let waiter = Thread::new(move || b2.wait()).start().unwrap();
    while barrier.n_waiting() == 0 {
        std::thread::yield_now();
    }
    barrier.abort();
    assert_eq!(waiter.join().unwrap(), Err(ThreadingError::BrokenBarrier));
    assert!(barrier.broken());
    assert_eq!(barrier.wait(), Err(ThreadingError::BrokenBarrier));
    barrier.reset();
    assert!(!barrier.broken());

    let b3 = Arc::clone(&barrier);
    let waiter = Thread::new(move || b3.wait()).start().unwrap();
    while barrier.n_waiting() == 0 {
        std::thread::yield_now();
    }
    barrier.reset(); // waiting threads get BrokenBarrier, the barrier stays usable
    assert_eq!(waiter.join().unwrap(), Err(ThreadingError::BrokenBarrier));
    assert!(!barrier.broken());
}

#[test]
fn racy_counter_never_exceeds_and_locked_is_exact() {
    let racy = Arc::new(RacyCounter::new());
    let locked = Arc::new(LockedCounter::new());
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (racy, locked) = (Arc::clone(&racy), Arc::clone(&locked));
            Thread::new(move || {
                for _ in 0..100_000 {
                    racy.increment();
                    locked.increment();
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(racy.get() <= 200_000);
    assert_eq!(locked.get(), 200_000);
}

#[test]
fn error_messages_say_what_to_do() {
    let deadlock = ThreadingError::Deadlock(vec![
        DeadlockEdge {
            thread: "A".into(),
            waits_for: "x".into(),
            held_by: "B".into(),
        },
        DeadlockEdge {
            thread: "B".into(),
            waits_for: "y".into(),
            held_by: "A".into(),
        },
    ]);
    let text = deadlock.to_string();
    assert!(text.starts_with("deadlock: thread 'A' waits for lock 'x' held by thread 'B'"));
    assert!(text.contains("fixed order"));
}
