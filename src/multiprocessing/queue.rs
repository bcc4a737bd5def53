//! `Queue` and `JoinableQueue` across processes.
//!
//! ## Design: a log in a memfd, guarded by a robust lock in shared memory
//!
//! The items live in an anonymous memory file (`memfd_create`), made before the fork so
//! every child holds the same file. A small shared header keeps the read and write
//! offsets, the item count, a robust process-shared mutex and three futex condition
//! variables (not empty, not full, all tasks done).
//!
//! * `put` encodes the item, takes the lock, writes `[u32 length][bytes]` at the tail with
//!   one `pwrite`, advances the tail and wakes a getter. The item is in the kernel's page
//!   cache when `put` returns, so a child may exit (and be joined) right away: there is no
//!   feeder thread and no pipe buffer to flush, which is why CPython's "join before the
//!   queue is drained" deadlock cannot happen here.
//! * `get` takes the lock, reads the frame at the head, advances the head. Under the lock
//!   a frame is never seen half written, and each is taken by exactly one getter.
//! * A process that dies holding the lock leaves the offsets as they were before its
//!   update (they move only after the copy), and the robust mutex hands the lock on.
//! * Space is given back: when the queue runs empty the file is truncated, and while it
//!   never runs empty, consumed megabytes are punched out (`FALLOC_FL_PUNCH_HOLE`).
//!
//! A socket pair with atomic datagrams would also keep messages whole, but the kernel
//! bounds its buffer, so a child with more unread output than that would block in `put`
//! and could not be joined until someone drained the queue: the CPython failure again.
//!
//! Python: `multiprocessing.Queue`/`JoinableQueue`. The thread side's counterparts are
//! `std::sync::mpsc`, `crossbeam_channel` and conclab's `queue::Queue`.

use std::marker::PhantomData;
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec;
use super::shm::{RawCond, RawLock, Region};
use super::MpError;
use crate::os::fd;

const TRUNCATE_AT: u64 = 1 << 20;
const PUNCH_EVERY: u64 = 4 << 20;

#[repr(C)]
struct Header {
    lock: RawLock,
    not_empty: RawCond,
    not_full: RawCond,
    all_done: RawCond,
    head: u64,
    tail: u64,
    count: u64,
    maxsize: u64,
    unfinished: u64,
    punched: u64,
}

struct Shared {
    region: Region,
    file: OwnedFd,
}

impl Shared {
    fn header(&self) -> &Header {
        // SAFETY: initialised in `new`; fields are only touched under the lock.
        unsafe { &*self.region.ptr().cast::<Header>() }
    }

    #[allow(clippy::mut_from_ref)]
    fn header_mut(&self) -> &mut Header {
        // SAFETY: callers hold the lock, so no other thread or process touches these
        // fields now; the lock and condvars themselves are only used through `&`.
        unsafe { &mut *self.region.ptr().cast::<Header>() }
    }
}

enum Wait {
    Forever,
    Until(Instant),
    No,
}

impl Wait {
    fn from(timeout: Option<Duration>) -> Wait {
        match timeout {
            None => Wait::Forever,
            Some(t) => Wait::Until(Instant::now() + t),
        }
    }
}

/// Python's `multiprocessing.Queue`: many producers and many consumers in any processes.
///
/// Make it before forking; a clone is another handle to the same queue. Items are any
/// serde type and arrive whole, once each, in the order they were put.
///
/// ```
/// use conclab::multiprocessing::{Process, Queue};
///
/// let results = Queue::new().unwrap();
/// let workers: Vec<_> = [10, 20, 30]
///     .into_iter()
///     .map(|d| Process::spawn(|| results.put(d * 2).unwrap()).unwrap())
///     .collect();
/// for w in workers {
///     w.join().unwrap(); // fine before the queue is drained (CPython can hang here)
/// }
/// let mut got: Vec<i32> = (0..3).map(|_| results.get().unwrap()).collect();
/// got.sort();
/// assert_eq!(got, vec![20, 40, 60]);
/// ```
pub struct Queue<T> {
    shared: Arc<Shared>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            shared: Arc::clone(&self.shared),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.qsize())
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue (Python's `Queue()`).
    ///
    /// ```
    /// let q = conclab::multiprocessing::Queue::<String>::new().unwrap();
    /// assert!(q.empty());
    /// ```
    pub fn new() -> Result<Queue<T>, MpError> {
        Queue::with_maxsize(0)
    }

    /// A queue holding at most `maxsize` items; `put` waits while it is full. 0 means
    /// unbounded (Python's `Queue(maxsize)`).
    ///
    /// ```
    /// use conclab::multiprocessing::{MpError, Queue};
    /// let q = Queue::with_maxsize(1).unwrap();
    /// q.put(1).unwrap();
    /// assert!(q.full());
    /// assert_eq!(q.put_nowait(2), Err(MpError::Full));
    /// ```
    pub fn with_maxsize(maxsize: usize) -> Result<Queue<T>, MpError> {
        let file = fd::memfd(c"conclab-queue")
            .map_err(|e| MpError::io("create the queue's memory file", &e))?;
        let region = super::shm::map(std::mem::size_of::<Header>())?;
        let header = region.ptr().cast::<Header>();
        // SAFETY: zeroed fresh memory of the right size; zero is a valid RawCond.
        unsafe {
            super::shm::init_lock(std::ptr::addr_of_mut!((*header).lock))?;
            (*header).maxsize = maxsize as u64;
        }
        Ok(Queue {
            shared: Arc::new(Shared { region, file }),
            _t: PhantomData,
        })
    }

    /// Puts an item, waiting while a bounded queue is full.
    ///
    /// ```
    /// let q = conclab::multiprocessing::Queue::new().unwrap();
    /// q.put((1, "one".to_string())).unwrap();
    /// assert_eq!(q.get().unwrap(), (1, "one".to_string()));
    /// ```
    pub fn put(&self, item: T) -> Result<(), MpError> {
        self.put_inner(&item, Wait::Forever)
    }

    /// Puts an item, waiting at most `timeout` for room ([`MpError::Full`] after that).
    ///
    /// ```
    /// use conclab::multiprocessing::{MpError, Queue};
    /// use std::time::Duration;
    /// let q = Queue::with_maxsize(1).unwrap();
    /// q.put_timeout('a', Duration::from_millis(5)).unwrap();
    /// assert_eq!(q.put_timeout('b', Duration::from_millis(5)), Err(MpError::Full));
    /// ```
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), MpError> {
        self.put_inner(&item, Wait::from(Some(timeout)))
    }

    /// Puts an item only if there is room now (Python's `put_nowait`).
    ///
    /// ```
    /// let q = conclab::multiprocessing::Queue::new().unwrap();
    /// q.put_nowait(5u8).unwrap();
    /// assert_eq!(q.qsize(), 1);
    /// ```
    pub fn put_nowait(&self, item: T) -> Result<(), MpError> {
        self.put_inner(&item, Wait::No)
    }

    /// Takes the oldest item, waiting until there is one.
    ///
    /// ```
    /// use conclab::multiprocessing::{Process, Queue};
    /// let q = Queue::new().unwrap();
    /// let p = Process::spawn(|| q.put("Hello from the worker process!".to_string()).unwrap()).unwrap();
    /// assert_eq!(q.get().unwrap(), "Hello from the worker process!");
    /// p.join().unwrap();
    /// ```
    pub fn get(&self) -> Result<T, MpError> {
        self.get_inner(Wait::Forever)
    }

    /// Takes the oldest item, waiting at most `timeout` ([`MpError::Empty`] after that).
    ///
    /// ```
    /// use conclab::multiprocessing::{MpError, Queue};
    /// let q = Queue::<i32>::new().unwrap();
    /// assert_eq!(q.get_timeout(std::time::Duration::from_millis(5)), Err(MpError::Empty));
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, MpError> {
        self.get_inner(Wait::from(Some(timeout)))
    }

    /// Takes the oldest item if there is one now (Python's `get_nowait`).
    ///
    /// ```
    /// use conclab::multiprocessing::{MpError, Queue};
    /// let q = Queue::new().unwrap();
    /// assert_eq!(q.get_nowait(), Err::<u8, _>(MpError::Empty));
    /// q.put(1u8).unwrap();
    /// assert_eq!(q.get_nowait(), Ok(1));
    /// ```
    pub fn get_nowait(&self) -> Result<T, MpError> {
        self.get_inner(Wait::No)
    }

    fn put_inner(&self, item: &T, wait: Wait) -> Result<(), MpError> {
        let frame = codec::frame(item)?;
        let sh = &*self.shared;
        let h = sh.header();
        h.lock.lock();
        let result = (|| {
            loop {
                let hm = sh.header_mut();
                if hm.maxsize == 0 || hm.count < hm.maxsize {
                    break;
                }
                match wait {
                    Wait::No => return Err(MpError::Full),
                    Wait::Until(d) if Instant::now() >= d => return Err(MpError::Full),
                    Wait::Until(d) => h.not_full.wait(&h.lock, Some(d)),
                    Wait::Forever => h.not_full.wait(&h.lock, None),
                }
            }
            let hm = sh.header_mut();
            pwrite_all(sh.file.as_fd(), &frame, hm.tail)?;
            hm.tail += frame.len() as u64;
            hm.count += 1;
            hm.unfinished += 1;
            h.not_empty.notify_one();
            Ok(())
        })();
        h.lock.unlock();
        result
    }

    fn get_inner(&self, wait: Wait) -> Result<T, MpError> {
        let sh = &*self.shared;
        let h = sh.header();
        h.lock.lock();
        let result = (|| {
            while sh.header_mut().count == 0 {
                match wait {
                    Wait::No => return Err(MpError::Empty),
                    Wait::Until(d) if Instant::now() >= d => return Err(MpError::Empty),
                    Wait::Until(d) => h.not_empty.wait(&h.lock, Some(d)),
                    Wait::Forever => h.not_empty.wait(&h.lock, None),
                }
            }
            let hm = sh.header_mut();
            let fd = sh.file.as_fd();
            let mut len = [0u8; 4];
            pread_exact(fd, &mut len, hm.head)?;
            let len = u32::from_le_bytes(len) as u64;
            let mut bytes = vec![0u8; len as usize];
            pread_exact(fd, &mut bytes, hm.head + 4)?;
            hm.head += 4 + len;
            hm.count -= 1;
            reclaim(fd, hm);
            h.not_full.notify_one();
            Ok(bytes)
        })();
        h.lock.unlock();
        codec::decode(&result?)
    }
}

impl<T> Queue<T> {
    /// How many items are in the queue right now (Python's `qsize`); other processes may
    /// change it the moment after.
    ///
    /// ```
    /// let q = conclab::multiprocessing::Queue::new().unwrap();
    /// q.put(1).unwrap();
    /// q.put(2).unwrap();
    /// assert_eq!(q.qsize(), 2);
    /// ```
    pub fn qsize(&self) -> usize {
        let h = self.shared.header();
        h.lock.lock();
        let n = self.shared.header_mut().count as usize;
        h.lock.unlock();
        n
    }

    /// Whether the queue is empty right now.
    ///
    /// ```
    /// let q = conclab::multiprocessing::Queue::<u8>::new().unwrap();
    /// assert!(q.empty());
    /// ```
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether a bounded queue is full right now (never for an unbounded one).
    ///
    /// ```
    /// let q = conclab::multiprocessing::Queue::<u8>::new().unwrap();
    /// assert!(!q.full());
    /// ```
    pub fn full(&self) -> bool {
        let h = self.shared.header();
        h.lock.lock();
        let hm = self.shared.header_mut();
        let full = hm.maxsize != 0 && hm.count >= hm.maxsize;
        h.lock.unlock();
        full
    }
}

fn reclaim(file: BorrowedFd<'_>, h: &mut Header) {
    if h.count == 0 {
        let high = h.tail;
        h.head = 0;
        h.tail = 0;
        h.punched = 0;
        if high >= TRUNCATE_AT {
            // A failure only costs memory.
            let _ = fd::truncate(file, 0);
        }
    } else if h.head - h.punched >= PUNCH_EVERY {
        let upto = h.head & !4095;
        // Bytes nobody will read again; a failure only costs memory.
        let _ = fd::punch_hole(file, h.punched, upto - h.punched);
        h.punched = upto;
    }
}

fn pwrite_all(file: BorrowedFd<'_>, buf: &[u8], at: u64) -> Result<(), MpError> {
    fd::pwrite_all(file, buf, at).map_err(|e| MpError::io("store an item in the queue", &e))
}

fn pread_exact(file: BorrowedFd<'_>, mut buf: &mut [u8], mut at: u64) -> Result<(), MpError> {
    while !buf.is_empty() {
        let n =
            fd::pread(file, buf, at).map_err(|e| MpError::io("read an item from the queue", &e))?;
        if n == 0 {
            return Err(MpError::Codec(
                "the queue's file ended inside an item".into(),
            ));
        }
        buf = &mut buf[n..];
        at += n as u64;
    }
    Ok(())
}

/// Python's `multiprocessing.JoinableQueue`: a [`Queue`] that also counts unfinished
/// tasks. Every `put` adds one; a consumer calls [`task_done`](Self::task_done) when it
/// has handled an item; [`join`](Self::join) waits until the count is back to zero.
/// Derefs to [`Queue`] for `put`/`get`.
///
/// ```
/// use conclab::multiprocessing::{JoinableQueue, Process};
///
/// let jobs = JoinableQueue::new().unwrap();
/// let worker = Process::spawn(|| {
///     for _ in 0..3 {
///         let n: u32 = jobs.get().unwrap();
///         println!("handled {n}");
///         jobs.task_done().unwrap();
///     }
/// })
/// .unwrap();
/// for n in 0..3 {
///     jobs.put(n).unwrap();
/// }
/// jobs.join(); // returns once the worker has called task_done three times
/// worker.join().unwrap();
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("qsize", &self.queue.qsize())
            .finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// An unbounded joinable queue.
    ///
    /// ```
    /// let q = conclab::multiprocessing::JoinableQueue::<i32>::new().unwrap();
    /// q.join(); // nothing put, nothing to wait for
    /// ```
    pub fn new() -> Result<JoinableQueue<T>, MpError> {
        Ok(JoinableQueue {
            queue: Queue::new()?,
        })
    }

    /// A joinable queue holding at most `maxsize` items (0: unbounded).
    ///
    /// ```
    /// let q = conclab::multiprocessing::JoinableQueue::<i32>::with_maxsize(2).unwrap();
    /// q.put(1).unwrap();
    /// assert!(!q.full());
    /// ```
    pub fn with_maxsize(maxsize: usize) -> Result<JoinableQueue<T>, MpError> {
        Ok(JoinableQueue {
            queue: Queue::with_maxsize(maxsize)?,
        })
    }
}

impl<T> JoinableQueue<T> {
    /// Marks one item as handled. [`MpError::TaskDoneTooOften`] if more calls than puts.
    ///
    /// ```
    /// use conclab::multiprocessing::{JoinableQueue, MpError};
    /// let q = JoinableQueue::<u8>::new().unwrap();
    /// assert_eq!(q.task_done(), Err(MpError::TaskDoneTooOften));
    /// ```
    pub fn task_done(&self) -> Result<(), MpError> {
        let sh = &*self.queue.shared;
        let h = sh.header();
        h.lock.lock();
        let hm = sh.header_mut();
        let result = if hm.unfinished == 0 {
            Err(MpError::TaskDoneTooOften)
        } else {
            hm.unfinished -= 1;
            if hm.unfinished == 0 {
                h.all_done.notify_all();
            }
            Ok(())
        };
        h.lock.unlock();
        result
    }

    /// Waits until every item put so far has been marked done.
    ///
    /// ```
    /// let q = conclab::multiprocessing::JoinableQueue::new().unwrap();
    /// q.put('x').unwrap();
    /// q.get().unwrap();
    /// q.task_done().unwrap();
    /// q.join();
    /// ```
    pub fn join(&self) {
        let sh = &*self.queue.shared;
        let h = sh.header();
        h.lock.lock();
        while sh.header_mut().unfinished > 0 {
            h.all_done.wait(&h.lock, None);
        }
        h.lock.unlock();
    }
}
