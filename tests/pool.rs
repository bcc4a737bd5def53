//! Pool: map family, async results, crash resilience, lifecycle, and re-forking when code
//! is loaded after the workers were forked (a later notebook cell, here a dlopen).
mod common;

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use conclab::futures::{as_completed, TaskError};
use conclab::multiprocessing::{MpError, Pipe, Pool, PoolBuilder, Process, ProcessPoolExecutor};

static DONE: AtomicUsize = AtomicUsize::new(0);

fn square(n: u64) -> u64 {
    n * n
}

#[test]
fn map_starmap_apply_keep_order() {
    let _t = common::Track::new(&DONE);
    let pool = Pool::new(3).unwrap();
    assert_eq!(
        pool.map(square, 1..=10).unwrap(),
        (1..=10).map(|n| n * n).collect::<Vec<_>>()
    );
    assert_eq!(pool.map(square, Vec::new()).unwrap(), Vec::<u64>::new());
    let big: Vec<u64> = pool.map(|x: u64| x + 1, 0..10_000).unwrap();
    assert_eq!(big, (1..=10_000).collect::<Vec<_>>());
    let powers = pool
        .starmap(
            |b: u64, e: u32| b.pow(e),
            vec![(2, 2), (3, 3), (4, 2), (5, 3)],
        )
        .unwrap();
    assert_eq!(powers, vec![4, 27, 16, 125]);
    assert_eq!(
        pool.apply(|a: String, n: usize| a.repeat(n), ("ab".to_string(), 3))
            .unwrap(),
        "ababab"
    );
    let chunked = pool.map_chunked(square, 0..50, 7).unwrap();
    assert_eq!(chunked, (0..50).map(|n| n * n).collect::<Vec<_>>());
}

#[test]
fn tasks_really_run_in_several_workers() {
    let _t = common::Track::new(&DONE);
    let pool = Pool::new(2).unwrap();
    let pids = pool
        .map_chunked(
            |_: u8| {
                std::thread::sleep(Duration::from_millis(20));
                std::process::id()
            },
            0..8,
            1,
        )
        .unwrap();
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 2, "{pids:?}");
    let me = std::process::id();
    assert!(pids.iter().all(|&p| p != me));
}

#[test]
fn async_results_imap_and_unordered() {
    let _t = common::Track::new(&DONE);
    let pool = Pool::new(2).unwrap();
    let mut slow = pool
        .apply_async(
            |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
                ms
            },
            (200,),
        )
        .unwrap();
    let fast = pool.map_async(square, 0..5).unwrap();
    assert!(matches!(
        slow.get_timeout(Duration::from_millis(1)),
        Err(MpError::Timeout(_))
    ));
    assert_eq!(fast.get().unwrap(), vec![0, 1, 4, 9, 16]);
    assert!(slow.wait(Some(Duration::from_secs(30))));
    assert_eq!(slow.successful(), Some(true));
    assert_eq!(slow.get_timeout(Duration::from_secs(30)).unwrap(), 200);

    let ordered: Vec<u64> = pool
        .imap(square, 0..20)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(ordered, (0..20).map(|n| n * n).collect::<Vec<_>>());
    let mut unordered: Vec<u64> = pool
        .imap_unordered(square, 0..20)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    unordered.sort();
    assert_eq!(unordered, ordered);

    // An abandoned result must not disturb later work.
    drop(pool.apply_async(square, (3,)).unwrap());
    assert_eq!(pool.apply(square, (4,)).unwrap(), 16);
}

#[test]
fn a_panicking_task_is_an_error_and_the_rest_are_delivered() {
    let _t = common::Track::new(&DONE);
    let pool = Pool::new(2).unwrap();
    let worker = |x: i32| {
        if x == 0 {
            panic!("Cannot process 0");
        }
        10 / x
    };
    let r = pool.map(worker, [1, 2, 0, 4]);
    assert!(
        matches!(&r, Err(MpError::TaskPanicked(m)) if m.contains("Cannot process 0")),
        "{r:?}"
    );
    let each: Vec<_> = pool.imap(worker, [1, 2, 0, 4]).unwrap().collect();
    assert_eq!(each[0], Ok(10));
    assert_eq!(each[1], Ok(5));
    assert!(each[2].is_err());
    assert_eq!(each[3], Ok(2));
    assert_eq!(
        pool.replaced_workers(),
        0,
        "a caught panic needs no new worker"
    );
    let failed = pool.apply_async(worker, (0,)).unwrap();
    failed.wait(None);
    assert_eq!(failed.successful(), Some(false));
}

#[test]
fn a_worker_killing_itself_mid_map_fails_only_its_task() {
    let _t = common::Track::new(&DONE);
    let pool = Pool::new(2).unwrap();
    let task = |x: u32| {
        if x == 37 {
            // SAFETY: raising a signal in this worker process.
            unsafe { libc::raise(libc::SIGKILL) };
        }
        x * 2
    };
    // Default chunking: task 37 shares a chunk with others, which must run again.
    let results: Vec<_> = pool.imap(task, 0..100).unwrap().collect();
    for (i, r) in results.iter().enumerate() {
        if i == 37 {
            assert!(
                matches!(r, Err(MpError::WorkerDied(m)) if m.contains("killed by signal SIGKILL")),
                "{r:?}"
            );
        } else {
            assert_eq!(*r, Ok(i as u32 * 2));
        }
    }
    let via_map: Vec<_> = pool
        .map_async(task, 0..100)
        .unwrap()
        .get()
        .unwrap_err()
        .to_string()
        .into_bytes();
    assert!(String::from_utf8_lossy(&via_map).contains("SIGKILL"));
    assert_eq!(pool.replaced_workers(), 2);
    assert_eq!(pool.pids().len(), 2);
    assert_eq!(pool.map(square, 1..=3).unwrap(), vec![1, 4, 9]);
}

#[test]
fn sigkill_from_outside_during_map() {
    let _t = common::Track::new(&DONE);
    let pool = Pool::new(2).unwrap();
    let slow = |x: u32| {
        std::thread::sleep(Duration::from_millis(30));
        x
    };
    let pending = pool.map_async(slow, 0..40).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let victim = pool.pids()[0];
    // SAFETY: killing one of our own pool's workers.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let results: Result<Vec<u32>, MpError> = pending.get();
    match results {
        Ok(v) => assert_eq!(v, (0..40).collect::<Vec<_>>()), // killed between tasks
        Err(e) => assert!(e.to_string().contains("SIGKILL"), "{e}"),
    }
    assert!(!pool.pids().contains(&victim));
    assert_eq!(pool.map(slow, 0..4).unwrap(), vec![0, 1, 2, 3]);
}

#[test]
fn initializer_and_max_tasks_per_child() {
    let _t = common::Track::new(&DONE);
    let pool = PoolBuilder::new()
        .processes(2)
        .initializer(|tag: u32| assert_eq!(tag, 7), (7,))
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    let pids = pool
        .map_chunked(|_: u8| std::process::id(), 0..12, 1)
        .unwrap();
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() >= 6,
        "each worker should serve 2 chunks: {pids:?}"
    );

    let broken = PoolBuilder::new()
        .processes(1)
        .initializer(|| panic!("initializer fails"), ())
        .build()
        .unwrap();
    let r = broken.apply(square, (2,));
    assert!(
        matches!(&r, Err(MpError::WorkerDied(m)) if m.contains("initializer")),
        "{r:?}"
    );
}

#[test]
fn close_join_terminate_and_drop() {
    let _t = common::Track::new(&DONE);
    let pool = Pool::new(2).unwrap();
    let r = pool.map_async(square, 0..100).unwrap();
    assert!(matches!(pool.join(), Err(MpError::PoolStillOpen)));
    pool.close();
    assert_eq!(pool.apply(square, (1,)), Err(MpError::PoolClosed));
    pool.join().unwrap();
    assert!(pool.pids().is_empty());
    assert_eq!(r.get().unwrap().len(), 100);

    let pool = Pool::new(2).unwrap();
    let stuck = pool
        .apply_async(|| std::thread::sleep(Duration::from_secs(60)), ())
        .unwrap();
    pool.terminate();
    assert_eq!(stuck.get(), Err(MpError::PoolTerminated));

    let pool = Pool::new(2).unwrap();
    let pids = pool.pids();
    drop(pool);
    let left = common::live_children();
    assert!(pids.iter().all(|p| !left.iter().any(|(c, _)| c == p)));
}

/// Builds a tiny cdylib with rustc; `None` if no rustc is on PATH.
fn build_tiny_library(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let src = dir.join("tiny.rs");
    std::fs::write(
        &src,
        "#[no_mangle]\npub extern \"C\" fn triple(x: i64) -> i64 { x * 3 }\n",
    )
    .ok()?;
    let out = dir.join("libtiny.so");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = std::process::Command::new(rustc)
        .args(["--crate-type", "cdylib", "--edition", "2021", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .ok()?;
    status.success().then_some(out)
}

fn is_mapped_in_this_process(addr: usize) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines().any(|l| {
        let range = l.split_whitespace().next().unwrap_or("");
        let mut parts = range.split('-');
        let lo = usize::from_str_radix(parts.next().unwrap_or("0"), 16).unwrap_or(0);
        let hi = usize::from_str_radix(parts.next().unwrap_or("0"), 16).unwrap_or(0);
        addr >= lo && addr < hi
    })
}

#[test]
fn code_loaded_after_the_fork_makes_the_pool_refork() {
    let _t = common::Track::new(&DONE);
    let dir = std::env::temp_dir().join(format!("conclab-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lib = build_tiny_library(&dir).expect("rustc must be available to build the test library");

    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(square, 1..=3).unwrap(), vec![1, 4, 9]);
    // A process forked now, like the workers, to prove the premise: it will not have the
    // library mapped.
    let (ask, answer) = Pipe::new().unwrap();
    let witness = Process::spawn(|| {
        let addr: usize = answer.recv().unwrap();
        is_mapped_in_this_process(addr)
    })
    .unwrap();

    let path = std::ffi::CString::new(lib.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: loading a library we just built; looking up a symbol we defined.
    let triple: extern "C" fn(i64) -> i64 = unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW);
        assert!(!handle.is_null(), "dlopen failed");
        let sym = libc::dlsym(handle, c"triple".as_ptr());
        assert!(!sym.is_null(), "dlsym failed");
        std::mem::transmute::<*mut libc::c_void, extern "C" fn(i64) -> i64>(sym)
    };
    ask.send(&(triple as usize)).unwrap();
    assert!(
        !witness.join().unwrap(),
        "a process forked earlier must not see the library"
    );

    // A closure carrying the foreign function pointer: the pool checks every word of it.
    let triple = move |x: i64| triple(x);
    let before = pool.pids();
    assert_eq!(pool.reforks(), 0);
    assert_eq!(
        pool.map(triple, 1..=10).unwrap(),
        (1..=10).map(|x| x * 3).collect::<Vec<_>>()
    );
    assert_eq!(pool.reforks(), 1);
    assert!(
        pool.pids().iter().all(|p| !before.contains(p)),
        "workers were re-forked"
    );
    assert_eq!(pool.replaced_workers(), 0, "no worker crashed");
    // Now the workers have it: no second re-fork.
    assert_eq!(pool.apply(triple, (5,)).unwrap(), 15);
    assert_eq!(pool.map(square, 1..=3).unwrap(), vec![1, 4, 9]);
    assert_eq!(pool.reforks(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn process_pool_executor_futures() {
    let _t = common::Track::new(&DONE);
    let executor = ProcessPoolExecutor::new(2).unwrap();
    let futures: Vec<_> = (0..20u64).map(|n| executor.submit(square, (n,))).collect();
    let mut seen: Vec<u64> = as_completed(&futures)
        .map(|f| *f.result().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, (0..20).map(|n| n * n).collect::<Vec<_>>());

    // A worker that dies fails only its own future; the executor keeps working.
    let die = executor.submit(
        || {
            // SAFETY: killing this worker process on purpose.
            unsafe { libc::raise(libc::SIGKILL) };
        },
        (),
    );
    let panics = executor.submit(|| -> u8 { panic!("task failed") }, ());
    assert!(matches!(die.result(), Err(TaskError::WorkerDied(m)) if m.contains("SIGKILL")));
    assert_eq!(
        panics.result(),
        Err(TaskError::Panicked("task failed".into()))
    );
    let after: Vec<_> = executor.map(square, 1..=4).map(|r| r.unwrap()).collect();
    assert_eq!(after, vec![1, 4, 9, 16]);

    // Queued futures can be cancelled; shutdown(cancel_futures) cancels the rest.
    let slow: Vec<_> = (0..12)
        .map(|_| executor.submit(|| std::thread::sleep(Duration::from_millis(50)), ()))
        .collect();
    let last = slow.last().unwrap();
    assert!(last.cancel());
    assert_eq!(last.result(), Err(TaskError::Cancelled));
    executor.shutdown(true, true);
    let finished = slow.iter().filter(|f| f.result().is_ok()).count();
    assert!((1..12).contains(&finished), "{finished}");
    assert_eq!(
        executor.submit(square, (2,)).result(),
        Err(TaskError::Shutdown)
    );
}

#[test]
fn zz_no_children_left() {
    common::check_after(&DONE, 10);
}
