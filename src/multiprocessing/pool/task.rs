//! Tasks as plain function values: type erasure through monomorphised trampolines.
//!
//! A task is a `Copy + 'static` callable (a `fn` item, a `fn` pointer, a closure without
//! captures or with `Copy` captures). Workers are forks of the parent, so the callable's
//! bytes and the address of `run_chunk::<F, Args, R>` (instantiated in the parent) mean
//! the same in the worker. A chunk travels as: trampoline address, the callable's bytes,
//! and the bincode of `Vec<Args>`; the answer is the bincode of
//! `Result<Vec<Result<R, String>>, String>` (per task: value or panic message).

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::multiprocessing::fork;
use crate::multiprocessing::MpError;

/// A callable a [`Pool`](super::Pool) can run: `f(a)`, `f(a, b)`, ... for an argument
/// tuple. Implemented for every `Fn` that is `Copy + Send + 'static`: `fn` items, `fn`
/// pointers and closures that capture nothing or only `Copy` values. `Pool::map` wraps
/// each item in a one-element tuple; `Pool::starmap` passes tuples as they are.
///
/// A closure that captures a `String` is not `Copy`, so it cannot be sent:
///
/// ```compile_fail
/// use conclab::multiprocessing::Pool;
/// let pool = Pool::new(1).unwrap();
/// let greeting = String::from("hi");
/// let _ = pool.map(move |x: i32| format!("{greeting} {x}"), 0..3);
/// ```
///
/// A `Copy` capture is fine:
///
/// ```
/// use conclab::multiprocessing::{Pool, StarCall};
/// let k = 10;
/// let add_k = move |x: i32| x + k;
/// assert_eq!(add_k.star_call((1,)), 11);
/// let pool = Pool::new(1).unwrap();
/// assert_eq!(pool.map(add_k, 0..3).unwrap(), vec![10, 11, 12]);
/// ```
pub trait StarCall<Args, R>: Copy + Send + 'static {
    /// Calls with the arguments unpacked from the tuple.
    fn star_call(&self, args: Args) -> R;
}

impl<F, R> StarCall<(), R> for F
where
    F: Fn() -> R + Copy + Send + 'static,
{
    fn star_call(&self, _: ()) -> R {
        self()
    }
}

impl<F, A, R> StarCall<(A,), R> for F
where
    F: Fn(A) -> R + Copy + Send + 'static,
{
    fn star_call(&self, (a,): (A,)) -> R {
        self(a)
    }
}

impl<F, A, B, R> StarCall<(A, B), R> for F
where
    F: Fn(A, B) -> R + Copy + Send + 'static,
{
    fn star_call(&self, (a, b): (A, B)) -> R {
        self(a, b)
    }
}

impl<F, A, B, C, R> StarCall<(A, B, C), R> for F
where
    F: Fn(A, B, C) -> R + Copy + Send + 'static,
{
    fn star_call(&self, (a, b, c): (A, B, C)) -> R {
        self(a, b, c)
    }
}

impl<F, A, B, C, D, R> StarCall<(A, B, C, D), R> for F
where
    F: Fn(A, B, C, D) -> R + Copy + Send + 'static,
{
    fn star_call(&self, (a, b, c, d): (A, B, C, D)) -> R {
        self(a, b, c, d)
    }
}

/// The worker side of a chunk, type-erased.
pub(crate) type Tramp = unsafe fn(&[u8], &[u8], &AtomicU64) -> Vec<u8>;
/// The worker side of an initializer; `false` if it panicked.
pub(crate) type InitTramp = unsafe fn(&[u8], &[u8]) -> bool;

type ChunkOut<R> = Result<Vec<Result<R, String>>, String>;

/// Runs a chunk in the worker. Each task runs under `catch_unwind`, so a panic becomes
/// that task's error and the worker carries on; `progress` tells the parent which task
/// was running if the worker dies.
///
/// # Safety
/// `fbytes` must be the bytes of an `F` made in the parent (before this worker forked,
/// or checked by the reload detector), and `F` must be the type this was instantiated for.
pub(crate) unsafe fn run_chunk<F, Args, R>(
    fbytes: &[u8],
    args: &[u8],
    progress: &AtomicU64,
) -> Vec<u8>
where
    F: StarCall<Args, R>,
    Args: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: the caller guarantees these are the bytes of a valid `F`.
    let f: F = unsafe { callable_from(fbytes) };
    let out: ChunkOut<R> = match bincode::deserialize::<Vec<Args>>(args) {
        Ok(items) => Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                progress.store(i as u64, Ordering::Relaxed);
                std::panic::catch_unwind(AssertUnwindSafe(|| f.star_call(a))).map_err(|p| {
                    let msg = fork::payload_str(&*p);
                    std::mem::forget(p);
                    msg
                })
            })
            .collect()),
        Err(e) => Err(e.to_string()),
    };
    match bincode::serialize(&out) {
        Ok(bytes) => bytes,
        Err(e) => bincode::serialize(&ChunkOut::<R>::Err(e.to_string())).unwrap_or_default(),
    }
}

/// Runs an initializer in a fresh worker.
///
/// # Safety
/// As for [`run_chunk`].
pub(crate) unsafe fn run_init<F, Args>(fbytes: &[u8], args: &[u8]) -> bool
where
    F: StarCall<Args, ()>,
    Args: DeserializeOwned,
{
    // SAFETY: the caller guarantees these are the bytes of a valid `F`.
    let f: F = unsafe { callable_from(fbytes) };
    let Ok(args) = bincode::deserialize::<Args>(args) else {
        return false;
    };
    std::panic::catch_unwind(AssertUnwindSafe(|| f.star_call(args))).is_ok()
}

/// # Safety
/// `bytes` holds a valid `F` (`F: Copy`, so a bitwise copy is a real value).
unsafe fn callable_from<F: Copy>(bytes: &[u8]) -> F {
    assert_eq!(
        bytes.len(),
        std::mem::size_of::<F>(),
        "callable size mismatch"
    );
    // SAFETY: the length matches and the caller vouches for the contents.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<F>()) }
}

/// The bytes of a callable, to send to a worker.
pub(crate) fn callable_bytes<F: Copy>(f: &F) -> Vec<u8> {
    let mut out = vec![0u8; std::mem::size_of::<F>()];
    // SAFETY: copies size_of::<F>() bytes out of a live `F` into a buffer of that size.
    // Padding bytes may be uninitialised; they are only carried, never interpreted.
    unsafe {
        std::ptr::copy_nonoverlapping((f as *const F).cast::<u8>(), out.as_mut_ptr(), out.len())
    };
    out
}

/// Every word of a callable plus its trampoline: what the reload detector checks.
pub(crate) fn code_words(tramp: usize, fbytes: &[u8]) -> Vec<usize> {
    let mut words = vec![tramp];
    let w = std::mem::size_of::<usize>();
    for start in 0..fbytes.len().saturating_sub(w - 1) {
        if start % w == 0 {
            let mut b = [0u8; std::mem::size_of::<usize>()];
            b.copy_from_slice(&fbytes[start..start + w]);
            words.push(usize::from_ne_bytes(b));
        }
    }
    words
}

/// The results of one submitted job, kept in the parent.
///
/// Values and errors are kept apart: an `MpError` is several times the size of a small
/// result, and with one slot able to hold either, a 100,000-task `map` of `u64` took the
/// process to a peak of 11.9 MB, against 7.9 MB now. The peak matters after the job too:
/// glibc keeps much of what it frees, and every later fork copies the page tables of
/// what the heap grew to.
pub(crate) struct Store<R> {
    /// Each task's value once it arrived; `None` before, after it was taken, and for a
    /// task that failed.
    values: Vec<Option<R>>,
    /// The failed tasks' errors, by task index.
    errors: BTreeMap<usize, MpError>,
    /// Whether each task has finished, so a late second outcome for a task is ignored.
    finished: Vec<bool>,
    pub(crate) done_order: VecDeque<usize>,
    pub(crate) remaining: usize,
    pub(crate) failed: bool,
}

impl<R> Store<R> {
    fn new(n: usize) -> Store<R> {
        Store {
            values: (0..n).map(|_| None).collect(),
            errors: BTreeMap::new(),
            finished: vec![false; n],
            done_order: VecDeque::new(),
            remaining: n,
            failed: false,
        }
    }

    fn set(&mut self, i: usize, r: Result<R, MpError>) {
        let Some(finished) = self.finished.get_mut(i) else {
            return;
        };
        if *finished {
            return;
        }
        *finished = true;
        match r {
            Ok(value) => self.values[i] = Some(value),
            Err(error) => {
                self.failed = true;
                self.errors.insert(i, error);
            }
        }
        self.remaining -= 1;
        self.done_order.push_back(i);
    }

    /// Task `i`'s outcome, once: `None` while it runs and after it was taken.
    pub(crate) fn take(&mut self, i: usize) -> Option<Result<R, MpError>> {
        if let Some(error) = self.errors.remove(&i) {
            return Some(Err(error));
        }
        self.values.get_mut(i)?.take().map(Ok)
    }

    /// Every value in task order, or the error of the first task that failed.
    pub(crate) fn take_all(&mut self) -> Result<Vec<R>, MpError> {
        if let Some((_, error)) = self.errors.pop_first() {
            return Err(error);
        }
        Ok(std::mem::take(&mut self.values)
            .into_iter()
            .flatten()
            .collect())
    }
}

/// A job as the dispatcher sees it, whatever its types.
pub(crate) trait JobDyn: Send {
    fn tramp(&self) -> usize;
    fn fbytes(&self) -> &[u8];
    fn words(&self) -> &[usize];
    fn encode(&self, idx: &[usize]) -> Result<Vec<u8>, MpError>;
    fn deliver(&mut self, idx: &[usize], bytes: &[u8]);
    fn fail(&mut self, i: usize, err: MpError);
    fn remaining(&self) -> usize;
    fn failed(&self) -> bool;
    fn store(&mut self) -> &mut dyn Any;
}

pub(crate) struct TypedJob<Args, R> {
    tramp: usize,
    fbytes: Vec<u8>,
    words: Vec<usize>,
    args: Vec<Args>,
    store: Store<R>,
}

impl<Args, R> TypedJob<Args, R>
where
    Args: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    pub(crate) fn new<F: StarCall<Args, R>>(f: F, args: Vec<Args>) -> TypedJob<Args, R> {
        let tramp = run_chunk::<F, Args, R> as Tramp as usize;
        let fbytes = callable_bytes(&f);
        let n = args.len();
        TypedJob {
            tramp,
            words: code_words(tramp, &fbytes),
            fbytes,
            args,
            store: Store::new(n),
        }
    }
}

impl<Args, R> JobDyn for TypedJob<Args, R>
where
    Args: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    fn tramp(&self) -> usize {
        self.tramp
    }
    fn fbytes(&self) -> &[u8] {
        &self.fbytes
    }
    fn words(&self) -> &[usize] {
        &self.words
    }
    fn encode(&self, idx: &[usize]) -> Result<Vec<u8>, MpError> {
        // A Vec<&Args> encodes exactly like a Vec<Args>: no clone of the arguments.
        let refs: Vec<&Args> = idx.iter().map(|&i| &self.args[i]).collect();
        Ok(bincode::serialize(&refs)?)
    }
    fn deliver(&mut self, idx: &[usize], bytes: &[u8]) {
        match bincode::deserialize::<ChunkOut<R>>(bytes) {
            Ok(Ok(values)) => {
                let n = values.len();
                for (&i, v) in idx.iter().zip(values) {
                    self.store.set(i, v.map_err(MpError::TaskPanicked));
                }
                for &i in idx.iter().skip(n) {
                    self.store.set(
                        i,
                        Err(MpError::Codec("a worker sent too few results".into())),
                    );
                }
            }
            Ok(Err(msg)) => idx
                .iter()
                .for_each(|&i| self.store.set(i, Err(MpError::Codec(msg.clone())))),
            Err(e) => idx
                .iter()
                .for_each(|&i| self.store.set(i, Err(MpError::Codec(e.to_string())))),
        }
    }
    fn fail(&mut self, i: usize, err: MpError) {
        self.store.set(i, Err(err));
    }
    fn remaining(&self) -> usize {
        self.store.remaining
    }
    fn failed(&self) -> bool {
        self.store.failed
    }
    fn store(&mut self) -> &mut dyn Any {
        &mut self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(what: &str) -> MpError {
        MpError::TaskPanicked(what.to_string())
    }

    #[test]
    fn each_outcome_is_kept_once_and_taken_once() {
        let mut store = Store::<u64>::new(3);
        store.set(1, Ok(10));
        store.set(1, Err(failure("late"))); // a second outcome for task 1 is ignored
        store.set(0, Err(failure("zero")));
        assert_eq!((store.remaining, store.failed), (1, true));
        assert_eq!(store.done_order, [1, 0]);
        assert!(store.take(2).is_none(), "task 2 has not finished");
        assert_eq!(store.take(1).map(|r| r.ok()), Some(Some(10)));
        assert!(store.take(1).is_none(), "taken already");
        assert!(matches!(store.take(0), Some(Err(MpError::TaskPanicked(m))) if m == "zero"));
        store.set(9, Ok(1)); // no such task
        assert_eq!(store.remaining, 1);
    }

    #[test]
    fn take_all_gives_every_value_in_order_or_the_first_failure() {
        let mut store = Store::<u64>::new(3);
        for (i, v) in [(2, 30), (0, 10), (1, 20)] {
            store.set(i, Ok(v));
        }
        assert_eq!(store.take_all().ok(), Some(vec![10, 20, 30]));

        let mut store = Store::<u64>::new(3);
        store.set(2, Err(failure("two")));
        store.set(0, Ok(1));
        store.set(1, Err(failure("one")));
        assert!(matches!(store.take_all(), Err(MpError::TaskPanicked(m)) if m == "one"));
    }
}
