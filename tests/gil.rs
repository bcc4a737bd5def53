//! The simulated GIL: mutual exclusion, hand-over, release around sleeps.
//!
//! The timing claims (N CPU threads take N times as long) are shown by the notebook and
//! the bench machine, not asserted here; these tests check the mechanism.

use conclab::gil::{cpu_work, Gil};
use conclab::threading::Thread;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn only_one_thread_holds_the_gil() {
    let gil = Gil::new(Duration::ZERO);
    let inside = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (gil, inside) = (gil.clone(), Arc::clone(&inside));
            Thread::new(move || {
                for _ in 0..200 {
                    gil.run(|py| {
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        cpu_work(100); // no switch point inside
                        assert_eq!(inside.fetch_sub(1, Ordering::SeqCst), 1);
                        // A switch point may hand the GIL over: the count is back at zero
                        // before it does.
                        py.switch_point();
                    });
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn cpu_threads_hand_the_gil_over() {
    let gil = Gil::new(Duration::from_micros(100));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let gil = gil.clone();
            Thread::new(move || gil.cpu_work(3_000_000))
                .start()
                .unwrap()
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), cpu_work(3_000_000));
    }
    assert!(gil.switches() > 0, "two CPU-bound threads must take turns");
}

#[test]
fn sleeping_releases_the_gil() {
    let gil = Gil::new(Duration::from_millis(5));
    let sleeper_inside = Arc::new(conclab::threading::Event::new());
    let sleeper = {
        let (gil, inside) = (gil.clone(), Arc::clone(&sleeper_inside));
        Thread::new(move || {
            gil.run(|py| {
                py.allow_threads(|| {
                    inside.set();
                    std::thread::sleep(Duration::from_millis(50));
                })
            })
        })
        .start()
        .unwrap()
    };
    sleeper_inside.wait();
    // The sleeper is inside its sleep: the GIL must be free for us now.
    let got = gil.run(|py| py.cpu_work(10));
    assert_eq!(got, cpu_work(10));
    sleeper.join().unwrap();
}

#[test]
fn reentrant_acquire_does_not_deadlock() {
    let gil = Gil::new(Duration::from_millis(5));
    let outer = gil.acquire();
    let inner = gil.acquire();
    drop(inner);
    drop(outer);
    assert_eq!(gil.cpu_work(5), cpu_work(5));
}
