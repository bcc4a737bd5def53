//! Thread-safe queues: Python's `queue` module.
//!
//! | Python | conclab | Rust's own |
//! | --- | --- | --- |
//! | `queue.Queue(maxsize)` | [`Queue`]`::new()` / `Queue::with_maxsize(n)` | `std::sync::mpsc`, `crossbeam_channel::{unbounded, bounded}` |
//! | `queue.LifoQueue` | [`LifoQueue`] | - |
//! | `queue.PriorityQueue` (smallest first) | [`PriorityQueue`] | `BinaryHeap` behind a `Mutex` |
//! | `put`, `put_nowait`, `put(timeout=)` | [`put`](OrderedQueue::put), [`put_nowait`](OrderedQueue::put_nowait), [`put_timeout`](OrderedQueue::put_timeout) | `send`, `try_send`, `send_timeout` |
//! | `get`, `get_nowait`, `get(timeout=)` | [`get`](OrderedQueue::get), [`get_nowait`](OrderedQueue::get_nowait), [`get_timeout`](OrderedQueue::get_timeout) | `recv`, `try_recv`, `recv_timeout` |
//! | `queue.Full`, `queue.Empty`, `queue.ShutDown` | [`QueueError`] | `TrySendError`, `TryRecvError`, disconnection |
//! | `task_done`, `join` | [`task_done`](OrderedQueue::task_done), [`join`](OrderedQueue::join) | - |
//! | `shutdown(immediate)` (3.13) | [`shutdown`](OrderedQueue::shutdown) | dropping every `Sender` |
//!
//! A Rust program would usually pick a crossbeam channel (separate sender and receiver
//! ends, disconnection when one side is gone). These queues keep Python's shape instead:
//! one object that every thread puts into and gets from, with `task_done`/`join`
//! accounting. Share one between threads with an `Arc`. A rejected `put` hands the item
//! back inside the error, so nothing is lost.

use crate::explore::sched::{self, Obj};
use crate::sync::{Condvar, Mutex};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

mod sealed {
    pub trait Sealed {}
}

/// The order in which a [`Queue`] hands out its items: [`Fifo`], [`Lifo`] or [`Priority`].
///
/// ```
/// use conclab::queue::{LifoQueue, Queue};
/// let q: Queue<i32> = Queue::new(); // first in, first out: OrderedQueue<i32, Fifo>
/// let s: LifoQueue<i32> = LifoQueue::new();
/// q.put(1).unwrap(); q.put(2).unwrap();
/// s.put(1).unwrap(); s.put(2).unwrap();
/// assert_eq!((q.get().unwrap(), s.get().unwrap()), (1, 2));
/// ```
pub trait Order<T>: sealed::Sealed {
    /// The container the items wait in.
    #[doc(hidden)]
    type Store: Default + Send;
    #[doc(hidden)]
    fn push(store: &mut Self::Store, item: T);
    #[doc(hidden)]
    fn pop(store: &mut Self::Store) -> Option<T>;
    #[doc(hidden)]
    fn len(store: &Self::Store) -> usize;
}

/// First in, first out (Python's `Queue`).
///
/// ```
/// let q: conclab::queue::OrderedQueue<u8, conclab::queue::Fifo> = conclab::queue::Queue::new();
/// assert!(q.empty());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Fifo;

/// Last in, first out (Python's `LifoQueue`).
///
/// ```
/// let q: conclab::queue::OrderedQueue<u8, conclab::queue::Lifo> = conclab::queue::LifoQueue::new();
/// assert!(q.empty());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Lifo;

/// Smallest item first (Python's `PriorityQueue`; put `(priority, item)` tuples).
///
/// ```
/// let q: conclab::queue::OrderedQueue<u8, conclab::queue::Priority> = conclab::queue::PriorityQueue::new();
/// assert!(q.empty());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Priority;

impl sealed::Sealed for Fifo {}
impl sealed::Sealed for Lifo {}
impl sealed::Sealed for Priority {}

impl<T: Send> Order<T> for Fifo {
    type Store = VecDeque<T>;
    fn push(store: &mut Self::Store, item: T) {
        store.push_back(item);
    }
    fn pop(store: &mut Self::Store) -> Option<T> {
        store.pop_front()
    }
    fn len(store: &Self::Store) -> usize {
        store.len()
    }
}

impl<T: Send> Order<T> for Lifo {
    type Store = Vec<T>;
    fn push(store: &mut Self::Store, item: T) {
        store.push(item);
    }
    fn pop(store: &mut Self::Store) -> Option<T> {
        store.pop()
    }
    fn len(store: &Self::Store) -> usize {
        store.len()
    }
}

impl<T: Ord + Send> Order<T> for Priority {
    type Store = BinaryHeap<Reverse<T>>;
    fn push(store: &mut Self::Store, item: T) {
        store.push(Reverse(item));
    }
    fn pop(store: &mut Self::Store) -> Option<T> {
        store.pop().map(|Reverse(item)| item)
    }
    fn len(store: &Self::Store) -> usize {
        store.len()
    }
}

/// Why a queue operation did not happen; a refused `put` carries the item back.
///
/// ```
/// use conclab::queue::{Queue, QueueError};
/// let q = Queue::with_maxsize(1);
/// q.put("a").unwrap();
/// let err = q.put_nowait("b").unwrap_err();
/// assert_eq!(err.into_inner(), Some("b"));
/// assert_eq!(q.get_nowait(), Ok("a"));
/// assert_eq!(q.get_nowait(), Err(QueueError::Empty));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError<T = ()> {
    /// The queue is at its `maxsize` (Python's `queue.Full`).
    #[error("the queue is full; put() waits for room, or make the queue larger")]
    Full(T),
    /// Nothing to get (Python's `queue.Empty`).
    #[error("the queue is empty; get() waits for an item, get_nowait() does not")]
    Empty,
    /// The queue was shut down (Python 3.13's `queue.ShutDown`); a refused `put` gives the
    /// item back, a `get` gets `()`.
    #[error("the queue was shut down: nothing more can be put, and get() ends once it is empty")]
    ShutDown(T),
    /// `task_done` was called more often than items were put (Python's `ValueError`).
    #[error("task_done() called more times than items were put; call it once per item you got")]
    TaskDoneTooOften,
}

impl<T> QueueError<T> {
    /// The item a refused `put` gives back.
    ///
    /// ```
    /// use conclab::queue::QueueError;
    /// assert_eq!(QueueError::Full(7).into_inner(), Some(7));
    /// assert_eq!(QueueError::<i32>::Empty.into_inner(), None);
    /// ```
    pub fn into_inner(self) -> Option<T> {
        match self {
            QueueError::Full(item) | QueueError::ShutDown(item) => Some(item),
            QueueError::Empty | QueueError::TaskDoneTooOften => None,
        }
    }
}

struct State<S> {
    items: S,
    /// Items put and not yet marked with `task_done`.
    unfinished: usize,
    shutdown: bool,
}

/// The queue behind [`Queue`], [`LifoQueue`] and [`PriorityQueue`]; `O` is the order in
/// which items come out. Its methods are documented here; use it through those names.
///
/// ```
/// use conclab::queue::{Lifo, LifoQueue, OrderedQueue};
/// let stack: OrderedQueue<u8, Lifo> = LifoQueue::new();
/// stack.put(1).unwrap();
/// assert_eq!(stack.get(), Ok(1));
/// ```
pub struct OrderedQueue<T, O: Order<T>> {
    state: Mutex<State<O::Store>>,
    not_empty: Condvar,
    not_full: Condvar,
    all_done: Condvar,
    /// 0 for unbounded, as in Python.
    maxsize: usize,
}

/// A thread-safe queue with Python's interface; `Queue<T>` is first in, first out.
///
/// Python's `maxsize=0` means unbounded: that is `Queue::new()`; `Queue::with_maxsize(n)`
/// makes a bounded one whose `put` waits for room.
///
/// ```
/// use conclab::queue::Queue;
/// use conclab::threading::Thread;
/// use std::sync::Arc;
///
/// let q = Arc::new(Queue::new());
/// let producer = {
///     let q = Arc::clone(&q);
///     Thread::new(move || {
///         for i in 0..5 {
///             q.put(i).unwrap();
///         }
///         q.shutdown(false); // no more items: get() ends once the queue is empty
///     }).start().unwrap()
/// };
/// let mut got = Vec::new();
/// while let Ok(item) = q.get() {
///     got.push(item);
/// }
/// producer.join().unwrap();
/// assert_eq!(got, vec![0, 1, 2, 3, 4]);
/// ```
pub type Queue<T> = OrderedQueue<T, Fifo>;

/// Last in, first out: Python's `queue.LifoQueue`.
///
/// ```
/// let stack = conclab::queue::LifoQueue::new();
/// for i in 1..=3 { stack.put(i).unwrap(); }
/// assert_eq!(stack.get().unwrap(), 3);
/// ```
pub type LifoQueue<T> = OrderedQueue<T, Lifo>;

/// Smallest item first: Python's `queue.PriorityQueue`.
///
/// ```
/// let q = conclab::queue::PriorityQueue::new();
/// q.put((2, "write report")).unwrap();
/// q.put((1, "fix the build")).unwrap();
/// assert_eq!(q.get().unwrap(), (1, "fix the build"));
/// ```
pub type PriorityQueue<T> = OrderedQueue<T, Priority>;

impl<T: Send> OrderedQueue<T, Fifo> {
    /// An unbounded first-in-first-out queue (Python's `Queue()`).
    ///
    /// ```
    /// let q = conclab::queue::Queue::<u32>::new();
    /// assert_eq!(q.maxsize(), 0);
    /// ```
    pub fn new() -> Self {
        Self::build(0)
    }

    /// A queue holding at most `maxsize` items; 0 means unbounded (Python's `Queue(maxsize)`).
    ///
    /// ```
    /// let q = conclab::queue::Queue::with_maxsize(2);
    /// q.put(1).unwrap();
    /// q.put(2).unwrap();
    /// assert!(q.full());
    /// ```
    pub fn with_maxsize(maxsize: usize) -> Self {
        Self::build(maxsize)
    }
}

impl<T: Send> Default for OrderedQueue<T, Fifo> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send> OrderedQueue<T, Lifo> {
    /// An unbounded last-in-first-out queue (Python's `LifoQueue()`).
    ///
    /// ```
    /// let q = conclab::queue::LifoQueue::<u32>::new();
    /// assert!(q.empty());
    /// ```
    pub fn new() -> Self {
        Self::build(0)
    }

    /// A last-in-first-out queue holding at most `maxsize` items (0: unbounded).
    ///
    /// ```
    /// let q = conclab::queue::LifoQueue::with_maxsize(1);
    /// q.put('a').unwrap();
    /// assert!(q.full());
    /// ```
    pub fn with_maxsize(maxsize: usize) -> Self {
        Self::build(maxsize)
    }
}

impl<T: Ord + Send> OrderedQueue<T, Priority> {
    /// An unbounded priority queue, smallest first (Python's `PriorityQueue()`).
    ///
    /// ```
    /// let q = conclab::queue::PriorityQueue::<u32>::new();
    /// assert!(q.empty());
    /// ```
    pub fn new() -> Self {
        Self::build(0)
    }

    /// A priority queue holding at most `maxsize` items (0: unbounded).
    ///
    /// ```
    /// let q = conclab::queue::PriorityQueue::with_maxsize(1);
    /// q.put(5).unwrap();
    /// assert!(q.put_nowait(4).is_err());
    /// ```
    pub fn with_maxsize(maxsize: usize) -> Self {
        Self::build(maxsize)
    }
}

impl<T, O: Order<T>> OrderedQueue<T, O> {
    fn build(maxsize: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: O::Store::default(),
                unfinished: 0,
                shutdown: false,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            all_done: Condvar::new(),
            maxsize,
        }
    }

    fn has_room(&self, state: &State<O::Store>) -> bool {
        self.maxsize == 0 || O::len(&state.items) < self.maxsize
    }

    /// How `explore` names this queue in its steps.
    fn obj(&self) -> Obj<'_> {
        Obj::new(self, "queue", None)
    }

    fn put_inner(&self, item: T, deadline: Option<Option<Instant>>) -> Result<(), QueueError<T>> {
        sched::point("put", &self.obj());
        let mut state = self.state.lock();
        loop {
            if state.shutdown {
                sched::note("put", &self.obj(), || "refused: shut down".to_owned());
                return Err(QueueError::ShutDown(item));
            }
            if self.has_room(&state) {
                break;
            }
            match deadline {
                // put_nowait
                None => {
                    sched::note("put", &self.obj(), || "refused: full".to_owned());
                    return Err(QueueError::Full(item));
                }
                Some(None) => self.not_full.wait(&mut state),
                Some(Some(deadline)) => {
                    if self.not_full.wait_until(&mut state, deadline).timed_out()
                        && !state.shutdown
                        && !self.has_room(&state)
                    {
                        sched::note("put", &self.obj(), || "timed out".to_owned());
                        return Err(QueueError::Full(item));
                    }
                }
            }
        }
        O::push(&mut state.items, item);
        state.unfinished += 1;
        sched::note("put", &self.obj(), || {
            format!("size {}", O::len(&state.items))
        });
        drop(state);
        self.not_empty.notify_one();
        Ok(())
    }

    fn get_inner(&self, deadline: Option<Option<Instant>>) -> Result<T, QueueError> {
        sched::point("get", &self.obj());
        let mut state = self.state.lock();
        loop {
            if let Some(item) = O::pop(&mut state.items) {
                sched::note("get", &self.obj(), || {
                    format!("size {}", O::len(&state.items))
                });
                drop(state);
                self.not_full.notify_one();
                return Ok(item);
            }
            if state.shutdown {
                sched::note("get", &self.obj(), || "refused: shut down".to_owned());
                return Err(QueueError::ShutDown(()));
            }
            match deadline {
                None => {
                    sched::note("get", &self.obj(), || "refused: empty".to_owned());
                    return Err(QueueError::Empty);
                }
                Some(None) => self.not_empty.wait(&mut state),
                Some(Some(deadline)) => {
                    if self.not_empty.wait_until(&mut state, deadline).timed_out()
                        && O::len(&state.items) == 0
                        && !state.shutdown
                    {
                        sched::note("get", &self.obj(), || "timed out".to_owned());
                        return Err(QueueError::Empty);
                    }
                }
            }
        }
    }

    /// Puts an item, waiting for room in a bounded queue; refused with
    /// [`QueueError::ShutDown`] (item inside) after [`shutdown`](Self::shutdown).
    ///
    /// ```
    /// let q = conclab::queue::Queue::new();
    /// q.put("job").unwrap();
    /// assert_eq!(q.qsize(), 1);
    /// ```
    pub fn put(&self, item: T) -> Result<(), QueueError<T>> {
        self.put_inner(item, Some(None))
    }

    /// Puts an item only if there is room now; [`QueueError::Full`] (item inside) if not.
    ///
    /// ```
    /// let q = conclab::queue::Queue::with_maxsize(1);
    /// q.put_nowait(1).unwrap();
    /// assert_eq!(q.put_nowait(2), Err(conclab::queue::QueueError::Full(2)));
    /// ```
    pub fn put_nowait(&self, item: T) -> Result<(), QueueError<T>> {
        self.put_inner(item, None)
    }

    /// Puts an item, waiting at most `timeout` for room; [`QueueError::Full`] after that.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = conclab::queue::Queue::with_maxsize(1);
    /// q.put(1).unwrap();
    /// assert!(q.put_timeout(2, Duration::from_millis(5)).is_err());
    /// ```
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), QueueError<T>> {
        self.put_inner(item, Some(Some(Instant::now() + timeout)))
    }

    /// Takes the next item, waiting for one; after [`shutdown`](Self::shutdown) it returns
    /// [`QueueError::ShutDown`] once the queue is empty.
    ///
    /// ```
    /// let q = conclab::queue::Queue::new();
    /// q.put(9).unwrap();
    /// assert_eq!(q.get(), Ok(9));
    /// ```
    pub fn get(&self) -> Result<T, QueueError> {
        self.get_inner(Some(None))
    }

    /// Takes the next item if there is one now; [`QueueError::Empty`] if not.
    ///
    /// ```
    /// let q = conclab::queue::Queue::<i32>::new();
    /// assert_eq!(q.get_nowait(), Err(conclab::queue::QueueError::Empty));
    /// ```
    pub fn get_nowait(&self) -> Result<T, QueueError> {
        self.get_inner(None)
    }

    /// Takes the next item, waiting at most `timeout`; [`QueueError::Empty`] after that.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = conclab::queue::Queue::<i32>::new();
    /// assert!(q.get_timeout(Duration::from_millis(5)).is_err());
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        self.get_inner(Some(Some(Instant::now() + timeout)))
    }

    /// Marks one item got earlier as processed; [`join`](Self::join) returns when every
    /// item put has been marked.
    ///
    /// ```
    /// let q = conclab::queue::Queue::new();
    /// q.put(()).unwrap();
    /// q.get().unwrap();
    /// q.task_done().unwrap();
    /// assert!(q.task_done().is_err()); // one more than was put
    /// ```
    pub fn task_done(&self) -> Result<(), QueueError> {
        sched::point("task done", &self.obj());
        sched::note("task done", &self.obj(), String::new);
        let mut state = self.state.lock();
        if state.unfinished == 0 {
            return Err(QueueError::TaskDoneTooOften);
        }
        state.unfinished -= 1;
        if state.unfinished == 0 {
            drop(state);
            self.all_done.notify_all();
        }
        Ok(())
    }

    /// Waits until every item put has been marked with [`task_done`](Self::task_done).
    ///
    /// ```
    /// use conclab::queue::Queue;
    /// use std::sync::Arc;
    /// let q = Arc::new(Queue::new());
    /// for i in 0..3 { q.put(i).unwrap(); }
    /// std::thread::scope(|s| {
    ///     s.spawn(|| while let Ok(_) = q.get_nowait() { q.task_done().unwrap(); });
    ///     q.join(); // returns once the worker marked all three
    /// });
    /// ```
    pub fn join(&self) {
        sched::point("join", &self.obj());
        let mut state = self.state.lock();
        while state.unfinished > 0 {
            self.all_done.wait(&mut state);
        }
        sched::note("join", &self.obj(), String::new);
    }

    /// [`join`](Self::join) for at most `timeout`; `true` if all tasks were done.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = conclab::queue::Queue::new();
    /// q.put(1).unwrap();
    /// assert!(!q.join_timeout(Duration::from_millis(5)));
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        while state.unfinished > 0 {
            if self.all_done.wait_until(&mut state, deadline).timed_out() {
                return state.unfinished == 0;
            }
        }
        true
    }

    /// Shuts the queue down (Python 3.13): every `put`, now blocked or later, is refused;
    /// `get` goes on until the queue is empty and then returns [`QueueError::ShutDown`].
    /// With `immediate` the waiting items are dropped at once, counted as done (so
    /// `join` returns), and `get` is refused right away.
    ///
    /// ```
    /// let q = conclab::queue::Queue::new();
    /// q.put(1).unwrap();
    /// q.shutdown(false);
    /// assert!(q.put(2).is_err());
    /// assert_eq!(q.get(), Ok(1));
    /// assert!(q.get().is_err());
    /// ```
    pub fn shutdown(&self, immediate: bool) {
        sched::point("shutdown", &self.obj());
        sched::note("shutdown", &self.obj(), String::new);
        let mut state = self.state.lock();
        state.shutdown = true;
        if immediate {
            let mut dropped = 0;
            while O::pop(&mut state.items).is_some() {
                dropped += 1;
            }
            state.unfinished = state.unfinished.saturating_sub(dropped);
        }
        let all_done = state.unfinished == 0;
        drop(state);
        self.not_empty.notify_all();
        self.not_full.notify_all();
        if all_done {
            self.all_done.notify_all();
        }
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    ///
    /// ```
    /// let q = conclab::queue::Queue::<()>::new();
    /// q.shutdown(true);
    /// assert!(q.is_shutdown());
    /// ```
    pub fn is_shutdown(&self) -> bool {
        self.state.lock().shutdown
    }

    /// The number of items waiting now (Python's `qsize()`: already stale when read if
    /// other threads are busy with the queue).
    ///
    /// ```
    /// let q = conclab::queue::Queue::new();
    /// q.put('x').unwrap();
    /// assert_eq!(q.qsize(), 1);
    /// ```
    pub fn qsize(&self) -> usize {
        O::len(&self.state.lock().items)
    }

    /// Whether no item waits now.
    ///
    /// ```
    /// assert!(conclab::queue::Queue::<u8>::new().empty());
    /// ```
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether a bounded queue is at its `maxsize` now (never for an unbounded one).
    ///
    /// ```
    /// assert!(!conclab::queue::Queue::<u8>::new().full());
    /// ```
    pub fn full(&self) -> bool {
        self.maxsize > 0 && self.qsize() >= self.maxsize
    }

    /// The bound given at creation; 0 means unbounded.
    ///
    /// ```
    /// assert_eq!(conclab::queue::Queue::<u8>::with_maxsize(4).maxsize(), 4);
    /// ```
    pub fn maxsize(&self) -> usize {
        self.maxsize
    }
}

impl<T, O: Order<T>> fmt::Debug for OrderedQueue<T, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Queue")
            .field("order", &std::any::type_name::<O>().rsplit("::").next())
            .field("qsize", &O::len(&state.items))
            .field("maxsize", &self.maxsize)
            .field("unfinished", &state.unfinished)
            .field("shutdown", &state.shutdown)
            .finish()
    }
}
