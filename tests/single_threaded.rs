//! Checks that need a process with a single thread and an uncaptured stderr: the warning
//! `Process::spawn` prints when it forks beside other threads (and only then), and what a
//! panicking child prints and returns, with the parent's own panic hook left alone.
//!
//! A test binary of its own without libtest's harness (`harness = false` in Cargo.toml):
//! libtest runs every test on a thread of its own and captures `eprintln!`, so inside it a
//! process is never single-threaded and the warning never reaches file descriptor 2.

use conclab::multiprocessing::{MpError, Process};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `body` with file descriptor 2 sent into a pipe; returns what it wrote there.
fn stderr_of(body: impl FnOnce()) -> String {
    let mut fds = [0; 2];
    // SAFETY: a fresh pipe; both ends are owned below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: descriptors just returned by pipe and dup, each owned once.
    let (read_end, write_end, saved) = unsafe {
        (
            OwnedFd::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
            OwnedFd::from_raw_fd(libc::dup(2)),
        )
    };
    // SAFETY: plain descriptor juggling on descriptors we own.
    unsafe { libc::dup2(write_end.as_raw_fd(), 2) };
    body();
    // SAFETY: as above; closing every write end lets the read below see end of file.
    unsafe { libc::dup2(saved.as_raw_fd(), 2) };
    drop(write_end);
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: a valid buffer and descriptor.
        let n = unsafe { libc::read(read_end.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        text.extend_from_slice(&buf[..n.unsigned_abs()]);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Panics the parent's own hook has seen.
static PARENT_HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Panics in the parent (caught) and says whether the parent's own hook reported it.
fn parent_hook_still_runs() -> bool {
    let before = PARENT_HOOK_CALLS.load(Ordering::SeqCst);
    let mut caught = Ok(());
    stderr_of(|| caught = std::panic::catch_unwind(|| panic!("the parent's own panic")));
    caught.is_err() && PARENT_HOOK_CALLS.load(Ordering::SeqCst) == before + 1
}

/// A child that panics: its report is in conclab's format, never the default hook's
/// `thread 'main' panicked` (which the notebook runner reads as a failed cell), the
/// message comes back to `join`, and the parent's own hook still runs afterwards.
fn child_panics_are_reported_and_the_parents_hook_survives(round: &str) {
    let mut result = None;
    let printed = stderr_of(|| {
        result = Some(
            Process::spawn(|| -> u8 { panic!("boom in the child") }).map(|p| (p.pid(), p.join())),
        );
    });
    let (pid, joined) = result.unwrap().unwrap();
    match joined {
        Err(MpError::Panicked { message, .. }) => {
            assert!(
                message.starts_with("boom in the child at "),
                "{round}: {message}"
            );
            assert!(
                message.contains("single_threaded.rs:"),
                "{round}: {message}"
            );
        }
        other => panic!("{round}: expected a panic, got {other:?}"),
    }
    assert!(
        printed.contains(&format!(
            "conclab: process 'Process-{pid}' (pid {pid}) panicked: boom in the child"
        )),
        "{round}: {printed:?}"
    );
    assert!(
        !printed.contains("thread 'main' panicked"),
        "{round}: {printed:?}"
    );
    assert!(
        !printed.contains("the parent's hook"),
        "{round}: the parent's hook ran in the child: {printed:?}"
    );
    assert!(
        parent_hook_still_runs(),
        "{round}: the parent's own hook is gone"
    );
    // A child that does not panic leaves it in place too.
    assert_eq!(Process::spawn(|| 5).unwrap().join().unwrap(), 5);
    assert!(
        parent_hook_still_runs(),
        "{round}: the parent's own hook is gone"
    );
}

fn main() {
    std::panic::set_hook(Box::new(|_| {
        PARENT_HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
        eprintln!("the parent's hook");
    }));
    let mut checks = 0;

    let alone = stderr_of(|| assert_eq!(Process::spawn(|| 1).unwrap().join().unwrap(), 1));
    assert!(alone.is_empty(), "a single-threaded fork warned: {alone}");
    checks += 1;
    child_panics_are_reported_and_the_parents_hook_survives("never threaded");
    checks += 1;

    let (stop, wait) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let _ = wait.recv();
    });
    let warned = stderr_of(|| assert_eq!(Process::spawn(|| 2).unwrap().join().unwrap(), 2));
    assert!(
        warned.contains("Process::spawn forks while this process has 2 threads"),
        "no warning: {warned:?}"
    );
    assert!(warned.contains("can deadlock"), "{warned}");
    checks += 1;
    let _ = stderr_of(|| child_panics_are_reported_and_the_parents_hook_survives("two threads"));
    checks += 1;
    drop(stop);
    other.join().unwrap();
    // `join` returns once the thread's stack is free, which can be a moment before the
    // kernel drops the thread from `/proc/self/task`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir("/proc/self/task").unwrap().count() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the other thread never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }

    // One thread again, now counted through procfs: no warning.
    let after = stderr_of(|| assert_eq!(Process::spawn(|| 3).unwrap().join().unwrap(), 3));
    assert!(
        after.is_empty(),
        "a fork after the other thread ended warned: {after}"
    );
    checks += 1;
    child_panics_are_reported_and_the_parents_hook_survives("threads joined");
    checks += 1;
    println!("single_threaded: {checks} checks passed");
}
