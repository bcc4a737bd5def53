//! `Pipe` and `Connection`: typed messages over a Unix socket pair.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use crate::sync::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec;
use super::MpError;

/// Python's `multiprocessing.Pipe()`: a pair of connected [`Connection`]s.
///
/// ```
/// use conclab::multiprocessing::{Pipe, Process};
///
/// let (parent, child) = Pipe::new().unwrap();
/// let p = Process::spawn(move || {
///     let text: String = child.recv().unwrap();
///     child.send(&(text.to_uppercase() + " PROCESSED!")).unwrap();
/// })
/// .unwrap();
/// parent.send(&"hello from the main process").unwrap();
/// let answer: String = parent.recv().unwrap();
/// assert_eq!(answer, "HELLO FROM THE MAIN PROCESS PROCESSED!");
/// p.join().unwrap();
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Pipe;

impl Pipe {
    /// A duplex pair: both ends can send and receive (Python's `Pipe()`).
    ///
    /// ```
    /// let (a, b) = conclab::multiprocessing::Pipe::new().unwrap();
    /// a.send(&1u32).unwrap();
    /// b.send(&2u32).unwrap();
    /// assert_eq!(b.recv::<u32>().unwrap(), 1);
    /// assert_eq!(a.recv::<u32>().unwrap(), 2);
    /// ```
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<(Connection, Connection), MpError> {
        let (a, b) = codec::socketpair()?;
        Ok((Connection::from_fd(a), Connection::from_fd(b)))
    }
}

/// One end of a [`Pipe`]: `send` and `recv` any serde type, length-prefixed.
///
/// Within one process a `Connection` may be shared by threads (sends are serialised by a
/// lock, as are receives). Two processes using the same end at once, as in Python, can
/// interleave their bytes: give each end to one process.
pub struct Connection {
    fd: OwnedFd,
    send_lock: Mutex<()>,
    recv_lock: Mutex<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

impl Connection {
    fn from_fd(fd: OwnedFd) -> Connection {
        Connection {
            fd,
            send_lock: Mutex::new(()),
            recv_lock: Mutex::new(()),
        }
    }

    /// Sends one value; blocks only while the socket buffer is full.
    /// [`MpError::Eof`] if the other end is closed.
    ///
    /// ```
    /// use conclab::multiprocessing::{MpError, Pipe};
    /// let (a, b) = Pipe::new().unwrap();
    /// drop(b);
    /// assert_eq!(a.send(&"anyone there?"), Err(MpError::Eof));
    /// ```
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), MpError> {
        let frame = codec::frame(value)?;
        let _guard = self.send_lock.lock();
        codec::write_all(self.fd.as_fd(), &frame, true)
    }

    /// Receives one value, blocking until it arrives. [`MpError::Eof`] once the other end
    /// is closed and everything it sent has been read.
    ///
    /// ```
    /// use conclab::multiprocessing::{MpError, Pipe};
    /// let (a, b) = Pipe::new().unwrap();
    /// a.send(&vec![1, 2, 3]).unwrap();
    /// drop(a);
    /// assert_eq!(b.recv::<Vec<i32>>().unwrap(), vec![1, 2, 3]);
    /// assert_eq!(b.recv::<Vec<i32>>(), Err(MpError::Eof));
    /// ```
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, MpError> {
        let _guard = self.recv_lock.lock();
        let bytes = codec::read_frame(self.fd.as_fd())?;
        codec::decode(&bytes)
    }

    /// Receives one value, waiting at most `timeout` ([`MpError::Timeout`] after that).
    ///
    /// ```
    /// use conclab::multiprocessing::{MpError, Pipe};
    /// use std::time::Duration;
    /// let (a, _b) = Pipe::new().unwrap();
    /// let r = a.recv_timeout::<i32>(Duration::from_millis(10));
    /// assert!(matches!(r, Err(MpError::Timeout(_))));
    /// ```
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T, MpError> {
        let _guard = self.recv_lock.lock();
        if !codec::wait_readable(self.fd.as_fd(), Some(timeout))? {
            return Err(MpError::Timeout(timeout));
        }
        let bytes = codec::read_frame(self.fd.as_fd())?;
        codec::decode(&bytes)
    }

    /// Whether there is something to read (a message, or end of file) within `timeout`;
    /// `None` waits forever (Python's `poll(timeout)`).
    ///
    /// ```
    /// use conclab::multiprocessing::Pipe;
    /// use std::time::Duration;
    /// let (a, b) = Pipe::new().unwrap();
    /// assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    /// a.send(&7u8).unwrap();
    /// assert!(b.poll(Some(Duration::from_secs(5))).unwrap());
    /// ```
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool, MpError> {
        codec::wait_readable(self.fd.as_fd(), timeout)
    }

    /// Closes this end (Python's `close()`); the other end then sees [`MpError::Eof`].
    /// Dropping does the same.
    ///
    /// ```
    /// use conclab::multiprocessing::{MpError, Pipe};
    /// let (a, b) = Pipe::new().unwrap();
    /// a.close();
    /// assert_eq!(b.recv::<u8>(), Err(MpError::Eof));
    /// ```
    pub fn close(self) {}
}
