//! `RayonPool`: parallel iterators on a pool the caller holds, whose threads are gone
//! once it is dropped.
//!
//! One test function only: it counts this process's threads, and libtest runs every test
//! function on a thread of its own.

use conclab::prelude::*;

#[test]
fn pools_run_parallel_iterators_on_their_own_threads_and_join_them_when_dropped() {
    let before = os_thread_count();
    assert!(before >= 1, "/proc/self/status has a Threads: line");
    for round in 0..10 {
        let pool = RayonPool::new(3).unwrap();
        let squares: u64 = pool.install(|| (1..=10_000u64).into_par_iter().map(|n| n * n).sum());
        assert_eq!(squares, 333_383_335_000);
        assert_eq!(os_thread_count(), before + 3, "round {round}");
        drop(pool);
        assert_eq!(os_thread_count(), before, "round {round}: after the drop");
    }

    let pool = RayonPool::new(2).unwrap();
    let names: Vec<String> = pool.install(|| {
        (0..64)
            .into_par_iter()
            .map(|_| std::thread::current().name().unwrap_or("").to_owned())
            .collect()
    });
    assert!(
        names.iter().all(|name| name.starts_with("rayon-")),
        "{names:?}"
    );
    drop(pool);

    let per_core = RayonPool::new(0).unwrap();
    assert_eq!(per_core.threads(), cpu_count());
    drop(per_core);
    assert_eq!(os_thread_count(), before);
}
