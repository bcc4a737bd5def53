//! Serde framing over file descriptors: a little-endian `u32` length, then bincode bytes.

use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::MpError;
use crate::os::fd::{self as os_fd, PollFd, PollFlags};

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
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8], socket: bool) -> Result<(), MpError> {
    while !buf.is_empty() {
        let sent = if socket {
            os_fd::send(fd, buf, true)
        } else {
            os_fd::write(fd, buf)
        };
        match sent {
            Ok(n) => buf = &buf[n..],
            Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {
                return Err(MpError::Eof)
            }
            Err(e) => return Err(MpError::io("write to a pipe or socket", &e)),
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes, or `Eof` if the writer is gone first.
pub(crate) fn read_exact(fd: BorrowedFd<'_>, mut buf: &mut [u8]) -> Result<(), MpError> {
    while !buf.is_empty() {
        match os_fd::read(fd, buf) {
            Ok(0) => return Err(MpError::Eof),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(MpError::Eof),
            Err(e) => return Err(MpError::io("read from a pipe or socket", &e)),
        }
    }
    Ok(())
}

/// Reads one whole frame's payload.
pub(crate) fn read_frame(fd: BorrowedFd<'_>) -> Result<Vec<u8>, MpError> {
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
pub(crate) fn wait_readable(
    fd: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> Result<bool, MpError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        if os_fd::poll(&mut fds, deadline).map_err(|e| MpError::io("poll", &e))? > 0 {
            return Ok(true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
    }
}

/// A connected pair of Unix stream sockets.
pub(crate) fn socketpair() -> Result<(OwnedFd, OwnedFd), MpError> {
    os_fd::socketpair().map_err(|e| MpError::io("create a socket pair", &e))
}

/// A pipe: (read end, write end).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), MpError> {
    os_fd::pipe().map_err(|e| MpError::io("create a pipe", &e))
}

/// Sets or clears O_NONBLOCK.
pub(crate) fn set_nonblocking(fd: impl AsFd, on: bool) -> Result<(), MpError> {
    os_fd::set_nonblocking(fd, on).map_err(|e| MpError::io("make a descriptor non-blocking", &e))
}

/// Reads whatever `fd` (non-blocking) has now onto the end of `buf`. `Ok(true)` at end
/// of file.
pub(crate) fn read_available(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> Result<bool, MpError> {
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

/// One `read` into `buf`'s spare room (grown to at least 64 KiB).
fn read_some(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> Result<Read, MpError> {
    buf.reserve(64 * 1024);
    let room = buf.capacity() - buf.len();
    match os_fd::read_spare(fd, buf) {
        Ok(0) => Ok(Read::Eof),
        Ok(n) => Ok(Read::Bytes { filled: n == room }),
        Err(e) => match e.kind() {
            ErrorKind::WouldBlock => Ok(Read::WouldBlock),
            ErrorKind::ConnectionReset => Ok(Read::Eof),
            _ => Err(MpError::io("read from a pipe or socket", &e)),
        },
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
    pub(crate) fn next_frame(&mut self, fd: BorrowedFd<'_>) -> Result<&[u8], MpError> {
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
                write_all(writer_end.as_fd(), piece, true).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let mut frames = FrameReader::default();
        let fd = reader_end.as_fd();
        assert_eq!(frames.next_frame(fd).unwrap(), b"one");
        assert_eq!(frames.next_frame(fd).unwrap(), b"");
        assert_eq!(frames.next_frame(fd).unwrap(), &[7u8; 100_000][..]);
        writer.join().unwrap();
        assert!(matches!(frames.next_frame(fd), Err(MpError::Eof)));
    }

    #[test]
    fn a_frame_cut_short_by_end_of_file_is_eof_and_a_wild_length_is_refused() {
        let (reader_end, writer_end) = socketpair().unwrap();
        write_all(writer_end.as_fd(), &framed(b"whole")[..6], true).unwrap();
        drop(writer_end);
        let mut frames = FrameReader::default();
        assert!(matches!(
            frames.next_frame(reader_end.as_fd()),
            Err(MpError::Eof)
        ));

        let (reader_end, writer_end) = socketpair().unwrap();
        write_all(writer_end.as_fd(), &u32::MAX.to_le_bytes(), true).unwrap();
        let mut frames = FrameReader::default();
        assert!(matches!(
            frames.next_frame(reader_end.as_fd()),
            Err(MpError::Codec(_))
        ));
    }

    #[test]
    fn read_available_takes_what_is_there_and_reports_end_of_file() {
        let (read_end, write_end) = pipe().unwrap();
        set_nonblocking(&read_end, true).unwrap();
        let mut buf = Vec::new();
        assert!(!read_available(read_end.as_fd(), &mut buf).unwrap());
        assert!(buf.is_empty());
        write_all(write_end.as_fd(), b"abc", false).unwrap();
        assert!(!read_available(read_end.as_fd(), &mut buf).unwrap());
        assert_eq!(buf, b"abc");
        drop(write_end);
        assert!(read_available(read_end.as_fd(), &mut buf).unwrap());
        assert_eq!(buf, b"abc");
    }
}
