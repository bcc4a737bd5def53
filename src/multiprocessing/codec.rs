//! Serde framing over file descriptors: a little-endian `u32` length, then bincode bytes.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::MpError;

/// The largest frame we accept, so a corrupt length cannot make us allocate wildly.
pub(crate) const MAX_FRAME: usize = 1 << 30;

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, MpError> {
    Ok(bincode::serialize(value)?)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, MpError> {
    Ok(bincode::deserialize(bytes)?)
}

/// A frame: length prefix plus the encoded value, in one buffer so it goes out in one write.
pub(crate) fn frame<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, MpError> {
    let size = bincode::serialized_size(value)? as usize;
    if size > MAX_FRAME {
        return Err(MpError::Codec(format!(
            "a message of {size} bytes is larger than the 1 GiB limit"
        )));
    }
    let mut buf = Vec::with_capacity(4 + size);
    buf.extend_from_slice(&(size as u32).to_le_bytes());
    bincode::serialize_into(&mut buf, value)?;
    Ok(buf)
}

/// Writes all of `buf`; `send` with MSG_NOSIGNAL on sockets so a vanished reader gives
/// [`MpError::Eof`] instead of a SIGPIPE that would kill this process (the kernel, say).
pub(crate) fn write_all(fd: RawFd, mut buf: &[u8], socket: bool) -> Result<(), MpError> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice for the length given.
        let n = unsafe {
            if socket {
                libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL)
            } else {
                libc::write(fd, buf.as_ptr().cast(), buf.len())
            }
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EPIPE) | Some(libc::ECONNRESET) => return Err(MpError::Eof),
                _ => return Err(MpError::io("write to a pipe or socket", &err)),
            }
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes, or `Eof` if the writer is gone first.
pub(crate) fn read_exact(fd: RawFd, mut buf: &mut [u8]) -> Result<(), MpError> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid mutable slice.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if err.raw_os_error() == Some(libc::ECONNRESET) {
                return Err(MpError::Eof);
            }
            return Err(MpError::io("read from a pipe or socket", &err));
        }
        if n == 0 {
            return Err(MpError::Eof);
        }
        buf = &mut buf[n as usize..];
    }
    Ok(())
}

/// Reads one whole frame's payload.
pub(crate) fn read_frame(fd: RawFd) -> Result<Vec<u8>, MpError> {
    let mut len = [0u8; 4];
    read_exact(fd, &mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(MpError::Codec(format!("a frame claims {len} bytes")));
    }
    let mut buf = vec![0u8; len];
    read_exact(fd, &mut buf)?;
    Ok(buf)
}

/// Waits until `fd` is readable. `None` waits forever. `Ok(false)` on timeout.
pub(crate) fn wait_readable(fd: RawFd, timeout: Option<Duration>) -> Result<bool, MpError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = poll_ms(deadline);
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(MpError::io("poll", &err));
        }
        if r > 0 {
            return Ok(true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
    }
}

/// Milliseconds left until `deadline` for poll(2), rounded up; -1 for no deadline.
pub(crate) fn poll_ms(deadline: Option<Instant>) -> i32 {
    match deadline {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            let ms = left.as_micros().div_ceil(1000);
            ms.min(i32::MAX as u128) as i32
        }
    }
}

/// A connected pair of Unix stream sockets.
pub(crate) fn socketpair() -> Result<(OwnedFd, OwnedFd), MpError> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out array of two ints.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(MpError::os("create a socket pair"));
    }
    // SAFETY: both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pipe: (read end, write end).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), MpError> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(MpError::os("create a pipe"));
    }
    // SAFETY: both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets or clears O_NONBLOCK.
pub(crate) fn set_nonblocking(fd: &impl AsRawFd, on: bool) {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we hold.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        let flags = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        libc::fcntl(fd, libc::F_SETFL, flags);
    }
}

/// Reads whatever is available without blocking (the fd must be non-blocking) into `buf`.
/// Returns `true` at end of file.
pub(crate) fn read_available(fd: RawFd, buf: &mut Vec<u8>) -> Result<bool, MpError> {
    let mut chunk = [0u8; 64 * 1024];
    loop {
        // SAFETY: chunk is a valid buffer.
        let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(false),
                Some(libc::ECONNRESET) => return Ok(true),
                _ => return Err(MpError::io("read from a pipe or socket", &err)),
            }
        }
        if n == 0 {
            return Ok(true);
        }
        buf.extend_from_slice(&chunk[..n as usize]);
        if (n as usize) < chunk.len() {
            return Ok(false);
        }
    }
}

/// Splits one complete frame off the front of `buf`, if there is one.
pub(crate) fn take_frame(buf: &[u8], start: &mut usize) -> Option<(usize, usize)> {
    let avail = &buf[*start..];
    if avail.len() < 4 {
        return None;
    }
    let len = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
    if avail.len() < 4 + len {
        return None;
    }
    let range = (*start + 4, *start + 4 + len);
    *start += 4 + len;
    Some(range)
}
