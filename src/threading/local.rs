//! [`ThreadLocal`]: Python's `threading.local()`, held as a value instead of a static.
//!
//! Rust's own `thread_local!` declares a `static`, and evcxr gives each notebook cell its
//! own copy of every static; this type keeps the per-thread values inside the value the
//! notebook holds, keyed by std's `ThreadId` (which std never reuses).

use std::collections::HashMap;
use std::fmt;
use std::thread::ThreadId;

/// One value per thread: each thread that touches it sees its own copy, created by the
/// `init` function on first use (Python's `threading.local()`).
///
/// ```
/// use conclab::threading::{ThreadLocal, Thread};
/// use std::sync::Arc;
///
/// let visits = Arc::new(ThreadLocal::new(|| 0u32));
/// let handles: Vec<_> = (0..3).map(|i| {
///     let visits = Arc::clone(&visits);
///     Thread::new(move || {
///         for _ in 0..=i {
///             visits.with(|v| *v += 1);
///         }
///         visits.get()
///     }).start().unwrap()
/// }).collect();
/// let mut seen: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
/// seen.sort();
/// assert_eq!(seen, vec![1, 2, 3]);   // each thread counted only its own visits
/// assert_eq!(visits.get(), 0);       // and the main thread has a fresh value
/// ```
pub struct ThreadLocal<T> {
    init: Box<dyn Fn() -> T + Send + Sync>,
    values: crate::sync::Mutex<HashMap<ThreadId, (String, T)>>,
}

impl<T: Send> ThreadLocal<T> {
    /// Per-thread values created by `init` on each thread's first use.
    ///
    /// ```
    /// let names = conclab::threading::ThreadLocal::new(Vec::<String>::new);
    /// assert!(names.get().is_empty());
    /// ```
    pub fn new(init: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Self {
            init: Box::new(init),
            values: crate::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` on the calling thread's value.
    ///
    /// The value is taken out while `f` runs, so `f` may use other `ThreadLocal`s (or this
    /// one: a nested call then sees a fresh value, and the outer value is put back last).
    ///
    /// ```
    /// let local = conclab::threading::ThreadLocal::new(String::new);
    /// local.with(|s| s.push_str("mine"));
    /// assert_eq!(local.with(|s| s.clone()), "mine");
    /// ```
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let id = std::thread::current().id();
        let taken = self.values.lock().remove(&id);
        let (name, mut value) =
            taken.unwrap_or_else(|| (super::thread::current_name(), (self.init)()));
        let result = f(&mut value);
        self.values.lock().insert(id, (name, value));
        result
    }

    /// Replaces the calling thread's value.
    ///
    /// ```
    /// let local = conclab::threading::ThreadLocal::new(|| 1);
    /// local.set(5);
    /// assert_eq!(local.get(), 5);
    /// ```
    pub fn set(&self, value: T) {
        self.with(|slot| *slot = value);
    }

    /// A copy of the calling thread's value.
    ///
    /// ```
    /// assert_eq!(conclab::threading::ThreadLocal::new(|| 'x').get(), 'x');
    /// ```
    pub fn get(&self) -> T
    where
        T: Clone,
    {
        self.with(|value| value.clone())
    }

    /// Every thread's value so far with the thread's name, for showing that each thread
    /// had its own (sorted by thread name).
    ///
    /// ```
    /// let local = conclab::threading::ThreadLocal::new(|| 0);
    /// local.set(3);
    /// let all = local.snapshot();
    /// assert_eq!(all.len(), 1);
    /// assert_eq!(all[0].1, 3);
    /// ```
    pub fn snapshot(&self) -> Vec<(String, T)>
    where
        T: Clone,
    {
        let mut all: Vec<(String, T)> = self.values.lock().values().cloned().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

impl<T> fmt::Debug for ThreadLocal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadLocal")
            .field("threads", &self.values.lock().len())
            .finish_non_exhaustive()
    }
}
