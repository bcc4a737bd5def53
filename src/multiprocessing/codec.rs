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

/// Reads whatever `fd` (non-blocking) has now onto the end of `buf`. `Ok(true)` at end
/// of file.
pub(crate) fn read_available(fd: RawFd, buf: &mut Vec<u8>) -> Result<bool, MpError> {
    loop {
        match read_some(fd, buf)? {
            Read::Eof => return Ok(true),
            Read::WouldBlock => return Ok(false),
            // A short read means the pipe is empty now: spare the call that says so.
            Read::Bytes { filled: false } => return Ok(false),
            Read::Bytes { filled: true } => {}
        }
    }
}

enum Read {
    Bytes { filled: bool },
    WouldBlock,
    Eof,
}

/// One `read` into `buf`'s spare room (grown to at least 64 KiB): no zeroed scratch
/// buffer and no copy, which matters on the pool's per-task path.
fn read_some(fd: RawFd, buf: &mut Vec<u8>) -> Result<Read, MpError> {
    buf.reserve(64 * 1024);
    let spare = buf.spare_capacity_mut();
    loop {
        // SAFETY: `spare` is writable memory of the length given; `read` writes at most
        // that many bytes and returns how many it wrote.
        let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => Ok(Read::WouldBlock),
                Some(libc::ECONNRESET) => Ok(Read::Eof),
                _ => Err(MpError::io("read from a pipe or socket", &err)),
            };
        }
        if n == 0 {
            return Ok(Read::Eof);
        }
        let n = n.unsigned_abs();
        let filled = n == spare.len();
        // SAFETY: the kernel initialised the first `n` spare bytes.
        unsafe { buf.set_len(buf.len() + n) };
        return Ok(Read::Bytes { filled });
    }
}

/// Reads frames from a blocking descriptor that only this process reads, with one `read`
/// per batch of whatever has arrived instead of two per frame (length, then body).
#[derive(Default)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    /// The next frame's payload; `Eof` when the writer is gone.
    pub(crate) fn next_frame(&mut self, fd: RawFd) -> Result<&[u8], MpError> {
        loop {
            let mut at = self.start;
            if let Some((a, b)) = take_frame(&self.buf, &mut at) {
                self.start = at;
                return Ok(&self.buf[a..b]);
            }
            if let Some(len) = self.buf.get(self.start..self.start + 4) {
                let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
                if len > MAX_FRAME {
                    return Err(MpError::Codec(format!("a frame claims {len} bytes")));
                }
            }
            // Keep the buffer from growing without end: drop the frames already taken.
            self.buf.drain(..self.start);
            self.start = 0;
            match read_some(fd, &mut self.buf)? {
                Read::Eof => return Err(MpError::Eof),
                Read::WouldBlock => wait_readable(fd, None).map(|_| ())?,
                Read::Bytes { .. } => {}
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn frames_come_out_whole_however_the_bytes_arrive() {
        let (reader_end, writer_end) = socketpair().unwrap();
        let mut bytes = framed(b"one");
        bytes.extend(framed(b""));
        bytes.extend(framed(&[7u8; 100_000]));
        let writer = std::thread::spawn(move || {
            // Pieces that cut through a length prefix and through a body.
            for piece in bytes.chunks(3).take(4).chain(bytes[12..].chunks(40_000)) {
                write_all(writer_end.as_raw_fd(), piece, true).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let mut frames = FrameReader::default();
        let fd = reader_end.as_raw_fd();
        assert_eq!(frames.next_frame(fd).unwrap(), b"one");
        assert_eq!(frames.next_frame(fd).unwrap(), b"");
        assert_eq!(frames.next_frame(fd).unwrap(), &[7u8; 100_000][..]);
        writer.join().unwrap();
        assert!(matches!(frames.next_frame(fd), Err(MpError::Eof)));
    }

    #[test]
    fn a_frame_cut_short_by_end_of_file_is_eof_and_a_wild_length_is_refused() {
        let (reader_end, writer_end) = socketpair().unwrap();
        write_all(writer_end.as_raw_fd(), &framed(b"whole")[..6], true).unwrap();
        drop(writer_end);
        let mut frames = FrameReader::default();
        assert!(matches!(
            frames.next_frame(reader_end.as_raw_fd()),
            Err(MpError::Eof)
        ));

        let (reader_end, writer_end) = socketpair().unwrap();
        write_all(writer_end.as_raw_fd(), &u32::MAX.to_le_bytes(), true).unwrap();
        let mut frames = FrameReader::default();
        assert!(matches!(
            frames.next_frame(reader_end.as_raw_fd()),
            Err(MpError::Codec(_))
        ));
    }

    #[test]
    fn read_available_takes_what_is_there_and_reports_end_of_file() {
        let (read_end, write_end) = pipe().unwrap();
        set_nonblocking(&read_end, true);
        let mut buf = Vec::new();
        assert!(!read_available(read_end.as_raw_fd(), &mut buf).unwrap());
        assert!(buf.is_empty());
        write_all(write_end.as_raw_fd(), b"abc", false).unwrap();
        assert!(!read_available(read_end.as_raw_fd(), &mut buf).unwrap());
        assert_eq!(buf, b"abc");
        drop(write_end);
        assert!(read_available(read_end.as_raw_fd(), &mut buf).unwrap());
        assert_eq!(buf, b"abc");
    }
}
