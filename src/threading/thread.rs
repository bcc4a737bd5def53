//! [`Thread`], [`JoinHandle`], the [`Runnable`] "subclass a thread" idiom, and the current
//! thread's name and id.

use super::ThreadingError;
use crate::explore::sched::{self, Obj, Waiting, Woke};
use crate::sync::{Arc, Condvar, Mutex};
use std::any::Any;
use std::fmt;
use std::time::{Duration, Instant};

/// How long a dropped handle waits quietly before it says what it is waiting for.
const DROP_NOTICE_AFTER: Duration = Duration::from_secs(2);

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}

/// std's number for a thread id (the `5` of `ThreadId(5)`; `as_u64` is not stable yet).
fn id_number(id: std::thread::ThreadId) -> u64 {
    let text = format!("{id:?}");
    text.trim_start_matches("ThreadId(")
        .trim_end_matches(')')
        .parse()
        .unwrap_or(0)
}

/// The calling thread's name: the one it was given, else `Thread-<id>` like Python's
/// `Thread-N`.
pub(crate) fn current_name() -> String {
    crate::sync::current_thread_name()
        .unwrap_or_else(|| format!("Thread-{}", id_number(std::thread::current().id())))
}

/// The calling thread, as Python's `threading.current_thread()` describes it.
///
/// ```
/// let me = conclab::threading::current_thread();
/// assert_eq!(me.ident, conclab::threading::get_ident());
/// std::thread::Builder::new().name("worker".into()).spawn(|| {
///     assert_eq!(conclab::threading::current_thread().name, "worker");
/// }).unwrap().join().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentThread {
    /// Its name (`Thread-<ident>` when it was given none; the main thread is `main`).
    pub name: String,
    /// A number unique to the thread for the life of the process (std's `ThreadId`).
    pub ident: u64,
}

/// Describes the calling thread (Python's `threading.current_thread()`).
///
/// ```
/// let me = conclab::threading::current_thread();
/// assert!(!me.name.is_empty());
/// ```
pub fn current_thread() -> CurrentThread {
    CurrentThread {
        name: current_name(),
        ident: get_ident(),
    }
}

/// The calling thread's id number (Python's `threading.get_ident()`).
///
/// ```
/// let main = conclab::threading::get_ident();
/// let other = std::thread::spawn(conclab::threading::get_ident).join().unwrap();
/// assert_ne!(main, other);
/// ```
pub fn get_ident() -> u64 {
    id_number(std::thread::current().id())
}

/// Set when the thread's closure has finished, by return or by panic.
struct Finished {
    done: Mutex<bool>,
    signal: Condvar,
}

impl Finished {
    /// How `explore` names this thread's end, which its joiners wait for.
    fn addr(&self) -> usize {
        std::ptr::from_ref(self).addr()
    }

    /// A join inside an `explore` run: the scheduler runs the others until the thread has
    /// ended. `false` when the run is over and the caller should not wait.
    #[cold]
    fn wait_explored(&self, name: &str) -> bool {
        while !*self.done.lock() {
            let waiting = Waiting {
                addr: self.addr(),
                lock: None,
                join: true,
                timed: false,
                what: format!("waits to join thread '{name}'"),
            };
            if sched::block(&Obj::new(self, "thread", Some(name)), waiting) == Woke::Abandoned {
                return false;
            }
        }
        true
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let mut done = self.done.lock();
        while !*done {
            match deadline {
                None => self.signal.wait(&mut done),
                Some(deadline) => {
                    if self.signal.wait_until(&mut done, deadline).timed_out() {
                        return *done;
                    }
                }
            }
        }
        true
    }
}

/// Sets [`Finished`] when dropped, so a panicking closure still reports that it ended.
struct SetOnDrop(Arc<Finished>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        *self.0.done.lock() = true;
        self.0.signal.notify_all();
    }
}

/// A thread to start: Python's `threading.Thread(target=..., args=..., name=..., daemon=...)`.
///
/// The target and its arguments are one closure (`move || download(file)`). Nothing runs
/// until [`start`](Thread::start), which returns the [`JoinHandle`].
///
/// ```
/// use conclab::threading::Thread;
///
/// let handle = Thread::new(|| 6 * 7).name("Worker-1").start().unwrap();
/// assert_eq!(handle.name(), "Worker-1");
/// assert_eq!(handle.join().unwrap(), 42);
/// ```
#[must_use = "a Thread does nothing until start() is called"]
pub struct Thread<F> {
    target: F,
    name: Option<String>,
    daemon: bool,
}

impl<F, T> Thread<F>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    /// A thread that will run `target`.
    ///
    /// ```
    /// let file = String::from("data_1.txt");
    /// let t = conclab::threading::Thread::new(move || file.len());
    /// assert_eq!(t.start().unwrap().join().unwrap(), 10);
    /// ```
    pub fn new(target: F) -> Self {
        Self {
            target,
            name: None,
            daemon: false,
        }
    }

    /// Names the thread (shown in panic messages, deadlock reports and
    /// [`current_thread`]). Without a name it is called `Thread-<ident>`.
    ///
    /// ```
    /// let h = conclab::threading::Thread::new(|| conclab::threading::current_thread().name)
    ///     .name("downloader").start().unwrap();
    /// assert_eq!(h.join().unwrap(), "downloader");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A daemon thread's handle does not wait for it when dropped: the thread runs on
    /// after the cell ends (Python's `daemon=True`). See [`JoinHandle::detach`].
    ///
    /// ```
    /// let h = conclab::threading::Thread::new(|| ()).daemon(true).start().unwrap();
    /// assert!(h.is_daemon());
    /// h.join().unwrap();
    /// ```
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// Starts the thread (Python's `start()`); [`ThreadingError::SpawnFailed`] when the
    /// system refuses a new thread.
    ///
    /// ```
    /// let h = conclab::threading::Thread::new(|| "done").start().unwrap();
    /// assert_eq!(h.join().unwrap(), "done");
    /// ```
    pub fn start(mut self) -> Result<JoinHandle<T>, ThreadingError> {
        let finished = Arc::new(Finished {
            done: Mutex::new(false),
            signal: Condvar::new(),
        });
        let mut builder = std::thread::Builder::new();
        // Inside `explore` the thread joins the run: it waits for the baton before its
        // first step, and gets a name that is the same in every schedule.
        let seat = if sched::active() {
            sched::spawn(self.name.as_deref())
        } else {
            None
        };
        if let Some(seat) = &seat {
            self.name = Some(seat.name());
        }
        if let Some(name) = &self.name {
            builder = builder.name(name.clone());
        }
        let target = self.target;
        let marker = SetOnDrop(Arc::clone(&finished));
        let finished_addr = finished.addr();
        let spawned = builder.spawn(move || {
            let body = move || {
                let _marker = marker;
                target()
            };
            match seat {
                Some(seat) => seat.run(body, Some(finished_addr)),
                None => body(),
            }
        });
        let handle = spawned.map_err(|error| ThreadingError::SpawnFailed {
            name: self.name.clone().unwrap_or_else(|| "a thread".to_owned()),
            reason: error.to_string(),
        })?;
        let ident = id_number(handle.thread().id());
        let name = self.name.unwrap_or_else(|| format!("Thread-{ident}"));
        Ok(JoinHandle {
            handle: Some(handle),
            finished,
            name,
            ident,
            daemon: self.daemon,
        })
    }
}

impl<F> fmt::Debug for Thread<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thread")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .finish_non_exhaustive()
    }
}

/// A started thread: join it for its result; dropping the handle joins too.
///
/// - [`join`](JoinHandle::join) returns the closure's value, or
///   [`ThreadingError::Panicked`] with the panic's message. The panic itself is printed
///   by Rust's default hook as `thread '<name>' panicked at ...` (like Python's traceback
///   of a failed thread); it never takes the calling thread down.
/// - Dropping a handle waits for the thread, so threads do not outlive the notebook cell
///   that started them. A thread that runs on for more than two seconds after its handle
///   was dropped makes the drop print one line to stderr saying what it waits for; it
///   keeps waiting (cutting a thread off is not possible safely). Use
///   [`detach`](JoinHandle::detach) or [`Thread::daemon`] to let a thread run on.
///
/// ```
/// use conclab::threading::{Thread, ThreadingError};
///
/// let h = Thread::new(|| -> u32 { panic!("disk full") }).name("saver").start().unwrap();
/// match h.join() {
///     Err(ThreadingError::Panicked { thread, message }) => {
///         assert_eq!(thread, "saver");
///         assert_eq!(message, "disk full");
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
pub struct JoinHandle<T> {
    handle: Option<std::thread::JoinHandle<T>>,
    finished: Arc<Finished>,
    name: String,
    ident: u64,
    daemon: bool,
}

impl<T> JoinHandle<T> {
    /// Waits for the thread and returns its value, or the message of its panic.
    ///
    /// ```
    /// let h = conclab::threading::Thread::new(|| vec![1, 2]).start().unwrap();
    /// assert_eq!(h.join().unwrap(), vec![1, 2]);
    /// ```
    pub fn join(mut self) -> Result<T, ThreadingError> {
        self.join_inner()
    }

    fn join_inner(&mut self) -> Result<T, ThreadingError> {
        if sched::active() && !self.finished.wait_explored(&self.name) {
            // The run is over and the thread is unwinding on its own: let it go.
            self.handle.take();
        }
        match self.handle.take() {
            Some(handle) => handle.join().map_err(|payload| ThreadingError::Panicked {
                thread: self.name.clone(),
                message: panic_message(payload.as_ref()),
            }),
            // Only `Drop` and `detach` take the handle, and both consume `self`.
            None => Err(ThreadingError::Panicked {
                thread: self.name.clone(),
                message: "the thread was already joined".to_owned(),
            }),
        }
    }

    /// Waits at most `timeout` for the thread to finish; `true` if it has (Python's
    /// `join(timeout)` followed by `is_alive()`). A later [`join`](Self::join) is then
    /// immediate.
    ///
    /// ```
    /// use std::time::Duration;
    /// let h = conclab::threading::Thread::new(|| std::thread::sleep(Duration::from_millis(50)))
    ///     .start().unwrap();
    /// assert!(!h.join_timeout(Duration::from_millis(1)));
    /// assert!(h.join_timeout(Duration::from_secs(10)));
    /// h.join().unwrap();
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        // Inside `explore` this waits on the `Finished` condvar, where the scheduler
        // times it out only when nothing else can run.
        self.finished.wait_until(Some(Instant::now() + timeout))
    }

    /// Whether the thread's closure is still running.
    ///
    /// ```
    /// let h = conclab::threading::Thread::new(|| ()).start().unwrap();
    /// h.join_timeout(std::time::Duration::from_secs(10));
    /// assert!(!h.is_alive());
    /// ```
    pub fn is_alive(&self) -> bool {
        !*self.finished.done.lock()
    }

    /// The thread's name.
    ///
    /// ```
    /// let h = conclab::threading::Thread::new(|| ()).start().unwrap();
    /// assert!(h.name().starts_with("Thread-"));
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The thread's id number, as [`get_ident`] returns it inside the thread.
    ///
    /// ```
    /// let h = conclab::threading::Thread::new(conclab::threading::get_ident).start().unwrap();
    /// let ident = h.ident();
    /// assert_eq!(h.join().unwrap(), ident);
    /// ```
    pub fn ident(&self) -> u64 {
        self.ident
    }

    /// Whether dropping this handle lets the thread run on.
    ///
    /// ```
    /// let h = conclab::threading::Thread::new(|| ()).start().unwrap();
    /// assert!(!h.is_daemon());
    /// ```
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Lets the thread run on without anyone joining it (a daemon). Its output may then
    /// appear under a later notebook cell, and its result is lost.
    ///
    /// ```
    /// conclab::threading::Thread::new(|| ()).start().unwrap().detach();
    /// ```
    pub fn detach(mut self) {
        self.handle.take();
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if self.daemon || self.handle.is_none() {
            return;
        }
        if sched::active() {
            let _ = self.join_inner();
            return;
        }
        if !self
            .finished
            .wait_until(Some(Instant::now() + DROP_NOTICE_AFTER))
        {
            eprintln!(
                "conclab: a dropped JoinHandle is waiting for thread '{}' to finish \
                 (call .detach() or .daemon(true) to let a thread run on)",
                self.name
            );
        }
        // The panic, if any, was already printed by the panic hook; there is no one left
        // to hand it to.
        let _ = self.join_inner();
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("name", &self.name)
            .field("ident", &self.ident)
            .field("alive", &self.is_alive())
            .field("daemon", &self.daemon)
            .finish()
    }
}

/// The "subclass `threading.Thread` and override `run()`" idiom: a type with its own
/// state and a `run` method becomes a thread with [`start`](Runnable::start).
///
/// Joining gives the object back after `run`, so the results it stored in its own
/// fields can be read, as Python code reads `self.result` after `join()`.
///
/// ```
/// use conclab::threading::Runnable;
///
/// struct Downloader { name: String, files: Vec<String>, bytes: usize }
///
/// impl Runnable for Downloader {
///     fn run(&mut self) {
///         self.bytes = self.files.iter().map(|f| f.len() * 100).sum();
///     }
///     fn thread_name(&self) -> Option<String> {
///         Some(self.name.clone())
///     }
/// }
///
/// let worker = Downloader { name: "Worker-2".into(), files: vec!["a.txt".into()], bytes: 0 };
/// let handle = worker.start().unwrap();
/// assert_eq!(handle.name(), "Worker-2");
/// let worker = handle.join().unwrap();
/// assert_eq!(worker.bytes, 500);
/// ```
pub trait Runnable: Send + Sized + 'static {
    /// The thread's work (Python's `run()`).
    fn run(&mut self);

    /// The thread's name; `None` gives `Thread-<ident>`.
    fn thread_name(&self) -> Option<String> {
        None
    }

    /// Starts a thread running [`run`](Runnable::run); its join returns the object.
    fn start(self) -> Result<JoinHandle<Self>, ThreadingError> {
        let name = self.thread_name();
        let mut thread = Thread::new(move || {
            let mut this = self;
            this.run();
            this
        });
        if let Some(name) = name {
            thread = thread.name(name);
        }
        thread.start()
    }
}
