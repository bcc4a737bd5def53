//! [`Future`] and its completion side, `Promise`.

use super::TaskError;
use crate::sync::{Arc, Condvar, Mutex, UnsafeCell};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Running,
    Finished,
}

type Callback<T> = Box<dyn FnOnce(&Future<T>) + Send>;

/// Wakes an `as_completed` or `wait` call: finished futures push their index here.
pub(crate) struct Notifier {
    pub(crate) ready: Mutex<Vec<usize>>,
    pub(crate) changed: Condvar,
}

impl Notifier {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            ready: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        })
    }
}

struct Inner<T> {
    status: Status,
    /// Set once the done callbacks have run (`into_result` waits for it, so no callback
    /// still borrows the value when it is moved out).
    callbacks_done: bool,
    callbacks: Vec<Callback<T>>,
    subscribers: Vec<(Arc<Notifier>, usize)>,
}

pub(crate) struct Shared<T> {
    inner: Mutex<Inner<T>>,
    changed: Condvar,
    /// Written once, under `inner`'s lock, before the status becomes `Finished`; never
    /// written again except by `into_result`, which owns the only handle.
    value: UnsafeCell<Option<Result<T, TaskError>>>,
}

// Thread-safety of the two handles. The value is written once, before `Finished` is
// published under the mutex, and only read after `Finished` was seen under that mutex.
// - A `Promise` moves a `T` in from the worker: `T: Send`.
// - A `Future` gives `&T` to the thread that has it, and moves `T` out in `into_result`:
//   `T: Send` to send the handle, `T: Send + Sync` to share it.
// - Done callbacks see `&T` on the completing thread while the owner may read it too:
//   `add_done_callback` requires `T: Sync`.
// SAFETY: see above.
unsafe impl<T: Send> Send for Promise<T> {}
// SAFETY: see above.
unsafe impl<T: Send> Send for Future<T> {}
// SAFETY: see above.
unsafe impl<T: Send + Sync> Sync for Future<T> {}

impl<T> Shared<T> {
    /// Finishes the future with `result` unless it already finished (or, with
    /// `only_if_pending`, unless it started); runs callbacks. Returns whether this call
    /// finished it.
    fn finish(this: &Arc<Self>, result: Result<T, TaskError>, only_if_pending: bool) -> bool {
        let mut inner = this.inner.lock();
        if inner.status == Status::Finished || (only_if_pending && inner.status != Status::Pending)
        {
            return false;
        }
        // SAFETY: not finished yet, so no reader exists and we hold the lock.
        this.value.with_mut(|slot| unsafe { *slot = Some(result) });
        inner.status = Status::Finished;
        let callbacks = std::mem::take(&mut inner.callbacks);
        let subscribers = std::mem::take(&mut inner.subscribers);
        if callbacks.is_empty() {
            inner.callbacks_done = true;
        }
        drop(inner);
        this.changed.notify_all();
        for (notifier, index) in subscribers {
            notifier.ready.lock().push(index);
            notifier.changed.notify_all();
        }
        if !callbacks.is_empty() {
            let handle = Future {
                shared: Arc::clone(this),
            };
            for callback in callbacks {
                run_callback(callback, &handle);
            }
            this.inner.lock().callbacks_done = true;
            this.changed.notify_all();
        }
        true
    }
}

/// Runs a done callback; a panic in it is reported on stderr and swallowed, as Python
/// logs and ignores exceptions raised by callbacks.
fn run_callback<T>(callback: Callback<T>, future: &Future<T>) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(future)));
    if let Err(payload) = outcome {
        eprintln!(
            "conclab: a done callback panicked ({}); the other callbacks still ran",
            crate::threading::thread::panic_message(payload.as_ref())
        );
    }
}

/// The completing side of a [`Future`]: whoever runs the task holds it.
///
/// Made by [`promise`]. A worker calls [`set_running`](Promise::set_running) before it
/// starts (false: the future was cancelled, skip the task), then
/// [`complete`](Promise::complete). A `Promise` dropped without completing completes its
/// future with [`TaskError::WorkerDied`], so nobody waits forever on a task whose worker
/// is gone.
pub(crate) struct Promise<T> {
    shared: Arc<Shared<T>>,
    completed: bool,
}

/// A new pending future and the promise that completes it.
///
/// This is the interface a pool builds on: the thread pool here and the process pool in
/// `multiprocessing` both hand the `Future` to the caller and keep the `Promise`.
pub(crate) fn promise<T>() -> (Promise<T>, Future<T>) {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            status: Status::Pending,
            callbacks_done: false,
            callbacks: Vec::new(),
            subscribers: Vec::new(),
        }),
        changed: Condvar::new(),
        value: UnsafeCell::new(None),
    });
    (
        Promise {
            shared: Arc::clone(&shared),
            completed: false,
        },
        Future { shared },
    )
}

impl<T> Promise<T> {
    /// Marks the task as running; `false` when the future was cancelled (or already
    /// finished), and then the task must not run.
    pub(crate) fn set_running(&self) -> bool {
        let mut inner = self.shared.inner.lock();
        match inner.status {
            Status::Pending => {
                inner.status = Status::Running;
                drop(inner);
                self.shared.changed.notify_all();
                true
            }
            Status::Running => true,
            Status::Finished => false,
        }
    }

    /// Completes the future (ignored if it was cancelled meanwhile): stores the result,
    /// wakes waiters, runs the done callbacks on this thread.
    pub(crate) fn complete(mut self, result: Result<T, TaskError>) {
        self.completed = true;
        Shared::finish(&self.shared, result, false);
    }

    /// Cancels the future if it has not started; returns whether it is cancelled.
    pub(crate) fn cancel(&self) -> bool {
        Future {
            shared: Arc::clone(&self.shared),
        }
        .cancel()
    }
}

impl<T> Drop for Promise<T> {
    fn drop(&mut self) {
        if !self.completed {
            Shared::finish(
                &self.shared,
                Err(TaskError::WorkerDied(
                    "the worker dropped the task without finishing it".to_owned(),
                )),
                false,
            );
        }
    }
}

/// The result of a task that may not have finished yet: Python's
/// `concurrent.futures.Future`.
///
/// [`result`](Future::result) waits and gives the value (by reference: a future can be
/// asked again, as in Python) or the [`TaskError`] (a panic's message, cancellation, a
/// dead worker). [`into_result`](Future::into_result) moves the value out.
///
/// Futures compare and hash by identity, so they can be keys of a `HashMap`, like the
/// `{executor.submit(f, n): n for n in numbers}` dictionary in Python code.
///
/// ```
/// use conclab::futures::{ThreadPoolExecutor, TaskError};
///
/// let executor = ThreadPoolExecutor::new().unwrap();
/// let ok = executor.submit(|| 6 * 7);
/// let failed = executor.submit(|| -> u32 { panic!("division by zero") });
/// assert_eq!(ok.result(), Ok(&42));
/// assert_eq!(failed.result(), Err(TaskError::Panicked("division by zero".into())));
/// ```
pub struct Future<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Future<T> {
    fn wait_until(&self, deadline: Option<Instant>, for_callbacks: bool) -> bool {
        let mut inner = self.shared.inner.lock();
        loop {
            let finished = inner.status == Status::Finished;
            if finished && (!for_callbacks || inner.callbacks_done) {
                return true;
            }
            match deadline {
                None => self.shared.changed.wait(&mut inner),
                Some(deadline) => {
                    if self
                        .shared
                        .changed
                        .wait_until(&mut inner, deadline)
                        .timed_out()
                    {
                        let finished = inner.status == Status::Finished;
                        return finished && (!for_callbacks || inner.callbacks_done);
                    }
                }
            }
        }
    }

    /// The stored result; only called after `Finished` was observed.
    fn stored(&self) -> Result<&T, TaskError> {
        // SAFETY: finished, so the value is written and no longer changes while `&self`
        // lives (`into_result` needs `self` by value).
        let slot: &Option<Result<T, TaskError>> = self.shared.value.with(|slot| unsafe { &*slot });
        match slot {
            Some(Ok(value)) => Ok(value),
            Some(Err(error)) => Err(error.clone()),
            None => Err(TaskError::WorkerDied(
                "the result was already taken".to_owned(),
            )),
        }
    }

    /// Waits for the task and returns its value or its error (Python's `result()`).
    ///
    /// ```
    /// let executor = conclab::futures::ThreadPoolExecutor::new().unwrap();
    /// let f = executor.submit(|| String::from("hi"));
    /// assert_eq!(f.result().unwrap(), "hi");
    /// assert_eq!(f.result().unwrap(), "hi"); // can be asked again
    /// ```
    pub fn result(&self) -> Result<&T, TaskError> {
        self.wait_until(None, false);
        self.stored()
    }

    /// Waits at most `timeout`; [`TaskError::Timeout`] if the task has not finished
    /// (it keeps running: Python's `result(timeout)`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use conclab::futures::{ThreadPoolExecutor, TaskError};
    /// let executor = ThreadPoolExecutor::new().unwrap();
    /// let slow = executor.submit(|| std::thread::sleep(Duration::from_millis(200)));
    /// assert_eq!(slow.result_timeout(Duration::from_millis(1)), Err(TaskError::Timeout));
    /// ```
    pub fn result_timeout(&self, timeout: Duration) -> Result<&T, TaskError> {
        if self.wait_until(Some(Instant::now() + timeout), false) {
            self.stored()
        } else {
            Err(TaskError::Timeout)
        }
    }

    /// Waits for the task and moves its value out (no `Clone` needed).
    ///
    /// ```
    /// let executor = conclab::futures::ThreadPoolExecutor::new().unwrap();
    /// let f = executor.submit(|| vec![1, 2, 3]);
    /// let v: Vec<i32> = f.into_result().unwrap();
    /// assert_eq!(v.len(), 3);
    /// ```
    pub fn into_result(self) -> Result<T, TaskError> {
        self.take_until(None)
    }

    pub(crate) fn take_until(self, deadline: Option<Instant>) -> Result<T, TaskError> {
        if !self.wait_until(deadline, true) {
            return Err(TaskError::Timeout);
        }
        // The lock orders this take after the write in `finish`; `self` is the only
        // handle (futures are not `Clone`) and the callbacks are done, so no reference
        // into the value exists.
        let _inner = self.shared.inner.lock();
        // SAFETY: see above.
        let slot = self.shared.value.with_mut(|slot| unsafe { (*slot).take() });
        slot.unwrap_or_else(|| {
            Err(TaskError::WorkerDied(
                "the result was already taken".to_owned(),
            ))
        })
    }

    /// Waits for the task; its error, or `None` if it succeeded (Python's `exception()`).
    ///
    /// ```
    /// let executor = conclab::futures::ThreadPoolExecutor::new().unwrap();
    /// assert_eq!(executor.submit(|| 1).exception(), None);
    /// ```
    pub fn exception(&self) -> Option<TaskError> {
        self.result().err()
    }

    /// [`exception`](Self::exception) waiting at most `timeout`;
    /// `Err(TaskError::Timeout)` if the task has not finished.
    ///
    /// ```
    /// use std::time::Duration;
    /// let executor = conclab::futures::ThreadPoolExecutor::new().unwrap();
    /// let f = executor.submit(|| -> () { panic!("boom") });
    /// let error = f.exception_timeout(Duration::from_secs(10)).unwrap();
    /// assert!(error.unwrap().to_string().contains("boom"));
    /// ```
    pub fn exception_timeout(&self, timeout: Duration) -> Result<Option<TaskError>, TaskError> {
        match self.result_timeout(timeout) {
            Ok(_) => Ok(None),
            Err(TaskError::Timeout) if !self.done() => Err(TaskError::Timeout),
            Err(error) => Ok(Some(error)),
        }
    }

    /// Cancels the task if it has not started; `true` if the future is now cancelled
    /// (Python's `cancel()`: a running or finished task cannot be cancelled).
    ///
    /// ```
    /// use conclab::futures::ThreadPoolExecutor;
    /// use conclab::threading::Event;
    /// use std::sync::Arc;
    ///
    /// let executor = ThreadPoolExecutor::with_max_workers(1).unwrap();
    /// let gate = Arc::new(Event::new());
    /// let g = Arc::clone(&gate);
    /// let busy = executor.submit(move || g.wait());
    /// let queued = executor.submit(|| 1);
    /// assert!(queued.cancel());
    /// assert!(queued.cancelled());
    /// gate.set();
    /// assert!(busy.result().is_ok());
    /// ```
    pub fn cancel(&self) -> bool {
        Shared::finish(&self.shared, Err(TaskError::Cancelled), true) || self.cancelled()
    }

    /// Whether the future was cancelled.
    ///
    /// ```
    /// let executor = conclab::futures::ThreadPoolExecutor::new().unwrap();
    /// let f = executor.submit(|| 1);
    /// f.result().unwrap();
    /// assert!(!f.cancelled());
    /// ```
    pub fn cancelled(&self) -> bool {
        self.done() && matches!(self.stored(), Err(TaskError::Cancelled))
    }

    /// Whether the task is running now.
    ///
    /// ```
    /// let executor = conclab::futures::ThreadPoolExecutor::new().unwrap();
    /// let f = executor.submit(|| 1);
    /// f.result().unwrap();
    /// assert!(!f.running());
    /// ```
    pub fn running(&self) -> bool {
        self.shared.inner.lock().status == Status::Running
    }

    /// Whether the future has finished (value, error, or cancelled).
    ///
    /// ```
    /// let executor = conclab::futures::ThreadPoolExecutor::new().unwrap();
    /// let f = executor.submit(|| 1);
    /// f.result().unwrap();
    /// assert!(f.done());
    /// ```
    pub fn done(&self) -> bool {
        self.shared.inner.lock().status == Status::Finished
    }

    /// Runs `callback` with this future once it finishes: at once on this thread if it
    /// already has, else on the thread that completes it (Python's `add_done_callback`).
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
    /// let executor = conclab::futures::ThreadPoolExecutor::new().unwrap();
    /// let seen = Arc::new(AtomicU64::new(0));
    /// let f = executor.submit(|| 5u64);
    /// let s = Arc::clone(&seen);
    /// f.add_done_callback(move |f| s.store(*f.result().unwrap(), Ordering::SeqCst));
    /// f.result().unwrap();
    /// executor.shutdown(true, false); // the worker has certainly run the callback now
    /// assert_eq!(seen.load(Ordering::SeqCst), 5);
    /// ```
    pub fn add_done_callback(&self, callback: impl FnOnce(&Future<T>) + Send + 'static)
    where
        T: Sync,
    {
        let mut inner = self.shared.inner.lock();
        if inner.status == Status::Finished {
            drop(inner);
            run_callback(Box::new(callback), self);
        } else {
            inner.callbacks_done = false;
            inner.callbacks.push(Box::new(callback));
        }
    }

    /// Registers `notifier` to receive `index` when this future finishes; `false` (and
    /// nothing registered) if it already has.
    pub(crate) fn subscribe(&self, notifier: &Arc<Notifier>, index: usize) -> bool {
        let mut inner = self.shared.inner.lock();
        if inner.status == Status::Finished {
            return false;
        }
        inner.subscribers.push((Arc::clone(notifier), index));
        true
    }

    pub(crate) fn unsubscribe(&self, notifier: &Arc<Notifier>) {
        self.shared
            .inner
            .lock()
            .subscribers
            .retain(|(n, _)| !Arc::ptr_eq(n, notifier));
    }

    /// Whether it finished with an error other than cancellation (for `FIRST_EXCEPTION`).
    pub(crate) fn failed(&self) -> bool {
        self.done() && matches!(self.stored(), Err(error) if error != TaskError::Cancelled)
    }
}

impl<T> PartialEq for Future<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<T> Eq for Future<T> {}

impl<T> Hash for Future<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.shared) as usize).hash(state);
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.shared.inner.lock().status;
        let state = match status {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Finished if self.cancelled() => "cancelled",
            Status::Finished if self.failed() => "finished with an error",
            Status::Finished => "finished",
        };
        f.debug_struct("Future").field("state", &state).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn dropped_promise_finishes_with_worker_died() {
        let (promise, future) = promise::<u8>();
        let worker = std::thread::spawn(move || drop(promise));
        assert!(matches!(future.result(), Err(TaskError::WorkerDied(_))));
        worker.join().unwrap();
    }

    #[test]
    fn cancelled_promise_refuses_to_run() {
        let (promise, future) = promise::<u8>();
        assert!(future.cancel());
        assert!(!promise.set_running());
        promise.complete(Ok(1)); // ignored: the future stays cancelled
        assert_eq!(future.result(), Err(TaskError::Cancelled));
    }

    #[test]
    fn running_future_cannot_be_cancelled() {
        let (promise, future) = promise::<u8>();
        assert!(promise.set_running());
        assert!(future.running());
        assert!(!future.cancel());
        promise.complete(Ok(3));
        assert_eq!(future.into_result(), Ok(3));
    }

    #[test]
    fn completion_from_another_thread_wakes_as_completed() {
        let pairs: Vec<_> = (0..8).map(|_| promise::<usize>()).collect();
        let (promises, futures): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
        let completer = std::thread::spawn(move || {
            for (i, p) in promises.into_iter().enumerate().rev() {
                p.complete(Ok(i));
            }
        });
        let mut order: Vec<usize> = super::super::as_completed(&futures)
            .map(|f| *f.result().unwrap())
            .collect();
        completer.join().unwrap();
        order.sort();
        assert_eq!(order, (0..8).collect::<Vec<_>>());
    }
}

/// loom models of the completion protocol; run with
/// `RUSTFLAGS="--cfg loom" cargo test --lib --release loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    #[test]
    fn loom_completion_wakes_the_waiter() {
        loom::model(|| {
            let (promise, future) = promise::<u8>();
            let worker = loom::thread::spawn(move || {
                if promise.set_running() {
                    promise.complete(Ok(7));
                }
            });
            assert_eq!(future.result(), Ok(&7));
            worker.join().unwrap();
        });
    }

    #[test]
    fn loom_cancel_races_with_start() {
        loom::model(|| {
            let (promise, future) = promise::<u8>();
            let worker = loom::thread::spawn(move || {
                let ran = promise.set_running();
                if ran {
                    promise.complete(Ok(1));
                }
                ran
            });
            let cancelled = future.cancel();
            let ran = worker.join().unwrap();
            // Exactly one of the two wins, and the result says which.
            assert_ne!(cancelled, ran);
            if cancelled {
                assert_eq!(future.result(), Err(TaskError::Cancelled));
            } else {
                assert_eq!(future.into_result(), Ok(1));
            }
        });
    }

    #[test]
    fn loom_dropped_promise_never_leaves_a_waiter() {
        loom::model(|| {
            let (promise, future) = promise::<u8>();
            let worker = loom::thread::spawn(move || drop(promise));
            assert!(matches!(future.result(), Err(TaskError::WorkerDied(_))));
            worker.join().unwrap();
        });
    }
}
