//! Processes: fork, `_exit`, reaping, signals, pidfds, and how many threads there are.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub(crate) use nix::sys::signal::Signal;
pub(crate) use nix::unistd::Pid;

/// Which side of a [`fork`] this is.
pub(crate) enum Fork {
    /// The new process.
    Child,
    /// The process that called `fork`, with the child's id.
    Parent(Pid),
}

/// Forks the calling process.
///
/// # Safety
/// The child is a copy of this process with only the calling thread: a lock another thread
/// held at the fork stays held in it for ever. The child must therefore run only code that
/// takes no such lock, must never return into the caller's frames (in evcxr they belong to
/// the kernel's command loop), and must end in [`exit_now`].
#[inline] // see `multiprocessing/fork.rs`: one code region fewer for a fresh child to fault in
pub(crate) unsafe fn fork() -> io::Result<Fork> {
    // SAFETY: the caller takes on fork's contract, stated above.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => Ok(Fork::Child),
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Fork::Parent(child)),
        Err(errno) => Err(errno.into()),
    }
}

/// Ends this process at once with `code`: no destructor, no atexit handler, no flush of
/// std's buffers (flush them first). What a forked child must end with.
#[inline]
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` takes any status and never returns; it runs no code of this process,
    // so no invariant of a Rust value can be broken by skipping its destructor (leaking is
    // safe).
    unsafe { libc::_exit(code) }
}

/// How a reaped child ended: its raw wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exit(i32);

impl Exit {
    /// A child that exited with code 0.
    pub(crate) const CLEAN: Exit = Exit(0);

    /// The exit code, when the child exited rather than was killed.
    pub(crate) fn code(self) -> Option<i32> {
        libc::WIFEXITED(self.0).then(|| libc::WEXITSTATUS(self.0))
    }

    /// The number of the signal that killed the child, if one did.
    pub(crate) fn signal(self) -> Option<i32> {
        libc::WIFSIGNALED(self.0).then(|| libc::WTERMSIG(self.0))
    }

    /// Exited with code 0.
    pub(crate) fn is_clean(self) -> bool {
        self.code() == Some(0)
    }

    /// CPython's exit code convention: the exit code, or minus the signal number.
    pub(crate) fn exitcode(self) -> i32 {
        match self.signal() {
            Some(signal) => -signal,
            None => self.code().unwrap_or(0),
        }
    }

    /// "killed by signal SIGKILL" or "exited with code 3".
    pub(crate) fn describe(self) -> String {
        match self.signal() {
            Some(signal) => format!("killed by signal {}", signal_name(signal)),
            None => format!("exited with code {}", self.code().unwrap_or(0)),
        }
    }

    #[cfg(test)]
    pub(crate) fn from_raw(status: i32) -> Exit {
        Exit(status)
    }
}

/// `SIGKILL` for 9, `signal 40` for a signal without a name.
pub(crate) fn signal_name(signal: i32) -> String {
    match Signal::try_from(signal) {
        Ok(known) => known.as_str().to_string(),
        Err(_) => format!("signal {signal}"),
    }
}

/// Blocks until `pid` has ended and reaps it.
pub(crate) fn wait(pid: Pid) -> io::Result<Exit> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid place for the kernel to write an int; waitpid reads
        // no other memory. (Not nix's waitpid: see the module docs.)
        let r = unsafe { libc::waitpid(pid.as_raw(), &mut status, 0) };
        if r == pid.as_raw() {
            return Ok(Exit(status));
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Sends `signal` to `pid`. A process that has ended already (`ESRCH`) is not an error:
/// it is what the caller wanted. Only for a child this process has not reaped yet, whose
/// pid cannot have been recycled.
pub(crate) fn kill(pid: Pid, signal: Signal) -> io::Result<()> {
    match nix::sys::signal::kill(pid, signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

/// A pidfd: it polls readable when the process has ended, and a signal sent through it
/// can never reach a recycled pid.
#[derive(Debug)]
pub(crate) struct PidFd(OwnedFd);

impl PidFd {
    pub(crate) fn open(pid: Pid) -> io::Result<PidFd> {
        // SAFETY: pidfd_open reads only its two integer arguments.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the call returned a new descriptor that nothing else owns; a descriptor
        // number always fits in an i32.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Sends `signal`; a process that has ended already is not an error.
    pub(crate) fn signal(&self, signal: Signal) -> io::Result<()> {
        // SAFETY: the descriptor is a live pidfd we own; a null siginfo is documented as
        // "like kill(2)", and the flags must be 0.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::ESRCH) {
                return Err(error);
            }
        }
        Ok(())
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// How many threads this process has. This runs at every fork.
///
/// glibc's `__libc_single_threaded` answers for a process that never started a second
/// thread, with no system call. Once a thread was started it stays false, and the count
/// comes from procfs: `/proc/self/task` has one entry per thread, and its link count is
/// that number plus two (one `stat`, about 2 us here).
pub(crate) fn thread_count() -> usize {
    #[cfg(target_env = "gnu")]
    {
        unsafe extern "C" {
            // glibc 2.32 and later (<sys/single_threaded.h>).
            static __libc_single_threaded: libc::c_char;
        }
        // SAFETY: a byte glibc defines for every program and writes only when this process
        // starts its first thread. While it reads true this is the only thread, so nothing
        // writes it during the read; once false it is never written again.
        if unsafe { std::ptr::read_volatile(&raw const __libc_single_threaded) } != 0 {
            return 1;
        }
    }
    match nix::sys::stat::stat("/proc/self/task") {
        Ok(st) => (st.st_nlink as usize).saturating_sub(2).max(1),
        Err(_) => 1,
    }
}

/// The calling thread's kernel id (`gettid`), as the timeline records it.
pub(crate) fn thread_id() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_cpython_reports_them() {
        let killed = Exit::from_raw(9); // WTERMSIG 9, not exited
        assert_eq!((killed.signal(), killed.exitcode()), (Some(9), -9));
        assert_eq!(killed.describe(), "killed by signal SIGKILL");
        let exited = Exit::from_raw(3 << 8);
        assert_eq!((exited.code(), exited.exitcode()), (Some(3), 3));
        assert!(!exited.is_clean() && Exit::from_raw(0).is_clean());
        assert_eq!(signal_name(40), "signal 40");
    }
}
