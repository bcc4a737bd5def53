//! Child hygiene: everything that happens around `fork()`.
//!
//! Inside evcxr a forked child runs in the kernel's own process image. If it returned from
//! the cell it would go on in the kernel's command loop, reading the kernel's stdin. So
//! the child gets a stdin that reads as end of file, runs its body under `catch_unwind`,
//! flushes stdout and stderr and ends with `_exit`: no destructor or exit handler of the
//! parent runs in it. Its panic hook is its own (the child is a separate process, so
//! replacing the process-wide hook there touches nobody else) and prints a line of our
//! format, never `thread 'main' panicked at`, which the notebook runner reads as a failed
//! cell.

use std::any::Any;
use std::cell::Cell;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::MpError;

/// How many threads this process has. This runs at every fork.
///
/// glibc's `__libc_single_threaded` answers for a process that never started a second
/// thread, with no system call. Once a thread was started it stays false, and the count
/// comes from procfs: `/proc/self/task` has one entry per thread, and its link count is
/// that number plus two (one `stat`, about 2 us here).
pub(crate) fn thread_count() -> usize {
    #[cfg(target_env = "gnu")]
    {
        extern "C" {
            // glibc 2.32 and later (<sys/single_threaded.h>).
            static __libc_single_threaded: libc::c_char;
        }
        // SAFETY: a byte glibc writes when this process starts its first thread. While it
        // reads true this is the only thread, so nothing writes it during the read.
        if unsafe { std::ptr::read_volatile(&raw const __libc_single_threaded) } != 0 {
            return 1;
        }
    }
    // SAFETY: stat into a zeroed struct with a static path.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::stat(c"/proc/self/task".as_ptr(), &mut st) } < 0 {
        return 1;
    }
    (st.st_nlink as usize).saturating_sub(2).max(1)
}

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

/// Forks. `Ok(0)` in the child, the child's pid in the parent. In the child, descriptor 0
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
pub(crate) unsafe fn fork_raw(stdin: Option<BorrowedFd<'_>>) -> Result<libc::pid_t, MpError> {
    flush_std();
    let null = match stdin {
        Some(_) => -1,
        // SAFETY: a plain open; the descriptor is closed on both sides below.
        None => unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) },
    };
    let new_stdin = stdin.map_or(null, |fd| fd.as_raw_fd());
    // SAFETY: the caller upholds fork's contract (see above).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: descriptor juggling in the child on descriptors it owns; dup2 clears
        // close-on-exec on the copy, as a real stdin has it.
        unsafe {
            if new_stdin >= 0 {
                libc::dup2(new_stdin, 0);
            } else {
                libc::close(0);
            }
            if null >= 0 {
                libc::close(null);
            }
        }
        return Ok(0);
    }
    // Read errno before close can touch it.
    let outcome = if pid < 0 {
        Err(MpError::os("fork a child process"))
    } else {
        Ok(pid)
    };
    if null >= 0 {
        // SAFETY: the parent's copy, opened above.
        unsafe { libc::close(null) };
    }
    outcome
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
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    // SAFETY: set by `child_enter`, whose caller keeps it in place until `child_exit`.
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
    // SAFETY: _exit never returns and runs nothing of the parent's.
    unsafe { libc::_exit(code) }
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

/// A pidfd for `pid`: it polls readable when the process has ended, and signals sent
/// through it can never hit a recycled pid.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> Result<OwnedFd, MpError> {
    // SAFETY: the syscall returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(MpError::os("open a pidfd for the child"));
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `sig` through a pidfd.
pub(crate) fn pidfd_signal(pidfd: &OwnedFd, sig: i32) -> Result<(), MpError> {
    // SAFETY: the pidfd is valid; a null siginfo is allowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        let err = std::io::Error::last_os_error();
        // ESRCH: it has already ended, which is what the caller wanted.
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(MpError::io("send a signal to the child", &err));
    }
    Ok(())
}

/// Blocks until `pid` has ended and returns its raw wait status.
pub(crate) fn reap(pid: libc::pid_t) -> Result<i32, MpError> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(MpError::io("wait for the child", &err));
        }
    }
}

/// CPython's exit code convention: the exit status, or minus the signal number.
pub(crate) fn exitcode(status: i32) -> i32 {
    if libc::WIFSIGNALED(status) {
        -libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

/// `SIGKILL` for 9, and so on.
pub(crate) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// "killed by signal SIGKILL" or "exited with code 3".
pub(crate) fn describe_status(status: i32) -> String {
    if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", signal_name(libc::WTERMSIG(status)))
    } else {
        format!("exited with code {}", libc::WEXITSTATUS(status))
    }
}
