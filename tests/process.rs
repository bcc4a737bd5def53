//! Process: results, panics, signals, early exits, timeouts, dropping unjoined handles.
mod common;

use std::time::{Duration, Instant};

use std::sync::atomic::AtomicUsize;

use conclab::multiprocessing::{MpError, Process, ProcessBuilder};

static DONE: AtomicUsize = AtomicUsize::new(0);

#[test]
fn returns_values_and_borrows_from_the_parent() {
    let _t = common::Track::new(&DONE);
    let data = [1u64, 2, 3, 4];
    let children: Vec<_> = (0..4)
        .map(|i| Process::spawn(|| data.iter().map(|x| x * i).sum::<u64>()).unwrap())
        .collect();
    let sums: Vec<u64> = children.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(sums, vec![0, 10, 20, 30]);
}

#[test]
fn child_changes_stay_in_the_child() {
    let _t = common::Track::new(&DONE);
    let mut counter = 0;
    let p = Process::spawn(|| {
        counter += 1;
        counter
    })
    .unwrap();
    assert_eq!(p.join().unwrap(), 1);
    assert_eq!(counter, 0);
}

#[test]
fn a_panic_comes_back_as_an_error_with_the_message() {
    let _t = common::Track::new(&DONE);
    let p = ProcessBuilder::new()
        .name("doomed")
        .spawn(|| -> u32 { panic!("division by zero in {}", "worker") })
        .unwrap();
    let pid = p.pid();
    match p.join() {
        Err(MpError::Panicked {
            name,
            pid: got,
            message,
        }) => {
            assert_eq!(name, "doomed");
            assert_eq!(got, pid);
            assert!(message.contains("division by zero in worker"), "{message}");
            assert!(
                message.contains("tests/process.rs"),
                "location missing: {message}"
            );
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
}

/// Only the child's own thread's panic is its result: a helper thread's panic inside the
/// child is reported on stderr and comes back from that thread's join, nothing more.
#[test]
fn a_helper_threads_panic_is_not_the_childs_result() {
    let _t = common::Track::new(&DONE);
    let survived = Process::spawn(|| -> u32 {
        let helper = std::thread::spawn(|| panic!("helper failed"));
        assert!(helper.join().is_err());
        7
    })
    .unwrap();
    assert_eq!(survived.join().unwrap(), 7);

    let failed = Process::spawn(|| -> u32 {
        let _ = std::thread::spawn(|| panic!("helper failed")).join();
        panic!("main failed")
    })
    .unwrap();
    match failed.join() {
        Err(MpError::Panicked { message, .. }) => {
            assert!(message.contains("main failed"), "{message}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
}

/// Results on both sides of the parent's first, fixed-size read (64 bytes: a 9-byte
/// header, then a string's 8-byte length and 47 of its bytes), and one longer than the
/// 16 MiB steps of the reads after it.
#[test]
fn results_of_every_size_come_back_whole() {
    let _t = common::Track::new(&DONE);
    for len in [0usize, 1, 45, 46, 47, 48, 49, 55, 56, 64, 1000, 40 << 20] {
        let text = "x".repeat(len);
        let expected = text.clone();
        let back = Process::spawn(move || text).unwrap().join().unwrap();
        assert_eq!(back, expected, "length {len}");
    }
    assert_eq!(Process::spawn(|| ()).unwrap().join().unwrap(), ());
}

#[test]
fn signals_and_exit_codes_follow_cpython() {
    let _t = common::Track::new(&DONE);
    let p = Process::spawn(|| std::thread::sleep(Duration::from_secs(60))).unwrap();
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    p.kill().unwrap();
    assert!(p.join_timeout(Duration::from_secs(30)).unwrap());
    assert!(!p.is_alive());
    assert_eq!(p.exitcode(), Some(-libc::SIGKILL));
    match p.join() {
        Err(MpError::Signaled { signal, .. }) => assert_eq!(signal, "SIGKILL"),
        other => panic!("expected Signaled, got {other:?}"),
    }

    let early = Process::spawn(|| -> i32 { std::process::exit(7) }).unwrap();
    assert!(early.join_timeout(Duration::from_secs(30)).unwrap());
    assert_eq!(early.exitcode(), Some(7));
    assert!(matches!(
        early.join(),
        Err(MpError::NoResult { code: 7, .. })
    ));

    let ok = Process::spawn(|| ()).unwrap();
    ok.join_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(ok.exitcode(), Some(0));

    // Exit code 0 before any result: for a value that carries data that is a missing
    // result; for `()` it is what a finished child looks like anyway.
    let quiet_exit = Process::spawn(|| -> u8 { std::process::exit(0) }).unwrap();
    assert!(matches!(
        quiet_exit.join(),
        Err(MpError::NoResult { code: 0, .. })
    ));
    let unit_exit = Process::spawn(|| -> () { std::process::exit(0) }).unwrap();
    assert_eq!(unit_exit.join().unwrap(), ());
}

#[test]
fn join_timeout_then_terminate() {
    let _t = common::Track::new(&DONE);
    let p = Process::spawn(|| std::thread::sleep(Duration::from_secs(60))).unwrap();
    assert!(!p.join_timeout(Duration::from_millis(50)).unwrap());
    assert!(p.is_alive());
    p.terminate().unwrap();
    assert!(matches!(p.join(), Err(MpError::Signaled { signal, .. }) if signal == "SIGTERM"));
}

#[test]
fn large_results_do_not_block_the_child() {
    let _t = common::Track::new(&DONE);
    // Much larger than a pipe buffer: the parent must read while it waits.
    let p = Process::spawn(|| vec![7u8; 4 << 20]).unwrap();
    let v = p.join().unwrap();
    assert_eq!(v.len(), 4 << 20);
    assert!(v.iter().all(|&b| b == 7));
}

#[test]
fn dropping_an_unjoined_handle_waits_then_kills() {
    let _t = common::Track::new(&DONE);
    let quick = Process::spawn(|| std::thread::sleep(Duration::from_millis(50))).unwrap();
    let quick_pid = quick.pid();
    drop(quick); // waits for it and reaps it
    assert!(!common::live_children().iter().any(|(p, _)| *p == quick_pid));

    let stuck = ProcessBuilder::new()
        .drop_grace(Duration::from_millis(100))
        .spawn::<_, ()>(|| loop {
            std::thread::sleep(Duration::from_millis(10))
        })
        .unwrap();
    let stuck_pid = stuck.pid();
    let start = Instant::now();
    drop(stuck);
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(!common::live_children().iter().any(|(p, _)| *p == stuck_pid));
}

#[test]
fn the_child_does_not_read_the_parents_stdin() {
    let _t = common::Track::new(&DONE);
    let file_id = |fd: i32| {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
    };
    let parents = file_id(0);
    let p = Process::spawn(|| {
        let mut line = String::new();
        let read = std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| e.to_string());
        // Descriptor 0 stays taken (a file the child opens must not become its stdin),
        // and by another file than the parent's stdin.
        (read, file_id(0))
    })
    .unwrap();
    let (read, childs) = p.join().unwrap();
    assert_eq!(read, Ok(0), "stdin must read as end of file in the child");
    assert!(childs.is_some(), "descriptor 0 must stay open in the child");
    assert_ne!(
        childs, parents,
        "the child's stdin must not be the parent's"
    );
}

#[test]
fn writing_to_stdin_in_the_child_leaves_its_result_intact() {
    let _t = common::Track::new(&DONE);
    let p = Process::spawn(|| {
        use std::io::Write;
        use std::os::fd::FromRawFd;
        // Nobody should, but whatever lands in descriptor 0 must not reach the result.
        let mut stdin = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
        let _ = stdin.write_all(&[0xff; 4096]);
        vec![7u8; 100]
    })
    .unwrap();
    assert_eq!(p.join().unwrap(), vec![7u8; 100]);
    let q = Process::spawn(|| {
        use std::io::Write;
        use std::os::fd::FromRawFd;
        let mut stdin = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
        let _ = stdin.write_all(b"not a result");
    })
    .unwrap();
    q.join().unwrap();
}

#[test]
fn nested_processes_work() {
    let _t = common::Track::new(&DONE);
    let outer = Process::spawn(|| {
        let inner = Process::spawn(|| 21).unwrap();
        inner.join().unwrap() * 2
    })
    .unwrap();
    assert_eq!(outer.join().unwrap(), 42);
}

#[test]
fn zz_no_children_left() {
    common::check_after(&DONE, 11);
}
