//! `conclab::explore`: finding lost updates and deadlocks, counting schedules, replaying.

use conclab::explore::{self, Failure};
use conclab::prelude::*;
use std::sync::Arc;

/// Two threads (the closure's own and one more) increment a racing counter once each.
fn racing_pair() -> u64 {
    let counter = Arc::new(RacyCounter::new());
    let other = Arc::clone(&counter);
    let t = Thread::new(move || other.increment()).start().unwrap();
    counter.increment();
    t.join().unwrap();
    counter.get()
}

/// Two started threads increment a racing counter once each: 2 threads x 2 steps.
fn two_threads_two_steps() -> u64 {
    let counter = Arc::new(RacyCounter::new());
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let counter = Arc::clone(&counter);
            Thread::new(move || counter.increment()).start().unwrap()
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    counter.get()
}

fn two_lock_deadlock() {
    let a = Arc::new(Lock::named("lock A", ()));
    let b = Arc::new(Lock::named("lock B", ()));
    let t = {
        let (a, b) = (Arc::clone(&a), Arc::clone(&b));
        Thread::new(move || {
            let _b = b.acquire().unwrap();
            let _a = a.acquire().unwrap();
        })
        .name("second")
        .start()
        .unwrap()
    };
    {
        let _a = a.acquire().unwrap();
        let _b = b.acquire().unwrap();
    }
    t.join().unwrap();
}

#[test]
fn a_lost_update_is_found_within_a_few_random_schedules() {
    let report = explore::random(50).seed(1).run(racing_pair);
    let failed = report
        .first_failure()
        .expect("a lost update in 50 schedules");
    assert!(
        matches!(failed.failure, Some(Failure::LostUpdate { .. })),
        "{report}"
    );
    assert!(report.schedules() <= 50);
    // The lost update's schedule still ran to its end: the counter says 1.
    assert_eq!(failed.outcome.as_deref(), Some("1"), "{report}");
}

#[test]
fn pct_finds_the_lost_update_too() {
    let report = explore::pct(2, 50).seed(3).run(racing_pair);
    assert!(!report.is_ok(), "{report}");
}

#[test]
fn exhaustive_search_enumerates_the_six_interleavings_of_two_threads_of_two_steps() {
    let report = explore::exhaustive()
        .keep_going()
        .run(two_threads_two_steps);
    assert!(report.is_exhaustive(), "{report}");
    // (4 choose 2) orders of read1 write1 read2 write2 keeping each thread's order.
    assert_eq!(report.schedules(), 6, "{report}");
    // Only the two orders where one thread finishes before the other starts are right.
    assert_eq!(
        report.outcomes(),
        &[("1".to_string(), 4), ("2".to_string(), 2)],
        "{report}"
    );
    assert_eq!(report.failed(), 4);
}

#[test]
fn replay_takes_the_same_steps() {
    let report = explore::random(50).seed(1).run(racing_pair);
    let failed = report.first_failure().unwrap();
    for _ in 0..3 {
        let again = explore::replay(&failed.schedule, racing_pair).unwrap();
        assert_eq!(again.trace, failed.trace);
        assert_eq!(again.failure, failed.failure);
        assert_eq!(again.schedule, failed.schedule);
    }
}

#[test]
fn replay_of_another_program_says_so() {
    let report = explore::random(50).seed(1).run(racing_pair);
    let schedule = &report.first_failure().unwrap().schedule;
    let error = explore::replay(schedule, || ()).unwrap_err();
    assert!(error.to_string().contains("did not follow"), "{error}");
}

#[test]
fn the_two_lock_deadlock_is_found_as_a_cycle() {
    let report = explore::random(100).seed(1).run(two_lock_deadlock);
    let failed = report.first_failure().expect("the deadlock");
    match &failed.failure {
        Some(Failure::Deadlock(cycle)) => {
            assert_eq!(cycle.len(), 2, "{cycle:?}");
            let locks: Vec<&str> = cycle.iter().map(|e| e.waits_for.as_str()).collect();
            assert!(
                locks.contains(&"lock A") && locks.contains(&"lock B"),
                "{cycle:?}"
            );
        }
        other => panic!("expected a deadlock, got {other:?}"),
    }
    // Replaying it deadlocks the same way again.
    let again = explore::replay(&failed.schedule, two_lock_deadlock).unwrap();
    assert_eq!(again.failure, failed.failure);
}

#[test]
fn the_locked_counter_is_right_in_every_schedule() {
    let report = explore::exhaustive().run(|| {
        let counter = Arc::new(LockedCounter::new());
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let counter = Arc::clone(&counter);
                Thread::new(move || {
                    counter.increment();
                    counter.increment();
                })
                .start()
                .unwrap()
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        counter.get()
    });
    assert!(report.is_ok(), "{report}");
    assert!(report.is_exhaustive());
    assert!(report.schedules() > 1);
    assert_eq!(report.outcomes(), &[("4".to_string(), report.schedules())]);
}

#[test]
fn an_assertion_in_a_thread_is_reported_with_its_schedule() {
    let report = explore::random(100).seed(2).run(|| {
        let counter = Arc::new(RacyCounter::new());
        let other = Arc::clone(&counter);
        let t = Thread::new(move || other.increment())
            .name("helper")
            .start()
            .unwrap();
        let seen = counter.get();
        t.join().unwrap();
        assert_eq!(seen, 0, "the helper ran first");
    });
    let failed = report
        .first_failure()
        .expect("an order where the helper runs first");
    match &failed.failure {
        Some(Failure::Panic { thread, message }) => {
            assert_eq!(thread, "main");
            assert!(message.contains("the helper ran first"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let message = std::panic::catch_unwind(|| report.assert_ok()).unwrap_err();
    let text = message.downcast_ref::<String>().unwrap();
    assert!(text.contains(&failed.schedule), "{text}");
}

#[test]
fn queues_events_semaphores_barriers_and_conditions_work_inside() {
    let report = explore::random(100).seed(5).run(|| {
        let q = Arc::new(Queue::with_maxsize(1));
        let ready = Arc::new(Event::new());
        let slots = Arc::new(Semaphore::new(1));
        let meet = Arc::new(Barrier::new(2));
        let cond = Arc::new(Condition::named("flag", false));
        let t = {
            let (q, ready, slots, meet, cond) = (
                Arc::clone(&q),
                Arc::clone(&ready),
                Arc::clone(&slots),
                Arc::clone(&meet),
                Arc::clone(&cond),
            );
            Thread::new(move || {
                for i in 0..3 {
                    q.put(i).unwrap();
                }
                ready.set();
                drop(slots.acquire());
                meet.wait().unwrap();
                let mut flag = cond.acquire().unwrap();
                *flag = true;
                flag.notify_all();
            })
            .start()
            .unwrap()
        };
        let got: Vec<i32> = (0..3).map(|_| q.get().unwrap()).collect();
        assert!(ready.wait());
        drop(slots.acquire());
        meet.wait().unwrap();
        let flag = cond.acquire().unwrap().wait_for(|f| *f).unwrap();
        assert!(*flag);
        drop(flag);
        t.join().unwrap();
        got
    });
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.outcomes(), &[("[0, 1, 2]".to_string(), 100)]);
}

#[test]
fn a_get_nobody_answers_is_reported_as_stuck() {
    let report = explore::random(5).run(|| {
        let q: Queue<u8> = Queue::new();
        q.get().unwrap()
    });
    match &report.first_failure().unwrap().failure {
        Some(Failure::Stuck(waiting)) => {
            assert!(waiting[0].contains("queue 1"), "{waiting:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_timed_wait_times_out_only_when_nothing_else_can_run() {
    let report = explore::random(20).run(|| {
        let q: Queue<u8> = Queue::new();
        q.get_timeout(std::time::Duration::from_secs(3600)).is_err()
    });
    assert_eq!(report.outcomes(), &[("true".to_string(), 20)]);
}

#[test]
fn plain_use_after_a_run_is_not_explored() {
    let _ = explore::random(3).run(racing_pair);
    // Outside a run, nothing waits for a scheduler.
    let counter = RacyCounter::new();
    counter.increment();
    assert_eq!(counter.get(), 1);
}

#[test]
fn pct_gets_past_a_thread_that_polls_in_a_loop() {
    // The poller only stops once the other thread has set the flag: under fixed
    // priorities it would keep the baton for ever.
    let report = explore::pct(3, 50).seed(9).run(|| {
        let flag = Arc::new(Lock::named("flag", false));
        let setter = {
            let flag = Arc::clone(&flag);
            Thread::new(move || *flag.acquire().unwrap() = true)
                .start()
                .unwrap()
        };
        while !*flag.acquire().unwrap() {}
        setter.join().unwrap();
    });
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.schedules(), 50);
}

#[test]
fn rlock_reentry_and_try_acquire_inside_a_run() {
    let report = explore::exhaustive().run(|| {
        let lock = Arc::new(RLock::named("tree", std::cell::Cell::new(0)));
        let other = {
            let lock = Arc::clone(&lock);
            Thread::new(move || lock.try_acquire().is_some())
                .start()
                .unwrap()
        };
        {
            let outer = lock.acquire().unwrap();
            let inner = lock.acquire().unwrap();
            inner.set(outer.get() + 1);
        }
        other.join().unwrap()
    });
    assert!(report.is_ok(), "{report}");
    assert!(report.is_exhaustive());
    // The other thread's try_acquire either finds the lock free or held: both happen.
    let outcomes: Vec<&str> = report.outcomes().iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(outcomes, ["false", "true"], "{report}");
}

#[test]
fn printing_code_is_explored_like_any_other() {
    // Its output goes to /dev/null meanwhile; the run must not notice.
    let report = explore::random(3).run(|| println!("dropped"));
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.outcomes(), &[("()".to_string(), 3)]);
}
