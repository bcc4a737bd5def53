//! Speed of the thread side against its baselines, measured in the same run.
//!
//! 1. `ThreadPoolExecutor` submit + result of 100,000 tiny tasks against a bare
//!    crossbeam-channel worker pool with one `bounded(1)` result channel per task.
//!    Targets: >= 1,000,000 tasks/s, within 2x of the bare pool, >= 20x CPython's 43 k/s.
//! 2. Two threads x 100,000 increments under a conclab `Lock` against `std::sync::Mutex`.
//!    Targets: within 1.2x of std, >= 10x faster than CPython's 28 ms.
//!
//! Each figure is the median of several rounds; the machine is shared, so compare the
//! ratios, which come from one run. Run with `cargo bench --bench threads`.

use conclab::futures::ThreadPoolExecutor;
use conclab::threading::Lock;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TASKS: u64 = 100_000;
const INCREMENTS: u64 = 100_000;
const ROUNDS: usize = 7;
const WORKERS: usize = 2;
const CPYTHON_TASKS_PER_S: f64 = 43_000.0;
const CPYTHON_LOCK_MS: f64 = 28.0;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

type BareJob = Box<dyn FnOnce() + Send>;

/// The bare baseline: workers pulling boxed closures from an unbounded channel, one
/// `bounded(1)` channel per result.
fn bare_pool_round() -> Duration {
    let (jobs, queue) = crossbeam_channel::unbounded::<BareJob>();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let queue = queue.clone();
            std::thread::spawn(move || {
                while let Ok(job) = queue.recv() {
                    job();
                }
            })
        })
        .collect();
    let start = Instant::now();
    let results: Vec<_> = (0..TASKS)
        .map(|i| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let job: BareJob = Box::new(move || {
                let _ = tx.send(black_box(i) + 1);
            });
            let _ = jobs.send(job);
            rx
        })
        .collect();
    let mut sum = 0;
    for rx in results {
        sum += rx.recv().unwrap_or(0);
    }
    let elapsed = start.elapsed();
    assert_eq!(sum, TASKS * (TASKS + 1) / 2);
    drop(jobs);
    for worker in workers {
        let _ = worker.join();
    }
    elapsed
}

fn executor_round() -> Duration {
    let executor = match ThreadPoolExecutor::with_max_workers(WORKERS) {
        Ok(executor) => executor,
        Err(error) => panic!("cannot start the executor: {error}"),
    };
    let start = Instant::now();
    let futures: Vec<_> = (0..TASKS)
        .map(|i| executor.submit(move || black_box(i) + 1))
        .collect();
    let mut sum = 0;
    for future in &futures {
        sum += future.result().copied().unwrap_or(0);
    }
    let elapsed = start.elapsed();
    assert_eq!(sum, TASKS * (TASKS + 1) / 2);
    elapsed
}

fn std_mutex_round() -> Duration {
    let counter = Arc::new(Mutex::new(0u64));
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                for _ in 0..INCREMENTS {
                    *counter.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    let elapsed = start.elapsed();
    assert_eq!(
        *counter.lock().unwrap_or_else(|e| e.into_inner()),
        2 * INCREMENTS
    );
    elapsed
}

fn conclab_lock_round() -> Duration {
    let counter = Arc::new(Lock::new(0u64));
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                for _ in 0..INCREMENTS {
                    match counter.acquire() {
                        Ok(mut guard) => *guard += 1,
                        Err(error) => panic!("{error}"),
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    let elapsed = start.elapsed();
    assert_eq!(counter.acquire().map(|g| *g).unwrap_or(0), 2 * INCREMENTS);
    elapsed
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn main() {
    // Interleave the rounds so drift on the shared machine hits both sides alike.
    let mut bare = Vec::new();
    let mut pool = Vec::new();
    for _ in 0..ROUNDS {
        bare.push(bare_pool_round());
        pool.push(executor_round());
    }
    let bare = median(bare);
    let pool = median(pool);
    let bare_rate = TASKS as f64 / bare.as_secs_f64();
    let pool_rate = TASKS as f64 / pool.as_secs_f64();
    let slowdown = pool.as_secs_f64() / bare.as_secs_f64();
    let vs_cpython = pool_rate / CPYTHON_TASKS_PER_S;
    println!("executor submit+result, {TASKS} tasks, {WORKERS} workers (median of {ROUNDS}):");
    println!(
        "  bare crossbeam pool : {:>12.0} tasks/s ({bare:?})",
        bare_rate
    );
    println!(
        "  ThreadPoolExecutor  : {:>12.0} tasks/s ({pool:?})",
        pool_rate
    );
    println!(
        "  target >= 1,000,000 tasks/s: {} ({:.0})",
        verdict(pool_rate >= 1_000_000.0),
        pool_rate
    );
    println!(
        "  target within 2x of the bare pool: {} ({slowdown:.2}x)",
        verdict(slowdown <= 2.0)
    );
    println!(
        "  target >= 20x CPython's 43 k tasks/s: {} ({vs_cpython:.1}x)",
        verdict(vs_cpython >= 20.0)
    );

    let mut std_times = Vec::new();
    let mut lock_times = Vec::new();
    for _ in 0..ROUNDS * 3 {
        std_times.push(std_mutex_round());
        lock_times.push(conclab_lock_round());
    }
    let std_time = median(std_times);
    let lock_time = median(lock_times);
    let ratio = lock_time.as_secs_f64() / std_time.as_secs_f64();
    let lock_ms = lock_time.as_secs_f64() * 1000.0;
    println!(
        "2 threads x {INCREMENTS} locked increments (median of {}):",
        ROUNDS * 3
    );
    println!("  std::sync::Mutex    : {std_time:?}");
    println!("  conclab Lock        : {lock_time:?}");
    println!(
        "  target within 1.2x of std::sync::Mutex: {} ({ratio:.2}x)",
        verdict(ratio <= 1.2)
    );
    println!(
        "  target >= 10x faster than CPython's 28 ms: {} ({:.1}x)",
        verdict(CPYTHON_LOCK_MS / lock_ms >= 10.0),
        CPYTHON_LOCK_MS / lock_ms
    );
}
