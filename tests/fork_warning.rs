//! `Process::spawn` warns when it forks a process that has other threads, and only then.
//!
//! A test binary of its own without libtest's harness (`harness = false` in Cargo.toml):
//! libtest runs every test on a thread of its own and captures `eprintln!`, so inside it a
//! process is never single-threaded and the warning never reaches file descriptor 2.

use conclab::multiprocessing::Process;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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

fn main() {
    let alone = stderr_of(|| assert_eq!(Process::spawn(|| 1).unwrap().join().unwrap(), 1));
    assert!(alone.is_empty(), "a single-threaded fork warned: {alone}");

    let (stop, wait) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let _ = wait.recv();
    });
    let warned = stderr_of(|| assert_eq!(Process::spawn(|| 2).unwrap().join().unwrap(), 2));
    drop(stop);
    other.join().unwrap();
    assert!(
        warned.contains("Process::spawn forks while this process has 2 threads"),
        "no warning: {warned:?}"
    );
    assert!(warned.contains("can deadlock"), "{warned}");
    println!("fork_warning: 2 checks passed");
}
