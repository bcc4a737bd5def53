//! Descriptors: pipes, socket pairs, memory files, reads and writes, `poll`.
//!
//! Every call retries on `EINTR`, so callers see only real outcomes.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag};
use nix::sys::socket::MsgFlags;

pub(crate) use nix::poll::{PollFd, PollFlags};

/// Runs `call` until it is not interrupted by a signal.
fn retry<T>(mut call: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// A pipe: (read end, write end), both close-on-exec.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// A connected pair of Unix stream sockets, both close-on-exec.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType};
    Ok(nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// `/dev/null` opened with `O_PATH` (see `multiprocessing/fork.rs` for why).
pub(crate) fn dev_null_path() -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(
        c"/dev/null",
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?)
}

/// Makes descriptor 0 a copy of `fd` (without close-on-exec, as a real stdin has it).
pub(crate) fn set_stdin(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(nix::unistd::dup2_stdin(fd)?)
}

/// Descriptor 1 sent to `/dev/null` while it lives; see [`silence_stdout`].
pub(crate) struct SilencedStdout {
    _private: (),
}

/// The silences that overlap (explore runs on several threads at once, as a test harness
/// runs them) share one redirection: how many there are, and descriptor 1 as it was
/// before the first. Saved by the first and put back by the last, whatever order they end
/// in; one silence saving another's `/dev/null` would leave stdout silenced for good.
static SILENCES: std::sync::Mutex<Option<(usize, OwnedFd)>> = std::sync::Mutex::new(None);

/// Sends descriptor 1 to `/dev/null` until the last overlapping guard is dropped.
pub(crate) fn silence_stdout() -> io::Result<SilencedStdout> {
    use std::io::Write;
    let mut silences = SILENCES.lock().unwrap_or_else(|e| e.into_inner());
    match silences.as_mut() {
        Some((count, _)) => *count += 1,
        None => {
            io::stdout().flush()?;
            let saved = nix::unistd::dup(io::stdout())?;
            let null = nix::fcntl::open(
                c"/dev/null",
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )?;
            nix::unistd::dup2_stdout(&null)?;
            *silences = Some((1, saved));
        }
    }
    Ok(SilencedStdout { _private: () })
}

impl Drop for SilencedStdout {
    fn drop(&mut self) {
        use std::io::Write;
        let mut silences = SILENCES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((count, _)) = silences.as_mut() {
            *count -= 1;
            if *count == 0 {
                let _ = io::stdout().flush();
                if let Some((_, saved)) = silences.take() {
                    let _ = nix::unistd::dup2_stdout(&saved);
                }
            }
        }
    }
}

/// Closes descriptor 0, whatever it is.
pub(crate) fn close_stdin() {
    let _ = nix::unistd::close(0);
}

/// An anonymous memory file, close-on-exec.
pub(crate) fn memfd(name: &CStr) -> io::Result<OwnedFd> {
    use nix::sys::memfd::MFdFlags;
    Ok(nix::sys::memfd::memfd_create(name, MFdFlags::MFD_CLOEXEC)?)
}

/// Moves the file position of `fd` to `offset`.
pub(crate) fn seek_to(fd: impl AsFd, offset: u64) -> io::Result<()> {
    let offset = libc::off64_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
    nix::unistd::lseek64(fd, offset, nix::unistd::Whence::SeekSet)?;
    Ok(())
}

/// Cuts a file to `len` bytes.
pub(crate) fn truncate(fd: impl AsFd, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EINVAL)?;
    Ok(nix::unistd::ftruncate(fd, len)?)
}

/// Frees the storage of `len` bytes at `offset` of a file, keeping its size.
pub(crate) fn punch_hole(fd: impl AsFd, offset: u64, len: u64) -> io::Result<()> {
    use nix::fcntl::FallocateFlags;
    let offset = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EINVAL)?;
    Ok(nix::fcntl::fallocate(
        fd,
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        offset,
        len,
    )?)
}

/// Sets or clears `O_NONBLOCK`.
pub(crate) fn set_nonblocking(fd: impl AsFd, on: bool) -> io::Result<()> {
    let fd = fd.as_fd();
    let flags = OFlag::from_bits_retain(nix::fcntl::fcntl(fd, FcntlArg::F_GETFL)?);
    let flags = if on {
        flags | OFlag::O_NONBLOCK
    } else {
        flags & !OFlag::O_NONBLOCK
    };
    nix::fcntl::fcntl(fd, FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// One `read` into `buf`; 0 at end of file.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| nix::unistd::read(fd, buf))
}

/// One `read` into the spare capacity of `buf`, which grows by what was read; 0 at end of
/// file. No zeroed scratch buffer and no copy, which matters on the pool's per-task path.
pub(crate) fn read_spare(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let n = loop {
        // SAFETY: `spare` is writable memory of the length given, owned by `buf` and not
        // aliased during the call; `read` writes at most that many bytes. (nix's read
        // takes `&mut [u8]`, which uninitialised memory must not become.)
        let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        if n >= 0 {
            break n.unsigned_abs();
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    };
    // SAFETY: the kernel initialised the first `n` spare bytes (n <= spare.len()).
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// One `write`; how many bytes went out.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    retry(|| nix::unistd::write(fd, buf))
}

/// One `send` on a socket with `MSG_NOSIGNAL`, so a vanished reader gives `BrokenPipe`
/// instead of a SIGPIPE that would kill this process (the kernel, say). `wait: false`
/// adds `MSG_DONTWAIT`.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8], wait: bool) -> io::Result<usize> {
    let mut flags = MsgFlags::MSG_NOSIGNAL;
    if !wait {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    retry(|| nix::sys::socket::send(fd.as_raw_fd(), buf, flags))
}

/// One positioned read; 0 at end of file.
pub(crate) fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let offset = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
    retry(|| nix::sys::uio::pread(fd, buf, offset))
}

/// One positioned write; how many bytes went out.
pub(crate) fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> io::Result<usize> {
    let offset = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
    retry(|| nix::sys::uio::pwrite(fd, buf, offset))
}

/// Writes all of `buf` at `offset`.
pub(crate) fn pwrite_all(fd: BorrowedFd<'_>, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = pwrite(fd, buf, offset)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// `poll` until `deadline` (`None`: no deadline): how many descriptors have events. An
/// interrupted poll returns 0, as a timeout does: callers look at the clock and their
/// descriptors again either way.
pub(crate) fn poll(fds: &mut [PollFd<'_>], deadline: Option<Instant>) -> io::Result<usize> {
    use nix::poll::PollTimeout;
    let timeout = match deadline {
        None => PollTimeout::NONE,
        Some(d) => {
            // Rounded up, so a wait never ends just before its deadline.
            let ms = d
                .saturating_duration_since(Instant::now())
                .as_micros()
                .div_ceil(1000);
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    };
    match nix::poll::poll(fds, timeout) {
        Ok(n) => Ok(n as usize),
        Err(Errno::EINTR) => Ok(0),
        Err(errno) => Err(errno.into()),
    }
}

/// Whether `fd` had any event in the last [`poll`].
pub(crate) fn has_events(fd: &PollFd<'_>) -> bool {
    fd.revents().is_some_and(|events| !events.is_empty())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    /// The file descriptor 1 is open on, as (device, inode).
    fn stdout_file() -> (u64, u64) {
        let meta = std::fs::metadata("/proc/self/fd/1").expect("descriptor 1 is open");
        (meta.dev(), meta.ino())
    }

    #[test]
    fn overlapping_silences_put_stdout_back_whatever_order_they_end_in() {
        let before = stdout_file();
        let null = std::fs::metadata("/dev/null").unwrap();
        let first = super::silence_stdout().unwrap();
        let second = super::silence_stdout().unwrap();
        drop(first);
        assert_eq!(stdout_file(), (null.dev(), null.ino()), "still silenced");
        drop(second);
        assert_eq!(stdout_file(), before);
    }
}
