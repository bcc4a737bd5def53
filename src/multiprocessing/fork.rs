//! Child hygiene: everything that happens around `fork()`.
//!
//! Inside evcxr a forked child runs in the kernel's own process image. If it returned from
//! the cell it would go on in the kernel's command loop, reading the kernel's stdin
//! (ARCHITECTURE.md, "A forked child must end with `_exit`"). So
//! the child gets a stdin that reads as end of file, runs its body under `catch_unwind`,
//! flushes stdout and stderr and ends with `_exit`: no destructor or exit handler of the
//! parent runs in it. Its panic hook is its own (the child is a separate process, so
//! replacing the process-wide hook there touches nobody else) and prints a line of our
//! format, never `thread 'main' panicked at`, which the notebook runner reads as a failed
//! cell.

use std::any::Any;
use std::cell::Cell;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};

use super::MpError;
use crate::os::fd;
use crate::os::process::{self, Fork};

pub(crate) use crate::os::process::{thread_count, Exit, Pid};

/// Prints CPython 3.12's warning (gh-100228) when other threads exist at a fork.
pub(crate) fn warn_if_threads(what: &str) {
    let n = thread_count();
    if n > 1 {
        eprintln!(
            "conclab: warning: {what} forks while this process has {n} threads. fork() copies \
             only the calling thread, so a lock another thread holds right now (inside malloc, \
             stdout or your own code) stays locked forever in the child, which can deadlock. \
             Fork before starting threads, or join them first."
        );
    }
}

/// Flushes buffered stdout, so the child does not print a copy of the parent's pending
/// output too (stderr is unbuffered).
#[inline] // see `fork_raw`
pub(crate) fn flush_std() {
    let _ = std::io::stdout().flush();
}

/// Forks. `Ok(None)` in the child, the child's pid in the parent. In the child, descriptor 0
/// is already `stdin`, or `/dev/null` when that is `None`: never the parent's stdin, which
/// in evcxr is the kernel's command pipe.
///
/// Every descriptor open at the fork is one more file for the child's exit to let go of,
/// so [`Process`](super::Process) passes its result file, positioned where reads find the
/// end of the file, rather than have another opened (measured in a fork loop: the
/// `/dev/null` path cost 5 to 8 us more per start).
///
/// `/dev/null` is opened here in the parent, before the fork, and the child only moves it
/// onto descriptor 0: opening a file in a fresh child costs a path walk plus the faults of
/// code the child has not run yet (measured in a fork loop: about 15 us in the child against
/// 10 in the parent).
/// It is opened with `O_PATH`, which skips the device's own open and the security hooks
/// on it: reading it fails with `EBADF`, which Rust's `stdin()` reports as end of file, as
/// it would for a plain `/dev/null`, and descriptor 0 stays taken, so no file the child
/// opens later becomes its stdin. Should the open fail, the child closes its stdin instead.
///
/// # Safety
/// The child must end with [`child_exit`] and never return into the caller's frames.
// Inlined, as are the other functions a child runs here, into the caller's generic
// spawn, which sits in the crate that instantiates it next to the child's own code: a
// fresh child faults in every code region it runs, and one region fewer was about 4 us
// less per start in a fork loop.
#[inline]
pub(crate) unsafe fn fork_raw(stdin: Option<BorrowedFd<'_>>) -> Result<Option<Pid>, MpError> {
    flush_std();
    // Dropped on both sides of the fork: the child keeps only its copy on descriptor 0.
    let null = match stdin {
        Some(_) => None,
        None => fd::dev_null_path().ok(),
    };
    let new_stdin = stdin.or_else(|| null.as_ref().map(|fd| fd.as_fd()));
    // SAFETY: the caller upholds fork's contract (see above).
    match unsafe { process::fork() } {
        Ok(Fork::Child) => {
            // dup2 clears close-on-exec on the copy, as a real stdin has it.
            match new_stdin {
                Some(fd) if fd::set_stdin(fd).is_ok() => {}
                _ => fd::close_stdin(),
            }
            Ok(None)
        }
        Ok(Fork::Parent(pid)) => Ok(Some(pid)),
        Err(error) => Err(MpError::io("fork a child process", &error)),
    }
}

/// What a forked child's panic hook reports and records.
///
/// It lives in the child's outermost frame, which ends only in [`child_exit`]. The hook
/// reaches it through `CHILD`, so the hook closure captures nothing: boxing a zero-sized
/// closure allocates nothing, and every allocation or page written in a fresh child is a
/// copy-on-write fault (measured in a fork loop: a hook capturing an `Arc<Mutex<..>>` slot
/// cost about 13 us more than one capturing nothing).
pub(crate) struct ChildInfo {
    kind: &'static str,
    name: Option<String>,
    /// The last panic of the child's main thread: message and location.
    main_panic: Cell<Option<String>>,
}

impl ChildInfo {
    #[inline] // see `fork_raw`
    pub(crate) fn new(kind: &'static str, name: Option<String>) -> Self {
        Self {
            kind,
            name,
            main_panic: Cell::new(None),
        }
    }

    /// The message of the main thread's panic, once it was caught.
    pub(crate) fn take_panic(&self) -> Option<String> {
        self.main_panic.take()
    }
}

std::thread_local! {
    /// The running child's [`ChildInfo`], on the child's main thread; null on every other
    /// thread and in every process that is not a conclab child. Thread-local because only
    /// the main thread's panic is the child's result: a helper thread the child starts
    /// reports its own panic through its own join.
    static CHILD: Cell<*const ChildInfo> = const { Cell::new(std::ptr::null()) };
}

/// First step in a child after [`fork_raw`]: our own panic hook.
///
/// # Safety
/// `info` must stay where it is until the child calls [`child_exit`].
#[inline] // see `fork_raw`
pub(crate) unsafe fn child_enter(info: &ChildInfo) {
    CHILD.with(|child| child.set(info));
    std::panic::set_hook(Box::new(report_child_panic));
}

fn report_child_panic(info: &std::panic::PanicHookInfo<'_>) {
    let message = payload_str(info.payload());
    let at = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let pid = std::process::id();
    // SAFETY: set by `child_enter`, whose caller keeps it in place until `child_exit`,
    // and only ever read on this thread.
    match unsafe { CHILD.with(Cell::get).as_ref() } {
        Some(child) => {
            let name = child
                .name
                .clone()
                .unwrap_or_else(|| format!("Process-{pid}"));
            eprintln!(
                "conclab: {} '{name}' (pid {pid}) panicked: {message}{at}",
                child.kind
            );
            child.main_panic.set(Some(format!("{message}{at}")));
        }
        // Another thread the child started: its panic comes back from its own join.
        None => eprintln!("conclab: a thread of process {pid} panicked: {message}{at}"),
    }
}

/// Last step in a child: flush and `_exit`, skipping every destructor and atexit handler.
#[inline] // see `fork_raw`
pub(crate) fn child_exit(code: i32) -> ! {
    flush_std();
    CHILD.with(|child| child.set(std::ptr::null()));
    process::exit_now(code)
}

/// The text of a panic payload.
pub(crate) fn payload_str(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// A pidfd for the child `pid`.
pub(crate) fn pidfd_open(pid: Pid) -> Result<process::PidFd, MpError> {
    process::PidFd::open(pid).map_err(|e| MpError::io("open a pidfd for the child", &e))
}

/// Blocks until the child `pid` has ended and reaps it.
pub(crate) fn reap(pid: Pid) -> Result<Exit, MpError> {
    process::wait(pid).map_err(|e| MpError::io("wait for the child", &e))
}
