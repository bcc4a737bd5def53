//! `conclab::futures`: the thread pool, futures, `as_completed` and `wait`.

use conclab::futures::*;
use conclab::threading::Event;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const GUARD: Duration = Duration::from_secs(30);

fn factorial(n: u64) -> u64 {
    (1..=n).product()
}

// Futures hash by identity (an Arc's address), which their interior state never changes.
#[allow(clippy::mutable_key_type)]
#[test]
fn seed_factorials_with_as_completed_map_back() {
    let executor = ThreadPoolExecutor::new().unwrap();
    let futures: HashMap<Future<u64>, u64> = (1..=10)
        .map(|n| (executor.submit(move || factorial(n)), n))
        .collect();
    let mut seen = Vec::new();
    for future in as_completed(futures.keys()) {
        let number = futures[future];
        assert_eq!(*future.result().unwrap(), factorial(number));
        seen.push(number);
    }
    seen.sort();
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
}

#[test]
fn many_tasks_all_complete() {
    let executor = ThreadPoolExecutor::with_max_workers(4).unwrap();
    let futures: Vec<_> = (0..10_000u64)
        .map(|i| executor.submit(move || i * 2))
        .collect();
    let sum: u64 = futures.iter().map(|f| *f.result().unwrap()).sum();
    assert_eq!(sum, 2 * (0..10_000u64).sum::<u64>());
}

#[test]
fn panicking_task_reports_message_and_worker_survives() {
    let executor = ThreadPoolExecutor::with_max_workers(1).unwrap();
    let bad = executor.submit(|| -> u8 { panic!("bad task") });
    let good = executor.submit(|| 7u8);
    assert_eq!(bad.result(), Err(TaskError::Panicked("bad task".into())));
    assert_eq!(
        bad.exception(),
        Some(TaskError::Panicked("bad task".into()))
    );
    assert_eq!(good.result(), Ok(&7));
}

#[test]
fn map_is_ordered_and_into_result_moves() {
    let executor = ThreadPoolExecutor::new().unwrap();
    let out: Vec<String> = executor
        .map(|n: u32| "x".repeat(n as usize), vec![3, 1, 2])
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(out, vec!["xxx", "x", "xx"]);
}

#[test]
fn cancel_queued_and_not_running() {
    let executor = ThreadPoolExecutor::with_max_workers(1).unwrap();
    let gate = Arc::new(Event::new());
    let g = Arc::clone(&gate);
    let busy = executor.submit(move || g.wait_timeout(GUARD));
    while !busy.running() {
        std::thread::yield_now();
    }
    assert!(!busy.cancel(), "a running task cannot be cancelled");
    let queued = executor.submit(|| 1);
    assert!(queued.cancel());
    assert!(queued.cancelled());
    assert!(queued.done());
    assert_eq!(queued.result(), Err(TaskError::Cancelled));
    gate.set();
    assert_eq!(busy.result(), Ok(&true));
}

#[test]
fn result_timeout_and_done_callbacks() {
    let executor = ThreadPoolExecutor::with_max_workers(1).unwrap();
    let gate = Arc::new(Event::new());
    let g = Arc::clone(&gate);
    let slow = executor.submit(move || {
        g.wait_timeout(GUARD);
        5
    });
    assert_eq!(
        slow.result_timeout(Duration::from_millis(5)),
        Err(TaskError::Timeout)
    );
    assert_eq!(
        slow.exception_timeout(Duration::from_millis(5)),
        Err(TaskError::Timeout)
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    slow.add_done_callback(move |f| {
        c.fetch_add(*f.result().unwrap(), Ordering::SeqCst);
    });
    // A panicking callback is reported and the others still run.
    slow.add_done_callback(|_| panic!("callback bug"));
    gate.set();
    assert_eq!(slow.result(), Ok(&5));
    executor.shutdown(true, false);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    // Added after completion: runs at once on this thread.
    let c = Arc::clone(&calls);
    slow.add_done_callback(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[test]
fn wait_first_completed_first_exception_all() {
    let executor = ThreadPoolExecutor::with_max_workers(3).unwrap();
    let gate = Arc::new(Event::new());
    let g = Arc::clone(&gate);
    let blocked = executor.submit(move || {
        g.wait_timeout(GUARD);
        Ok::<u8, String>(0)
    });
    let quick = executor.submit(|| Ok(1));
    let failing = executor.submit(|| -> Result<u8, String> { panic!("fails") });
    let all = [&blocked, &quick, &failing];

    let first = wait(all, Some(GUARD), FIRST_COMPLETED);
    assert!(!first.done.is_empty());
    assert!(first.not_done.contains(&&blocked));

    let exc = wait(all, Some(GUARD), FIRST_EXCEPTION);
    assert!(exc.done.contains(&&failing));
    assert!(exc.not_done.contains(&&blocked));

    let timed = wait(all, Some(Duration::from_millis(5)), ALL_COMPLETED);
    assert_eq!(timed.not_done, vec![&blocked]);

    gate.set();
    let done = wait(all, None, ReturnWhen::AllCompleted);
    assert_eq!(done.done.len(), 3);
}

#[test]
fn as_completed_yields_in_finishing_order_with_indices_and_timeout() {
    let executor = ThreadPoolExecutor::with_max_workers(2).unwrap();
    let gate = Arc::new(Event::new());
    let g = Arc::clone(&gate);
    let futures = vec![
        executor.submit(move || g.wait_timeout(GUARD)),
        executor.submit(|| true),
    ];
    let mut it = as_completed(&futures).indexed();
    assert_eq!(it.next().map(|(i, _)| i), Some(1));
    drop(it);

    let mut timed = as_completed(&futures).timeout(Duration::from_millis(10));
    assert!(timed.next().unwrap().is_ok()); // the finished one
    assert_eq!(timed.next().unwrap().err(), Some(TaskError::Timeout));
    assert!(timed.next().is_none());

    gate.set();
    assert_eq!(as_completed(&futures).count(), 2);
}

#[test]
fn shutdown_cancels_queued_and_rejects_new() {
    let executor = ThreadPoolExecutor::with_max_workers(1).unwrap();
    let gate = Arc::new(Event::new());
    let g = Arc::clone(&gate);
    let running = executor.submit(move || g.wait_timeout(GUARD));
    while !running.running() {
        std::thread::yield_now();
    }
    let queued: Vec<_> = (0..5).map(|i| executor.submit(move || i)).collect();
    executor.shutdown(false, true);
    for f in &queued {
        assert_eq!(f.result(), Err(TaskError::Cancelled));
    }
    assert_eq!(executor.submit(|| 0).result(), Err(TaskError::Shutdown));
    gate.set();
    assert_eq!(running.result(), Ok(&true));
}

#[test]
fn dropping_the_executor_runs_queued_tasks_then_joins() {
    let count = Arc::new(AtomicUsize::new(0));
    let futures: Vec<_>;
    {
        let executor = ThreadPoolExecutor::with_max_workers(2).unwrap();
        futures = (0..100)
            .map(|_| {
                let count = Arc::clone(&count);
                executor.submit(move || count.fetch_add(1, Ordering::SeqCst))
            })
            .collect();
    }
    assert_eq!(count.load(Ordering::SeqCst), 100);
    assert!(futures.iter().all(|f| f.done()));
}

#[test]
fn map_timeout_reports_late_results() {
    let executor = ThreadPoolExecutor::with_max_workers(2).unwrap();
    let gate = Arc::new(Event::new());
    let g = Arc::clone(&gate);
    let results: Vec<_> = executor
        .map_timeout(
            move |wait: bool| if wait { g.wait_timeout(GUARD) } else { true },
            [false, true],
            Duration::from_millis(20),
        )
        .collect();
    gate.set();
    assert_eq!(results[0], Ok(true));
    assert_eq!(results[1], Err(TaskError::Timeout));
}

#[test]
fn task_errors_display_advice() {
    assert!(TaskError::Shutdown.to_string().contains("new executor"));
    assert!(TaskError::WorkerDied("SIGKILL".into())
        .to_string()
        .contains("SIGKILL"));
}
